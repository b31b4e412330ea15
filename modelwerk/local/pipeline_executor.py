"""The local pipeline executor: runs a deployed SageMaker Pipeline definition on this machine, step by step.

It reads the definition JSON exactly as SageMaker does: parameters (defaults and start-time overrides, checked before
anything runs), steps in the order their property references and ``DependsOn`` impose, expressions resolved by
:mod:`modelwerk.local.pipeline_expressions`. Processing and training steps run as local processes under the container
contracts (:mod:`~modelwerk.local.processing`, :mod:`~modelwerk.local.training`); a transform step calls
``CreateTransformJob`` in the pipeline's account and waits for its job (the embedded SageMaker runs it); a condition
step picks its branch; a fail step ends the execution with its message; a ``RegisterModel`` step calls
``CreateModelPackage`` (in the group's account) and a ``Model`` step ``CreateModel``. A failed step fails the
execution and the steps not yet run are skipped. An execution asked to stop ends its running job's process (or stops
its transform job) and is Stopped. Each step's status, times, failure reason
and log are kept in the execution's record folder.

Step caching follows the step's ``CacheConfig``: a step whose cache key matches a successful earlier run of the same
pipeline within ``ExpireAfter`` reuses that run's properties instead of running. The key holds the attributes
SageMaker's does (processing: AppSpecification, Environment, ProcessingInputs; training: AlgorithmSpecification,
Environment, HyperParameters, InputDataConfig, ...) with every S3 URI replaced by a fingerprint of what it holds
(keys and ETags), so "unchanged inputs" means unchanged content, not an unchanged address. A transform step's key
holds DataProcessing, Environment, ModelName and TransformInput, as SageMaker's does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from modelwerk.errors import ExecutionFailedError, ValidationError
from modelwerk.local.pipeline_expressions import ExecutionContext, condition_holds, references
from modelwerk.local.processing import StepFailed, StepStopped, read_property_file, run_processing_job
from modelwerk.local.training import run_training_job

#: Attributes of a step's arguments that make its cache key (SageMaker's "default cache key attributes").
CACHE_KEY_ATTRIBUTES = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": ("AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig", "DebugRuleConfigurations",
                 "Environment", "HyperParameters", "InputDataConfig"),
    "Transform": ("DataProcessing", "Environment", "ModelName", "TransformInput"),
}
#: How often a transform step asks for its job's status.
TRANSFORM_POLL_SECONDS = 0.5
_JOB_NAME = re.compile(r"[^a-zA-Z0-9-]+")
SUCCEEDED, FAILED, SKIPPED, EXECUTING, STOPPED = "Succeeded", "Failed", "Skipped", "Executing", "Stopped"
_DURATION = re.compile(r"^P?(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$",
                       re.IGNORECASE)

#: (service, account or None for the pipeline's own) -> a boto3 client in that account
ClientFactory = Callable[[str, "str | None"], Any]


@dataclass
class StepRecord:
    name: str
    type: str
    status: str = SKIPPED
    seconds: float = 0.0
    started_at: str | None = None
    ended_at: str | None = None
    failure_reason: str | None = None
    cache_hit: str | None = None  # the execution whose result was reused
    log_file: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 3)}


@dataclass
class Execution:
    arn: str
    execution_id: str
    pipeline_name: str
    parameters: dict[str, Any]
    status: str = EXECUTING
    started_at: str = ""
    ended_at: str | None = None
    failure_reason: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    record_dir: str = ""
    #: What StartPipelineExecution was given besides the parameters.
    display_name: str | None = None
    description: str | None = None
    parallelism: dict[str, Any] | None = None
    client_request_token: str | None = None
    updated_at: str | None = None

    @property
    def model_package_arn(self) -> str | None:
        for step in self.steps:
            if step.type == "RegisterModel" and step.status == SUCCEEDED:
                return step.properties.get("ModelPackageArn")
        return None

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_package_arn": self.model_package_arn}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Execution":
        fields = {k: v for k, v in doc.items() if k not in ("steps", "model_package_arn")}
        return cls(**fields, steps=[StepRecord(**s) for s in doc.get("steps", [])])

    def save(self) -> None:
        self.updated_at = _now()
        _write_atomically(Path(self.record_dir) / "execution.json", json.dumps(self.to_dict(), indent=1, default=str))


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step: a detached execution writes records while ``describe`` reads them."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_execution_id() -> str:
    """A SageMaker-shaped execution id: 12 lower-case letters and digits."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


