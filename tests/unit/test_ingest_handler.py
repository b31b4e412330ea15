"""The ingestion Lambda (lambdas/ingest): a real EventBridge event, a fake context, S3/SSM/Secrets Manager in moto."""

from __future__ import annotations

import copy
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from modelwerk.core import layout
from modelwerk.core.contract import Contract
from modelwerk.core.ingest import raw_arrow_schema
from modelwerk.core.pseudonymize import pseudonymize_value
from modelwerk.local.lambdas import LambdaContext
from moto_fresh import fresh_mock_aws


# Invocations that ingest nothing (already ingested, skipped, failed) publish no metrics; Powertools warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ROOT = Path(__file__).resolve().parents[2]
EVENT = json.loads((ROOT / "tests" / "events" / "s3_object_created.json").read_text())
LANDING = EVENT["detail"]["bucket"]["name"]
RAW = "modelwerk-dev-raw-123456789012-eu-central-1"
QUARANTINE = "modelwerk-dev-quarantine-123456789012-eu-central-1"
PREFIX = "/modelwerk/dev/use-cases/"
SECRET_VALUE = "k" * 64
PUMP = Contract.load(ROOT / "sagemaker_pipelines" / "pump_health" / "contract.json")
HEADER = ",".join(PUMP.column_names)
GOOD_ROWS = [
    "P-001,plant-north,2024-03-01T23:50:00Z,ops@example.com,1.5,60,100,10,1500,100,0",
    "P-002,plant-south,2024-03-02T00:00:00Z,,2.5,61,110,11,1510,101,1",
]
BAD_ROW = "P-003,plant-west,2024-03-02T00:10:00Z,ops@example.com,1.5,60,100,10,1500,100,0"
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "eu-central-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "RAW_BUCKET": RAW,
    "QUARANTINE_BUCKET": QUARANTINE,
    "CONTRACT_PARAMETER_PREFIX": PREFIX,
    "POWERTOOLS_SERVICE_NAME": "ingest",
    "POWERTOOLS_METRICS_NAMESPACE": "Modelwerk",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


FakeContext = partial(LambdaContext, "modelwerk-dev-ingest", 2048, 300, "52fdfc07-2182-154f-163f-5f0f9a621d72",
                      "eu-central-1", "123456789012")


