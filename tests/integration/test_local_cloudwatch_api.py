"""CloudWatch alarms through boto3 against the embedded AWS: alarms that change state by themselves, their history,
their SNS actions, the "CloudWatch Alarm State Change" event on EventBridge, and composite alarms."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime, timezone

import pytest

REGION = "eu-central-1"
ACCOUNT = "123456789012"
STATE_CHANGE = "CloudWatch Alarm State Change"


@pytest.fixture(scope="module")
def cloudwatch(embedded_aws):
    return embedded_aws.client("cloudwatch")


@pytest.fixture(scope="module")
def evaluate(embedded_aws):
    """Evaluate alarms now through the local control instead of waiting for their period boundary."""

    def run(names: list[str]) -> list[dict]:
        body = json.dumps({"account": ACCOUNT, "region": REGION, "alarm_names": names}).encode()
        request = urllib.request.Request(f"{embedded_aws.endpoint_url}/modelwerk-api/cloudwatch/evaluate-alarms",
                                         data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["transitions"]

    return run


@pytest.fixture(scope="module")
def queue(embedded_aws):
    """An SQS queue and a way to read what arrived in it."""
    sqs = embedded_aws.client("sqs")

    def make(name: str):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

        def received() -> list[dict]:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return [json.loads(m["Body"]) for m in messages]

        return arn, received

    return make


@pytest.fixture(scope="module")
def on_call(embedded_aws, queue):
    """An SNS topic with an SQS queue subscribed, as an on-call subscription would be."""
    topic = embedded_aws.client("sns").create_topic(Name="alarms")["TopicArn"]
    arn, received = queue("on-call")
    embedded_aws.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, received


@pytest.fixture(scope="module")
def state_changes(embedded_aws, queue):
    """An EventBridge rule on CloudWatch's state change events with an SQS target."""
    events = embedded_aws.client("events")
    arn, received = queue("state-changes")
    events.put_rule(Name="alarm-state-changes",
                    EventPattern=json.dumps({"source": ["aws.cloudwatch"], "detail-type": [STATE_CHANGE]}))
    events.put_targets(Rule="alarm-state-changes", Targets=[{"Id": "queue", "Arn": arn}])
    return received


def _errors_alarm(cloudwatch, name: str, **extra) -> str:
    """More than 2 errors within a 10-second period (a high-resolution metric)."""
    cloudwatch.put_metric_alarm(AlarmName=name, Namespace="Modelwerk/Test", MetricName="Errors",
                                Dimensions=[{"Name": "Alarm", "Value": name}], Statistic="Sum", Period=10,
                                EvaluationPeriods=1, Threshold=2, ComparisonOperator="GreaterThanThreshold",
                                TreatMissingData="notBreaching", **extra)
    return name


def _errors(cloudwatch, name: str, value: float) -> None:
    cloudwatch.put_metric_data(Namespace="Modelwerk/Test", MetricData=[
        {"MetricName": "Errors", "Dimensions": [{"Name": "Alarm", "Value": name}], "Value": value,
         "StorageResolution": 1, "Timestamp": datetime.now(timezone.utc)}])


def _described(cloudwatch, name: str) -> dict:
    found = cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    return [*found["MetricAlarms"], *found["CompositeAlarms"]][0]


@pytest.mark.slow
def test_a_metric_alarm_goes_to_alarm_by_itself_and_its_history_says_so(cloudwatch):
    name = _errors_alarm(cloudwatch, "by-itself")
    assert _described(cloudwatch, name)["StateValue"] == "INSUFFICIENT_DATA"
    _errors(cloudwatch, name, 5)
    deadline = time.monotonic() + 35  # the next 10-second boundary, and the one after when the first came too soon
    while _described(cloudwatch, name)["StateValue"] != "ALARM" and time.monotonic() < deadline:
        time.sleep(0.5)
    described = _described(cloudwatch, name)
    assert described["StateValue"] == "ALARM"
    assert described["StateReason"].startswith("Threshold Crossed: 1 datapoint [5.0 (")
    assert json.loads(described["StateReasonData"])["recentDatapoints"] == [5.0]
    assert described["StateUpdatedTimestamp"] > described["AlarmConfigurationUpdatedTimestamp"]

    history = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    [item] = [i for i in history if "to ALARM" in i["HistorySummary"]]
    data = json.loads(item["HistoryData"])
    assert data["version"] == "1.0"
    assert data["newState"]["stateValue"] == "ALARM" and data["newState"]["stateReason"] == described["StateReason"]
    assert data["newState"]["stateReasonData"]["recentDatapoints"] == [5.0]
    assert data["oldState"]["stateValue"] in ("INSUFFICIENT_DATA", "OK")
    created = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="ConfigurationUpdate")
    assert [i["HistorySummary"] for i in created["AlarmHistoryItems"]] == [f'Alarm "{name}" created']


