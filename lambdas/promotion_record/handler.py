"""Promotion record function: the promotion pipeline's last action, after prod's deploy, marks the version as in prod.

CodePipeline invokes it with the version's ARN as user parameters (``{"model_package_arn": ...}``, the pipeline
variable the source function set). It keeps ``promoted_to_prod_at`` with the version in the registry
(:mod:`modelwerk.core.promotion_marks`, which the library reads), so ``models.prod_version``, the guard of
``models reject`` and the source function (which ignores state changes of a version prod serves) see what prod
serves. It always answers the job: success with the moment as an output variable, or failure with the reason, so
the pipeline never waits for a function that gave up.

Environment: ``MODEL_PACKAGE_GROUP`` (the only group whose versions it marks).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import CodePipelineJobEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwerk.core import promotion_marks

logger = Logger(service="promotion-record")

ARN_PARAMETER = "model_package_arn"
_PACKAGE_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/(?P<group>[^/]+)/\d+$")
#: CodePipeline keeps at most this much of a failure message.
_MESSAGE_LIMIT = 5000


class PromotionRecordError(ValueError):
    """A job this function cannot record: no ARN, another group's version, or a registry that refused."""


@dataclass(frozen=True)
class Settings:
    group: str

    @classmethod
    def from_environment(cls) -> "Settings":
        if not os.environ.get("MODEL_PACKAGE_GROUP"):
            raise PromotionRecordError("the function's environment lacks MODEL_PACKAGE_GROUP")
        return cls(group=os.environ["MODEL_PACKAGE_GROUP"])


def package_arn(job: CodePipelineJobEvent, settings: Settings) -> str:
    """The version's ARN from the action's user parameters, checked to be a version of the configured group."""
    try:
        parameters = job.decoded_user_parameters
    except (TypeError, ValueError):
        raise PromotionRecordError("the action's user parameters are not JSON: expected "
                                   f'{{"{ARN_PARAMETER}": "<model package ARN>"}}') from None
    arn = parameters.get(ARN_PARAMETER) if isinstance(parameters, dict) else None
    if not isinstance(arn, str) or not arn:
        raise PromotionRecordError(f"the action's user parameters lack {ARN_PARAMETER}: the pipeline variable "
                                   "ModelPackageArn was not set when the execution started")
    match = _PACKAGE_ARN.match(arn)
    if match is None:
        raise PromotionRecordError(f"{arn!r} is not a versioned model package ARN")
    if match["group"] != settings.group:
        raise PromotionRecordError(f"{arn} belongs to group {match['group']!r}; this pipeline records versions of "
                                   f"{settings.group!r} only")
    return arn


def record(job: CodePipelineJobEvent, *, sagemaker: Any, codepipeline: Any,
           settings: Settings | None = None) -> dict[str, Any]:
    """Mark the job's version as promoted to prod now and answer the job; a failure is answered, not raised.

    ``settings`` default to the function's environment, read inside the answered part: a misconfigured function
    fails the job with the reason instead of leaving it waiting.
    """
    job_id = job.get_id
    logger.append_keys(job_id=job_id)
    try:
        arn = package_arn(job, settings or Settings.from_environment())
        moment = promotion_marks.now()
        package = promotion_marks.record(sagemaker, arn, **{promotion_marks.PROMOTED_TO_PROD_AT: moment})
    except Exception as error:  # every failure must reach CodePipeline, or the action waits for its timeout
        message = _reason(error)
        logger.exception("could not record the promotion", extra={"reason": message})
        codepipeline.put_job_failure_result(jobId=job_id, failureDetails={"type": "JobFailed",
                                                                          "message": message[:_MESSAGE_LIMIT]})
        return {"status": "failed", "job_id": job_id, "reason": message}
    version = package.get("ModelPackageVersion")
    codepipeline.put_job_success_result(jobId=job_id, outputVariables={
        promotion_marks.PROMOTED_TO_PROD_AT: moment, "model_package_version": str(version)})
    logger.info("promotion to prod recorded", extra={"model_package_arn": arn, "promoted_to_prod_at": moment})
    return {"status": "recorded", "job_id": job_id, "model_package_arn": arn, "model_package_version": version,
            promotion_marks.PROMOTED_TO_PROD_AT: moment}


def _reason(error: Exception) -> str:
    """One sentence for the pipeline's console: this function's own errors as written, AWS's with their code."""
    if isinstance(error, (PromotionRecordError, promotion_marks.MarkError)):
        return str(error)
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return f"the registry refused the mark ({code}): {error}" if code else f"{type(error).__name__}: {error}"


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=CodePipelineJobEvent)
def handler(event: CodePipelineJobEvent, context: LambdaContext) -> dict[str, Any]:
    return record(event, sagemaker=boto3.client("sagemaker"), codepipeline=boto3.client("codepipeline"))
