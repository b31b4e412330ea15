"""The drift monitor's window reading and quality scoring (``modelwerk.core.monitor``), on capture lines made by
the capture format's own writer."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from modelwerk.core import drift, monitor
from modelwerk.core.capture import capture_line

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def _line(body, content_type="text/csv", output="0", at=T0, inference_id=None, output_type="text/csv"):
    return capture_line(body, content_type, output, output_type, inference_id=inference_id, inference_time=at)


def test_every_content_type_the_container_takes_becomes_rows_in_input_order():
    body = b"".join([
        _line("1.0,a\n2.0,b"),
        _line(json.dumps({"instances": [[3.0, "c"], {"x": 4.0, "site": "d"}]}), "application/json"),
        _line('{"x": 5.0, "site": "e"}\n[6.0, "f"]', "application/jsonlines"),
    ])
    window = monitor.read_window([body], ["x", "site"])
    assert window.requests == 3 and window.rows == 6 and window.bad_lines == 0
    assert sorted(float(v) for v in window.frame["x"]) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert sorted(window.frame["site"]) == list("abcdef")


def test_bad_input_is_counted_with_a_reason_and_never_fatal():
    body = b"".join([
        _line("1.0,a"),
        b"{not json\n",
        _line("1.0,a,extra"),
        _line("{broken", "application/json"),
        _line("<x/>", "application/xml"),
    ])
    window = monitor.read_window([body, b"", b"\n\n"], ["x", "site"])
    assert (window.requests, window.rows, window.bad_lines, window.bad_rows, window.bad_requests) == (4, 1, 1, 1, 2)
    assert len(window.errors) == 4 and any("application/xml" in e for e in window.errors)


def test_the_window_keeps_only_records_inside_it():
    body = b"".join(_line(f"{i}.0,a", at=T0 + dt.timedelta(minutes=i * 20)) for i in range(6))
    start, end = monitor.window_bounds(T0 + dt.timedelta(hours=1, seconds=30), 60)
    window = monitor.read_window([body], ["x", "site"], start=start, end=end)
    assert list(window.frame["x"]) == ["0.0", "1.0", "2.0"]
    assert monitor.hour_prefixes(start, end) == ["2026/03/01/12"]
    assert monitor.hour_prefixes(start + dt.timedelta(minutes=30), end + dt.timedelta(minutes=30)) == [
        "2026/03/01/12", "2026/03/01/13"]


def _baseline(rng):
    train = pd.DataFrame({"x": rng.normal(5, 1, 20_000), "site": rng.choice(["a", "b"], 20_000),
                          "on": rng.choice([True, False], 20_000).astype(object)})
    baseline = drift.build_baseline(train, numeric=["x"], categorical=["site", "on"])
    baseline.document["inputs"] = [{"name": "site", "type": "string"}, {"name": "x", "type": "double"},
                                   {"name": "on", "type": "boolean"}]
    return baseline


@pytest.mark.parametrize("seed", range(5))
def test_same_distribution_is_quiet_and_a_shift_is_loud(seed):
    rng = np.random.default_rng(seed)
    baseline = _baseline(rng)
    assert monitor.input_columns(baseline) == ["site", "x", "on"]

    def window(shift):
        rows = [f"{rng.choice(['a', 'b'])},{rng.normal(5 + shift, 1):.4f},{rng.choice(['1', '0'])}"
                for _ in range(3000)]
        return monitor.read_window([b"".join(_line(r) for r in rows)], monitor.input_columns(baseline))

    quiet = monitor.compare_window(baseline, window(0.0))
    assert quiet["features"]["x"]["psi"] < 0.05 and quiet["features"]["on"]["psi"] < 0.05
    assert quiet["features"]["on"]["unseen"] == 0  # "1"/"0" read as the baseline's True/False
    loud = monitor.compare_window(baseline, window(1.5))
    assert loud["features"]["x"]["psi"] > 0.5 and loud["worst"]["feature"] == "x"
    assert loud["features"]["x"]["ks"] > 0.4


def _read_both_ways(baseline, body):
    """The window read by Arrow and line by line (a corrupt line appended makes the object fall back)."""
    columns, numeric = monitor.input_columns(baseline), monitor.numeric_inputs(baseline)
    fast = monitor.read_window([body], columns, numeric=numeric)
    slow = monitor.read_window([body + b"{corrupt\n"], columns, numeric=numeric)
    return fast, slow


def test_a_clean_csv_object_read_by_arrow_gives_the_line_by_line_statistics():
    rng = np.random.default_rng(11)
    baseline = _baseline(rng)
    rows = [f"{rng.choice(['a', 'b', 'c'])},{rng.normal(5.3, 1):.4f},{rng.choice(['1', '0', 'True'])}"
            for _ in range(4000)]
    rows += [",,", "a,nan,0", "b,inf,1", " ,1e3,false"]  # missing, "nan", infinity, a blank category
    body = b"".join(_line(row, inference_id=f"r{i}") for i, row in enumerate(rows))
    body += _line("a,2.0,1\nb,3.0,0")  # two rows in one request, no inference id
    fast, slow = _read_both_ways(baseline, body)
    assert fast.frame["x"].dtype == np.float64 and slow.frame["x"].dtype == object
    assert (fast.requests, fast.rows, fast.bad_lines) == (slow.requests, slow.rows, 0) == (len(rows) + 1,
                                                                                           len(rows) + 2, 0)
    assert fast.predictions == slow.predictions and len(fast.predictions) == len(rows)
    assert fast.content_types == slow.content_types == {"text/csv": len(rows) + 1}
    assert monitor.compare_window(baseline, fast) == monitor.compare_window(baseline, slow)
    assert monitor.compare_window(baseline, fast)["features"]["x"]["non_numeric"] == 1


@pytest.mark.parametrize("odd", [
    _line("7.0,a,1,extra"),  # a row of the wrong width
    _line("abc,a,1"),  # the numeric input is not a number
    _line('"a",5.0,1'),  # quoted values
    _line(json.dumps({"instances": [["a", 5.0, "1"]]}), "application/json"),  # another content type
    _line("a,5.0,1", "text/csv; charset=utf-8"),  # the same media type with a parameter
    _line("a,5.0,1", output=b"\xff\xfe", output_type="application/octet-stream"),  # a base64 output
    _line("a,5.0,1").replace(b'"eventVersion":"0"', b'"eventVersion":"9"'),  # not this format
    _line("a,5.0,1").replace(b'00Z"', b'00.250Z"'),  # a time with a fraction of a second
    _line("a,5.0,1").replace(b'"inferenceTime"', b'"inferenceId":7,"inferenceTime"'),  # an id that is a number
], ids=["wrong-width", "not-a-number", "quoted", "json", "media-type-parameter", "base64-output", "other-format",
        "fractional-time", "numeric-id"])  # the objects carry fresh event ids: names that every worker agrees on
def test_odd_objects_give_the_line_by_line_result(odd):
    baseline = _baseline(np.random.default_rng(12))
    body = b"".join(_line(f"a,{5 + i / 100:.2f},1") for i in range(50)) + odd
    fast, slow = _read_both_ways(baseline, body)
    assert monitor.compare_window(baseline, fast) == monitor.compare_window(baseline, slow)
    for name in ("requests", "bad_requests", "bad_rows", "predictions", "content_types"):
        assert getattr(fast, name) == getattr(slow, name), name
    assert fast.bad_lines == slow.bad_lines - 1


def test_objects_outside_the_window_add_nothing():
    baseline = _baseline(np.random.default_rng(13))
    inside = b"".join(_line(f"a,{5 + i / 10:.1f},1", at=T0 + dt.timedelta(minutes=i)) for i in range(10))
    outside = b"".join(_line("b,9.0,0", at=T0 - dt.timedelta(hours=2)) for _ in range(10))
    window = monitor.read_window([outside, inside], monitor.input_columns(baseline), start=T0,
                                 end=T0 + dt.timedelta(minutes=5), numeric=["x"])
    assert (window.requests, window.rows) == (5, 5) and list(window.frame["x"]) == [5.0, 5.1, 5.2, 5.3, 5.4]


def test_an_empty_window_has_no_statistics_and_no_error():
    baseline = _baseline(np.random.default_rng(1))
    report = monitor.compare_window(baseline, monitor.read_window([], monitor.input_columns(baseline)))
    assert report["rows"] == 0 and report["worst"] == {"feature": None, "psi": None}
    assert monitor.feature_summary(report)["x"] == {"psi": None, "ks": None, "js": None, "missing_rate": None}


def test_classification_quality_joins_ground_truth_on_the_inference_id():
    body = b"".join([_line("1.0,a", output="1", inference_id="r1"), _line("2.0,b", output="0", inference_id="r2"),
                     _line('{"instances": [[1, "a"], [2, "b"]]}', "application/json", '{"predictions": [1, 1]}',
                           inference_id="r3", output_type="application/json"),
                     _line("3.0,a", output="1")])  # no inference id: cannot be joined
    window = monitor.read_window([body], ["x", "site"])
    predictions = monitor.predictions_frame(window)
    labels = pd.DataFrame({"inference_id": ["r1", "r2", "r3", "r3", "unknown"], "row": [0, 0, 0, 1, 0],
                           "label": [1, 1, 1, 0, 1]})
    scored = monitor.quality(predictions, labels, "classification")
    assert scored["matched"] == 4 and scored["unmatched_labels"] == 1
    assert scored["accuracy"] == pytest.approx(0.5)
    assert scored["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_regression_quality_and_bad_ground_truth():
    predictions = pd.DataFrame({"inference_id": ["a", "b"], "row": [0, 0], "prediction": [1.0, 3.0]})
    scored = monitor.quality(predictions, pd.DataFrame({"inference_id": ["a", "b"], "label": [2.0, 3.0]}),
                             "regression")
    assert scored["rmse"] == pytest.approx(np.sqrt(0.5)) and scored["mae"] == pytest.approx(0.5)
    with pytest.raises(monitor.QualityError, match="inference_id and label"):
        monitor.quality(predictions, pd.DataFrame({"id": ["a"]}), "regression")


def _generated(use_case: str, rows: int, seed: int, drift_level: float) -> pd.DataFrame:
    from modelwerk import settings, synthetic

    return synthetic.generate(settings.load().use_case(use_case), rows=rows, seed=seed, drift=drift_level)


def test_generated_drift_is_flagged_and_another_seed_without_drift_is_not():
    """``data generate --drift 1.0`` shifts several pump-health features; ``--drift 0`` from another seed, with as
    many rows (the fleet is sized by them), stays under the drift alarm's PSI against the train split's baseline."""
    from modelwerk import settings

    contract = settings.load().use_case("pump-health").contract
    train = _generated("pump-health", 20_000, 3, 0.0).sort_values(contract.timestamp)
    numeric, categorical = drift.contract_features(contract)
    baseline = drift.build_baseline(train.iloc[: int(len(train) * 0.7)], numeric=numeric, categorical=categorical)
    for seed in (101, 5, 9):
        quiet = drift.compare(baseline, _generated("pump-health", 20_000, seed, 0.0))
        assert quiet.drifted() == [], {n: f.psi for n, f in quiet.features.items()}
    shifted = drift.compare(baseline, _generated("pump-health", 20_000, 202, 1.0))
    assert len(shifted.drifted()) >= 2


def test_the_module_examples_hold():
    import doctest

    assert doctest.testmod(monitor, raise_on_error=False).failed == 0
