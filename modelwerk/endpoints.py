"""Endpoints: deploy a registered model version, call it, look at it, remove it.

A single-model endpoint serves one version of a use case's model; a deployment to a running endpoint is blue/green:
the new fleet starts, takes a canary share of the traffic, then all of it, and the old fleet goes only after the bake
time passed with the endpoint's rollback alarms (5xx errors and model latency, deployed by the serving stack) quiet;
if one of them goes to ALARM, traffic returns to the old fleet by itself. A multi-model endpoint serves every model
under its S3 prefix (``models/<endpoint>/`` of the environment's serving bucket), loaded on first call: deploying a
version to it copies the artifact there, without a redeploy.

Locally (``modelwerk local up``) the serving container's code runs as local processes behind the local SageMaker
Runtime (:mod:`modelwerk.local.runtime`), captures every request into the embedded S3 in SageMaker's format, and the
local alarm evaluator judges the rollback alarms against the invocation metrics the runtime publishes. ``predict``
calls SageMaker Runtime's ``InvokeEndpoint`` with an ordinary boto3 client, locally and on AWS alike.

Example
-------
>>> import modelwerk
>>> modelwerk.endpoints.deploy("pump-health", 3, endpoint="pump-health").status
'InService'
>>> modelwerk.predict("pump-health", frame.drop(columns="failure_within_7d").head(2))
['ok', 'failure']
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from modelwerk import naming
from modelwerk.errors import ConfigurationError, LocalModeError, NotFoundError, ValidationError

log = logging.getLogger("modelwerk")

SINGLE_MODEL = "SingleModel"
MULTI_MODEL = "MultiModel"
#: SageMaker's InvokeEndpoint limit is 6 MB; requests are cut into chunks below it.
CHUNK_BYTES = 5 * 1024 * 1024
CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json", ".jsonl": "application/jsonlines",
                 ".jsonlines": "application/jsonlines"}
#: Locally, a deployment's waits are capped so that a blue/green deployment takes seconds, not the cloud's minutes.
LOCAL_WAIT_SECONDS = 3.0
LOCAL_BAKE_SECONDS = 8.0


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as the library reports it: what it serves and whether it takes traffic."""

    name: str
    status: str
    mode: str
    use_case: str | None
    model_package_arn: str | None
    version: int | None
    runtime_endpoint_url: str | None
    models: tuple[str, ...] = ()
    deployment: dict[str, Any] = field(default_factory=dict)
    variants: tuple[dict[str, Any], ...] = ()
    updated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.name, "status": self.status, "runtime_endpoint_url": self.runtime_endpoint_url,
                "mode": self.mode, "use_case": self.use_case, "model_package_arn": self.model_package_arn,
                "version": self.version, "models": list(self.models), "deployment": self.deployment,
                "variants": list(self.variants), "updated_at": self.updated_at}

    def _repr_html_(self) -> str:
        rows = [("status", self.status), ("mode", self.mode), ("use case", self.use_case),
                ("version", self.version), ("model package", self.model_package_arn),
                ("runtime URL", self.runtime_endpoint_url)]
        if self.models:
            rows.append(("models", ", ".join(self.models[:20]) + (" …" if len(self.models) > 20 else "")))
        if self.deployment:
            rows.append(("last deployment", self.deployment.get("outcome")))
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in rows if v is not None)
        return f"<div><b>endpoint {html.escape(self.name)}</b><table>{cells}</table></div>"


# -- settings ---------------------------------------------------------------------------------------------------------


def _settings(env: str, name: str) -> Any:
    """The endpoint's ``EndpointSettings`` from cdk.json (``endpoints`` of the environment), else their defaults
    (also without a checkout, as in a Studio notebook)."""
    from modelwerk import settings as settings_module

    try:
        environment = settings_module.load().environment(env)
    except Exception:  # noqa: BLE001 - no checkout (a Studio notebook): the settings' defaults
        environment = None
    configured = (getattr(environment, "endpoints", None) or {}).get(name)
    return configured or settings_module.EndpointSettings(name=name, use_case="")


# -- deploy -----------------------------------------------------------------------------------------------------------


