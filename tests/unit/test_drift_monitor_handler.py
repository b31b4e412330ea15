"""The drift monitor Lambda (lambdas/drift_monitor): the real scheduled event, capture objects in the layout the
container writes, the version's baseline in the registry's bucket, SageMaker and S3 in moto."""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from moto_fresh import fresh_mock_aws

from modelwerk.core import drift
from modelwerk.core.capture import capture_line, object_key
from modelwerk.local.lambdas import LambdaContext


pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ROOT = Path(__file__).resolve().parents[2]
EVENT = json.loads((ROOT / "tests" / "events" / "drift_monitor_scheduled.json").read_text())
SERVING = "modelwerk-dev-serving-123456789012-eu-central-1"
ARTIFACTS = "modelwerk-registry-model-artifacts-123456789012-eu-central-1"
ENDPOINT = EVENT["detail"]["endpoint"]
END = dt.datetime(2026, 3, 1, 13, 0, tzinfo=dt.timezone.utc)
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "SERVING_BUCKET": SERVING,
    "POWERTOOLS_METRICS_NAMESPACE": "Modelwerk/Monitoring",
}


FakeContext = partial(LambdaContext, "modelwerk-dev-drift-monitor", 3008, 600, "0e3a5d0c-0000-4000-8000-000000000001",
                      "eu-central-1", "123456789012")


@pytest.fixture(scope="module")
def handler_module():
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENVIRONMENT.items():
            patch.setenv(name, value)
        yield importlib.import_module("lambdas.drift_monitor.handler")


@pytest.fixture
def aws(handler_module, monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with fresh_mock_aws():
        s3 = boto3.client("s3")
        for bucket in (SERVING, ARTIFACTS):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        rng = np.random.default_rng(3)
        train = pd.DataFrame({"temperature": rng.normal(60, 5, 20_000), "pressure": rng.normal(100, 10, 20_000),
                              "site": rng.choice(["north", "south"], 20_000)})
        baseline = drift.build_baseline(train, numeric=["temperature", "pressure"], categorical=["site"])
        baseline.document["inputs"] = [{"name": n, "type": t} for n, t in
                                       (("site", "string"), ("temperature", "double"), ("pressure", "double"))]
        baseline.document["task"] = "classification"
        folder = "pipelines/pump-health/exec-1/baseline/baseline"
        s3.put_object(Bucket=ARTIFACTS, Key=f"{folder}/baseline.json", Body=baseline.to_json().encode())
        s3.put_object(Bucket=ARTIFACTS, Key=f"{folder}/reference.parquet", Body=baseline.reference_parquet())
        sagemaker = boto3.client("sagemaker")
        sagemaker.create_model_package_group(ModelPackageGroupName="modelwerk-pump-health")
        package = sagemaker.create_model_package(
            ModelPackageGroupName="modelwerk-pump-health", ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "serving:1", "ModelDataUrl": f"s3://{ARTIFACTS}/m.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
            CustomerMetadataProperties={"baseline_uri": f"s3://{ARTIFACTS}/{folder}/baseline.json"})["ModelPackageArn"]
        sagemaker.create_model(ModelName=f"{ENDPOINT}-1", ExecutionRoleArn="arn:aws:iam::123456789012:role/endpoint",
                               PrimaryContainer={"ModelPackageName": package})
        sagemaker.create_endpoint_config(EndpointConfigName=f"{ENDPOINT}-1", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": f"{ENDPOINT}-1", "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1}])
        sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=f"{ENDPOINT}-1")
        yield s3, rng


def _capture(s3, rng, rows: int, shift: float, *, extra: bytes = b"", at=END - dt.timedelta(minutes=30)) -> None:
    lines = []
    for i in range(rows):
        body = f"{rng.choice(['north', 'south'])},{rng.normal(60 + shift * 5, 5):.3f},{rng.normal(100, 10):.3f}"
        lines.append(capture_line(body, "text/csv", "1", "text/csv", inference_id=f"req-{i}",
                                  inference_time=at + dt.timedelta(milliseconds=i)))
    s3.put_object(Bucket=SERVING, Key=object_key("capture", ENDPOINT, "AllTraffic", at),
                  Body=b"".join(lines) + extra)


def test_a_drifted_window_is_reported_to_s3_and_published_as_metrics(aws, handler_module, capsys):
    s3, rng = aws
    _capture(s3, rng, 2000, shift=1.0, extra=b"{corrupt\n")
    _capture(s3, rng, 50, shift=0.0, at=END + dt.timedelta(minutes=5))  # after the window: not read
    result = handler_module.handler(copy.deepcopy(EVENT), FakeContext())
    assert result["rows"] == 2000 and result["bad_lines"] == 1
    assert result["worst"]["feature"] == "temperature" and result["worst"]["psi"] > 0.5
    assert result["features"]["pressure"]["psi"] < 0.1
    assert set(result["features"]["site"]) == {"psi", "ks", "js", "missing_rate"}
    bucket, _, key = result["report_uri"][5:].partition("/")
    report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert key == "monitoring/pump-health/2026/03/01/13-00.json"
    assert report["window"] == {"start": "2026-03-01T12:00:00+00:00", "end": "2026-03-01T13:00:00+00:00"}
    assert report["version"]["model_package_arn"].endswith("/1") and report["errors"]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for doc in emitted for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Rows", "BadLines", "NoData", "WorstPSI", "PSI", "KS", "JS", "MissingRate"} <= names
    per_feature = [doc for doc in emitted if doc.get("Feature") == "temperature" and "PSI" in doc]
    assert per_feature and per_feature[0]["EndpointName"] == ENDPOINT
    dimension_sets = {tuple(s) for doc in emitted for d in doc["_aws"]["CloudWatchMetrics"] for s in d["Dimensions"]}
    assert dimension_sets == {("EndpointName",), ("EndpointName", "Feature")}  # exactly what the alarms watch


