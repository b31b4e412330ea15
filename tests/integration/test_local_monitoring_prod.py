"""Monitoring of a prod endpoint locally, as on-call meets it, on the demo's round: the version trained in dev and
promoted to prod served drifted traffic; prod's drift monitor (its Lambda, in prod's account, on prod's capture)
raised prod's alarms and notified prod's on-call topic, and the composite alarm, forwarded to dev's default event
bus (whose policy admits prod's alarm events only), started dev's training pipeline, which registered the next
version. These tests read that outcome through prod's and dev's profiles and add what the demo does not show.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest

from local_cli import cli_json
from modelwerk import naming

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

USE_CASE = ENDPOINT = "pump-health"
ENV = "prod"
DRIFT, COMPOSITE = naming.monitoring_alarm_name(ENDPOINT, "drift"), naming.monitoring_alarm_name(ENDPOINT, "composite")
ALARM_EVENT = "CloudWatch Alarm State Change"


@pytest.fixture(scope="module")
def accounts(demo_ok, local_mode):
    return local_mode["accounts"]


@pytest.fixture(scope="module")
def prod():
    return boto3.Session(profile_name="modelwerk-prod")


@pytest.fixture(scope="module")
def dev():
    return boto3.Session(profile_name="modelwerk-dev")


def _deliveries() -> list[dict]:
    from modelwerk import local

    return local.control("events/deliveries", {"detail_type": ALARM_EVENT})["Deliveries"]


def test_the_demos_drift_raised_prods_alarms_in_prods_account(accounts, prod, cli_env):
    cloudwatch = prod.client("cloudwatch")
    described = cloudwatch.describe_alarms(AlarmNames=[DRIFT, COMPOSITE], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    alarms = {a["AlarmName"]: a for a in [*described["MetricAlarms"], *described["CompositeAlarms"]]}
    assert {name: a["StateValue"] for name, a in alarms.items()} == {DRIFT: "ALARM", COMPOSITE: "ALARM"}
    assert alarms[COMPOSITE]["AlarmArn"].split(":")[4] == accounts[ENV]
    topic = prod.client("ssm").get_parameter(Name=f"/modelwerk/{ENV}/monitoring/topic-arn")["Parameter"]["Value"]
    assert topic.split(":")[4] == accounts[ENV] and topic in alarms[COMPOSITE]["AlarmActions"]
    history = cloudwatch.describe_alarm_history(AlarmName=COMPOSITE, AlarmTypes=["CompositeAlarm"])["AlarmHistoryItems"]
    notified = [h for h in history if h["HistoryItemType"] == "Action" and topic in h["HistorySummary"]]
    assert notified, history  # CloudWatch ran the alarm's action: prod's on-call topic
    published = prod.client("cloudwatch").list_metrics(Namespace=naming.MONITORING_NAMESPACE, MetricName="WorstPSI",
                                                       Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}])
    assert published["Metrics"]  # prod's function published into prod's CloudWatch
    report = cli_json("monitor", "run", "--endpoint", ENDPOINT, "--env", ENV, env=cli_env)
    assert f"-{ENV}-serving-{accounts[ENV]}-" in report["report_uri"]
    assert {a["name"]: a["state"] for a in report["alarms"]}[COMPOSITE] == "ALARM"


def test_prods_alarm_crossed_to_devs_bus_and_started_devs_pipeline(accounts, cli_env):
    deliveries = _deliveries()
    dev_bus = f":{accounts['dev']}:event-bus/default"
    forwarded = [d for d in deliveries if d["account"] == accounts[ENV] and (d["target_arn"] or "").endswith(dev_bus)
                 and d["outcome"] == "delivered"]
    assert forwarded, deliveries
    pipeline = naming.training_pipeline_name("modelwerk", "dev", USE_CASE)
    started = [d for d in deliveries if d["event_id"] in {f["event_id"] for f in forwarded}
               and d["account"] == accounts["dev"] and d["target_arn"].endswith(f":pipeline/{pipeline}")]
    assert len(started) == 1 and started[0]["outcome"] == "delivered", deliveries
    arn = started[0]["result"]["PipelineExecutionArn"]
    assert arn.split(":")[4] == accounts["dev"]
    execution = cli_json("pipeline", "describe", "--use-case", USE_CASE, arn, env=cli_env)
    assert execution["status"] == "Succeeded", execution
    retrained = execution["model_package_arn"]
    versions = {v["arn"]: v for v in cli_json("models", "list", "--use-case", USE_CASE, env=cli_env)}
    # retraining registered it in the registry; whether a person approved it since is other modules' business
    assert retrained in versions and retrained.split(":")[4] == accounts["registry"]


def test_devs_bus_admits_only_prods_alarm_events(accounts, prod):
    """The policy of dev's bus lets prod's account put CloudWatch alarm events, nothing else."""
    events = prod.client("events")
    dev_bus = f"arn:aws:events:{prod.region_name}:{accounts['dev']}:event-bus/default"
    rule = "monitoring-prod-tests-forward"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["modelwerk.tests"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "dev-bus", "Arn": dev_bus}])
    try:
        sent = events.put_events(Entries=[{"Source": "modelwerk.tests", "DetailType": ALARM_EVENT,
                                           "Detail": json.dumps({"alarmName": "not-an-alarm"})}])
        event_id = sent["Entries"][0]["EventId"]
        deadline, found = time.monotonic() + 20, []
        while not found and time.monotonic() < deadline:
            found = [d for d in _deliveries() if d["event_id"] == event_id and d["rule"] == rule]
            time.sleep(0.5)
        assert len(found) == 1 and found[0]["outcome"] == "failed", found
        assert found[0]["error"]["code"] == "AccessDeniedException"
    finally:
        events.remove_targets(Rule=rule, Ids=["dev-bus"])
        events.delete_rule(Name=rule)


def test_ground_truth_for_the_prod_endpoint_goes_to_prods_serving_bucket(accounts, prod, cli_env, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("inference_id,row,label\n" + "".join(f"quiet,{row},0\n" for row in range(5)))
    uploaded = cli_json("feedback", "--endpoint", ENDPOINT, "--env", ENV, str(labels), env=cli_env)
    bucket, _, key = uploaded["uri"].removeprefix("s3://").partition("/")
    assert f"-{ENV}-serving-{accounts[ENV]}-" in bucket and key.startswith(naming.ground_truth_prefix(ENDPOINT))
    assert prod.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == labels.read_bytes()
