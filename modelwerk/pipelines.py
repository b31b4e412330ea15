"""Run a use case's training pipeline and follow its executions through SageMaker Pipelines' API.

``StartPipelineExecution`` runs the definition the training stack deployed (locally the embedded AWS runs the same
definition); a run that waits shows each step's progress (``ListPipelineExecutionSteps``), and a finished execution
is logged to experiment tracking (:mod:`modelwerk.tracking`) with its parameters, the evaluate step's metrics and
its step durations.

Example
-------
>>> execution = modelwerk.pipelines.run("pump-health", {"QualityThreshold": 0.4})  # doctest: +SKIP
>>> execution.status, execution.model_package_arn  # doctest: +SKIP
('Succeeded', 'arn:aws:sagemaker:eu-central-1:111111111111:model-package/modelwerk-pump-health/3')
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelwerk.core.layout import snapshot_prefix
from modelwerk.errors import NotFoundError, ValidationError
from modelwerk.platform import Platform, resolve, session_for_account
from modelwerk.waiting import poll

__all__ = ["PipelineExecution", "definition", "describe", "executions", "run", "runs", "sync_tracking",
           "track_executions"]

SNAPSHOT_PARAMETER = "SnapshotId"
EVALUATION_PROPERTY_FILE = "EvaluationReport"
FINISHED = ("Succeeded", "Failed", "Stopped")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class StepStatus:
    name: str
    status: str
    seconds: float
    failure_reason: str | None = None
    cache_hit: str | None = None
    log_file: str | None = None


@dataclass(frozen=True)
class PipelineExecution:
    """One execution of a use case's pipeline, as ``pipeline run``/``describe`` report it."""

    use_case: str
    execution_arn: str
    status: str
    parameters: dict[str, Any]
    steps: list[StepStatus]
    model_package_arn: str | None = None
    failure_reason: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)

    @property
    def execution_id(self) -> str:
        return self.execution_arn.rsplit("/", 1)[-1]

    def to_dict(self, detail: bool = False) -> dict[str, Any]:
        """``pipeline run --json``: execution_arn, status, steps (name, status, seconds), model_package_arn."""
        doc: dict[str, Any] = {
            "execution_arn": self.execution_arn,
            "status": self.status,
            "steps": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 3)} for s in self.steps],
            "model_package_arn": self.model_package_arn,
        }
        if detail:
            doc.update({
                "use_case": self.use_case, "parameters": self.parameters, "failure_reason": self.failure_reason,
                "started_at": self.started_at, "ended_at": self.ended_at, "metrics": self.metrics,
                "steps": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 3),
                           "failure_reason": s.failure_reason, "cache_hit": s.cache_hit, "log_file": s.log_file}
                          for s in self.steps],
            })
        return doc

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(s.name)}</td><td>{html.escape(s.status)}</td><td>{s.seconds:.1f} s</td>"
            f"<td>{'cached' if s.cache_hit else ''}</td><td>{html.escape(s.failure_reason or '')}</td></tr>"
            for s in self.steps)
        registered = html.escape(self.model_package_arn or "nothing registered")
        return (f"<div><b>{html.escape(self.use_case)}</b> execution <code>{html.escape(self.execution_id)}</code>: "
                f"<b>{html.escape(self.status)}</b> &mdash; {registered}"
                f"<table><tr><th>step</th><th>status</th><th>time</th><th></th><th>reason</th></tr>{rows}</table>"
                "</div>")


# -- shared -------------------------------------------------------------------------------------------------------


def _pipeline_name(platform: Platform, use_case: str) -> str:
    platform.contract(use_case)
    name = platform.parameters.get(f"use-cases/{use_case}/pipeline-name")
    if not name:
        raise NotFoundError(f"the {platform.env} environment has no training pipeline for {use_case}; deploy its "
                            "training stack (or run 'modelwerk local up')")
    return name


def _parse_overrides(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    return {str(k): v for k, v in (parameters or {}).items()}


def _deployed(platform: Platform, use_case: str) -> tuple[str, dict[str, Any]]:
    """(pipeline ARN, definition) of the use case's deployed pipeline (``DescribePipeline``)."""
    name = _pipeline_name(platform, use_case)
    try:
        described = platform.session().client("sagemaker").describe_pipeline(PipelineName=name)
    except Exception as exc:  # noqa: BLE001 - botocore's errors, reworded
        raise NotFoundError(f"pipeline {name} is not deployed ({exc}); deploy the training stack") from None
    return described["PipelineArn"], json.loads(described["PipelineDefinition"])


def definition(use_case: str, *, env: str | None = None) -> dict[str, Any]:
    """The deployed pipeline definition of ``use_case`` (``DescribePipeline``)."""
    return _deployed(resolve(env), use_case)[1]


def _check_snapshot(platform: Platform, use_case: str, snapshot_id: str) -> None:
    """The snapshot (or the ``latest`` pointer) must exist in the curated zone before an execution starts."""
    from botocore.exceptions import ClientError

    bucket = platform.bucket("curated")
    key = f"{snapshot_prefix(use_case)}{snapshot_id}.json"
    s3 = platform.session().client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return
    except ClientError:
        pass
    if snapshot_id == "latest":
        raise NotFoundError(f"{use_case} has no snapshot yet: run 'modelwerk data prepare --use-case {use_case}'")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=snapshot_prefix(use_case)).get("Contents", [])
    known = sorted((o for o in listed if not o["Key"].endswith("/latest.json")), key=lambda o: o["LastModified"])
    names = [o["Key"].rsplit("/", 1)[-1].removesuffix(".json") for o in known][-5:]
    hint = f"recent ones: {', '.join(names)}" if names else "there is none yet: run 'modelwerk data prepare'"
    raise NotFoundError(f"{use_case} has no snapshot {snapshot_id!r}; {hint}")


