"""The action types the embedded CodePipeline runs, each as CodePipeline runs it on AWS.

- ``Source/S3``: the object (the version ``sourceRevisions`` names, else the latest) copied into the artifact store.
- ``Deploy/CloudFormation`` (``CREATE_UPDATE``, ``REPLACE_ON_FAILURE``): the template from an input artifact deployed
  into the account of the action's role by the local deployer (:mod:`modelwerk.local.stack_deploy`), with the
  template configuration's parameters and tags and ``ParameterOverrides`` (``Fn::GetParam``) applied.
- ``Build/CodeBuild``: ``StartBuild`` of the project on the input artifact, with the action's environment
  variables; the build's exported variables become the action's output variables.
- ``Invoke/Lambda``: the function invoked with the CodePipeline job event (artifact credentials included); the
  action ends with the job result the function puts.
- ``Approval/Manual``: the notification topic is told, and the action waits for ``PutApprovalResult``.
Any other type fails its action with a message that says so.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from datetime import timedelta
from typing import Any

from modelwerk.local.services.codepipeline.models import (
    APPROVAL_EXPIRY,
    ActionFailed,
    ActionOutcome,
    ActionRun,
    now,
    role_account,
)

#: How often a build is looked at while it runs.
BUILD_POLL_SECONDS = 1.0
#: How long a Lambda action waits for its job result once the function has returned (CodePipeline waits an hour).
JOB_RESULT_SECONDS = 300.0
_SUPPORTED_STACK_MODES = ("CREATE_UPDATE", "REPLACE_ON_FAILURE")


def _s3(action: ActionRun, account: str | None = None) -> Any:
    return action.context.client("s3", account or action.account, action.region)


def _artifact_bytes(action: ActionRun, name: str) -> bytes:
    location = action.input_artifact(name)
    return _s3(action).get_object(Bucket=location["bucket"], Key=location["key"])["Body"].read()


def _artifact_file(action: ActionRun, reference: str, archives: dict[str, zipfile.ZipFile]) -> bytes:
    """``Artifact::path/in/zip`` read from the input artifact's zip."""
    artifact, separator, path = reference.partition("::")
    if not separator:
        raise ActionFailed(f"'{reference}' is not of the form ArtifactName::path", code="ConfigurationError")
    if artifact not in archives:
        try:
            archives[artifact] = zipfile.ZipFile(io.BytesIO(_artifact_bytes(action, artifact)))
        except zipfile.BadZipFile:
            raise ActionFailed(f"input artifact {artifact} is not a zip file", code="ConfigurationError") from None
    try:
        return archives[artifact].read(path)
    except KeyError:
        raise ActionFailed(f"{path} is not in input artifact {artifact}", code="ConfigurationError") from None


# -- Source/S3 ----------------------------------------------------------------------------------------------------
def s3_source(action: ActionRun) -> ActionOutcome:
    bucket, key = action.configuration["S3Bucket"], action.configuration["S3ObjectKey"]
    revision = action.record["requestedRevisions"].get(action.action["name"])
    s3 = _s3(action)
    request: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if revision:
        request["VersionId"] = revision["revisionValue"]
    try:
        source = s3.get_object(**request)
    except Exception as error:  # noqa: BLE001 - S3's refusal is the action's failure
        code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
        raise ActionFailed(f"The object s3://{bucket}/{key}" + (f" version {request['VersionId']}" if revision
                                                                  else "") + f" could not be read ({code})",
                           code="RevisionUnavailable") from None
    body = source["Body"].read()
    store = action.artifact_store
    artifacts = {}
    for output in action.action.get("outputArtifacts", []):
        artifact_key = action.new_artifact_key(output["name"])
        s3.put_object(Bucket=store["location"], Key=artifact_key, Body=body)
        artifacts[output["name"]] = {"bucket": store["location"], "key": artifact_key}
    version = source.get("VersionId") or "null"
    etag = (source.get("ETag") or "").strip('"')
    return ActionOutcome(summary=f"s3://{bucket}/{key} version {version}", external_id=version,
                         variables={"VersionId": version, "ETag": etag, "BucketName": bucket, "ObjectKey": key},
                         artifacts=artifacts, revision={"revisionId": version, "revisionSummary": f"{key} {version}"})


