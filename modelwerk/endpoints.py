"""Endpoints: deploy a registered model version, call it, look at it, remove it.

A single-model endpoint serves one version of a use case's model; a deployment to a running endpoint is blue/green:
the new fleet starts, takes a canary share of the traffic, then all of it, and the old fleet goes only after the bake
time passed with the endpoint's rollback alarms (5xx errors and model latency, deployed by the serving stack) quiet;
if one of them goes to ALARM, traffic returns to the old fleet by itself. A multi-model endpoint serves every model
under its S3 prefix (``models/<endpoint>/`` of the environment's serving bucket), loaded on first call: deploying a
version to it copies the artifact there, without a redeploy.

Every verb is SageMaker's API: ``CreateModel`` (from the registered version), ``CreateEndpointConfig`` (with data
capture), ``CreateEndpoint`` or ``UpdateEndpoint`` with the blue/green ``DeploymentConfig`` and its rollback alarms,
then a wait until SageMaker is done. ``predict`` calls SageMaker Runtime's ``InvokeEndpoint`` with an ordinary boto3
client, in the model's input order. Locally the embedded AWS runs the serving container's code as local processes
for the same calls (docs/local-mode.md).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from modelwerk import naming
from modelwerk.errors import ConfigurationError, ExecutionFailedError, NotFoundError, ValidationError
from modelwerk.waiting import poll

log = logging.getLogger("modelwerk")

SINGLE_MODEL = "SingleModel"
MULTI_MODEL = "MultiModel"
#: SageMaker's InvokeEndpoint limit is 6 MB; requests are cut into chunks below it.
CHUNK_BYTES = 5 * 1024 * 1024
CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json", ".jsonl": "application/jsonlines",
                 ".jsonlines": "application/jsonlines"}
#: Endpoint states in which SageMaker is still at work.
_BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "UpdateRollbackFailed")
#: SageMaker's traffic routing types for each ``traffic_routing`` setting.
_ROUTING_TYPES = {"canary": "CANARY", "linear": "LINEAR", "all_at_once": "ALL_AT_ONCE"}


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
    #: A serverless endpoint's capacity (``memory_mb``, ``max_concurrency``); None on instances.
    serverless: dict[str, int] | None = None
    #: A serverless endpoint's last cold start (CloudWatch's ModelSetupTime), in seconds; None before one.
    model_setup_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.name, "status": self.status, "runtime_endpoint_url": self.runtime_endpoint_url,
                "mode": self.mode, "use_case": self.use_case, "model_package_arn": self.model_package_arn,
                "version": self.version, "models": list(self.models), "deployment": self.deployment,
                "variants": list(self.variants), "updated_at": self.updated_at, "serverless": self.serverless,
                "model_setup_seconds": self.model_setup_seconds}

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


def _settings(env: str, name: str, use_case: str | None = None) -> Any:
    """The endpoint's ``EndpointSettings`` from cdk.json (``endpoints`` of the environment), else their defaults
    (also without a checkout, as in a Studio notebook)."""
    from modelwerk import settings as settings_module

    try:
        environment = settings_module.load().environment(env)
    except Exception:  # noqa: BLE001 - no checkout (a Studio notebook): the settings' defaults
        environment = None
    configured = (getattr(environment, "endpoints", None) or {}).get(name)
    return configured or settings_module.EndpointSettings(name=name, use_case=use_case or name)


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
    from botocore.exceptions import ClientError

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
    sagemaker = platform.session().client("sagemaker")
    existing = _described(sagemaker, name)
    if existing is not None:
        mode = _container(sagemaker, existing)[1].get("Mode", SINGLE_MODEL)
        if multi_model and mode != MULTI_MODEL:
            raise ValidationError(f"endpoint {name} is a single-model endpoint; delete it first or choose another name "
                                  "for the multi-model endpoint")
        if not multi_model and mode == MULTI_MODEL:
            raise ValidationError(f"endpoint {name} is a multi-model endpoint; deploy with --multi-model to add a "
                                  "version to it")
    settings = _settings(platform.env, name, use_case)
    try:
        return _create_or_update(platform, sagemaker, use_case, chosen, name, existing, settings, multi_model,
                                 bake_seconds, say)
    except ClientError as error:  # SageMaker's refusal, in its words: one sentence, not a traceback
        raise ValidationError(f"SageMaker refused to deploy {name}: {error.response['Error']['Message']}") from None


def _create_or_update(platform: Any, sagemaker: Any, use_case: str, chosen: list[Any], name: str,
                      existing: dict[str, Any] | None, settings: Any, multi_model: bool, bake_seconds: float | None,
                      say: Callable[[str], None]) -> Endpoint:
    if multi_model:
        prefix_uri = _add_models(platform, use_case, chosen, name, say)
        if existing is None:
            config = _endpoint_config(platform, sagemaker, name, settings, {"Mode": MULTI_MODEL,
                                                                          "ModelDataUrl": prefix_uri,
                                                                          "Image": chosen[-1].image})
            say(f"creating multi-model endpoint {name}")
            sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
        return _wait(platform, name, None)
    mv = chosen[0]
    config = _endpoint_config(platform, sagemaker, name, settings, {"ModelPackageName": mv.arn})
    if existing is None:
        say(f"creating {name} with {use_case} version {mv.version}")
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
        return _wait(platform, name, config)
    say(f"updating {name} blue/green to {use_case} version {mv.version}")
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config,
                              DeploymentConfig=_deployment_config(name, settings, bake_seconds))
    return _wait(platform, name, config)


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name or ""):
        raise ValidationError(f"endpoint name {name!r}: letters, digits and hyphens, up to 63 characters")


def multi_model_target(use_case: str, version: int) -> str:
    """The ``TargetModel`` of a version on a multi-model endpoint (its key under the endpoint's model prefix)."""
    return f"{use_case}/v{version}.tar.gz"


def _add_models(platform: Any, use_case: str, chosen: list[Any], name: str, say: Callable[[str], None]) -> str:
    """Copy the versions' artifacts under the endpoint's model prefix (read in the registry's account, written in
    the environment's); the prefix's URI."""
    from modelwerk import models

    bucket = platform.bucket("serving")
    prefix = naming.multi_model_prefix(name)
    s3 = platform.session().client("s3")
    registry = models.registry(use_case)
    for mv in chosen:
        target = multi_model_target(use_case, mv.version)
        say(f"adding {target} to s3://{bucket}/{prefix}")
        source_bucket, _, source_key = mv.model_data_url.removeprefix("s3://").partition("/")
        try:
            body = registry.s3.get_object(Bucket=source_bucket, Key=source_key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - botocore's errors, reworded
            raise NotFoundError(f"model artifact {mv.model_data_url} cannot be read ({exc}); re-register the version") \
                from None
        s3.put_object(Bucket=bucket, Key=f"{prefix}{target}", Body=body)
    return f"s3://{bucket}/{prefix}"


def _endpoint_config(platform: Any, sagemaker: Any, name: str, settings: Any, container: dict[str, Any]) -> str:
    """A new model and endpoint config for ``container``, with data capture into the environment's serving bucket
    (instances) or serverless capacity; the config's name."""
    role = platform.parameters.get("serving/endpoint-role-arn")
    if not role:
        raise ConfigurationError(f"the {platform.env} environment publishes no serving/endpoint-role-arn; deploy its "
                                 "serving stack")
    config_name = f"{name[:54]}-{secrets.token_hex(4)}"
    sagemaker.create_model(ModelName=config_name, ExecutionRoleArn=role,
                           PrimaryContainer={k: v for k, v in container.items() if v})
    variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": config_name}
    if settings.serverless is not None:  # capacity by memory and concurrency; SageMaker captures nothing there
        variant["ServerlessConfig"] = {"MemorySizeInMB": settings.serverless.memory_mb,
                                       "MaxConcurrency": settings.serverless.max_concurrency}
    else:
        variant.update(InstanceType=settings.instance_type, InitialInstanceCount=settings.initial_instance_count)
    config: dict[str, Any] = {"EndpointConfigName": config_name, "ProductionVariants": [variant]}
    if settings.captures:
        capture: dict[str, Any] = {
            "EnableCapture": True, "InitialSamplingPercentage": settings.capture_sampling_percent,
            "DestinationS3Uri": f"s3://{platform.bucket('serving')}/{naming.capture_prefix()}",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"],
                                         "JsonContentTypes": ["application/json", "application/jsonlines"]}}
        key = platform.parameters.get("kms/serving-key-arn")
        if key:
            capture["KmsKeyId"] = key
        config["DataCaptureConfig"] = capture
    key = platform.parameters.get("kms/serving-key-arn")
    if key:
        config["KmsKeyId"] = key
    sagemaker.create_endpoint_config(**config)
    return config_name


def _deployment_config(name: str, settings: Any, bake_seconds: float | None) -> dict[str, Any]:
    """Blue/green as the endpoint's settings say, rolled back by its 5xx and latency alarms."""
    routing: dict[str, Any] = {"Type": _ROUTING_TYPES[settings.traffic_routing],
                               "WaitIntervalInSeconds": int(settings.wait_seconds)}
    step = {"Type": "CAPACITY_PERCENT", "Value": int(settings.canary_percent)}
    if settings.traffic_routing == "canary":
        routing["CanarySize"] = step
    elif settings.traffic_routing == "linear":
        routing["LinearStepSize"] = step
    bake = int(bake_seconds if bake_seconds is not None else settings.bake_seconds)
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": bake},
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": naming.endpoint_alarm_name(name, kind)}
                                                     for kind in ("5xx", "latency")]}}