@dataclass
class Aws:
    s3: Any
    ssm: Any
    handler: Any
    landing: Any

    def land(self, key: str, body: bytes) -> dict[str, Any]:
        """Put a file into landing and return the EventBridge event S3 would send for it."""
        self.s3.put_object(Bucket=LANDING, Key=key, Body=body)
        event = copy.deepcopy(EVENT)
        event["detail"]["object"]["key"] = key
        event["detail"]["object"]["size"] = len(body)
        return event

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.handler.handler(event, FakeContext())

    def objects(self, bucket: str) -> dict[str, str]:
        listing = self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {o["Key"]: o["ETag"] for o in listing}

    def read(self, bucket: str, key: str) -> bytes:
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def handler_module() -> Iterator[Any]:
    """The handler imported once, with the Powertools environment set (Powertools reads it at import)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENVIRONMENT.items():
            patch.setenv(name, value)
        yield importlib.import_module("lambdas.ingest.handler")


@pytest.fixture
def aws(handler_module: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with fresh_mock_aws():
        s3 = boto3.client("s3")
        for bucket in (LANDING, RAW, QUARANTINE):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=f"{PREFIX}pump-health/contract", Value=PUMP.to_json(), Type="String")
        secret = boto3.client("secretsmanager").create_secret(
            Name="modelwerk/dev/pseudonymization-key", SecretString=SECRET_VALUE
        )
        monkeypatch.setenv("PSEUDONYMIZATION_SECRET_ARN", secret["ARN"])
        handler_module.landing.reset()
        yield Aws(s3=s3, ssm=ssm, handler=handler_module, landing=handler_module.landing)
        handler_module.landing.reset()


def csv(*lines: str) -> bytes:
    return ("\n".join([HEADER, *lines]) + "\n").encode()


def test_a_landed_csv_becomes_raw_parquet_per_day_quarantined_rows_and_a_ledger_record(aws: Aws) -> None:
    body = csv(*GOOD_ROWS, BAD_ROW)
    sha16 = layout.sha16(body)

    record = aws.invoke(aws.land("pump-health/readings-2024-03-01.csv", body))

    assert record["status"] == "ingested"
    assert (record["rows_in"], record["rows_accepted"], record["rows_quarantined"]) == (3, 2, 1)
    assert record["reasons"] == {"not_allowed:site": 1}
    assert record["raw_keys"] == [
        f"pump-health/dt=2024-03-01/{sha16}.parquet",
        f"pump-health/dt=2024-03-02/{sha16}.parquet",
    ]
    assert record["quarantine_keys"] == [f"pump-health/rows/dt={record['ingested_at'][:10]}/{sha16}.jsonl"]
    ledger = json.loads(
        aws.read(RAW, layout.ledger_key("pump-health", "pump-health/readings-2024-03-01.csv", record["sha256"]))
    )
    assert ledger == record


def test_raw_objects_hold_typed_pseudonymized_rows_without_the_partition_column(aws: Aws) -> None:
    record = aws.invoke(aws.land("pump-health/readings.csv", csv(*GOOD_ROWS)))

    table = pq.read_table(io.BytesIO(aws.read(RAW, record["raw_keys"][0])))

    assert table.schema == raw_arrow_schema(PUMP)
    assert table.column("operator_email").to_pylist() == [pseudonymize_value("ops@example.com", SECRET_VALUE.encode())]
    assert table.column("_source_key").to_pylist() == [f"s3://{LANDING}/pump-health/readings.csv"]


def test_quarantined_rows_are_json_lines_with_reason_row_and_source(aws: Aws) -> None:
    record = aws.invoke(aws.land("pump-health/readings.csv", csv(*GOOD_ROWS, BAD_ROW)))

    lines = aws.read(QUARANTINE, record["quarantine_keys"][0]).decode().splitlines()

    (quarantined,) = [json.loads(line) for line in lines]
    assert quarantined["_reason"] == "not_allowed:site"
    assert quarantined["_row"] == 3
    assert quarantined["_source_key"] == f"s3://{LANDING}/pump-health/readings.csv"
    assert quarantined["operator_email"] == pseudonymize_value("ops@example.com", SECRET_VALUE.encode())


def test_a_second_invocation_writes_nothing_and_reports_already_ingested(aws: Aws) -> None:
    event = aws.land("pump-health/readings.csv", csv(*GOOD_ROWS, BAD_ROW))
    first = aws.invoke(event)
    written = (aws.objects(RAW), aws.objects(QUARANTINE))

    second = aws.invoke(event)

    assert second["status"] == "already_ingested"
    assert {k: v for k, v in second.items() if k != "status"} == {k: v for k, v in first.items() if k != "status"}
    assert (aws.objects(RAW), aws.objects(QUARANTINE)) == written


def test_new_content_under_the_same_key_is_ingested_again(aws: Aws) -> None:
    aws.invoke(aws.land("pump-health/readings.csv", csv(GOOD_ROWS[0])))

    record = aws.invoke(aws.land("pump-health/readings.csv", csv(GOOD_ROWS[1])))

    assert record["status"] == "ingested"
    assert record["rows_accepted"] == 1


def test_a_rejected_file_is_copied_to_quarantine_with_its_reason(aws: Aws) -> None:
    body = b"pump_id,site\nP-001,plant-north\n"

    record = aws.invoke(aws.land("pump-health/short.csv", body))

    sha16 = layout.sha16(body)
    assert record["status"] == "quarantined"
    assert record["file_rejection"] == "missing_column:timestamp"
    assert record["raw_keys"] == []
    assert record["quarantine_keys"] == [
        f"pump-health/files/{sha16}/short.csv",
        f"pump-health/files/{sha16}/reason.json",
    ]
    assert aws.read(QUARANTINE, record["quarantine_keys"][0]) == body
    assert json.loads(aws.read(QUARANTINE, record["quarantine_keys"][1]))["reason"] == "missing_column:timestamp"
    assert aws.objects(RAW).keys() == {record["ledger_key"]}


def test_a_file_of_an_unknown_use_case_is_quarantined_whole(aws: Aws) -> None:
    record = aws.invoke(aws.land("weather/today.csv", b"a,b\n1,2\n"))

    assert record["status"] == "quarantined"
    assert record["reasons"] == {"unknown_use_case": 0}
    assert record["quarantine_keys"][0].startswith("weather/files/")
    assert aws.objects(RAW) == {}


def test_a_file_outside_any_use_case_folder_is_quarantined_whole(aws: Aws) -> None:
    record = aws.invoke(aws.land("stray.csv", b"a,b\n1,2\n"))

    assert record["file_rejection"] == "unknown_use_case"
    assert record["quarantine_keys"][0].startswith(f"{layout.UNKNOWN_USE_CASE_FOLDER}/files/")


def test_a_folder_placeholder_is_skipped(aws: Aws) -> None:
    record = aws.invoke(aws.land("pump-health/", b""))

    assert record["status"] == "skipped"
    assert aws.objects(QUARANTINE) == {}


def test_an_object_deleted_before_it_was_read_is_skipped(aws: Aws) -> None:
    event = aws.land("pump-health/readings.csv", csv(GOOD_ROWS[0]))
    aws.s3.delete_object(Bucket=LANDING, Key="pump-health/readings.csv")

    record = aws.invoke(event)

    assert (record["status"], record["reason"]) == ("skipped", "object_gone")
    assert aws.objects(RAW) == {}


def test_the_event_key_is_url_decoded(aws: Aws) -> None:
    aws.s3.put_object(Bucket=LANDING, Key="pump-health/readings 1+2.csv", Body=csv(GOOD_ROWS[0]))
    event = copy.deepcopy(EVENT)
    event["detail"]["object"]["key"] = "pump-health/readings+1%2B2.csv"

    record = aws.invoke(event)

    assert record["source_key"] == f"s3://{LANDING}/pump-health/readings 1+2.csv"
    assert record["rows_accepted"] == 1


def test_metrics_count_rows_and_quarantined_files(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    aws.invoke(aws.land("pump-health/readings.csv", csv(*GOOD_ROWS, BAD_ROW)))

    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]

    (document,) = emitted
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Modelwerk"
    assert document["UseCase"] == "pump-health"
    names = {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {"RowsIn", "RowsAccepted", "RowsQuarantined", "FilesQuarantined"}
    assert [document[name] for name in ("RowsIn", "RowsAccepted", "RowsQuarantined", "FilesQuarantined")] == [
        [3.0],
        [2.0],
        [1.0],
        [0.0],
    ]


def test_the_contract_is_cached_between_invocations(aws: Aws) -> None:
    aws.invoke(aws.land("pump-health/a.csv", csv(GOOD_ROWS[0])))
    aws.ssm.delete_parameter(Name=f"{PREFIX}pump-health/contract")

    record = aws.invoke(aws.land("pump-health/b.csv", csv(GOOD_ROWS[1])))

    assert record["status"] == "ingested"


def test_missing_configuration_names_the_variables(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAW_BUCKET")
    aws.landing.reset()

    with pytest.raises(RuntimeError, match="RAW_BUCKET"):
        aws.invoke(aws.land("pump-health/readings.csv", csv(GOOD_ROWS[0])))


ASSET_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import boto3
    from moto import mock_aws
    import handler
    import modelwerk.core.ingest
    assert modelwerk.core.ingest.__file__.startswith(sys.argv[1]), modelwerk.core.ingest.__file__
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("landing", "raw", "quarantine"):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        boto3.client("ssm").put_parameter(Name="/p/pump-health/contract", Value=sys.argv[2], Type="String")
        arn = boto3.client("secretsmanager").create_secret(Name="k", SecretString="key")["ARN"]
        import os
        os.environ.update(RAW_BUCKET="raw", QUARANTINE_BUCKET="quarantine", CONTRACT_PARAMETER_PREFIX="/p/",
                          PSEUDONYMIZATION_SECRET_ARN=arn)
        s3.put_object(Bucket="landing", Key="pump-health/a.csv", Body=sys.argv[3].encode())
        event = {"version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
                 "account": "123456789012", "time": "2024-03-01T00:00:00Z", "region": "eu-central-1",
                 "resources": [], "detail": {"version": "0", "bucket": {"name": "landing"},
                 "object": {"key": "pump-health/a.csv"}, "request-id": "r", "requester": "x"}}
        class Context:
            function_name = "f"; memory_limit_in_mb = 128; aws_request_id = "r"
            invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:f"
        print(json.dumps(handler.handler(event, Context())))
    """
)


