"""Drift monitor function: a scheduled event in, one endpoint's drift report out (S3, CloudWatch metrics); or a
completed transform job of an inference pipeline in, that batch's drift report out.

The schedule of each monitored endpoint sends EventBridge's scheduled event with the endpoint in ``detail``
(``{"endpoint": "<name>"}``). The function reads the capture objects of the window before the event's time, finds
the version the endpoint serves and the baseline registered with it, compares (``modelwerk.core.monitor`` over
``modelwerk.core.drift``), writes the report JSON and publishes, per endpoint: ``Rows``, ``BadLines``,
``BadRequests``, ``NoData`` (1 when the window held no rows), ``WorstPSI``; per endpoint and feature: ``PSI``,
``KS``, ``JS``, ``MissingRate``. With ground truth under ``ground-truth/<endpoint>/`` it also publishes the window's
model quality (``Accuracy``/``F1`` or ``RMSE``/``MAE``). Corrupt capture lines are counted, never fatal.

Batch: EventBridge's ``SageMaker Transform Job State Change`` (``Completed``) of a job whose data capture is under
the serving bucket's batch capture prefix (``capture-batch/<use-case>/<execution id>``). The function describes the
job, reads the capture's ``input/`` manifests (SageMaker's batch capture format, ``modelwerk.core.capture``), the
input objects they name, cuts each record with the job's ``InputFilter`` to what the model was sent, and judges them
against the baseline of the version the job's model was created from. The report goes to
``monitoring/batch/<use-case>/<job>.json``; the metrics are the endpoint's, with the dimension ``UseCase`` instead of
``EndpointName`` (and ``Feature``).

Environment: ``SERVING_BUCKET`` (capture and reports), ``CAPTURE_PREFIX`` (``capture``), ``REPORT_PREFIX``
(``monitoring``), ``GROUND_TRUTH_PREFIX`` (``ground-truth``), ``WINDOW_MINUTES`` (60),
``POWERTOOLS_METRICS_NAMESPACE``, ``BATCH_CAPTURE_PREFIX`` (``capture-batch``). The registry's version and baseline
are read by ARN with the function's own credentials: the registry's group, bucket and key policies let this
account read them.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
from typing import Any

import boto3
import pandas as pd
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwerk.core import capture, monitor
from modelwerk.core.drift import Baseline, DriftError

SERVICE = "drift-monitor"
logger = Logger(service=SERVICE)
#: No service dimension: the alarms watch the metrics by endpoint (and feature) alone, so the function's environment
#: sets no POWERTOOLS_SERVICE_NAME, which Powertools would add to every metric's dimensions.
metrics = Metrics()

FEATURE_METRICS = {"psi": "PSI", "ks": "KS", "js": "JS", "missing_rate": "MissingRate"}
NAMESPACE = "Modelwerk/Monitoring"
QUALITY_METRICS = {"accuracy": "Accuracy", "f1": "F1", "rmse": "RMSE", "mae": "MAE"}
TRANSFORM_EVENT = "SageMaker Transform Job State Change"


class MonitorError(RuntimeError):
    """The endpoint cannot be monitored (unknown, or its version names no baseline)."""


def _settings() -> dict[str, Any]:
    return {
        "bucket": os.environ["SERVING_BUCKET"],
        "capture_prefix": os.environ.get("CAPTURE_PREFIX", "capture").strip("/"),
        "report_prefix": os.environ.get("REPORT_PREFIX", "monitoring").strip("/"),
        "truth_prefix": os.environ.get("GROUND_TRUTH_PREFIX", "ground-truth").strip("/"),
        "window_minutes": int(os.environ.get("WINDOW_MINUTES", "60")),
        "namespace": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE),
        "batch_capture_prefix": os.environ.get("BATCH_CAPTURE_PREFIX", "capture-batch").strip("/"),
    }


def serving_package(sagemaker: Any, endpoint: str) -> str:
    """The model package ARN the endpoint serves (its model's container names it)."""
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
    except sagemaker.exceptions.ClientError as exc:
        raise MonitorError(f"endpoint {endpoint!r} not found: {exc}") from None
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    arn = model_package(sagemaker, config["ProductionVariants"][0]["ModelName"])
    if not arn:
        raise MonitorError(f"endpoint {endpoint!r} serves no registered version (a multi-model endpoint is "
                           "monitored per model, not as a whole)")
    return arn


def model_package(sagemaker: Any, model_name: str) -> str | None:
    """The model package ARN a model was created from (its container's ``ModelPackageName``), if any."""
    model = sagemaker.describe_model(ModelName=model_name)
    containers = model.get("Containers") or [model.get("PrimaryContainer") or {}]
    return containers[0].get("ModelPackageName")


def load_baseline(session: boto3.Session, package_arn: str) -> tuple[Baseline, dict[str, Any]]:
    """The baseline registered with the version, and the version's facts the report records."""
    package = session.client("sagemaker").describe_model_package(ModelPackageName=package_arn)
    meta = package.get("CustomerMetadataProperties") or {}
    uri = meta.get("baseline_uri") or (
        package.get("DriftCheckBaselines", {}).get("ModelDataQuality", {}).get("Statistics", {}).get("S3Uri"))
    if not uri:
        raise MonitorError(f"{package_arn} names no drift baseline")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3 = session.client("s3")
    document = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    reference_key = key.rsplit("/", 1)[0] + "/reference.parquet"
    try:
        reference = s3.get_object(Bucket=bucket, Key=reference_key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        reference = None
    baseline = Baseline.load(document, reference)
    version = {"model_package_arn": package_arn, "version": package.get("ModelPackageVersion"), "baseline_uri": uri,
               "task": baseline.document.get("task")}
    return baseline, version


def _capture_bodies(s3: Any, bucket: str, prefix: str, start: _dt.datetime, end: _dt.datetime):
    """The capture objects of every variant (``<prefix>/<variant>/yyyy/mm/dd/hh/``) for the window's hours."""
    variants = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/", Delimiter="/"):
        variants += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    for variant in variants:
        for hour in monitor.hour_prefixes(start, end):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{variant}{hour}/"):
                for item in page.get("Contents", []):
                    yield s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()


def _ground_truth(s3: Any, bucket: str, prefix: str) -> pd.DataFrame | None:
    frames = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            try:
                frames.append(pd.read_csv(io.BytesIO(body), dtype={"inference_id": str}))
            except (ValueError, pd.errors.ParserError) as exc:
                logger.warning("ground truth object unreadable, skipped", extra={"key": item["Key"], "error": str(exc)})
    return pd.concat(frames, ignore_index=True) if frames else None


def run(endpoint: str, end: _dt.datetime, *, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Monitor ``endpoint`` over the window ending at ``end``: the report (also written to S3)."""
    settings = settings or _settings()
    start, end = monitor.window_bounds(end, settings["window_minutes"])
    s3 = boto3.client("s3")
    package_arn = serving_package(boto3.client("sagemaker"), endpoint)
    baseline, version = load_baseline(boto3.Session(), package_arn)
    bodies = _capture_bodies(s3, settings["bucket"], f"{settings['capture_prefix']}/{endpoint}", start, end)
    window = monitor.read_window(bodies, monitor.input_columns(baseline), start=start, end=end,
                                numeric=monitor.numeric_inputs(baseline))
    report = {"endpoint": endpoint, "window": {"start": start.isoformat(), "end": end.isoformat()},
              **_judge(baseline, window, version)}
    truth = _ground_truth(s3, settings["bucket"], f"{settings['truth_prefix']}/{endpoint}")
    if truth is not None and version.get("task"):
        try:
            report["quality"] = monitor.quality(monitor.predictions_frame(window), truth, version["task"])
        except monitor.QualityError as exc:
            report["errors"].append(f"ground truth: {exc}")
    key = f"{settings['report_prefix']}/{endpoint}/{end:%Y/%m/%d/%H-%M}.json"
    _store(s3, settings["bucket"], key, report)
    _publish(report, settings["namespace"], ("EndpointName", endpoint))
    return report


def _judge(baseline: Baseline, window: monitor.Window, version: dict[str, Any]) -> dict[str, Any]:
    """The report's body: what was read, and the drift of the window against the baseline."""
    drift = monitor.compare_window(baseline, window)
    return {
        "rows": window.rows,
        "requests": window.requests,
        "bad_lines": window.bad_lines,
        "bad_requests": window.bad_requests,
        "bad_rows": window.bad_rows,
        "errors": window.errors,
        "content_types": dict(window.content_types),
        "features": monitor.feature_summary(drift),
        "details": drift["features"],
        "schema": drift["schema"],
        "worst": drift["worst"],
        "version": version,
        "quality": None,
    }


def _store(s3: Any, bucket: str, key: str, report: dict[str, Any]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(report, indent=1, default=str).encode(),
                  ContentType="application/json")
    report["report_uri"] = f"s3://{bucket}/{key}"


def _s3_body(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def batch_use_case(destination: str, settings: dict[str, Any]) -> str:
    """The use case a transform job's capture destination belongs to (``s3://<serving>/capture-batch/<use case>/...``);
    MonitorError for a destination outside the serving bucket's batch capture prefix."""
    prefix = f"s3://{settings['bucket']}/{settings['batch_capture_prefix']}/"
    use_case = destination.removeprefix(prefix).split("/", 1)[0] if destination.startswith(prefix) else ""
    if not use_case:
        raise MonitorError(f"the job's capture {destination!r} is not under {prefix}: not an inference pipeline's job")
    return use_case


def run_batch(job_name: str, *, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Monitor the batch a completed transform job scored: the report (also written to S3)."""
    settings = settings or _settings()
    sagemaker, s3 = boto3.client("sagemaker"), boto3.client("s3")
    job = sagemaker.describe_transform_job(TransformJobName=job_name)
    destination = (job.get("DataCaptureConfig") or {}).get("DestinationS3Uri")
    if not destination:
        raise MonitorError(f"transform job {job_name} captured no data (no DataCaptureConfig)")
    use_case = batch_use_case(destination, settings)
    package_arn = model_package(sagemaker, job["ModelName"])
    if not package_arn:
        raise MonitorError(f"transform job {job_name}'s model {job['ModelName']} names no registered version")
    baseline, version = load_baseline(boto3.Session(), package_arn)
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    inputs: list[str] = []
    errors: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix.strip('/')}/input/"):
        for item in page.get("Contents", []):
            try:
                inputs += capture.manifest_uris(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            except capture.CaptureRecordError as exc:
                errors.append(f"{item['Key']}: {exc}")
    input_filter = (job.get("DataProcessing") or {}).get("InputFilter")
    window = monitor.read_batch((_s3_body(s3, uri) for uri in inputs), monitor.input_columns(baseline),
                                input_filter=input_filter, numeric=monitor.numeric_inputs(baseline))
    window.bad_lines += len(errors)
    for error in errors:
        window.problem(error)
    times = [job.get(k) for k in ("TransformStartTime", "TransformEndTime")]
    report = {"use_case": use_case, "transform_job": job_name, "capture": destination,
              "window": {"start": str(times[0]), "end": str(times[1])}, **_judge(baseline, window, version)}
    _store(s3, settings["bucket"], f"{settings['report_prefix']}/batch/{use_case}/{job_name}.json", report)
    _publish(report, settings["namespace"], ("UseCase", use_case))
    return report


def _publish(report: dict[str, Any], namespace: str, dimension: tuple[str, str]) -> None:
    """The report's metrics, by ``dimension`` (``EndpointName`` of an endpoint, ``UseCase`` of a batch)."""
    dimension_name, dimension_value = dimension
    metrics.namespace = namespace  # POWERTOOLS_METRICS_NAMESPACE on AWS; the same name when run elsewhere
    metrics.add_dimension(name=dimension_name, value=dimension_value)
    for name, value in (("Rows", report["rows"]), ("BadLines", report["bad_lines"]),
                        ("BadRequests", report["bad_requests"]), ("NoData", 1 if report["rows"] == 0 else 0)):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if report["worst"]["psi"] is not None:
        metrics.add_metric(name="WorstPSI", unit=MetricUnit.NoUnit, value=report["worst"]["psi"])
    for key, value in (report.get("quality") or {}).items():
        if key in QUALITY_METRICS and value is not None:
            metrics.add_metric(name=QUALITY_METRICS[key], unit=MetricUnit.NoUnit, value=value)
    for feature, stats in report["features"].items():
        for key, metric in FEATURE_METRICS.items():
            if stats.get(key) is None:
                continue
            with single_metric(name=metric, unit=MetricUnit.NoUnit, value=stats[key], namespace=namespace) as one:
                one.add_dimension(name=dimension_name, value=dimension_value)
                one.add_dimension(name="Feature", value=feature)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    if event.detail_type == TRANSFORM_EVENT:
        return _batch(event)
    endpoint = (event.detail or {}).get("endpoint")
    if not endpoint:
        raise MonitorError("the scheduled event names no endpoint in its detail ({\"endpoint\": \"<name>\"})")
    logger.append_keys(endpoint=endpoint)
    end = _dt.datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    settings = _settings()
    if event.detail.get("window_minutes"):  # the endpoint's schedule names its window
        settings["window_minutes"] = int(event.detail["window_minutes"])
    try:
        report = run(endpoint, end, settings=settings)
    except DriftError as exc:
        raise MonitorError(f"the baseline of {endpoint}'s version is not readable: {exc}") from None
    logger.info("drift report written", extra={"report_uri": report["report_uri"], "rows": report["rows"],
                                                 "bad_lines": report["bad_lines"], "worst": report["worst"]})
    answer = {k: report[k] for k in ("endpoint", "window", "rows", "bad_lines", "features", "worst", "quality",
                                     "report_uri")}
    answer["distributions"] = {name: stats["distribution"] for name, stats in report["details"].items()
                               if stats.get("distribution")}  # a few numbers per feature, for plots
    return answer


def _batch(event: EventBridgeEvent) -> dict[str, Any]:
    detail = event.detail or {}
    job = detail.get("TransformJobName")
    if not job or detail.get("TransformJobStatus") != "Completed":
        raise MonitorError("the transform job event names no completed job (TransformJobName, TransformJobStatus)")
    logger.append_keys(transform_job=job)
    try:
        report = run_batch(job)
    except DriftError as exc:
        raise MonitorError(f"the baseline of {job}'s version is not readable: {exc}") from None
    logger.info("batch drift report written", extra={"report_uri": report["report_uri"], "rows": report["rows"],
                                                       "worst": report["worst"]})
    return {k: report[k] for k in ("use_case", "transform_job", "rows", "bad_rows", "features", "worst",
                                   "report_uri")}
