"""Monitoring in dev as on-call meets it locally: traffic through dev's pump-health endpoint, the drift monitor (dev's
Lambda on the capture files), CloudWatch judging its alarms, the on-call topic, and retraining started in dev.

Builds on the session's demo: dev's pump-health endpoint serves the version the demo promoted to prod (the demo's
own endpoints are in staging and prod). Traffic has as many rows as the demo trained on: the generator sizes its
fleet of pumps by the row count. CloudWatch judges alarms at their period's end; the tests ask it to judge now
(``modelwerk local evaluate-alarms``).
"""

from __future__ import annotations

import datetime as dt
import json
import time

import boto3
import pytest

from local_cli import cli_json, run_cli
from modelwerk import naming

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

USE_CASE = ENDPOINT = "pump-health"
#: The demo's training rows (scripts/demo.sh ROWS); traffic of this size has the training data's distribution.
ROWS = 40_000
DRIFT, NO_DATA, COMPOSITE = (naming.monitoring_alarm_name(ENDPOINT, kind) for kind in ("drift", "no-data", "composite"))


@pytest.fixture(scope="module")
def endpoint(demo_ok, cli_env):
    version = cli_json("endpoints", "describe", ENDPOINT, "--env", "prod", env=cli_env)["version"]
    deployed = cli_json("deploy", "--use-case", USE_CASE, str(version), "--endpoint", ENDPOINT, env=cli_env)
    assert deployed["status"] == "InService"
    yield deployed
    run_cli("endpoints", "delete", ENDPOINT, env=cli_env, check=False)


@pytest.fixture(scope="module")
def on_call(endpoint):
    """An SQS queue in dev subscribed to dev's on-call topic: what a pager integration would receive."""
    topic = boto3.client("ssm").get_parameter(Name="/modelwerk/dev/monitoring/topic-arn")["Parameter"]["Value"]
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="monitoring-dev-pager")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def _pages(on_call, *, until=None, seconds: float = 0.0) -> list[dict]:
    """The alarm notifications the queue received; waits up to ``seconds`` for one that ``until`` accepts."""
    sqs, url = on_call
    pages: list[dict] = []
    deadline = time.monotonic() + seconds
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        pages += [json.loads(json.loads(m["Body"])["Message"]) for m in batch]
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        done = until is not None and any(until(p) for p in pages)
        if done or (not batch and time.monotonic() >= deadline):
            return pages


def _send(cli_env, tmp_path, *, seed: int, drift: float) -> int:
    path = tmp_path / f"traffic-{seed}.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", str(ROWS), "--seed", str(seed), "--drift",
             str(drift), "--out", str(path), env=cli_env)
    predicted = cli_json("predict", "--endpoint", ENDPOINT, str(path), "--inference-id", f"s{seed}", env=cli_env)
    return len(predicted["predictions"])


def _monitor_until(cli_env, rows: int) -> dict:
    """The capture is flushed off the request path: monitor until the window holds ``rows``."""
    deadline = time.monotonic() + 60
    while True:
        result = cli_json("monitor", "run", "--endpoint", ENDPOINT, env=cli_env)
        if result["rows"] >= rows or time.monotonic() > deadline:
            return result
        time.sleep(2)


def _evaluate(cli_env) -> dict[str, tuple[str, str]]:
    """``modelwerk local evaluate-alarms``: each alarm that changed state, (old, new)."""
    judged = cli_json("local", "evaluate-alarms", env=cli_env)
    return {t["alarmName"]: (t["oldState"], t["newState"]) for t in judged["transitions"]}


def _states() -> dict[str, str]:
    described = boto3.client("cloudwatch").describe_alarms(AlarmNames=[DRIFT, NO_DATA, COMPOSITE],
                                                           AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    return {a["AlarmName"]: a["StateValue"] for a in [*described["MetricAlarms"], *described["CompositeAlarms"]]}


def _executions(cli_env) -> set[str]:
    listed = cli_json("pipeline", "list", "--use-case", USE_CASE, env=cli_env)["executions"]
    return {e["execution_arn"] for e in listed}


def _retraining_deliveries(since: str) -> list[dict]:
    """Alarm events EventBridge delivered to dev's training pipeline since ``since``."""
    from modelwerk import local

    pipeline = naming.training_pipeline_name("modelwerk", "dev", USE_CASE)
    delivered = local.control("events/deliveries", {"since": since, "detail_type": "CloudWatch Alarm State Change"})
    return [d for d in delivered["Deliveries"] if (d.get("target_arn") or "").endswith(f":pipeline/{pipeline}")]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def test_quiet_traffic_raises_no_alarm_and_starts_nothing(endpoint, on_call, cli_env, tmp_path):
    started, before = _now(), _executions(cli_env)
    sent = _send(cli_env, tmp_path, seed=101, drift=0.0)
    result = _monitor_until(cli_env, sent)
    assert {"window", "rows", "bad_lines", "features", "alarms", "report_uri"} <= set(result)
    assert result["rows"] >= sent and result["bad_lines"] == 0
    assert all(set(f) == {"psi", "ks", "js", "missing_rate"} for f in result["features"].values())
    assert max(f["psi"] for f in result["features"].values() if f["psi"] is not None) < 0.2
    assert result["retraining_execution_arn"] is None
    changed = _evaluate(cli_env)
    assert not [name for name, (_, new) in changed.items() if name.startswith(ENDPOINT) and new == "ALARM"], changed
    states = _states()
    assert states[DRIFT] == "OK" and states[COMPOSITE] == "OK", states
    assert not [p for p in _pages(on_call, seconds=3) if p["NewStateValue"] == "ALARM"]
    assert not _retraining_deliveries(started)
    assert _executions(cli_env) == before


def test_a_window_without_requests_alarms_on_no_data_but_does_not_retrain(endpoint, on_call, cli_env):
    """The no-data alarm is on-call's business; it is not part of the "needs retraining" composite."""
    from modelwerk import monitoring

    started, before = _now(), _executions(cli_env)
    hours_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)  # before the session's traffic
    assert monitoring.run(ENDPOINT, env="dev", at=hours_ago).rows == 0
    changed = _evaluate(cli_env)
    states = _states()
    assert states[NO_DATA] == "ALARM" and states[COMPOSITE] == "OK", (states, changed)
    assert COMPOSITE not in changed
    time.sleep(2)  # EventBridge delivers asynchronously
    assert not _retraining_deliveries(started)
    assert _executions(cli_env) == before


