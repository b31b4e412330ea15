"""Serving as a user drives it locally, on the demo's registry: deploy a registered version, predict with the CLI,
boto3 and the SageMaker SDK through the environment's profile, capture, blue/green, rollback, multi-model.

Builds on the session's demo (energy-forecast has two registered versions, prod serves one). The endpoints of this
module live in dev under the prefix ``ep-``, so the demo's endpoints in staging and prod stay as they are. The
rollback alarms of an endpoint the environment does not configure are the operator's: the module creates them as
the serving stack creates them for a configured endpoint.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError

from local_cli import ROOT, cli_json, run_cli
from modelwerk import naming

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode-reads")]

USE_CASE = "energy-forecast"
ENDPOINT = "ep-energy"
FLEET = "ep-energy-fleet"


@pytest.fixture(scope="module")
def versions(demo_ok, cli_env):
    """Two registered versions: the one prod serves (the demo promoted it), then another one."""
    serving = cli_json("endpoints", "describe", USE_CASE, "--env", "prod", env=cli_env)["version"]
    others = sorted(v["version"] for v in cli_json("models", "list", "--use-case", USE_CASE, env=cli_env)
                    if v["version"] != serving and v["approval_status"] != "Rejected")
    assert others, "the demo left one version of energy-forecast only"
    return [serving, others[0]]


@pytest.fixture(scope="module")
def schemas(versions, cli_env):
    return {v: [f["name"] for f in cli_json("models", "show", "--use-case", USE_CASE, str(v), env=cli_env)
                ["input_schema"]] for v in versions}


@pytest.fixture(scope="module")
def requests_file(cli_env, tmp_path_factory):
    """A `data generate` file as it comes: header, label and all (predict picks the model's inputs)."""
    path = tmp_path_factory.mktemp("requests") / "requests.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", "25", "--seed", "11", "--out", str(path),
             env=cli_env)
    return path


@pytest.fixture(scope="module")
def endpoint(versions, cli_env):
    deployed = cli_json("deploy", "--use-case", USE_CASE, str(versions[0]), "--endpoint", ENDPOINT, env=cli_env)
    yield deployed
    run_cli("endpoints", "delete", ENDPOINT, env=cli_env, check=False)


@pytest.fixture(scope="module")
def rollback_alarms(endpoint):
    """The endpoint's two rollback alarms in dev, as the serving stack defines them for a configured endpoint."""
    cloudwatch = boto3.client("cloudwatch")
    dimensions = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"}]
    errors, latency = naming.endpoint_alarm_name(ENDPOINT, "5xx"), naming.endpoint_alarm_name(ENDPOINT, "latency")
    cloudwatch.put_metric_alarm(AlarmName=errors, Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors",
                                Dimensions=dimensions, Statistic="Sum", Period=60, EvaluationPeriods=1,
                                DatapointsToAlarm=1, Threshold=1, TreatMissingData="notBreaching",
                                ComparisonOperator="GreaterThanOrEqualToThreshold")
    cloudwatch.put_metric_alarm(AlarmName=latency, Namespace="AWS/SageMaker", MetricName="ModelLatency",
                                Dimensions=dimensions, ExtendedStatistic="p99", Period=60, EvaluationPeriods=1,
                                DatapointsToAlarm=1, Threshold=2_000_000, TreatMissingData="notBreaching",
                                ComparisonOperator="GreaterThanThreshold")
    yield errors, latency
    cloudwatch.delete_alarms(AlarmNames=[errors, latency])


def _dev_profile() -> boto3.Session:
    return boto3.Session(profile_name="modelwerk-dev")


def _rows(requests_file, columns, rows=3) -> bytes:
    """Headerless CSV rows in the model's input order, as SageMaker's own clients send them."""
    return pd.read_csv(requests_file)[columns].head(rows).to_csv(index=False, header=False).encode()


def test_deploy_prints_the_endpoint_with_its_keys(endpoint, versions, local_mode):
    assert {"endpoint", "status", "runtime_endpoint_url"} <= set(endpoint)
    assert endpoint["endpoint"] == ENDPOINT and endpoint["status"] == "InService"
    assert endpoint["use_case"] == USE_CASE and endpoint["version"] == versions[0]
    assert endpoint["mode"] == "SingleModel"
    assert endpoint["runtime_endpoint_url"] == local_mode["runtime_endpoint_url"]


