"""The platform's configuration as declared in ``cdk.json`` context: environments and use cases.

``app.py`` reads it once to build the stages; the library reads the same file when it runs from a checkout. Both go
through this module, so a typo in ``cdk.json`` fails the same way in ``cdk synth`` and in a notebook.

Each section is a validated model that refuses unknown keys (pydantic, ``extra="forbid"``) and checks its values in
named ``_validate_*`` methods; :func:`_parse` turns pydantic's errors into one :class:`ConfigurationError` sentence
that names the setting and what is allowed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelwerk.core.contract import Contract
from modelwerk.errors import ConfigurationError

ENVIRONMENTS_KEY = "modelwerk:environments"
USE_CASES_KEY = "modelwerk:use_cases"
TAGS_KEY = "modelwerk:tags"
PROJECT_KEY = "modelwerk:project"
MLFLOW_KEY = "modelwerk:mlflow"
#: Sizes SageMaker offers for a managed MLflow tracking server.
TRACKING_SERVER_SIZES = ("Small", "Medium", "Large")
WORKLOAD_ENVIRONMENTS = ("dev", "staging", "prod")
#: How an endpoint's blue/green deployment shifts traffic to the new fleet.
TRAFFIC_ROUTINGS = ("canary", "linear", "all_at_once")
#: SageMaker's endpoint names: letters, digits and single hyphens, at most 63 characters.
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-?[a-zA-Z0-9]){0,62}$")
#: Instance families with local NVMe storage (m5d, c6id, g4dn, p4d, ...): SageMaker refuses a volume KMS key on them.
_INSTANCE_STORAGE = re.compile(r"^ml\.[a-z]+\d+[a-z]*d[a-z]*\.")
#: SageMaker's limits on a blue/green deployment's waits (TrafficRoutingConfig and BlueGreenUpdatePolicy).
MAX_WAIT_SECONDS = 3600
#: SageMaker Serverless Inference's limits (ProductionVariantServerlessConfig): memory in 1 GB steps, concurrency.
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200


class _Settings(BaseModel):
    """A section of cdk.json: immutable, strict about types (no "yes" for true), no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)


#: How pydantic's type errors read in a ConfigurationError.
_TYPE_WORDS = {"int_type": "a whole number", "bool_type": "true or false", "string_type": "a string",
               "float_type": "a number", "dict_type": "an object", "list_type": "a list", "tuple_type": "a list",
               "model_type": "an object of settings"}


def _parse(model: type[_Settings], owner: str, doc: Any, **extra: Any) -> Any:
    """``model`` validated from ``doc`` (plus ``extra`` fields the caller knows), or one ConfigurationError."""
    if not isinstance(doc, Mapping):
        raise ConfigurationError(f"{owner} in cdk.json must be an object of settings, not {doc!r}")
    try:
        return model.model_validate({**doc, **extra})
    except ValidationError as error:
        raise ConfigurationError(_message(model, owner, error)) from None


def _message(model: type[_Settings], owner: str, error: ValidationError) -> str:
    problems = error.errors()
    unknown = sorted(str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden")
    if unknown:
        allowed = sorted(name for name in model.model_fields if name not in ("name", "contract"))
        return f"{owner} in cdk.json has unknown setting(s) {unknown}; allowed: {allowed}"
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] in _TYPE_WORDS:
        return f"{owner}: {field} must be {_TYPE_WORDS[first['type']]}, not {first['input']!r}"
    if first["type"] == "missing":
        return f"{owner} needs {field!r}"
    message = str(first.get("ctx", {}).get("error") or first["msg"])
    return message if message.startswith(owner) else f"{owner}: {message}"


def _within(name: str, value: int, low: int, high: int | None = None) -> int:
    """``value`` within [low, high], else a ValueError naming the setting (pydantic collects it)."""
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bounds}, not {value}")
    return value


