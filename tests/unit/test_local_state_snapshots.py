"""What survives the embedded AWS (modelwerk.local.state): which requests are snapshotted, moto's state round-tripped
through a snapshot, the processes a dead instance left found and stopped, and the verbs' message once it is gone."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import boto3
import pytest

from modelwerk.local import state
from moto_fresh import fresh_mock_aws


def _environ(method: str, path: str = "/", target: str = "", form: bool = False) -> dict:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO()}
    if target:
        environ["HTTP_X_AMZ_TARGET"] = target
    if form:
        environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded; charset=utf-8"
    return environ


@pytest.mark.parametrize(("environ", "body", "expected"), [
    (_environ("GET", "/bucket/key"), b"", False),
    (_environ("PUT", "/bucket/key"), b"data", True),
    (_environ("DELETE", "/bucket/key"), b"", True),
    (_environ("POST", "/", "SageMaker.DescribeEndpoint"), b"{}", False),
    (_environ("POST", "/", "SageMaker.ListModelPackages"), b"{}", False),
    (_environ("POST", "/", "SageMaker.UpdateModelPackage"), b"{}", True),
    (_environ("POST", "/", "AWSGlue.CreateTable"), b"{}", True),
    (_environ("POST", "/", form=True), b"Action=GetCallerIdentity&Version=2011-06-15", False),
    (_environ("POST", "/", form=True), b"Action=AssumeRole&Version=2011-06-15", True),
    (_environ("POST", "/endpoints/pumps/invocations"), b"1,2,3", False),
    (_environ("POST", "/modelwerk-api/server/ready"), b"{}", False),
    (_environ("POST", "/modelwerk-api/events/fire-schedule"), b"{}", True),
])
def test_only_requests_that_may_change_something_wait_for_a_snapshot(environ, body, expected):
    assert state.mutates(environ, body) is expected


def test_a_snapshot_brings_back_every_version_of_an_object_with_its_ids_and_times(tmp_path):
    with fresh_mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="lake")
        s3.put_bucket_versioning(Bucket="lake", VersioningConfiguration={"Status": "Enabled"})
        for body in (b"first", b"second"):
            s3.put_object(Bucket="lake", Key="raw/a.csv", Body=body)
        before = s3.list_object_versions(Bucket="lake")["Versions"]
        assert state.Snapshots(tmp_path).save(everything=True)
    with fresh_mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        assert s3.list_buckets()["Buckets"] == []
        assert state.Snapshots(tmp_path).restore()
        assert s3.list_object_versions(Bucket="lake")["Versions"] == before
        bodies = [s3.get_object(Bucket="lake", Key="raw/a.csv", VersionId=v["VersionId"])["Body"].read()
                  for v in before]
        assert sorted(bodies) == [b"first", b"second"]
    assert len(list((tmp_path / "local" / "aws" / "blobs").iterdir())) == 2  # one file per body, written once


def test_a_snapshot_writes_again_only_the_services_a_change_reached(tmp_path):
    manifest = tmp_path / "local" / "aws" / state.SNAPSHOT
    with fresh_mock_aws():
        snapshots = state.Snapshots(tmp_path)
        snapshots.track()
        try:
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="lake")
            assert snapshots.save()
            s3_file = json.loads(manifest.read_text())["moto.s3.models:s3_backends"]
            assert not snapshots.save()  # S3 pickled once more (it may have changed during the last one): unchanged
            boto3.client("glue", region_name="us-east-1").create_database(DatabaseInput={"Name": "lake_raw"})
            assert snapshots.save()
            files = json.loads(manifest.read_text())
            assert files["moto.s3.models:s3_backends"] == s3_file and "moto.glue.models:glue_backends" in files
            assert sorted(p.name for p in manifest.parent.glob("*.pickle")) == sorted(files.values())
        finally:
            snapshots.untrack()


def test_the_processes_of_a_dead_embedded_aws_are_found_by_their_marker_and_stopped(tmp_path):
    ours = tmp_path / "ours"
    theirs = tmp_path / "theirs"
    started = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env={**os.environ, state.MARKER: str(folder.resolve())}, start_new_session=True)
               for folder in (ours, theirs)]
    try:
        time.sleep(0.2)
        assert state.stop_leftovers(ours, timeout=5) == [started[0].pid]
        assert started[0].wait(timeout=5) is not None
        assert started[1].poll() is None  # another checkout's embedded AWS is left alone
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_a_verb_whose_aws_client_found_nothing_says_local_mode_is_not_running(tmp_path, monkeypatch):
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    from modelwerk import cli

    monkeypatch.setenv("MODELWERK_STATE_DIR", str(tmp_path))
    (tmp_path / "local" / "aws").mkdir(parents=True)
    (tmp_path / "local" / "aws" / state.SNAPSHOT).write_bytes(b"kept")
    expected = "local mode is not running; `modelwerk local up` starts it (your data is kept)"
    assert cli._local_mode_stopped(NoCredentialsError()) == expected
    try:
        raise RuntimeError("wrapped") from EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    except RuntimeError as error:
        assert cli._local_mode_stopped(error) == expected
    assert cli._local_mode_stopped(ValueError("a bad argument")) is None