def test_predict_takes_a_generated_file_as_it_is_in_any_column_order(endpoint, requests_file, schemas, versions,
                                                                       cli_env, tmp_path):
    predicted = cli_json("predict", "--endpoint", ENDPOINT, str(requests_file), "--inference-id", "batch-7",
                         env=cli_env)["predictions"]
    assert len(predicted) == 25 and all(isinstance(v, float) and math.isfinite(v) for v in predicted)
    frame = pd.read_csv(requests_file)
    shuffled = tmp_path / "shuffled.csv"
    frame[list(reversed(frame.columns))].to_csv(shuffled, index=False)  # the label first, inputs reversed
    inputs_only = tmp_path / "inputs.csv"
    frame[schemas[versions[0]][::-1]].to_csv(inputs_only, index=False)
    for path in (shuffled, inputs_only):
        assert cli_json("predict", "--endpoint", ENDPOINT, str(path), env=cli_env)["predictions"] == predicted


def test_boto3_reaches_the_runtime_through_the_environments_profile(endpoint, requests_file, schemas, versions,
                                                                    cli_env):
    runtime = _dev_profile().client("sagemaker-runtime")  # no endpoint_url: the profile's services section has it
    assert runtime.meta.endpoint_url == endpoint["runtime_endpoint_url"]
    answer = runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=_rows(requests_file, schemas[versions[0]]),
                                     ContentType="text/csv", Accept="application/json", InferenceId="abc-1")
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["ContentType"].startswith("application/json")
    predictions = json.loads(answer["Body"].read())["predictions"]
    expected = cli_json("predict", "--endpoint", ENDPOINT, str(requests_file), env=cli_env)["predictions"][:3]
    assert predictions == pytest.approx(expected)


def test_the_sagemaker_sdk_invokes_the_endpoint(endpoint, requests_file, schemas, versions):
    from sagemaker.core.resources import Endpoint

    found = Endpoint.get(ENDPOINT, session=_dev_profile())
    assert found.endpoint_status == "InService"
    answer = found.invoke(body=_rows(requests_file, schemas[versions[0]], rows=2), content_type="text/csv",
                          accept="application/json")
    body = answer.body.read() if hasattr(answer.body, "read") else answer.body
    assert len(json.loads(body)["predictions"]) == 2


def test_prods_endpoint_of_the_same_name_is_reached_with_prods_profile(endpoint, requests_file, schemas, versions,
                                                                       cli_env):
    prod = boto3.Session(profile_name="modelwerk-prod").client("sagemaker-runtime")
    body = _rows(requests_file, schemas[versions[0]], rows=2)
    answer = prod.invoke_endpoint(EndpointName=USE_CASE, Body=body, ContentType="text/csv", Accept="application/json")
    assert len(json.loads(answer["Body"].read())["predictions"]) == 2
    with pytest.raises(ClientError) as elsewhere:  # dev's endpoint is not prod's: the runtime routes by account
        prod.invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType="text/csv")
    assert elsewhere.value.response["Error"]["Code"] == "ValidationError"
    via_cli = cli_json("predict", "--endpoint", USE_CASE, "--env", "prod", str(requests_file), env=cli_env)
    assert len(via_cli["predictions"]) == 25


def test_bad_requests_get_a_client_error_with_a_message(endpoint):
    runtime = _dev_profile().client("sagemaker-runtime")
    with pytest.raises(ClientError) as wrong_count:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"1.0,2.0\n", ContentType="text/csv")
    assert wrong_count.value.response["Error"]["Code"] == "ModelError"
    assert 400 <= wrong_count.value.response["OriginalStatusCode"] < 500
    assert wrong_count.value.response["OriginalMessage"]
    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint(EndpointName="ep-no-such-endpoint", Body=b"1\n", ContentType="text/csv")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert "ep-no-such-endpoint" in unknown.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as unsupported:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"<x/>", ContentType="application/xml")
    assert unsupported.value.response["OriginalStatusCode"] == 415


def _one_sentence(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_the_cli_says_what_was_wrong_in_one_line(endpoint, requests_file, schemas, versions, cli_env, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty" in _one_sentence(run_cli("predict", "--endpoint", ENDPOINT, str(empty), "--json", env=cli_env,
                                            check=False))
    assert "ep-nowhere" in _one_sentence(run_cli("predict", "--endpoint", "ep-nowhere", str(requests_file), "--json",
                                                 env=cli_env, check=False))
    lacking = tmp_path / "lacking.csv"
    dropped = schemas[versions[0]][0]
    pd.read_csv(requests_file).drop(columns=dropped).to_csv(lacking, index=False)
    assert dropped in _one_sentence(run_cli("predict", "--endpoint", ENDPOINT, str(lacking), "--json", env=cli_env,
                                            check=False))
    assert "ep-nowhere" in _one_sentence(run_cli("endpoints", "describe", "ep-nowhere", "--json", env=cli_env,
                                                 check=False))


