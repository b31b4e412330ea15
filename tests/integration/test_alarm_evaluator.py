"""The local alarm evaluator against the embedded AWS: CloudWatch's evaluation rules, percentiles from published
latencies, actions on transitions (SNS, the local event router), composite alarms, and alarms it cannot evaluate."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest

from modelwerk.errors import NotFoundError
from modelwerk.local import events
from modelwerk.local.alarms import AlarmEvaluator, RuleError, _rule_value, parse_rule
from modelwerk.local.assembly import StackArtifact
from modelwerk.local.deployer import deploy_stack
from modelwerk.local.endpoint_metrics import InvocationMetrics, samples_dir

REGION = "eu-central-1"
ACCOUNT = "123456789012"
#: Half a minute into the current minute: period starts are whole minutes, the current one holds data or not.
NOW = datetime.now(timezone.utc).replace(second=30, microsecond=0)
CURRENT = NOW.replace(second=0)
STATE_CHANGE = "CloudWatch Alarm State Change"


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def aws(embedded_aws, records):
    """This module's clients point at its embedded AWS; local records (and the event log) go to ``records``."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "MODELWERK_LOCAL_ROOT"):
            patch.delenv(name, raising=False)
        for name, value in {"AWS_ENDPOINT_URL": embedded_aws.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                            "MODELWERK_STATE_DIR": str(records)}.items():
            patch.setenv(name, value)
        yield boto3.Session(region_name=REGION)


@pytest.fixture(scope="module")
def cloudwatch(aws):
    return aws.client("cloudwatch")


def _dimensions(endpoint: str) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]


def _put(cloudwatch, endpoint: str, values: dict[datetime, float], metric: str = "Invocation5XXErrors") -> None:
    if not values:
        return
    cloudwatch.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": metric, "Dimensions": _dimensions(endpoint), "Timestamp": at + timedelta(seconds=10),
         "Value": value, "Unit": "None"} for at, value in values.items()])


def _alarm(cloudwatch, name: str, *, threshold: float = 5, operator: str = "GreaterThanThreshold",
           periods: int = 1, datapoints: int | None = None, **extra) -> str:
    arguments = {"AlarmName": name, "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors",
                 "Dimensions": _dimensions(name), "Statistic": "Sum", "Period": 60, "EvaluationPeriods": periods,
                 "DatapointsToAlarm": datapoints or periods, "Threshold": threshold, "ComparisonOperator": operator,
                 **extra}
    cloudwatch.put_metric_alarm(**arguments)
    return name


def _evaluator(aws, records, **kwargs) -> AlarmEvaluator:
    return AlarmEvaluator(aws, records_dir=records, **{"now": NOW, **kwargs})


@pytest.mark.parametrize("operator, value, expected", [
    pytest.param("GreaterThanThreshold", 6, "ALARM", id="gt-above"),
    pytest.param("GreaterThanThreshold", 5, "OK", id="gt-equal"),
    pytest.param("GreaterThanOrEqualToThreshold", 5, "ALARM", id="ge-equal"),
    pytest.param("GreaterThanOrEqualToThreshold", 4, "OK", id="ge-below"),
    pytest.param("LessThanThreshold", 4, "ALARM", id="lt-below"),
    pytest.param("LessThanThreshold", 5, "OK", id="lt-equal"),
    pytest.param("LessThanOrEqualToThreshold", 5, "ALARM", id="le-equal"),
    pytest.param("LessThanOrEqualToThreshold", 6, "OK", id="le-above"),
])
def test_each_comparison_operator_crosses_the_threshold_as_cloudwatch_does(aws, records, cloudwatch, operator,
                                                                            value, expected):
    name = _alarm(cloudwatch, f"operator-{operator}-{value}", operator=operator)
    _put(cloudwatch, name, {CURRENT: value})
    [transition] = _evaluator(aws, records).evaluate([name])
    assert (transition.previous_state, transition.state) == ("INSUFFICIENT_DATA", expected)
    assert transition.reason.startswith("Threshold Crossed: 1 datapoint [")
    described = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert (described["StateValue"], described["StateReason"]) == (expected, transition.reason)
    assert json.loads(described["StateReasonData"])["evaluatedDatapoints"][0]["value"] == value


