"""The embedded CodePipeline through boto3 alone: a V2 pipeline created with CreatePipeline runs when started — an S3
source pinned by ``sourceRevisions``, a Lambda action answered through the job API with output variables that later
actions resolve, a manual approval answered with PutApprovalResult — and reports its executions, actions and state
in CodePipeline's shapes; a rejection, a failing job and an unsupported action type fail the execution with the
action's message; executions queue at an occupied stage; a stage rolls back to an earlier execution's artifacts."""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-codepipeline-api")]

BUCKET = "promotion-artifacts"
SOURCE_KEY = "source/package.zip"
PIPELINE = "release"
TOPIC = "approvals"

#: The job function: answers its job from the user parameters (fail, or succeed with an output variable).
HANDLER = '''
import json, boto3

def handler(event, context):
    job = event["CodePipeline.job"]
    parameters = json.loads(job["data"]["actionConfiguration"]["configuration"]["UserParameters"])
    codepipeline = boto3.client("codepipeline")
    if parameters.get("fail", "no") != "no":
        codepipeline.put_job_failure_result(jobId=job["id"], failureDetails={"type": "JobFailed",
                                                                            "message": parameters["fail"]})
    else:
        codepipeline.put_job_success_result(jobId=job["id"], outputVariables={
            "Echo": parameters["value"], "HasCredentials": str(bool(job["data"]["artifactCredentials"]["accessKeyId"]))})
'''


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _role(iam, name: str, service: str) -> str:
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": service}}]}))["Role"]["Arn"]


def _action(name: str, category: str, provider: str, configuration: dict, **more) -> dict:
    return {"name": name, "actionTypeId": {"category": category, "owner": "AWS", "provider": provider,
                                           "version": "1"}, "configuration": configuration, "runOrder": 1, **more}


@pytest.fixture(scope="module")
def aws(embedded_aws):
    s3, iam = embedded_aws.client("s3"), embedded_aws.client("iam")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    embedded_aws.client("lambda").create_function(
        FunctionName="job", Runtime="python3.12", Role=_role(iam, "job", "lambda.amazonaws.com"),
        Handler="app.handler", Timeout=30, Code={"ZipFile": _zip({"app.py": HANDLER})})
    topic = embedded_aws.client("sns").create_topic(Name=TOPIC)["TopicArn"]
    queue = embedded_aws.client("sqs").create_queue(QueueName="approval-mail")["QueueUrl"]
    queue_arn = embedded_aws.client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    embedded_aws.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                                         Attributes={"RawMessageDelivery": "true"})
    role = _role(iam, "pipeline", "codepipeline.amazonaws.com")
    stages = [
        {"name": "Source", "actions": [_action("Package", "Source", "S3", {
            "S3Bucket": BUCKET, "S3ObjectKey": SOURCE_KEY, "PollForSourceChanges": "false"},
            outputArtifacts=[{"name": "Package"}], namespace="SourceVariables")]},
        {"name": "Check", "actions": [_action("Job", "Invoke", "Lambda", {
            "FunctionName": "job",
            "UserParameters": '{"value": "#{variables.Version}@#{SourceVariables.VersionId}", '
                              '"fail": "#{variables.Fail}"}'},
            inputArtifacts=[{"name": "Package"}], namespace="Job")]},
        {"name": "Approve", "actions": [_action("Approve", "Approval", "Manual", {
            "NotificationArn": topic, "CustomData": "release #{Job.Echo}?"})]},
        {"name": "Record", "actions": [_action("Again", "Invoke", "Lambda", {
            "FunctionName": "job", "UserParameters": '{"value": "#{Job.Echo}", "fail": "no"}'})]},
    ]
    codepipeline = embedded_aws.client("codepipeline")
    codepipeline.create_pipeline(pipeline={
        "name": PIPELINE, "roleArn": role, "pipelineType": "V2", "executionMode": "QUEUED",
        "artifactStore": {"type": "S3", "location": BUCKET}, "stages": stages,
        "variables": [{"name": "Version", "defaultValue": "none"}, {"name": "Fail", "defaultValue": "no"}]})
    return embedded_aws, codepipeline, queue


def _upload(embedded_aws, text: str) -> str:
    return embedded_aws.client("s3").put_object(Bucket=BUCKET, Key=SOURCE_KEY,
                                                Body=_zip({"package.json": text}))["VersionId"]