def deploy(use_case: str, version: int | str | list[int | str] = "latest", endpoint: str | None = None, *,
           multi_model: bool = False, env: str | None = None, bake_seconds: float | None = None,
           progress: Callable[[str], None] | None = None) -> Endpoint:
    """Deploy ``version`` of ``use_case`` to ``endpoint`` (default: the use case's name).

    Single-model: a new endpoint starts with the version; a running one is updated blue/green and rolls back by
    itself if its 5xx or latency alarm goes to ALARM (the returned endpoint's ``status`` is then ``RolledBack``).
    Multi-model (``multi_model=True``): the version's artifact (or each of a list of versions) is added to the
    endpoint's model prefix as ``<use case>/v<version>.tar.gz`` — the ``TargetModel`` to call it with —, and the
    endpoint starts if it is not running yet.

    Example
    -------
    >>> modelwerk.endpoints.deploy("pump-health", [1, 2, 3], endpoint="pump-fleet", multi_model=True).models
    ('pump-health/v1.tar.gz', 'pump-health/v2.tar.gz', 'pump-health/v3.tar.gz')
    """
    from modelwerk import models
    from modelwerk.platform import resolve

    platform = resolve(env)
    name = endpoint or use_case
    _check_name(name)
    say = progress or (lambda message: log.info(message))
    wanted = version if isinstance(version, list) else [version]
    if not wanted:
        raise ValidationError("give at least one version to deploy")
    if len(wanted) > 1 and not multi_model:
        raise ValidationError("a single-model endpoint serves one version; use multi_model=True for several")
    chosen = [models.version(use_case, v, env=env) for v in wanted]
    for mv in chosen:
        if mv.approval_status == models.REJECTED:
            raise ValidationError(f"{use_case} version {mv.version} is rejected; deploy an approved or pending version")
        if not mv.model_data_url:
            raise ValidationError(f"{use_case} version {mv.version} names no model artifact; re-register it")
    if not platform.local:
        return _deploy_on_sagemaker(platform, use_case, chosen, name, multi_model, say)
    return _LocalDeployment(platform, name, say).run(use_case, chosen, multi_model, bake_seconds)


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name or ""):
        raise ValidationError(f"endpoint name {name!r}: letters, digits and hyphens, up to 63 characters")


def multi_model_target(use_case: str, version: int) -> str:
    """The ``TargetModel`` of a version on a multi-model endpoint (its key under the endpoint's model prefix)."""
    return f"{use_case}/v{version}.tar.gz"


