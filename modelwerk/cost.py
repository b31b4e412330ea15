"""Cost per serving path: what an endpoint's observed traffic costs a month served as it is, as a serverless endpoint,
and as a nightly batch transform, from the price table ``modelwerk/prices/sagemaker.json`` (on-demand list prices
per region, each section with the date it was taken; ``MODELWERK_PRICE_TABLE`` names another file of that format).

The traffic is CloudWatch's: ``Invocations`` (Sum) and ``ModelLatency`` (Average, microseconds) of the endpoint's
variants (namespace ``AWS/SageMaker``, dimensions ``EndpointName``/``VariantName``) over the window, cut to the
endpoint's age (at least one hour), extrapolated to a month of 730 hours. The rules:

- **real time**: each variant's current instance count × 730 h × its instance type's hourly price. A serverless
  endpoint is priced as one instance of the endpoint's ``instance_type`` in cdk.json (default ``ml.m5.large``).
- **serverless**: requests × mean model latency (rounded up to the millisecond) × memory in GB × the price per
  GB-second, plus the data processed (requests × 4 KB in and out, as CloudWatch has no payload metric). The memory
  is the endpoint's own serverless memory; otherwise the smallest size SageMaker offers that holds the serving
  container (1 GB) and twice the model artifact, at least 2048 MB (the platform's default; also when the artifact's
  size cannot be read). No price when the model needs more than the largest size, the mean latency exceeds
  serverless's 60 s timeout, or the endpoint is multi-model.
- **batch**: one transform a day over that day's records (one record per request), each taking the mean model
  latency; on the endpoint's instance type where Batch Transform offers it, else ``ml.m5.large``; as many instances
  as finish the day's records within 8 hours; each instance billed per second for its records plus 5 minutes of
  start (container start, model load), at least a minute per instance and job.

A path that cannot be priced says why in its ``basis`` and has no ``monthly_usd``; the cheapest path is named among
those priced (real time wins a tie: nothing to change).

Example
-------
>>> cost = modelwerk.cost.endpoint_cost("pump-health", window_hours=24)
>>> cost.cheapest, cost.paths["serverless"].monthly_usd
('serverless', 0.42)
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from modelwerk.errors import ConfigurationError, ModelwerkError, NotFoundError, ValidationError

#: The environment variable that names another price table (same format) than the one installed with the package.
PRICE_TABLE_VARIABLE = "MODELWERK_PRICE_TABLE"
PATHS = ("real_time", "serverless", "batch")
HOURS_PER_MONTH = 730.0
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
DEFAULT_WINDOW_HOURS = 168.0
#: The shortest span traffic is extrapolated from: a younger endpoint counts as an hour old.
MIN_OBSERVED_HOURS = 1.0
#: Data processed per serverless request, in and out (CloudWatch has no payload size metric for endpoints).
PAYLOAD_KB = 4.0
#: What the serving container takes besides the model, and the memory assumed when the model's size is unknown.
CONTAINER_MEMORY_MB = 1024
DEFAULT_SERVERLESS_MEMORY_MB = 2048
SERVERLESS_TIMEOUT_SECONDS = 60.0
#: Batch Transform: start time billed per instance and job, the least billed per instance and job, the night's length.
BATCH_START_SECONDS = 300.0
BATCH_MINIMUM_SECONDS = 60.0
BATCH_WINDOW_HOURS = 8.0
BATCH_FALLBACK_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"


@dataclass(frozen=True)
class PathCost:
    """One serving path's monthly cost, or None with the reason in ``basis``."""

    monthly_usd: float | None
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {"monthly_usd": self.monthly_usd, "basis": self.basis}


@dataclass(frozen=True)
class EndpointCost:
    """An endpoint's observed traffic and what it costs a month on each serving path."""

    endpoint: str
    env: str
    region: str
    window_hours: float
    invocations: int
    requests_per_month: int
    mean_latency_ms: float | None
    paths: dict[str, PathCost]
    cheapest: str | None
    prices_as_of: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "env": self.env, "region": self.region, "window_hours": self.window_hours,
                "invocations": self.invocations, "requests_per_month": self.requests_per_month,
                "mean_latency_ms": self.mean_latency_ms,
                "paths": {name: self.paths[name].to_dict() for name in PATHS},
                "cheapest": self.cheapest, "prices_as_of": self.prices_as_of}

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{name}{' (cheapest)' if name == self.cheapest else ''}</td>"
            f"<td style='text-align:right'>{money(self.paths[name].monthly_usd)}</td>"
            f"<td>{html.escape(self.paths[name].basis)}</td></tr>" for name in PATHS)
        return (f"<div><b>{html.escape(self.endpoint)}</b> in {html.escape(self.env)}: {self.invocations} requests "
                f"in {self.window_hours} h, {self.requests_per_month} a month; prices as of {self.prices_as_of}"
                f"<table><tr><th>path</th><th>a month</th><th>basis</th></tr>{rows}</table></div>")


