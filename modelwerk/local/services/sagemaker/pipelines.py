"""SageMaker pipeline executions: the stored definition run by the local executor (requests in, AWS's answers out).

moto stores pipelines (CreatePipeline, DescribePipeline, ... stay moto's); every operation on an execution is
answered here from :mod:`.pipeline_executions`, in the shapes of botocore's SageMaker model.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from modelwerk.local.services._routing import AwsError, Call, validation_error
from modelwerk.local.services.sagemaker.pipeline_executions import (
    PipelineExecutions,
    parameter_list,
)

_executions: PipelineExecutions | None = None
_DEFAULT_PAGE = 50


def _service() -> PipelineExecutions:
    if _executions is None:
        raise AwsError("ServiceUnavailable", "the embedded SageMaker's pipeline executions have not started", 503)
    return _executions


def start_pipeline_execution(context: Any, *, account: str, region: str, pipeline: str,
                             parameters: Mapping[str, Any] | list[dict[str, Any]] | None = None,
                             display_name: str | None = None) -> str:
    """Start an execution of ``pipeline`` (name or ARN) in ``account``, as an EventBridge rule's SageMaker pipeline
    target does; its ARN. Raises :class:`AwsError` (ResourceNotFound, ValidationException) before anything runs."""
    service = _executions if _executions is not None and _executions.context is context else PipelineExecutions(context)
    return service.start(account, region, pipeline, parameters or [], display_name=display_name)


# -- pagination -------------------------------------------------------------------------------------------------------


def _page(items: list[Any], params: dict[str, Any], limit: int = 100) -> tuple[list[Any], str | None]:
    """One page of ``items`` from NextToken (an opaque offset) and MaxResults."""
    size = params.get("MaxResults") or _DEFAULT_PAGE
    if not 1 <= size <= limit:
        raise validation_error(f"MaxResults must be between 1 and {limit}")
    offset = 0
    if params.get("NextToken"):
        try:
            offset = int(base64.urlsafe_b64decode(params["NextToken"].encode()).decode())
        except (ValueError, binascii.Error):
            raise validation_error("Invalid pagination token") from None
    end = offset + size
    token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[offset:end], token


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# -- handlers ---------------------------------------------------------------------------------------------------------


def _start(call: Call) -> dict[str, Any]:
    params = call.params
    for member, reason in (("SelectiveExecutionConfig", "runs every step of the definition"),
                           ("PipelineVersionId", "keeps only the pipeline's latest definition"),
                           ("MlflowExperimentName", "has no MLflow tracking server")):
        if params.get(member) is not None:
            raise validation_error(f"{member} is not supported: the embedded SageMaker {reason}")
    arn = _service().start(call.account, call.region, params["PipelineName"], params.get("PipelineParameters") or [],
                           display_name=params.get("PipelineExecutionDisplayName"),
                           description=params.get("PipelineExecutionDescription"),
                           parallelism=params.get("ParallelismConfiguration"),
                           token=params.get("ClientRequestToken"))
    return {"PipelineExecutionArn": arn}


def _describe(call: Call) -> dict[str, Any]:
    service = _service()
    execution = service.load(call.params["PipelineExecutionArn"])
    answer: dict[str, Any] = {
        "PipelineArn": execution.arn.rsplit("/execution/", 1)[0],
        "PipelineExecutionArn": execution.arn,
        "PipelineExecutionDisplayName": execution.display_name,
        "PipelineExecutionStatus": service.status(execution),
        "PipelineExecutionDescription": execution.description,
        "PipelineExperimentConfig": service.experiment_config(execution),
        "FailureReason": execution.failure_reason,
        "CreationTime": datetime.fromisoformat(execution.started_at),
        "LastModifiedTime": datetime.fromisoformat(execution.updated_at or execution.started_at),
        "ParallelismConfiguration": execution.parallelism,
    }
    return {k: v for k, v in answer.items() if v not in (None, {})}


def _list(call: Call) -> dict[str, Any]:
    params = call.params
    after, before = _utc(params.get("CreatedAfter")), _utc(params.get("CreatedBefore"))
    found = []
    for execution in _service().executions(call.account, call.region, params["PipelineName"]):
        created = datetime.fromisoformat(execution.started_at)
        if (after and created <= after) or (before and created >= before):
            continue
        found.append((created, execution))
    by_arn = params.get("SortBy") == "PipelineExecutionArn"
    found.sort(key=lambda pair: pair[1].arn if by_arn else pair[0], reverse=params.get("SortOrder") != "Ascending")
    page, token = _page([execution for _, execution in found], params)
    service = _service()
    summaries = []
    for execution in page:
        summary = {"PipelineExecutionArn": execution.arn, "StartTime": datetime.fromisoformat(execution.started_at),
                   "PipelineExecutionStatus": service.status(execution),
                   "PipelineExecutionDescription": execution.description,
                   "PipelineExecutionDisplayName": execution.display_name,
                   "PipelineExecutionFailureReason": execution.failure_reason}
        summaries.append({k: v for k, v in summary.items() if v is not None})
    return {"PipelineExecutionSummaries": summaries, **({"NextToken": token} if token else {})}


def _steps(call: Call) -> dict[str, Any]:
    params = call.params
    if not params.get("PipelineExecutionArn"):
        raise validation_error("PipelineExecutionArn is required")
    service = _service()
    steps = service.steps(service.load(params["PipelineExecutionArn"]))
    if params.get("SortOrder") != "Ascending":  # SageMaker lists the latest step first
        steps.reverse()
    page, token = _page(steps, params)
    return {"PipelineExecutionSteps": page, **({"NextToken": token} if token else {})}


def _stop(call: Call) -> dict[str, Any]:
    return {"PipelineExecutionArn": _service().stop(call.params["PipelineExecutionArn"])}


def _definition(call: Call) -> dict[str, Any]:
    definition, created = _service().definition(call.params["PipelineExecutionArn"])
    return {"PipelineDefinition": definition, "CreationTime": created}


def _parameters(call: Call) -> dict[str, Any]:
    page, token = _page(parameter_list(_service().load(call.params["PipelineExecutionArn"])), call.params)
    return {"PipelineParameters": page, **({"NextToken": token} if token else {})}


def _retry(call: Call) -> dict[str, Any]:
    _service().load(call.params["PipelineExecutionArn"])
    raise validation_error("RetryPipelineExecution is not supported by the embedded SageMaker: start a new execution "
                           "(steps whose CacheConfig is enabled reuse the earlier results)")


HANDLERS: dict[str, Any] = {
    "StartPipelineExecution": _start,
    "DescribePipelineExecution": _describe,
    "ListPipelineExecutions": _list,
    "ListPipelineExecutionSteps": _steps,
    "StopPipelineExecution": _stop,
    "DescribePipelineDefinitionForExecution": _definition,
    "ListPipelineParametersForExecution": _parameters,
    "RetryPipelineExecution": _retry,
}
CONTROLS: dict[str, Any] = {}


def start(context: Any) -> None:
    """Executions a previous server left running are Failed now; new ones run on the server's threads."""
    global _executions
    _executions = PipelineExecutions(context)
    _executions.recover()


def stop() -> None:
    """Running executions end with the server (Failed: "the embedded AWS stopped while the execution ran")."""
    if _executions is not None:
        _executions.stop_all()