class ServerlessSettings(_Settings):
    """A serverless endpoint's capacity (``"serverless"`` of an endpoint in cdk.json).

    memory_mb: memory of each concurrent worker, 1024-6144 in steps of 1024 (SageMaker's sizes).
    max_concurrency: concurrent invocations before SageMaker throttles, 1-200.
    """

    memory_mb: int = 2048
    max_concurrency: int = 5

    @model_validator(mode="after")
    def _validate_capacity(self) -> "ServerlessSettings":
        if self.memory_mb not in SERVERLESS_MEMORY_MB:
            raise ValueError(f"serverless memory_mb must be one of {list(SERVERLESS_MEMORY_MB)}, not {self.memory_mb}")
        _within("serverless max_concurrency", self.max_concurrency, 1, SERVERLESS_MAX_CONCURRENCY)
        return self


class EndpointSettings(_Settings):
    """One SageMaker endpoint of an environment (``endpoints.<name>`` of the environment in cdk.json).

    name: the key; the endpoint's name in SageMaker (letters, digits, single hyphens, at most 63 characters).
    use_case: the use case whose registered versions it serves (must be declared under ``modelwerk:use_cases``).
    multi_model: serve every model under ``models/<name>/`` of the serving bucket instead of one registered version
        (default False).
    instance_type: hosting instance type (default ``ml.m5.large``; families with local NVMe storage, like m5d or
        g4dn, are refused: their volume cannot take the serving KMS key).
    initial_instance_count: instances at creation (default 1, within min_instances..max_instances).
    min_instances, max_instances: auto-scaling bounds (default 1 and 2).
    invocations_per_instance: target of the target-tracking policy on SageMakerVariantInvocationsPerInstance,
        invocations per instance per minute (default 1000).
    capture_sampling_percent: share of requests whose input and output are captured for drift monitoring (default
        100; 0 switches capture off).
    traffic_routing: how a blue/green deployment shifts traffic: ``canary`` (default), ``linear`` or
        ``all_at_once``.
    canary_percent: the canary's size, or the linear step size, in percent of the fleet (default 10; canary 1-50,
        linear 10-50, as SageMaker allows).
    wait_seconds: wait between traffic shifts, during which the rollback alarms are watched (default 300, at most
        3600).
    bake_seconds: the final bake before the old fleet is terminated (default 600, at most 3600).
    max_latency_ms: the latency alarm fires when p99 ModelLatency over a minute exceeds this (default 500).
    max_5xx_errors: the error alarm fires at this many 5xx responses in a minute (default 1).
    serverless: serve on SageMaker Serverless Inference instead of instances (:class:`ServerlessSettings`; default
        none). A serverless endpoint has no data capture, so no drift monitor and no no-data alarm; it cannot be
        multi-model, and the instance, auto-scaling and capture settings do not apply to it.
    """

    name: str
    use_case: str
    multi_model: bool = False
    instance_type: str = "ml.m5.large"
    initial_instance_count: int = 1
    min_instances: int = 1
    max_instances: int = 2
    invocations_per_instance: int = 1000
    capture_sampling_percent: int = 100
    traffic_routing: str = "canary"
    canary_percent: int = 10
    wait_seconds: int = 300
    bake_seconds: int = 600
    max_latency_ms: int = 500
    max_5xx_errors: int = 1
    serverless: ServerlessSettings | None = None

    @property
    def captures(self) -> bool:
        """Whether requests are captured (and so monitored for drift): never on a serverless endpoint."""
        return self.serverless is None and self.capture_sampling_percent > 0

    @classmethod
    def from_dict(cls, environment: str, name: str, doc: Any) -> "EndpointSettings":
        owner = f"endpoint {name!r} of environment {environment!r}"
        if not isinstance(name, str) or not _ENDPOINT_NAME.match(name):
            raise ConfigurationError(
                f"endpoint name {name!r} of environment {environment!r} is not a SageMaker endpoint name (letters, "
                "digits and single hyphens, at most 63 characters)")
        if isinstance(doc, Mapping) and (not isinstance(doc.get("use_case"), str) or not doc["use_case"]):
            raise ConfigurationError(f"{owner} needs a 'use_case'")
        if isinstance(doc, Mapping) and doc.get("serverless") is not None:  # its own errors name its own settings
            doc = {**doc, "serverless": _parse(ServerlessSettings, f"{owner}: serverless", doc["serverless"])}
        return _parse(cls, owner, doc, name=name)

    @model_validator(mode="after")
    def _validate_instances(self) -> "EndpointSettings":
        if not self.instance_type.startswith("ml."):
            raise ValueError(f"instance_type {self.instance_type!r} is not a SageMaker instance type")
        if _INSTANCE_STORAGE.match(self.instance_type):
            raise ValueError(
                f"instance_type {self.instance_type} has local NVMe storage, which cannot be encrypted with the "
                "serving key; choose a family without the 'd' (e.g. ml.m5.large)")
        low = _within("min_instances", self.min_instances, 1)
        high = _within("max_instances", self.max_instances, low)
        _within("initial_instance_count", self.initial_instance_count, low, high)
        _within("invocations_per_instance", self.invocations_per_instance, 1)
        _within("capture_sampling_percent", self.capture_sampling_percent, 0, 100)
        return self

    @model_validator(mode="after")
    def _validate_deployment(self) -> "EndpointSettings":
        if self.traffic_routing not in TRAFFIC_ROUTINGS:
            raise ValueError(f"traffic_routing must be one of {list(TRAFFIC_ROUTINGS)}, not {self.traffic_routing!r}")
        low_step = 10 if self.traffic_routing == "linear" else 1
        high_step = 100 if self.traffic_routing == "all_at_once" else 50
        _within("canary_percent", self.canary_percent, low_step, high_step)
        _within("wait_seconds", self.wait_seconds, 0, MAX_WAIT_SECONDS)
        _within("bake_seconds", self.bake_seconds, 0, MAX_WAIT_SECONDS)
        _within("max_latency_ms", self.max_latency_ms, 1)
        _within("max_5xx_errors", self.max_5xx_errors, 1)
        return self

    @model_validator(mode="after")
    def _validate_serverless(self) -> "EndpointSettings":
        if self.serverless is not None and self.multi_model:
            raise ValueError("a serverless endpoint cannot be multi_model (SageMaker Serverless Inference serves one "
                             "model); drop one of the two")
        return self