def money(value: float | None) -> str:
    """A monthly figure as people read it ("-" when not priced)."""
    return "-" if value is None else f"${value:,.2f}"


# -- the price table --------------------------------------------------------------------------------------------------


def price_table_path() -> Path:
    """The price table in use: ``MODELWERK_PRICE_TABLE``, else the one installed with the package."""
    override = os.environ.get(PRICE_TABLE_VARIABLE)
    if override:
        return Path(override)
    return Path(str(resources.files("modelwerk") / "prices" / "sagemaker.json"))


def load_prices(path: Path | str | None = None) -> dict[str, Any]:
    """The price table (see its ``description``)."""
    return _load_prices(str(path or price_table_path()))


@lru_cache(maxsize=4)
def _load_prices(path: str) -> dict[str, Any]:
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"the price table {path} does not exist; unset {PRICE_TABLE_VARIABLE} to use the "
                                 "one installed with modelwerk") from None
    except ValueError as exc:
        raise ConfigurationError(f"the price table {path} is not valid JSON ({exc})") from None
    if not isinstance(table, dict) or not isinstance(table.get("regions"), dict):
        raise ConfigurationError(f"the price table {path} has no 'regions' object; see the README's 'Cost per "
                                 "serving path' for its format")
    return table


# -- the endpoint and its traffic -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Variant:
    name: str
    instance_type: str | None
    instances: int
    serverless_memory_mb: int | None


def endpoint_cost(endpoint: str, env: str | None = None, window_hours: float = DEFAULT_WINDOW_HOURS, *,
                  now: datetime | None = None) -> EndpointCost:
    """The monthly cost of ``endpoint``'s observed traffic on each serving path; see the module's notes."""
    from botocore.exceptions import ClientError

    from modelwerk.platform import resolve

    if not window_hours or window_hours <= 0:
        raise ValidationError(f"the window must be a positive number of hours, not {window_hours}")
    platform = resolve(env)
    session = platform.session()
    region = session.region_name or platform.region
    sagemaker = session.client("sagemaker")
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            raise NotFoundError(f"there is no endpoint {endpoint} in {platform.env}; 'modelwerk endpoints list' "
                                "shows them") from None
        raise
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    variants = _variants(described, config)
    container = _container(sagemaker, config)

    end = now or datetime.now(timezone.utc)
    start = end - timedelta(hours=window_hours)
    created = described.get("CreationTime")
    age_hours = (end - created).total_seconds() / 3600 if created else window_hours
    observed_hours = max(MIN_OBSERVED_HOURS, min(window_hours, age_hours))
    invocations, latency_us = _traffic(session.client("cloudwatch"), endpoint, [v.name for v in variants], start, end)
    per_month = invocations / observed_hours * HOURS_PER_MONTH
    latency_s = None if latency_us is None else latency_us / 1e6

    prices = load_prices()
    regional = prices["regions"].get(region)
    if regional is None:
        why = (f"the price table has no prices for {region} (it has {', '.join(sorted(prices['regions']))}); add "
               f"them to {price_table_path()}")
        paths = {name: PathCost(None, why) for name in PATHS}
        as_of = None
    else:
        paths = {"real_time": _real_time(regional, region, variants, platform.env, endpoint),
                 "serverless": _serverless(regional, region, variants, container, per_month, latency_s, platform),
                 "batch": _batch(regional, region, variants, per_month, latency_s)}
        dates = [section.get("as_of") for section in regional.values() if isinstance(section, dict)]
        as_of = min((d for d in dates if d), default=None)
    priced = [name for name in PATHS if paths[name].monthly_usd is not None]
    cheapest = min(priced, key=lambda name: paths[name].monthly_usd) if priced else None
    return EndpointCost(endpoint=endpoint, env=platform.env, region=region, window_hours=round(observed_hours, 2),
                        invocations=int(round(invocations)), requests_per_month=int(round(per_month)),
                        mean_latency_ms=None if latency_us is None else round(latency_us / 1000, 3), paths=paths,
                        cheapest=cheapest, prices_as_of=as_of)