@pytest.mark.parametrize("values, expected", [
    pytest.param((9, 1, 9), "ALARM", id="2-of-3-breaching"),
    pytest.param((9, 1, 1), "OK", id="1-of-3-breaching"),
])
def test_m_out_of_n_datapoints_raise_the_alarm(aws, records, cloudwatch, values, expected):
    name = _alarm(cloudwatch, f"m-of-n-{'-'.join(map(str, values))}", periods=3, datapoints=2)
    _put(cloudwatch, name, {CURRENT - timedelta(minutes=2 - i): v for i, v in enumerate(values)})
    [transition] = _evaluator(aws, records).evaluate([name])
    assert transition.state == expected
    if expected == "ALARM":
        assert "2 out of the last 3 datapoints" in transition.reason
        assert "(minimum 2 datapoints for INSUFFICIENT_DATA -> ALARM transition)" in transition.reason


# CloudWatch's documented table for 3 of 3 datapoints over an evaluation range of 5 (oldest first; X breaching,
# 0 not breaching, - missing). "keep" is the state before the evaluation (set to INSUFFICIENT_DATA here).
TABLE = {
    "0-X-X": {"missing": "OK", "ignore": "OK", "breaching": "OK", "notBreaching": "OK"},
    "0----": {"missing": "OK", "ignore": "OK", "breaching": "OK", "notBreaching": "OK"},
    "-----": {"missing": "INSUFFICIENT_DATA", "ignore": "keep", "breaching": "ALARM", "notBreaching": "OK"},
    "0XX-X": {"missing": "ALARM", "ignore": "ALARM", "breaching": "ALARM", "notBreaching": "ALARM"},
    "--X--": {"missing": "ALARM", "ignore": "keep", "breaching": "ALARM", "notBreaching": "OK"},
}


@pytest.mark.parametrize("pattern, treat", [pytest.param(p, t, id=f"{p}-{t}") for p in TABLE for t in TABLE[p]])
def test_missing_data_is_treated_as_the_alarm_says(aws, records, cloudwatch, pattern, treat):
    name = _alarm(cloudwatch, f"missing-{pattern}-{treat}", periods=3, TreatMissingData=treat)
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="INSUFFICIENT_DATA", StateReason="set by the test")
    oldest = CURRENT - timedelta(minutes=len(pattern))  # the period in progress holds no data
    _put(cloudwatch, name, {oldest + timedelta(minutes=i): (9 if c == "X" else 1)
                            for i, c in enumerate(pattern) if c != "-"})
    evaluator = _evaluator(aws, records)
    evaluator.evaluate([name])
    expected = TABLE[pattern][treat]
    assert evaluator.state(name) == ("INSUFFICIENT_DATA" if expected == "keep" else expected)


def test_missing_datapoints_treated_as_breaching_are_named_in_the_reason(aws, records, cloudwatch):
    name = _alarm(cloudwatch, "missing-reason", periods=2, TreatMissingData="breaching")
    [transition] = _evaluator(aws, records).evaluate([name])
    assert transition.reason == ("Threshold Crossed: no datapoints were received for 2 periods and 2 missing "
                                 "datapoints were treated as [Breaching].")


def test_an_alarm_without_data_is_insufficient_data_not_the_embedded_awss_initial_ok(aws, records, cloudwatch):
    name = _alarm(cloudwatch, "never-fed")
    assert cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == "OK"
    evaluator = _evaluator(aws, records)
    assert evaluator.evaluate([name]) == []
    assert evaluator.state(name) == "INSUFFICIENT_DATA"
    assert cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == "INSUFFICIENT_DATA"


def test_p99_of_published_latencies_decides_a_percentile_alarm(aws, records, cloudwatch):
    """Latencies go through the runtime's publisher; p99 and p50 come out as CloudWatch would compute them."""
    endpoint = "percentiles"
    with InvocationMetrics(lambda: aws.client("cloudwatch"), flush_seconds=3600,
                           samples_dir=samples_dir(records, ACCOUNT)) as metrics:
        for millis in range(1, 101):
            metrics.record(endpoint, "AllTraffic", 200, millis * 1000, 100)
    common = {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency", "Dimensions": _dimensions(endpoint),
              "Period": 60, "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
              "TreatMissingData": "notBreaching"}
    cloudwatch.put_metric_alarm(AlarmName="latency-p99", ExtendedStatistic="p99", Threshold=98_000, **common)
    cloudwatch.put_metric_alarm(AlarmName="latency-p50", ExtendedStatistic="p50", Threshold=60_000, **common)
    evaluator = AlarmEvaluator(aws, records_dir=records)  # the real clock: the samples carry the real time
    transitions = {t.name: t for t in evaluator.evaluate(["latency-p99", "latency-p50"])}
    assert transitions["latency-p99"].state == "ALARM"
    assert "[99000.0 (" in transitions["latency-p99"].reason
    assert transitions["latency-p50"].state == "OK"
    assert "[50000.0 (" in transitions["latency-p50"].reason


