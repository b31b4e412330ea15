"""Local state survives a crash (``kill -9``) of the embedded AWS and ``local down``/``up``, through real clients.

The first test runs the embedded AWS as ``local up`` runs it (a background process keeping its state) but without
the deployment, so it stays quick: a versioned lake with objects, the catalog, the registry and an endpoint with data
capture; ``kill -9``; a new one on the same records finds them all back with the same ids, version ids, ARNs and
times, and nothing the dead one started is left running. The second drives the CLI: ``local up``, a crash, the verbs'
message, ``local up`` again, ``local down`` leaving no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import numpy as np
import pytest
from local_cli import ROOT, cli_environment, cli_json, run_cli
from serving_helpers import wait_for, write_artifact
from sklearn.dummy import DummyClassifier

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-state")]

REGION = "eu-central-1"
BUCKET = "lake"
ENDPOINT = "pumps"
CAPTURE = {"EnableCapture": True, "InitialSamplingPercentage": 100, "DestinationS3Uri": f"s3://{BUCKET}/capture",
           "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]}
ROW = b"1.0,2.0,3.0\n"
WAIT = {"Delay": 1, "MaxAttempts": 120}


class Server:
    """``python -m modelwerk.local.server --persist`` on ``records``, as ``local up`` starts it."""

    def __init__(self, records: Path):
        from modelwerk.local.ports import free_port, wait_healthy
        from modelwerk.local.state import MARKER

        self.records = records
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env[MARKER] = str(records.resolve())
        with open(records / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelwerk.local.server", "--port", self.url.rsplit(":", 1)[1], "--root",
                 str(ROOT), "--state-dir", str(records), "--region", REGION, "--persist"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        assert wait_healthy(self.url, 60), (records / "server.log").read_text()[-2000:]
        self.session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        self.runtime_url = self.control("sagemaker/runtime")["url"]

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.url)

    def control(self, name: str) -> dict:
        request = urllib.request.Request(f"{self.url}/modelwerk-api/{name}", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def predict(self) -> str:
        runtime = self.session.client("sagemaker-runtime", endpoint_url=self.runtime_url)
        return runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=ROW, ContentType="text/csv")["Body"].read().decode()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def _marked(records: Path) -> list[int]:
    from modelwerk.local.state import _marked_processes

    return [pid for pid in _marked_processes(str(records.resolve())) if _alive(pid)]


def _alive(pid: int) -> bool:
    from modelwerk.local.state import _running

    return _running(pid)


def _what_clients_see(server: Server) -> dict:
    """Everything the test kept, as the APIs answer it."""
    s3, glue, sagemaker = server.client("s3"), server.client("glue"), server.client("sagemaker")
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="raw/")["Versions"]
    package = sagemaker.list_model_packages(ModelPackageGroupName="pumps")["ModelPackageSummaryList"][0]
    described = sagemaker.describe_model_package(ModelPackageName=package["ModelPackageArn"])
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    # the time SageMaker stored at CreateEndpoint (DescribeEndpoint's own differs from it by a millisecond)
    endpoint["CreationTime"] = sagemaker.list_endpoints()["Endpoints"][0]["CreationTime"]
    return {
        "versions": [(v["Key"], v["VersionId"], v["ETag"], v["LastModified"], v["IsLatest"]) for v in versions],
        "bodies": {v["VersionId"]: s3.get_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
                   for v in versions},
        "table": glue.get_table(DatabaseName="lake_raw", Name="readings")["Table"]["CreateTime"],
        "group": sagemaker.describe_model_package_group(ModelPackageGroupName="pumps")["CreationTime"],
        "package": {k: described.get(k) for k in ("ModelPackageArn", "ModelPackageVersion", "CreationTime",
                                                  "ModelApprovalStatus", "CustomerMetadataProperties")},
        "endpoint": {k: endpoint[k] for k in ("EndpointArn", "EndpointConfigName", "CreationTime")},
    }


def _captured(server: Server) -> list[str]:
    listed = server.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"capture/{ENDPOINT}/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_a_crashed_embedded_aws_comes_back_with_its_lake_catalog_registry_endpoints_and_captures(tmp_path):
    from modelwerk.local.state import stop_leftovers

    try:
        server = Server(tmp_path)
        s3, glue, sagemaker = server.client("s3"), server.client("glue"), server.client("sagemaker")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for body in (b"pump_id,flow\n1,2.5\n", b"pump_id,flow\n1,2.6\n"):  # two versions of one object
            s3.put_object(Bucket=BUCKET, Key="raw/readings.csv", Body=body)
        s3.put_object(Bucket=BUCKET, Key="raw/large.bin", Body=os.urandom(3 * 1024 * 1024))
        glue.create_database(DatabaseInput={"Name": "lake_raw"})
        glue.create_table(DatabaseName="lake_raw", TableInput={"Name": "readings", "StorageDescriptor": {
            "Columns": [{"Name": "flow", "Type": "double"}], "Location": f"s3://{BUCKET}/raw/"}})
        estimator = DummyClassifier(strategy="constant", constant=7).fit(np.zeros((4, 3)), [7, 7, 7, 7])
        artifact = write_artifact(tmp_path / "model", estimator, [("a", "double"), ("b", "double"), ("c", "double")],
                                  archive=True) / "model.tar.gz"
        s3.put_object(Bucket=BUCKET, Key="models/m7/model.tar.gz", Body=artifact.read_bytes())
        sagemaker.create_model_package_group(ModelPackageGroupName="pumps")
        arn = sagemaker.create_model_package(
            ModelPackageGroupName="pumps", ModelApprovalStatus="PendingManualApproval",
            CustomerMetadataProperties={"snapshot": "raw/readings.csv@v2"},
            InferenceSpecification={"Containers": [{"Image": "modelwerk-serving:latest",
                                                    "ModelDataUrl": f"s3://{BUCKET}/models/m7/model.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        )["ModelPackageArn"]
        marks = {"snapshot": "raw/readings.csv@v2", "mark": "champion"}
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved",
                                       CustomerMetadataProperties=marks)
        sagemaker.create_model(ModelName="m7", ExecutionRoleArn="arn:aws:iam::123456789012:role/endpoint",
                               PrimaryContainer={"ModelPackageName": arn})
        sagemaker.create_endpoint_config(EndpointConfigName="m7", DataCaptureConfig=CAPTURE, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "m7", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
        sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="m7")
        sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig=WAIT)
        assert server.predict().strip() == "7"
        captured = wait_for(lambda: _captured(server))
        before = _what_clients_see(server)
        started = _marked(tmp_path)
        assert len(started) >= 3  # the server, the SageMaker Runtime, the endpoint's fleet

        server.process.kill()  # kill -9: no last snapshot, no stopping of what it started
        server.process.wait()
        assert set(_marked(tmp_path)) >= set(started) - {server.process.pid}, "the dead server's processes ran on"

        stopped = stop_leftovers(tmp_path)  # what `local up` does first
        assert not _marked(tmp_path) and stopped
        again = Server(tmp_path)
        try:
            restored = again.control("server/state")
            assert restored["restored"] and restored["endpoints"] == [before["endpoint"]["EndpointArn"]]
            again.client("sagemaker").get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig=WAIT)
            assert _what_clients_see(again) == before
            assert set(captured) <= set(_captured(again))
            assert again.predict().strip() == "7"
            assert again.control("server/state")["failures"] == 0
        finally:
            again.stop()
        assert not _marked(tmp_path), "a stopped embedded AWS left processes running"
    finally:
        stop_leftovers(tmp_path)  # whatever a failed assertion left running


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    env = cli_environment(tmp_path_factory.mktemp("modelwerk-state"))
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance metadata to ask for credentials on a laptop
    return env


def test_local_up_after_a_crash_or_down_brings_the_deployed_platform_back(cli_env):
    records = Path(cli_env["MODELWERK_STATE_DIR"])
    _synthesize()
    started = time.monotonic()
    state = cli_json("local", "up", env=cli_env)
    first_up = time.monotonic() - started
    try:
        env = {**cli_env, "AWS_CONFIG_FILE": state["aws_config_file"], "AWS_PROFILE": "modelwerk-dev"}
        session = _profile_session(state)
        s3 = session.client("s3")
        bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if "raw" in b["Name"])
        for body in (b"v1", b"v2"):
            s3.put_object(Bucket=bucket, Key="state-test/a.csv", Body=body)
        versions = s3.list_object_versions(Bucket=bucket, Prefix="state-test/")["Versions"]
        stacks = cli_json("local", "status", env=cli_env)["stacks"]

        os.kill(state_pid(records), signal.SIGKILL)  # the embedded AWS crashes
        failed = run_cli("endpoints", "list", env=cli_env, check=False)
        assert failed.returncode == 2
        assert ("local mode is not running; `modelwerk local up` starts it (your data is kept)"
                in failed.stderr), failed.stderr
        failed = run_cli("endpoints", "list", env=env, check=False)
        assert "local mode is not running" in failed.stderr, failed.stderr

        started = time.monotonic()
        state = cli_json("local", "up", env=cli_env)
        restore_up = time.monotonic() - started
        session = _profile_session(state)
        assert session.client("s3").list_object_versions(Bucket=bucket, Prefix="state-test/")["Versions"] == versions
        assert cli_json("local", "status", env=cli_env)["stacks"] == stacks

        down = cli_json("local", "down", env=cli_env)
        assert down == {"stopped": True}
        assert not _marked(records), "local down left processes running"
        state = cli_json("local", "up", env=cli_env)
        assert _profile_session(state).client("s3").list_object_versions(
            Bucket=bucket, Prefix="state-test/")["Versions"] == versions
        print(f"local up: first {first_up:.1f} s, after a crash {restore_up:.1f} s")
    finally:
        run_cli("local", "down", "--discard", env=cli_env, check=False)
    assert not _marked(records)
    assert cli_json("local", "status", env=cli_env) == {"running": False}


def _synthesize() -> None:
    """The checkout's cdk.out, by one test process at a time (as the session's ``local_mode`` fixture does)."""
    import fcntl
    import hashlib
    import tempfile

    from modelwerk.local.assembly import synthesize

    name = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    with open(os.path.join(tempfile.gettempdir(), f"modelwerk-synth-{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        synthesize(ROOT)


def state_pid(records: Path) -> int:
    return json.loads((records / "local" / "server.json").read_text())["pid"]


def _profile_session(state: dict) -> boto3.Session:
    """dev's profile, as ``local up`` wrote it (the AWS configuration file is read when the session is made)."""
    import botocore.session

    core = botocore.session.Session(profile="modelwerk-dev")
    core.set_config_variable("config_file", state["aws_config_file"])
    core.set_config_variable("credentials_file", os.devnull)
    return boto3.Session(botocore_session=core)