class EnvironmentConfig(_Settings):
    """One deployment environment (an AWS account and region).

    ``kind`` is ``workload`` (dev, staging, prod: data lake, pipelines, endpoints) or ``registry`` (the shared model
    registry account). Expiry days apply to the landing and quarantine zones; ``destroy_on_removal`` lets a
    throw-away environment delete its buckets with the stack (default: keep them). ``training``: the environment
    runs the use cases' training pipelines and may register versions in the registry; ``retraining_schedule``
    starts them on a schedule (an EventBridge expression; none: only on demand and on alarms). ``endpoints``: the
    environment's SageMaker endpoints by name (:class:`EndpointSettings`; default none). ``retraining_environment``:
    in an environment that serves but does not train, the training environment its "needs retraining" alarms
    start the pipelines of (default: the only training environment; required when there are several).
    ``profile``: the AWS profile (``~/.aws/config``) whose credentials reach this environment's account (default
    ``modelwerk-<name>`` where such a profile exists, else the credentials at hand); ``modelwerk local up`` writes
    these profiles for the local accounts. ``promotion_operators`` (registry only): principal ARNs or account ids,
    besides the registry account, that may assume the role that follows, approves and rolls back promotions.
    """

    name: str
    account: str
    region: str
    kind: str = "workload"
    availability_zones: tuple[str, ...] = Field(default=(), strict=False)
    vpc_cidr: str = "10.0.0.0/16"
    landing_expiry_days: int = 7
    quarantine_expiry_days: int = 30
    preparation_schedule: str = "cron(15 * * * ? *)"
    destroy_on_removal: bool = False
    training: bool = False
    retraining_schedule: str | None = None
    processing_instance_type: str = "ml.m5.large"
    training_instance_type: str = "ml.m5.large"
    endpoints: dict[str, EndpointSettings] = Field(default_factory=dict)
    retraining_environment: str | None = None
    profile: str | None = None
    promotion_operators: tuple[str, ...] = Field(default=(), strict=False)

    @classmethod
    def from_dict(cls, name: str, doc: Mapping[str, Any]) -> "EnvironmentConfig":
        owner = f"environment {name!r}"
        if not isinstance(doc, Mapping):
            raise ConfigurationError(f"{owner} in cdk.json must be an object of settings, not {doc!r}")
        for required in ("account", "region"):
            if required not in doc:
                raise ConfigurationError(f"environment {name!r} in cdk.json needs {required!r}")
        endpoints = doc.get("endpoints") or {}
        if not isinstance(endpoints, Mapping):
            raise ConfigurationError(f"{owner}: endpoints must be an object of endpoint name -> settings")
        values = {**doc, "account": str(doc["account"]),
                  "endpoints": {key: EndpointSettings.from_dict(name, key, value) for key, value in endpoints.items()}}
        return _parse(cls, owner, values, name=name)

    @model_validator(mode="after")
    def _validate_account(self) -> "EnvironmentConfig":
        if not (len(self.account) == 12 and self.account.isdigit()):
            raise ValueError(f"account {self.account!r} must be a 12-digit AWS account id")
        if self.kind not in ("workload", "registry"):
            raise ValueError("kind must be 'workload' or 'registry'")
        return self

    @model_validator(mode="after")
    def _validate_workload(self) -> "EnvironmentConfig":
        if self.training and self.kind != "workload":
            raise ValueError("only a workload environment can run training pipelines")
        if self.endpoints and self.kind != "workload":
            raise ValueError("only a workload environment hosts endpoints")
        if self.kind == "workload" and len(self.availability_zones) < 2:
            raise ValueError("list at least two availability_zones for its VPC")
        return self

    @property
    def profile_name(self) -> str:
        """The AWS profile that reaches this environment's account (``profile``, else ``modelwerk-<name>``)."""
        return self.profile or f"modelwerk-{self.name}"