def test_a_transition_notifies_the_topic_and_puts_the_state_change_event(cloudwatch, evaluate, on_call,
                                                                        state_changes):
    topic, received = on_call
    name = _errors_alarm(cloudwatch, "notify", AlarmActions=[topic], AlarmDescription="errors")
    _errors(cloudwatch, name, 7)
    evaluate([name])
    assert _described(cloudwatch, name)["StateValue"] == "ALARM"

    [envelope] = received()
    assert envelope["Subject"] == 'ALARM: "notify" in Europe (Frankfurt)'
    message = json.loads(envelope["Message"])
    assert message == {**message, "AlarmName": name, "AlarmDescription": "errors", "AWSAccountId": ACCOUNT,
                       "NewStateValue": "ALARM", "Region": "Europe (Frankfurt)",
                       "AlarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"}
    assert message["Trigger"] == {**message["Trigger"], "MetricName": "Errors", "Namespace": "Modelwerk/Test",
                                  "Statistic": "SUM", "Period": 10, "Threshold": 2.0,
                                  "Dimensions": [{"value": name, "name": "Alarm"}]}

    [event] = [e for e in state_changes() if e["detail"]["alarmName"] == name]
    assert event == {**event, "source": "aws.cloudwatch", "detail-type": STATE_CHANGE,
                     "region": REGION, "resources": [message["AlarmArn"]]}
    assert event["detail"]["state"]["value"] == "ALARM"
    assert event["detail"]["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"] == {
        "namespace": "Modelwerk/Test", "name": "Errors", "dimensions": {"Alarm": name}}

    [action] = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="Action")["AlarmHistoryItems"]
    assert action["HistorySummary"] == f"Successfully executed action {topic}"
    assert json.loads(json.loads(action["HistoryData"])["publishedMessage"])["NewStateValue"] == "ALARM"


def test_disabled_actions_do_not_run_but_the_event_is_still_put(cloudwatch, evaluate, on_call, state_changes):
    topic, received = on_call
    name = _errors_alarm(cloudwatch, "muted", AlarmActions=[topic])
    cloudwatch.disable_alarm_actions(AlarmNames=[name])
    _errors(cloudwatch, name, 9)
    evaluate([name])
    assert _described(cloudwatch, name)["StateValue"] == "ALARM"
    assert not [m for m in received() if json.loads(m["Message"])["AlarmName"] == name]
    assert [e for e in state_changes() if e["detail"]["alarmName"] == name]


def test_a_composite_alarm_follows_its_children(cloudwatch, on_call, state_changes):
    topic, received = on_call
    errors, latency = _errors_alarm(cloudwatch, "child-errors"), _errors_alarm(cloudwatch, "child-latency")
    arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{latency}"
    cloudwatch.put_composite_alarm(AlarmName="rollback", AlarmRule=f'ALARM("{errors}") OR ALARM("{arn}")',
                                   AlarmActions=[topic], OKActions=[topic])
    assert cloudwatch.describe_alarms()["CompositeAlarms"] == []  # as on AWS: metric alarms unless asked
    [composite] = cloudwatch.describe_alarms(AlarmTypes=["CompositeAlarm"])["CompositeAlarms"]
    assert composite["AlarmName"] == "rollback" and composite["StateValue"] == "OK"
    assert {a["AlarmName"] for a in cloudwatch.describe_alarms(ChildrenOfAlarmName="rollback")["MetricAlarms"]} == {
        errors, latency}
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms(
        ParentsOfAlarmName=latency, AlarmTypes=["CompositeAlarm"])["CompositeAlarms"]] == ["rollback"]
    received()

    cloudwatch.set_alarm_state(AlarmName=latency, StateValue="ALARM", StateReason="by the test")
    composite = _described(cloudwatch, "rollback")
    assert composite["StateValue"] == "ALARM"
    assert composite["StateReason"].startswith(f"{arn} transitioned to ALARM at ")
    [message] = [json.loads(m["Message"]) for m in received() if json.loads(m["Message"])["AlarmName"] == "rollback"]
    assert message["NewStateValue"] == "ALARM" and message["AlarmRule"].startswith('ALARM("child-errors")')
    assert {c["Arn"].rsplit(":", 1)[1]: c["State"]["Value"] for c in message["TriggeringChildren"]} == {
        errors: "INSUFFICIENT_DATA", latency: "ALARM"}
    [event] = [e for e in state_changes()
               if e["detail"]["alarmName"] == "rollback" and e["detail"]["state"]["value"] == "ALARM"]
    assert event["detail"]["configuration"]["alarmRule"] == message["AlarmRule"]

    cloudwatch.set_alarm_state(AlarmName=latency, StateValue="OK", StateReason="by the test")
    assert _described(cloudwatch, "rollback")["StateValue"] == "OK"
    history = cloudwatch.describe_alarm_history(AlarmName="rollback", AlarmTypes=["CompositeAlarm"],
                                                HistoryItemType="StateUpdate", ScanBy="TimestampAscending")
    assert [i["HistorySummary"] for i in history["AlarmHistoryItems"]] == [
        "Alarm updated from INSUFFICIENT_DATA to OK", "Alarm updated from OK to ALARM",
        "Alarm updated from ALARM to OK"]


def test_delete_alarms_deletes_both_kinds_and_refuses_unknown_names(cloudwatch):
    child = _errors_alarm(cloudwatch, "doomed-child")
    cloudwatch.put_composite_alarm(AlarmName="doomed-parent", AlarmRule=f"ALARM({child})")
    with pytest.raises(cloudwatch.exceptions.ResourceNotFound):
        cloudwatch.delete_alarms(AlarmNames=[child, "no-such-alarm"])
    cloudwatch.delete_alarms(AlarmNames=["doomed-parent", child])
    found = cloudwatch.describe_alarms(AlarmNamePrefix="doomed", AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    assert found["MetricAlarms"] == [] and found["CompositeAlarms"] == []
