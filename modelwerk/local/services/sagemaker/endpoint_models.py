"""State and behaviour of the embedded SageMaker's endpoints: what runs behind each one moto stores.

An endpoint's production variants run as fleets of the serving container (:mod:`modelwerk.local.endpoints`
``start_fleet``: one process per variant and fleet), each with its model's container as SageMaker resolves it (the
model's ``PrimaryContainer`` or first of ``Containers``; a ``ModelPackageName`` read in the package's own account;
``ModelDataUrl`` a ``model.tar.gz`` extracted, or in ``MultiModel`` mode the prefix its models are loaded from) and
the endpoint config's data capture, which the SageMaker Runtime performs (the front end captures, as on AWS) with
the endpoint account's credentials. A serverless variant (``ServerlessConfig``) starts no fleet here: its model is
resolved and extracted, and the SageMaker Runtime starts its fleet on the first request and stops it after
``MODELWERK_SERVERLESS_IDLE_SECONDS`` (default :data:`SERVERLESS_IDLE_SECONDS`) without one, as Serverless
Inference scales to zero. The record each endpoint keeps under ``endpoints/<account>/<region>/<name>.json``
(replaced in one step) tells the SageMaker Runtime where its traffic goes and what it captures. Creation and updates
run in the background and report through ``DescribeEndpoint`` and the
"SageMaker Endpoint State Change" events; an update is blue/green (:mod:`.endpoint_deployment`).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelwerk.local.services._routing import AwsError
from modelwerk.local.services.sagemaker import endpoint_deployment

log = logging.getLogger("modelwerk.local")

#: "SageMaker Endpoint State Change" spells the status in capitals.
EVENT_STATUS = {"Creating": "CREATING", "Updating": "UPDATING", "InService": "IN_SERVICE", "Failed": "FAILED",
                "Deleting": "DELETING", "RollingBack": "ROLLING_BACK"}
#: Requests already routed to a fleet finish before it stops.
DRAIN_SECONDS = 0.5
#: How long a serverless variant's fleet stays warm without a request (SageMaker keeps its capacity warm for minutes);
#: the embedded AWS reads ``MODELWERK_SERVERLESS_IDLE_SECONDS`` when it creates the endpoint.
SERVERLESS_IDLE_SECONDS = 300.0
SERVERLESS_IDLE_VARIABLE = "MODELWERK_SERVERLESS_IDLE_SECONDS"


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def endpoint_arn(account: str, region: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:endpoint/{name.lower()}"


@dataclass
class Container:
    """A variant's model container as SageMaker runs it."""

    image: str | None
    mode: str
    model_data_url: str | None
    environment: dict[str, str]


@dataclass
class Fleet:
    """The running serving process of one production variant, for one endpoint config."""

    variant: str
    fleet: str
    config: str
    url: str
    pid: int
    log: str
    mode: str
    image: str | None
    started: datetime
    model_data_prefix: str | None = None
    model_cache_dir: str | None = None
    #: The variant's share of this fleet: 1 when it serves alone, less while blue/green shifts traffic.
    share: float = 1.0
    #: A serverless variant's capacity, idle time, working folder and container environment: no process runs here
    #: (``url`` empty, ``pid`` 0); the SageMaker Runtime starts one on demand.
    serverless: dict[str, Any] | None = None


@dataclass
class LocalEndpoint:
    account: str
    region: str
    name: str
    config_name: str
    #: The endpoint config's ProductionVariants and DataCaptureConfig of what the endpoint serves.
    variants: list[dict[str, Any]]
    capture: dict[str, Any] | None
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    modified: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    status: str = "Creating"
    failure_reason: str | None = None
    last_deployment_config: dict[str, Any] | None = None
    fleets: list[Fleet] = field(default_factory=list)
    #: A blue/green update under way: the new config, its variants and fleets (PendingDeploymentSummary).
    pending: dict[str, Any] | None = None
    variant_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def arn(self) -> str:
        return endpoint_arn(self.account, self.region, self.name)