class _LocalDeployment:
    """One deploy call in local mode: serving processes, the endpoint record, the embedded SageMaker's view."""

    def __init__(self, platform: Any, name: str, say: Callable[[str], None]):
        from modelwerk import local
        from modelwerk.local import endpoints as local_endpoints

        self.platform = platform
        self.name = name
        self.say = say
        self.state = local.read_state()
        if self.state is None:
            raise LocalModeError("local mode is not running: start it with 'modelwerk local up'")
        self.root = Path(self.state.root)
        self.records = local._records_dir(self.root)
        self.env = platform.env
        self.folder = local_endpoints.endpoints_dir(self.records, self.env)
        self.session = platform.session()
        self.settings = _settings(platform.env, name)

    # the endpoint's fleets ---------------------------------------------------------------------------------------
    def run(self, use_case: str, chosen: list[Any], multi_model: bool, bake_seconds: float | None) -> Endpoint:
        from modelwerk.local import endpoints as local_endpoints

        record = local_endpoints.read_record(self.folder, self.name)
        if record is not None and not _fleets_alive(record):
            self.say(f"endpoint {self.name} lost its processes: starting it again")
            for variant in record.get("variants", []):
                local_endpoints.stop_process(variant.get("pid"))
            record = None
        if multi_model:
            if record is not None and record.get("mode") != MULTI_MODEL:
                raise ValidationError(f"endpoint {self.name} is a single-model endpoint; delete it first or choose "
                                      "another name for the multi-model endpoint")
            return self._multi_model(use_case, chosen, record)
        if record is not None and record.get("mode") == MULTI_MODEL:
            raise ValidationError(f"endpoint {self.name} is a multi-model endpoint; deploy with --multi-model to add "
                                  "a version to it")
        mv = chosen[0]
        if record is None:
            fleet = self._start_single(mv, "blue")
            record = self._record(use_case, mv, [fleet.to_record(1.0)], SINGLE_MODEL, deployment={
                "strategy": "create", "outcome": "Created", "at": _now()})
            self._publish(record, mv)
            return self._endpoint(record)
        return self._blue_green(use_case, mv, record, bake_seconds)

    def _endpoint(self, record: dict[str, Any]) -> Endpoint:
        return _from_record(record, self.state, self.env, self.session)

    def _capture_environment(self) -> dict[str, str]:
        """Data capture into the environment's serving bucket, written with the environment's credentials."""
        environment = {"MODELWERK_CAPTURE_SAMPLING_PERCENT": str(self.settings.capture_sampling_percent),
                       "MODELWERK_CAPTURE_FLUSH_SECONDS": "1"}
        try:
            bucket = self.platform.bucket("serving")
        except ConfigurationError:
            self.say(f"the {self.env} environment has no serving bucket: data capture is off for this endpoint")
            return {}
        credentials = self.session.get_credentials().get_frozen_credentials()
        environment.update({"AWS_ACCESS_KEY_ID": credentials.access_key,
                            "AWS_SECRET_ACCESS_KEY": credentials.secret_key})
        if credentials.token:
            environment["AWS_SESSION_TOKEN"] = credentials.token
        environment["MODELWERK_CAPTURE_S3_URI"] = f"s3://{bucket}/{naming.capture_prefix()}"
        key = self.platform.parameters.get("kms/serving-key-arn")
        if key:
            environment["MODELWERK_CAPTURE_KMS_KEY_ID"] = key
        return environment

    def _start_single(self, mv: Any, fleet_id: str):
        from modelwerk.local import endpoints as local_endpoints

        workdir = self.folder / self.name / f"{fleet_id}-v{mv.version}"
        if workdir.exists():
            shutil.rmtree(workdir)
        self.say(f"fetching {mv.use_case} version {mv.version}'s model artifact")
        local_endpoints.extract_model(_read_s3(mv.model_data_url, mv.use_case), workdir / "model")
        self.say(f"starting the {fleet_id} fleet of {self.name}")
        return local_endpoints.start_fleet(root=self.root, workdir=workdir, endpoint=self.name, fleet=fleet_id,
                                           environment={"MODELWERK_MODEL_DIR": str(workdir / "model"),
                                                        **self._capture_environment()})

    def _multi_model(self, use_case: str, chosen: list[Any], record: dict[str, Any] | None) -> Endpoint:
        from modelwerk.local import endpoints as local_endpoints

        bucket = self.platform.bucket("serving")
        prefix = naming.multi_model_prefix(self.name)
        s3 = self.session.client("s3")
        for mv in chosen:
            target = multi_model_target(use_case, mv.version)
            self.say(f"adding {target} to s3://{bucket}/{prefix}")
            s3.put_object(Bucket=bucket, Key=f"{prefix}{target}", Body=_read_s3(mv.model_data_url, use_case))
        if record is None:
            workdir = self.folder / self.name / "blue"
            cache = workdir / "models"
            cache.mkdir(parents=True, exist_ok=True)
            self.say(f"starting multi-model endpoint {self.name}")
            fleet = local_endpoints.start_fleet(
                root=self.root, workdir=workdir, endpoint=self.name, fleet="blue",
                environment={"SAGEMAKER_MULTI_MODEL": "true", "MODELWERK_MODEL_ROOT": str(cache),
                             **self._capture_environment()})
            variant = fleet.to_record(1.0, model_data_prefix=f"s3://{bucket}/{prefix}", model_cache_dir=str(cache))
            record = self._record(use_case, chosen[-1], [variant], MULTI_MODEL,
                                  deployment={"strategy": "create", "outcome": "Created", "at": _now()})
            self._publish(record, chosen[-1], model_data_url=f"s3://{bucket}/{prefix}")
        else:
            record["updated_at"] = _now()
            local_endpoints.write_record(self.folder, record)
        return self._endpoint(record)

    def _record(self, use_case: str, mv: Any, variants: list[dict[str, Any]], mode: str, *,
                deployment: dict[str, Any]) -> dict[str, Any]:
        from modelwerk.local import endpoints as local_endpoints

        record = {"endpoint": self.name, "mode": mode, "status": "InService", "use_case": use_case,
                  "model_package_arn": mv.arn if mode == SINGLE_MODEL else None,
                  "version": mv.version if mode == SINGLE_MODEL else None,
                  "input_schema": mv.input_schema, "variants": variants, "deployment": deployment,
                  "created_at": _now(), "updated_at": _now()}
        local_endpoints.write_record(self.folder, record)
        return record

    # blue/green ----------------------------------------------------------------------------------------------------
    def _blue_green(self, use_case: str, mv: Any, record: dict[str, Any], bake_seconds: float | None) -> Endpoint:
        from modelwerk.local import endpoints as local_endpoints

        blue = next(v for v in record["variants"] if v.get("weight", 0) > 0)
        wait = min(float(self.settings.wait_seconds), LOCAL_WAIT_SECONDS)
        bake = float(bake_seconds) if bake_seconds is not None else min(float(self.settings.bake_seconds),
                                                                        LOCAL_BAKE_SECONDS)
        green_id = "green" if blue.get("fleet") != "green" else "blue"
        steps: list[dict[str, Any]] = []
        deployment = {"strategy": f"blue/green {self.settings.traffic_routing}", "from_version": record.get("version"),
                      "to_version": mv.version, "started_at": _now(), "steps": steps}
        try:
            fleet = self._start_single(mv, green_id)
        except ValidationError as error:
            deployment.update(outcome="Failed", reason=str(error), finished_at=_now())
            record.update(deployment=deployment, updated_at=_now())
            local_endpoints.write_record(self.folder, record)
            raise
        green = fleet.to_record(0.0)
        shares = self._traffic_shares()
        alarms = [naming.endpoint_alarm_name(self.name, kind) for kind in ("5xx", "latency")]
        evaluator = self._evaluator()
        if not self._alarms_exist(alarms):
            self.say(f"no rollback alarms are deployed for {self.name}: blue/green runs without automatic rollback")
            alarms = []
        for index, share in enumerate(shares):
            last = index == len(shares) - 1
            blue["weight"], green["weight"] = round(1.0 - share, 4), share
            record.update(variants=[blue, green], status="Updating", updated_at=_now())
            local_endpoints.write_record(self.folder, record)
            self.say(f"{round(share * 100)}% of {self.name}'s traffic on version {mv.version}")
            seconds = bake if last else wait
            tripped = self._watch(evaluator, alarms, seconds)
            steps.append({"traffic_percent": round(share * 100), "seconds": seconds, "alarm": tripped, "at": _now()})
            if tripped:
                self.say(f"{tripped} in ALARM: rolling back to version {record.get('version')}")
                blue["weight"] = 1.0
                record.update(variants=[blue], status="InService", updated_at=_now(),
                              deployment={**deployment, "outcome": "RolledBack",
                                          "reason": f"alarm {tripped} went to ALARM at {round(share * 100)}% "
                                                    f"traffic: {self._alarm_reason(tripped)}",
                                          "finished_at": _now()})
                local_endpoints.write_record(self.folder, record)
                local_endpoints.stop_process(green["pid"])
                result = self._endpoint(record)
                return Endpoint(**{**result.__dict__, "status": "RolledBack"})
        green["weight"] = 1.0
        record.update(variants=[green], status="InService", model_package_arn=mv.arn, version=mv.version,
                      use_case=use_case, input_schema=mv.input_schema, updated_at=_now(),
                      deployment={**deployment, "outcome": "Succeeded", "finished_at": _now()})
        local_endpoints.write_record(self.folder, record)
        time.sleep(0.5)  # requests already routed to the old fleet finish before it stops
        local_endpoints.stop_process(blue.get("pid"))
        self._publish(record, mv)
        return self._endpoint(record)

    def _traffic_shares(self) -> list[float]:
        routing = self.settings.traffic_routing
        step = max(1, min(int(self.settings.canary_percent), 100)) / 100
        if routing == "all_at_once":
            return [1.0]
        if routing == "linear":
            shares, share = [], step
            while share < 1.0:
                shares.append(round(share, 4))
                share += step
            return [*shares, 1.0]
        return [step, 1.0]

    def _evaluator(self) -> Any:
        from modelwerk.local.alarms import AlarmEvaluator

        return AlarmEvaluator(self.session, records_dir=self.records)

    def _alarms_exist(self, alarms: list[str]) -> bool:
        found = self.session.client("cloudwatch").describe_alarms(AlarmNames=alarms)["MetricAlarms"]
        return len(found) == len(alarms)

    def _alarm_reason(self, name: str) -> str:
        found = self.session.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
        return found[0].get("StateReason", "") if found else ""

    def _watch(self, evaluator: Any, alarms: list[str], seconds: float) -> str | None:
        """Wait ``seconds`` while the local alarm evaluator judges ``alarms``: the first in ALARM, else None."""
        deadline = time.monotonic() + seconds
        if not alarms:
            time.sleep(max(seconds, 0))
            return None
        evaluator.watch(alarms, until=deadline, interval=0.5)
        for name in alarms:
            if evaluator.state(name) == "ALARM":
                return name
        return None

    # the embedded SageMaker's view --------------------------------------------------------------------------------
    def _publish(self, record: dict[str, Any], mv: Any, model_data_url: str | None = None) -> None:
        """Record the endpoint in the embedded SageMaker as SageMaker would hold it: model, config, endpoint."""
        from botocore.exceptions import ClientError

        sagemaker = self.session.client("sagemaker")
        suffix = secrets.token_hex(4)
        model_name = f"{self.name}-{suffix}"[:63]
        role = self.platform.parameters.get("serving/endpoint-role-arn") or \
            f"arn:aws:iam::{self.state.accounts[self.env]}:role/{self.platform.project}-{self.env}-endpoint"
        container = {"Image": mv.image or "modelwerk-serving", "Mode": record["mode"],
                     "ModelDataUrl": model_data_url or mv.model_data_url}
        if record["mode"] == SINGLE_MODEL:  # as the endpoint stack's model names it: the drift monitor reads it
            container["ModelPackageName"] = mv.arn
        capture = self._capture_environment()
        try:
            sagemaker.create_model(ModelName=model_name, PrimaryContainer=container, ExecutionRoleArn=role)
            config = {"EndpointConfigName": model_name, "ProductionVariants": [{
                "VariantName": "AllTraffic", "ModelName": model_name, "InstanceType": self.settings.instance_type,
                "InitialInstanceCount": self.settings.initial_instance_count}]}
            if capture.get("MODELWERK_CAPTURE_S3_URI"):
                config["DataCaptureConfig"] = {
                    "EnableCapture": True, "InitialSamplingPercentage": self.settings.capture_sampling_percent,
                    "DestinationS3Uri": capture["MODELWERK_CAPTURE_S3_URI"],
                    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                    "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"],
                                                 "JsonContentTypes": ["application/json", "application/jsonlines"]}}
            sagemaker.create_endpoint_config(**config)
            try:
                sagemaker.delete_endpoint(EndpointName=self.name)
            except ClientError:
                pass
            sagemaker.create_endpoint(EndpointName=self.name, EndpointConfigName=model_name)
        except ClientError as exc:
            log.warning("the embedded SageMaker did not take endpoint %s: %s", self.name, exc)


