"""Data capture at the local SageMaker Runtime route: durable through a crash, once per call, flushed on a stop.

The route (``python -m modelwerk.local.runtime``) fronts a serving process with capture off, as local endpoints run;
the endpoint record's ``capture`` makes the route capture into the embedded S3, through its disk spool.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from serving_helpers import ROOT, ServingProcess, logistic_regression, numeric_columns, request, write_artifact

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("runtime-capture")]

BUCKET = "runtime-capture"
ROW = "0.1,0.2,0.3\n"


@pytest.fixture(scope="module")
def fleet(embedded_aws, tmp_path_factory):
    embedded_aws.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
        "LocationConstraint": "eu-central-1"})
    model, _ = logistic_regression(3)
    folder = write_artifact(tmp_path_factory.mktemp("model"), model, numeric_columns(3))
    server = ServingProcess(tmp_path_factory.mktemp("fleet") / "fleet.log", MODELWERK_MODEL_DIR=str(folder)).start()
    server.wait_ready()
    yield server
    server.stop()


class Runtime:
    """The route over one folder of records, its spool in ``spool``."""

    def __init__(self, embedded_aws, records, spool, log, flush_seconds: float):
        from modelwerk.local.server import free_port

        self.port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **embedded_aws.env,
               "PYTHONPATH": str(ROOT)}
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelwerk.local.runtime", "--port", str(self.port), "--endpoints-dir",
                 str(records), "--no-metrics", "--capture-spool", str(spool), "--capture-flush-seconds",
                 str(flush_seconds)], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if request(self.port, "GET", "/ping", timeout=1).status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the runtime did not start: {open(log).read()}")

    def invoke(self, endpoint: str, **headers: str):
        return request(self.port, "POST", f"/endpoints/{endpoint}/invocations", ROW,
                       {"Content-Type": "text/csv", **headers})

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)
        self.process.wait(60)


def _endpoint(records, name: str, fleet) -> str:
    records.mkdir(parents=True, exist_ok=True)
    (records / f"{name}.json").write_text(json.dumps({"endpoint": name, "variants": [{
        "name": "AllTraffic", "url": f"http://127.0.0.1:{fleet.port}", "weight": 1.0,
        "capture": {"EnableCapture": True, "InitialSamplingPercentage": 100,
                    "DestinationS3Uri": f"s3://{BUCKET}/capture"}}]}))
    return name


def _event_ids(embedded_aws, endpoint: str) -> list[str]:
    s3 = embedded_aws.client("s3")
    ids = []
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"capture/{endpoint}/AllTraffic/").get("Contents", []):
        for line in s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read().splitlines():
            record = json.loads(line)
            assert record["captureData"]["endpointInput"]["data"] == ROW
            ids.append(record["eventMetadata"]["eventId"])
    return ids


def _wait_for_ids(embedded_aws, endpoint: str, count: int, seconds: float = 20.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while True:
        ids = _event_ids(embedded_aws, endpoint)
        if len(ids) >= count or time.monotonic() > deadline:
            return ids
        time.sleep(0.25)


def test_answered_requests_are_captured_after_the_runtime_is_killed(embedded_aws, fleet, tmp_path):
    endpoint = _endpoint(tmp_path / "records", "killed", fleet)
    runtime = Runtime(embedded_aws, tmp_path / "records", tmp_path / "spool", tmp_path / "runtime.log", 600)
    answered = [runtime.invoke(endpoint).status for _ in range(25)]
    runtime.stop(signal.SIGKILL)  # nothing written to S3 yet: the spool holds every answered request

    assert answered == [200] * 25 and _event_ids(embedded_aws, endpoint) == []
    replay = Runtime(embedded_aws, tmp_path / "records", tmp_path / "spool", tmp_path / "runtime.log", 0.2)
    ids = _wait_for_ids(embedded_aws, endpoint, 25)
    replay.stop()

    assert len(ids) == 25 and len(set(ids)) == 25
    assert not list((tmp_path / "spool").glob("*.ready"))


def test_a_retried_call_is_captured_once_and_a_graceful_stop_writes_the_spool(embedded_aws, fleet, tmp_path):
    endpoint = _endpoint(tmp_path / "records", "retried", fleet)
    runtime = Runtime(embedded_aws, tmp_path / "records", tmp_path / "spool", tmp_path / "runtime.log", 600)
    call = "5d3f9a52-3f6e-4a38-9d6b-2b0c1f1e8a11"
    statuses = [runtime.invoke(endpoint, **{"amz-sdk-invocation-id": call}).status for _ in range(2)]
    statuses.append(runtime.invoke(endpoint).status)
    runtime.stop()

    assert statuses == [200, 200, 200]
    ids = _event_ids(embedded_aws, endpoint)
    assert sorted(ids).count(call) == 1 and len(ids) == 2