def test_a_percentile_without_local_samples_says_so_instead_of_guessing(aws, records, cloudwatch):
    _put(cloudwatch, "foreign", {CURRENT: 1200.0}, metric="ModelLatency")
    cloudwatch.put_metric_alarm(AlarmName="foreign-p90", Namespace="AWS/SageMaker", MetricName="ModelLatency",
                                Dimensions=_dimensions("foreign"), ExtendedStatistic="p90", Period=60,
                                EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    evaluator = _evaluator(aws, records)
    assert evaluator.evaluate(["foreign-p90"]) == []
    described = cloudwatch.describe_alarms(AlarmNames=["foreign-p90"])["MetricAlarms"][0]
    assert described["StateValue"] == "INSUFFICIENT_DATA"
    assert "local sample log" in described["StateReason"]


@pytest.fixture
def subscribed_queue(aws):
    """An SNS topic with an SQS queue subscribed, as an on-call subscription would be."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    suffix = str(time.monotonic_ns())
    topic = sns.create_topic(Name=f"alarms-{suffix}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"on-call-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def received() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in messages]

    return topic, received


@pytest.fixture
def state_changes():
    seen: list[dict] = []
    callback = events.subscribe(STATE_CHANGE, seen.append)
    yield seen
    events.unsubscribe(STATE_CHANGE, callback)


def test_a_transition_notifies_the_topic_and_routes_the_state_change_event(aws, records, cloudwatch,
                                                                          subscribed_queue, state_changes):
    topic, received = subscribed_queue
    name = _alarm(cloudwatch, "notify", threshold=3, AlarmActions=[topic], OKActions=[topic],
                  TreatMissingData="notBreaching", AlarmDescription="5xx errors")
    _put(cloudwatch, name, {CURRENT: 7})
    [transition] = _evaluator(aws, records).evaluate([name])
    assert f"sns:{topic}" in transition.actions_run

    [envelope] = received()
    assert envelope["Subject"] == 'ALARM: "notify" in Europe (Frankfurt)'
    message = json.loads(envelope["Message"])
    assert message == {**message, "AlarmName": name, "AlarmDescription": "5xx errors", "AWSAccountId": ACCOUNT,
                       "NewStateValue": "ALARM", "OldStateValue": "INSUFFICIENT_DATA",
                       "NewStateReason": transition.reason, "Region": "Europe (Frankfurt)",
                       "AlarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"}
    assert message["StateChangeTime"].endswith("+0000")
    assert message["Trigger"] == {**message["Trigger"], "MetricName": "Invocation5XXErrors",
                                  "Namespace": "AWS/SageMaker", "StatisticType": "Statistic", "Statistic": "SUM",
                                  "Period": 60, "EvaluationPeriods": 1, "Threshold": 3.0,
                                  "ComparisonOperator": "GreaterThanThreshold",
                                  "Dimensions": [{"value": name, "name": "EndpointName"},
                                                 {"value": "AllTraffic", "name": "VariantName"}]}

    [event] = [e for e in state_changes if e["detail"]["alarmName"] == name]
    assert event == {**event, "source": "aws.cloudwatch", "detail-type": STATE_CHANGE, "account": ACCOUNT,
                     "region": REGION, "resources": [message["AlarmArn"]]}
    assert event["detail"]["state"]["value"] == "ALARM"
    assert event["detail"]["previousState"]["value"] == "INSUFFICIENT_DATA"
    metric = event["detail"]["configuration"]["metrics"][0]["metricStat"]
    assert metric["metric"] == {"namespace": "AWS/SageMaker", "name": "Invocation5XXErrors",
                                "dimensions": {"EndpointName": name, "VariantName": "AllTraffic"}}

    assert _evaluator(aws, records).evaluate([name]) == []  # no change, no action
    assert received() == []
    [recovery] = _evaluator(aws, records, now=NOW + timedelta(minutes=10)).evaluate([name])
    assert (recovery.previous_state, recovery.state) == ("ALARM", "OK")
    [envelope] = received()
    assert json.loads(envelope["Message"])["NewStateValue"] == "OK"


def test_disabled_actions_do_not_run_but_the_event_is_still_sent(aws, records, cloudwatch, subscribed_queue,
                                                                 state_changes):
    topic, received = subscribed_queue
    name = _alarm(cloudwatch, "muted", AlarmActions=[topic], ActionsEnabled=False)
    _put(cloudwatch, name, {CURRENT: 9})
    [transition] = _evaluator(aws, records).evaluate([name])
    assert "events:CloudWatch Alarm State Change" in transition.actions_run
    assert not [action for action in transition.actions_run if action.startswith("sns:")]
    assert received() == []
    assert any(e["detail"]["alarmName"] == name for e in state_changes)


def test_metric_math_alarm_on_an_error_rate(aws, records, cloudwatch):
    _put(cloudwatch, "math", {CURRENT: 3})
    _put(cloudwatch, "math", {CURRENT: 40}, metric="Invocations")
    stat = lambda metric: {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric,  # noqa: E731
                                      "Dimensions": _dimensions("math")}, "Period": 60, "Stat": "Sum"}
    cloudwatch.put_metric_alarm(
        AlarmName="math-error-rate", EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold",
        Metrics=[{"Id": "rate", "Expression": "100 * errors / FILL(calls, 1)", "ReturnData": True},
                 {"Id": "errors", "MetricStat": stat("Invocation5XXErrors"), "ReturnData": False},
                 {"Id": "calls", "MetricStat": stat("Invocations"), "ReturnData": False}])
    [transition] = _evaluator(aws, records).evaluate(["math-error-rate"])
    assert transition.state == "ALARM"
    assert "[7.5 (" in transition.reason


@pytest.mark.parametrize("alarm, reason", [
    pytest.param({"Metrics": [
        {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": "Invocations"},
                                    "Period": 60, "Stat": "Sum"}, "ReturnData": True},
        {"Id": "ad1", "Expression": "ANOMALY_DETECTION_BAND(m1, 2)"}],
        "ThresholdMetricId": "ad1", "ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"},
        "anomaly detection", id="anomaly-detection"),
    pytest.param({"Metrics": [
        {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": "Invocations"},
                                    "Period": 60, "Stat": "Sum"}, "ReturnData": False},
        {"Id": "e1", "Expression": "RATE(m1)", "ReturnData": True}],
        "Threshold": 1, "ComparisonOperator": "GreaterThanThreshold"}, "RATE", id="unsupported-function"),
])
def test_an_alarm_the_evaluator_cannot_judge_says_so_and_nothing_crashes(aws, records, cloudwatch, alarm, reason):
    name = f"unsupported-{reason.split()[0].lower()}"
    cloudwatch.put_metric_alarm(AlarmName=name, EvaluationPeriods=1, **alarm)
    evaluator = _evaluator(aws, records)
    assert evaluator.evaluate([name]) == []
    described = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert described["StateValue"] == "INSUFFICIENT_DATA"
    assert described["StateReason"].startswith("Unchecked:") and reason in described["StateReason"]
    assert "not supported by the local alarm evaluator" in described["StateReason"]


def test_watch_returns_as_soon_as_an_alarm_fires_and_none_at_the_deadline(aws, records, cloudwatch):
    quiet, loud = _alarm(cloudwatch, "watch-quiet"), _alarm(cloudwatch, "watch-loud")
    _put(cloudwatch, quiet, {CURRENT: 1})
    evaluator = _evaluator(aws, records)
    started = time.monotonic()
    assert evaluator.watch([quiet], until=time.monotonic() + 0.6, interval=0.2) is None
    assert time.monotonic() - started >= 0.6
    _put(cloudwatch, loud, {CURRENT: 9})
    started = time.monotonic()
    assert evaluator.watch([quiet, loud], until=time.monotonic() + 30, interval=0.2) == loud
    assert time.monotonic() - started < 5


def test_an_unknown_alarm_name_is_a_clear_error(aws, records):
    with pytest.raises(NotFoundError, match="no alarm named 'no-such-alarm'"):
        _evaluator(aws, records).evaluate(["no-such-alarm"])


# -- composite alarms ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule, states, expected", [
    pytest.param('ALARM("a") AND OK("b")', {"a": "ALARM", "b": "OK"}, True, id="and"),
    pytest.param('ALARM(a) OR ALARM(b)', {"a": "OK", "b": "INSUFFICIENT_DATA"}, False, id="or-unquoted"),
    pytest.param('NOT INSUFFICIENT_DATA("a")', {"a": "OK"}, True, id="not"),
    pytest.param('ALARM(a) OR ALARM(b) AND ALARM(c)', {"a": "ALARM", "b": "OK", "c": "OK"}, True, id="and-first"),
    pytest.param('(ALARM(a) OR ALARM(b)) AND ALARM(c)', {"a": "ALARM", "b": "OK", "c": "OK"}, False,
                 id="parentheses"),
    pytest.param(f'ALARM("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:my-alarm")', {"my-alarm": "ALARM"}, True,
                 id="by-arn"),
    pytest.param("TRUE AND NOT FALSE", {}, True, id="constants"),
])
def test_composite_rules_evaluate_over_the_current_states(rule, states, expected):
    assert _rule_value(parse_rule(rule), states) is expected


@pytest.mark.parametrize("rule", ['ALARM("a") AND', 'ALARM("a"', '(ALARM(a)', 'SOMETIMES(a)', 'ALARM(a) ALARM(b)', ""])
def test_a_malformed_rule_is_refused(rule):
    with pytest.raises(RuleError):
        parse_rule(rule)


def _template() -> dict:
    child = lambda name: {"Type": "AWS::CloudWatch::Alarm", "Properties": {  # noqa: E731
        "AlarmName": name, "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors", "Statistic": "Sum",
        "Dimensions": [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}],
        "Period": 60, "EvaluationPeriods": 1, "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching"}}
    return {"Resources": {
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "composite-alarms"}},
        "Errors": child("composite-errors"),
        "Latency": child("composite-latency"),
        "Rollback": {"Type": "AWS::CloudWatch::CompositeAlarm", "Properties": {
            "AlarmName": "composite-rollback",
            "AlarmRule": {"Fn::Join": ["", ["ALARM(\"", {"Fn::GetAtt": ["Errors", "Arn"]}, "\") OR ALARM(\"",
                                            {"Fn::GetAtt": ["Latency", "Arn"]}, "\")"]]},
            "AlarmActions": [{"Ref": "Topic"}]}},
    }}


def test_a_deployed_composite_alarm_follows_its_children_and_notifies(aws, records, cloudwatch, tmp_path,
                                                                     state_changes):
    template = tmp_path / "Dev-Alarms.template.json"
    template.write_text(json.dumps(_template()))
    stack = StackArtifact(name="Dev-Alarms", template_file=template, assets_file=None, account=ACCOUNT,
                          region=REGION, dependencies=())
    deployment = deploy_stack(aws, stack)
    deployments = records / "local" / "deployments"
    deployments.mkdir(parents=True, exist_ok=True)
    (deployments / "dev.json").write_text(json.dumps({"stage": "dev", "stacks": [deployment.to_dict()]}))
    sqs, sns = aws.client("sqs"), aws.client("sns")
    queue = sqs.create_queue(QueueName="composite-on-call")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=f"arn:aws:sns:{REGION}:{ACCOUNT}:composite-alarms", Protocol="sqs", Endpoint=queue_arn)

    evaluator = _evaluator(aws, records)
    assert evaluator.state("composite-rollback") == "INSUFFICIENT_DATA"
    _put(cloudwatch, "composite-latency", {CURRENT: 2})
    transitions = {t.name: t for t in evaluator.evaluate(["composite-rollback"])}  # its children come along
    assert transitions["composite-latency"].state == "ALARM"
    assert transitions["composite-errors"].state == "OK"
    rollback = transitions["composite-rollback"]
    assert (rollback.previous_state, rollback.state) == ("INSUFFICIENT_DATA", "ALARM")
    assert rollback.reason.startswith(f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:composite-latency transitioned "
                                      "to ALARM at ")
    assert AlarmEvaluator(aws, records_dir=records, now=NOW).state("composite-rollback") == "ALARM"  # kept on disk

    [body] = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
    message = json.loads(body["Message"])
    assert message["AlarmName"] == "composite-rollback" and message["NewStateValue"] == "ALARM"
    assert message["AlarmRule"].startswith('ALARM("arn:aws:cloudwatch:')
    assert {c["Arn"].rsplit(":", 1)[1]: c["State"]["Value"] for c in message["TriggeringChildren"]} == {
        "composite-errors": "OK", "composite-latency": "ALARM"}
    [event] = [e for e in state_changes if e["detail"]["alarmName"] == "composite-rollback"]
    assert event["detail"]["configuration"]["alarmRule"] == message["AlarmRule"]

    later = NOW + timedelta(minutes=5)  # the latency data point is gone from the window: notBreaching
    transitions = {t.name: t.state for t in _evaluator(aws, records, now=later).evaluate(["composite-rollback"])}
    assert transitions["composite-latency"] == "OK" and transitions["composite-rollback"] == "OK"
    assert evaluator.states("composite-") == {"composite-errors": "OK", "composite-latency": "OK",
                                              "composite-rollback": "OK"}

    record = deployments / "dev.json"  # deployed again (local up after local down): earlier states are void
    record.write_text(record.read_text())
    os.utime(record, ns=(time.time_ns(), record.stat().st_mtime_ns + 1_000_000_000))
    assert evaluator.state("composite-rollback") == "INSUFFICIENT_DATA"