def run(use_case: str, parameters: Mapping[str, Any] | None = None, *, wait: bool = True, env: str | None = None,
        progress: Progress | None = None, timeout: float = 6 * 3600) -> PipelineExecution:
    """Start the use case's pipeline with ``parameters`` overriding its defaults; with ``wait``, until it ends.

    Raises :class:`ValidationError` for an unknown parameter or a bad value and :class:`NotFoundError` for an
    unknown snapshot, before anything starts. A failed execution is returned (``status == "Failed"``), not raised.
    """
    from botocore.exceptions import ClientError

    platform = resolve(env)
    overrides = _parse_overrides(parameters)
    _, doc = _deployed(platform, use_case)
    known = {p["Name"] for p in doc.get("Parameters", [])}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValidationError(f"{use_case}'s pipeline has no parameter(s) {unknown}; it takes {sorted(known)}")
    snapshot = str(overrides.get(SNAPSHOT_PARAMETER) or _default(doc, SNAPSHOT_PARAMETER) or "latest")
    _check_snapshot(platform, use_case, snapshot)
    sagemaker = platform.session().client("sagemaker")
    try:
        started = sagemaker.start_pipeline_execution(
            PipelineName=_pipeline_name(platform, use_case),
            PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in overrides.items()])
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":
            raise ValidationError(f"{use_case}'s pipeline refused the parameters: "
                                  f"{error.response['Error']['Message']}") from None
        raise
    arn = started["PipelineExecutionArn"]
    if not wait:
        return _describe(platform, use_case, arn)
    seen: dict[str, str] = {}

    def report(execution: PipelineExecution) -> None:
        for step in execution.steps:
            if progress and seen.get(step.name) != step.status:
                took = f" in {step.seconds:.1f} s" if step.status in FINISHED else ""
                progress(f"{step.name}: {step.status}{took}{' (cached)' if step.cache_hit else ''}")
            seen[step.name] = step.status

    execution = poll(lambda: _describe(platform, use_case, arn), lambda e: e.status in FINISHED, timeout=timeout,
                     what=f"execution {arn} (follow it with 'modelwerk pipeline describe --use-case {use_case} "
                          f"{arn.rsplit('/', 1)[-1]}')", on_poll=report)
    _track(execution)
    return execution


def _default(doc: Mapping[str, Any], name: str) -> Any:
    return next((p.get("DefaultValue") for p in doc.get("Parameters", []) if p["Name"] == name), None)


def executions(use_case: str, *, env: str | None = None, limit: int = 50) -> list[PipelineExecution]:
    """The use case's executions, newest first, however they were started (a person, a schedule, an alarm)."""
    platform = resolve(env)
    sagemaker = platform.session().client("sagemaker")
    summaries = sagemaker.list_pipeline_executions(
        PipelineName=_pipeline_name(platform, use_case), SortBy="CreationTime", SortOrder="Descending",
        MaxResults=min(limit, 100))["PipelineExecutionSummaries"]
    return [_describe(platform, use_case, s["PipelineExecutionArn"]) for s in summaries]


def runs(use_case: str, *, env: str | None = None, limit: int = 50) -> "Any":
    """The use case's tracked runs (:func:`modelwerk.tracking.runs`), after logging the finished executions that are
    not tracked yet: those a schedule, an alarm or a plain ``StartPipelineExecution`` started.

    Example
    -------
    >>> modelwerk.runs("pump-health")[["execution_id", "status", "metrics.f1"]].head()
    """
    from modelwerk import tracking

    sync_tracking(use_case, env=env, limit=limit)
    return tracking.runs(use_case)


def sync_tracking(use_case: str, *, env: str | None = None, limit: int = 50) -> int:
    """:func:`track_executions`, where SageMaker answers: without AWS at hand the tracked runs are all there is."""
    import logging

    from botocore.exceptions import BotoCoreError, ClientError

    from modelwerk.errors import ModelwerkError

    resolve(env).contract(use_case)  # an unknown use case is the caller's error, not AWS's absence
    try:
        return track_executions(use_case, env=env, limit=limit)
    except (BotoCoreError, ClientError, ModelwerkError) as error:
        logging.getLogger("modelwerk").warning("executions not read from SageMaker (%s); showing the tracked runs",
                                               error)
        return 0


