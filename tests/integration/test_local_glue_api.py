"""Glue job runs in the embedded AWS, through boto3 only: StartJobRun runs the stored job's script.

Light tests run small plain-Python scripts in an empty embedded AWS; the slow one starts the deployed preparation
job of pump-health in local mode and sees it publish a new curated snapshot.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest

from local_cli import cli_json

BUCKET = "glue-scripts"
ECHO = """
import json, sys, time
import boto3

argv = sys.argv[1:]
time.sleep(1.5)
print("arguments " + json.dumps(argv))
value = lambda name: argv[argv.index(name) + 1]
boto3.client("s3").put_object(Bucket=value("--bucket"), Key=value("--key"), Body=json.dumps(argv).encode())
"""
FAILING = """
import sys
print("reading the input")
raise ValueError("the input has no rows")
"""
SLEEPING = """
import time
time.sleep(300)
"""
FINAL_STATES = ("SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "ERROR")


def _job(aws, name: str, script: str, **settings) -> str:
    s3, glue = aws.client("s3"), aws.client("glue")
    s3.put_object(Bucket=BUCKET, Key=f"{name}.py", Body=script.encode())
    glue.create_job(Name=name, Role="arn:aws:iam::123456789012:role/glue",
                    Command={"Name": "pythonshell", "ScriptLocation": f"s3://{BUCKET}/{name}.py"}, **settings)
    return name


def _wait(glue, job_name: str, run_id: str, timeout: float = 120) -> tuple[dict, list[str]]:
    """The run once it has ended, and the states seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = glue.get_job_run(JobName=job_name, RunId=run_id)["JobRun"]
        if not seen or seen[-1] != run["JobRunState"]:
            seen.append(run["JobRunState"])
        if run["JobRunState"] in FINAL_STATES:
            return run, seen
        time.sleep(0.2)
    raise AssertionError(f"job run {run_id} still {seen[-1]} after {timeout} s")


@pytest.fixture(scope="module")
def aws(embedded_aws):
    embedded_aws.client("s3").create_bucket(Bucket=BUCKET,
                                            CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    return embedded_aws


@pytest.fixture(scope="module")
def glue_events(aws):
    """An SQS queue that receives every event Glue emits, through a rule on the default bus."""
    sqs, events = aws.client("sqs"), aws.client("events")
    queue = sqs.create_queue(QueueName="glue-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="glue-events", EventPattern=json.dumps({"source": ["aws.glue"]}))
    events.put_targets(Rule="glue-events", Targets=[{"Id": "queue", "Arn": arn}])
    return sqs, queue


def _received(sqs, queue: str, run_id: str) -> dict:
    for _ in range(20):
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []):
            event = json.loads(message["Body"])
            if event["detail"]["jobRunId"] == run_id:
                return event
    raise AssertionError(f"no Glue event for {run_id}")


def test_a_run_goes_running_then_succeeded_with_its_arguments_applied(aws):
    glue = aws.client("glue")
    job = _job(aws, "echo", ECHO, DefaultArguments={"--bucket": BUCKET, "--key": "echo/default.json",
                                                    "--greeting": "hello", "--enable-metrics": "true"},
               WorkerType="G.1X", NumberOfWorkers=2, Timeout=5)
    run_id = glue.start_job_run(JobName=job, Arguments={"--key": "echo/run.json", "--greeting": "hi"})["JobRunId"]
    run, seen = _wait(glue, job, run_id)
    assert seen[-2:] == ["RUNNING", "SUCCEEDED"]
    assert run["Arguments"] == {"--key": "echo/run.json", "--greeting": "hi"}
    assert (run["WorkerType"], run["NumberOfWorkers"], run["MaxCapacity"], run["Timeout"]) == ("G.1X", 2, 2.0, 5)
    assert run["LogGroupName"] == "/aws-glue/jobs" and run["CompletedOn"] >= run["StartedOn"]
    argv = json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key="echo/run.json")["Body"].read())
    assert argv[argv.index("--greeting") + 1] == "hi" and argv[argv.index("--bucket") + 1] == BUCKET
    assert "--enable-metrics" not in argv and "--local" in argv


def test_what_the_script_prints_goes_to_the_runs_output_stream(aws):
    glue, logs = aws.client("glue"), aws.client("logs")
    job = _job(aws, "echo-logs", ECHO, DefaultArguments={"--bucket": BUCKET, "--key": "echo/logs.json"})
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    _wait(glue, job, run_id)
    events = logs.get_log_events(logGroupName="/aws-glue/jobs/output", logStreamName=run_id)["events"]
    assert any(event["message"].startswith("arguments [") for event in events)


def test_a_failing_script_ends_failed_with_its_error_and_glues_event(aws, glue_events):
    glue, logs = aws.client("glue"), aws.client("logs")
    job = _job(aws, "failing", FAILING)
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    run, _ = _wait(glue, job, run_id)
    assert run["JobRunState"] == "FAILED"
    assert run["ErrorMessage"] == "ValueError: the input has no rows"
    errors = logs.get_log_events(logGroupName="/aws-glue/jobs/error", logStreamName=run_id)["events"]
    assert any("Traceback" in event["message"] for event in errors)
    event = _received(*glue_events, run_id)
    assert (event["source"], event["detail-type"]) == ("aws.glue", "Glue Job State Change")
    assert event["detail"] == {"jobName": job, "severity": "ERROR", "state": "FAILED", "jobRunId": run_id,
                               "message": "ValueError: the input has no rows"}