def _fleets_alive(record: dict[str, Any]) -> bool:
    from modelwerk.local import endpoints as local_endpoints

    return any(local_endpoints.alive(v.get("pid")) for v in record.get("variants", []) if v.get("weight", 0) > 0)


def _read_s3(uri: str, use_case: str) -> bytes:
    """A registry artifact: read in the registry account locally (its bucket is shared across accounts on AWS)."""
    from modelwerk import models

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    reg = models.registry(use_case)
    try:
        return reg.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # noqa: BLE001 - botocore's errors, reworded
        raise NotFoundError(f"model artifact {uri} cannot be read ({exc}); re-register the version") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _from_record(record: dict[str, Any], state: Any, env: str, session: Any) -> Endpoint:
    """A local endpoint's record as the library reports it; ``session`` is of the endpoint's account."""
    models_loaded: tuple[str, ...] = ()
    if record.get("mode") == MULTI_MODEL:
        models_loaded = tuple(_list_prefix(record, session))
    status = record.get("status", "InService")
    if status == "InService" and not _fleets_alive(record):
        status = "Failed"
    variants = tuple({k: v.get(k) for k in ("name", "fleet", "weight", "url")} for v in record.get("variants", []))
    return Endpoint(name=record["endpoint"], status=status, mode=record.get("mode", SINGLE_MODEL),
                    use_case=record.get("use_case"), model_package_arn=record.get("model_package_arn"),
                    version=record.get("version"), runtime_endpoint_url=state.runtime_endpoint_url(env),
                    models=models_loaded,
                    deployment=record.get("deployment") or {}, variants=variants, updated_at=record.get("updated_at"))