def test_every_request_is_captured_in_sagemakers_format(endpoint, requests_file, schemas, versions):
    from modelwerk.core.capture import parse_line

    body = _rows(requests_file, schemas[versions[0]], rows=2)
    _dev_profile().client("sagemaker-runtime").invoke_endpoint(EndpointName=ENDPOINT, Body=body,
                                                               ContentType="text/csv", InferenceId="captured-42")
    s3 = boto3.client("s3")
    bucket = boto3.client("ssm").get_parameter(Name="/modelwerk/dev/buckets/serving")["Parameter"]["Value"]
    deadline = time.monotonic() + 20
    found = []
    while time.monotonic() < deadline and not found:
        time.sleep(1)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=f"capture/{ENDPOINT}/AllTraffic/"):
            for item in page.get("Contents", []):
                text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
                found += [(item["Key"], parse_line(line)) for line in text.splitlines() if "captured-42" in line]
    assert found, "the request was not captured"
    key, record = found[0]
    parts = key.split("/")
    assert len(parts) == 8 and parts[3].isdigit() and len(parts[3]) == 4 and key.endswith(".jsonl")  # yyyy/mm/dd/hh
    assert record.inference_id == "captured-42"
    assert record.input_data == body.decode()


def test_invocation_metrics_reach_cloudwatch(endpoint, requests_file, schemas, versions):
    runtime = _dev_profile().client("sagemaker-runtime")
    for _ in range(5):
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=_rows(requests_file, schemas[versions[0]], rows=1),
                                ContentType="text/csv")
    cloudwatch = boto3.client("cloudwatch")
    deadline = time.monotonic() + 30
    names: set[str] = set()
    while time.monotonic() < deadline and not {"Invocations", "ModelLatency", "Invocation4XXErrors"} <= names:
        time.sleep(1)
        listed = cloudwatch.list_metrics(Namespace="AWS/SageMaker",
                                         Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}])["Metrics"]
        names = {m["MetricName"] for m in listed}
    assert {"Invocations", "ModelLatency", "Invocation4XXErrors"} <= names


def test_endpoints_list_and_describe(endpoint, versions, cli_env):
    listed = cli_json("endpoints", "list", env=cli_env)["endpoints"]
    assert ENDPOINT in [e["endpoint"] for e in listed]
    described = cli_json("endpoints", "describe", ENDPOINT, env=cli_env)
    assert described["status"] == "InService" and described["use_case"] == USE_CASE
    assert described["version"] == versions[0]
    sagemaker = boto3.client("sagemaker")
    stored = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=stored["EndpointConfigName"])
    assert config["DataCaptureConfig"]["DestinationS3Uri"].endswith("/capture")
    assert stored["DataCaptureConfig"]["CaptureStatus"] == "Started"


def test_an_update_without_its_rollback_alarms_is_refused_in_one_line(endpoint, versions, cli_env):
    """Runs before ``rollback_alarms`` creates them: SageMaker refuses a deployment whose alarms do not exist."""
    refused = run_cli("deploy", "--use-case", USE_CASE, str(versions[1]), "--endpoint", ENDPOINT, "--json",
                      env=cli_env, check=False)
    assert naming.endpoint_alarm_name(ENDPOINT, "5xx") in _one_sentence(refused)
    assert cli_json("endpoints", "describe", ENDPOINT, env=cli_env)["version"] == versions[0]


def _traffic(body: bytes, stop: threading.Event, outcomes: list) -> None:
    runtime = _dev_profile().client("sagemaker-runtime")
    while not stop.is_set():
        try:
            runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType="text/csv")
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response.get("OriginalStatusCode") or error.response["Error"]["Code"])
        time.sleep(0.02)


