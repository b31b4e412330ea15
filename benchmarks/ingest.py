"""Benchmark: the ingestion core against plain pandas, on the same pump-health CSV.

Generates a deterministic pump-health landing file (numpy, seeded: a few hundred pumps, one reading per pump and 10
minutes, a handful of bad rows: a value that is not a number, values out of range, an unknown site, a bad pump id,
a missing required value, a repeated key and a truncated last line). Then, in one process and alternating so both
see the same machine, it times the best of three runs of:

- core: ``modelwerk.core.ingest.ingest_file`` (read, contract checks, pseudonymization), the accepted rows written
  as one Parquet file per day and the quarantined rows as JSON Lines, all to bytes;
- pandas: ``pandas.read_csv`` + ``DataFrame.to_parquet`` of the same bytes, to bytes (no checks at all).

It prints rows per second of both and the ratio of their times (core / pandas). CPU time is printed as well: on a
busy machine it moves less than wall time.

    python benchmarks/ingest.py                # 1,000,000 rows
    python benchmarks/ingest.py --rows 200000
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

from modelwerk.core.contract import Contract  # noqa: E402
from modelwerk.core.ingest import ingest_file, parquet_partitions  # noqa: E402

CONTRACT = Contract.load(ROOT / "sagemaker_pipelines" / "pump_health" / "contract.json")
PUMPS = 200
SITES = np.array(["plant-north", "plant-south", "plant-east"])
OPERATORS = np.array([f"operator{i:02d}@example.com" for i in range(25)])
START = np.datetime64("2024-01-01T00:00:00", "s")
REPEATS = 3


def generate_pump_csv(rows: int, seed: int = 7) -> bytes:
    """A pump-health CSV of ``rows`` data rows (bad ones included), the same bytes for the same arguments."""
    rng = np.random.default_rng(seed)
    pump = np.arange(rows) % PUMPS
    step = np.arange(rows) // PUMPS
    timestamps = START + step * np.timedelta64(600, "s")
    table = pa.table(
        {
            "pump_id": np.char.add("P-", np.char.zfill((pump + 1).astype(str), 3)),
            "site": SITES[pump % len(SITES)],
            "timestamp": np.char.add(np.datetime_as_string(timestamps, unit="s"), "Z"),
            "operator_email": OPERATORS[rng.integers(0, len(OPERATORS), rows)],
            "vibration_rms": np.round(rng.gamma(2.0, 2.0, rows), 3),
            "bearing_temp_c": np.round(rng.normal(65, 8, rows), 2),
            "flow_m3h": np.round(rng.uniform(50, 1500, rows), 1),
            "pressure_bar": np.round(rng.uniform(1, 40, rows), 2),
            "speed_rpm": np.round(rng.uniform(900, 3600, rows), 0),
            "power_kw": np.round(rng.uniform(10, 800, rows), 1),
            "failure": (rng.random(rows) < 0.02).astype(np.int64),
        }
    )
    table = table.select(CONTRACT.column_names)
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    lines = sink.getvalue().split(b"\n")[:-1]
    _spoil(lines, rng)
    return b",".join(name.encode() for name in CONTRACT.column_names) + b"\n" + b"\n".join(lines)


def _spoil(lines: list[bytes], rng: np.random.Generator) -> None:
    """A few realistic faults, at seeded positions; the last line is cut short (no trailing newline either)."""
    columns = CONTRACT.column_names
    vibration, site, pump_id, bearing = (
        columns.index(c) for c in ("vibration_rms", "site", "pump_id", "bearing_temp_c")
    )
    faults = [
        (vibration, b"n/a"),  # type
        (vibration, b"250.0"),  # out of range
        (bearing, b"-80"),  # out of range
        (site, b"plant-west"),  # not allowed
        (pump_id, b"P-12"),  # pattern
        (bearing, b""),  # missing required
    ]
    positions = rng.choice(np.arange(1, len(lines) - 2), size=len(faults) + 1, replace=False)
    for position, (column, value) in zip(positions, faults):
        fields = lines[position].split(b",")
        fields[column] = value
        lines[position] = b",".join(fields)
    repeated = int(positions[-1])
    lines[repeated + 1] = lines[repeated]  # a re-sent reading: duplicate key
    lines[-1] = lines[-1][: len(lines[-1]) // 2]  # truncated


def core(data: bytes) -> dict[str, Any]:
    result = ingest_file(
        data,
        "readings.csv",
        CONTRACT,
        pseudonymization_key=b"benchmark-key",
        source_key="s3://landing/pump-health/readings.csv",
        ingested_at=dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc),
    )
    files = parquet_partitions(result)
    quarantine = result.quarantine_jsonl()
    return {**result.report(), "files": len(files), "bytes": sum(map(len, files.values())) + len(quarantine)}


def plain_pandas(data: bytes) -> dict[str, Any]:
    frame = pd.read_csv(io.BytesIO(data))
    sink = io.BytesIO()
    frame.to_parquet(sink)
    return {"rows": len(frame), "bytes": len(sink.getvalue())}


def best_of(runs: dict[str, Callable[[bytes], Any]], data: bytes, repeats: int) -> dict[str, tuple[float, float]]:
    """(best wall, best CPU) seconds per run, the runs alternating so they share the machine's state."""
    best = {name: (float("inf"), float("inf")) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run(data)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="data rows in the generated file")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of each side; the best counts")
    args = parser.parse_args(argv)

    data = generate_pump_csv(args.rows)
    print(f"pump-health CSV: {args.rows:,} rows, {len(data) / 1e6:.1f} MB")
    report = core(data)
    print(
        f"core: {report['rows_accepted']:,} accepted, {report['rows_quarantined']} quarantined "
        f"{report['reasons']}, {report['files']} Parquet files"
    )
    plain_pandas(data)  # warm-up (imports, allocator)

    best = best_of({"core": core, "pandas": plain_pandas}, data, args.repeats)
    for name, label in (
        ("core", "ingestion core (read+checks+pseudonymize+parquet)"),
        ("pandas", "pandas read_csv+to_parquet"),
    ):
        wall, cpu = best[name]
        print(f"{label:52s} {wall:7.3f} s  {args.rows / wall:>12,.0f} rows/s   (CPU {cpu:.3f} s)")
    ratio = best["core"][0] / best["pandas"][0]
    cpu_ratio = best["core"][1] / best["pandas"][1]
    print(f"ratio core/pandas: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU (target: wall time within 1.5x)")


if __name__ == "__main__":
    main()
