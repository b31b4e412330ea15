"""CloudWatch's evaluation rules as the embedded AWS applies them: comparison operators, M out of N, missing data,
percentiles from published latencies, metric math, composite rules, and alarms it cannot evaluate. Evaluation is
asked for through the local control with a fixed time, so each case is judged at a known moment; the assertions read
the alarm's state, whichever evaluation (the control's or the server's own at a period boundary) changed it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from modelwerk.local.endpoint_metrics import InvocationMetrics
from modelwerk.local.services.cloudwatch.rules import RuleError, parse_rule, rule_value

REGION = "eu-central-1"
ACCOUNT = "123456789012"
#: Half a minute into the current minute: period starts are whole minutes, the current one holds data or not.
NOW = datetime.now(timezone.utc).replace(second=30, microsecond=0)
CURRENT = NOW.replace(second=0)


@pytest.fixture(scope="module")
def cloudwatch(embedded_aws):
    return embedded_aws.client("cloudwatch")


@pytest.fixture(scope="module")
def evaluate(embedded_aws):
    """Evaluate alarms now through the local control."""

    def run(names: list[str], at: datetime | None = NOW) -> dict[str, dict]:
        """The transitions the evaluation caused, by alarm name."""
        body = {"account": ACCOUNT, "region": REGION, "alarm_names": names, **({"at": at.isoformat()} if at else {})}
        request = urllib.request.Request(f"{embedded_aws.endpoint_url}/modelwerk-api/cloudwatch/evaluate-alarms",
                                         data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return {t["alarmName"]: t for t in json.loads(response.read())["transitions"]}

    return run


def _state(cloudwatch, name: str) -> dict:
    return cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]


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
def test_each_comparison_operator_crosses_the_threshold_as_cloudwatch_does(cloudwatch, evaluate, operator, value,
                                                                            expected):
    name = _alarm(cloudwatch, f"operator-{operator}-{value}", operator=operator)
    _put(cloudwatch, name, {CURRENT: value})
    evaluate([name])
    described = _state(cloudwatch, name)
    assert described["StateValue"] == expected
    assert described["StateReason"].startswith("Threshold Crossed: 1 datapoint [")
    assert json.loads(described["StateReasonData"])["evaluatedDatapoints"][0]["value"] == value


@pytest.mark.parametrize("values, expected", [
    pytest.param((9, 1, 9), "ALARM", id="2-of-3-breaching"),
    pytest.param((9, 1, 1), "OK", id="1-of-3-breaching"),
])
def test_m_out_of_n_datapoints_raise_the_alarm(cloudwatch, evaluate, values, expected):
    name = _alarm(cloudwatch, f"m-of-n-{'-'.join(map(str, values))}", periods=3, datapoints=2)
    _put(cloudwatch, name, {CURRENT - timedelta(minutes=2 - i): v for i, v in enumerate(values)})
    evaluate([name])
    described = _state(cloudwatch, name)
    assert described["StateValue"] == expected
    if expected == "ALARM":
        assert "2 out of the last 3 datapoints" in described["StateReason"]
        assert "(minimum 2 datapoints for INSUFFICIENT_DATA -> ALARM transition)" in described["StateReason"]


# CloudWatch's documented table for 3 of 3 datapoints over an evaluation range of 5 (oldest first; X breaching,
# 0 not breaching, - missing). "keep" is the state before the evaluation (INSUFFICIENT_DATA here).
TABLE = {
    "0-X-X": {"missing": "OK", "ignore": "OK", "breaching": "OK", "notBreaching": "OK"},
    "0----": {"missing": "OK", "ignore": "OK", "breaching": "OK", "notBreaching": "OK"},
    "-----": {"missing": "INSUFFICIENT_DATA", "ignore": "keep", "breaching": "ALARM", "notBreaching": "OK"},
    "0XX-X": {"missing": "ALARM", "ignore": "ALARM", "breaching": "ALARM", "notBreaching": "ALARM"},
    "--X--": {"missing": "ALARM", "ignore": "keep", "breaching": "ALARM", "notBreaching": "OK"},
}


@pytest.mark.parametrize("pattern, treat", [pytest.param(p, t, id=f"{p}-{t}") for p in TABLE for t in TABLE[p]])
def test_missing_data_is_treated_as_the_alarm_says(cloudwatch, evaluate, pattern, treat):
    name = _alarm(cloudwatch, f"missing-{pattern}-{treat}", periods=3, TreatMissingData=treat)
    oldest = CURRENT - timedelta(minutes=len(pattern))  # the period in progress holds no data
    _put(cloudwatch, name, {oldest + timedelta(minutes=i): (9 if c == "X" else 1)
                            for i, c in enumerate(pattern) if c != "-"})
    evaluate([name])
    expected = TABLE[pattern][treat]
    assert _state(cloudwatch, name)["StateValue"] == ("INSUFFICIENT_DATA" if expected == "keep" else expected)


def test_missing_datapoints_treated_as_breaching_are_named_in_the_reason(cloudwatch, evaluate):
    name = _alarm(cloudwatch, "missing-reason", periods=2, TreatMissingData="breaching")
    evaluate([name])
    assert _state(cloudwatch, name)["StateReason"] == (
        "Threshold Crossed: no datapoints were received for 2 periods and 2 missing datapoints were treated as "
        "[Breaching].")


def test_a_new_alarm_is_insufficient_data_until_data_decides(cloudwatch, evaluate):
    name = _alarm(cloudwatch, "never-fed")
    described = _state(cloudwatch, name)
    assert (described["StateValue"], described["StateReason"]) == ("INSUFFICIENT_DATA",
                                                                   "Unchecked: Initial alarm creation")
    evaluate([name])
    assert _state(cloudwatch, name)["StateValue"] == "INSUFFICIENT_DATA"


def test_updating_an_alarm_keeps_its_state(cloudwatch, evaluate):
    name = _alarm(cloudwatch, "updated")
    _put(cloudwatch, name, {CURRENT: 9})
    evaluate([name])
    assert _state(cloudwatch, name)["StateValue"] == "ALARM"
    _alarm(cloudwatch, name, threshold=7)
    assert _state(cloudwatch, name)["StateValue"] == "ALARM"
    assert _state(cloudwatch, name)["Threshold"] == 7


def test_p99_of_published_latencies_decides_a_percentile_alarm(embedded_aws, cloudwatch, evaluate):
    """Latencies go through the runtime's publisher (Values/Counts); p99 and p50 come out as CloudWatch computes
    them from the raw samples."""
    endpoint = "percentiles"
    with InvocationMetrics(lambda: embedded_aws.client("cloudwatch"), flush_seconds=3600) as metrics:
        for millis in range(1, 101):
            metrics.record(endpoint, "AllTraffic", 200, millis * 1000, 100)
    common = {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency", "Dimensions": _dimensions(endpoint),
              "Period": 60, "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
              "TreatMissingData": "notBreaching"}
    cloudwatch.put_metric_alarm(AlarmName="latency-p99", ExtendedStatistic="p99", Threshold=98_000, **common)
    cloudwatch.put_metric_alarm(AlarmName="latency-p50", ExtendedStatistic="p50", Threshold=60_000, **common)
    evaluate(["latency-p99", "latency-p50"], at=None)  # the real clock: the samples carry the real time
    p99, p50 = _state(cloudwatch, "latency-p99"), _state(cloudwatch, "latency-p50")
    assert p99["StateValue"] == "ALARM" and "[99000.0 (" in p99["StateReason"]
    assert p50["StateValue"] == "OK" and "[50000.0 (" in p50["StateReason"]


def test_a_percentile_of_statistic_sets_is_missing_data_as_on_cloudwatch(cloudwatch, evaluate):
    """CloudWatch computes no percentile from a statistic set whose samples differ: that period has no data point."""
    cloudwatch.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "ModelLatency", "Dimensions": _dimensions("sets"), "Timestamp": CURRENT + timedelta(seconds=5),
        "StatisticValues": {"SampleCount": 3, "Sum": 6, "Minimum": 1, "Maximum": 3}, "Unit": "Microseconds"}])
    cloudwatch.put_metric_alarm(AlarmName="sets-p90", Namespace="AWS/SageMaker", MetricName="ModelLatency",
                                Dimensions=_dimensions("sets"), ExtendedStatistic="p90", Period=60,
                                EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                                TreatMissingData="breaching")
    evaluate(["sets-p90"])
    described = _state(cloudwatch, "sets-p90")
    assert described["StateValue"] == "ALARM"
    assert "missing datapoint was treated as [Breaching]" in described["StateReason"]


def test_metric_math_alarm_on_an_error_rate(cloudwatch, evaluate):
    _put(cloudwatch, "math", {CURRENT: 3})
    _put(cloudwatch, "math", {CURRENT: 40}, metric="Invocations")
    stat = lambda metric: {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric,  # noqa: E731
                                      "Dimensions": _dimensions("math")}, "Period": 60, "Stat": "Sum"}
    cloudwatch.put_metric_alarm(
        AlarmName="math-error-rate", EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold",
        Metrics=[{"Id": "rate", "Expression": "100 * errors / FILL(calls, 1)", "ReturnData": True},
                 {"Id": "errors", "MetricStat": stat("Invocation5XXErrors"), "ReturnData": False},
                 {"Id": "calls", "MetricStat": stat("Invocations"), "ReturnData": False}])
    evaluate(["math-error-rate"])
    described = _state(cloudwatch, "math-error-rate")
    assert described["StateValue"] == "ALARM" and "[7.5 (" in described["StateReason"]


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
def test_an_alarm_the_embedded_aws_cannot_judge_says_so_and_nothing_crashes(cloudwatch, evaluate, alarm, reason):
    name = f"unsupported-{reason.split()[0].lower()}"
    cloudwatch.put_metric_alarm(AlarmName=name, EvaluationPeriods=1, **alarm)
    evaluate([name])
    described = _state(cloudwatch, name)
    assert described["StateValue"] == "INSUFFICIENT_DATA"
    assert described["StateReason"].startswith("Unchecked:") and reason in described["StateReason"]
    assert "not supported by the embedded CloudWatch" in described["StateReason"]


def test_an_unknown_alarm_name_is_a_clear_error(evaluate):
    with pytest.raises(urllib.error.HTTPError, match="400"):
        evaluate(["no-such-alarm"])


# -- composite alarm rules ------------------------------------------------------------------------------------------
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
    assert rule_value(parse_rule(rule), states) is expected


@pytest.mark.parametrize("rule", ['ALARM("a") AND', 'ALARM("a"', '(ALARM(a)', 'SOMETIMES(a)', 'ALARM(a) ALARM(b)', ""])
def test_a_malformed_rule_is_refused(rule):
    with pytest.raises(RuleError):
        parse_rule(rule)