def _list_prefix(record: dict[str, Any], session: Any) -> list[str]:
    prefix_uri = next((v.get("model_data_prefix") for v in record.get("variants", []) if v.get("model_data_prefix")),
                      None)
    if not prefix_uri:
        return []
    bucket, _, prefix = prefix_uri.removeprefix("s3://").partition("/")
    names = []
    for page in session.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        names += [item["Key"][len(prefix):] for item in page.get("Contents", []) if item["Key"].endswith(".tar.gz")]
    return sorted(names)


# -- AWS --------------------------------------------------------------------------------------------------------------


def _deploy_on_sagemaker(platform: Any, use_case: str, chosen: list[Any], name: str, multi_model: bool,
                         say: Callable[[str], None]) -> Endpoint:
    """On AWS the dev endpoints are CloudFormation stacks too; from a notebook, SageMaker's own API deploys them."""
    import boto3
    from botocore.exceptions import ClientError

    sagemaker = boto3.client("sagemaker")
    settings = _settings(platform.env, name)
    if multi_model:
        bucket = platform.bucket("serving")
        prefix = naming.multi_model_prefix(name)
        s3 = boto3.client("s3")
        for mv in chosen:
            source_bucket, _, source_key = mv.model_data_url.removeprefix("s3://").partition("/")
            s3.copy_object(Bucket=bucket, Key=f"{prefix}{multi_model_target(use_case, mv.version)}",
                           CopySource={"Bucket": source_bucket, "Key": source_key})
        try:
            described = sagemaker.describe_endpoint(EndpointName=name)
            return _from_description(described, use_case, None)
        except ClientError:
            raise NotFoundError(f"multi-model endpoint {name} is not deployed in {platform.env}; deploy its endpoint "
                                "stack, then add models") from None
    mv = chosen[0]
    suffix = secrets.token_hex(4)
    role = platform.parameters.get("serving/endpoint-role-arn")
    if not role:
        raise ConfigurationError(f"the {platform.env} environment publishes no serving/endpoint-role-arn; deploy its "
                                 "serving stack")
    model_name = f"{name}-{suffix}"[:63]
    sagemaker.create_model(ModelName=model_name, ExecutionRoleArn=role,
                           Containers=[{"ModelPackageName": mv.arn}])
    sagemaker.create_endpoint_config(EndpointConfigName=model_name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model_name, "InstanceType": settings.instance_type,
        "InitialInstanceCount": settings.initial_instance_count}])
    try:
        sagemaker.describe_endpoint(EndpointName=name)
        exists = True
    except ClientError:
        exists = False
    if exists:
        say(f"updating {name} blue/green to version {mv.version}")
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=model_name, DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": int(settings.wait_seconds),
                                                "CanarySize": {"Type": "CAPACITY_PERCENT",
                                                               "Value": settings.canary_percent}},
                "TerminationWaitInSeconds": int(settings.bake_seconds)},
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": naming.endpoint_alarm_name(name, k)}
                                                     for k in ("5xx", "latency")]}})
    else:
        say(f"creating {name} with version {mv.version}")
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=model_name)
    return _from_description(sagemaker.describe_endpoint(EndpointName=name), use_case, mv)


