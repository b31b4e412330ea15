"""CodePipeline's execution operations: parameters in, outputs in botocore's shapes out (state in :mod:`.models`).

Pipelines themselves (Create/Get/Update/Delete/ListPipelines, tags) are moto's.
"""

from __future__ import annotations

from typing import Any

from modelwerk.local.services._routing import AwsError, Call, validation_error
from modelwerk.local.services.codepipeline.models import (
    IN_PROGRESS,
    SUCCEEDED,
    Executions,
    moment,
    pipeline_declaration,
)

_state: dict[str, Executions] = {}
DEFAULT_PAGE_SIZE = 100


def executions() -> Executions:
    if "executions" not in _state:
        raise AwsError("ServiceUnavailable", "the embedded CodePipeline is not running", 503)
    return _state["executions"]


def caller_arn(call: Call) -> str:
    """Who called: the assumed role's session ARN, else the account's root."""
    from moto.sts.models import sts_backends

    for partition in sts_backends[call.account].values():
        role = partition.get_assumed_role_from_access_key(call.access_key)
        if role is not None:
            return role.arn
    return f"arn:aws:iam::{call.account}:root"


def _page(items: list[Any], params: dict[str, Any], size: int = DEFAULT_PAGE_SIZE) -> tuple[list[Any], str | None]:
    """A page of ``items`` and the next token (the offset of the next page, as text)."""
    size = int(params.get("maxResults") or size)
    token = params.get("nextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise AwsError("InvalidNextTokenException", "The next token is not valid") from None
    page = items[start:start + size]
    return page, (str(start + size) if start + size < len(items) else None)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    out = {"pipelineExecutionId": record["id"], "status": record["status"],
           "startTime": moment(record["startTime"]), "lastUpdateTime": moment(record["lastUpdateTime"]),
           "sourceRevisions": record["sourceRevisions"], "trigger": record["trigger"],
           "executionMode": record["executionMode"], "executionType": record["executionType"]}
    if record.get("statusSummary"):
        out["statusSummary"] = record["statusSummary"]
    if record.get("rollbackMetadata"):
        out["rollbackMetadata"] = record["rollbackMetadata"]
    return out


def start_pipeline_execution(call: Call) -> dict[str, Any]:
    return {"pipelineExecutionId": executions().start(call.account, call.region, call.params, caller_arn(call))}


def get_pipeline_execution(call: Call) -> dict[str, Any]:
    record = executions()._record(call.account, call.region, call.params["pipelineName"],
                                  call.params["pipelineExecutionId"])
    out = {key: value for key, value in _summary(record).items()
           if key not in ("startTime", "lastUpdateTime", "sourceRevisions")}
    artifacts = [{**a, "created": moment(a.get("created"))} for a in record["artifactRevisions"]]
    out.update(pipelineName=record["pipelineName"], pipelineVersion=record["pipelineVersion"],
               artifactRevisions=artifacts, variables=record["variables"])
    return {"pipelineExecution": out}


def list_pipeline_executions(call: Call) -> dict[str, Any]:
    name = call.params["pipelineName"]
    pipeline_declaration(call.account, call.region, name)
    records = executions().of_pipeline(call.account, call.region, name)
    wanted = ((call.params.get("filter") or {}).get("succeededInStage") or {}).get("stageName")
    if wanted:
        records = [r for r in records if r["stages"].get(wanted, {}).get("status") == SUCCEEDED]
    page, token = _page(records, call.params)
    answer: dict[str, Any] = {"pipelineExecutionSummaries": [_summary(r) for r in page]}
    if token:
        answer["nextToken"] = token
    return answer


def _action_detail(record: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    detail = {key: entry[key] for key in ("pipelineExecutionId", "actionExecutionId", "pipelineVersion",
                                          "stageName", "actionName", "status")}
    detail.update(startTime=moment(entry["startTime"]), lastUpdateTime=moment(entry["lastUpdateTime"]),
                  input={k: v for k, v in entry["input"].items() if v is not None},
                  output=entry.get("output") or {})
    detail["input"]["inputArtifacts"] = [a for a in detail["input"].get("inputArtifacts", []) if a.get("s3location")]
    if entry.get("updatedBy"):
        detail["updatedBy"] = entry["updatedBy"]
    return detail


def list_action_executions(call: Call) -> dict[str, Any]:
    name = call.params["pipelineName"]
    pipeline_declaration(call.account, call.region, name)
    wanted = (call.params.get("filter") or {}).get("pipelineExecutionId")
    records = executions().of_pipeline(call.account, call.region, name)
    if wanted:
        records = [r for r in records if r["id"] == wanted]
        if not records:
            raise AwsError("PipelineExecutionNotFoundException",
                           f"Pipeline execution {wanted} not found in pipeline {name}")
    details = [_action_detail(r, e) for r in records for e in r["actions"]]
    details.sort(key=lambda d: d["startTime"], reverse=True)
    page, token = _page(details, call.params)
    answer: dict[str, Any] = {"actionExecutionDetails": page}
    if token:
        answer["nextToken"] = token
    return answer


def get_pipeline_state(call: Call) -> dict[str, Any]:
    name = call.params["name"]
    declaration, metadata = pipeline_declaration(call.account, call.region, name)
    records = executions().of_pipeline(call.account, call.region, name)
    states = []
    for stage in declaration["stages"]:
        entered = [r for r in records if r["stages"].get(stage["name"], {}).get("status") not in (None, "Pending",
                                                                                                   "Inbound")]
        waiting = [r for r in reversed(records) if r["status"] == IN_PROGRESS
                   and r["stages"].get(stage["name"], {}).get("status") == "Inbound"]
        state: dict[str, Any] = {"stageName": stage["name"], "inboundTransitionState": {"enabled": True},
                                 "actionStates": []}
        if entered:
            latest = entered[0]
            state["latestExecution"] = {"pipelineExecutionId": latest["id"],
                                        "status": latest["stages"][stage["name"]]["status"],
                                        "type": latest["executionType"]}
        if waiting:
            state["inboundExecution"] = {"pipelineExecutionId": waiting[0]["id"], "status": IN_PROGRESS}
            state["inboundExecutions"] = [{"pipelineExecutionId": r["id"], "status": IN_PROGRESS} for r in waiting]
        for action in stage["actions"]:
            action_state: dict[str, Any] = {"actionName": action["name"]}
            runs = [(r, e) for r in records for e in r["actions"]
                    if (e["stageName"], e["actionName"]) == (stage["name"], action["name"])]
            if runs:
                _, entry = max(runs, key=lambda pair: pair[1]["startTime"])
                result = (entry.get("output") or {}).get("executionResult") or {}
                latest_action = {"actionExecutionId": entry["actionExecutionId"], "status": entry["status"],
                                 "lastStatusChange": moment(entry["lastUpdateTime"]),
                                 **{k: result[k] for k in ("externalExecutionId", "externalExecutionUrl",
                                                           "errorDetails") if result.get(k)}}
                if entry.get("summary"):
                    latest_action["summary"] = entry["summary"]
                if entry.get("token"):
                    latest_action["token"] = entry["token"]
                if entry.get("updatedBy"):
                    latest_action["lastUpdatedBy"] = entry["updatedBy"]
                action_state["latestExecution"] = latest_action
            state["actionStates"].append(action_state)
        states.append(state)
    return {"pipelineName": name, "pipelineVersion": declaration.get("version", 1), "stageStates": states,
            "created": moment(metadata.get("created")), "updated": moment(metadata.get("updated"))}


def put_approval_result(call: Call) -> dict[str, Any]:
    status = call.params["result"]["status"]
    if status not in ("Approved", "Rejected"):
        raise validation_error(f"result.status must be Approved or Rejected, not {status}")
    return {"approvedAt": executions().put_approval_result(call.account, call.region, call.params, caller_arn(call))}


def stop_pipeline_execution(call: Call) -> dict[str, Any]:
    return {"pipelineExecutionId": executions().stop(call.account, call.region, call.params)}


def rollback_stage(call: Call) -> dict[str, Any]:
    return {"pipelineExecutionId": executions().rollback(call.account, call.region, call.params, caller_arn(call))}


def put_job_success_result(call: Call) -> dict[str, Any]:
    params = call.params
    executions().put_job_result(call.account, params["jobId"], {
        "status": "Succeeded", "outputVariables": params.get("outputVariables"),
        "executionDetails": params.get("executionDetails")})
    return {}


def put_job_failure_result(call: Call) -> dict[str, Any]:
    executions().put_job_result(call.account, call.params["jobId"], {
        "status": "Failed", "failureDetails": call.params["failureDetails"]})
    return {}


HANDLERS = {
    "StartPipelineExecution": start_pipeline_execution,
    "GetPipelineExecution": get_pipeline_execution,
    "ListPipelineExecutions": list_pipeline_executions,
    "ListActionExecutions": list_action_executions,
    "GetPipelineState": get_pipeline_state,
    "PutApprovalResult": put_approval_result,
    "StopPipelineExecution": stop_pipeline_execution,
    "RollbackStage": rollback_stage,
    "PutJobSuccessResult": put_job_success_result,
    "PutJobFailureResult": put_job_failure_result,
}