def test_an_empty_window_publishes_no_data_and_ground_truth_scores_quality(aws, handler_module, capsys):
    s3, rng = aws
    empty = handler_module.handler(copy.deepcopy(EVENT), FakeContext())
    assert empty["rows"] == 0 and empty["worst"]["psi"] is None
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(doc.get("NoData") in (1, [1]) for doc in emitted), emitted  # EMF holds a value or a list of them
    _capture(s3, rng, 10, shift=0.0)
    labels = "inference_id,label\n" + "".join(f"req-{i},{1 if i < 8 else 0}\n" for i in range(10))
    s3.put_object(Bucket=SERVING, Key=f"ground-truth/{ENDPOINT}/batch-1.csv", Body=labels.encode())
    scored = handler_module.handler(copy.deepcopy(EVENT), FakeContext())
    assert scored["quality"]["matched"] == 10 and scored["quality"]["accuracy"] == pytest.approx(0.8)


def test_an_event_without_an_endpoint_or_an_unknown_endpoint_fails_with_a_message(aws, handler_module):
    event = copy.deepcopy(EVENT)
    event["detail"] = {}
    with pytest.raises(handler_module.MonitorError, match="names no endpoint"):
        handler_module.handler(event, FakeContext())
    event["detail"] = {"endpoint": "nowhere"}
    with pytest.raises(handler_module.MonitorError, match="nowhere"):
        handler_module.handler(event, FakeContext())


# -- batch: a completed transform job of an inference pipeline ---------------------------------------------------------

JOB = "pipelines-abc123-Transform-xyz"
CAPTURE = f"s3://{SERVING}/capture-batch/pump-health/abc123"


def _transform_event(status: str = "Completed") -> dict[str, Any]:
    """EventBridge's transform job state change, as SageMaker sends it (the job's description in ``detail``)."""
    return {"version": "0", "id": "5d2b3c1e-0000-4000-8000-000000000002",
            "detail-type": "SageMaker Transform Job State Change", "source": "aws.sagemaker",
            "account": "123456789012", "time": "2026-03-01T13:05:00Z", "region": "eu-central-1", "resources": [f"arn:aws:sagemaker:eu-central-1:123456789012:transform-job/{JOB}"],
            "detail": {"TransformJobName": JOB, "TransformJobStatus": status, "ModelName": f"{ENDPOINT}-1",
                       "TransformOutput": {"S3OutputPath": f"s3://{SERVING}/batch/pump-health/abc123/transform"}}}


def _batch(s3, rng, rows: int, shift: float) -> None:
    """The export's CSV records (row id first), the job that read them, and SageMaker's capture manifests."""
    from modelwerk.core.capture import batch_manifest, batch_manifest_key

    records = "".join(f"{i},{rng.choice(['north', 'south'])},{rng.normal(60 + shift * 5, 5):.3f},"
                      f"{rng.normal(100, 10):.3f}\n" for i in range(rows)) + "7,too,short\n"
    prefix = "batch/pump-health/abc123/export/records/"
    s3.put_object(Bucket=SERVING, Key=f"{prefix}part-00000.csv", Body=records.encode())
    capture_key = CAPTURE.removeprefix(f"s3://{SERVING}/")
    for side, name in (("input", "part-00000.csv"), ("output", "part-00000.csv.out")):
        s3.put_object(Bucket=SERVING, Key=batch_manifest_key(capture_key, side, END),
                      Body=batch_manifest(f"s3://{SERVING}/{prefix}", [name]))
    boto3.client("sagemaker").create_transform_job(
        TransformJobName=JOB, ModelName=f"{ENDPOINT}-1",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{SERVING}/{prefix}"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://{SERVING}/batch/pump-health/abc123/transform"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        DataProcessing={"InputFilter": "$[1:]", "OutputFilter": "$[0,-1]", "JoinSource": "Input"},
        DataCaptureConfig={"DestinationS3Uri": CAPTURE})


def test_a_completed_batch_is_judged_on_its_captured_inputs_by_use_case(aws, handler_module, capsys):
    s3, rng = aws
    _batch(s3, rng, 3000, shift=1.0)
    result = handler_module.handler(_transform_event(), FakeContext())
    assert result["use_case"] == "pump-health" and result["transform_job"] == JOB
    assert result["rows"] == 3000 and result["bad_rows"] == 1  # the row id is cut off, the short record counted
    assert result["worst"]["feature"] == "temperature" and result["worst"]["psi"] > 0.5
    assert result["features"]["pressure"]["psi"] < 0.1
    assert result["report_uri"] == f"s3://{SERVING}/monitoring/batch/pump-health/{JOB}.json"
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    dimension_sets = {tuple(s) for doc in emitted for d in doc["_aws"]["CloudWatchMetrics"] for s in d["Dimensions"]}
    assert dimension_sets == {("UseCase",), ("UseCase", "Feature")}


def test_a_transform_job_without_capture_or_outside_the_batch_prefix_is_refused(aws, handler_module):
    s3, rng = aws
    with pytest.raises(handler_module.MonitorError, match="no completed job"):
        handler_module.handler(_transform_event("Failed"), FakeContext())
    boto3.client("sagemaker").create_transform_job(
        TransformJobName=JOB, ModelName=f"{ENDPOINT}-1",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{SERVING}/x/"}}},
        TransformOutput={"S3OutputPath": f"s3://{SERVING}/y"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        DataCaptureConfig={"DestinationS3Uri": f"s3://{SERVING}/elsewhere/abc"})
    with pytest.raises(handler_module.MonitorError, match="not an inference pipeline's job"):
        handler_module.handler(_transform_event(), FakeContext())