def _from_description(described: dict[str, Any], use_case: str | None, mv: Any) -> Endpoint:
    return Endpoint(name=described["EndpointName"], status=described.get("EndpointStatus", "Unknown"),
                    mode=SINGLE_MODEL if mv is not None else MULTI_MODEL, use_case=use_case,
                    model_package_arn=getattr(mv, "arn", None), version=getattr(mv, "version", None),
                    runtime_endpoint_url=None)


# -- look, remove -----------------------------------------------------------------------------------------------------


def _local_folder(platform: Any) -> tuple[Any, Path | None]:
    """Local mode's state and the folder of ``platform``'s environment's endpoint records (None when stopped)."""
    from modelwerk import local
    from modelwerk.local import endpoints as local_endpoints

    state = local.read_state()
    if state is None:
        return None, None
    return state, local_endpoints.endpoints_dir(local._records_dir(Path(state.root)), platform.env)


def list_endpoints(*, env: str | None = None) -> list[Endpoint]:
    """The environment's endpoints."""
    from modelwerk.platform import resolve

    platform = resolve(env)
    if platform.local:
        from modelwerk.local import endpoints as local_endpoints

        state, folder = _local_folder(platform)
        session = platform.session()
        return [_from_record(r, state, platform.env, session) for r in local_endpoints.all_records(folder)] \
            if folder else []
    sagemaker = platform.session().client("sagemaker")
    found = []
    for page in sagemaker.get_paginator("list_endpoints").paginate():
        found += [Endpoint(name=e["EndpointName"], status=e["EndpointStatus"], mode="", use_case=None,
                           model_package_arn=None, version=None, runtime_endpoint_url=None)
                  for e in page["Endpoints"]]
    return found


