"""The preparation job end to end in local mode: job.py as a process against the embedded AWS (moto server).

One scenario in order: a first run prepares every partition and publishes a snapshot; a second run, after new raw
objects arrive, recomputes only the partitions they touch and publishes a new snapshot; a third run with nothing
new recomputes nothing and keeps the snapshot id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwerk.core import snapshot
from modelwerk.core.contract import Contract

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "glue_jobs" / "prepare_curated" / "job.py"
CONTRACT = Contract.load(ROOT / "sagemaker_pipelines/pump_health/contract.json")
USE_CASE = CONTRACT.use_case
RAW = "modelwerk-dev-raw-000000000000-eu-central-1"
CURATED = "modelwerk-dev-curated-000000000000-eu-central-1"
PARAMETER = f"/modelwerk/dev/use-cases/{USE_CASE}/contract"
UTC = dt.UTC
PUMPS = ("P-001", "P-002", "P-003")
OLDER_ROWS = 18
ARROW_TYPES = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


@pytest.fixture(scope="module")
def aws(embedded_aws):
    s3 = embedded_aws.client("s3")
    ssm = embedded_aws.client("ssm")
    for bucket in (RAW, CURATED):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ssm.put_parameter(Name=PARAMETER, Value=CONTRACT.to_json(), Type="String")
    return {"env": embedded_aws.env, "s3": s3}


def readings(day: dt.date, *, hours: int = 24, ingested: dt.datetime, source: str, seed: int) -> pd.DataFrame:
    """Raw rows in the ADR layout's types: every pump every 10 minutes from the day's midnight."""
    rng = np.random.default_rng(seed)
    start = dt.datetime.combine(day, dt.time(), tzinfo=UTC)
    times = [start + dt.timedelta(minutes=10 * i) for i in range(hours * 6)]
    rows = pd.DataFrame([(p, t) for p in PUMPS for t in times], columns=["pump_id", "timestamp"])
    n = len(rows)
    rows["site"] = "plant-north"
    rows["operator_email"] = None
    for column, mean in [
        ("vibration_rms", 4.0),
        ("bearing_temp_c", 60.0),
        ("flow_m3h", 300.0),
        ("pressure_bar", 6.0),
        ("speed_rpm", 1480.0),
        ("power_kw", 90.0),
    ]:
        rows[column] = rng.normal(mean, mean / 10, n).round(3)
    rows["failure"] = 0
    rows["_ingested_at"] = ingested
    rows["_source_key"] = source
    return rows


def put_raw(s3, rows: pd.DataFrame) -> list[str]:
    """Write rows as raw objects ``<use-case>/dt=.../<sha16>.parquet``, one per day."""
    schema = pa.schema([(name, ARROW_TYPES[glue]) for name, glue in CONTRACT.raw_schema()])
    keys = []
    days = rows["timestamp"].map(lambda t: t.strftime("%Y-%m-%d"))
    for day, part in rows.groupby(days):
        table = pa.Table.from_pandas(part[schema.names], schema=schema, preserve_index=False)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        data = buffer.getvalue()
        key = f"{USE_CASE}/dt={day}/{hashlib.sha256(data).hexdigest()[:16]}.parquet"
        s3.put_object(Bucket=RAW, Key=key, Body=data)
        keys.append(key)
    return keys


def put_older_raw(s3) -> int:
    """A raw object from before a contract change: no operator_email, int32 failure, float32 vibration."""
    times = [dt.datetime(2025, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=10 * i) for i in range(OLDER_ROWS)]
    columns = {
        "pump_id": pa.array(["P-004"] * len(times)),
        "site": pa.array(["plant-south"] * len(times)),
        "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        "vibration_rms": pa.array([1.5 + i for i in range(len(times))], pa.float32()),
        "failure": pa.array([1] * len(times), pa.int32()),
    }
    for name, glue in CONTRACT.raw_schema():
        if name not in columns and name != "operator_email":
            value = {
                "double": 1.0,
                "timestamp": dt.datetime(2025, 1, 4, tzinfo=UTC),
                "string": "s3://landing/pump-health/old.csv",
            }[glue]
            columns[name] = pa.array([value] * len(times), ARROW_TYPES[glue])
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    s3.put_object(Bucket=RAW, Key=f"{USE_CASE}/dt=2025-01-01/00000000000older.parquet", Body=buffer.getvalue())
    return len(times)


def run_job(aws, tmp_path: Path, *extra: str) -> tuple[dict, str]:
    """Run job.py --local; returns its report (the last stdout line) and its stderr."""
    env = {**os.environ, **aws["env"], "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, str(JOB), "--local",
        "--use_case", USE_CASE, "--raw_bucket", RAW, "--curated_bucket", CURATED, "--contract_parameter", PARAMETER,
        *extra,
    ]  # fmt: skip
    done = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]), done.stderr


def get_json(s3, key: str, version: str | None = None) -> dict:
    extra = {"VersionId": version} if version else {}
    return json.loads(s3.get_object(Bucket=CURATED, Key=key, **extra)["Body"].read())


def fetcher(s3):
    return lambda key, version: s3.get_object(Bucket=CURATED, Key=key, **({"VersionId": version} if version else {}))[
        "Body"
    ].read()


def curated_keys(s3) -> list[str]:
    listed = s3.list_objects_v2(Bucket=CURATED, Prefix=f"{USE_CASE}/").get("Contents", [])
    return sorted(o["Key"] for o in listed)


def latest(s3) -> tuple[dict, dict]:
    pointer = get_json(s3, f"_snapshots/{USE_CASE}/latest.json")
    return pointer, get_json(s3, pointer["manifest_key"])


def expected_features(table: pa.Table) -> pd.DataFrame:
    """pandas time-window rolling over the whole curated table (crosses partitions)."""
    frame = table.to_pandas().sort_values(["pump_id", "timestamp"]).reset_index(drop=True)
    rolling = CONTRACT.rolling
    for column in rolling.columns:
        grouped = frame.groupby("pump_id").rolling(rolling.window, on="timestamp")[column]
        for stat in rolling.stats:
            frame["expected_" + rolling.feature_name(column, stat)] = getattr(grouped, stat)().to_numpy()
    return frame


def check_features(table: pa.Table) -> None:
    frame = expected_features(table)
    for feature in CONTRACT.rolling.feature_names:
        np.testing.assert_allclose(frame[feature], frame["expected_" + feature], rtol=1e-9, atol=1e-12, err_msg=feature)


@pytest.fixture(scope="module")
def scenario(aws, tmp_path_factory):
    """Three runs of the job; what each saw is kept for the tests below."""
    s3 = aws["s3"]
    work = tmp_path_factory.mktemp("prepare")
    t1 = dt.datetime(2025, 1, 4, 6, tzinfo=UTC)
    first = readings(dt.date(2025, 1, 1), hours=72, ingested=t1, source="s3://landing/pump-health/batch-1.csv", seed=1)
    # A late correction of 01-02 12:00-14:00 (ingested later) and an ingestion tie won by the larger source key.
    fix = first[
        (first["timestamp"] >= dt.datetime(2025, 1, 2, 12, tzinfo=UTC))
        & (first["timestamp"] < dt.datetime(2025, 1, 2, 14, tzinfo=UTC))
    ].copy()
    fix["vibration_rms"] += 50.0
    fix["_ingested_at"] = t1 + dt.timedelta(hours=1)
    fix["_source_key"] = "s3://landing/pump-health/batch-0-fix.csv"
    tie = first[first["timestamp"] == dt.datetime(2025, 1, 3, 8, tzinfo=UTC)].copy()
    tie["vibration_rms"] = 99.0
    tie["_source_key"] = "s3://landing/pump-health/batch-2.csv"  # same _ingested_at, larger key: wins
    put_raw(s3, pd.concat([first, fix, tie]))
    older = put_older_raw(s3)
    run1, log1 = run_job(aws, work)
    pointer1, manifest1 = latest(s3)
    keys1 = curated_keys(s3)

    # New data: more of 01-03 (a later correction) and a new day 01-04.
    t2 = dt.datetime(2025, 1, 5, 6, tzinfo=UTC)
    more = readings(dt.date(2025, 1, 3), hours=48, ingested=t2, source="s3://landing/pump-health/batch-3.csv", seed=2)
    put_raw(s3, more)
    run2, _ = run_job(aws, work)
    pointer2, manifest2 = latest(s3)

    run3, log3 = run_job(aws, work)
    pointer3, manifest3 = latest(s3)
    return {
        "raw_rows_1": len(first) + len(fix) + len(tie) + older,
        "dupes_1": len(fix) + len(tie),
        "raw_rows_2": len(more) + len(first[first["timestamp"] >= dt.datetime(2025, 1, 3, tzinfo=UTC)]) + len(tie),
        "runs": [run1, run2, run3],
        "pointers": [pointer1, pointer2, pointer3],
        "manifests": [manifest1, manifest2, manifest3],
        "keys1": keys1,
        "logs": [log1, log3],
    }


def test_first_run_prepares_every_partition(scenario) -> None:
    run = scenario["runs"][0]
    assert run["partitions"] == ["2025-01-01", "2025-01-02", "2025-01-03"]
    assert run["rows_in"] == scenario["raw_rows_1"]
    assert run["duplicates_dropped"] == scenario["dupes_1"]
    assert run["rows_in"] == run["rows_out"] + run["duplicates_dropped"]
    assert run["rows_out"] == 3 * 72 * 6 + OLDER_ROWS


def test_one_compacted_object_per_partition_without_dt_inside(aws, scenario) -> None:
    assert scenario["keys1"] == [f"{USE_CASE}/dt=2025-01-0{d}/part-00000.parquet" for d in (1, 2, 3)]
    data = aws["s3"].get_object(Bucket=CURATED, Key=scenario["keys1"][0])["Body"].read()
    schema = pq.read_schema(io.BytesIO(data))
    assert schema.names == [name for name, _ in CONTRACT.curated_schema()]
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("failure").type == pa.int64()


def test_manifest_pins_every_object_by_version_and_sha(aws, scenario) -> None:
    run, pointer, manifest = scenario["runs"][0], scenario["pointers"][0], scenario["manifests"][0]
    assert pointer == {"snapshot_id": run["snapshot_id"], "manifest_key": run["manifest_key"]}
    assert run["manifest_key"] == f"_snapshots/{USE_CASE}/{run['snapshot_id']}.json"
    assert snapshot.load_manifest(json.dumps(manifest)) == manifest
    assert [o["key"] for o in manifest["objects"]] == scenario["keys1"]
    assert all(o["version_id"] for o in manifest["objects"])
    assert manifest["rows"] == run["rows_out"]
    assert [f["name"] for f in manifest["schema"]] == [name for name, _ in CONTRACT.curated_schema()]


def test_snapshot_reads_back_deduplicated_with_features(aws, scenario) -> None:
    table = snapshot.read_snapshot_objects(scenario["manifests"][0], fetcher(aws["s3"]))
    frame = table.to_pandas()
    assert not frame.duplicated(["pump_id", "timestamp"]).any()
    fixed = frame[frame["_source_key"] == "s3://landing/pump-health/batch-0-fix.csv"]
    assert len(fixed) == 12 * 3 and (fixed["dt"] == "2025-01-02").all()
    tie = frame[frame["timestamp"] == pd.Timestamp("2025-01-03 08:00", tz="UTC")]
    assert tie["vibration_rms"].tolist() == [99.0, 99.0, 99.0]
    check_features(table)


def test_older_raw_files_are_cast_to_the_contract(aws, scenario) -> None:
    assert "reading them by schema" in scenario["logs"][0]
    frame = snapshot.read_snapshot_objects(scenario["manifests"][0], fetcher(aws["s3"])).to_pandas()
    older = frame[frame["pump_id"] == "P-004"]
    assert len(older) == OLDER_ROWS
    assert older["operator_email"].isna().all()
    assert older["failure"].tolist() == [1] * OLDER_ROWS
    assert older["vibration_rms"].tolist() == [1.5 + i for i in range(OLDER_ROWS)]


def test_second_run_recomputes_only_touched_partitions(scenario) -> None:
    run = scenario["runs"][1]
    assert run["partitions"] == ["2025-01-03", "2025-01-04"]
    assert run["rows_in"] == scenario["raw_rows_2"]
    assert run["rows_out"] == 2 * 24 * 6 * 3
    assert run["rows_in"] == run["rows_out"] + run["duplicates_dropped"]
    assert run["snapshot_id"] != scenario["runs"][0]["snapshot_id"]


def test_untouched_partitions_keep_their_versions(scenario) -> None:
    before = {o["key"]: o for o in scenario["manifests"][0]["objects"]}
    after = {o["key"]: o for o in scenario["manifests"][1]["objects"]}
    assert sorted(after) == sorted(before) + [f"{USE_CASE}/dt=2025-01-04/part-00000.parquet"]
    for day in ("2025-01-01", "2025-01-02"):
        key = f"{USE_CASE}/dt={day}/part-00000.parquet"
        assert after[key] == before[key]
    key = f"{USE_CASE}/dt=2025-01-03/part-00000.parquet"
    assert after[key]["version_id"] != before[key]["version_id"]
    assert after[key]["sha256"] != before[key]["sha256"]


def test_new_rows_win_and_features_span_the_context_day(aws, scenario) -> None:
    table = snapshot.read_snapshot_objects(scenario["manifests"][1], fetcher(aws["s3"]))
    frame = table.to_pandas()
    assert (frame.loc[frame["dt"] >= "2025-01-03", "_source_key"] == "s3://landing/pump-health/batch-3.csv").all()
    check_features(table)


def test_older_snapshot_stays_readable(aws, scenario) -> None:
    table = snapshot.read_snapshot_objects(scenario["manifests"][0], fetcher(aws["s3"]))
    assert table.num_rows == scenario["manifests"][0]["rows"]
    assert sorted(set(table.column("dt").to_pylist())) == ["2025-01-01", "2025-01-02", "2025-01-03"]


def test_nothing_new_keeps_the_snapshot(scenario) -> None:
    second, third = scenario["runs"][1], scenario["runs"][2]
    assert third == {**second, "partitions": [], "rows_in": 0, "rows_out": 0, "duplicates_dropped": 0}
    assert scenario["manifests"][2] == scenario["manifests"][1]
    assert scenario["pointers"][2] == scenario["pointers"][1]
    assert "Spark" not in scenario["logs"][1]  # nothing to prepare: no Spark session started


def test_state_records_every_raw_object(aws, scenario) -> None:
    s3 = aws["s3"]
    state = get_json(s3, f"_state/{USE_CASE}.json")
    raw = s3.list_objects_v2(Bucket=RAW, Prefix=f"{USE_CASE}/")["Contents"]
    assert state["objects"] == {o["Key"]: o["ETag"].strip('"') for o in raw}
    assert state["snapshot_id"] == scenario["runs"][2]["snapshot_id"]


def test_every_run_leaves_its_report(aws, scenario) -> None:
    s3 = aws["s3"]
    listed = s3.list_objects_v2(Bucket=CURATED, Prefix=f"_runs/{USE_CASE}/")["Contents"]
    reports = [get_json(s3, o["Key"]) for o in sorted(listed, key=lambda o: o["Key"])]
    assert [{k: r[k] for k in scenario["runs"][0]} for r in reports] == scenario["runs"]


def test_explicit_partitions_recompute_exactly_those(aws, scenario, tmp_path) -> None:
    before = latest(aws["s3"])[1]
    run, _ = run_job(aws, tmp_path, "--partitions", "2025-01-02")
    assert run["partitions"] == ["2025-01-02"]
    assert run["rows_out"] == 24 * 6 * 3
    after = latest(aws["s3"])[1]
    changed = {o["key"] for o in after["objects"]} ^ {o["key"] for o in before["objects"]}
    assert not changed
    versions = {o["key"]: o["version_id"] for o in before["objects"]}
    moved = [o["key"] for o in after["objects"] if o["version_id"] != versions[o["key"]]]
    assert moved == [f"{USE_CASE}/dt=2025-01-02/part-00000.parquet"]
