"""The invocation metrics publisher: what the local runtime records arrives in the embedded CloudWatch as SageMaker's
own metrics (names, units, dimensions), latency samples are kept for percentiles, and failures never reach a request."""

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from modelwerk.local.endpoint_metrics import InvocationMetrics, SampleLog

DIMENSIONS = lambda endpoint: [{"Name": "EndpointName", "Value": endpoint},  # noqa: E731
                               {"Name": "VariantName", "Value": "AllTraffic"}]


@pytest.fixture(scope="module")
def cloudwatch(embedded_aws):
    return embedded_aws.client("cloudwatch")


def _statistics(cloudwatch, endpoint, metric, *statistics):
    now = datetime.now(timezone.utc)
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName=metric, Dimensions=DIMENSIONS(endpoint),
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1), Period=3600,
        Statistics=list(statistics))["Datapoints"]
    assert len(points) == 1, points
    return points[0]


def _publisher(embedded_aws, tmp_path, **kwargs):
    return InvocationMetrics(lambda: embedded_aws.client("cloudwatch"), samples_dir=tmp_path / "metrics",
                             **{"flush_seconds": 3600, **kwargs})


def test_flush_publishes_sagemakers_invocation_metrics(embedded_aws, cloudwatch, tmp_path):
    with _publisher(embedded_aws, tmp_path) as metrics:
        for status, model_us in [(200, 1000), (200, 3000), (200, 2000), (404, 500), (413, 0), (500, 9000)]:
            metrics.record("churn", "AllTraffic", status, model_us, 150)
        assert metrics.flush()

    invocations = _statistics(cloudwatch, "churn", "Invocations", "Sum", "SampleCount")
    assert (invocations["Sum"], invocations["Unit"]) == (6.0, "None")
    errors_4xx = _statistics(cloudwatch, "churn", "Invocation4XXErrors", "Sum", "Average")
    assert errors_4xx["Sum"] == 2.0 and errors_4xx["Average"] == pytest.approx(2 / 6)
    assert _statistics(cloudwatch, "churn", "Invocation5XXErrors", "Sum")["Sum"] == 1.0
    latency = _statistics(cloudwatch, "churn", "ModelLatency", "SampleCount", "Minimum", "Maximum", "Sum")
    assert latency == {**latency, "SampleCount": 6.0, "Minimum": 0.0, "Maximum": 9000.0, "Sum": 15500.0,
                       "Unit": "Microseconds"}
    overhead = _statistics(cloudwatch, "churn", "OverheadLatency", "Average")
    assert (overhead["Average"], overhead["Unit"]) == (150.0, "Microseconds")


def test_metrics_carry_exactly_the_endpoint_and_variant_dimensions(embedded_aws, cloudwatch, tmp_path):
    with _publisher(embedded_aws, tmp_path) as metrics:
        metrics.record("dims-check", "Canary", 200, 10, 1)
    listed = cloudwatch.list_metrics(Namespace="AWS/SageMaker",
                                     Dimensions=[{"Name": "EndpointName", "Value": "dims-check"}])["Metrics"]
    assert {m["MetricName"] for m in listed} == {"Invocations", "Invocation4XXErrors", "Invocation5XXErrors",
                                                 "ModelLatency", "OverheadLatency"}
    assert {tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in listed} == {
        (("EndpointName", "dims-check"), ("VariantName", "Canary"))}


def test_latency_samples_are_kept_for_percentiles(embedded_aws, tmp_path):
    with _publisher(embedded_aws, tmp_path) as metrics:
        for model_us in (700, 700, 900, 400):
            metrics.record("samples", "AllTraffic", 200, model_us, 20)
    now = time.time()
    found = SampleLog(tmp_path / "metrics").samples(
        namespace="AWS/SageMaker", metric="ModelLatency", dimensions={"EndpointName": "samples",
                                                                      "VariantName": "AllTraffic"},
        unit="Microseconds", region="eu-central-1", start=now - 600, end=now + 60)
    pairs = sorted((v, c) for _, values, counts in found for v, c in zip(values, counts))
    assert pairs == [(400, 1), (700, 2), (900, 1)]


def test_many_distinct_latencies_are_split_into_datums_cloudwatch_accepts(embedded_aws, cloudwatch, tmp_path):
    with _publisher(embedded_aws, tmp_path) as metrics:
        for model_us in range(1, 401):  # more than the 150 values one datum may hold
            metrics.record("many-values", "AllTraffic", 200, model_us, 5)
    latency = _statistics(cloudwatch, "many-values", "ModelLatency", "SampleCount", "Maximum")
    assert (latency["SampleCount"], latency["Maximum"]) == (400.0, 400.0)