def model_container(context: Any, account: str, region: str, model_name: str) -> Container:
    """The model's container as SageMaker runs it (for an endpoint's variant or a transform job): its own, or the
    model package version's (read in the package's account)."""
    described = context.client("sagemaker", account, region).describe_model(ModelName=model_name)
    container = described.get("PrimaryContainer") or (described.get("Containers") or [{}])[0]
    image, url, environment = container.get("Image"), container.get("ModelDataUrl"), {}
    package = container.get("ModelPackageName")
    if package:
        package_account, package_region = account, region
        if package.startswith("arn:"):
            parts = package.split(":")
            package_region, package_account = parts[3], parts[4]
        found = context.client("sagemaker", package_account, package_region).describe_model_package(
            ModelPackageName=package)
        containers = found.get("InferenceSpecification", {}).get("Containers", [])
        if not containers:
            raise ValueError(f"model package {package} has no InferenceSpecification container")
        image = image or containers[0].get("Image")
        url = url or containers[0].get("ModelDataUrl")
        environment.update(containers[0].get("Environment") or {})
    environment.update(container.get("Environment") or {})
    return Container(image=image, mode=container.get("Mode", "SingleModel"), model_data_url=url,
                     environment={str(k): str(v) for k, v in environment.items()})


def read_s3(context: Any, account: str, region: str, uri: str) -> bytes:
    """A model artifact read in ``account``, or ValueError saying why it cannot be."""
    from botocore.exceptions import ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        return context.client("s3", account, region).get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        raise ValueError(f"the model artifact {uri} cannot be read: "
                         f"{error.response.get('Error', {}).get('Code', error)}") from None