def track_executions(use_case: str, *, env: str | None = None, limit: int = 50) -> int:
    """Log to experiment tracking the finished executions among the newest ``limit`` that are not tracked as
    finished yet, however they were started; how many were logged."""
    from modelwerk import tracking

    finished = {r["execution_arn"] for r in tracking.list_runs(use_case) if r["status"] in tracking.FINISHED_STATUSES}
    platform = resolve(env)
    sagemaker = platform.session().client("sagemaker")
    summaries = sagemaker.list_pipeline_executions(
        PipelineName=_pipeline_name(platform, use_case), SortBy="CreationTime", SortOrder="Descending",
        MaxResults=min(limit, 100))["PipelineExecutionSummaries"]
    logged = 0
    for summary in summaries:
        if summary["PipelineExecutionStatus"] in FINISHED and summary["PipelineExecutionArn"] not in finished:
            _track(_describe(platform, use_case, summary["PipelineExecutionArn"]))
            logged += 1
    return logged


def describe(use_case: str, execution: str, *, env: str | None = None) -> PipelineExecution:
    """One execution, by ARN or id."""
    from botocore.exceptions import ClientError

    platform = resolve(env)
    execution_id = execution.rsplit("/", 1)[-1]
    if not execution.startswith("arn:"):
        execution = f"{_deployed(platform, use_case)[0]}/execution/{execution_id}"
    try:
        return _describe(platform, use_case, execution)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ResourceNotFound", "ValidationException"):
            raise NotFoundError(f"{use_case} has no execution {execution_id}; 'modelwerk pipeline list --use-case "
                                f"{use_case}' shows them") from None
        raise


def _read_metrics(uri: str) -> dict[str, float | None]:
    import boto3

    bucket, _, key = uri[5:].partition("/")
    try:
        document = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception:  # noqa: BLE001 - metrics are a convenience of the report; the execution stands
        return {}
    return {name: (entry or {}).get("value") for name, entry in document.get("metrics", {}).items()}


def _track(execution: PipelineExecution) -> None:
    """Log a finished execution to experiment tracking; a tracking failure never fails the execution."""
    import logging

    try:
        from modelwerk import tracking

        metadata = _package_metadata(execution.model_package_arn)
        tracking.log_execution({
            "use_case": execution.use_case,
            "execution_arn": execution.execution_arn,
            "execution_id": execution.execution_id,
            "status": execution.status,
            "started_at": execution.started_at,
            "ended_at": execution.ended_at,
            "parameters": execution.parameters,
            "steps": [{"name": s.name, "status": s.status, "seconds": s.seconds} for s in execution.steps],
            "metrics": execution.metrics,
            "model_package_arn": execution.model_package_arn,
            "git_commit": metadata.get("git_commit"),
            "snapshot_id": metadata.get("snapshot_id") or execution.parameters.get(SNAPSHOT_PARAMETER),
            "failure_reason": execution.failure_reason,
        })
    except Exception as exc:  # noqa: BLE001
        logging.getLogger("modelwerk").warning("execution %s was not logged to experiment tracking: %s",
                                               execution.execution_id, exc)


def _package_metadata(arn: str | None) -> dict[str, str]:
    if not arn:
        return {}
    try:
        package = _registry_client(arn).describe_model_package(ModelPackageName=arn)
    except Exception:  # noqa: BLE001
        return {}
    return dict(package.get("CustomerMetadataProperties") or {})


# -- SageMaker ----------------------------------------------------------------------------------------------------


def _registry_client(package_arn: str) -> Any:
    """SageMaker in the account that holds ``package_arn`` (the central registry)."""
    return session_for_account(package_arn.split(":")[4]).client("sagemaker")


def _describe(platform: Platform, use_case: str, arn: str) -> PipelineExecution:
    sagemaker = platform.session().client("sagemaker")
    described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
    steps, package = [], None
    for page in sagemaker.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn):
        for step in page["PipelineExecutionSteps"]:
            start, end = step.get("StartTime"), step.get("EndTime")
            seconds = (end - start).total_seconds() if start and end else 0.0
            steps.append(StepStatus(step["StepName"], step["StepStatus"], seconds, step.get("FailureReason"),
                                    (step.get("CacheHitResult") or {}).get("SourcePipelineExecutionArn")))
            package = package or step.get("Metadata", {}).get("RegisterModel", {}).get("Arn")
    parameters = {p["Name"]: p["Value"] for p in sagemaker.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=arn).get("PipelineParameters", [])}
    metrics: dict[str, float | None] = {}
    if package:
        described_package = _registry_client(package).describe_model_package(ModelPackageName=package)
        uri = (((described_package.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}).get(
            "S3Uri")
        metrics = _read_metrics(uri) if uri else {}
    return PipelineExecution(
        use_case=use_case, execution_arn=arn, status=described["PipelineExecutionStatus"], parameters=parameters,
        steps=list(reversed(steps)), model_package_arn=package, failure_reason=described.get("FailureReason"),
        started_at=str(described.get("CreationTime")), ended_at=str(described.get("LastModifiedTime")),
        metrics=metrics,
    )


def parse_parameter(text: str) -> tuple[str, str]:
    """``Name=Value`` from the command line."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValidationError(f"--param {text!r} must be Name=Value, like --param QualityThreshold=0.6")
    return name.strip(), value