def describe(name: str, *, env: str | None = None) -> Endpoint:
    """One endpoint, by name."""
    from modelwerk.platform import resolve

    platform = resolve(env)
    if platform.local:
        from modelwerk.local import endpoints as local_endpoints

        state, folder = _local_folder(platform)
        record = local_endpoints.read_record(folder, name) if folder else None
        if record is None:
            raise NotFoundError(f"there is no endpoint {name} in {platform.env}; 'modelwerk endpoints list' shows "
                                "them")
        return _from_record(record, state, platform.env, platform.session())
    from botocore.exceptions import ClientError

    try:
        return _from_description(platform.session().client("sagemaker").describe_endpoint(EndpointName=name), None,
                                 None)
    except ClientError:
        raise NotFoundError(f"there is no endpoint {name} in {platform.env}; 'modelwerk endpoints list' shows "
                            "them") from None


def delete(name: str, *, env: str | None = None) -> Endpoint:
    """Stop the endpoint and remove it (its captured data stays in S3)."""
    from modelwerk.platform import resolve

    platform = resolve(env)
    endpoint = describe(name, env=env)
    if platform.local:
        from modelwerk.local import endpoints as local_endpoints

        _, folder = _local_folder(platform)
        record = local_endpoints.read_record(folder, name) or {}
        for variant in record.get("variants", []):
            local_endpoints.stop_process(variant.get("pid"))
        local_endpoints.remove_record(folder, name)
        shutil.rmtree(folder / name, ignore_errors=True)
    from botocore.exceptions import ClientError

    try:
        platform.session().client("sagemaker").delete_endpoint(EndpointName=name)
    except ClientError as exc:
        if not platform.local:
            raise NotFoundError(f"endpoint {name} could not be deleted: {exc}") from None
    return Endpoint(**{**endpoint.__dict__, "status": "Deleted"})


# -- predict ----------------------------------------------------------------------------------------------------------


def predict(endpoint: str, data: Any, *, target_model: str | None = None, content_type: str | None = None,
            inference_id: str | None = None, env: str | None = None) -> list[Any]:
    """Predictions of ``endpoint`` for ``data``: a DataFrame, a file (CSV, JSON, JSON Lines) or a request body.

    A DataFrame or a CSV file with a header is sent as headerless CSV rows in the model's input order (other columns,
    such as the label, are left out); larger inputs go in several requests under SageMaker's 6 MB limit. The call is
    SageMaker Runtime's ``InvokeEndpoint`` through boto3 (locally, the local runtime); ``inference_id`` is recorded
    with the captured request, and ground truth joins on it.

    Example
    -------
    >>> modelwerk.predict("pump-fleet", "pumps.csv", target_model="pump-health/v3.tar.gz")[:3]
    ['ok', 'ok', 'failure']
    """
    from modelwerk.platform import resolve

    platform = resolve(env)
    schema = _input_columns(platform, endpoint)
    bodies, kind = _bodies(data, schema, content_type)
    client = runtime_client(platform)
    predictions: list[Any] = []
    for body in bodies:
        args: dict[str, Any] = {"EndpointName": endpoint, "Body": body, "ContentType": kind,
                                "Accept": "application/json"}
        if target_model:
            args["TargetModel"] = target_model
        if inference_id:
            args["InferenceId"] = inference_id
        predictions += _parse_predictions(_invoke(client, args))
    return predictions