def test_the_handler_runs_from_an_asset_folder_holding_only_itself_its_sibling_and_the_core(tmp_path: Path) -> None:
    asset = tmp_path / "asset"
    shutil.copytree(ROOT / "lambdas" / "ingest", asset, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "modelwerk" / "core", asset / "modelwerk" / "core", ignore=shutil.ignore_patterns("__pycache__")
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_"))}
    environment.update({k: v for k, v in ENVIRONMENT.items()})

    completed = subprocess.run(
        [sys.executable, "-I", "-c", ASSET_SCRIPT, str(asset), PUMP.to_json(), csv(*GOOD_ROWS).decode()],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (record["status"], record["rows_accepted"]) == ("ingested", 2)


# -- the ledger claim ---------------------------------------------------------------------------------------------


def _event(aws: Aws, key: str, body: bytes, event_id: str) -> dict[str, Any]:
    event = aws.land(key, body)
    event["id"] = event_id
    return event


def test_a_concurrent_second_ingestion_of_the_same_content_reports_already_ingested(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    body = csv(*GOOD_ROWS, BAD_ROW)
    first_event, second_event = (_event(aws, "pump-health/readings.csv", body, i) for i in ("event-1", "event-2"))
    checking, release = threading.Event(), threading.Event()
    ingest_file = aws.landing.ingest_file

    def slow_ingest_file(*args: Any, **kwargs: Any) -> Any:
        checking.set()
        release.wait(30)
        return ingest_file(*args, **kwargs)

    monkeypatch.setattr(aws.landing, "ingest_file", slow_ingest_file)
    results: dict[str, dict[str, Any]] = {}
    worker = threading.Thread(target=lambda: results.update(first=aws.invoke(first_event)))
    worker.start()
    assert checking.wait(30)

    second = aws.invoke(second_event)
    release.set()
    worker.join(30)

    assert (results["first"]["status"], second["status"]) == ("ingested", "already_ingested")
    assert [r["rows_in"] for r in (results["first"], second) if r["status"] == "ingested"] == [3]
    assert len([k for k in aws.objects(RAW) if k.endswith(".parquet")]) == 2


def _die_after_claiming(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next ingestion stops after its claim and leaves it behind, as a killed function does."""

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed")

    monkeypatch.setattr(aws.landing, "ingest_file", killed)
    monkeypatch.setattr(aws.landing, "_release", lambda *args: None)


def test_a_claim_left_by_a_dead_function_blocks_other_uploads_only_until_it_expires(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    aws.land("pump-health/readings.csv", csv(*GOOD_ROWS))
    start = dt.datetime(2024, 3, 2, 6, 0, tzinfo=dt.timezone.utc)
    ingest = partial(aws.landing.ingest_object, LANDING, "pump-health/readings.csv", run_seconds=300)
    with monkeypatch.context() as patch:
        _die_after_claiming(aws, patch)
        with pytest.raises(RuntimeError, match="killed"):
            ingest(claim_id="dead", now=start)

    during = ingest(claim_id="other", now=start + dt.timedelta(seconds=300))
    after = ingest(claim_id="other", now=start + dt.timedelta(seconds=300 + aws.landing.CLAIM_MARGIN_SECONDS + 1))

    assert (during["status"], during["claimed_by"]) == ("already_ingested", "dead")
    assert (after["status"], after["rows_accepted"]) == ("ingested", 2)


def test_a_retry_of_the_same_event_takes_its_own_claim_over_at_once(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    event = _event(aws, "pump-health/readings.csv", csv(*GOOD_ROWS), "event-1")
    with monkeypatch.context() as patch:
        _die_after_claiming(aws, patch)
        with pytest.raises(RuntimeError, match="killed"):
            aws.invoke(event)

    retried = aws.invoke(event)

    assert (retried["status"], retried["rows_accepted"]) == ("ingested", 2)


def test_a_failed_ingestion_gives_its_claim_back(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    body = csv(*GOOD_ROWS)
    with monkeypatch.context() as patch:
        patch.setattr(aws.landing, "ingest_file", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("failed")))
        with pytest.raises(RuntimeError, match="failed"):
            aws.invoke(_event(aws, "pump-health/readings.csv", body, "event-1"))

    assert aws.objects(RAW) == {}
    record = aws.invoke(_event(aws, "pump-health/readings.csv", body, "event-2"))
    assert (record["status"], record["rows_accepted"]) == ("ingested", 2)
