"""The embedded CodeBuild runs builds: a project created with boto3, a zip with a buildspec in S3, builds started and
watched through the API as CodePipeline's executor does, their output in CloudWatch Logs."""

import io
import json
import time
import zipfile
from pathlib import Path

import pytest

#: One worker runs the module on one embedded AWS.
pytestmark = pytest.mark.xdist_group("local-codebuild")

#: The region of the tests' embedded AWS (tests/conftest.py).
TEST_REGION = "eu-central-1"
ACCOUNT = "123456789012"
BUCKET = "build-sources"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/gate-build"
ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = {"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0", "computeType": "BUILD_GENERAL1_SMALL"}


@pytest.fixture(scope="module")
def aws(embedded_aws):
    embedded_aws.client("s3").create_bucket(Bucket=BUCKET,
                                            CreateBucketConfiguration={"LocationConstraint": TEST_REGION})
    return embedded_aws


def _project(aws, name: str, buildspec: dict, *, files: dict[str, str] | None = None, **settings) -> str:
    """A project whose S3 source is a zip holding ``buildspec.json`` (and ``files``)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("buildspec.json", json.dumps(buildspec))
        for path, text in (files or {}).items():
            bundle.writestr(path, text)
    aws.client("s3").put_object(Bucket=BUCKET, Key=f"{name}/source.zip", Body=archive.getvalue())
    aws.client("codebuild").create_project(
        name=name, source={"type": "S3", "location": f"{BUCKET}/{name}/source.zip", "buildspec": "buildspec.json"},
        artifacts={"type": "NO_ARTIFACTS"}, serviceRole=ROLE, **{"environment": ENVIRONMENT, **settings})
    return name


def _wait(aws, build_id: str, seconds: float = 60) -> dict:
    codebuild = aws.client("codebuild")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        build = codebuild.batch_get_builds(ids=[build_id])["builds"][0]
        if build["buildComplete"]:
            return build
        time.sleep(0.3)
    raise AssertionError(f"build {build_id} did not complete in {seconds} s")


def _phases(build: dict) -> dict[str, dict]:
    return {phase["phaseType"]: phase for phase in build["phases"]}


def _log(aws, build: dict) -> list[str]:
    events = aws.client("logs").get_log_events(logGroupName=build["logs"]["groupName"],
                                               logStreamName=build["logs"]["streamName"])["events"]
    return [event["message"] for event in events]


def test_a_build_runs_its_phases_in_one_shell_and_exports_variables(aws):
    name = _project(aws, "exports", {
        "version": "0.2",
        "env": {"variables": {"GREETING": "from-buildspec", "TARGET": "buildspec"},
                "exported-variables": ["SUMMARY", "NEVER_SET"]},
        "phases": {
            "install": {"commands": ["export CARRIED=from-install", "cd nested"]},
            "build": {"commands": ['export SUMMARY="$CARRIED $GREETING $TARGET $(basename "$PWD") $(cat note.txt)"']},
        },
    }, files={"nested/note.txt": "unpacked"}, environment={
        **ENVIRONMENT, "environmentVariables": [{"name": "TARGET", "value": "project", "type": "PLAINTEXT"}]})

    started = aws.client("codebuild").start_build(
        projectName=name, environmentVariablesOverride=[{"name": "TARGET", "value": "override", "type": "PLAINTEXT"}])
    assert started["build"]["buildStatus"] == "IN_PROGRESS"
    build = _wait(aws, started["build"]["id"])

    assert build["buildStatus"] == "SUCCEEDED", build["phases"]
    assert build["exportedEnvironmentVariables"] == [
        {"name": "SUMMARY", "value": "from-install from-buildspec override nested unpacked"},
        {"name": "NEVER_SET", "value": ""}]
    assert [phase["phaseType"] for phase in build["phases"]] == [
        "SUBMITTED", "QUEUED", "PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD", "BUILD", "POST_BUILD",
        "UPLOAD_ARTIFACTS", "FINALIZING", "COMPLETED"]
    assert build["buildNumber"] == 1 and build["initiator"]
    assert aws.client("codebuild").list_builds_for_project(projectName=name)["ids"] == [build["id"]]


@pytest.mark.parametrize(("phases", "failed", "ran_post_build"), [
    pytest.param({"build": {"commands": ["echo building", "exit_status_3() { return 3; }; exit_status_3",
                                         "echo never"], "finally": ["echo finally ran"]},
                  "post_build": {"commands": ['echo "post_build ran, succeeding=$CODEBUILD_BUILD_SUCCEEDING"']}},
                 "BUILD", True, id="build-failure-still-runs-post-build"),
    pytest.param({"install": {"commands": ["false"]},
                  "build": {"commands": ["echo never"]},
                  "post_build": {"commands": ['echo "post_build ran, succeeding=$CODEBUILD_BUILD_SUCCEEDING"']}},
                 "INSTALL", False, id="install-failure-ends-the-build"),
])
def test_a_failing_command_fails_its_phase_with_codebuild_s_reason(aws, phases, failed, ran_post_build):
    name = _project(aws, f"fails-{failed.lower()}", {"version": "0.2", "phases": phases})

    build = _wait(aws, aws.client("codebuild").start_build(projectName=name)["build"]["id"])

    assert build["buildStatus"] == "FAILED"
    phase = _phases(build)[failed]
    command = phases[failed.lower()]["commands"][-2 if failed == "BUILD" else 0]
    reason = f"exit status {3 if failed == 'BUILD' else 1}"
    assert phase["phaseStatus"] == "FAILED"
    assert phase["contexts"] == [{"statusCode": "COMMAND_EXECUTION_ERROR",
                                  "message": f"Error while executing command: {command}. Reason: {reason}"}]
    log = _log(aws, build)
    assert "never" not in log
    assert ("post_build ran, succeeding=0" in log) is ran_post_build
    assert ("POST_BUILD" in _phases(build)) is ran_post_build
    if failed == "BUILD":
        assert "finally ran" in log


def test_the_aws_cli_in_a_build_writes_to_the_embedded_s3_as_the_project_s_role(aws):
    name = _project(aws, "cli", {"version": "0.2", "phases": {"build": {"commands": [
        "echo report > report.txt",
        f"aws s3 cp report.txt s3://{BUCKET}/reports/$CODEBUILD_BUILD_NUMBER.txt",
        "aws sts get-caller-identity --query Arn --output text",
    ]}}})

    build = _wait(aws, aws.client("codebuild").start_build(projectName=name)["build"]["id"])

    assert build["buildStatus"] == "SUCCEEDED", _log(aws, build)
    body = aws.client("s3").get_object(Bucket=BUCKET, Key="reports/1.txt")["Body"].read()
    assert body == b"report\n"
    log = _log(aws, build)
    assert f"arn:aws:sts::{ACCOUNT}:assumed-role/gate-build/AWSCodeBuild-{build['id'].split(':')[-1]}" in log
    assert any(line.endswith(f"Running command aws s3 cp report.txt s3://{BUCKET}/reports/"
                             "$CODEBUILD_BUILD_NUMBER.txt") for line in log)
    assert build["logs"]["groupName"] == f"/aws/codebuild/{name}"


def test_stop_build_ends_a_running_build_stopped(aws):
    name = _project(aws, "stops", {"version": "0.2", "phases": {"build": {"commands": ["sleep 60"]}}})
    codebuild = aws.client("codebuild")
    build_id = codebuild.start_build(projectName=name)["build"]["id"]
    deadline = time.monotonic() + 30
    while _phases(codebuild.batch_get_builds(ids=[build_id])["builds"][0]).get("BUILD") is None:
        assert time.monotonic() < deadline, "the build never reached its BUILD phase"
        time.sleep(0.2)

    codebuild.stop_build(id=build_id)
    build = _wait(aws, build_id, seconds=20)

    assert build["buildStatus"] == "STOPPED"
    assert _phases(build)["BUILD"]["phaseStatus"] == "STOPPED"


def test_the_project_s_timeout_ends_a_build_timed_out(aws, monkeypatch):
    """The server runs in this process: a minute of the build's timeout is shortened to a fraction of a second."""
    from modelwerk.local.services.codebuild import models

    monkeypatch.setattr(models, "MINUTE_SECONDS", 0.4)
    name = _project(aws, "times-out", {"version": "0.2", "phases": {"build": {"commands": ["sleep 60"]}}},
                    timeoutInMinutes=5)

    build = _wait(aws, aws.client("codebuild").start_build(projectName=name)["build"]["id"], seconds=30)

    assert build["buildStatus"] == "TIMED_OUT"
    assert _phases(build)["BUILD"]["contexts"][0]["statusCode"] == "BUILD_TIMED_OUT"


