"""The embedded Lambda and EventBridge through boto3 alone: a function created from a zip runs as AWS runs it
(result, unhandled error, timeout, log tail); rules deliver to Lambda functions on PutEvents and on their schedule;
a rule with a SageMaker pipeline target no longer fails PutEvents; an upload into the deployed landing bucket is
ingested by the deployed function with no call but the upload."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import urllib.request
import zipfile

import boto3
import pytest

from local_cli import cli_json

ACCOUNT = "123456789012"
TEST_REGION = "eu-central-1"
BUCKET = "function-outputs"

#: The function under test: echoes its event, fails or sleeps on request, and records what it got in S3 (through the
#: credentials and endpoint the embedded Lambda gives it).
HANDLER = '''
import json, os, time, boto3

def handler(event, context):
    print("event", json.dumps(event))
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(event["sleep"])
    key = event.get("key") if isinstance(event, dict) and event.get("key") else context.aws_request_id
    boto3.client("s3").put_object(Bucket=os.environ["OUTPUT_BUCKET"], Key=key, Body=json.dumps(event).encode())
    return {"event": event, "function": context.function_name, "greeting": os.environ["GREETING"]}
'''


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _control(endpoint_url: str, name: str, body: dict) -> dict:
    request = urllib.request.Request(f"{endpoint_url}/modelwerk-api/events/{name}", method="POST",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _object(s3, bucket: str, key: str, timeout: float = 30.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="module")
def function(embedded_aws):
    s3 = embedded_aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": TEST_REGION})
    role = embedded_aws.client("iam").create_role(RoleName="echo", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    return embedded_aws.client("lambda").create_function(
        FunctionName="echo", Runtime="python3.12", Role=role, Handler="app.handler", Timeout=2,
        Code={"ZipFile": _zip({"app.py": HANDLER})},
        Environment={"Variables": {"GREETING": "hello", "OUTPUT_BUCKET": BUCKET}})["FunctionArn"]


def test_invoke_answers_the_handlers_result_and_the_log_tail(embedded_aws, function):
    answer = embedded_aws.client("lambda").invoke(FunctionName="echo", Payload=b'{"n": 1}', LogType="Tail")
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {"event": {"n": 1}, "function": "echo", "greeting": "hello"}
    tail = base64.b64decode(answer["LogResult"]).decode()
    assert 'event {"n": 1}' in tail and "REPORT RequestId:" in tail


def test_an_exception_answers_an_unhandled_function_error(embedded_aws, function):
    answer = embedded_aws.client("lambda").invoke(FunctionName="echo", Payload=b'{"fail": true}')
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "asked to fail")
    assert "app.py" in "".join(error["stackTrace"])


def test_a_function_past_its_timeout_is_stopped_and_the_next_invocation_runs(embedded_aws, function):
    client = embedded_aws.client("lambda")
    answer = client.invoke(FunctionName="echo", Payload=b'{"sleep": 10}')
    assert answer["FunctionError"] == "Unhandled"
    assert "Task timed out after 2.00 seconds" in json.loads(answer["Payload"].read())["errorMessage"]
    assert "FunctionError" not in client.invoke(FunctionName="echo", Payload=b"{}")


def test_an_unknown_function_is_not_found(embedded_aws):
    client = embedded_aws.client("lambda")
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="Function not found"):
        client.invoke(FunctionName="missing")


def test_a_rule_with_a_lambda_target_invokes_it_on_put_events(embedded_aws, function):
    events = embedded_aws.client("events")
    events.put_rule(Name="orders", EventPattern=json.dumps({"source": ["shop"], "detail-type": ["Order"]}))
    events.put_targets(Rule="orders", Targets=[{"Id": "echo", "Arn": function, "InputTransformer": {
        "InputPathsMap": {"order": "$.detail.order"}, "InputTemplate": '{"key": "order-<order>", "order": <order>}'}}])
    answer = events.put_events(Entries=[{"Source": "shop", "DetailType": "Order", "Detail": '{"order": 42}'}])
    assert answer["FailedEntryCount"] == 0
    assert json.loads(_object(embedded_aws.client("s3"), BUCKET, "order-42")) == {"key": "order-42", "order": 42}


def test_a_scheduled_rule_fired_through_the_control_sends_the_scheduled_event(embedded_aws, function):
    events = embedded_aws.client("events")
    rule_arn = events.put_rule(Name="nightly", ScheduleExpression="cron(0 3 * * ? *)")["RuleArn"]
    events.put_targets(Rule="nightly", Targets=[{"Id": "echo", "Arn": function}])
    fired = _control(embedded_aws.endpoint_url, "fire-schedule",
                     {"account": ACCOUNT, "region": TEST_REGION, "rule": "nightly"})
    assert [d["outcome"] for d in fired["Deliveries"]] == ["delivered"]
    request_id = fired["Deliveries"][0]["result"]["RequestId"]
    assert request_id
    s3 = embedded_aws.client("s3")
    deadline = time.monotonic() + 30
    while not (keys := [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
                        if json.loads(s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()).get("id")
                        == fired["EventId"]]):
        assert time.monotonic() < deadline, "the scheduled event did not reach the function"
        time.sleep(0.3)
    event = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())
    assert (event["source"], event["detail-type"], event["resources"], event["detail"]) == (
        "aws.events", "Scheduled Event", [rule_arn], {})


def test_a_rule_with_a_sagemaker_pipeline_target_no_longer_fails_put_events(embedded_aws):
    sqs = embedded_aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="retrain-dead-letters")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = embedded_aws.client("events")
    events.put_rule(Name="retrain", EventPattern=json.dumps({"source": ["monitoring"]}))
    events.put_targets(Rule="retrain", Targets=[{
        "Id": "pipeline", "Arn": f"arn:aws:sagemaker:{TEST_REGION}:{ACCOUNT}:pipeline/not-deployed",
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/starter", "DeadLetterConfig": {"Arn": queue_arn},
        "SageMakerPipelineParameters": {"PipelineParameterList": [{"Name": "SnapshotId", "Value": "latest"}]}}])
    answer = events.put_events(Entries=[{"Source": "monitoring", "DetailType": "Drift", "Detail": "{}"}])
    assert answer["FailedEntryCount"] == 0
    (delivery,) = _control(embedded_aws.endpoint_url, "deliveries",
                           {"event_id": answer["Entries"][0]["EventId"], "wait": 30})["Deliveries"]
    assert delivery["outcome"] == "failed" and delivery["dead_letter_queue"] == queue_arn
    (message,) = sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"],
                                     WaitTimeSeconds=5)["Messages"]
    assert message["MessageAttributes"]["RULE_ARN"]["StringValue"].endswith(":rule/retrain")


@pytest.mark.slow
@pytest.mark.xdist_group("local-mode-reads")
def test_an_upload_into_the_landing_bucket_is_ingested_by_the_deployed_function(demo_ok, tmp_path):
    """boto3 alone, through dev's profile (AWS_CONFIG_FILE and AWS_PROFILE, as `modelwerk local env` exports them):
    the upload's event starts the deployed function, whose ledger entry appears in the raw bucket."""
    csv = tmp_path / "pumps-uploaded-by-boto3.csv"
    cli_json("data", "generate", "--use-case", "pump-health", "--rows", "200", "--seed", "3", "--out", str(csv),
             env=demo_ok["env"])
    session = boto3.Session()
    ssm, s3 = session.client("ssm"), session.client("s3")
    landing, raw = (ssm.get_parameter(Name=f"/modelwerk/dev/buckets/{zone}")["Parameter"]["Value"]
                    for zone in ("landing", "raw"))
    key, body = f"pump-health/{csv.name}", csv.read_bytes()
    s3.put_object(Bucket=landing, Key=key, Body=body)
    # The ledger: _ledger/<use case>/<sha16 of the landing key>-<sha16 of the content>.json
    ledger_key = (f"_ledger/pump-health/{hashlib.sha256(key.encode()).hexdigest()[:16]}-"
                  f"{hashlib.sha256(body).hexdigest()[:16]}.json")
    deadline = time.monotonic() + 240
    ledger = json.loads(_object(s3, raw, ledger_key, timeout=240))
    while ledger["status"] == "claimed" and time.monotonic() < deadline:  # the function holds it while it ingests
        time.sleep(0.5)
        ledger = json.loads(_object(s3, raw, ledger_key))
    assert ledger["status"] == "ingested" and ledger["rows_in"] == 200
    assert ledger["rows_accepted"] + ledger["rows_quarantined"] == 200