class EndpointFleets:
    """Every account's local endpoints of one embedded AWS."""

    def __init__(self, context: Any):
        self.context = context
        self._endpoints: dict[tuple[str, str, str], LocalEndpoint] = {}
        self._lock = threading.RLock()
        self._generation = 0

    # -- the API's verbs ---------------------------------------------------------------------------------------------
    def get(self, account: str, region: str, name: str) -> LocalEndpoint | None:
        with self._lock:
            return self._endpoints.get((account, region, name))

    def create(self, account: str, region: str, name: str, config_name: str,
               deployment_config: dict[str, Any] | None) -> LocalEndpoint:
        """Start the endpoint's fleets in the background (moto stored the endpoint already)."""
        variants, capture = self.endpoint_config(account, region, config_name)
        endpoint = LocalEndpoint(account=account, region=region, name=name, config_name=config_name,
                                 variants=variants, capture=capture, last_deployment_config=deployment_config)
        endpoint.variant_status = {v["VariantName"]: _variant_status("Creating") for v in variants}
        with self._lock:
            self._endpoints[(account, region, name)] = endpoint
        self._set_status(endpoint, "Creating")
        self.context.spawn(f"create-endpoint-{name}", self._create, endpoint)
        return endpoint

    def update(self, endpoint: LocalEndpoint, config_name: str, deployment_config: dict[str, Any] | None) -> None:
        """Deploy ``config_name`` blue/green in the background."""
        if endpoint.status in ("Creating", "Updating", "Deleting", "RollingBack"):
            raise validation(f'Cannot update in-progress endpoint "{endpoint.arn}".')
        if endpoint.status == "Failed":
            raise validation(f'Cannot update failed endpoint "{endpoint.arn}"; delete it and create it again.')
        deployment_config = deployment_config or {}
        if "RollingUpdatePolicy" in deployment_config:
            raise validation("RollingUpdatePolicy is not run by the embedded SageMaker: its endpoints run one "
                             "process per variant, so it deploys blue/green only (BlueGreenUpdatePolicy)")
        alarms = [a["AlarmName"] for a in deployment_config.get("AutoRollbackConfiguration", {}).get("Alarms", [])]
        missing = endpoint_deployment.missing_alarms(endpoint.account, endpoint.region, alarms)
        if missing:
            raise validation(f"The alarm(s) {', '.join(missing)} of AutoRollbackConfiguration do not exist in "
                             f"{endpoint.account}/{endpoint.region}.")
        policy = deployment_config.get("BlueGreenUpdatePolicy")
        variants, capture = self.endpoint_config(endpoint.account, endpoint.region, config_name)
        try:
            steps = endpoint_deployment.traffic_steps(policy, sum(int(v.get("InitialInstanceCount", 1))
                                                                 for v in variants))
        except (KeyError, ValueError) as error:
            raise validation(f"DeploymentConfig: {error}") from None
        endpoint.pending = {"EndpointConfigName": config_name, "variants": variants, "capture": capture,
                            "fleets": [], "started": datetime.now(timezone.utc),
                            "status": {v["VariantName"]: _variant_status("Creating") for v in variants}}
        endpoint.failure_reason = None
        endpoint.last_deployment_config = deployment_config or None
        self._set_status(endpoint, "Updating")
        self.context.spawn(f"update-endpoint-{endpoint.name}", self._update, endpoint, steps, policy, alarms)

    def delete(self, endpoint: LocalEndpoint) -> None:
        """Stop routing to the endpoint at once and its fleets in the background."""
        from modelwerk.local import endpoints as fleets

        endpoint.cancelled.set()
        with self._lock:
            self._endpoints.pop((endpoint.account, endpoint.region, endpoint.name), None)
        fleets.remove_record(self._folder(endpoint), endpoint.name)
        self._emit(endpoint, "Deleting")
        running = [*endpoint.fleets, *(endpoint.pending or {}).get("fleets", [])]
        self.context.spawn(f"delete-endpoint-{endpoint.name}", self._stop_fleets, running)

    def update_weights(self, endpoint: LocalEndpoint, desired: list[dict[str, Any]]) -> None:
        """UpdateEndpointWeightsAndCapacities: new variant weights take traffic at once (capacity is recorded only:
        a variant runs one process whatever its instance count)."""
        if endpoint.status != "InService":
            raise validation(f'Cannot update in-progress endpoint "{endpoint.arn}".')
        names = {v["VariantName"] for v in endpoint.variants}
        for change in desired:
            if change["VariantName"] not in names:
                raise validation(f'The variant name(s) "{change["VariantName"]}" is/are not present within endpoint '
                                 f'configuration "{endpoint.config_name}".')
        for change in desired:
            variant = next(v for v in endpoint.variants if v["VariantName"] == change["VariantName"])
            if "DesiredWeight" in change:
                variant["InitialVariantWeight"] = float(change["DesiredWeight"])
            if "DesiredInstanceCount" in change:
                variant["InitialInstanceCount"] = int(change["DesiredInstanceCount"])
        self._set_status(endpoint, "InService")

    def stop_all(self) -> None:
        """The server stops: every fleet with it."""
        with self._lock:
            endpoints = list(self._endpoints.values())
            self._endpoints.clear()
        for endpoint in endpoints:
            endpoint.cancelled.set()
            self._stop_fleets([*endpoint.fleets, *(endpoint.pending or {}).get("fleets", [])])

    # -- background work ---------------------------------------------------------------------------------------------
    def _create(self, endpoint: LocalEndpoint) -> None:
        started: list[Fleet] = []
        try:
            for variant in endpoint.variants:
                started.append(self._start_fleet(endpoint, variant, endpoint.config_name, endpoint.capture, "blue"))
                if endpoint.cancelled.is_set():
                    self._stop_fleets(started)
                    return
        except Exception as error:  # noqa: BLE001 - any failure to start is the endpoint's FailureReason
            log.warning("endpoint %s failed: %s", endpoint.name, error)
            self._stop_fleets(started)
            endpoint.variant_status = {}
            self._set_status(endpoint, "Failed", _reason(error))
            return
        endpoint.fleets = started
        if endpoint.cancelled.is_set():  # deleted while the last fleet started
            self._stop_fleets(started)
            return
        endpoint.variant_status = {}
        self._set_status(endpoint, "InService")

    def _update(self, endpoint: LocalEndpoint, steps: list[endpoint_deployment.Step], policy: dict[str, Any] | None,
                alarms: list[str]) -> None:
        pending = endpoint.pending
        assert pending is not None
        old = list(endpoint.fleets)
        new: list[Fleet] = pending["fleets"]
        try:
            for variant in pending["variants"]:
                colour = "green" if any(f.variant == variant["VariantName"] and f.fleet == "blue" for f in old) \
                    else "blue"
                fleet = self._start_fleet(endpoint, variant, pending["EndpointConfigName"], pending["capture"],
                                          colour)
                fleet.share = 0.0
                new.append(fleet)
                if endpoint.cancelled.is_set():  # deleted meanwhile: what it stopped did not include this one
                    self._stop_fleets([fleet])
                    return
        except Exception as error:  # noqa: BLE001 - the update fails; the endpoint keeps serving its config
            log.warning("update of endpoint %s failed: %s", endpoint.name, error)
            self._stop_fleets(new)
            endpoint.pending = None
            self._set_status(endpoint, "InService", f"Failed to update endpoint to config "
                                                    f"{pending['EndpointConfigName']}: {_reason(error)}")
            return
        watch = endpoint_deployment.AlarmWatch(self.context.endpoint_url, endpoint.account, endpoint.region, alarms)
        for step in steps:
            self._shift(endpoint, old, new, step.share, "ActivatingTraffic")
            self._variant_stage(endpoint, "Baking")
            tripped = watch.wait(step.seconds, endpoint.cancelled)
            if endpoint.cancelled.is_set():
                return
            if tripped:
                name, why = tripped
                self._shift(endpoint, old, new, 0.0, None)
                endpoint.pending = None
                self._stop_fleets(new, drain=True)
                self._set_status(endpoint, "InService",
                                 f"Rolled back to endpoint config {endpoint.config_name}: alarm {name} went to ALARM "
                                 f"with {round(step.share * 100)}% of the traffic on endpoint config "
                                 f"{pending['EndpointConfigName']} ({why})")
                return
        endpoint.cancelled.wait(endpoint_deployment.termination_wait(policy))
        if endpoint.cancelled.is_set():
            return
        endpoint.config_name = pending["EndpointConfigName"]
        endpoint.variants, endpoint.capture, endpoint.fleets = pending["variants"], pending["capture"], new
        endpoint.pending = None
        for fleet in new:
            fleet.share = 1.0
        self._set_status(endpoint, "InService")
        self._stop_fleets(old, drain=True)

    def _shift(self, endpoint: LocalEndpoint, old: list[Fleet], new: list[Fleet], share: float,
               stage: str | None) -> None:
        for fleet in new:
            fleet.share = share
        for fleet in old:
            fleet.share = round(1.0 - share, 4)
        if stage:
            self._variant_stage(endpoint, stage)
        self._write(endpoint)

    def _variant_stage(self, endpoint: LocalEndpoint, stage: str) -> None:
        if endpoint.pending is not None:
            endpoint.pending["status"] = {name: _variant_status(stage) for name in endpoint.pending["status"]}

    # -- fleets ------------------------------------------------------------------------------------------------------
    def _start_fleet(self, endpoint: LocalEndpoint, variant: dict[str, Any], config_name: str,
                     capture: dict[str, Any] | None, colour: str) -> Fleet:
        from modelwerk.local import endpoints as fleets

        with self._lock:
            self._generation += 1
            generation = self._generation
        name = variant["VariantName"]
        container = self._container(endpoint.account, endpoint.region, variant["ModelName"])
        workdir = self.context.folder("endpoints", endpoint.account, endpoint.region, endpoint.name,
                                      f"{name}-{colour}-{generation}")
        serverless = variant.get("ServerlessConfig")
        if serverless:
            self._check_serverless(endpoint, variant, container)
        environment = {**container.environment, **self.context.credentials(endpoint.account, endpoint.region)}
        extra: dict[str, Any] = {}
        if container.mode == "MultiModel":
            if not container.model_data_url:
                raise ValueError(f"model {variant['ModelName']} is MultiModel without a ModelDataUrl prefix")
            cache = workdir / "models"
            cache.mkdir(parents=True, exist_ok=True)
            environment.update({"SAGEMAKER_MULTI_MODEL": "true", "MODELWERK_MODEL_ROOT": str(cache)})
            extra = {"model_data_prefix": container.model_data_url, "model_cache_dir": str(cache)}
        else:
            if not container.model_data_url:
                raise ValueError(f"model {variant['ModelName']} has no ModelDataUrl: the local serving container "
                                 "loads its model from a model.tar.gz in S3")
            archive = self._read_s3(endpoint.account, endpoint.region, container.model_data_url)
            environment["MODELWERK_MODEL_DIR"] = str(fleets.extract_model(archive, workdir / "model"))
        if serverless:
            return Fleet(variant=name, fleet=colour, config=config_name, url="", pid=0,
                         log=str(workdir / f"{colour}.log"), mode=container.mode, image=container.image,
                         started=datetime.now(timezone.utc),
                         serverless={"config": dict(serverless), "idle_seconds": _idle_seconds(),
                                     "workdir": str(workdir),
                                     "environment": {**container.environment,
                                                     "MODELWERK_MODEL_DIR": environment["MODELWERK_MODEL_DIR"]}})
        started = fleets.start_fleet(root=self.context.root, workdir=workdir, endpoint=endpoint.name, fleet=colour,
                                     environment=environment, variant=name, inherit_aws=False)
        return Fleet(variant=name, fleet=colour, config=config_name, url=started.url, pid=started.pid,
                     log=started.log, mode=container.mode, image=container.image,
                     started=datetime.now(timezone.utc), **extra)

    def _check_serverless(self, endpoint: LocalEndpoint, variant: dict[str, Any], container: Container) -> None:
        """What SageMaker Serverless Inference does not run: a multi-model container, a model in a VPC or isolated
        from the network."""
        if container.mode == "MultiModel":
            raise ValueError(f"model {variant['ModelName']} is MultiModel: a serverless variant serves one model")
        model = self.context.client("sagemaker", endpoint.account, endpoint.region).describe_model(
            ModelName=variant["ModelName"])
        if model.get("VpcConfig"):
            raise ValueError(f"model {variant['ModelName']} has a VpcConfig: Serverless Inference runs in no VPC")
        if model.get("EnableNetworkIsolation"):
            raise ValueError(f"model {variant['ModelName']} enables network isolation: Serverless Inference does "
                             "not support it")

    def _stop_fleets(self, running: list[Fleet], drain: bool = False) -> None:
        from modelwerk.local import endpoints as fleets

        if drain and running:
            threading.Event().wait(DRAIN_SECONDS)
        for fleet in running:
            fleets.stop_process(fleet.pid)

    # -- what the endpoint runs --------------------------------------------------------------------------------------
    def endpoint_config(self, account: str, region: str, config_name: str) -> tuple[list[dict[str, Any]], dict | None]:
        """The endpoint config's production variants and data capture (moto stores the config)."""
        from moto.sagemaker.models import sagemaker_backends

        config = sagemaker_backends[account][region].endpoint_configs.get(config_name)
        if config is None:
            raise validation(f"Could not find endpoint configuration \"arn:aws:sagemaker:{region}:{account}:"
                             f"endpoint-config/{config_name.lower()}\".")
        variants = [dict(v) for v in config.production_variants]
        if not variants:
            raise validation(f"Endpoint configuration {config_name} has no ProductionVariants.")
        if any(v.get("ServerlessConfig") for v in variants):
            if len(variants) > 1:
                raise validation(f"Endpoint configuration {config_name}: a serverless endpoint has one production "
                                 "variant.")
            if config.data_capture_config:
                raise validation(f"Endpoint configuration {config_name}: DataCaptureConfig is not supported for "
                                 "serverless endpoints.")
        return variants, dict(config.data_capture_config) if config.data_capture_config else None

    def _container(self, account: str, region: str, model_name: str) -> Container:
        return model_container(self.context, account, region, model_name)

    def _read_s3(self, account: str, region: str, uri: str) -> bytes:
        return read_s3(self.context, account, region, uri)

    # -- records, status, events -------------------------------------------------------------------------------------
    def _folder(self, endpoint: LocalEndpoint) -> Path:
        return self.context.folder("endpoints", endpoint.account, endpoint.region)

    def _write(self, endpoint: LocalEndpoint) -> None:
        """The runtime's view: where each request goes, by weight (variant weight x the fleet's share)."""
        from modelwerk.local import endpoints as fleets

        if endpoint.cancelled.is_set():
            return
        weights = {v["VariantName"]: float(v.get("InitialVariantWeight", 1.0)) for v in endpoint.variants}
        if endpoint.pending:
            weights.update({v["VariantName"]: float(v.get("InitialVariantWeight", 1.0))
                            for v in endpoint.pending["variants"]})
        running = [*endpoint.fleets, *(endpoint.pending or {}).get("fleets", [])]
        captures = {endpoint.config_name: endpoint.capture}
        if endpoint.pending:
            captures[endpoint.pending["EndpointConfigName"]] = endpoint.pending["capture"]
        fleets.write_record(self._folder(endpoint), {
            "endpoint": endpoint.name, "account": endpoint.account, "region": endpoint.region,
            "status": endpoint.status, "config": endpoint.config_name,
            "mode": running[0].mode if running else "SingleModel",
            "variants": [{"name": f.variant, "fleet": f.fleet, "config": f.config, "url": f.url, "pid": f.pid,
                          "log": f.log, "mode": f.mode, "weight": round(weights.get(f.variant, 1.0) * f.share, 6),
                          "model_data_prefix": f.model_data_prefix, "model_cache_dir": f.model_cache_dir,
                          "capture": captures.get(f.config), "serverless": f.serverless}
                         for f in running],
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def _set_status(self, endpoint: LocalEndpoint, status: str, reason: str | None = None) -> None:
        from moto.sagemaker.models import sagemaker_backends

        endpoint.status, endpoint.failure_reason = status, reason
        endpoint.modified = datetime.now(timezone.utc)
        stored = sagemaker_backends[endpoint.account][endpoint.region].endpoints.get(endpoint.name)
        if stored is not None:  # ListEndpoints is moto's: it shows the same status
            stored.endpoint_status, stored.failure_reason = status, reason
            stored.endpoint_config_name = endpoint.config_name
            stored.last_modified_time = endpoint.modified.replace(tzinfo=None)
        self._write(endpoint)
        self._emit(endpoint, status)

    def _emit(self, endpoint: LocalEndpoint, status: str) -> None:
        detail: dict[str, Any] = {
            "EndpointName": endpoint.name, "EndpointArn": endpoint.arn, "EndpointConfigName": endpoint.config_name,
            "ProductionVariants": [{"VariantName": v["VariantName"],
                                    "DesiredWeight": float(v.get("InitialVariantWeight", 1.0)),
                                    "DesiredInstanceCount": int(v.get("InitialInstanceCount", 1))}
                                   for v in endpoint.variants],
            "EndpointStatus": EVENT_STATUS[status], "CreationTime": _millis(endpoint.created),
            "LastModifiedTime": _millis(endpoint.modified), "Tags": {}}
        if endpoint.failure_reason:
            detail["FailureReason"] = endpoint.failure_reason
        self.context.emit_event(endpoint.account, endpoint.region, source="aws.sagemaker",
                                detail_type="SageMaker Endpoint State Change", detail=detail,
                                resources=[endpoint.arn])

    # -- DescribeEndpoint --------------------------------------------------------------------------------------------
    def describe(self, endpoint: LocalEndpoint) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "EndpointName": endpoint.name, "EndpointArn": endpoint.arn, "EndpointConfigName": endpoint.config_name,
            "ProductionVariants": [self._variant_summary(endpoint, v) for v in endpoint.variants],
            "EndpointStatus": endpoint.status, "CreationTime": endpoint.created,
            "LastModifiedTime": endpoint.modified}
        if endpoint.capture:
            answer["DataCaptureConfig"] = _capture_summary(endpoint.capture, running=bool(endpoint.fleets))
        if endpoint.failure_reason:
            answer["FailureReason"] = endpoint.failure_reason
        if endpoint.last_deployment_config:
            answer["LastDeploymentConfig"] = endpoint.last_deployment_config
        if endpoint.pending:
            answer["PendingDeploymentSummary"] = {
                "EndpointConfigName": endpoint.pending["EndpointConfigName"],
                "ProductionVariants": [self._pending_summary(endpoint, v) for v in endpoint.pending["variants"]],
                "StartTime": endpoint.pending["started"]}
        return answer

    def _variant_summary(self, endpoint: LocalEndpoint, variant: dict[str, Any]) -> dict[str, Any]:
        name = variant["VariantName"]
        fleets = [f for f in endpoint.fleets if f.variant == name]
        summary = _desired(variant)
        if fleets:
            summary.update(_current(variant, fleets[0]))
        if name in endpoint.variant_status:
            summary["VariantStatus"] = [endpoint.variant_status[name]]
        return {"VariantName": name, **summary}

    def _pending_summary(self, endpoint: LocalEndpoint, variant: dict[str, Any]) -> dict[str, Any]:
        pending = endpoint.pending or {}
        name = variant["VariantName"]
        summary = {"VariantName": name, **_desired(variant)}
        if variant.get("InstanceType"):
            summary["InstanceType"] = variant["InstanceType"]
        fleet = next((f for f in pending.get("fleets", []) if f.variant == name), None)
        if fleet is not None:
            summary.update(_current(variant, fleet))
        if name in pending.get("status", {}):
            summary["VariantStatus"] = [pending["status"][name]]
        return summary


def _desired(variant: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"DesiredWeight": float(variant.get("InitialVariantWeight", 1.0))}
    if variant.get("ServerlessConfig"):
        summary["DesiredServerlessConfig"] = variant["ServerlessConfig"]
    else:
        summary["DesiredInstanceCount"] = int(variant.get("InitialInstanceCount", 1))
    return summary


def _current(variant: dict[str, Any], fleet: Fleet) -> dict[str, Any]:
    """What a running fleet serves: the variant's weight times the fleet's share; its instances, all of them (one
    process stands for the variant's instance count)."""
    current: dict[str, Any] = {"CurrentWeight": round(float(variant.get("InitialVariantWeight", 1.0)) * fleet.share,
                                                      6)}
    if variant.get("ServerlessConfig"):
        current["CurrentServerlessConfig"] = variant["ServerlessConfig"]
    else:
        current["CurrentInstanceCount"] = int(variant.get("InitialInstanceCount", 1))
    if fleet.image:
        current["DeployedImages"] = [{"SpecifiedImage": fleet.image, "ResolutionTime": fleet.started}]
    return current


def _idle_seconds() -> float:
    """A serverless fleet's idle time before it stops, as the embedded AWS's environment sets it."""
    raw = os.environ.get(SERVERLESS_IDLE_VARIABLE)
    try:
        return max(float(raw), 0.0) if raw else SERVERLESS_IDLE_SECONDS
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using %s", SERVERLESS_IDLE_VARIABLE, raw,
                    SERVERLESS_IDLE_SECONDS)
        return SERVERLESS_IDLE_SECONDS


def _variant_status(status: str) -> dict[str, Any]:
    return {"Status": status, "StartTime": datetime.now(timezone.utc)}


def _captures(capture: dict[str, Any] | None) -> bool:
    """Whether the endpoint config's DataCaptureConfig captures anything (on by default once one is given); the
    SageMaker Runtime captures as the record's ``capture`` says."""
    return bool(capture and capture.get("EnableCapture", True) and capture.get("DestinationS3Uri")
                and float(capture.get("InitialSamplingPercentage", 100)) > 0)


def _capture_summary(capture: dict[str, Any], *, running: bool) -> dict[str, Any]:
    enabled = bool(capture.get("EnableCapture", True))
    summary = {"EnableCapture": enabled,
               "CaptureStatus": "Started" if enabled and running and _captures(capture) else "Stopped",
               "CurrentSamplingPercentage": int(capture.get("InitialSamplingPercentage", 0)),
               "DestinationS3Uri": capture.get("DestinationS3Uri", "")}
    if capture.get("KmsKeyId"):
        summary["KmsKeyId"] = capture["KmsKeyId"]
    return summary


def _reason(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    return " ".join(message.split())[:1024]


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