@pytest.mark.slow
def test_the_promotion_gate_buildspec_fails_without_an_endpoint_and_exports_its_summary(aws):
    """The gate's real buildspec and files, as the pipeline's source bundle carries them, started as the lead's
    CodePipeline executor starts it (source override, the action's variables)."""
    from cdk_constructs.promotion_pipeline import (BUILDSPEC_FILE, GATE_CASES_FILE, GATE_FOLDER, gate_buildspec)

    core = ROOT / "modelwerk" / "core"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(BUILDSPEC_FILE, json.dumps(gate_buildspec(["boto3==1.43.117"])))
        bundle.writestr(f"{GATE_FOLDER}/modelwerk/core/__init__.py", (core / "__init__.py").read_text())
        bundle.writestr(f"{GATE_FOLDER}/modelwerk/core/gate.py", (core / "gate.py").read_text())
        bundle.writestr(GATE_CASES_FILE, "case,x,expected,tolerance\nlow,1,2.0,0.5\n")
    aws.client("s3").put_object(Bucket=BUCKET, Key="pipeline/artifact.zip", Body=archive.getvalue())
    codebuild = aws.client("codebuild")
    codebuild.create_project(name="gate", source={"type": "CODEPIPELINE", "location": "codepipeline",
                                                  "buildspec": BUILDSPEC_FILE},
                             artifacts={"type": "CODEPIPELINE", "location": "codepipeline"},
                             environment=ENVIRONMENT, serviceRole=ROLE, timeoutInMinutes=20)
    variables = {"ENDPOINT": "no-such-endpoint", "BUDGET_MS": "200", "ENDPOINT_REGION": TEST_REGION,
                 "GATE_ROLE_ARN": "arn:aws:iam::222222222222:role/gate", "REPORT_BUCKET": BUCKET,
                 "REPORT_PREFIX": "gate-reports/", "EXECUTION_ID": "execution-1"}

    build = _wait(aws, codebuild.start_build(
        projectName="gate", sourceTypeOverride="S3", sourceLocationOverride=f"{BUCKET}/pipeline/artifact.zip",
        environmentVariablesOverride=[{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in variables.items()],
    )["build"]["id"], seconds=90)

    assert build["buildStatus"] == "FAILED", _log(aws, build)
    reason = _phases(build)["BUILD"]["contexts"][0]["message"]
    assert reason.startswith("Error while executing command: PYTHONPATH=") and reason.endswith("exit status 1")
    exported = {v["name"]: v["value"] for v in build["exportedEnvironmentVariables"]}
    assert exported["GATE_SUMMARY"].startswith("FAILED: 1 cases"), exported
    assert "no-such-endpoint" in exported["GATE_SUMMARY"] or "case low" in exported["GATE_SUMMARY"]
    assert exported["GATE_REPORT_URL"].endswith("prefix=gate-reports/execution-1/gate.json")
    report = json.loads(aws.client("s3").get_object(Bucket=BUCKET,
                                                    Key="gate-reports/execution-1/gate.json")["Body"].read())
    assert report["passed"] is False


def test_a_build_the_server_was_running_when_it_stopped_is_failed_on_start(tmp_path):
    """A server's builds are recorded under its state folder; one left in progress did not finish."""
    from modelwerk.local.services import ServiceContext
    from modelwerk.local.services.codebuild.models import Builds

    folder = tmp_path / "codebuild" / "builds" / ACCOUNT / TEST_REGION
    folder.mkdir(parents=True)
    started = "2026-01-05T10:00:00+00:00"
    (folder / "0b9e.json").write_text(json.dumps({
        "id": "gate:0b9e", "arn": f"arn:aws:codebuild:{TEST_REGION}:{ACCOUNT}:build/gate:0b9e", "buildNumber": 4,
        "projectName": "gate", "startTime": started, "buildStatus": "IN_PROGRESS", "currentPhase": "BUILD",
        "buildComplete": False, "phases": [{"phaseType": "BUILD", "startTime": started}]}))
    builds = Builds()

    builds.start(ServiceContext(endpoint_url="http://127.0.0.1:9", state_dir=tmp_path))

    [build], missing = builds.batch_get_builds(ACCOUNT, TEST_REGION, ["gate:0b9e", "gate:other"])
    assert missing == ["gate:other"]
    assert (build["buildStatus"], build["buildComplete"]) == ("FAILED", True)
    assert _phases(build)["BUILD"]["contexts"] == [{"statusCode": "CLIENT_ERROR",
                                                    "message": "the embedded AWS stopped during this build"}]