def test_an_unknown_job_is_not_found(aws):
    glue = aws.client("glue")
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.start_job_run(JobName="no-such-job")


def test_a_start_beyond_max_concurrent_runs_is_refused(aws):
    glue = aws.client("glue")
    job = _job(aws, "single", SLEEPING, ExecutionProperty={"MaxConcurrentRuns": 1})
    first = glue.start_job_run(JobName=job)["JobRunId"]
    try:
        with pytest.raises(glue.exceptions.ConcurrentRunsExceededException):
            glue.start_job_run(JobName=job)
    finally:
        glue.batch_stop_job_run(JobName=job, JobRunIds=[first])
        _wait(glue, job, first)


def test_batch_stop_job_run_stops_the_process(aws):
    glue = aws.client("glue")
    job = _job(aws, "sleeping", SLEEPING)
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    deadline = time.monotonic() + 30
    while glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]["JobRunState"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    answer = glue.batch_stop_job_run(JobName=job, JobRunIds=[run_id, "jr_unknown"])
    assert answer["SuccessfulSubmissions"] == [{"JobName": job, "JobRunId": run_id}]
    assert [e["ErrorDetail"]["ErrorCode"] for e in answer["Errors"]] == ["EntityNotFoundException"]
    run, _ = _wait(glue, job, run_id, timeout=30)
    assert run["JobRunState"] == "STOPPED"
    runs = glue.get_job_runs(JobName=job)["JobRuns"]
    assert [r["Id"] for r in runs] == [run_id]


def test_a_failed_run_is_retried_as_the_next_attempt_up_to_max_retries(aws):
    glue = aws.client("glue")
    job = _job(aws, "retried", FAILING, MaxRetries=1)
    first = glue.start_job_run(JobName=job)["JobRunId"]
    _wait(glue, job, first)
    deadline = time.monotonic() + 60
    while len(runs := glue.get_job_runs(JobName=job)["JobRuns"]) < 2 or runs[0]["JobRunState"] not in FINAL_STATES:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    retry = runs[0]
    assert (retry["Attempt"], retry["PreviousRunId"], retry["JobRunState"]) == (1, first, "FAILED")
    page = glue.get_job_runs(JobName=job, MaxResults=1)
    assert [r["Id"] for r in page["JobRuns"]] == [retry["Id"]]
    assert [r["Id"] for r in glue.get_job_runs(JobName=job, NextToken=page["NextToken"])["JobRuns"]] == [first]


@pytest.mark.slow
def test_a_run_beyond_its_timeout_ends_timeout(aws):
    glue = aws.client("glue")
    job = _job(aws, "too-slow", SLEEPING, Timeout=10)
    run_id = glue.start_job_run(JobName=job, Timeout=1)["JobRunId"]
    run, _ = _wait(glue, job, run_id, timeout=120)
    assert (run["JobRunState"], run["Timeout"]) == ("TIMEOUT", 1)
    assert 60 <= run["ExecutionTime"] < 90


@pytest.mark.slow
@pytest.mark.xdist_group("local-mode-reads")
def test_the_deployed_preparation_job_publishes_a_new_snapshot(demo_ok, cli_env, tmp_path):
    """On the demo's lake, through dev's profile: new raw rows, then StartJobRun of the deployed job."""
    ssm, s3, glue = boto3.client("ssm"), boto3.client("s3"), boto3.client("glue")
    job = ssm.get_parameter(Name="/modelwerk/dev/use-cases/pump-health/preparation-job")["Parameter"]["Value"]
    curated = ssm.get_parameter(Name="/modelwerk/dev/buckets/curated")["Parameter"]["Value"]
    pointer = "_snapshots/pump-health/latest.json"

    def latest() -> str | None:
        try:
            return json.loads(s3.get_object(Bucket=curated, Key=pointer)["Body"].read())["snapshot_id"]
        except s3.exceptions.NoSuchKey:
            return None

    before = latest()
    readings = tmp_path / "pumps-glue-test.csv"
    cli_json("data", "generate", "--use-case", "pump-health", "--rows", "2000", "--seed", "5", "--out",
             str(readings), env=cli_env)
    cli_json("data", "ingest", "--use-case", "pump-health", str(readings), env=cli_env)

    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    run, _ = _wait(glue, job, run_id, timeout=600)
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    snapshot_id = latest()
    assert snapshot_id not in (None, before)
    reports = s3.list_objects_v2(Bucket=curated, Prefix="_runs/pump-health/")["Contents"]
    newest = max(reports, key=lambda item: item["Key"])["Key"]
    report = json.loads(s3.get_object(Bucket=curated, Key=newest)["Body"].read())
    assert report["snapshot_id"] == snapshot_id and report["rows_out"] > 0