def runtime_client(platform: Any) -> Any:
    """SageMaker Runtime of ``platform``'s environment: locally, the local runtime of that environment's account."""
    if platform.local:
        state, _ = _local_folder(platform)
        url = state.runtime_endpoint_url(platform.env) if state else None
        if url is None:
            raise LocalModeError(f"the {platform.env} environment has no local SageMaker Runtime: deploy an endpoint "
                                 "to it first")
        return platform.session().client("sagemaker-runtime", endpoint_url=url)
    return platform.session().client("sagemaker-runtime")


def _invoke(client: Any, args: dict[str, Any]) -> bytes:
    from botocore.exceptions import ClientError, EndpointConnectionError

    try:
        return client.invoke_endpoint(**args)["Body"].read()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        original = exc.response.get("OriginalMessage") or error.get("Message") or str(exc)
        if error.get("Code") == "ModelError":
            raise ValidationError(f"endpoint {args['EndpointName']} refused the request: {original}") from None
        if "not found" in original.lower():
            raise NotFoundError(f"{original}") from None
        raise ValidationError(f"endpoint {args['EndpointName']}: {original}") from None
    except EndpointConnectionError:
        raise LocalModeError("the SageMaker Runtime is not reachable; in local mode run 'modelwerk local up'") from None


def _input_columns(platform: Any, endpoint: str) -> list[str] | None:
    if not platform.local:
        return None
    try:
        from modelwerk.local import endpoints as local_endpoints

        _, folder = _local_folder(platform)
        record = local_endpoints.read_record(folder, endpoint) if folder else None
    except LocalModeError:
        return None
    if not record or not record.get("input_schema"):
        return None
    return [f["name"] for f in record["input_schema"]]


def _bodies(data: Any, schema: list[str] | None, content_type: str | None) -> tuple[list[bytes], str]:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return _csv_chunks(_select(data, schema)), "text/csv"
    if isinstance(data, (bytes, bytearray)):
        if not data:
            raise ValidationError("the request is empty: give at least one row")
        return [bytes(data)], content_type or "text/csv"
    path = Path(data)
    if not path.is_file():
        raise NotFoundError(f"{path} is not a file; give a CSV, JSON or JSON Lines file, or a DataFrame")
    kind = content_type or CONTENT_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ValidationError(f"{path.name}: unknown file type; name it .csv, .json or .jsonl, or pass --content-type")
    raw = path.read_bytes()
    if not raw.strip():
        raise ValidationError(f"{path} is empty: give at least one row")
    if kind == "text/csv" and schema and _has_header(raw, schema):
        return _csv_chunks(_select(pd.read_csv(io.BytesIO(raw)), schema)), kind
    if kind == "text/csv":
        return _line_chunks(raw), kind
    if kind == "application/jsonlines":
        return _line_chunks(raw), kind
    if len(raw) > CHUNK_BYTES:
        raise ValidationError(f"{path.name} is {len(raw)} bytes, over SageMaker's 6 MB request limit; send it as "
                              "CSV or JSON Lines, which are cut into several requests")
    return [raw], kind


def _has_header(raw: bytes, schema: list[str]) -> bool:
    first = raw.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    fields = next(csv.reader([first]), [])
    return bool(set(fields) & set(schema))


def _select(frame: Any, schema: list[str] | None) -> Any:
    if not schema:
        return frame
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValidationError(f"the data lacks the model's input column(s) {missing}; the model takes {schema}")
    return frame[schema]


def _csv_chunks(frame: Any) -> list[bytes]:
    if frame.empty:
        raise ValidationError("the request is empty: give at least one row")
    return _line_chunks(frame.to_csv(index=False, header=False).encode())


def _line_chunks(raw: bytes) -> list[bytes]:
    """Whole lines, each chunk under CHUNK_BYTES."""
    chunks, current, size = [], [], 0
    for line in raw.splitlines(keepends=True):
        if not line.strip():
            continue
        if size + len(line) > CHUNK_BYTES and current:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        chunks.append(b"".join(current))
    if not chunks:
        raise ValidationError("the request is empty: give at least one row")
    return chunks


def _parse_predictions(body: bytes) -> list[Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return [line for line in body.decode("utf-8", "replace").splitlines() if line]
    if isinstance(doc, dict) and "predictions" in doc:
        return list(doc["predictions"])
    return doc if isinstance(doc, list) else [doc]