def test_drifted_traffic_alarms_pages_on_call_and_starts_retraining_in_dev(endpoint, on_call, cli_env, tmp_path):
    started, before = _now(), _executions(cli_env)
    sent = _send(cli_env, tmp_path, seed=202, drift=1.0)
    result = _monitor_until(cli_env, 2 * sent)  # the window holds the quiet traffic too
    drifted = [n for n, f in result["features"].items() if f["psi"] is not None and f["psi"] >= 0.2]
    assert drifted, result["features"]
    assert result["retraining_execution_arn"] is None  # CloudWatch and EventBridge start it, asynchronously
    changed = _evaluate(cli_env)
    assert changed[DRIFT][1] == "ALARM" and changed[COMPOSITE][1] == "ALARM", changed
    assert _states()[COMPOSITE] == "ALARM"

    account = boto3.client("sts").get_caller_identity()["Account"]
    pages = _pages(on_call, until=lambda p: p["AlarmName"] == COMPOSITE and p["NewStateValue"] == "ALARM",
                   seconds=20)
    paged = [p for p in pages if p["AlarmName"] == COMPOSITE and p["NewStateValue"] == "ALARM"]
    assert len(paged) == 1 and paged[0]["AWSAccountId"] == account, pages

    deadline, new = time.monotonic() + 60, set()
    while not new and time.monotonic() < deadline:
        new = _executions(cli_env) - before
        time.sleep(1)
    assert len(new) == 1, new
    arn = new.pop()
    assert arn.split(":")[4] == account
    assert f":pipeline/{naming.training_pipeline_name('modelwerk', 'dev', USE_CASE)}/" in arn
    [delivery] = _retraining_deliveries(started)
    assert delivery["outcome"] == "delivered" and delivery["account"] == account
    execution = cli_json("pipeline", "describe", "--use-case", USE_CASE, arn, env=cli_env)
    assert execution["status"] in ("Executing", "Succeeded"), execution  # its outcome: the prod module, on the demo's
    assert execution["parameters"].get("SnapshotId", "latest") == "latest"

    report = result["report_uri"][5:].partition("/")
    stored = json.loads(boto3.client("s3").get_object(Bucket=report[0], Key=report[2])["Body"].read())
    assert stored["rows"] == result["rows"]
    shape = stored["details"][drifted[0]]["distribution"]
    assert len(shape["labels"]) == len(shape["baseline"]) == len(shape["current"]) > 1


def test_the_drift_report_shows_in_a_notebook(endpoint, cli_env):
    import modelwerk

    view = modelwerk.drift_report(ENDPOINT)  # as a notebook shows it: the table, then a plot per drifted feature
    page = view._repr_html_()
    assert view.result.drifted() and all(f">{name} (PSI " in page for name in view.result.drifted())
    assert page.count("<svg") == len(view.result.features) + len(view.result.drifted())


def test_feedback_is_scored_and_bad_files_are_refused_in_one_line(endpoint, cli_env, tmp_path):
    requests = tmp_path / "requests.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", "60", "--seed", "303", "--out", str(requests),
             env=cli_env)
    cli_json("predict", "--endpoint", ENDPOINT, str(requests), "--inference-id", "s303-0", env=cli_env)
    labels = tmp_path / "labels.csv"
    labels.write_text("inference_id,row,label\n" + "".join(f"s303-0,{row},0\n" for row in range(10)))
    uploaded = cli_json("feedback", "--endpoint", ENDPOINT, str(labels), env=cli_env)
    assert uploaded["rows"] == 10 and uploaded["uri"].startswith("s3://")
    deadline = time.monotonic() + 90  # the request is in a window once its capture is flushed
    while True:
        scored = cli_json("monitor", "quality", "--endpoint", ENDPOINT, env=cli_env)
        if scored.get("matched") == 10 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert scored["matched"] == 10 and 0.0 <= scored["accuracy"] <= 1.0 and "f1" in scored, scored
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,value\n1,2\n")
    refused = run_cli("feedback", "--endpoint", ENDPOINT, str(wrong), "--json", env=cli_env, check=False)
    assert refused.returncode == 2 and "inference_id" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    unknown = run_cli("monitor", "run", "--endpoint", "nowhere", "--json", env=cli_env, check=False)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