def test_multi_model_cache_hits_are_published(embedded_aws, cloudwatch, tmp_path):
    with _publisher(embedded_aws, tmp_path) as metrics:
        for hit in (False, True, True, True):
            metrics.record("mme", "AllTraffic", 200, 100, 10, target_model="a.tar.gz", model_cache_hit=hit)
    assert _statistics(cloudwatch, "mme", "ModelCacheHit", "Average")["Average"] == 0.75


class _FailingOnce:
    """A CloudWatch client whose first PutMetricData fails, as when the embedded AWS restarts."""

    def __init__(self, client):
        self.client, self.calls = client, 0
        self.meta = client.meta

    def put_metric_data(self, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("connection refused")
        return self.client.put_metric_data(**kwargs)


def test_a_failed_flush_is_retried_once_without_duplicates(embedded_aws, cloudwatch, tmp_path, caplog):
    client = _FailingOnce(embedded_aws.client("cloudwatch"))
    metrics = InvocationMetrics(lambda: client, flush_seconds=3600, samples_dir=tmp_path / "metrics")
    metrics.record("retry", "AllTraffic", 200, 10, 1)
    assert metrics.flush() is False
    assert "retrying" in caplog.text
    metrics.record("retry", "AllTraffic", 200, 10, 1)
    metrics.close()
    assert _statistics(cloudwatch, "retry", "Invocations", "Sum")["Sum"] == 2.0


def test_malformed_measurements_are_reported_and_the_rest_published(embedded_aws, cloudwatch, tmp_path, caplog):
    with _publisher(embedded_aws, tmp_path) as metrics:
        metrics.record("malformed", "AllTraffic", "OK", 10, 1)  # a status that is not a number: no exception here
        metrics.record("malformed", "AllTraffic", 200, -5, 1)
        metrics.record("malformed", "AllTraffic", 200, 10, 1)
        metrics.flush()
        assert metrics.rejected == 2
    assert "2 request measurement(s) not counted" in caplog.text
    assert _statistics(cloudwatch, "malformed", "Invocations", "Sum")["Sum"] == 1.0


def test_a_request_that_never_reached_the_model_has_no_model_latency(embedded_aws, cloudwatch, tmp_path):
    with _publisher(embedded_aws, tmp_path) as metrics:
        metrics.record("unreached", "AllTraffic", 400, None, 80)
        metrics.record("unreached", "AllTraffic", 200, 1200, 80)
    assert _statistics(cloudwatch, "unreached", "ModelLatency", "SampleCount")["SampleCount"] == 1.0
    assert _statistics(cloudwatch, "unreached", "OverheadLatency", "SampleCount")["SampleCount"] == 2.0


def test_the_background_thread_flushes_on_its_own(embedded_aws, cloudwatch, tmp_path):
    metrics = _publisher(embedded_aws, tmp_path, flush_seconds=0.2)
    try:
        metrics.record("background", "AllTraffic", 200, 10, 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = cloudwatch.list_metrics(Namespace="AWS/SageMaker", MetricName="Invocations",
                                             Dimensions=[{"Name": "EndpointName", "Value": "background"}])
            if listed["Metrics"]:
                break
            time.sleep(0.1)
        assert listed["Metrics"], "nothing was published by the flushing thread"
    finally:
        metrics.close()


def test_record_costs_microseconds_at_most(embedded_aws, tmp_path):
    """The request path pays an append: measured here, reported in ns per call."""
    metrics = _publisher(embedded_aws, tmp_path)
    try:
        calls = 200_000
        started = time.perf_counter_ns()
        for _ in range(calls):
            metrics.record("cost", "AllTraffic", 200, 1234, 56)
        per_call = (time.perf_counter_ns() - started) / calls
        print(f"InvocationMetrics.record: {per_call:.0f} ns/op over {calls} calls")
        assert per_call < 5_000
    finally:
        metrics._buffer.clear()  # the measurement's records are not metrics anyone wants
        metrics.close()


def test_sample_log_skips_a_line_still_being_written(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    line = {"namespace": "AWS/SageMaker", "metric": "ModelLatency", "unit": "Microseconds",
            "dimensions": {"EndpointName": "e", "VariantName": "v"}, "timestamp": 100, "values": [5],
            "counts": [2]}
    path = folder / "samples-1-ab.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps(line)[:20])
    log = SampleLog(folder)
    query = dict(namespace="AWS/SageMaker", metric="ModelLatency", dimensions={"EndpointName": "e", "VariantName": "v"},
                 unit=None, region=None, start=0, end=200)
    assert len(log.samples(**query)) == 1
    path.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    assert len(log.samples(**query)) == 2


@pytest.mark.parametrize("factory, flush_seconds, message", [
    pytest.param("not callable", 5, "callable", id="factory"),
    pytest.param(lambda: None, 0, "positive", id="flush-seconds"),
])
def test_bad_settings_are_refused_with_a_clear_message(factory, flush_seconds, message):
    with pytest.raises((TypeError, ValueError), match=message):
        InvocationMetrics(factory, flush_seconds=flush_seconds)
