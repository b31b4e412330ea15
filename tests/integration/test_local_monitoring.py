"""Monitoring as on-call meets it locally: traffic through a local endpoint, the drift monitor's handler on the real
capture files, its metrics judged by the local alarm evaluator, the on-call topic, and retraining started.

One embedded AWS for the module; pump-health trains one version that the endpoint serves. Traffic has as many rows
as training had: the generator sizes its fleet of pumps by the row count.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest

import modelwerk
from modelwerk import local

from local_cli import cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

USE_CASE = ENDPOINT = "pump-health"
ROWS = 20_000


@pytest.fixture(scope="module")
def endpoint(local_mode, cli_env, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", str(ROWS), "--seed", "3", "--out", str(path),
             env=cli_env)
    cli_json("data", "ingest", "--use-case", USE_CASE, str(path), env=cli_env)
    cli_json("data", "prepare", "--use-case", USE_CASE, env=cli_env)
    run = cli_json("pipeline", "run", "--use-case", USE_CASE, "--wait", env=cli_env)
    assert run["status"] == "Succeeded", run
    version = run["model_package_arn"].rsplit("/", 1)[-1]
    deployed = cli_json("deploy", "--use-case", USE_CASE, version, "--endpoint", ENDPOINT, env=cli_env)
    yield deployed
    run_cli("endpoints", "delete", ENDPOINT, env=cli_env, check=False)


@pytest.fixture(scope="module")
def on_call(endpoint):
    """An SQS queue subscribed to the on-call topic: what a pager integration would receive."""
    topic = boto3.client("ssm").get_parameter(Name="/modelwerk/dev/monitoring/topic-arn")["Parameter"]["Value"]
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="on-call-pager")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return sqs, url


def _send(cli_env, tmp_path, *, seed: int, drift: float, rows: int, requests: int) -> int:
    path = tmp_path / f"traffic-{seed}.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", str(rows), "--seed", str(seed), "--drift",
             str(drift), "--out", str(path), env=cli_env)
    lines = path.read_text().splitlines()
    header, body = lines[0], lines[1:]
    size = len(body) // requests
    for index in range(requests):
        part = tmp_path / f"part-{seed}-{index}.csv"
        part.write_text("\n".join([header, *body[index * size:(index + 1) * size]]) + "\n")
        cli_json("predict", "--endpoint", ENDPOINT, str(part), "--inference-id", f"s{seed}-{index}", env=cli_env)
    return size * requests


def _monitor_until(cli_env, rows: int) -> list[dict]:
    """The capture is flushed off the request path: monitor until every request sent is in the window. Every run's
    result, the last one (the whole window) last: an earlier run may already have seen enough to alarm."""
    deadline = time.monotonic() + 60
    results = []
    while True:
        results.append(cli_json("monitor", "run", "--endpoint", ENDPOINT, env=cli_env))
        if results[-1]["rows"] >= rows or time.monotonic() > deadline:
            return results
        time.sleep(2)


def test_quiet_traffic_raises_no_alarm_and_starts_nothing(endpoint, on_call, cli_env, tmp_path):
    sent = _send(cli_env, tmp_path, seed=101, drift=0.0, rows=ROWS, requests=4)
    runs = _monitor_until(cli_env, sent)
    result = runs[-1]
    assert all(r["retraining_execution_arn"] is None for r in runs)
    assert {"window", "rows", "bad_lines", "features", "alarms", "retraining_execution_arn"} <= set(result)
    assert result["rows"] == sent and result["bad_lines"] == 0
    assert all(set(f) == {"psi", "ks", "js", "missing_rate"} for f in result["features"].values())
    assert max(f["psi"] for f in result["features"].values() if f["psi"] is not None) < 0.2
    states = {a["name"]: a["state"] for a in result["alarms"]}
    assert states[f"{ENDPOINT}-data-drift"] == "OK" and states[f"{ENDPOINT}-needs-retraining"] == "OK"
    assert result["retraining_execution_arn"] is None


def test_drifted_traffic_alarms_pages_on_call_and_starts_retraining(endpoint, on_call, cli_env, tmp_path):
    sent = _send(cli_env, tmp_path, seed=202, drift=1.0, rows=ROWS, requests=4)
    runs = _monitor_until(cli_env, 2 * sent)  # the window holds the quiet traffic too
    result = runs[-1]
    drifted = [n for n, f in result["features"].items() if f["psi"] is not None and f["psi"] >= 0.2]
    assert drifted, result["features"]
    states = {a["name"]: a["state"] for a in result["alarms"]}
    assert states[f"{ENDPOINT}-data-drift"] == "ALARM" and states[f"{ENDPOINT}-needs-retraining"] == "ALARM"
    started = [r["retraining_execution_arn"] for r in runs if r["retraining_execution_arn"]]
    assert len(started) == 1, runs  # the run whose alarm went to ALARM started it; later runs find it in ALARM
    execution = cli_json("pipeline", "describe", "--use-case", USE_CASE, started[0], env=cli_env)
    assert execution["parameters"].get("SnapshotId", "latest") == "latest"
    sqs, url = on_call
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    alarms = [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
    assert any(a["AlarmName"] == f"{ENDPOINT}-needs-retraining" and a["NewStateValue"] == "ALARM" for a in alarms)
    report = result["report_uri"][5:].partition("/")
    stored = json.loads(boto3.client("s3").get_object(Bucket=report[0], Key=report[2])["Body"].read())
    assert stored["rows"] == result["rows"]
    shape = stored["details"][drifted[0]]["distribution"]
    assert len(shape["labels"]) == len(shape["baseline"]) == len(shape["current"]) > 1

    local.activate(local.read_state())  # the library in this process, on the module's local mode
    view = modelwerk.drift_report(ENDPOINT)  # as a notebook shows it: the table, then a plot per drifted feature
    page = view._repr_html_()
    assert view.result.drifted() and all(f">{name} (PSI " in page for name in view.result.drifted())
    assert page.count("<svg") == len(view.result.features) + len(view.result.drifted())


def test_feedback_is_scored_and_bad_files_are_refused_in_one_line(endpoint, cli_env, tmp_path):
    _send(cli_env, tmp_path, seed=303, drift=0.0, rows=60, requests=1)  # its own request: inference id s303-0
    labels = tmp_path / "labels.csv"
    labels.write_text("inference_id,row,label\n" + "".join(f"s303-0,{row},0\n" for row in range(10)))
    uploaded = cli_json("feedback", "--endpoint", ENDPOINT, str(labels), env=cli_env)
    assert uploaded["rows"] == 10 and uploaded["uri"].startswith("s3://")
    deadline = time.monotonic() + 90  # the request is in a window once its capture is flushed and its minute over
    while True:
        scored = cli_json("monitor", "quality", "--endpoint", ENDPOINT, env=cli_env)
        if scored.get("matched") == 10 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert scored["matched"] == 10 and 0.0 <= scored["accuracy"] <= 1.0 and "f1" in scored, scored
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,value\n1,2\n")
    refused = run_cli("feedback", "--endpoint", ENDPOINT, str(wrong), "--json", env=cli_env, check=False)
    assert refused.returncode == 2 and "inference_id" in refused.stderr and "Traceback" not in refused.stderr
    unknown = run_cli("monitor", "run", "--endpoint", "nowhere", "--json", env=cli_env, check=False)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
