"""SageMaker endpoints of the embedded AWS, driven only through boto3 and the SageMaker SDK, as on AWS.

One embedded AWS for the module; two model artifacts in its S3 that answer differently (a constant 7 and 9), so a
prediction says which model served it. The endpoint is created, updated blue/green, rolled back and deleted in order.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError, WaiterError
from serving_helpers import runtime_url, wait_for, write_artifact
from sklearn.dummy import DummyClassifier

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-endpoints-api")]

TEST_REGION = "eu-central-1"
BUCKET = "models"
ENDPOINT = "pumps"
PROD = "222222222222"
COLUMNS = [("a", "double"), ("b", "double"), ("c", "double")]
ROW = b"1.0,2.0,3.0\n"
CAPTURE = {"EnableCapture": True, "InitialSamplingPercentage": 100, "DestinationS3Uri": f"s3://{BUCKET}/capture",
           "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]}
WAIT = {"Delay": 1, "MaxAttempts": 120}


class Account:
    """boto3 clients of one account of the embedded AWS."""

    def __init__(self, url: str, session: boto3.Session, runtime_url: str):
        self.url, self.session, self.runtime_url = url, session, runtime_url

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.url)

    def runtime(self):
        return self.session.client("sagemaker-runtime", endpoint_url=self.runtime_url)

    def predict(self, endpoint: str = ENDPOINT) -> str:
        answer = self.runtime().invoke_endpoint(EndpointName=endpoint, Body=ROW, ContentType="text/csv")
        return answer["Body"].read().decode().strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from modelwerk.local.server import EmbeddedAWS, free_port

    embedded = EmbeddedAWS(port=free_port(), state_dir=tmp_path_factory.mktemp("state"), region=TEST_REGION).start()
    yield embedded
    embedded.stop()


@pytest.fixture(scope="module")
def dev(server):
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=TEST_REGION)
    return Account(server.endpoint_url, session, runtime_url(server.endpoint_url))


@pytest.fixture(scope="module")
def prod(dev):
    issued = dev.client("sts").assume_role(RoleArn=f"arn:aws:iam::{PROD}:role/deployer",
                                           RoleSessionName="test")["Credentials"]
    session = boto3.Session(aws_access_key_id=issued["AccessKeyId"], aws_secret_access_key=issued["SecretAccessKey"],
                            aws_session_token=issued["SessionToken"], region_name=TEST_REGION)
    return Account(dev.url, session, dev.runtime_url)


@pytest.fixture(scope="module")
def models(dev, tmp_path_factory):
    """Models m7 and m9 (their artifacts in the dev account's bucket) and a config of each with data capture."""
    s3, sagemaker = dev.client("s3"), dev.client("sagemaker")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": TEST_REGION})
    for value in (7, 9):
        estimator = DummyClassifier(strategy="constant", constant=value).fit(np.zeros((4, 3)), [7, 7, 9, 9])
        folder = write_artifact(tmp_path_factory.mktemp(f"m{value}"), estimator, COLUMNS, archive=True)
        s3.put_object(Bucket=BUCKET, Key=f"m{value}/model.tar.gz", Body=(folder / "model.tar.gz").read_bytes())
        _model_and_config(sagemaker, f"m{value}", f"s3://{BUCKET}/m{value}/model.tar.gz")
    return sagemaker


def _model_and_config(sagemaker, name: str, model_data_url: str) -> None:
    sagemaker.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/endpoint",
                           PrimaryContainer={"Image": "modelwerk-serving:latest", "ModelDataUrl": model_data_url})
    sagemaker.create_endpoint_config(EndpointConfigName=name, DataCaptureConfig=CAPTURE, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])


@pytest.fixture(scope="module")
def endpoint(models):
    models.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="m7")
    models.get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig=WAIT)
    return models


def _record(server, account: str = "123456789012") -> dict:
    path = Path(server.context.state_dir) / "endpoints" / account / TEST_REGION / f"{ENDPOINT}.json"
    return json.loads(path.read_text())


def test_an_endpoint_serves_its_model_through_the_runtime_and_captures_requests(endpoint, dev):
    assert dev.predict() == "7"
    described = endpoint.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"][0]["CurrentWeight"] == 1.0
    assert described["DataCaptureConfig"]["CaptureStatus"] == "Started"
    s3 = dev.client("s3")
    keys = wait_for(lambda: [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"capture/{ENDPOINT}/")
                              .get("Contents", [])])
    line = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read().splitlines()[0])
    assert line["captureData"]["endpointInput"]["data"] == ROW.decode()


