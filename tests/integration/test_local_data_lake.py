"""The data lake as a user drives it: `modelwerk local up`, generate, ingest, prepare, query, read a snapshot.

One embedded AWS for the module (started and stopped through the CLI, as a user would), Spark in local mode.
"""

from __future__ import annotations

import io
import json

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from local_cli import cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]


@pytest.fixture(scope="module")
def pump_files(local_mode, cli_env, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pump-files")
    first = folder / "pumps-day1.csv"
    second = folder / "pumps-day2.jsonl"
    cli_json("data", "generate", "--use-case", "pump-health", "--rows", "4000", "--seed", "1", "--bad-rows", "0.02",
             "--out", str(first), env=cli_env)
    cli_json("data", "generate", "--use-case", "pump-health", "--rows", "1500", "--seed", "2", "--out", str(second),
             env=cli_env)
    return first, second


@pytest.fixture(scope="module")
def first_ingest(pump_files, cli_env):
    return cli_json("data", "ingest", "--use-case", "pump-health", str(pump_files[0]), env=cli_env)


@pytest.fixture(scope="module")
def first_prepare(first_ingest, cli_env):
    return cli_json("data", "prepare", "--use-case", "pump-health", env=cli_env)


def _bucket(env: str, zone: str) -> str:
    return boto3.client("ssm").get_parameter(Name=f"/modelwerk/{env}/buckets/{zone}")["Parameter"]["Value"]


def test_local_up_reports_endpoint_region_and_one_account_per_environment(local_mode):
    assert local_mode["endpoint_url"].startswith("http://127.0.0.1:")
    assert set(local_mode["accounts"]) == {"dev", "staging", "prod", "registry"}
    assert len(set(local_mode["accounts"].values())) == 4


def test_registry_stage_lives_in_its_own_account(local_mode):
    from modelwerk import local

    registry = local.session("registry")
    assert registry.client("sts").get_caller_identity()["Account"] == local_mode["accounts"]["registry"]
    registry_buckets = {b["Name"] for b in registry.client("s3").list_buckets()["Buckets"]}
    dev_buckets = {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
    assert any("model-artifacts" in name for name in registry_buckets)
    assert not any("model-artifacts" in name for name in dev_buckets)
    groups = {g["ModelPackageGroupName"] for g in
              registry.client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"]}
    assert groups == {"modelwerk-pump-health", "modelwerk-energy-forecast"}


def test_status_lists_the_deployed_stacks(local_mode, cli_env):
    status = cli_json("local", "status", env=cli_env)
    assert status["running"] is True
    assert any(name.endswith("DataLake") for name in status["stacks"])


def test_ingest_counts_balance_and_bad_rows_are_quarantined_with_reasons(first_ingest):
    assert first_ingest["rows_in"] == first_ingest["rows_accepted"] + first_ingest["rows_quarantined"]
    assert first_ingest["rows_quarantined"] > 0
    assert sum(first_ingest["reasons"].values()) == first_ingest["rows_quarantined"]
    assert all(":" in reason or reason in ("duplicate_key", "malformed_row") for reason in first_ingest["reasons"])


def test_quarantined_rows_carry_their_reason(first_ingest, local_mode):
    s3 = boto3.client("s3")
    bucket = _bucket("dev", "quarantine")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="pump-health/rows/").get("Contents", [])]
    assert keys
    lines = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read().decode().splitlines()
    assert all(json.loads(line)["_reason"] for line in lines)


def test_raw_rows_are_partitioned_and_personal_data_pseudonymized(first_ingest, local_mode):
    s3 = boto3.client("s3")
    bucket = _bucket("dev", "raw")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="pump-health/").get("Contents", [])]
    assert keys and all("/dt=" in key and key.endswith(".parquet") for key in keys)
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()))
    emails = [e for e in table.column("operator_email").to_pylist() if e is not None]
    assert emails and not any("@" in e for e in emails)


def test_reingesting_the_same_file_adds_nothing(first_ingest, pump_files, cli_env):
    again = cli_json("data", "ingest", "--use-case", "pump-health", str(pump_files[0]), env=cli_env)
    assert again["rows_accepted"] == 0
    assert again["files"][0]["status"] == "already_ingested"


def test_a_binary_file_is_quarantined_whole(local_mode, cli_env, tmp_path):
    binary = tmp_path / "firmware.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    report = cli_json("data", "ingest", "--use-case", "pump-health", str(binary), env=cli_env)
    assert report["files_quarantined"] == 1
    assert report["rows_in"] == report["rows_accepted"] + report["rows_quarantined"]


def test_prepare_balances_and_names_the_snapshot_and_table(first_prepare, first_ingest):
    assert first_prepare["rows_in"] == first_prepare["rows_out"] + first_prepare["duplicates_dropped"]
    assert first_prepare["rows_in"] == first_ingest["rows_accepted"]
    assert first_prepare["database"] == "modelwerk_dev_curated"
    assert first_prepare["table"] == "pump_health"
    assert len(first_prepare["snapshot_id"]) == 16


def test_query_reads_the_curated_table_through_the_catalog(first_prepare, cli_env):
    result = cli_json("data", "query", "SELECT count(*) AS n FROM modelwerk_dev_curated.pump_health", env=cli_env)
    assert result["columns"] == ["n"]
    assert result["rows"] == [[first_prepare["rows_out"]]]


def test_unmodified_awswrangler_reads_the_curated_table(first_prepare, local_mode):
    import awswrangler as wr

    frame = wr.s3.read_parquet_table(database="modelwerk_dev_curated", table="pump_health")
    assert len(frame) == first_prepare["rows_out"]
    assert "vibration_rms_mean_6h" in frame.columns


def test_snapshots_pin_exact_versions(first_prepare, pump_files, cli_env, local_mode):
    from modelwerk import data

    before = data.read_curated("pump-health", first_prepare["snapshot_id"])
    assert len(before) == first_prepare["rows_out"]
    cli_json("data", "ingest", "--use-case", "pump-health", str(pump_files[1]), env=cli_env)
    second = cli_json("data", "prepare", "--use-case", "pump-health", env=cli_env)
    assert second["snapshot_id"] != first_prepare["snapshot_id"]
    latest = data.read_curated("pump-health")
    assert latest.attrs["snapshot_id"] == second["snapshot_id"]
    again = data.read_curated("pump-health", first_prepare["snapshot_id"])
    pd.testing.assert_frame_equal(before.reset_index(drop=True), again.reset_index(drop=True))


def test_cli_errors_are_one_sentence_without_traceback(local_mode, cli_env):
    result = run_cli("data", "ingest", "--use-case", "no-such-case", "missing.csv", env=cli_env, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no-such-case" in result.stderr


def test_second_use_case_flows_end_to_end(local_mode, cli_env, tmp_path):
    path = tmp_path / "energy.parquet"
    cli_json("data", "generate", "--use-case", "energy-forecast", "--rows", "2000", "--seed", "3", "--out", str(path),
             env=cli_env)
    ingest = cli_json("data", "ingest", "--use-case", "energy-forecast", str(path), env=cli_env)
    assert ingest["rows_accepted"] == 2000
    prepared = cli_json("data", "prepare", "--use-case", "energy-forecast", env=cli_env)
    assert prepared["rows_out"] == 2000
    result = cli_json("data", "query", "SELECT count(*) FROM modelwerk_dev_curated.energy_forecast", env=cli_env)
    assert result["rows"] == [[2000]]
