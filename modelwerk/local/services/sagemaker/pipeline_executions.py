"""SageMaker pipeline executions: the stored definition run by the local executor, and what SageMaker reports of it.

moto keeps pipelines and their definitions; an execution is ours from start to end. It is checked (parameters against
the definition) before anything starts, then runs on a thread of the server with
:class:`~modelwerk.local.pipeline_executor.PipelineExecutor`, in the pipeline's account with that account's
credentials. Its record (``<state>/runs/<account>/<region>/<pipeline>/<execution id>/``: ``execution.json``, the
definition it ran, step logs) is what Describe/List answer from, so an execution outlives the thread that ran it; one
left Executing by a server that died is Failed when the server starts again. SageMaker's own events ("Pipeline
Execution Status Change", "Pipeline Execution Step Status Change") go to the account's default bus as it changes, and
what a job step printed goes to CloudWatch Logs as SageMaker sends it (``/aws/sagemaker/ProcessingJobs``,
``/aws/sagemaker/TrainingJobs``, stream ``<job name>/algo-1-<epoch seconds>``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelwerk.errors import ModelwerkError
from modelwerk.local import pipeline_executor as px
from modelwerk.local.pipeline_expressions import ExecutionContext
from modelwerk.local.services._context import ensure_log_stream
from modelwerk.local.services._routing import AwsError, validation_error

log = logging.getLogger("modelwerk.local")

SOURCE = "aws.sagemaker"
EXECUTION_STATUS_CHANGE = "SageMaker Model Building Pipeline Execution Status Change"
STEP_STATUS_CHANGE = "SageMaker Model Building Pipeline Execution Step Status Change"
STOPPING = "Stopping"
FINISHED = (px.SUCCEEDED, px.FAILED, px.STOPPED)
#: The failure of an execution the server was running when it stopped or died.
SERVER_STOPPED = "the embedded AWS stopped while the execution ran"
_EXECUTION_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:([a-z0-9-]+):(\d{12}):pipeline/([^/]+)/execution/([^/]+)$")
_PIPELINE_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:([a-z0-9-]+):(\d{12}):pipeline/([^/]+)$")
#: Job step types: the metadata member, the job kind of their ARNs, the property naming the job, the log group.
_JOB_KINDS = {"Processing": ("ProcessingJob", "processing-job", "ProcessingJobName", "/aws/sagemaker/ProcessingJobs"),
              "Training": ("TrainingJob", "training-job", "TrainingJobName", "/aws/sagemaker/TrainingJobs"),
              "Transform": ("TransformJob", "transform-job", "TransformJobName", "/aws/sagemaker/TransformJobs")}
_LOG_BATCH = 1000
DEFINITION_FILE = "definition.json"


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _event_time(text: str | None) -> str | None:
    """A record's moment as SageMaker's events write it: ISO 8601 UTC to the second."""
    moment = _moment(text)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _text(value: Any) -> str:
    """A parameter value as the API carries it (every value is a string there)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _lower_keys(value: Any) -> Any:
    """The step metadata as the step event carries it: ``{"processingJob": {"arn": ...}}``."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    return value


@dataclass
class _Run:
    """An execution this server is running: its thread's stop signal and what the events have reported so far."""

    stop: threading.Event = field(default_factory=threading.Event)
    server_stopping: bool = False
    reported: dict[str, str] = field(default_factory=dict)