def test_the_sagemaker_sdk_gets_and_invokes_the_endpoint(endpoint, dev, monkeypatch):
    from sagemaker.core.resources import Endpoint

    monkeypatch.setenv("AWS_ENDPOINT_URL", dev.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", dev.runtime_url)
    found = Endpoint.get(ENDPOINT, session=dev.session, region=TEST_REGION)
    assert found.endpoint_status == "InService"
    answer = found.invoke(body=ROW, content_type="text/csv")
    assert answer.body.read().decode().strip() == "7"


def test_the_runtime_routes_by_the_callers_account(endpoint, dev, prod, models):
    """prod's endpoint of the same name serves prod's model; dev's keeps serving dev's."""
    sagemaker = prod.client("sagemaker")
    _model_and_config(sagemaker, "m9", f"s3://{BUCKET}/m9/model.tar.gz")
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="m9")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig=WAIT)
    assert (prod.predict(), dev.predict()) == ("9", "7")
    sagemaker.delete_endpoint(EndpointName=ENDPOINT)


def test_an_update_moves_the_endpoint_to_the_new_model_blue_green(endpoint, dev, server):
    old_pid = _record(server)["variants"][0]["pid"]
    endpoint.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="m9", DeploymentConfig={
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
            "Type": "CANARY", "WaitIntervalInSeconds": 1, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50}},
            "TerminationWaitInSeconds": 0}})
    assert endpoint.describe_endpoint(EndpointName=ENDPOINT)["PendingDeploymentSummary"]["EndpointConfigName"] == "m9"
    endpoint.get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig=WAIT)
    described = endpoint.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointConfigName"] == "m9" and "PendingDeploymentSummary" not in described
    assert described["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert dev.predict() == "9"
    wait_for(lambda: not _alive(old_pid), 20)


def test_an_alarm_in_alarm_rolls_the_update_back_to_the_old_model(endpoint, dev):
    cloudwatch = dev.client("cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName=f"{ENDPOINT}-5xx", Namespace="AWS/SageMaker",
                                MetricName="Invocation5XXErrors", Statistic="Sum", Period=60, EvaluationPeriods=1,
                                Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
                                TreatMissingData="notBreaching",
                                Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT},
                                            {"Name": "VariantName", "Value": "AllTraffic"}])
    endpoint.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="m7", DeploymentConfig={
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
            "Type": "CANARY", "WaitIntervalInSeconds": 3, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": f"{ENDPOINT}-5xx"}]}})

    def baking():
        pending = endpoint.describe_endpoint(EndpointName=ENDPOINT).get("PendingDeploymentSummary")
        return pending and pending["ProductionVariants"][0]["VariantStatus"][0]["Status"] == "Baking"

    wait_for(baking)
    cloudwatch.set_alarm_state(AlarmName=f"{ENDPOINT}-5xx", StateValue="ALARM", StateReason="forced by the test")
    endpoint.get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig=WAIT)
    described = endpoint.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointConfigName"] == "m9"
    assert f"{ENDPOINT}-5xx" in described["FailureReason"]
    assert dev.predict() == "9"


def test_a_model_that_does_not_load_fails_its_endpoint_with_the_reason(models, dev):
    dev.client("s3").put_object(Bucket=BUCKET, Key="broken/model.tar.gz", Body=b"not an archive")
    _model_and_config(models, "broken", f"s3://{BUCKET}/broken/model.tar.gz")
    models.create_endpoint(EndpointName="broken", EndpointConfigName="broken")
    with pytest.raises(WaiterError):
        models.get_waiter("endpoint_in_service").wait(EndpointName="broken", WaiterConfig=WAIT)
    described = models.describe_endpoint(EndpointName="broken")
    assert described["EndpointStatus"] == "Failed" and "model.tar.gz" in described["FailureReason"]


def test_delete_endpoint_stops_its_process(endpoint, dev, server):
    pid = _record(server)["variants"][0]["pid"]
    endpoint.delete_endpoint(EndpointName=ENDPOINT)
    wait_for(lambda: not _alive(pid), 20)
    with pytest.raises(ClientError) as gone:
        endpoint.describe_endpoint(EndpointName=ENDPOINT)
    assert gone.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as not_served:
        dev.predict()
    assert not_served.value.response["Error"]["Code"] == "ValidationError"


def _alive(pid: int) -> bool:
    from modelwerk.local import pid_alive

    return pid_alive(pid)
