"""Through the deployed path (an upload into the landing bucket; the ingestion function, as `local up` deployed it,
reads the contract the stack published) a file is judged exactly as ``modelwerk.core.ingest`` judges it, zero bounds
included; and `data ingest` exits non-zero, still printing its report, when a file is rejected whole."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

import boto3
import pytest

from local_cli import ROOT, run_cli
from modelwerk.core.contract import Contract
from modelwerk.core.ingest import ingest_file

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode-reads")]

PUMP = Contract.load(ROOT / "sagemaker_pipelines" / "pump_health" / "contract.json")
GOOD = ["P-101", "plant-north", None, "ops@example.com", "1.5", "60", "100", "10", "1500", "100", "0"]


def _line(minute: int, **changes: str) -> str:
    values = dict(zip(PUMP.column_names, GOOD))
    values["timestamp"] = f"2024-05-01T00:{minute:02d}:00Z"
    values.update(changes)
    return ",".join(values[c] for c in PUMP.column_names)


def _ledger(s3, raw: str, key: str, body: bytes, timeout: float = 240.0) -> dict:
    ledger_key = (f"_ledger/pump-health/{hashlib.sha256(key.encode()).hexdigest()[:16]}-"
                  f"{hashlib.sha256(body).hexdigest()[:16]}.json")
    deadline = time.monotonic() + timeout
    while True:
        try:
            entry = json.loads(s3.get_object(Bucket=raw, Key=ledger_key)["Body"].read())
            if entry["status"] != "claimed":
                return entry
        except s3.exceptions.NoSuchKey:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no ledger record {ledger_key} within {timeout:.0f} s")
        time.sleep(1)


def test_the_deployed_function_quarantines_what_the_core_quarantines(local_mode):
    lines = [",".join(PUMP.column_names), _line(0), _line(10), _line(20, vibration_rms="-0.5"),
             _line(30, failure="-99999999"), _line(40, flow_m3h="-1", pressure_bar="-2"), _line(50, power_kw="0")]
    body = ("\n".join(lines) + "\n").encode()
    session = boto3.Session()
    ssm, s3 = session.client("ssm"), session.client("s3")
    landing, raw = (ssm.get_parameter(Name=f"/modelwerk/dev/buckets/{zone}")["Parameter"]["Value"]
                    for zone in ("landing", "raw"))
    key = f"pump-health/negative-readings-{time.time_ns()}.csv"

    s3.put_object(Bucket=landing, Key=key, Body=body)
    ledger = _ledger(s3, raw, key, body)

    core = ingest_file(body, "negative-readings.csv", PUMP, pseudonymization_key=b"k", source_key="s3://l/k",
                       ingested_at=dt.datetime.now(dt.timezone.utc)).report()
    assert (ledger["rows_in"], ledger["rows_accepted"], ledger["rows_quarantined"]) == (6, 3, 3)
    assert ledger["reasons"] == {"out_of_range:vibration_rms": 1, "out_of_range:failure": 1,
                                 "out_of_range:flow_m3h": 1}
    assert {k: ledger[k] for k in core} == core


def test_ingest_exits_non_zero_for_a_file_rejected_whole_and_still_prints_its_report(local_mode, cli_env, tmp_path):
    image = tmp_path / f"pumps-{time.time_ns()}.csv"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)

    result = run_cli("data", "ingest", "--use-case", "pump-health", str(image), "--json", env=cli_env, check=False)

    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert (report["files_quarantined"], report["rows_in"], report["reasons"]) == (1, 0, {"binary_file": 0})
    (rejected,) = report["rejected"]
    sha16 = hashlib.sha256(image.read_bytes()).hexdigest()[:16]
    assert rejected["reason"] == "binary_file"
    assert rejected["quarantined_to"].endswith(f"/pump-health/files/{sha16}/{image.name}")
    assert rejected["quarantined_to"] in result.stderr and "rejected whole (binary_file)" in result.stderr
