"""Serving as a user drives it locally: deploy a registered version, predict, capture, blue/green, multi-model.

One embedded AWS for the module; the energy-forecast pipeline runs twice (two versions) before the endpoints start.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import tarfile
import threading
import time
from pathlib import Path

import boto3
import joblib
import pandas as pd
import pytest
from botocore.exceptions import ClientError

from local_cli import cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

USE_CASE = "energy-forecast"
ENDPOINT = "energy-forecast"  # configured in cdk.json: the serving stack deployed its rollback alarms


@pytest.fixture(scope="module")
def versions(local_mode, cli_env, tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    path = folder / "train.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", "6000", "--seed", "3", "--out", str(path),
             env=cli_env)
    cli_json("data", "ingest", "--use-case", USE_CASE, str(path), env=cli_env)
    cli_json("data", "prepare", "--use-case", USE_CASE, env=cli_env)
    arns = []
    for _ in range(2):
        run = cli_json("pipeline", "run", "--use-case", USE_CASE, "--wait", env=cli_env)
        assert run["status"] == "Succeeded", run
        arns.append(run["model_package_arn"])
    return [int(arn.rsplit("/", 1)[-1]) for arn in arns]


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


def _runtime(endpoint_info):
    return boto3.client("sagemaker-runtime", endpoint_url=endpoint_info["runtime_endpoint_url"])


def _headerless_rows(requests_file, schema, rows=3) -> bytes:
    frame = pd.read_csv(requests_file)[[f["name"] for f in schema]].head(rows)
    return frame.to_csv(index=False, header=False).encode()


def _schema(cli_env, version):
    return cli_json("models", "show", "--use-case", USE_CASE, str(version), env=cli_env)["input_schema"]


def test_deploy_prints_the_endpoint_with_its_keys(endpoint, versions):
    assert {"endpoint", "status", "runtime_endpoint_url"} <= set(endpoint)
    assert endpoint["endpoint"] == ENDPOINT
    assert endpoint["status"] == "InService"
    assert endpoint["runtime_endpoint_url"].startswith("http://127.0.0.1:")
    assert endpoint["version"] == versions[0]


def test_predict_takes_a_generated_file_as_it_is(endpoint, requests_file, cli_env):
    predicted = cli_json("predict", "--endpoint", ENDPOINT, str(requests_file), "--inference-id", "batch-7",
                         env=cli_env)
    assert set(predicted) == {"predictions"}
    assert len(predicted["predictions"]) == 25
    assert all(isinstance(v, float) and math.isfinite(v) for v in predicted["predictions"])


def test_an_unmodified_boto3_runtime_client_invokes_the_local_endpoint(endpoint, requests_file, cli_env, versions):
    body = _headerless_rows(requests_file, _schema(cli_env, versions[0]))
    response = _runtime(endpoint).invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType="text/csv",
                                                  Accept="application/json", InferenceId="abc-1")
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ContentType"].startswith("application/json")
    assert len(json.loads(response["Body"].read())["predictions"]) == 3


def test_bad_requests_get_a_client_error_with_a_message(endpoint):
    runtime = _runtime(endpoint)
    with pytest.raises(ClientError) as wrong_count:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"1.0,2.0\n", ContentType="text/csv")
    assert wrong_count.value.response["Error"]["Code"] == "ModelError"
    assert 400 <= wrong_count.value.response["OriginalStatusCode"] < 500
    assert wrong_count.value.response["OriginalMessage"]
    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"1\n", ContentType="text/csv")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert "no-such-endpoint" in unknown.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as unsupported:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"<x/>", ContentType="application/xml")
    assert unsupported.value.response["OriginalStatusCode"] == 415


def test_the_cli_says_what_was_wrong_in_one_line(endpoint, tmp_path, cli_env):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = run_cli("predict", "--endpoint", ENDPOINT, str(empty), "--json", env=cli_env, check=False)
    assert result.returncode == 2
    assert "empty" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("predict", "--endpoint", "nowhere", str(empty), "--json", env=cli_env, check=False)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_every_request_is_captured_in_sagemakers_format(endpoint, requests_file, cli_env, versions):
    from modelwerk.core.capture import parse_line

    body = _headerless_rows(requests_file, _schema(cli_env, versions[0]), rows=2)
    _runtime(endpoint).invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType="text/csv",
                                       InferenceId="captured-42")
    bucket = boto3.client("ssm").get_parameter(Name="/modelwerk/dev/buckets/serving")["Parameter"]["Value"]
    deadline = time.monotonic() + 20
    found = []
    while time.monotonic() < deadline and not found:
        time.sleep(1)
        for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"capture/{ENDPOINT}/AllTraffic/"):
            for item in page.get("Contents", []):
                text = boto3.client("s3").get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
                found += [(item["Key"], parse_line(line)) for line in text.splitlines() if "captured-42" in line]
    assert found, "the request was not captured"
    key, record = found[0]
    parts = key.split("/")
    assert len(parts) == 8 and parts[3].isdigit() and len(parts[3]) == 4 and key.endswith(".jsonl")  # yyyy/mm/dd/hh
    assert record.inference_id == "captured-42"
    assert record.input_data == body.decode()


def test_invocation_metrics_reach_cloudwatch(endpoint, requests_file, cli_env, versions):
    body = _headerless_rows(requests_file, _schema(cli_env, versions[0]), rows=1)
    runtime = _runtime(endpoint)
    for _ in range(5):
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType="text/csv")
    cloudwatch = boto3.client("cloudwatch")
    deadline = time.monotonic() + 30
    names = set()
    while time.monotonic() < deadline and not {"Invocations", "ModelLatency"} <= names:
        time.sleep(1)
        listed = cloudwatch.list_metrics(Namespace="AWS/SageMaker",
                                         Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}])["Metrics"]
        names = {m["MetricName"] for m in listed}
    assert {"Invocations", "ModelLatency", "Invocation4XXErrors"} <= names


def test_endpoints_list_and_describe(endpoint, cli_env, versions):
    listed = cli_json("endpoints", "list", env=cli_env)["endpoints"]
    assert ENDPOINT in [e["endpoint"] for e in listed]
    described = cli_json("endpoints", "describe", ENDPOINT, env=cli_env)
    assert described["status"] == "InService" and described["use_case"] == USE_CASE
    sagemaker = boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    config = boto3.client("sagemaker").describe_endpoint_config(EndpointConfigName=sagemaker["EndpointConfigName"])
    assert config["DataCaptureConfig"]["DestinationS3Uri"].endswith("/capture")


def _traffic(endpoint_info, body, stop, outcomes):
    runtime = _runtime(endpoint_info)
    while not stop.is_set():
        try:
            runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType="text/csv")
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response.get("OriginalStatusCode") or error.response["Error"]["Code"])
        time.sleep(0.02)


def test_a_new_version_goes_blue_green_without_dropping_a_request(endpoint, versions, requests_file, cli_env):
    body = _headerless_rows(requests_file, _schema(cli_env, versions[1]), rows=1)
    stop, outcomes = threading.Event(), []
    sender = threading.Thread(target=_traffic, args=(endpoint, body, stop, outcomes), daemon=True)
    sender.start()
    try:
        updated = cli_json("deploy", "--use-case", USE_CASE, str(versions[1]), "--endpoint", ENDPOINT, env=cli_env)
    finally:
        stop.set()
        sender.join(10)
    assert updated["status"] == "InService"
    assert updated["version"] == versions[1]
    assert updated["deployment"]["outcome"] == "Succeeded"
    assert [s["traffic_percent"] for s in updated["deployment"]["steps"]] == [10, 100]
    assert len(outcomes) > 50 and set(outcomes) == {"ok"}


def _broken_version(cli_env, working_version: int) -> int:
    """A version whose model loads but fails on every request: a server error, as a bad release would give."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from modelwerk import local, models

    local.activate(local.read_state())  # the library in this process, on the module's local mode
    registry = models.registry(USE_CASE)
    good = models.version(USE_CASE, working_version)
    bucket, _, key = good.model_data_url[5:].partition("/")
    archive = registry.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    members = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile():
                members[member.name] = tar.extractfile(member).read()
    model = joblib.load(io.BytesIO(members["model.joblib"]))
    columns = [f["name"] for f in json.loads(members["metadata.json"])["input_schema"]]
    # knows the inputs and fails on every row with an AttributeError: the model's fault (5xx), not the caller's (4xx)
    fails = FunctionTransformer(importlib.import_module).fit(pd.DataFrame(columns=columns))
    broken = Pipeline([("broken", fails), ("model", model)])
    buffer = io.BytesIO()
    joblib.dump(broken, buffer)
    members["model.joblib"] = buffer.getvalue()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    broken_key = key.replace("model.tar.gz", "broken/model.tar.gz")
    registry.s3.put_object(Bucket=bucket, Key=broken_key, Body=out.getvalue())
    package = registry.sagemaker.describe_model_package(ModelPackageName=good.arn)
    container = dict(package["InferenceSpecification"]["Containers"][0], ModelDataUrl=f"s3://{bucket}/{broken_key}")
    created = registry.sagemaker.create_model_package(
        ModelPackageGroupName=registry.group.rsplit("/", 1)[-1], ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={**package["InferenceSpecification"], "Containers": [container]},
        CustomerMetadataProperties=package.get("CustomerMetadataProperties", {}))
    return int(created["ModelPackageArn"].rsplit("/", 1)[-1])