class Traffic:
    """Requests sent to the endpoint on a thread while a deployment runs, and how each one ended."""

    def __init__(self, body: bytes):
        self.stop, self.outcomes = threading.Event(), []
        self.thread = threading.Thread(target=_traffic, args=(body, self.stop, self.outcomes), daemon=True)

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_new_version_goes_blue_green_without_dropping_a_request(endpoint, rollback_alarms, versions, schemas,
                                                                  requests_file, cli_env):
    with Traffic(_rows(requests_file, schemas[versions[1]], rows=1)) as traffic:
        updated = cli_json("deploy", "--use-case", USE_CASE, str(versions[1]), "--endpoint", ENDPOINT, env=cli_env)
    assert updated["status"] == "InService" and updated["version"] == versions[1]
    routing = updated["deployment"]["strategy"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY" and routing["CanarySize"]["Value"] == 10
    alarms = updated["deployment"]["strategy"]["AutoRollbackConfiguration"]["Alarms"]
    assert sorted(a["AlarmName"] for a in alarms) == sorted(rollback_alarms)
    assert len(traffic.outcomes) > 50 and set(traffic.outcomes) == {"ok"}


def test_a_deployment_rolls_back_when_a_rollback_alarm_fires(endpoint, rollback_alarms, versions, schemas,
                                                             requests_file, cli_env):
    """An operator forces the 5xx alarm while the new fleet bakes: traffic returns to the serving version."""
    sagemaker, cloudwatch = boto3.client("sagemaker"), boto3.client("cloudwatch")
    serving = cli_json("endpoints", "describe", ENDPOINT, env=cli_env)
    target = next(v for v in versions if v != serving["version"])
    command = [sys.executable, "-m", "modelwerk.cli", "deploy", "--use-case", USE_CASE, str(target), "--endpoint",
               ENDPOINT, "--json"]
    with Traffic(_rows(requests_file, schemas[target], rows=1)) as traffic:
        deploying = subprocess.Popen(command, cwd=ROOT, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        baking, deadline = False, time.monotonic() + 60
        while not baking and deploying.poll() is None and time.monotonic() < deadline:
            pending = sagemaker.describe_endpoint(EndpointName=ENDPOINT).get("PendingDeploymentSummary") or {}
            statuses = [s["Status"] for v in pending.get("ProductionVariants", []) for s in v.get("VariantStatus", [])]
            baking = "Baking" in statuses
            time.sleep(0.1)
        assert baking, "the new fleet never baked"
        cloudwatch.set_alarm_state(AlarmName=rollback_alarms[0], StateValue="ALARM",
                                   StateReason="on-call: forced to test the rollback")
        stdout, stderr = deploying.communicate(timeout=120)
    assert deploying.returncode == 1, stderr
    rolled = json.loads(stdout)
    assert rolled["status"] == "RolledBack" and rolled["version"] == serving["version"], rolled
    assert rollback_alarms[0] in rolled["deployment"]["reason"]
    assert "rolled back" in stderr and len(stderr.strip().splitlines()) == 1
    assert set(traffic.outcomes) == {"ok"}
    described = cli_json("endpoints", "describe", ENDPOINT, env=cli_env)
    assert described["version"] == serving["version"] and described["status"] == "InService"
    cloudwatch.set_alarm_state(AlarmName=rollback_alarms[0], StateValue="OK", StateReason="on-call: test over")


def test_a_multi_model_endpoint_serves_every_version_under_its_prefix(demo_ok, versions, schemas, requests_file,
                                                                     cli_env):
    deployed = cli_json("deploy", "--use-case", USE_CASE, *map(str, versions), "--endpoint", FLEET, "--multi-model",
                        env=cli_env)
    try:
        assert deployed["mode"] == "MultiModel" and deployed["status"] == "InService"
        assert deployed["models"] == sorted(f"{USE_CASE}/v{v}.tar.gz" for v in versions)
        for version in versions:
            predicted = cli_json("predict", "--endpoint", FLEET, str(requests_file), "--target-model",
                                 f"{USE_CASE}/v{version}.tar.gz", env=cli_env)
            assert len(predicted["predictions"]) == 25
        runtime = _dev_profile().client("sagemaker-runtime")
        body = _rows(requests_file, schemas[versions[0]], rows=1)
        with pytest.raises(ClientError) as unknown:
            runtime.invoke_endpoint(EndpointName=FLEET, Body=body, ContentType="text/csv", TargetModel="nope.tar.gz")
        assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        with pytest.raises(ClientError) as untargeted:
            runtime.invoke_endpoint(EndpointName=FLEET, Body=body, ContentType="text/csv")
        assert "TargetModel" in untargeted.value.response["Error"]["Message"]
    finally:
        deleted = cli_json("endpoints", "delete", FLEET, env=cli_env)
    assert deleted["status"] == "Deleted"
    assert FLEET not in [e["endpoint"] for e in cli_json("endpoints", "list", env=cli_env)["endpoints"]]
    assert FLEET in _one_sentence(run_cli("endpoints", "describe", FLEET, "--json", env=cli_env, check=False))