class PipelineExecutions:
    """Every execution of every pipeline of the embedded SageMaker, in any account."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self._runs: dict[str, _Run] = {}
        self._tokens: dict[tuple[str, str], str] = {}  # (pipeline ARN, ClientRequestToken) -> execution ARN
        self._lock = threading.Lock()

    # -- where things are -------------------------------------------------------------------------------------------
    def records(self, account: str, region: str) -> Path:
        return self.context.folder("runs", account, region)

    def _pipeline(self, account: str, region: str, name_or_arn: str) -> Any:
        """moto's pipeline (name or ARN), or AWS's ResourceNotFound."""
        from moto.sagemaker.models import sagemaker_backends

        name = name_or_arn
        matched = _PIPELINE_ARN.match(name_or_arn)
        if matched:
            region, account, name = matched.group(1), matched.group(2), matched.group(3)
        pipeline = sagemaker_backends[account][region].pipelines.get(name)
        if pipeline is None:
            raise AwsError("ResourceNotFound", f"Pipeline '{name_or_arn}' does not exist.")
        return pipeline

    def _folder(self, arn: str) -> Path:
        matched = _EXECUTION_ARN.match(arn or "")
        if not matched:
            raise validation_error(f"'{arn}' is not a pipeline execution ARN")
        region, account, pipeline, execution_id = matched.groups()
        folder = self.records(account, region) / pipeline / execution_id
        if not (folder / "execution.json").is_file():
            raise AwsError("ResourceNotFound", f"Pipeline execution '{arn}' does not exist.")
        return folder

    def load(self, arn: str) -> px.Execution:
        return px.load_execution(self._folder(arn))

    def definition(self, arn: str) -> tuple[str, datetime]:
        """The definition the execution ran (as the pipeline held it when the execution started)."""
        folder = self._folder(arn)
        record = px.load_execution(folder)
        return (folder / DEFINITION_FILE).read_text(encoding="utf-8"), _moment(record.started_at)

    def status(self, execution: px.Execution) -> str:
        """The API's status: Stopping while a stopped execution's running step ends."""
        run = self._runs.get(execution.arn)
        if execution.status == px.EXECUTING and run is not None and run.stop.is_set():
            return STOPPING
        return execution.status

    # -- start ------------------------------------------------------------------------------------------------------
    def start(self, account: str, region: str, pipeline_name: str, parameters: list[dict[str, Any]] | dict[str, Any],
              *, display_name: str | None = None, description: str | None = None,
              parallelism: dict[str, Any] | None = None, token: str | None = None) -> str:
        """Check the parameters against the pipeline's definition, start the execution on a thread; its ARN."""
        pipeline = self._pipeline(account, region, pipeline_name)
        account, region = pipeline.arn.split(":")[4], pipeline.arn.split(":")[3]
        with self._lock:
            known = self._tokens.get((pipeline.arn, token)) if token else None
        if known:
            return known
        overrides = self._overrides(parameters)
        definition = pipeline.pipeline_definition
        try:
            document = json.loads(definition) if isinstance(definition, str) else dict(definition)
        except (TypeError, ValueError) as error:
            raise validation_error(f"pipeline {pipeline.pipeline_name}'s definition is not JSON: {error}") from None
        run = _Run()
        holder: dict[str, px.Execution] = {}
        try:
            executor = px.PipelineExecutor(
                document, pipeline_arn=pipeline.arn, records_dir=self.records(account, region),
                clients=lambda service, other: self.context.client(service, other or account, region),
                environment=self.context.credentials(account, region),
                on_step=lambda record: self._step_changed(holder["execution"], record, run))
            execution = executor.start(overrides)
        except ModelwerkError as error:  # unknown parameter, bad value, steps in a cycle: nothing started
            raise validation_error(str(error)) from None
        holder["execution"] = execution
        execution.display_name = display_name or f"execution-{int(time.time() * 1000)}"
        execution.description = description
        execution.parallelism = parallelism or pipeline.parallelism_configuration or None
        execution.client_request_token = token
        (Path(execution.record_dir) / DEFINITION_FILE).write_text(json.dumps(document), encoding="utf-8")
        execution.save()
        with self._lock:
            self._runs[execution.arn] = run
            if token:
                self._tokens[(pipeline.arn, token)] = execution.arn
        pipeline.last_execution_time = _moment(execution.started_at)  # DescribePipeline's LastRunTime
        self.context.spawn(f"pipeline-execution-{execution.execution_id}", self._run, executor, execution, run)
        return execution.arn

    @staticmethod
    def _overrides(parameters: list[dict[str, Any]] | dict[str, Any] | None) -> dict[str, Any]:
        if isinstance(parameters, dict):
            return {str(k): v for k, v in parameters.items()}
        overrides: dict[str, Any] = {}
        for parameter in parameters or []:
            name = parameter.get("Name")
            if not name or "Value" not in parameter:
                raise validation_error(f"a pipeline parameter needs a Name and a Value, not {parameter}")
            if name in overrides:
                raise validation_error(f"parameter {name} is given twice")
            overrides[name] = parameter["Value"]
        return overrides

    def _run(self, executor: px.PipelineExecutor, execution: px.Execution, run: _Run) -> None:
        self._execution_changed(execution, None)
        try:
            executor.resume(execution, run.stop)
        except Exception as error:  # noqa: BLE001 - the record must end Failed whatever broke
            log.exception("pipeline execution %s broke", execution.arn)
            execution.status, execution.failure_reason = px.FAILED, f"{type(error).__name__}: {error}"
        if run.server_stopping and execution.status == px.STOPPED:
            execution.status, execution.failure_reason = px.FAILED, SERVER_STOPPED
        execution.ended_at = execution.ended_at or px._now()
        execution.save()
        self._execution_changed(execution, STOPPING if run.stop.is_set() else px.EXECUTING)
        with self._lock:
            self._runs.pop(execution.arn, None)

    # -- stop -------------------------------------------------------------------------------------------------------
    def stop(self, arn: str) -> str:
        """Ask a running execution to stop: its running job's process ends, the execution becomes Stopped."""
        execution = self.load(arn)
        run = self._runs.get(execution.arn)
        if execution.status != px.EXECUTING or run is None:
            raise AwsError("ConflictException", f"Pipeline execution '{arn}' is {execution.status}; only an "
                                                "Executing execution can be stopped.")
        if not run.stop.is_set():
            run.stop.set()
            self._execution_changed(execution, px.EXECUTING, current=STOPPING)
        return execution.arn

    def stop_all(self) -> None:
        """The server stops: end every running execution (they end Failed, as after a crash)."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.server_stopping = True
            run.stop.set()

    # -- recovery ---------------------------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Executions a previous server left Executing are Failed (nothing runs them any more); known tokens."""
        failed = []
        runs = self.context.folder("runs")
        for path in sorted(runs.glob("*/*/*/*/execution.json")):
            try:
                execution = px.load_execution(path.parent)
            except (OSError, ValueError, TypeError) as error:
                log.warning("unreadable pipeline execution record %s: %s", path, error)
                continue
            if execution.client_request_token:
                self._tokens[(execution.arn.rsplit("/execution/", 1)[0], execution.client_request_token)] = \
                    execution.arn
            if execution.status not in (px.EXECUTING, STOPPING) or execution.arn in self._runs:
                continue
            execution.status, execution.failure_reason = px.FAILED, SERVER_STOPPED
            execution.ended_at = execution.ended_at or px._now()
            for step in execution.steps:
                if step.status == px.EXECUTING:
                    step.status, step.failure_reason, step.ended_at = px.FAILED, SERVER_STOPPED, execution.ended_at
            execution.save()
            failed.append(execution.arn)
        return failed

    # -- listing ----------------------------------------------------------------------------------------------------
    def executions(self, account: str, region: str, pipeline_name: str) -> list[px.Execution]:
        """Every recorded execution of a pipeline (the pipeline must exist, or have left records)."""
        name = pipeline_name
        matched = _PIPELINE_ARN.match(pipeline_name)
        if matched:
            region, account, name = matched.groups()
        folder = self.records(account, region) / name
        paths = sorted(folder.glob("*/execution.json"))
        if not paths:
            self._pipeline(account, region, name)
        found = []
        for path in paths:
            try:
                found.append(px.load_execution(path.parent))
            except (OSError, ValueError, TypeError) as error:
                log.warning("unreadable pipeline execution record %s: %s", path, error)
        return found

    def experiment_config(self, execution: px.Execution) -> dict[str, str]:
        """The definition's PipelineExperimentConfig evaluated (SageMaker's default: the pipeline's name and the
        execution's id)."""
        folder = Path(execution.record_dir)
        document = json.loads((folder / DEFINITION_FILE).read_text(encoding="utf-8"))
        config = document.get("PipelineExperimentConfig") or {
            "ExperimentName": {"Get": "Execution.PipelineName"}, "TrialName": {"Get": "Execution.PipelineExecutionId"}}
        context = ExecutionContext(parameters=dict(execution.parameters), execution={
            "PipelineExecutionId": execution.execution_id, "PipelineExecutionArn": execution.arn,
            "PipelineName": execution.pipeline_name, "CurrentDateTime": execution.started_at,
            "StartDateTime": execution.started_at})
        try:
            evaluated = context.evaluate(config)
        except ModelwerkError:
            return {}
        return {k: str(v) for k, v in evaluated.items() if k in ("ExperimentName", "TrialName") and v is not None}

    def steps(self, execution: px.Execution) -> list[dict[str, Any]]:
        """The steps that started, as ListPipelineExecutionSteps answers them (in the order they started)."""
        declared = {s["Name"]: s for s in px._all_steps(json.loads(
            (Path(execution.record_dir) / DEFINITION_FILE).read_text(encoding="utf-8")).get("Steps", []))}
        stopping = self.status(execution) == STOPPING
        answered = []
        for record in sorted((s for s in execution.steps if s.started_at), key=lambda s: s.started_at or ""):
            step = declared.get(record.name, {})
            status = record.status
            if status == px.EXECUTING and stopping:
                status = STOPPING
            item: dict[str, Any] = {"StepName": record.name, "StepStatus": status, "AttemptCount": 1,
                                    "StartTime": _moment(record.started_at)}
            for member, key in (("StepDisplayName", "DisplayName"), ("StepDescription", "Description")):
                if step.get(key):
                    item[member] = step[key]
            if record.ended_at and status in FINISHED:
                item["EndTime"] = _moment(record.ended_at)
            if record.failure_reason and status == px.FAILED:
                item["FailureReason"] = record.failure_reason[:1024]
            if record.cache_hit:
                item["CacheHitResult"] = {"SourcePipelineExecutionArn": record.cache_hit}
            metadata = self._metadata(execution, record)
            if metadata:
                item["Metadata"] = metadata
            answered.append(item)
        return answered

    @staticmethod
    def _metadata(execution: px.Execution, record: px.StepRecord) -> dict[str, Any]:
        """What the step made (PipelineExecutionStepMetadata): its job, model, package, outcome or error."""
        _, _, _, region, account, _ = execution.arn.split(":", 5)
        properties = record.properties or {}
        if record.type in _JOB_KINDS:
            member, kind, name_key, _ = _JOB_KINDS[record.type]
            job = properties.get(name_key) or f"pipelines-{execution.execution_id}-{record.name}"[:63]
            return {member: {"Arn": f"arn:aws:sagemaker:{region}:{account}:{kind}/{job.lower()}"}}
        if record.type == "Condition" and properties.get("Outcome"):
            return {"Condition": {"Outcome": properties["Outcome"]}}
        if record.type == "RegisterModel" and properties.get("ModelPackageArn"):
            return {"RegisterModel": {"Arn": properties["ModelPackageArn"]}}
        if record.type == "Model" and properties.get("ModelArn"):
            return {"Model": {"Arn": properties["ModelArn"]}}
        if record.type == "Fail" and record.status == px.FAILED:
            return {"Fail": {"ErrorMessage": (record.failure_reason or "")[:3072]}}
        return {}

    # -- events -----------------------------------------------------------------------------------------------------
    def _emit(self, execution: px.Execution, detail_type: str, detail: dict[str, Any]) -> None:
        _, _, _, region, account, _ = execution.arn.split(":", 5)
        pipeline_arn = execution.arn.rsplit("/execution/", 1)[0]
        detail = {**detail, "pipelineArn": pipeline_arn, "pipelineExecutionArn": execution.arn}
        self.context.emit_event(account, region, source=SOURCE, detail_type=detail_type,
                                detail={k: v for k, v in detail.items() if v is not None},
                                resources=[pipeline_arn, execution.arn])

    def _execution_changed(self, execution: px.Execution, previous: str | None, current: str | None = None) -> None:
        self._emit(execution, EXECUTION_STATUS_CHANGE, {
            "pipelineExecutionDisplayName": execution.display_name,
            "pipelineExecutionDescription": execution.description,
            "currentPipelineExecutionStatus": current or execution.status,
            "previousPipelineExecutionStatus": previous,
            "executionStartTime": _event_time(execution.started_at),
            "executionEndTime": _event_time(execution.ended_at) if (current or execution.status) in FINISHED else None,
        })

    def _step_changed(self, execution: px.Execution, record: px.StepRecord, run: _Run) -> None:
        previous = run.reported.get(record.name, "Starting")
        run.reported[record.name] = record.status
        finished = record.status in FINISHED
        if finished and record.log_file and not record.cache_hit:
            self._send_log(execution, record)
        metadata = self._metadata(execution, record)
        self._emit(execution, STEP_STATUS_CHANGE, {
            "stepName": record.name, "stepType": record.type,
            "currentStepStatus": record.status, "previousStepStatus": previous,
            "stepStartTime": _event_time(record.started_at),
            "stepEndTime": _event_time(record.ended_at) if finished else None,
            "failureReason": record.failure_reason if record.status == px.FAILED else None,
            "cacheHitResult": {"sourcePipelineExecutionArn": record.cache_hit} if record.cache_hit else None,
            "metadata": _lower_keys(metadata) if metadata else None,
        })


    def _send_log(self, execution: px.Execution, record: px.StepRecord) -> None:
        """What a job step printed, into the pipeline account's CloudWatch Logs, as SageMaker sends a job's output."""
        _, _, _, region, account, _ = execution.arn.split(":", 5)
        _, _, name_key, group = _JOB_KINDS[record.type]
        job = (record.properties or {}).get(name_key) or f"pipelines-{execution.execution_id}-{record.name}"[:63]
        stream = f"{job}/algo-1-{int(time.time())}"
        try:
            lines = Path(record.log_file).read_text(encoding="utf-8", errors="replace").splitlines() or ["(no output)"]
            logs = self.context.client("logs", account, region)
            ensure_log_stream(logs, group, stream)
            now = int(time.time() * 1000)
            for start in range(0, len(lines), _LOG_BATCH):
                logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
                    {"timestamp": now, "message": line[:200_000] or " "} for line in lines[start:start + _LOG_BATCH]])
        except Exception as error:  # noqa: BLE001 - the logs are a copy; the step's result stands
            log.warning("the log of step %s of %s did not reach CloudWatch Logs: %s", record.name, execution.arn, error)


def parameter_list(execution: px.Execution) -> list[dict[str, str]]:
    """The execution's parameter values (defaults included), as ListPipelineParametersForExecution answers them."""
    return [{"Name": name, "Value": _text(value)} for name, value in execution.parameters.items()]