def _start(codepipeline, version_id: str, **variables) -> str:
    given = {"variables": [{"name": k, "value": v} for k, v in variables.items()]} if variables else {}
    return codepipeline.start_pipeline_execution(
        name=PIPELINE, **given, sourceRevisions=[{"actionName": "Package", "revisionType": "S3_OBJECT_VERSION_ID",
                          "revisionValue": version_id}])["pipelineExecutionId"]


def _wait(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def _status(codepipeline, execution: str) -> str:
    return codepipeline.get_pipeline_execution(pipelineName=PIPELINE, pipelineExecutionId=execution)[
        "pipelineExecution"]["status"]


def _approval_token(codepipeline, execution: str) -> str | None:
    state = codepipeline.get_pipeline_state(name=PIPELINE)
    stage = next(s for s in state["stageStates"] if s["stageName"] == "Approve")
    latest = stage.get("latestExecution") or {}
    action = stage["actionStates"][0].get("latestExecution") or {}
    if latest.get("pipelineExecutionId") == execution and action.get("status") == "InProgress":
        return action.get("token")
    return None


def _approve(codepipeline, execution: str, status: str = "Approved") -> None:
    token = _wait(lambda: _approval_token(codepipeline, execution))
    codepipeline.put_approval_result(pipelineName=PIPELINE, stageName="Approve", actionName="Approve", token=token,
                                     result={"status": status, "summary": f"{status.lower()} by the test"})


def test_an_approved_execution_runs_every_action_with_its_variables(aws):
    embedded_aws, codepipeline, queue = aws
    version_id = _upload(embedded_aws, '{"n": 1}')
    _upload(embedded_aws, '{"n": 2}')  # a newer object: the execution must still take the version it was given
    execution = _start(codepipeline, version_id, Version="v1")

    _approve(codepipeline, execution)
    assert _wait(lambda: _status(codepipeline, execution) != "InProgress" and _status(codepipeline, execution)) \
        == "Succeeded"

    details = codepipeline.list_action_executions(pipelineName=PIPELINE,
                                                  filter={"pipelineExecutionId": execution})["actionExecutionDetails"]
    by_name = {d["actionName"]: d for d in details}
    assert [d["status"] for d in details] == ["Succeeded"] * 4
    assert by_name["Job"]["output"]["outputVariables"] == {"Echo": f"v1@{version_id}", "HasCredentials": "True"}
    assert by_name["Again"]["input"]["resolvedConfiguration"]["UserParameters"] == \
        f'{{"value": "v1@{version_id}", "fail": "no"}}'
    source = by_name["Package"]["output"]["outputArtifacts"][0]["s3location"]
    artifact = embedded_aws.client("s3").get_object(Bucket=source["bucket"], Key=source["key"])["Body"].read()
    assert zipfile.ZipFile(io.BytesIO(artifact)).read("package.json") == b'{"n": 1}'
    summary = codepipeline.list_pipeline_executions(pipelineName=PIPELINE)["pipelineExecutionSummaries"][0]
    assert summary["pipelineExecutionId"] == execution and summary["executionMode"] == "QUEUED"
    assert summary["sourceRevisions"][0]["revisionId"] == version_id
    message = json.loads(embedded_aws.client("sqs").receive_message(QueueUrl=queue, WaitTimeSeconds=5)[
        "Messages"][0]["Body"])
    assert message["approval"]["customData"] == f"release v1@{version_id}?"
    assert message["approval"]["pipelineName"] == PIPELINE


def test_a_rejection_fails_the_execution_with_the_approvers_summary(aws):
    embedded_aws, codepipeline, _ = aws
    execution = _start(codepipeline, _upload(embedded_aws, '{"n": 3}'), Version="v3")
    _approve(codepipeline, execution, "Rejected")
    assert _wait(lambda: _status(codepipeline, execution) != "InProgress" and _status(codepipeline, execution)) \
        == "Failed"
    found = codepipeline.get_pipeline_execution(pipelineName=PIPELINE, pipelineExecutionId=execution)
    assert "rejected by the test" in found["pipelineExecution"]["statusSummary"]
    state = codepipeline.get_pipeline_state(name=PIPELINE)
    record = next(s for s in state["stageStates"] if s["stageName"] == "Record")
    assert record.get("latestExecution", {}).get("pipelineExecutionId") != execution


def test_a_job_failure_fails_the_action_with_the_functions_message(aws):
    embedded_aws, codepipeline, _ = aws
    execution = _start(codepipeline, _upload(embedded_aws, '{"n": 4}'), Fail="the check found 2 problems")
    assert _wait(lambda: _status(codepipeline, execution) != "InProgress" and _status(codepipeline, execution)) \
        == "Failed"
    job = next(d for d in codepipeline.list_action_executions(
        pipelineName=PIPELINE, filter={"pipelineExecutionId": execution})["actionExecutionDetails"]
        if d["actionName"] == "Job")
    assert job["status"] == "Failed"
    assert job["output"]["executionResult"]["errorDetails"]["message"] == "the check found 2 problems"


def test_a_second_execution_waits_while_the_first_holds_the_approval_stage(aws):
    embedded_aws, codepipeline, _ = aws
    first = _start(codepipeline, _upload(embedded_aws, '{"n": 5}'), Version="v5")
    _wait(lambda: _approval_token(codepipeline, first))
    second = _start(codepipeline, _upload(embedded_aws, '{"n": 6}'), Version="v6")
    _wait(lambda: any(s.get("inboundExecution", {}).get("pipelineExecutionId") == second
                      for s in codepipeline.get_pipeline_state(name=PIPELINE)["stageStates"]))
    assert _approval_token(codepipeline, second) is None
    _approve(codepipeline, first)
    _approve(codepipeline, second)
    for execution in (first, second):
        assert _wait(lambda: _status(codepipeline, execution) != "InProgress" and _status(codepipeline, execution)) \
            == "Succeeded"


def test_a_stopped_execution_abandons_its_approval(aws):
    embedded_aws, codepipeline, _ = aws
    execution = _start(codepipeline, _upload(embedded_aws, '{"n": 7}'))
    _wait(lambda: _approval_token(codepipeline, execution))
    codepipeline.stop_pipeline_execution(pipelineName=PIPELINE, pipelineExecutionId=execution, abandon=True,
                                         reason="not this one")
    assert _wait(lambda: _status(codepipeline, execution) == "Stopped" and "Stopped")
    with pytest.raises(codepipeline.exceptions.PipelineExecutionNotStoppableException):
        codepipeline.stop_pipeline_execution(pipelineName=PIPELINE, pipelineExecutionId=execution)


def test_a_stage_rolls_back_to_an_earlier_executions_variables(aws):
    embedded_aws, codepipeline, _ = aws
    target = next(s["pipelineExecutionId"] for s in codepipeline.list_pipeline_executions(
        pipelineName=PIPELINE, filter={"succeededInStage": {"stageName": "Record"}})["pipelineExecutionSummaries"])
    rollback = codepipeline.rollback_stage(pipelineName=PIPELINE, stageName="Record",
                                           targetPipelineExecutionId=target)["pipelineExecutionId"]
    assert _wait(lambda: _status(codepipeline, rollback) != "InProgress" and _status(codepipeline, rollback)) \
        == "Succeeded"
    execution = codepipeline.get_pipeline_execution(pipelineName=PIPELINE, pipelineExecutionId=rollback)[
        "pipelineExecution"]
    assert execution["executionType"] == "ROLLBACK"
    assert execution["rollbackMetadata"]["rollbackTargetPipelineExecutionId"] == target
    actions = codepipeline.list_action_executions(pipelineName=PIPELINE, filter={"pipelineExecutionId": rollback})[
        "actionExecutionDetails"]
    assert [a["actionName"] for a in actions] == ["Again"]
    with pytest.raises(codepipeline.exceptions.PipelineExecutionOutdatedException):
        failed = next(s["pipelineExecutionId"] for s in codepipeline.list_pipeline_executions(
            pipelineName=PIPELINE)["pipelineExecutionSummaries"] if s["status"] == "Failed")
        codepipeline.rollback_stage(pipelineName=PIPELINE, stageName="Record", targetPipelineExecutionId=failed)


def test_unknown_variables_and_source_actions_are_refused_at_start(aws):
    embedded_aws, codepipeline, _ = aws
    with pytest.raises(codepipeline.exceptions.ClientError, match="not declared"):
        codepipeline.start_pipeline_execution(name=PIPELINE, variables=[{"name": "Nope", "value": "1"}])
    with pytest.raises(codepipeline.exceptions.ClientError, match="not a source action"):
        codepipeline.start_pipeline_execution(name=PIPELINE, sourceRevisions=[
            {"actionName": "Job", "revisionType": "S3_OBJECT_VERSION_ID", "revisionValue": "x"}])
    with pytest.raises(codepipeline.exceptions.PipelineNotFoundException):
        codepipeline.start_pipeline_execution(name="nope")