def _described(sagemaker: Any, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def _container(sagemaker: Any, described: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(endpoint config, the primary container of its first variant's model) of a described endpoint."""
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    return config, model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]


def _wait(platform: Any, name: str, config: str | None, timeout: float = 3600) -> Endpoint:
    """Wait until SageMaker is done with the endpoint; the endpoint. An update whose rollback alarms fired ends on the
    old config: then the endpoint's status is ``RolledBack``."""
    sagemaker = platform.session().client("sagemaker")
    described = poll(lambda: sagemaker.describe_endpoint(EndpointName=name),
                     lambda d: d["EndpointStatus"] not in _BUSY, timeout=timeout, what=f"endpoint {name}")
    if described["EndpointStatus"] == "Failed":
        raise ExecutionFailedError(f"endpoint {name} failed: {described.get('FailureReason', 'no reason given')}")
    endpoint = _from_description(platform, described)
    if config is not None and described["EndpointConfigName"] != config:
        return Endpoint(**{**endpoint.__dict__, "status": "RolledBack"})
    return endpoint


def _from_description(platform: Any, described: dict[str, Any]) -> Endpoint:
    """The endpoint as the library reports it: what its config's model serves (a registered version, or a prefix of
    models)."""
    sagemaker = platform.session().client("sagemaker")
    _, container = _container(sagemaker, described)
    mode = container.get("Mode", SINGLE_MODEL)
    arn = container.get("ModelPackageName")
    use_case, version = _package_version(platform, arn)
    models_loaded = tuple(_list_prefix(platform, container["ModelDataUrl"])) if mode == MULTI_MODEL else ()
    deployment = {"outcome": described["EndpointStatus"], "reason": described.get("FailureReason"),
                  "config": described["EndpointConfigName"],
                  **({"strategy": described["LastDeploymentConfig"]} if described.get("LastDeploymentConfig") else {})}
    variants = tuple({"name": v["VariantName"], "weight": v.get("CurrentWeight"),
                      "instances": v.get("CurrentInstanceCount")} for v in described.get("ProductionVariants", []))
    updated = described.get("LastModifiedTime")
    return Endpoint(name=described["EndpointName"], status=described["EndpointStatus"], mode=mode, use_case=use_case,
                    model_package_arn=arn, version=version,
                    runtime_endpoint_url=runtime_client(platform).meta.endpoint_url, models=models_loaded,
                    deployment=deployment, variants=variants,
                    updated_at=updated.isoformat(timespec="seconds") if updated else None,
                    serverless=_serverless(described))


def _serverless(described: dict[str, Any]) -> dict[str, int] | None:
    """A serverless endpoint's capacity from its first variant (Serverless Inference has one), else None."""
    for variant in described.get("ProductionVariants", [])[:1]:
        config = variant.get("CurrentServerlessConfig") or variant.get("DesiredServerlessConfig")
        if config:
            return {"memory_mb": int(config["MemorySizeInMB"]), "max_concurrency": int(config["MaxConcurrency"])}
    return None


#: How far back ``describe`` looks for a serverless endpoint's last cold start (CloudWatch's ModelSetupTime).
MODEL_SETUP_LOOKBACK_HOURS = 24


def _model_setup_seconds(platform: Any, described: dict[str, Any]) -> float | None:
    """The last ModelSetupTime SageMaker published for the endpoint's variant (microseconds), in seconds; None when
    it had no cold start in :data:`MODEL_SETUP_LOOKBACK_HOURS`."""
    from datetime import datetime, timedelta, timezone

    variants = described.get("ProductionVariants") or [{"VariantName": "AllTraffic"}]
    now = datetime.now(timezone.utc)
    answer = platform.session().client("cloudwatch").get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName="ModelSetupTime",
        Dimensions=[{"Name": "EndpointName", "Value": described["EndpointName"]},
                    {"Name": "VariantName", "Value": variants[0]["VariantName"]}],
        StartTime=now - timedelta(hours=MODEL_SETUP_LOOKBACK_HOURS), EndTime=now + timedelta(minutes=1), Period=60,
        Statistics=["Maximum"])
    points = sorted(answer.get("Datapoints", []), key=lambda p: p["Timestamp"])
    return round(points[-1]["Maximum"] / 1e6, 3) if points else None


def _package_version(platform: Any, arn: str | None) -> tuple[str | None, int | None]:
    """(use case, version) of a registered version's ARN (its group is ``<project>-<use case>``)."""
    if not arn or "/" not in arn:
        return None, None
    group, _, number = arn.split(":model-package/", 1)[-1].partition("/")
    prefix = f"{platform.project}-"
    return (group[len(prefix):] if group.startswith(prefix) else group), int(number) if number.isdigit() else None


def _list_prefix(platform: Any, prefix_uri: str) -> list[str]:
    bucket, _, prefix = prefix_uri.removeprefix("s3://").partition("/")
    names = []
    s3 = platform.session().client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        names += [item["Key"][len(prefix):] for item in page.get("Contents", []) if item["Key"].endswith(".tar.gz")]
    return sorted(names)


# -- look, remove -----------------------------------------------------------------------------------------------------


def list_endpoints(*, env: str | None = None) -> list[Endpoint]:
    """The environment's endpoints."""
    from modelwerk.platform import resolve

    platform = resolve(env)
    sagemaker = platform.session().client("sagemaker")
    found = []
    for page in sagemaker.get_paginator("list_endpoints").paginate():
        found += [_from_description(platform, sagemaker.describe_endpoint(EndpointName=e["EndpointName"]))
                  for e in page["Endpoints"]]
    return sorted(found, key=lambda e: e.name)


def describe(name: str, *, env: str | None = None) -> Endpoint:
    """One endpoint, by name; a serverless one with its capacity and its last cold start (``model_setup_seconds``)."""
    from modelwerk.platform import resolve

    platform = resolve(env)
    described = _described(platform.session().client("sagemaker"), name)
    if described is None:
        raise NotFoundError(f"there is no endpoint {name} in {platform.env}; 'modelwerk endpoints list' shows them")
    endpoint = _from_description(platform, described)
    if endpoint.serverless is None:
        return endpoint
    return Endpoint(**{**endpoint.__dict__, "model_setup_seconds": _model_setup_seconds(platform, described)})


def delete(name: str, *, env: str | None = None) -> Endpoint:
    """Stop the endpoint and remove it (its captured data stays in S3)."""
    from modelwerk.platform import resolve

    platform = resolve(env)
    endpoint = describe(name, env=env)
    sagemaker = platform.session().client("sagemaker")
    sagemaker.delete_endpoint(EndpointName=name)
    poll(lambda: _described(sagemaker, name), lambda d: d is None, timeout=600, what=f"deleting endpoint {name}")
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
    schema = _input_columns(platform, endpoint, target_model)
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
    """SageMaker Runtime in ``platform``'s environment's account."""
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
    except EndpointConnectionError as exc:
        raise NotFoundError(f"the SageMaker Runtime is not reachable ({exc}); check the AWS profile in use (in local "
                            "mode: 'modelwerk local up')") from None


def _input_columns(platform: Any, endpoint: str, target_model: str | None) -> list[str] | None:
    """The input order of the version the endpoint serves (or of ``target_model`` on a multi-model endpoint, named
    ``<use case>/v<version>.tar.gz``); None when it cannot be known (then the data is sent as given)."""
    import re

    from modelwerk import models

    described = _described(platform.session().client("sagemaker"), endpoint)
    if described is None:
        raise NotFoundError(f"there is no endpoint {endpoint} in {platform.env}; 'modelwerk endpoints list' shows them")
    use_case, version = _package_version(platform, _container(platform.session().client("sagemaker"),
                                                              described)[1].get("ModelPackageName"))
    if target_model:
        match = re.fullmatch(r"(.+)/v(\d+)\.tar\.gz", target_model)
        use_case, version = (match.group(1), int(match.group(2))) if match else (None, None)
    if use_case is None or version is None:
        return None
    try:
        schema = models.version(use_case, version, env=platform.env).input_schema
    except (NotFoundError, ConfigurationError):
        return None
    return [column["name"] for column in schema] or None


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