# -- definition -------------------------------------------------------------------------------------------------------


def resolve_parameters(definition: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Parameter values of one execution: defaults, then overrides, each checked against its declared type."""
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    unknown = sorted(set(overrides or {}) - set(declared))
    if unknown:
        raise ValidationError(f"the pipeline has no parameter {', '.join(unknown)}; it takes {', '.join(declared)}")
    values: dict[str, Any] = {}
    for name, parameter in declared.items():
        given = (overrides or {}).get(name, parameter.get("DefaultValue"))
        if given is None:
            raise ValidationError(f"parameter {name} has no default: pass --param {name}=VALUE")
        values[name] = _typed(name, parameter.get("Type", "String"), given)
    return values


def _typed(name: str, kind: str, value: Any) -> Any:
    try:
        if kind == "Float":
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        if kind == "Integer":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "Boolean":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false"):
                return str(value).lower() == "true"
            raise ValueError
    except (TypeError, ValueError):
        raise ValidationError(f"parameter {name} takes a {kind.lower()}, not {value!r}") from None
    return str(value)


def _all_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for step in steps:
        found.append(step)
        if step["Type"] == "Condition":
            found += _all_steps(step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", []))
    return found


def execution_order(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top-level steps ordered so each runs after the steps it refers to or depends on (stable otherwise)."""
    names = {s["Name"] for s in steps}
    owner = {}  # a branch step's name -> its condition step (a reference to it waits for the condition)
    for step in steps:
        if step["Type"] == "Condition":
            for inner in _all_steps(step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", [])):
                owner[inner["Name"]] = step["Name"]
    needs = {}
    for step in steps:
        wanted = references(step.get("Arguments", {})) | references(step.get("PropertyFiles", []))
        wanted |= set(step.get("DependsOn", []))
        if step["Type"] == "Condition":
            for inner in _all_steps(step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", [])):
                wanted |= references(inner.get("Arguments", {})) | set(inner.get("DependsOn", []))
        resolved = {owner.get(n, n) for n in wanted} - {step["Name"]}
        unknown = resolved - names
        if unknown:
            raise ValidationError(f"step {step['Name']} refers to unknown step(s) {sorted(unknown)}")
        needs[step["Name"]] = resolved
    ordered: list[dict[str, Any]] = []
    done: set[str] = set()
    while len(ordered) < len(steps):
        ready = [s for s in steps if s["Name"] not in done and needs[s["Name"]] <= done]
        if not ready:
            raise ValidationError(f"the steps {sorted(names - done)} depend on each other in a cycle")
        ordered.append(ready[0])
        done.add(ready[0]["Name"])
    return ordered


# -- cache ------------------------------------------------------------------------------------------------------------


def _expiry(duration: str | None) -> timedelta | None:
    if not duration:
        return None
    match = _DURATION.match(duration.strip())
    if not match or not any(match.groups()):
        raise ValidationError(f"CacheConfig ExpireAfter {duration!r} is not an ISO 8601 duration")
    years, months, weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=365 * years + 30 * months + 7 * weeks + days, hours=hours, minutes=minutes, seconds=seconds)


class StepCache:
    """Successful steps' results by cache key, one JSON file each (they die with the embedded AWS's state)."""

    def __init__(self, folder: Path, s3: Any) -> None:
        self.folder = folder
        self.s3 = s3

    def _fingerprint(self, uri: str) -> Any:
        bucket, _, prefix = uri[5:].partition("/")
        try:
            listed = []
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                listed += [(o["Key"][len(prefix):], o["ETag"]) for o in page.get("Contents", [])]
        except Exception:  # noqa: BLE001 - an unreadable input simply has no cached result
            return {"unreadable": uri}
        return {"content": sorted(listed)} if listed else {"missing": uri}

    def _content(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("s3://"):
            return self._fingerprint(value)
        if isinstance(value, list):
            return [self._content(v) for v in value]
        if isinstance(value, dict):
            return {k: self._content(v) for k, v in value.items()}
        return value

    def key(self, pipeline: str, step: Mapping[str, Any], arguments: Mapping[str, Any]) -> str:
        attributes = {a: arguments.get(a) for a in CACHE_KEY_ATTRIBUTES.get(step["Type"], ())}
        document = {"pipeline": pipeline, "step": step["Name"], "type": step["Type"],
                    "attributes": self._content(attributes)}
        return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()

    def lookup(self, key: str, expire_after: str | None) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        entry = json.loads(path.read_text(encoding="utf-8"))
        limit = _expiry(expire_after)
        if limit is not None and datetime.fromisoformat(entry["finished_at"]) + limit < datetime.now(timezone.utc):
            return None
        return entry

    def store(self, key: str, entry: Mapping[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.folder / f"{key}.json", json.dumps(entry, default=str))


# -- executor ---------------------------------------------------------------------------------------------------------


class PipelineExecutor:
    """Executes one pipeline definition; one instance can run it many times."""

    def __init__(self, definition: Mapping[str, Any] | str, *, pipeline_arn: str, records_dir: Path,
                 clients: ClientFactory, environment: Mapping[str, str] | None = None,
                 on_step: Callable[[StepRecord], None] | None = None) -> None:
        self.definition = json.loads(definition) if isinstance(definition, str) else dict(definition)
        self.pipeline_arn = pipeline_arn
        self.pipeline_name = pipeline_arn.rsplit("/", 1)[-1]
        self.records_dir = Path(records_dir)
        self.clients = clients
        self.environment = dict(environment or {})
        self.on_step = on_step or (lambda record: None)
        self.order = execution_order(self.definition.get("Steps", []))
        self.s3 = clients("s3", None)
        self.cache = StepCache(self.records_dir / "step-cache", self.s3)

    def start(self, overrides: Mapping[str, Any] | None = None, *, execution_id: str | None = None) -> Execution:
        """Check the parameters and create the execution's record (nothing runs yet)."""
        parameters = resolve_parameters(self.definition, overrides)
        execution_id = execution_id or new_execution_id()
        record_dir = self.records_dir / self.pipeline_name / execution_id
        (record_dir / "logs").mkdir(parents=True, exist_ok=True)
        execution = Execution(
            arn=f"{self.pipeline_arn}/execution/{execution_id}", execution_id=execution_id,
            pipeline_name=self.pipeline_name, parameters=parameters, started_at=_now(), record_dir=str(record_dir),
            steps=[StepRecord(name=s["Name"], type=s["Type"]) for s in _all_steps(self.definition.get("Steps", []))],
        )
        execution.save()
        return execution

    def run(self, overrides: Mapping[str, Any] | None = None, *, execution_id: str | None = None) -> Execution:
        """Start an execution and run it to the end; the returned execution is Succeeded or Failed."""
        return self.resume(self.start(overrides, execution_id=execution_id))

    def resume(self, execution: Execution, stop: threading.Event | None = None) -> Execution:
        """Run a started execution to its end: Succeeded, Failed, or Stopped once ``stop`` is set (the running job's
        process is ended, the steps after it do not run)."""
        stop = stop or threading.Event()
        context = ExecutionContext(
            parameters=dict(execution.parameters),
            execution={"PipelineExecutionId": execution.execution_id, "PipelineExecutionArn": execution.arn,
                       "PipelineName": self.pipeline_name, "CurrentDateTime": execution.started_at,
                       "StartDateTime": execution.started_at},
        )
        queue = list(self.order)
        while queue and execution.status == EXECUTING:
            if stop.is_set():
                execution.status = STOPPED
                break
            step = queue.pop(0)
            branch = self._run_step(step, context, execution, stop)
            queue = branch + queue
        if execution.status == EXECUTING:
            execution.status = SUCCEEDED
        execution.ended_at = _now()
        execution.save()
        return execution

    def _run_step(self, step: dict[str, Any], context: ExecutionContext, execution: Execution,
                  stop: threading.Event) -> list[dict]:
        record = execution.step(step["Name"])
        record.status, record.started_at = EXECUTING, _now()
        execution.save()
        self.on_step(record)
        started = time.monotonic()
        branch: list[dict] = []
        log = ""
        try:
            arguments = context.evaluate(step.get("Arguments", {}))
            kind = step["Type"]
            if kind in ("Processing", "Training"):
                log = self._run_job(step, arguments, context, execution, record, stop)
            elif kind == "Transform":
                log = self._run_transform(step, arguments, context, execution, record, stop)
            elif kind == "Condition":
                holds = all(condition_holds(c, context) for c in step["Arguments"].get("Conditions", []))
                record.properties = {"Outcome": "True" if holds else "False"}
                branch = list(step["Arguments"].get("IfSteps" if holds else "ElseSteps", []))
                context.steps[step["Name"]] = record.properties
            elif kind == "Fail":
                message = str(arguments.get("ErrorMessage") or f"step {step['Name']} failed the execution")
                raise ExecutionFailedError(message)
            elif kind == "RegisterModel":
                record.properties = self._register(arguments)
                context.steps[step["Name"]] = record.properties
            elif kind == "Model":
                record.properties = self._create_model(step, arguments, execution)
                context.steps[step["Name"]] = record.properties
            else:
                raise ValidationError(f"step {step['Name']}: the local executor does not run {kind} steps")
            record.status = SUCCEEDED
        except StepStopped as exc:
            record.status, execution.status = STOPPED, STOPPED
            log = exc.log
        except StepFailed as exc:
            self._fail(execution, record, str(exc))
            log = exc.log
        except (ExecutionFailedError, ValidationError) as exc:
            self._fail(execution, record, str(exc))
        except Exception as exc:  # noqa: BLE001 - a step's unexpected error fails the execution, never the caller
            self._fail(execution, record, f"step {step['Name']}: {type(exc).__name__}: {exc}")
        record.seconds = time.monotonic() - started
        record.ended_at = _now()
        if log:
            path = Path(execution.record_dir) / "logs" / f"{step['Name']}.log"
            path.write_text(log, encoding="utf-8")
            record.log_file = str(path)
        execution.save()
        self.on_step(record)
        return branch

    @staticmethod
    def _fail(execution: Execution, record: StepRecord, reason: str) -> None:
        record.status, record.failure_reason = FAILED, reason
        execution.status, execution.failure_reason = FAILED, reason

    def _cached(self, step: dict[str, Any], arguments: dict[str, Any], context: ExecutionContext,
                record: StepRecord) -> tuple[str | None, bool]:
        """(the step's cache key or None, whether a cached result was reused)."""
        cache_config = step.get("CacheConfig") or {}
        key = self.cache.key(self.pipeline_name, step, arguments) if cache_config.get("Enabled") else None
        cached = self.cache.lookup(key, cache_config.get("ExpireAfter")) if key else None
        if cached is None:
            return key, False
        record.properties, record.cache_hit = cached["properties"], cached["execution_arn"]
        context.steps[step["Name"]] = cached["properties"]
        context.property_files[step["Name"]] = cached.get("property_files", {})
        return key, True

    def _run_job(self, step: dict[str, Any], arguments: dict[str, Any], context: ExecutionContext,
                 execution: Execution, record: StepRecord, stop: threading.Event) -> str:
        key, hit = self._cached(step, arguments, context, record)
        if hit:
            return f"cache hit: reused the result of {record.cache_hit}\n"
        job_name = f"pipelines-{execution.execution_id}-{step['Name']}"[:63]
        work_dir = Path(execution.record_dir) / "work" / step["Name"]
        runner = run_processing_job if step["Type"] == "Processing" else run_training_job
        try:
            result = runner(job_name, arguments, work_dir=work_dir, s3=self.s3, environment=self.environment,
                            stop=stop)
        finally:
            if stop.is_set():
                shutil.rmtree(work_dir, ignore_errors=True)
        record.properties = result.properties
        context.steps[step["Name"]] = result.properties
        files = {pf["PropertyFileName"]: read_property_file(arguments, pf, self.s3)
                 for pf in step.get("PropertyFiles", [])}
        context.property_files[step["Name"]] = files
        shutil.rmtree(work_dir, ignore_errors=True)
        if key:
            self.cache.store(key, {"execution_arn": execution.arn, "step": step["Name"], "finished_at": _now(),
                                   "properties": result.properties, "property_files": files})
        return result.log

    def _run_transform(self, step: dict[str, Any], arguments: dict[str, Any], context: ExecutionContext,
                       execution: Execution, record: StepRecord, stop: threading.Event) -> str:
        """``CreateTransformJob`` in the pipeline's account, then its status until it ends; the step's properties are
        the job's DescribeTransformJob. Stopping the execution stops the job."""
        from botocore.exceptions import ClientError

        key, hit = self._cached(step, arguments, context, record)
        if hit:
            return f"cache hit: reused the result of {record.cache_hit}\n"
        request = {k: v for k, v in arguments.items() if v not in ({}, None)}
        name = _JOB_NAME.sub("-", f"pipelines-{execution.execution_id}-{step['Name']}".lower())[:63].strip("-")
        request["TransformJobName"] = name
        sagemaker = self.clients("sagemaker", None)
        try:
            sagemaker.create_transform_job(**request)
        except ClientError as error:
            raise ExecutionFailedError(f"step {step['Name']}: CreateTransformJob: "
                                       f"{error.response.get('Error', {}).get('Message', error)}") from None
        record.properties = {"TransformJobName": name}
        asked_to_stop = False
        while True:
            described = sagemaker.describe_transform_job(TransformJobName=name)
            status = described["TransformJobStatus"]
            if status in ("Completed", "Failed", "Stopped"):
                break
            if stop.is_set() and not asked_to_stop:
                sagemaker.stop_transform_job(TransformJobName=name)
                asked_to_stop = True
            time.sleep(TRANSFORM_POLL_SECONDS)
        described.pop("ResponseMetadata", None)
        properties = json.loads(json.dumps(described, default=_iso))
        record.properties = properties
        log = f"transform job {name}: {status}\n"
        if status == "Stopped":
            raise StepStopped(f"transform job {name} was stopped", log=log)
        if status == "Failed":
            raise StepFailed(f"transform job {name} failed: {described.get('FailureReason', 'no reason given')}",
                             log=log)
        context.steps[step["Name"]] = properties
        context.property_files[step["Name"]] = {}
        if key:
            self.cache.store(key, {"execution_arn": execution.arn, "step": step["Name"], "finished_at": _now(),
                                   "properties": properties, "property_files": {}})
        return log

    def _register(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """``CreateModelPackage`` in the group's account (the registry); the group is addressed by name there."""
        request = {k: v for k, v in arguments.items() if v not in ({}, None)}
        group = str(request["ModelPackageGroupName"])
        account = None
        if group.startswith("arn:"):
            account, group = group.split(":")[4], group.rsplit("/", 1)[-1]
        request["ModelPackageGroupName"] = group
        metrics = request.get("ModelMetrics")
        if isinstance(metrics, dict):
            request["ModelMetrics"] = {k: v for k, v in metrics.items() if v}
        sagemaker = self.clients("sagemaker", account)
        arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
        return {"ModelPackageArn": arn, "ModelApprovalStatus": request.get("ModelApprovalStatus")}


    def _create_model(self, step: dict[str, Any], arguments: dict[str, Any], execution: Execution) -> dict[str, Any]:
        """``CreateModel`` in the pipeline's account, named as SageMaker names a pipeline's models."""
        request = {k: v for k, v in arguments.items() if v not in ({}, None)}
        request.setdefault("ModelName", f"pipelines-{execution.execution_id}-{step['Name']}"[:63])
        arn = self.clients("sagemaker", None).create_model(**request)["ModelArn"]
        return {"ModelName": request["ModelName"], "ModelArn": arn}


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def load_execution(record_dir: Path) -> Execution:
    return Execution.from_dict(json.loads((Path(record_dir) / "execution.json").read_text(encoding="utf-8")))