def test_a_failing_version_rolls_back_by_itself_on_the_5xx_alarm(endpoint, versions, requests_file, cli_env):
    broken = _broken_version(cli_env, versions[1])
    body = _headerless_rows(requests_file, _schema(cli_env, versions[1]), rows=1)
    serving = cli_json("endpoints", "describe", ENDPOINT, env=cli_env)
    stop, outcomes = threading.Event(), []
    sender = threading.Thread(target=_traffic, args=(endpoint, body, stop, outcomes), daemon=True)
    sender.start()
    try:
        result = run_cli("deploy", "--use-case", USE_CASE, str(broken), "--endpoint", ENDPOINT, "--bake-seconds",
                         "20", "--json", env=cli_env, check=False)
    finally:
        stop.set()
        sender.join(10)
    assert result.returncode == 1
    rolled = json.loads(result.stdout)
    assert rolled["status"] == "RolledBack"
    assert "invocation-5xx" in rolled["deployment"]["reason"]
    assert rolled["deployment"]["from_version"] == serving["version"] and rolled["deployment"]["to_version"] == broken
    assert rolled["version"] == serving["version"], (serving, rolled, result.stderr[-3000:])  # the old version serves
    assert 500 in outcomes  # some requests met the failing fleet before the alarm
    after = _runtime(endpoint).invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType="text/csv")
    assert after["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_multi_model_endpoint_serves_every_version_under_its_prefix(versions, requests_file, cli_env):
    fleet = "energy-fleet"
    deployed = cli_json("deploy", "--use-case", USE_CASE, str(versions[0]), "--endpoint", fleet, "--multi-model",
                        env=cli_env)
    try:
        assert deployed["mode"] == "MultiModel" and deployed["status"] == "InService"
        assert deployed["models"] == [f"{USE_CASE}/v{versions[0]}.tar.gz"]
        added = cli_json("deploy", "--use-case", USE_CASE, str(versions[1]), "--endpoint", fleet, "--multi-model",
                         env=cli_env)
        assert added["models"] == sorted(f"{USE_CASE}/v{v}.tar.gz" for v in versions)
        for version in versions:
            predicted = cli_json("predict", "--endpoint", fleet, str(requests_file), "--target-model",
                                 f"{USE_CASE}/v{version}.tar.gz", env=cli_env)
            assert len(predicted["predictions"]) == 25
        runtime = boto3.client("sagemaker-runtime", endpoint_url=deployed["runtime_endpoint_url"])
        body = _headerless_rows(requests_file, _schema(cli_env, versions[0]), rows=1)
        with pytest.raises(ClientError) as unknown:
            runtime.invoke_endpoint(EndpointName=fleet, Body=body, ContentType="text/csv", TargetModel="nope.tar.gz")
        assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        with pytest.raises(ClientError) as untargeted:
            runtime.invoke_endpoint(EndpointName=fleet, Body=body, ContentType="text/csv")
        assert "TargetModel" in untargeted.value.response["Error"]["Message"]
    finally:
        deleted = cli_json("endpoints", "delete", fleet, env=cli_env)
    assert deleted["status"] == "Deleted"
    assert fleet not in [e["endpoint"] for e in cli_json("endpoints", "list", env=cli_env)["endpoints"]]


def test_local_down_stops_the_endpoint_processes(endpoint, cli_env):
    from modelwerk.local.endpoints import alive, endpoints_dir, read_record

    record = read_record(endpoints_dir(Path(cli_env["MODELWERK_STATE_DIR"]), "dev"), ENDPOINT)
    pids = [v["pid"] for v in record["variants"]]
    assert all(alive(pid) for pid in pids)
    run_cli("local", "down", env=cli_env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids)