# -- Deploy/CloudFormation -----------------------------------------------------------------------------------------
def _parameter_value(value: Any, action: ActionRun, archives: dict[str, zipfile.ZipFile]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::GetParam" in value:
        artifact, path, name = value["Fn::GetParam"]
        try:
            document = json.loads(_artifact_file(action, f"{artifact}::{path}", archives))
        except ValueError:
            raise ActionFailed(f"{path} in {artifact} is not JSON (Fn::GetParam)", code="ConfigurationError") \
                from None
        if name not in document:
            raise ActionFailed(f"{path} in {artifact} has no key {name} (Fn::GetParam)", code="ConfigurationError")
        return str(document[name])
    if isinstance(value, dict) and "Fn::GetArtifactAtt" in value:
        artifact, attribute = value["Fn::GetArtifactAtt"]
        location = action.input_artifact(artifact)
        values = {"BucketName": location["bucket"], "ObjectKey": location["key"],
                  "URL": f"https://{location['bucket']}.s3.amazonaws.com/{location['key']}"}
        if attribute not in values:
            raise ActionFailed(f"Fn::GetArtifactAtt has no attribute {attribute}", code="ConfigurationError")
        return values[attribute]
    raise ActionFailed(f"parameter override {value!r} is neither text, Fn::GetParam nor Fn::GetArtifactAtt",
                       code="ConfigurationError")


def cloudformation_deploy(action: ActionRun) -> ActionOutcome:
    from modelwerk.local.stack_deploy import StackDeployFailed, deploy_stack_template

    config = action.configuration
    mode = config.get("ActionMode", "")
    if mode not in _SUPPORTED_STACK_MODES:
        raise ActionFailed(f"ActionMode {mode} is not run by the embedded AWS: it runs "
                           f"{' and '.join(_SUPPORTED_STACK_MODES)}", code="ConfigurationError")
    archives: dict[str, zipfile.ZipFile] = {}
    try:
        template = json.loads(_artifact_file(action, config["TemplatePath"], archives))
    except ValueError:
        raise ActionFailed(f"{config['TemplatePath']} is not a JSON template", code="ConfigurationError") from None
    parameters: dict[str, str] = {}
    tags: dict[str, str] = {}
    if config.get("TemplateConfiguration"):
        configuration = json.loads(_artifact_file(action, config["TemplateConfiguration"], archives))
        parameters.update({k: str(v) for k, v in (configuration.get("Parameters") or {}).items()})
        tags.update({k: str(v) for k, v in (configuration.get("Tags") or {}).items()})
    if config.get("ParameterOverrides"):
        try:
            overrides = json.loads(config["ParameterOverrides"])
        except ValueError:
            raise ActionFailed("ParameterOverrides is not a JSON object", code="ConfigurationError") from None
        parameters.update({k: _parameter_value(v, action, archives) for k, v in overrides.items()})
    target = role_account(action.entry["input"]["roleArn"], role_account(config.get("RoleArn"), action.account))
    session = action.context.session(target, action.region)
    stack = config["StackName"]
    try:
        result = deploy_stack_template(session, stack_name=stack, template=template, parameters=parameters,
                                       tags=tags, records=action.context.folder("cloudformation", target,
                                                                                action.region),
                                       progress=lambda message: action.set_external(summary=message),
                                       endpoint_url=action.context.endpoint_url)
    except StackDeployFailed as error:
        raise ActionFailed(f"Stack {stack} in account {target}: {error}", code="JobFailed") from None
    return ActionOutcome(summary=result.summary, external_id=result.stack_id,
                         variables={k: str(v) for k, v in (result.outputs or {}).items()})


# -- Build/CodeBuild -----------------------------------------------------------------------------------------------
def codebuild_build(action: ActionRun) -> ActionOutcome:
    config = action.configuration
    inputs = action.action.get("inputArtifacts", [])
    primary = config.get("PrimarySource") or (inputs[0]["name"] if inputs else None)
    request: dict[str, Any] = {"projectName": config["ProjectName"]}
    if primary:
        location = action.input_artifact(primary)
        request.update(sourceTypeOverride="S3", sourceLocationOverride=f"{location['bucket']}/{location['key']}")
    if config.get("EnvironmentVariables"):
        try:
            variables = json.loads(config["EnvironmentVariables"])
        except ValueError:
            raise ActionFailed("EnvironmentVariables is not a JSON list", code="ConfigurationError") from None
        request["environmentVariablesOverride"] = [
            {"name": v["name"], "value": v["value"], "type": v.get("type", "PLAINTEXT")} for v in variables]
    codebuild = action.context.client("codebuild", action.account, action.region)
    build = codebuild.start_build(**request)["build"]
    action.set_external(build["id"], "build started")
    while not build.get("buildComplete"):
        if action.stopped:
            codebuild.stop_build(id=build["id"])
            raise ActionFailed("the execution was stopped", external_id=build["id"])
        time.sleep(BUILD_POLL_SECONDS)
        build = codebuild.batch_get_builds(ids=[build["id"]])["builds"][0]
    status = build.get("buildStatus")
    if status != "SUCCEEDED":
        failed = [p for p in build.get("phases", []) if p.get("phaseStatus") not in (None, "SUCCEEDED")]
        phase = failed[0] if failed else {}
        context = (phase.get("contexts") or [{}])[0]
        raise ActionFailed(f"Build terminated with state: {status}. Phase: {phase.get('phaseType', 'unknown')} "
                           f"Code: {context.get('statusCode', status)} Message: {context.get('message', '')}".strip(),
                           external_id=build["id"])
    exported = {v["name"]: v.get("value", "") for v in build.get("exportedEnvironmentVariables", [])}
    return ActionOutcome(summary="Build succeeded", external_id=build["id"], variables=exported)


# -- Invoke/Lambda -------------------------------------------------------------------------------------------------
def lambda_invoke(action: ActionRun) -> ActionOutcome:
    executions = action.executions
    job_id, answered = executions.open_wait(action.record, action.entry, "job")
    credentials = action.context.credentials(action.account, action.region)
    inputs = [{"name": a["name"], "location": {"type": "S3", "s3Location": {
        "bucketName": action.input_artifact(a["name"])["bucket"],
        "objectKey": action.input_artifact(a["name"])["key"]}}} for a in action.action.get("inputArtifacts", [])]
    event = {"CodePipeline.job": {"id": job_id, "accountId": action.account, "data": {
        "actionConfiguration": {"configuration": {k: v for k, v in action.configuration.items()
                                                  if k in ("FunctionName", "UserParameters")}},
        "inputArtifacts": inputs, "outputArtifacts": [],
        "artifactCredentials": {"accessKeyId": credentials["AWS_ACCESS_KEY_ID"],
                                "secretAccessKey": credentials["AWS_SECRET_ACCESS_KEY"],
                                "sessionToken": credentials.get("AWS_SESSION_TOKEN", "")}}}}
    function = action.configuration["FunctionName"]
    action.set_external(job_id, f"invoking {function}")
    answer = action.context.client("lambda", action.account, action.region).invoke(
        FunctionName=function, Payload=json.dumps(event).encode("utf-8"))
    if answer.get("FunctionError") and not answered.is_set():
        payload = json.loads(answer["Payload"].read() or b"{}")
        raise ActionFailed(f"The Lambda function {function} failed without answering the job: "
                           f"{payload.get('errorType', 'Error')}: {payload.get('errorMessage', '')}",
                           external_id=job_id)
    if not executions.wait(action.record, answered, JOB_RESULT_SECONDS):
        if action.stopped:
            raise ActionFailed("the execution was stopped", external_id=job_id)
        raise ActionFailed(f"The Lambda function {function} returned without putting a job result "
                           "(PutJobSuccessResult or PutJobFailureResult) for job " + job_id, external_id=job_id)
    result = executions.job_result(job_id) or {}
    if result.get("status") == "Failed":
        details = result.get("failureDetails") or {}
        raise ActionFailed(details.get("message", "the function reported a failure"),
                           code=details.get("type", "JobFailed"), external_id=details.get("externalExecutionId"))
    execution = result.get("executionDetails") or {}
    return ActionOutcome(summary=execution.get("summary") or f"{function} succeeded",
                         external_id=execution.get("externalExecutionId") or job_id,
                         variables=dict(result.get("outputVariables") or {}))


# -- Approval/Manual -----------------------------------------------------------------------------------------------
def manual_approval(action: ActionRun) -> ActionOutcome:
    executions = action.executions
    token, answered = executions.open_wait(action.record, action.entry, "approval")
    config = action.configuration
    expires = now() + APPROVAL_EXPIRY
    record = action.record
    if config.get("NotificationArn"):
        message = {
            "region": action.region,
            "consoleLink": f"https://console.aws.amazon.com/codesuite/codepipeline/pipelines/{record['pipelineName']}"
                           f"/view?region={action.region}",
            "approval": {"pipelineName": record["pipelineName"], "stageName": action.entry["stageName"],
                         "actionName": action.entry["actionName"], "token": token,
                         "expires": expires.strftime("%Y-%m-%dT%H:%MZ"),
                         "externalEntityLink": config.get("ExternalEntityLink"),
                         "approvalReviewLink": f"https://console.aws.amazon.com/codesuite/codepipeline/pipelines/"
                                               f"{record['pipelineName']}/view?region={action.region}#/"
                                               f"{action.entry['stageName']}/{action.entry['actionName']}/approve/"
                                               f"{token}",
                         "customData": config.get("CustomData")}}
        topic = config["NotificationArn"]
        account = topic.split(":")[4] if topic.count(":") >= 5 else action.account
        action.context.client("sns", account, action.region).publish(
            TopicArn=topic, Subject=f"APPROVAL NEEDED: AWS CodePipeline {record['pipelineName']} for action "
                                    f"{action.entry['actionName']}"[:100], Message=json.dumps(message))
    action.set_external(summary=config.get("CustomData") or "waiting for approval")
    seconds = (expires - now()) / timedelta(seconds=1)
    if not executions.wait(record, answered, seconds):
        if action.stopped:
            raise ActionFailed("the execution was stopped")
        raise ActionFailed("The approval expired: nobody answered within seven days", code="JobFailed")
    approval = action.entry.get("approval") or {}
    if approval.get("status") != "Approved":
        raise ActionFailed(f"Rejected by {approval.get('by', 'an approver')}: {approval.get('summary', '')}",
                           code="JobFailed")
    return ActionOutcome(summary=approval.get("summary") or "Approved", external_id=str(uuid.uuid4()))


RUNNERS = {
    ("Source", "S3"): s3_source,
    ("Deploy", "CloudFormation"): cloudformation_deploy,
    ("Build", "CodeBuild"): codebuild_build,
    ("Invoke", "Lambda"): lambda_invoke,
    ("Approval", "Manual"): manual_approval,
}