def _variants(described: dict[str, Any], config: dict[str, Any]) -> list[_Variant]:
    """The endpoint's variants: instance type and current count (or serverless memory) from its config and state."""
    current = {v["VariantName"]: v for v in described.get("ProductionVariants") or []}
    found = []
    for variant in config.get("ProductionVariants") or []:
        state = current.get(variant["VariantName"], {})
        serverless = state.get("CurrentServerlessConfig") or variant.get("ServerlessConfig")
        count = state.get("CurrentInstanceCount", variant.get("InitialInstanceCount", 1))
        found.append(_Variant(name=variant["VariantName"], instance_type=variant.get("InstanceType"),
                              instances=0 if serverless else int(count or 0),
                              serverless_memory_mb=int(serverless["MemorySizeInMB"]) if serverless else None))
    if not found:
        raise ValidationError(f"endpoint {described['EndpointName']}'s config has no production variant to price")
    return found


def _container(sagemaker: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The primary container of the first variant's model ({} when the model cannot be described)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    except (BotoCoreError, ClientError, KeyError):
        return {}
    return model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]


def _traffic(cloudwatch: Any, endpoint: str, variants: list[str], start: datetime,
             end: datetime) -> tuple[float, float | None]:
    """(invocations, their mean ModelLatency in microseconds or None) over all variants in [start, end)."""
    seconds = (end - start).total_seconds()
    period = max(3600, math.ceil(seconds / 1440 / 3600) * 3600)  # at most 1,440 datapoints a call
    invocations, latency_total, latency_count = 0.0, 0.0, 0.0
    for variant in variants:
        dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        for point in _points(cloudwatch, "Invocations", dimensions, start, end, period, ["Sum"]):
            invocations += point["Sum"]
        for point in _points(cloudwatch, "ModelLatency", dimensions, start, end, period, ["Average", "SampleCount"]):
            latency_total += point["Average"] * point["SampleCount"]
            latency_count += point["SampleCount"]
    return invocations, (latency_total / latency_count if latency_count else None)


def _points(cloudwatch: Any, metric: str, dimensions: list[dict[str, str]], start: datetime, end: datetime,
            period: int, statistics: list[str]) -> list[dict[str, Any]]:
    return cloudwatch.get_metric_statistics(Namespace="AWS/SageMaker", MetricName=metric, Dimensions=dimensions,
                                            StartTime=start, EndTime=end, Period=period,
                                            Statistics=statistics)["Datapoints"]


# -- the three paths --------------------------------------------------------------------------------------------------


def _hourly(regional: dict[str, Any], section: str, instance_type: str) -> float | None:
    return ((regional.get(section) or {}).get("usd_per_hour") or {}).get(instance_type)


def _real_time(regional: dict[str, Any], region: str, variants: list[_Variant], env: str, endpoint: str) -> PathCost:
    fleet = [(v.instance_type, v.instances) for v in variants if v.serverless_memory_mb is None and v.instance_type]
    note = ""
    if not fleet:
        fleet = [(_configured_instance_type(env, endpoint), 1)]
        note = "the endpoint is serverless; as 1 instance of its configured instance type: "
    total, parts = 0.0, []
    for instance_type, count in fleet:
        price = _hourly(regional, "real_time", instance_type)
        if price is None:
            return PathCost(None, f"no real-time price for {instance_type} in {region} in the price table")
        total += count * HOURS_PER_MONTH * price
        parts.append(f"{count} × {instance_type} × {HOURS_PER_MONTH:.0f} h × ${price}/h")
    return PathCost(round(total, 2), note + " + ".join(parts))


def _configured_instance_type(env: str, endpoint: str) -> str:
    """The endpoint's ``instance_type`` in cdk.json, else the settings' default (also without a checkout)."""
    from modelwerk import settings

    try:
        configured = settings.load().environment(env).endpoints.get(endpoint)
    except ModelwerkError:
        configured = None
    return configured.instance_type if configured is not None else DEFAULT_INSTANCE_TYPE


