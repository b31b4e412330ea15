"""Score a use case's data in batch: its inference pipeline, started through SageMaker Pipelines' API.

``StartPipelineExecution`` runs the inference pipeline the serving stack deployed (locally the embedded AWS runs the
same definition): the version (the one the environment's endpoint serves, or the one asked for), a snapshot (or an S3
prefix) exported to CSV with the rows the contract refuses set aside, a Batch Transform job, and the predictions
written as Parquet to the analytics zone's predictions table. The run's counts come from the report its last step
writes; every row is either scored or counted as failed with its reason in a failures object.

Example
-------
>>> run = modelwerk.batch.run("pump-health")  # doctest: +SKIP
>>> run.status, run.rows_in, run.rows_scored, run.rows_failed  # doctest: +SKIP
('Succeeded', 39654, 39654, 0)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelwerk import naming
from modelwerk.errors import NotFoundError, ValidationError
from modelwerk.platform import Platform, resolve
from modelwerk.waiting import poll

__all__ = ["BatchRun", "run"]

#: The inference pipeline's parameters and the step whose report the run reads (sagemaker_pipelines/inference_pipeline.py).
MODEL_PACKAGE_ARN, SNAPSHOT_ID, INPUT_S3_URI, TRIGGERED_BY = "ModelPackageArn", "SnapshotId", "InputS3Uri", "TriggeredBy"
REPORT_STEP, REPORT_OUTPUT, REPORT_FILE = "WritePredictions", "report", "predictions.json"
FINISHED = ("Succeeded", "Failed", "Stopped")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BatchRun:
    """One execution of the inference pipeline, as ``batch run --json`` reports it."""

    use_case: str
    execution_arn: str
    status: str
    rows_in: int | None = None
    rows_scored: int | None = None
    rows_failed: int | None = None
    output_table: str | None = None
    seconds: float = 0.0
    failure_reason: str | None = None
    report: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """``batch run --json``: execution_arn, status, rows_in, rows_scored, rows_failed, output_table, seconds."""
        return {"execution_arn": self.execution_arn, "status": self.status, "rows_in": self.rows_in,
                "rows_scored": self.rows_scored, "rows_failed": self.rows_failed, "output_table": self.output_table,
                "seconds": round(self.seconds, 3), "failure_reason": self.failure_reason}


def _pipeline_name(platform: Platform, use_case: str) -> str:
    platform.contract(use_case)
    name = platform.parameters.get(f"use-cases/{use_case}/inference-pipeline-name")
    if not name:
        raise NotFoundError(f"the {platform.env} environment has no inference pipeline for {use_case} (it has one "
                            "where an endpoint serves the use case); deploy its serving stack or pick the environment "
                            "with --env")
    return name


def run(use_case: str, *, version: int | str | None = None, snapshot: str | None = None,
        input_uri: str | None = None, wait: bool = True, env: str | None = None, progress: Progress | None = None,
        timeout: float = 6 * 3600) -> BatchRun:
    """Score ``snapshot`` (default ``latest``) or the files under ``input_uri`` with ``version`` (default: the version
    the environment serves). A failed execution is returned (``status == "Failed"``), not raised."""
    from botocore.exceptions import ClientError

    if snapshot and input_uri:
        raise ValidationError("score either a snapshot or an S3 prefix, not both")
    platform = resolve(env)
    name = _pipeline_name(platform, use_case)
    parameters = {TRIGGERED_BY: "person"}
    if version is not None:
        from modelwerk import models

        parameters[MODEL_PACKAGE_ARN] = models.version(use_case, version, env=env).arn
    if snapshot:
        parameters[SNAPSHOT_ID] = snapshot
    if input_uri:
        parameters[INPUT_S3_URI] = input_uri
    sagemaker = platform.session().client("sagemaker")
    started_at = time.monotonic()
    try:
        arn = sagemaker.start_pipeline_execution(
            PipelineName=name, PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in parameters.items()],
        )["PipelineExecutionArn"]
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            raise ValidationError(f"{use_case}'s inference pipeline did not start: "
                                  f"{error.response['Error']['Message']}") from None
        raise
    if not wait:
        return BatchRun(use_case, arn, "Executing")
    seen: dict[str, str] = {}

    def status() -> dict[str, Any]:
        described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
        if progress:
            for page in sagemaker.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn):
                for step in reversed(page["PipelineExecutionSteps"]):
                    if seen.get(step["StepName"]) != step["StepStatus"]:
                        progress(f"{step['StepName']}: {step['StepStatus']}")
                    seen[step["StepName"]] = step["StepStatus"]
        return described

    described = poll(status, lambda d: d["PipelineExecutionStatus"] in FINISHED, timeout=timeout, cap=5.0,
                     what=f"batch execution {arn} (follow it with 'modelwerk pipeline describe')")
    seconds = time.monotonic() - started_at
    report = _report(platform, use_case, arn) if described["PipelineExecutionStatus"] == "Succeeded" else None
    if report is None:
        return BatchRun(use_case, arn, described["PipelineExecutionStatus"], seconds=seconds,
                        failure_reason=described.get("FailureReason") or _failed_step(sagemaker, arn))
    return BatchRun(use_case, arn, described["PipelineExecutionStatus"], rows_in=report.get("rows_in"),
                    rows_scored=report.get("rows_scored"), rows_failed=report.get("rows_failed"),
                    output_table=report.get("output_table"), seconds=seconds, report=report)


def _report(platform: Platform, use_case: str, arn: str) -> dict[str, Any] | None:
    """The report of the execution's last step: ``<serving>/batch/<use case>/<execution id>/<step>/report/``."""
    key = f"{naming.batch_prefix(use_case)}{arn.rsplit('/', 1)[-1]}/{REPORT_STEP.lower()}/{REPORT_OUTPUT}/{REPORT_FILE}"
    try:
        body = platform.session().client("s3").get_object(Bucket=platform.bucket("serving"), Key=key)["Body"].read()
    except Exception:  # noqa: BLE001 - a succeeded execution without its report is reported as such
        return None
    return json.loads(body)


def _failed_step(sagemaker: Any, arn: str) -> str | None:
    for page in sagemaker.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn):
        for step in page["PipelineExecutionSteps"]:
            if step.get("FailureReason"):
                return f"{step['StepName']}: {step['FailureReason']}"
    return None