#: The metric a use case's quality gate reads by default, per task.
DEFAULT_QUALITY_METRIC = {"classification": "f1", "regression": "r2"}
#: How a drift alarm treats a window without data (CloudWatch's TreatMissingData values).
NO_DATA_TREATMENTS = ("notBreaching", "breaching", "ignore", "missing")
#: Quality alarms the monitor can raise: metric -> direction (``min``: alarm below, ``max``: alarm above).
QUALITY_ALARMS = {"min_accuracy": "Accuracy", "min_f1": "F1", "max_rmse": "RMSE", "max_mae": "MAE"}


class MonitoringConfig(_Settings):
    """The drift monitor's settings of a use case (``"monitoring"`` of the use case in cdk.json).

    schedule: how often each of the use case's endpoints is monitored (default ``rate(1 hour)``).
    window_minutes: the captured requests a run looks at, ending at the run's time (default 60).
    max_psi: the drift alarm fires when the worst feature's PSI reaches this (default 0.2).
    drift_periods: consecutive monitor runs at or above ``max_psi`` before the alarm fires (default 1).
    no_data: how the drift alarm treats a window without requests (default ``notBreaching``; ``breaching`` pages
        on-call when an endpoint stops receiving traffic).
    quality: alarm thresholds on model quality from ground truth: ``min_accuracy``, ``min_f1`` (classification),
        ``max_rmse``, ``max_mae`` (regression); none set, no quality alarm.
    """

    schedule: str = "rate(1 hour)"
    window_minutes: int = 60
    max_psi: float = 0.2
    drift_periods: int = 1
    no_data: str = "notBreaching"
    quality: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def from_dict(cls, use_case: str, doc: Mapping[str, Any] | None) -> "MonitoringConfig":
        return _parse(cls, f"use case {use_case!r}: monitoring", doc or {})

    @model_validator(mode="before")
    @classmethod
    def _validate_numbers(cls, doc: Any) -> Any:
        """Strict types, except that a whole number is a number (``max_psi: 1``)."""
        if isinstance(doc, Mapping) and isinstance(doc.get("max_psi"), int) and not isinstance(doc["max_psi"], bool):
            doc = {**doc, "max_psi": float(doc["max_psi"])}
        if isinstance(doc, Mapping) and isinstance(doc.get("quality"), Mapping):
            doc = {**doc, "quality": {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                                      for k, v in doc["quality"].items()}}
        return doc

    @model_validator(mode="after")
    def _validate_monitoring(self) -> "MonitoringConfig":
        if not self.schedule.startswith(("rate(", "cron(")):
            raise ValueError("schedule must be an EventBridge rate(...) or cron(...) expression")
        for name in ("window_minutes", "drift_periods"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a whole number of at least 1")
        if self.max_psi <= 0:
            raise ValueError("max_psi must be a positive number")
        if self.no_data not in NO_DATA_TREATMENTS:
            raise ValueError(f"no_data must be one of {list(NO_DATA_TREATMENTS)}")
        bad = sorted(set(self.quality) - set(QUALITY_ALARMS))
        if bad:
            raise ValueError(f"quality thresholds {bad} unknown; allowed: {sorted(QUALITY_ALARMS)}")
        return self


class BatchConfig(_Settings):
    """The use case's inference pipeline (``"batch"`` of the use case in cdk.json): Batch Transform over a snapshot.

    schedule: when to score the latest snapshot with the version the environment serves, as an EventBridge
        ``cron(...)``/``rate(...)`` expression (default none: on demand only).
    on_new_snapshot: score each snapshot when its preparation publishes it (default false).
    instance_type / instance_count: the transform job's instances (default ``ml.m5.large`` x 1).
    max_payload_mb: the largest request of records the transform sends the model (MaxPayloadInMB, 1-100; default 6).
    max_concurrent_transforms: requests in flight per instance (default 1).
    """

    schedule: str | None = None
    on_new_snapshot: bool = False
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 1

    @classmethod
    def from_dict(cls, use_case: str, doc: Mapping[str, Any] | None) -> "BatchConfig":
        return _parse(cls, f"use case {use_case!r}: batch", doc or {})

    @model_validator(mode="after")
    def _validate_batch(self) -> "BatchConfig":
        if self.schedule is not None and not self.schedule.startswith(("rate(", "cron(")):
            raise ValueError("schedule must be an EventBridge rate(...) or cron(...) expression")
        if not self.instance_type.startswith("ml."):
            raise ValueError(f"instance_type {self.instance_type!r} is not a SageMaker instance type")
        _within("instance_count", self.instance_count, 1)
        _within("max_payload_mb", self.max_payload_mb, 1, 100)
        _within("max_concurrent_transforms", self.max_concurrent_transforms, 1)
        return self


class UseCaseConfig(_Settings):
    """One use case: a folder under ``sagemaker_pipelines/`` holding its contract, and its training settings.

    folder: the use case's folder, relative to the checkout (its ``contract.json`` declares the use case).
    quality_metric / quality_threshold: the gate a new version must pass to be registered (a metric of the
    evaluate step's ``evaluation.json``; default f1 for classification, r2 for regression, threshold 0.5).
    hyperparameters: training hyperparameters that differ from the training script's defaults.
    monitoring: the drift monitor's schedule, window and alarm thresholds (:class:`MonitoringConfig`).
    batch: the inference pipeline's schedule and transform capacity (:class:`BatchConfig`).
    """

    name: str
    folder: Path
    contract: Contract
    quality_metric: str = ""
    quality_threshold: float = 0.5
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)

    @classmethod
    def from_dict(cls, name: str, doc: Any, root: Path) -> "UseCaseConfig":
        owner = f"use case {name!r}"
        if not isinstance(doc, Mapping):
            raise ConfigurationError(f"{owner} in cdk.json must be an object of settings, not {doc!r}")
        if not isinstance(doc.get("folder"), str):
            raise ConfigurationError(f"{owner} in cdk.json needs a 'folder' under sagemaker_pipelines/")
        folder = root / doc["folder"]
        contract_file = folder / "contract.json"
        if not contract_file.is_file():
            raise ConfigurationError(f"{owner}: {contract_file} not found; every use case folder holds a contract.json")
        contract = Contract.load(contract_file)
        if contract.use_case != name:
            raise ConfigurationError(f"{owner}: {contract_file} declares use_case {contract.use_case!r}")
        threshold = doc.get("quality_threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ConfigurationError(f"{owner}: quality_threshold must be a number, not {threshold!r}")
        values = {**doc, "folder": folder, "contract": contract, "quality_threshold": float(threshold),
                  "quality_metric": str(doc.get("quality_metric") or DEFAULT_QUALITY_METRIC.get(contract.task, "f1")),
                  "monitoring": MonitoringConfig.from_dict(name, doc.get("monitoring")),
                  "batch": BatchConfig.from_dict(name, doc.get("batch"))}
        return _parse(cls, owner, values, name=name)


class MlflowConfig(_Settings):
    """Experiment tracking (``modelwerk:mlflow`` in cdk.json).

    managed_tracking_server: deploy a SageMaker managed MLflow tracking server in the registry account (default
    False: it bills around the clock; without it, runs are tracked in a local MLflow store, see ``modelwerk.tracking``).
    tracking_server_size: ``Small``, ``Medium`` or ``Large`` (default ``Small``).
    """

    managed_tracking_server: bool = False
    tracking_server_size: str = "Small"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "MlflowConfig":
        return _parse(cls, MLFLOW_KEY, doc)

    @model_validator(mode="after")
    def _validate_size(self) -> "MlflowConfig":
        if self.tracking_server_size not in TRACKING_SERVER_SIZES:
            raise ValueError(f"tracking_server_size must be one of {list(TRACKING_SERVER_SIZES)}")
        return self


@dataclass(frozen=True)
class PlatformConfig:
    """Everything ``cdk.json`` declares for the platform."""

    root: Path
    project: str
    environments: dict[str, EnvironmentConfig]
    use_cases: dict[str, UseCaseConfig]
    tags: dict[str, str] = field(default_factory=dict)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    @property
    def registry(self) -> EnvironmentConfig:
        return next(e for e in self.environments.values() if e.kind == "registry")

    @property
    def workloads(self) -> list[EnvironmentConfig]:
        return [e for e in self.environments.values() if e.kind == "workload"]

    @property
    def training_environments(self) -> list[EnvironmentConfig]:
        """Where pipelines run and register versions (the registry lets only these accounts add versions)."""
        return [e for e in self.workloads if e.training]

    def retraining_environment(self, name: str) -> EnvironmentConfig | None:
        """Where the "needs retraining" alarms of ``name``'s endpoints start the training pipelines: ``name`` itself
        when it trains, else the training environment its ``retraining_environment`` names, else the only one; None
        when no environment trains. Several training environments and none named: a ConfigurationError, since
        retraining a served model from the wrong environment's data would go unnoticed."""
        environment = self.environment(name)
        if environment.training:
            return environment
        if environment.retraining_environment:
            return self.environment(environment.retraining_environment)
        training = self.training_environments
        if len(training) > 1:
            raise ConfigurationError(
                f"environment {name!r}: cdk.json has several training environments "
                f"({sorted(e.name for e in training)}); set its retraining_environment to the one whose pipelines "
                "its alarms start")
        return training[0] if training else None

    def retraining_alarms(self, name: str) -> dict[str, list[tuple[EnvironmentConfig, str]]]:
        """Use case -> the (environment, monitored endpoint) pairs whose composite alarm starts its pipeline in
        the training environment ``name``: its own endpoints and those of the environments that retrain in it.
        Empty unless ``name`` trains."""
        if not self.environment(name).training:
            return {}
        alarms: dict[str, list[tuple[EnvironmentConfig, str]]] = {}
        for environment in self.workloads:
            monitored = sorted((e for e in environment.endpoints.values() if e.captures and not e.multi_model),
                               key=lambda e: e.name)
            if not monitored:
                continue
            target = self.retraining_environment(environment.name)
            if target is None or target.name != name:
                continue
            for endpoint in monitored:
                alarms.setdefault(endpoint.use_case, []).append((environment, endpoint.name))
        return dict(sorted(alarms.items()))

    def environment(self, name: str) -> EnvironmentConfig:
        try:
            return self.environments[name]
        except KeyError:
            raise ConfigurationError(
                f"unknown environment {name!r}; cdk.json declares {sorted(self.environments)}"
            ) from None

    def use_case(self, name: str) -> UseCaseConfig:
        try:
            return self.use_cases[name]
        except KeyError:
            raise ConfigurationError(
                f"unknown use case {name!r}; cdk.json declares {sorted(self.use_cases)}"
            ) from None


def parse_context(context: Mapping[str, Any], root: Path) -> PlatformConfig:
    """Build the configuration from cdk.json's ``context`` object; ``root`` is the checkout the folders are relative to."""
    environments_doc = context.get(ENVIRONMENTS_KEY)
    if not environments_doc:
        raise ConfigurationError(f"cdk.json context has no {ENVIRONMENTS_KEY!r}")
    environments = {name: EnvironmentConfig.from_dict(name, doc) for name, doc in environments_doc.items()}
    registries = [e.name for e in environments.values() if e.kind == "registry"]
    if len(registries) != 1:
        raise ConfigurationError(f"cdk.json must declare exactly one registry environment, found {registries}")
    use_cases = {name: UseCaseConfig.from_dict(name, doc, root)
                 for name, doc in (context.get(USE_CASES_KEY) or {}).items()}
    for environment in environments.values():
        named = environment.retraining_environment
        if named is not None:
            target = environments.get(named)
            if environment.training or target is None or not target.training:
                raise ConfigurationError(
                    f"environment {environment.name!r}: retraining_environment {named!r} must name a training "
                    f"environment ({sorted(e.name for e in environments.values() if e.training)}), and only an "
                    "environment that does not train itself sets one")
        for endpoint in environment.endpoints.values():
            if endpoint.use_case not in use_cases:
                raise ConfigurationError(
                    f"endpoint {endpoint.name!r} of environment {environment.name!r} serves use case "
                    f"{endpoint.use_case!r}, which cdk.json does not declare; declared: {sorted(use_cases)}")
    return PlatformConfig(
        root=root,
        project=str(context.get(PROJECT_KEY, "modelwerk")),
        environments=environments,
        use_cases=use_cases,
        tags=dict(context.get(TAGS_KEY) or {}),
        mlflow=MlflowConfig.from_dict(context.get(MLFLOW_KEY) or {}),
    )


def find_checkout(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory, then this package) with a cdk.json."""
    candidates = [Path(start or os.getcwd()).resolve(), Path(__file__).resolve().parent]
    for candidate in candidates:
        for folder in (candidate, *candidate.parents):
            if (folder / "cdk.json").is_file():
                return folder
    return None


def state_dir(root: Path | str | None = None) -> Path:
    """Where this machine keeps the platform's records (reports, the local MLflow store, local mode's state):
    ``MODELWERK_STATE_DIR``, else ``.modelwerk/`` of the checkout at ``root`` (default: the nearest one, else ``~``)."""
    if os.environ.get("MODELWERK_STATE_DIR"):
        return Path(os.environ["MODELWERK_STATE_DIR"])
    checkout = Path(root) if root else find_checkout()
    return (checkout or Path.home()) / ".modelwerk"


def load(root: Path | str | None = None) -> PlatformConfig:
    """Read ``cdk.json`` of the checkout at ``root`` (default: the nearest one)."""
    checkout = Path(root) if root else find_checkout()
    if checkout is None:
        raise ConfigurationError("no cdk.json found here or above; run from a checkout of the platform or set MODELWERK_ENV")
    document = json.loads((checkout / "cdk.json").read_text(encoding="utf-8"))
    return parse_context(document.get("context", {}), checkout)
