"""Serverless endpoints of the embedded AWS, driven through boto3 as on AWS: a variant with a ServerlessConfig
starts on its first request (a cold start, published as ModelSetupTime), stops after its idle time, and throttles
beyond its MaxConcurrency.

The idle time is the embedded AWS's ``MODELWERK_SERVERLESS_IDLE_SECONDS``, short here; the module's embedded AWS
(tests/conftest.py) reads it when an endpoint is created.
"""

from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from serving_helpers import runtime_url, write_artifact
from sklearn.dummy import DummyClassifier

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-serverless")]

REGION = "eu-central-1"
BUCKET = "serverless-models"
ENDPOINT = "forecast-serverless"
NARROW = "forecast-narrow"
IDLE_SECONDS = 2.0
ROW = b"1.0,2.0,3.0\n"
WAIT = {"Delay": 1, "MaxAttempts": 60}


@pytest.fixture(scope="module")
def sagemaker(embedded_aws, tmp_path_factory):
    """A model (a constant 7) and two serverless endpoints of it: MaxConcurrency 5 and 1."""
    previous = os.environ.get("MODELWERK_SERVERLESS_IDLE_SECONDS")
    os.environ["MODELWERK_SERVERLESS_IDLE_SECONDS"] = str(IDLE_SECONDS)
    s3, client = embedded_aws.client("s3"), embedded_aws.client("sagemaker")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    estimator = DummyClassifier(strategy="constant", constant=7).fit(np.zeros((4, 3)), [7, 7, 9, 9])
    folder = write_artifact(tmp_path_factory.mktemp("m7"), estimator, [("a", "double"), ("b", "double"),
                                                                       ("c", "double")], archive=True)
    s3.put_object(Bucket=BUCKET, Key="m7/model.tar.gz", Body=(folder / "model.tar.gz").read_bytes())
    client.create_model(ModelName="m7", ExecutionRoleArn="arn:aws:iam::123456789012:role/endpoint",
                        PrimaryContainer={"Image": "modelwerk-serving:latest",
                                          "ModelDataUrl": f"s3://{BUCKET}/m7/model.tar.gz"})
    for name, concurrency in ((ENDPOINT, 5), (NARROW, 1)):
        client.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "m7",
            "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": concurrency}}])
        client.create_endpoint(EndpointName=name, EndpointConfigName=name)
    for name in (ENDPOINT, NARROW):
        client.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=WAIT)
    yield client
    if previous is None:
        os.environ.pop("MODELWERK_SERVERLESS_IDLE_SECONDS", None)
    else:
        os.environ["MODELWERK_SERVERLESS_IDLE_SECONDS"] = previous


@pytest.fixture(scope="module")
def runtime(embedded_aws):
    """boto3's sagemaker-runtime against the local SageMaker Runtime, without retries (a throttle shows)."""
    url = runtime_url(embedded_aws.endpoint_url)
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return session.client("sagemaker-runtime", endpoint_url=url,
                           config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=120))


def _predict(runtime, endpoint: str = ENDPOINT) -> str:
    answer = runtime.invoke_endpoint(EndpointName=endpoint, Body=ROW, ContentType="text/csv")
    return answer["Body"].read().decode().strip()


def _cold_starts(embedded_aws, endpoint: str = ENDPOINT) -> list[float]:
    """The ModelSetupTime samples (microseconds) published for the endpoint's variant."""
    now = time.time()
    answer = embedded_aws.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName="ModelSetupTime",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}],
        StartTime=now - 3600, EndTime=now + 60, Period=60, Statistics=["SampleCount", "Maximum"])
    assert all(p["Unit"] == "Microseconds" for p in answer["Datapoints"])
    return [p["Maximum"] for p in answer["Datapoints"] for _ in range(int(p["SampleCount"]))]


def test_a_serverless_endpoint_is_in_service_without_instances_and_answers_after_a_cold_start(sagemaker, runtime,
                                                                                               embedded_aws):
    described = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    (variant,) = described["ProductionVariants"]
    assert described["EndpointStatus"] == "InService"
    assert variant["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert variant["DesiredServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "CurrentInstanceCount" not in variant and "DataCaptureConfig" not in described
    assert _cold_starts(embedded_aws) == []

    assert _predict(runtime) == "7"
    (setup,) = _cold_starts(embedded_aws)
    assert 0 < setup < 120e6


def test_the_fleet_stops_after_its_idle_time_and_the_next_request_starts_it_again(sagemaker, runtime, embedded_aws):
    _predict(runtime)
    assert _predict(runtime) == "7"  # warm: no new cold start
    before = len(_cold_starts(embedded_aws))
    time.sleep(IDLE_SECONDS + 1.5)
    assert _predict(runtime) == "7"
    assert len(_cold_starts(embedded_aws)) == before + 1


def test_requests_beyond_max_concurrency_are_throttled(sagemaker, runtime):
    """MaxConcurrency 1: a second request while the first waits for its cold start is refused, the first answered."""
    answers: list[str] = []
    first = threading.Thread(target=lambda: answers.append(_predict(runtime, NARROW)))
    first.start()
    time.sleep(0.3)
    with pytest.raises(ClientError) as refused:
        _predict(runtime, NARROW)
    first.join(timeout=120)
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert answers == ["7"]


def test_endpoints_describe_shows_the_capacity_and_the_last_cold_start(sagemaker, runtime, embedded_aws, monkeypatch):
    import modelwerk.platform
    from modelwerk import endpoints

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    platform = SimpleNamespace(env="dev", project="modelwerk", session=lambda: SimpleNamespace(
        client=lambda name: session.client(name, endpoint_url=embedded_aws.endpoint_url)))
    monkeypatch.setattr(modelwerk.platform, "resolve", lambda env=None: platform)
    _predict(runtime)
    described = endpoints.describe(ENDPOINT).to_dict()
    assert described["serverless"] == {"memory_mb": 2048, "max_concurrency": 5}
    assert 0 < described["model_setup_seconds"] <= max(_cold_starts(embedded_aws)) / 1e6 + 1e-3
    assert {"endpoint", "status", "mode", "variants", "deployment"} <= set(described)


def test_a_serverless_endpoint_config_with_data_capture_is_refused(sagemaker):
    sagemaker.create_endpoint_config(
        EndpointConfigName="captured", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "m7",
            "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1}}],
        DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 100,
                           "DestinationS3Uri": f"s3://{BUCKET}/capture",
                           "CaptureOptions": [{"CaptureMode": "Input"}]})
    with pytest.raises(ClientError, match="DataCaptureConfig is not supported for serverless endpoints"):
        sagemaker.create_endpoint(EndpointName="captured", EndpointConfigName="captured")
