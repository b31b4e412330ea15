"""Benchmark: the curated preparation (dedupe + rolling features) three ways, side by side.

Generates deterministic raw data in the pump-health shape (a few hundred pumps, one reading per pump and 10 minutes,
about 5 % duplicate keys: later re-sends and ingestion ties), written as the raw table's partitioned Parquet
(``dt=YYYY-MM-DD/*.parquet``). For each size it runs, in one process:

- Spark: the Glue job's own ``transform`` on a ``local[2]`` session, read and written as the job does;
- DuckDB: the same rules as one SQL statement (``COPY ... PARTITION_BY (dt)``), 2 threads;
- pandas: the same rules with ``drop_duplicates`` and ``groupby().rolling()``, written with pyarrow.

It checks the three outputs are identical (sorted by dt, asset, timestamp; floats to a tight tolerance) to the
DuckDB reference, then prints wall times, the Spark scaling factor between the sizes and the ratios to DuckDB.
Every engine reads the raw Parquet and writes the curated Parquet inside its timing; Spark's session start and a
small warm-up run are outside it.

    python benchmarks/prepare.py                      # 1M and 5M rows
    python benchmarks/prepare.py --rows 200000 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: the job's transform and the contract

from glue_jobs.prepare_curated import transform as prep
from modelwerk.core.contract import INGESTED_AT, PARTITION_COLUMN, SOURCE_KEY, Contract

CONTRACT = Contract.load(ROOT / "sagemaker_pipelines/pump_health/contract.json")
PUMPS = 300
DUPLICATE_SHARE = 0.05
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
ARROW_TYPES = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
RAW_SCHEMA = pa.schema([(name, ARROW_TYPES[glue]) for name, glue in CONTRACT.raw_schema()])
SITES = np.array(["plant-north", "plant-south", "plant-east"])
SENSORS = {  # column: (mean, spread)
    "vibration_rms": (4.0, 1.2),
    "bearing_temp_c": (62.0, 6.0),
    "flow_m3h": (320.0, 40.0),
    "pressure_bar": (6.5, 0.8),
    "speed_rpm": (1480.0, 30.0),
    "power_kw": (95.0, 10.0),
}
FLOAT_TOLERANCE = {"rtol": 1e-9, "atol": 1e-9}


# --- data ------------------------------------------------------------------------------------------------------


def raw_rows(rows: int, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(first deliveries, re-sends) with a ``dt`` column: ``rows`` in all, about 5 % of them re-sends of a key.

    Readings are 10 minutes apart with up to 30 s of jitter, so windows often end exactly on an earlier reading.
    """
    rng = np.random.default_rng(seed)
    unique = round(rows / (1 + DUPLICATE_SHARE))
    per_pump = -(-unique // PUMPS)
    pump = np.repeat(np.arange(PUMPS), per_pump)[:unique]
    seconds = np.tile(np.arange(per_pump), PUMPS)[:unique] * 600 + rng.integers(0, 30, unique)
    day_index = seconds // 86_400
    days = np.array(
        [(START.date() + dt.timedelta(days=int(d))).isoformat() for d in range(day_index.max() + 1)], dtype=object
    )
    day = days[day_index]
    operators = np.array([hashlib.sha256(f"operator-{i}".encode()).hexdigest() for i in range(25)], dtype=object)
    email = operators[rng.integers(0, len(operators), unique)]
    email[rng.random(unique) < 0.1] = None
    pump_ids = np.array([f"P-{p:03d}" for p in range(PUMPS)], dtype=object)
    first = pd.DataFrame(
        {
            "pump_id": pump_ids[pump],
            "site": SITES[pump % len(SITES)],
            "timestamp": pd.Timestamp(START) + pd.to_timedelta(seconds, unit="s"),
            "operator_email": email,
            **{c: rng.normal(m, s, unique).round(4) for c, (m, s) in SENSORS.items()},
            "failure": (rng.random(unique) < 0.01).astype(np.int64),
            INGESTED_AT: pd.Timestamp(START) + pd.to_timedelta((day_index + 1) * 86_400 + 3_600, unit="s"),
            SOURCE_KEY: "s3://landing/pump-health/" + day + ".csv",
            PARTITION_COLUMN: day,
        }
    )
    picks = np.sort(rng.choice(unique, rows - unique, replace=False))
    resend = first.iloc[picks].copy().reset_index(drop=True)
    for column in ("vibration_rms", "bearing_temp_c"):
        resend[column] = (resend[column] + rng.normal(0, 0.5, len(resend))).round(4)
    later = rng.random(len(resend)) < 0.7  # 70 %: a later ingestion wins; 30 %: a tie on _ingested_at
    resend.loc[later, INGESTED_AT] = resend.loc[later, INGESTED_AT] + pd.Timedelta(hours=6)
    # Ties go to the larger _source_key: a "resend/" key sorts after the day file, a "0-early/" key before it.
    # "0-late/" sorts before the day file too but comes with a later _ingested_at, which wins first.
    folder = np.where(later, "0-late/", np.where(rng.random(len(resend)) < 0.5, "resend/", "0-early/"))
    resend[SOURCE_KEY] = "s3://landing/pump-health/" + folder + resend[PARTITION_COLUMN] + ".csv"
    return first, resend


def write_raw(rows: int, folder: Path) -> int:
    """The raw table's layout: ``dt=YYYY-MM-DD/{first,resend}-0.parquet``; returns the number of days."""
    first, resend = raw_rows(rows)
    schema = RAW_SCHEMA.append(pa.field(PARTITION_COLUMN, pa.string()))
    for name, frame in (("first", first), ("resend", resend)):
        ds.write_dataset(
            pa.Table.from_pandas(frame, schema=schema, preserve_index=False),
            folder,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive"),
            basename_template=f"{name}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
        )
    return first[PARTITION_COLUMN].nunique()


# --- the three engines -----------------------------------------------------------------------------------------


def spark_session():
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("benchmark-prepare")
        .config("spark.driver.memory", "6g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")  # local mode stays on loopback
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run_spark(spark, raw: Path, out: Path) -> None:
    curated = prep.transform(spark.read.parquet(str(raw)), CONTRACT, None)
    curated.write.mode("overwrite").partitionBy(PARTITION_COLUMN).parquet(str(out))


def duckdb_sql(contract: Contract, source: str, target: str) -> str:
    """The preparation rules as DuckDB SQL (window ``(t - w, t]`` over epoch microseconds)."""
    q = lambda name: '"' + name.replace('"', '""') + '"'
    names = [name for name, _ in contract.raw_schema()]
    key = ", ".join(q(k) for k in contract.key)
    features = []
    if contract.rolling:
        functions = {"mean": "avg", "std": "stddev_samp", "min": "min", "max": "max"}
        for column in contract.rolling.columns:
            for stat in contract.rolling.stats:
                name = q(contract.rolling.feature_name(column, stat))
                features.append(f"{functions[stat]}(CAST({q(column)} AS DOUBLE)) OVER w AS {name}")
        window_us = contract.rolling.window_seconds * 1_000_000 - 1
    else:
        window_us = 0
    ts = q(contract.timestamp)
    return f"""
    COPY (
      WITH ranked AS (
        SELECT {", ".join(q(n) for n in names)},
               row_number() OVER (PARTITION BY {key} ORDER BY {q(INGESTED_AT)} DESC NULLS LAST,
                                  {q(SOURCE_KEY)} DESC NULLS LAST) AS rank_
        FROM read_parquet('{source}/*/*.parquet', hive_partitioning = false)
        WHERE {ts} IS NOT NULL
      )
      SELECT {", ".join(q(n) for n in names)}{"".join(", " + f for f in features)},
             CAST(DATE '1970-01-01' + CAST(floor(epoch_us({ts}) / 86400000000) AS INTEGER) AS VARCHAR) AS dt
      FROM ranked
      WHERE rank_ = 1
      WINDOW w AS (PARTITION BY {q(contract.asset)} ORDER BY epoch_us({ts})
                   RANGE BETWEEN {window_us} PRECEDING AND CURRENT ROW)
    ) TO '{target}' (FORMAT parquet, PARTITION_BY (dt))
    """


def run_duckdb(raw: Path, out: Path) -> None:
    with duckdb.connect() as con:
        con.execute("SET threads = 2")
        con.execute("SET TimeZone = 'UTC'")
        con.execute(duckdb_sql(CONTRACT, str(raw), str(out)))


def run_pandas(raw: Path, out: Path) -> None:
    contract = CONTRACT
    frame = ds.dataset(raw, format="parquet").to_table(columns=RAW_SCHEMA.names).to_pandas()
    frame = frame.sort_values([INGESTED_AT, SOURCE_KEY], ascending=False, kind="stable")
    frame = frame.drop_duplicates(list(contract.key), keep="first")
    frame = frame.sort_values([contract.asset, contract.timestamp], kind="stable").reset_index(drop=True)
    rolling = contract.rolling
    if rolling:
        grouped = frame.groupby(contract.asset, sort=True).rolling(rolling.window, on=contract.timestamp)
        stats = grouped[list(rolling.columns)].agg(list(rolling.stats))
        for column in rolling.columns:
            for stat in rolling.stats:
                # groupby().rolling() returns rows by asset then time: the frame's order.
                frame[rolling.feature_name(column, stat)] = stats[(column, stat)].to_numpy()
    frame[PARTITION_COLUMN] = frame[contract.timestamp].dt.strftime("%Y-%m-%d")
    ds.write_dataset(
        pa.Table.from_pandas(frame, preserve_index=False),
        out,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive"),
        existing_data_behavior="overwrite_or_ignore",
    )


# --- comparison ------------------------------------------------------------------------------------------------


def load_output(folder: Path) -> pd.DataFrame:
    dataset = ds.dataset(
        folder,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive"),
    )
    names = [name for name, _ in CONTRACT.curated_schema()] + [PARTITION_COLUMN]
    frame = dataset.to_table(columns=names).to_pandas()
    frame[CONTRACT.timestamp] = frame[CONTRACT.timestamp].dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    frame[INGESTED_AT] = frame[INGESTED_AT].dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return frame.sort_values([PARTITION_COLUMN, CONTRACT.asset, CONTRACT.timestamp]).reset_index(drop=True)


def compare(name: str, actual: pd.DataFrame, reference: pd.DataFrame) -> None:
    if len(actual) != len(reference):
        raise AssertionError(f"{name}: {len(actual)} rows, the reference has {len(reference)}")
    for column, glue in [*CONTRACT.curated_schema(), (PARTITION_COLUMN, "string")]:
        left, right = actual[column], reference[column]
        if glue == "double":
            a, b = left.to_numpy(dtype=float, na_value=np.nan), right.to_numpy(dtype=float, na_value=np.nan)
            if not np.allclose(a, b, equal_nan=True, **FLOAT_TOLERANCE):
                worst = np.nanmax(np.abs(a - b))
                raise AssertionError(f"{name}: column {column} differs from the reference (max abs diff {worst})")
        elif not left.equals(right) and not (
            left.isna().equals(right.isna()) and (left[left.notna()] == right[right.notna()]).all()
        ):
            raise AssertionError(f"{name}: column {column} differs from the reference")


# --- main ------------------------------------------------------------------------------------------------------


def best_of(repeat: int, function, *args) -> float:
    """Best wall time of ``repeat`` runs (a shared machine's noise only ever adds time); ``args[-1]`` is the output
    folder, emptied before each run."""
    times = []
    for _ in range(max(1, repeat)):
        shutil.rmtree(args[-1], ignore_errors=True)
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000], help="raw row counts")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine and size; the best time counts")
    parser.add_argument("--work-dir", help="where data and outputs go (kept); default: a temporary folder")
    args = parser.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-prepare-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        spark = spark_session()
        warm = work / "warm-up"
        write_raw(20_000, warm / "raw")
        run_spark(spark, warm / "raw", warm / "spark")  # JIT and code generation, outside the timings

        results: dict[int, dict[str, float]] = {}
        for rows in args.rows:
            folder = work / f"rows-{rows}"
            started = time.perf_counter()
            days = write_raw(rows, folder / "raw")
            elapsed = time.perf_counter() - started
            print(f"\n{rows:,} raw rows, {PUMPS} pumps, {days} day(s): data written in {elapsed:.1f} s", flush=True)
            times = {
                "duckdb": best_of(args.repeat, run_duckdb, folder / "raw", folder / "duckdb"),
                "pandas": best_of(args.repeat, run_pandas, folder / "raw", folder / "pandas"),
                "spark": best_of(args.repeat, run_spark, spark, folder / "raw", folder / "spark"),
            }
            reference = load_output(folder / "duckdb")
            for engine in ("pandas", "spark"):
                compare(engine, load_output(folder / engine), reference)
            dropped = rows - len(reference)
            sources = reference[SOURCE_KEY]
            expected = {"/resend/", "/0-late/"}
            if sources.str.contains("/0-early/").any() or not all(sources.str.contains(k).any() for k in expected):
                raise AssertionError("the reference does not apply the dedupe rule (latest ingestion, then larger key)")
            print(f"  outputs identical: {len(reference):,} curated rows ({dropped:,} duplicates dropped)")
            for engine, seconds in times.items():
                print(f"  {engine:<7} {seconds:8.2f} s   {rows / seconds / 1e6:6.2f} M rows/s")
            spark_ratio, pandas_ratio = times["spark"] / times["duckdb"], times["pandas"] / times["duckdb"]
            print(f"  ratios: spark/duckdb {spark_ratio:.1f}x   pandas/duckdb {pandas_ratio:.1f}x")
            results[rows] = times
            shutil.rmtree(folder, ignore_errors=True)

        sizes = sorted(results)
        if len(sizes) >= 2:
            small, large = sizes[0], sizes[-1]
            print(f"\nscaling {small:,} -> {large:,} rows ({large / small:.1f}x the data):")
            for engine in ("spark", "duckdb", "pandas"):
                print(f"  {engine:<7} {results[large][engine] / results[small][engine]:.2f}x the time")
        spark.stop()
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