def _serverless(regional: dict[str, Any], region: str, variants: list[_Variant], container: dict[str, Any],
                per_month: float, latency_s: float | None, platform: Any) -> PathCost:
    section = regional.get("serverless") or {}
    sizes = sorted(int(size) for size in (section.get("usd_per_gb_second") or {}))
    if not sizes or section.get("usd_per_gb_processed") is None:
        return PathCost(None, f"no serverless prices for {region} in the price table")
    if container.get("Mode") == "MultiModel":
        return PathCost(None, "a multi-model endpoint cannot be serverless (SageMaker serverless serves one model)")
    if latency_s is None and per_month > 0:
        return PathCost(None, "no ModelLatency observed in the window: the duration of a request is unknown")
    if latency_s is not None and latency_s > SERVERLESS_TIMEOUT_SECONDS:
        return PathCost(None, f"a mean model latency of {latency_s:.1f} s exceeds serverless's "
                              f"{SERVERLESS_TIMEOUT_SECONDS:.0f} s timeout")
    own = next((v.serverless_memory_mb for v in variants if v.serverless_memory_mb), None)
    if own is not None:
        memory, why = own, "the endpoint's own memory"
    else:
        artifact_mb = _artifact_mb(platform, container)
        needed = max(DEFAULT_SERVERLESS_MEMORY_MB, CONTAINER_MEMORY_MB + 2 * (artifact_mb or 0))
        fitting = [size for size in sizes if size >= needed]
        if not fitting:
            return PathCost(None, f"the model artifact ({_megabytes(artifact_mb)}) needs about {needed:.0f} MB, "
                                  f"more than serverless's largest size ({sizes[-1]} MB)")
        memory = fitting[0]
        why = (f"the smallest size for a {_megabytes(artifact_mb)} model artifact" if artifact_mb is not None
               else "the default size: the model's size is unknown")
    price = section["usd_per_gb_second"].get(str(memory))
    if price is None:
        return PathCost(None, f"no serverless price for {memory} MB in {region} in the price table")
    duration_s = math.ceil((latency_s or 0.0) * 1000) / 1000
    compute = per_month * duration_s * memory / 1024 * price
    processed_gb = per_month * PAYLOAD_KB / (1024 * 1024)
    data = processed_gb * section["usd_per_gb_processed"]
    return PathCost(round(compute + data, 2),
                    f"{per_month:,.0f} requests × {duration_s * 1000:.0f} ms × {memory / 1024:g} GB ({why}) × "
                    f"${price:.7f}/GB-s + {processed_gb:,.2f} GB processed ({PAYLOAD_KB:g} KB a request) × "
                    f"${section['usd_per_gb_processed']}/GB")


def _megabytes(size: float | None) -> str:
    return "<1 MB" if size is not None and size < 1 else f"{size:,.0f} MB"


def _artifact_mb(platform: Any, container: dict[str, Any]) -> float | None:
    """The size of the model artifact the container loads (a registered version's, read in the registry's account),
    in MB; None when it cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    from modelwerk.platform import session_for_account

    session = platform.session()
    try:
        url = container.get("ModelDataUrl") or ((container.get("ModelDataSource") or {}).get("S3DataSource")
                                                or {}).get("S3Uri")
        package = container.get("ModelPackageName")
        if not url and package:
            parts = package.split(":")
            session = session_for_account(parts[4]) if len(parts) > 5 and parts[4] else session
            described = session.client("sagemaker").describe_model_package(ModelPackageName=package)
            url = ((described.get("InferenceSpecification") or {}).get("Containers") or [{}])[0].get("ModelDataUrl")
        if not url or not url.startswith("s3://") or url.endswith("/"):
            return None
        bucket, _, key = url.removeprefix("s3://").partition("/")
        return session.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] / (1024 * 1024)
    except (BotoCoreError, ClientError, ModelwerkError):
        return None


def _batch(regional: dict[str, Any], region: str, variants: list[_Variant], per_month: float,
           latency_s: float | None) -> PathCost:
    if latency_s is None and per_month > 0:
        return PathCost(None, "no ModelLatency observed in the window: the compute time of a record is unknown")
    served = next((v.instance_type for v in variants if v.instance_type), None)
    instance_type = served if served in _transform_instance_types() else BATCH_FALLBACK_INSTANCE_TYPE
    price = _hourly(regional, "batch_transform", instance_type)
    if price is None:
        return PathCost(None, f"no batch transform price for {instance_type} in {region} in the price table")
    records = per_month / DAYS_PER_MONTH
    compute_s = records * (latency_s or 0.0)
    instances = max(1, math.ceil(compute_s / (BATCH_WINDOW_HOURS * 3600)))
    billed_s = instances * max(BATCH_MINIMUM_SECONDS, BATCH_START_SECONDS + compute_s / instances)
    monthly = billed_s / 3600 * price * DAYS_PER_MONTH
    chosen = f" (batch transform does not offer {served})" if served and instance_type != served else ""
    return PathCost(round(monthly, 2),
                    f"a nightly job: {records:,.0f} records × {(latency_s or 0.0) * 1000:.1f} ms on {instances} × "
                    f"{instance_type}{chosen} + {BATCH_START_SECONDS / 60:g} min start each = "
                    f"{billed_s / 3600:.2f} instance-h a day × ${price}/h × {DAYS_PER_MONTH:.1f} days")


@lru_cache(maxsize=1)
def _transform_instance_types() -> frozenset[str]:
    """The instance types CreateTransformJob accepts, from botocore's model of SageMaker."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for("TransformInstanceType").enum)
