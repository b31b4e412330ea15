"""The data lake as a user drives it, on the demo's local mode: what `local up` deployed, ingest (the deployed
function on the upload's event), prepare (the deployed Glue job), Athena over the curated table, snapshots.

The demo has ingested and prepared both use cases; the module lands one small pump-health file of its own (with bad
rows), prepares once, and checks every reader — the CLI's query, awswrangler with and without CTAS, read_curated —
against the curated snapshot's objects read with boto3 at their pinned versions and counted by DuckDB.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from local_cli import cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode-reads")]

USE_CASE = "pump-health"
ENVIRONMENTS = {"registry", "dev", "staging", "prod"}
#: What every reader of the curated table is asked, DuckDB over the snapshot's files included.
FIGURES = "SELECT count(*) AS n, count(DISTINCT pump_id) AS pumps, sum(failure) AS failures FROM {}"


@pytest.fixture(scope="module")
def dev(demo_ok):
    """A boto3 session in dev's account (its profile), and the lake's bucket names from SSM."""
    from modelwerk import platform

    session = platform.session("dev")
    ssm = session.client("ssm")
    buckets = {zone: ssm.get_parameter(Name=f"/modelwerk/dev/buckets/{zone}")["Parameter"]["Value"]
               for zone in ("landing", "raw", "quarantine", "curated")}
    workgroup = ssm.get_parameter(Name="/modelwerk/dev/athena/workgroup")["Parameter"]["Value"]
    return {"session": session, "s3": session.client("s3"), "buckets": buckets, "workgroup": workgroup}


@pytest.fixture(scope="module")
def landed(dev, cli_env, tmp_path_factory):
    """A small file of the module's own, 2% bad rows, through `data ingest`; its report and content hash."""
    path = tmp_path_factory.mktemp("lake") / "pumps-data-lake-test.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", "3000", "--seed", "101", "--bad-rows", "0.02",
             "--out", str(path), env=cli_env)
    report = cli_json("data", "ingest", "--use-case", USE_CASE, str(path), env=cli_env)
    return {"report": report, "sha16": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}


@pytest.fixture(scope="module")
def prepared(landed, cli_env):
    """`data prepare` after the module's file landed, with the snapshot that was latest before and its rows."""
    from modelwerk import data

    before = data.snapshot_manifest(USE_CASE)
    frame = data.read_curated(USE_CASE, before["snapshot_id"])
    report = cli_json("data", "prepare", "--use-case", USE_CASE, env=cli_env)
    return {"report": report, "before": before, "frame_before": frame}


def _manifest(dev, use_case: str) -> dict:
    curated, s3 = dev["buckets"]["curated"], dev["s3"]
    pointer = json.loads(s3.get_object(Bucket=curated, Key=f"_snapshots/{use_case}/latest.json")["Body"].read())
    return json.loads(s3.get_object(Bucket=curated, Key=f"_snapshots/{use_case}/{pointer['snapshot_id']}.json")[
        "Body"].read())


@pytest.fixture(scope="module")
def snapshot_files(prepared, dev, tmp_path_factory):
    """The latest pump-health snapshot's objects, fetched by boto3 at the versions its manifest pins (each checked
    against the manifest's sha256), under their keys; DuckDB's figures over them."""
    manifest = _manifest(dev, USE_CASE)
    folder = tmp_path_factory.mktemp("curated")
    for entry in manifest["objects"]:
        args = {"Bucket": manifest["bucket"], "Key": entry["key"]}
        if entry.get("version_id") and entry["version_id"] != "null":
            args["VersionId"] = entry["version_id"]
        body = dev["s3"].get_object(**args)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["key"]
        (folder / entry["key"]).parent.mkdir(parents=True, exist_ok=True)
        (folder / entry["key"]).write_bytes(body)
    files = [str(folder / entry["key"]) for entry in manifest["objects"]]
    (figures,) = duckdb.sql(FIGURES.format(f"read_parquet({files!r}, union_by_name = true)")).fetchall()
    return {"manifest": manifest, "folder": folder, "figures": tuple(int(x) for x in figures)}


