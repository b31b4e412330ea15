"""SageMaker pipeline executions and the model registry of the embedded AWS, through plain boto3.

A small definition (a processing step running a one-line script, a condition on a parameter, a fail step) is created
with ``create_pipeline``; executions run it, report their steps, stop, and emit SageMaker's events. The registry keeps
what UpdateModelPackage is not given and emits the model package state change. The deployed training pipeline of
`local up`, started by ``start_pipeline_execution`` as any client would, is tests/integration/test_local_training.py's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import boto3
import pytest
from botocore.exceptions import ClientError

PIPELINE = "tiny-pipeline"
ROLE = "arn:aws:iam::123456789012:role/pipeline"
SCRIPT = "import sys, time; time.sleep(float(sys.argv[1])); print('slept', sys.argv[1])"
DEFINITION = {
    "Version": "2020-12-01",
    "Parameters": [{"Name": "Mode", "Type": "String", "DefaultValue": "pass"},
                   {"Name": "Seconds", "Type": "Integer", "DefaultValue": 0}],
    "Steps": [
        {"Name": "Work", "Type": "Processing", "DisplayName": "Sleep a while", "Arguments": {
            "AppSpecification": {"ImageUri": "local", "ContainerEntrypoint": ["python3", "-c", SCRIPT],
                                 "ContainerArguments": [{"Get": "Parameters.Seconds"}]},
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                      "VolumeSizeInGB": 1}},
            "RoleArn": ROLE}},
        {"Name": "Gate", "Type": "Condition", "DependsOn": ["Work"], "Arguments": {
            "Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Parameters.Mode"}, "RightValue": "pass"}],
            "IfSteps": [],
            "ElseSteps": [{"Name": "Refuse", "Type": "Fail", "Arguments": {"ErrorMessage": {"Std:Join": {
                "On": " ", "Values": ["mode", {"Get": "Parameters.Mode"}, "is refused"]}}}}]}},
    ],
}
EXECUTION_EVENTS = "SageMaker Model Building Pipeline Execution Status Change"
PACKAGE_EVENTS = "SageMaker Model Package State Change"


@pytest.fixture(scope="module")
def sagemaker(embedded_aws):
    client = embedded_aws.client("sagemaker")
    client.create_pipeline(PipelineName=PIPELINE, PipelineDefinition=json.dumps(DEFINITION), RoleArn=ROLE)
    return client


@pytest.fixture(scope="module")
def queues(embedded_aws):
    """An SQS queue per SageMaker event type, each the target of a rule on the default bus (moto delivers them)."""
    sqs, events = embedded_aws.client("sqs"), embedded_aws.client("events")
    urls = {}
    for name, detail_type in (("executions", EXECUTION_EVENTS), ("packages", PACKAGE_EVENTS)):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventPattern=json.dumps({"source": ["aws.sagemaker"],
                                                            "detail-type": [detail_type]}))
        events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
        urls[name] = url
    return urls


def received(embedded_aws, url: str) -> list[dict]:
    sqs, found = embedded_aws.client("sqs"), []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def start(sagemaker, **parameters) -> str:
    return sagemaker.start_pipeline_execution(
        PipelineName=PIPELINE, PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in parameters.items()],
    )["PipelineExecutionArn"]


def wait(sagemaker, arn: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
        if described["PipelineExecutionStatus"] in ("Succeeded", "Failed", "Stopped") or time.monotonic() > deadline:
            return described
        time.sleep(0.2)


def steps(sagemaker, arn: str) -> dict[str, dict]:
    listed = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"]
    return {step["StepName"]: step for step in listed}


@pytest.fixture(scope="module")
def succeeded(sagemaker, queues):
    arn = start(sagemaker, Seconds=1)
    first = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
    return arn, first, wait(sagemaker, arn)


def test_an_execution_runs_the_definition_and_reports_executing_then_succeeded(succeeded, sagemaker):
    arn, first, last = succeeded
    assert first["PipelineExecutionStatus"] == "Executing"
    assert last["PipelineExecutionStatus"] == "Succeeded"
    assert last["PipelineArn"] == arn.split("/execution/")[0]
    assert last["PipelineExecutionDisplayName"].startswith("execution-")
    assert last["PipelineExperimentConfig"] == {"ExperimentName": PIPELINE, "TrialName": arn.rsplit("/", 1)[-1]}
    assert last["LastModifiedTime"] >= last["CreationTime"]
    parameters = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert parameters == [{"Name": "Mode", "Value": "pass"}, {"Name": "Seconds", "Value": "1"}]
    definition = sagemaker.describe_pipeline_definition_for_execution(PipelineExecutionArn=arn)
    assert json.loads(definition["PipelineDefinition"]) == DEFINITION
    assert sagemaker.describe_pipeline(PipelineName=PIPELINE)["LastRunTime"] == last["CreationTime"]


def test_the_steps_of_an_execution_are_listed_latest_first_with_their_metadata(succeeded, sagemaker):
    arn, _, _ = succeeded
    listed = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"]
    assert [(s["StepName"], s["StepStatus"]) for s in listed] == [("Gate", "Succeeded"), ("Work", "Succeeded")]
    gate, work = listed
    assert gate["Metadata"] == {"Condition": {"Outcome": "True"}}
    assert work["StepDisplayName"] == "Sleep a while"
    assert work["Metadata"]["ProcessingJob"]["Arn"].startswith("arn:aws:sagemaker:eu-central-1:123456789012:"
                                                               "processing-job/pipelines-")
    assert (work["EndTime"] - work["StartTime"]).total_seconds() >= 1


def test_what_a_job_step_printed_is_in_its_cloudwatch_log_stream(succeeded, sagemaker, embedded_aws):
    arn, _, _ = succeeded
    job = steps(sagemaker, arn)["Work"]["Metadata"]["ProcessingJob"]["Arn"].rsplit("/", 1)[-1]
    logs = embedded_aws.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/ProcessingJobs")["logStreams"]
    (stream,) = [s for s in streams if s["logStreamName"].lower().startswith(f"{job}/")]  # ARNs are lower case
    printed = logs.get_log_events(logGroupName="/aws/sagemaker/ProcessingJobs", logStreamName=stream["logStreamName"])
    assert [e["message"] for e in printed["events"]] == ["slept 1"]


def test_a_fail_step_fails_the_execution_with_its_message(sagemaker):
    arn = start(sagemaker, Mode="strict")
    described = wait(sagemaker, arn)
    assert described["PipelineExecutionStatus"] == "Failed"
    assert described["FailureReason"] == "mode strict is refused"
    refuse = steps(sagemaker, arn)["Refuse"]
    assert refuse["StepStatus"] == "Failed"
    assert refuse["Metadata"] == {"Fail": {"ErrorMessage": "mode strict is refused"}}
    assert steps(sagemaker, arn)["Gate"]["Metadata"] == {"Condition": {"Outcome": "False"}}


def test_executions_are_listed_newest_first_and_paginated(succeeded, sagemaker):
    arn, _, _ = succeeded
    later = start(sagemaker)
    wait(sagemaker, later)
    summaries = sagemaker.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]
    arns = [s["PipelineExecutionArn"] for s in summaries]
    assert arns[0] == later and arn in arns
    first = sagemaker.list_pipeline_executions(PipelineName=PIPELINE, MaxResults=1, SortOrder="Ascending")
    assert len(first["PipelineExecutionSummaries"]) == 1 and first["NextToken"]
    paged = [s["PipelineExecutionArn"] for page in sagemaker.get_paginator("list_pipeline_executions").paginate(
        PipelineName=PIPELINE, PaginationConfig={"PageSize": 1}) for s in page["PipelineExecutionSummaries"]]
    assert paged == arns
    created = {s["PipelineExecutionArn"]: s["StartTime"] for s in summaries}
    newer = sagemaker.list_pipeline_executions(PipelineName=PIPELINE, CreatedAfter=created[arn])
    assert arn not in [s["PipelineExecutionArn"] for s in newer["PipelineExecutionSummaries"]]


@pytest.mark.parametrize(("parameters", "message"), [
    pytest.param([{"Name": "Speed", "Value": "1"}], "no parameter Speed", id="unknown-name"),
    pytest.param([{"Name": "Seconds", "Value": "soon"}], "Seconds takes a integer", id="bad-value"),
])
def test_a_bad_parameter_is_refused_before_anything_starts(sagemaker, parameters, message):
    before = len(sagemaker.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"])
    with pytest.raises(ClientError, match=message) as refused:
        sagemaker.start_pipeline_execution(PipelineName=PIPELINE, PipelineParameters=parameters)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert len(sagemaker.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]) == before


def test_stop_ends_the_running_step_and_the_execution_is_stopped(sagemaker):
    arn = start(sagemaker, Seconds=120)
    deadline = time.monotonic() + 20
    while steps(sagemaker, arn).get("Work", {}).get("StepStatus") != "Executing" and time.monotonic() < deadline:
        time.sleep(0.1)
    began = time.monotonic()
    sagemaker.stop_pipeline_execution(PipelineExecutionArn=arn)
    assert sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] in (
        "Stopping", "Stopped")
    assert wait(sagemaker, arn)["PipelineExecutionStatus"] == "Stopped"
    assert time.monotonic() - began < 15
    assert steps(sagemaker, arn)["Work"]["StepStatus"] == "Stopped"
    assert "Gate" not in steps(sagemaker, arn)
    with pytest.raises(ClientError, match="ConflictException"):
        sagemaker.stop_pipeline_execution(PipelineExecutionArn=arn)


def test_execution_status_changes_reach_a_rule_target(succeeded, embedded_aws, queues):
    arn, _, _ = succeeded
    events = [e for e in received(embedded_aws, queues["executions"]) if e["detail"]["pipelineExecutionArn"] == arn]
    changes = [(e["detail"].get("previousPipelineExecutionStatus"), e["detail"]["currentPipelineExecutionStatus"])
               for e in events]
    assert changes == [(None, "Executing"), ("Executing", "Succeeded")]
    final = events[-1]
    assert final["source"] == "aws.sagemaker" and final["resources"] == [arn.split("/execution/")[0], arn]
    assert final["detail"]["executionEndTime"].endswith("Z")


def test_update_model_package_keeps_what_it_is_not_given(sagemaker):
    sagemaker.create_model_package_group(ModelPackageGroupName="kept")
    arn = sagemaker.create_model_package(
        ModelPackageGroupName="kept", ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={"git_commit": "c0ffee", "snapshot_id": "s1", "draft": "yes"},
        InferenceSpecification={"Containers": [{"Image": "serving:1", "ModelDataUrl": "s3://b/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
    )["ModelPackageArn"]
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="good")
    sagemaker.update_model_package(ModelPackageArn=arn, CustomerMetadataPropertiesToRemove=["draft"],
                                   CustomerMetadataProperties={"promoted_to_prod_at": "2025-01-01T00:00:00Z"})
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["CustomerMetadataProperties"] == {"git_commit": "c0ffee", "snapshot_id": "s1",
                                                     "promoted_to_prod_at": "2025-01-01T00:00:00Z"}
    assert (package["ModelApprovalStatus"], package["ApprovalDescription"]) == ("Approved", "good")


def test_the_package_state_change_reaches_a_rule_target_on_creation_and_approval(sagemaker, embedded_aws, queues):
    sagemaker.create_model_package_group(ModelPackageGroupName="watched")
    arn = sagemaker.create_model_package(ModelPackageGroupName="watched", ModelApprovalStatus="PendingManualApproval",
                                         CustomerMetadataProperties={"git_commit": "c0ffee"})["ModelPackageArn"]
    sagemaker.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"note": "no state change"})
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    events = [e for e in received(embedded_aws, queues["packages"]) if e["resources"] == [arn]]
    assert [e["detail"]["ModelApprovalStatus"] for e in events] == ["PendingManualApproval", "Approved"]
    detail = events[-1]["detail"]
    assert (detail["ModelPackageGroupName"], detail["ModelPackageVersion"], detail["ModelPackageArn"]) == (
        "watched", 1, arn)
    assert detail["CustomerMetadataProperties"] == {"git_commit": "c0ffee", "note": "no state change"}
    assert detail["CreationTime"].endswith("Z") and events[-1]["source"] == "aws.sagemaker"


def test_a_group_policy_is_kept_answered_and_deleted(sagemaker):
    sagemaker.create_model_package_group(ModelPackageGroupName="shared")
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
        "Action": ["sagemaker:CreateModelPackage"], "Resource": "*"}]})
    put = sagemaker.put_model_package_group_policy(ModelPackageGroupName="shared", ResourcePolicy=policy)
    assert put["ModelPackageGroupArn"].endswith(":model-package-group/shared")
    assert sagemaker.get_model_package_group_policy(ModelPackageGroupName="shared")["ResourcePolicy"] == policy
    sagemaker.delete_model_package_group_policy(ModelPackageGroupName="shared")
    with pytest.raises(ClientError, match="Cannot find resource policy"):
        sagemaker.get_model_package_group_policy(ModelPackageGroupName="shared")


def client(url: str, service: str):
    return boto3.client(service, endpoint_url=url, region_name="eu-central-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def server_process(state_dir) -> tuple[subprocess.Popen, str]:
    """The embedded AWS in its own process, as `local up` starts it, keeping its records in ``state_dir``."""
    from modelwerk.local.server import free_port, wait_healthy

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen([sys.executable, "-m", "modelwerk.local.server", "--port", str(port), "--state-dir",
                                str(state_dir), "--region", "eu-central-1"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    assert wait_healthy(f"http://127.0.0.1:{port}", 60)
    return process, f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_an_execution_a_dead_server_left_executing_is_failed_when_the_server_starts_again(tmp_path):
    first, url = server_process(tmp_path)
    try:
        sagemaker = client(url, "sagemaker")
        sagemaker.create_pipeline(PipelineName=PIPELINE, PipelineDefinition=json.dumps(DEFINITION), RoleArn=ROLE)
        arn = start(sagemaker, Seconds=3)
        deadline = time.monotonic() + 20
        while steps(sagemaker, arn).get("Work", {}).get("StepStatus") != "Executing" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the server dies; its job's process ends by itself in 3 s
        first.wait()
    second, url = server_process(tmp_path)
    try:
        sagemaker = client(url, "sagemaker")
        described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
        assert described["PipelineExecutionStatus"] == "Failed"
        assert described["FailureReason"] == "the embedded AWS stopped while the execution ran"
        assert steps(sagemaker, arn)["Work"]["StepStatus"] == "Failed"
    finally:
        second.terminate()
        second.wait(timeout=30)
