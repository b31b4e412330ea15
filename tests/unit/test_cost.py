"""Cost per serving path: synthetic CloudWatch traffic of endpoints in moto's mock, priced from the price table."""

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from modelwerk import cli, cost, platform, report
from moto_fresh import fresh_mock_aws

REGION = "eu-central-1"
KEYS = {"endpoint", "env", "region", "window_hours", "invocations", "requests_per_month", "mean_latency_ms", "paths",
        "cheapest", "prices_as_of"}


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "MODELWERK_ENV", "MODELWERK_LOCAL_ROOT", cost.PRICE_TABLE_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELWERK_LOCAL", "0")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    platform._resolve_cached.cache_clear()
    with fresh_mock_aws():
        boto3.client("s3").create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": REGION})
        boto3.client("s3").put_object(Bucket="models", Key="model.tar.gz", Body=b"x" * 1024)
        yield
    platform._resolve_cached.cache_clear()


def _endpoint(name, *, instance_type="ml.m5.large", instances=1, serverless_mb=None):
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/serving",
                           PrimaryContainer={"Image": "serving:latest", "ModelDataUrl": "s3://models/model.tar.gz"})
    variant = {"VariantName": "AllTraffic", "ModelName": name}
    if serverless_mb:
        variant["ServerlessConfig"] = {"MemorySizeInMB": serverless_mb, "MaxConcurrency": 5}
    else:
        variant.update(InstanceType=instance_type, InitialInstanceCount=instances)
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


def _traffic(name, requests, latency_ms):
    """``requests`` invocations in the endpoint's first hour, each taking ``latency_ms`` in the model."""
    dimensions = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}]
    at = datetime.now(timezone.utc) - timedelta(minutes=5)
    boto3.client("cloudwatch").put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Dimensions": dimensions, "Timestamp": at, "Unit": "None",
         "StatisticValues": {"SampleCount": requests, "Sum": requests, "Minimum": 1, "Maximum": 1}},
        {"MetricName": "ModelLatency", "Dimensions": dimensions, "Timestamp": at, "Unit": "Microseconds",
         "StatisticValues": {"SampleCount": requests, "Sum": requests * latency_ms * 1000,
                             "Minimum": latency_ms * 1000, "Maximum": latency_ms * 1000}}])


def _prices():
    return cost.load_prices()["regions"][REGION]


def test_a_quiet_endpoint_is_cheaper_off_its_instance(aws):
    _endpoint("quiet")
    _traffic("quiet", 12, 20)  # about 290 requests a day
    priced = cost.endpoint_cost("quiet", window_hours=24)
    assert (priced.invocations, priced.window_hours, priced.requests_per_month) == (12, 1.0, 8760)
    assert priced.mean_latency_ms == pytest.approx(20)
    hourly = _prices()["real_time"]["usd_per_hour"]["ml.m5.large"]
    assert priced.paths["real_time"].monthly_usd == round(730 * hourly, 2)
    assert priced.cheapest in ("serverless", "batch")
    assert max(priced.paths["serverless"].monthly_usd, priced.paths["batch"].monthly_usd) < 5


def test_a_busy_endpoint_stays_on_real_time(aws):
    _endpoint("busy", instance_type="ml.c5.xlarge")
    _traffic("busy", 125_000, 60)  # three million requests a day
    priced = cost.endpoint_cost("busy", window_hours=24)
    assert priced.requests_per_month == 125_000 * 730
    assert priced.cheapest == "real_time"
    assert "on 7 × ml.c5.xlarge" in priced.paths["batch"].basis  # 50 hours of compute a day: within a night


def test_a_serverless_endpoint_is_priced_from_its_own_memory(aws):
    _endpoint("bursty", serverless_mb=4096)
    _traffic("bursty", 1000, 30)
    priced = cost.endpoint_cost("bursty", window_hours=24)
    serverless = _prices()["serverless"]
    requests = 1000 * 730
    expected = requests * 0.030 * 4 * serverless["usd_per_gb_second"]["4096"] \
        + requests * cost.PAYLOAD_KB / 1024 / 1024 * serverless["usd_per_gb_processed"]
    assert priced.paths["serverless"].monthly_usd == pytest.approx(round(expected, 2))
    assert "4 GB (the endpoint's own memory)" in priced.paths["serverless"].basis
    assert priced.paths["real_time"].basis.startswith("the endpoint is serverless; as 1 instance")


def test_a_path_without_a_price_says_why(aws):
    _endpoint("inferentia", instance_type="ml.inf1.xlarge")
    _traffic("inferentia", 100, 10)
    priced = cost.endpoint_cost("inferentia", window_hours=24).to_dict()
    assert priced["paths"]["real_time"] == {
        "monthly_usd": None, "basis": f"no real-time price for ml.inf1.xlarge in {REGION} in the price table"}
    assert "batch transform does not offer ml.inf1.xlarge" in priced["paths"]["batch"]["basis"]
    assert priced["cheapest"] in ("serverless", "batch")


def test_the_cli_prints_the_documented_keys(aws, capsys):
    _endpoint("quiet")
    _traffic("quiet", 12, 20)
    assert cli.main(["endpoints", "cost", "--endpoint", "quiet", "--window-hours", "24", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == KEYS
    assert set(payload["paths"]) == {"real_time", "serverless", "batch"}
    assert all(set(path) == {"monthly_usd", "basis"} for path in payload["paths"].values())
    assert (payload["region"], payload["prices_as_of"]) == (REGION, _prices()["real_time"]["as_of"])


def test_the_cli_names_an_unknown_endpoint_in_one_sentence(aws, capsys):
    assert cli.main(["endpoints", "cost", "--endpoint", "nowhere", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "there is no endpoint nowhere" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_the_report_shows_the_paths_and_a_note_where_it_cannot_price(aws):
    _endpoint("quiet")
    table = report._cost_table("dev", "quiet")
    assert "serverless (cheapest)" in table and "0 requests in the last 1 h" in table
    assert report._cost_table("dev", "nowhere").startswith("<p class='note'>not priced: there is no endpoint nowhere")