# -- what local up deployed -------------------------------------------------------------------------------------------
def test_local_up_reports_endpoint_region_and_one_account_per_environment(local_mode):
    from modelwerk import platform

    assert local_mode["endpoint_url"].startswith("http://127.0.0.1:")
    assert set(local_mode["accounts"]) == ENVIRONMENTS
    assert len(set(local_mode["accounts"].values())) == 4
    assert Path(local_mode["aws_config_file"]).is_file()
    for env, account in local_mode["accounts"].items():
        assert platform.session(env).client("sts").get_caller_identity()["Account"] == account


def test_status_lists_every_environments_deployed_stacks(local_mode, cli_env):
    status = cli_json("local", "status", env=cli_env)
    assert status["running"] is True and status["accounts"] == local_mode["accounts"]
    prefixes = {name.split("-", 1)[0].lower() for name in status["stacks"]}
    assert prefixes == ENVIRONMENTS
    assert {f"{env.title()}-DataLake" for env in ("dev", "staging", "prod")} <= set(status["stacks"])
    assert {"Registry-ModelRegistry", "Registry-Promotion"} <= set(status["stacks"])


def test_the_registry_stage_lives_in_its_own_account(demo_ok):
    from modelwerk import platform

    registry = platform.session("registry")
    registry_buckets = {b["Name"] for b in registry.client("s3").list_buckets()["Buckets"]}
    dev_buckets = {b["Name"] for b in platform.session("dev").client("s3").list_buckets()["Buckets"]}
    assert any("model-artifacts" in name for name in registry_buckets)
    assert not any("model-artifacts" in name for name in dev_buckets)
    groups = {g["ModelPackageGroupName"] for g in
              registry.client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"]}
    assert {"modelwerk-pump-health", "modelwerk-energy-forecast"} <= groups


# -- ingest -----------------------------------------------------------------------------------------------------------
def test_ingest_counts_balance_and_bad_rows_are_quarantined_with_reasons(landed):
    report = landed["report"]
    assert report["rows_in"] == 3000
    assert report["rows_in"] == report["rows_accepted"] + report["rows_quarantined"]
    assert report["rows_quarantined"] > 0
    assert sum(report["reasons"].values()) == report["rows_quarantined"]
    assert all(":" in reason or reason in ("duplicate_key", "malformed_row") for reason in report["reasons"])


def test_quarantined_rows_carry_their_reason(landed, dev):
    s3, bucket = dev["s3"], dev["buckets"]["quarantine"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{USE_CASE}/rows/")["Contents"]
    (key,) = [o["Key"] for o in listed if o["Key"].endswith(f"/{landed['sha16']}.jsonl")]
    rows = [json.loads(line) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()]
    assert len(rows) == landed["report"]["rows_quarantined"]
    assert Counter(row["_reason"] for row in rows) == Counter(landed["report"]["reasons"])


def test_raw_rows_are_partitioned_and_personal_data_pseudonymized(landed, dev):
    s3, bucket = dev["s3"], dev["buckets"]["raw"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{USE_CASE}/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(
        f"/{landed['sha16']}.parquet")]
    assert keys and all("/dt=" in key for key in keys)
    tables = [pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) for key in keys]
    assert sum(t.num_rows for t in tables) == landed["report"]["rows_accepted"]
    emails = [e for t in tables for e in t.column("operator_email").to_pylist() if e is not None]
    assert emails and not any("@" in e for e in emails)


def test_reingesting_the_demos_file_adds_nothing(demo_ok, cli_env):
    again = cli_json("data", "ingest", "--use-case", USE_CASE, str(Path(demo_ok["work"]) / f"{USE_CASE}-1.csv"),
                     env=cli_env)
    assert again["rows_accepted"] == 0 and again["rows_in"] == 0
    assert [f["status"] for f in again["files"]] == ["already_ingested"]


def test_a_binary_file_is_quarantined_whole_with_its_reason(dev, cli_env, tmp_path):
    binary = tmp_path / "firmware.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    result = run_cli("data", "ingest", "--use-case", USE_CASE, str(binary), "--json", env=cli_env, check=False)
    assert result.returncode == 3, result.stderr  # a file rejected whole: the script can tell it from success
    report = json.loads(result.stdout)
    assert "rejected whole" in result.stderr and "s3://" in result.stderr
    assert report["files_quarantined"] == 1
    assert report["rows_in"] == report["rows_accepted"] + report["rows_quarantined"]
    sha16 = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    reason = dev["s3"].get_object(Bucket=dev["buckets"]["quarantine"],
                                  Key=f"{USE_CASE}/files/{sha16}/reason.json")["Body"].read()
    assert json.loads(reason)


def test_cli_errors_are_one_sentence_without_traceback(demo_ok, cli_env):
    result = run_cli("data", "ingest", "--use-case", "no-such-case", "missing.csv", env=cli_env, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no-such-case" in result.stderr


# -- prepare and snapshots --------------------------------------------------------------------------------------------
def test_prepare_balances_and_publishes_a_new_snapshot(prepared, landed, dev):
    report = prepared["report"]
    assert report["rows_in"] == report["rows_out"] + report["duplicates_dropped"]
    assert report["rows_in"] >= landed["report"]["rows_accepted"]
    assert (report["database"], report["table"]) == ("modelwerk_dev_curated", "pump_health")
    assert len(report["snapshot_id"]) == 16 and report["snapshot_id"] != prepared["before"]["snapshot_id"]
    assert _manifest(dev, USE_CASE)["snapshot_id"] == report["snapshot_id"]


def test_the_snapshots_objects_are_the_pinned_versions_with_their_sha256(snapshot_files, prepared):
    manifest = snapshot_files["manifest"]
    assert manifest["snapshot_id"] == prepared["report"]["snapshot_id"]
    assert snapshot_files["figures"][0] == sum(entry["rows"] for entry in manifest["objects"])


def test_read_curated_reads_the_snapshot_and_an_older_snapshot_still_reads_the_same(prepared, snapshot_files):
    from modelwerk import data

    latest = data.read_curated(USE_CASE)
    assert latest.attrs["snapshot_id"] == prepared["report"]["snapshot_id"]
    n, pumps, failures = snapshot_files["figures"]
    assert (len(latest), latest["pump_id"].nunique(), int(latest["failure"].sum())) == (n, pumps, failures)
    again = data.read_curated(USE_CASE, prepared["before"]["snapshot_id"])
    pd.testing.assert_frame_equal(prepared["frame_before"].reset_index(drop=True), again.reset_index(drop=True))


# -- readers of the curated table -------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_case", ["pump-health", "energy-forecast"])
def test_data_query_counts_what_the_curated_snapshot_holds(prepared, dev, cli_env, use_case):
    table = use_case.replace("-", "_")
    result = cli_json("data", "query", f"SELECT count(*) AS n FROM modelwerk_dev_curated.{table}", env=cli_env)
    assert result["columns"] == ["n"]
    assert result["rows"] == [[sum(entry["rows"] for entry in _manifest(dev, use_case)["objects"])]]


def test_awswrangler_without_ctas_counts_what_duckdb_counts_in_the_snapshots_files(snapshot_files, dev):
    import awswrangler as wr

    frame = wr.athena.read_sql_query(FIGURES.format("pump_health"), database="modelwerk_dev_curated",
                                     workgroup=dev["workgroup"], ctas_approach=False, boto3_session=dev["session"])
    assert tuple(int(x) for x in frame.iloc[0]) == snapshot_files["figures"]


def test_awswrangler_with_ctas_counts_the_same_and_drops_its_table(snapshot_files, dev):
    import awswrangler as wr

    frame = wr.athena.read_sql_query(FIGURES.format("pump_health"), database="modelwerk_dev_curated",
                                     workgroup=dev["workgroup"], boto3_session=dev["session"])
    assert tuple(int(x) for x in frame.iloc[0]) == snapshot_files["figures"]
    tables = dev["session"].client("glue").get_tables(DatabaseName="modelwerk_dev_curated")["TableList"]
    assert not [t["Name"] for t in tables if t["Name"].startswith("temp_table_")]


def test_awswrangler_reads_the_curated_table_through_the_catalog(snapshot_files, dev):
    import awswrangler as wr

    frame = wr.s3.read_parquet_table(database="modelwerk_dev_curated", table="pump_health",
                                     boto3_session=dev["session"])
    assert len(frame) == snapshot_files["figures"][0]
    assert "vibration_rms_mean_6h" in frame.columns
