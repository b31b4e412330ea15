"""Properties of the drift statistics on arbitrary input: finite, in range, never an error, zero against itself."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from modelwerk.core.drift import Baseline, DriftReport, build_baseline, compare, js_distance, ks_statistic, psi

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scipy_ks(reference, current) -> float:
    """scipy's two-sample KS statistic (its p-value warns on tiny samples; only the statistic matters here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ks_2samp(reference, current).statistic)


# Numeric cells: ordinary and extreme floats, NaN, infinities, missing values, blanks and junk strings.
_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10, max_value=10),
    st.sampled_from([0.0, 1.0, -1.0]),  # ties
    st.none(),
    st.sampled_from(["", " ", "nan", "abc", "1.5", "inf"]),
)
_CATEGORY = st.one_of(st.sampled_from(["a", "b", "c", "", " ", "__other__"]), st.none(), st.text(max_size=3))


@st.composite
def frames(draw: st.DrawFn, min_rows: int = 0) -> pd.DataFrame:
    rows = draw(st.integers(min_value=min_rows, max_value=60))
    constant = draw(st.sampled_from([None, 0.0, 7.5]))
    if constant is not None and draw(st.booleans()):
        x = [constant] * rows
    else:
        x = draw(st.lists(_NUMBER, min_size=rows, max_size=rows))
    y = draw(st.lists(st.floats(allow_nan=True, allow_infinity=False), min_size=rows, max_size=rows))
    kind = draw(st.lists(_CATEGORY, min_size=rows, max_size=rows))
    return pd.DataFrame(
        {"x": pd.Series(x, dtype=object), "y": pd.Series(y, dtype=np.float64), "kind": pd.Series(kind, dtype=object)}
    )


def _baseline(frame: pd.DataFrame, bins: int = 10, sample_size: int = 100_000) -> Baseline:
    return build_baseline(frame, numeric=["x", "y"], categorical=["kind"], bins=bins, sample_size=sample_size)


def assert_well_formed(report: DriftReport) -> None:
    result = report.to_dict()
    json.dumps(result, allow_nan=False)
    for feature in result["features"].values():
        for key in ("psi", "ks", "js", "missing_rate", "unseen_rate"):
            value = feature.get(key)
            assert value is None or (isinstance(value, float) and math.isfinite(value)), (key, value)
        if feature["psi"] is not None:
            assert feature["psi"] >= 0.0
        for key in ("ks", "js", "missing_rate", "unseen_rate"):
            if feature.get(key) is not None:
                assert 0.0 <= feature[key] <= 1.0, (key, feature[key])


@PROPERTY_SETTINGS
@given(train=frames(min_rows=1), window=frames(), bins=st.integers(min_value=1, max_value=12))
def test_statistics_are_finite_and_in_range(train: pd.DataFrame, window: pd.DataFrame, bins: int) -> None:
    baseline = _baseline(train, bins=bins, sample_size=20)

    report = compare(baseline, window)

    assert report.rows == len(window)
    assert_well_formed(report)
    json.loads(baseline.to_json())


@PROPERTY_SETTINGS
@given(frame=frames(min_rows=1))
def test_data_compared_with_its_own_baseline_shows_no_drift(frame: pd.DataFrame) -> None:
    baseline = _baseline(frame)

    report = compare(baseline, frame)

    for name, feature in report.features.items():
        spec = baseline.document["features"][name]
        assert feature.missing_rate == spec["missing_rate"]
        if spec["count"]:
            assert feature.psi is not None and feature.psi <= 1e-12
            assert feature.js is not None and feature.js <= 1e-6
        if spec["kind"] == "numeric" and spec["count"]:
            assert feature.ks == 0.0
        if spec["kind"] == "categorical":  # what training put in the other bucket is all the window has unseen
            assert feature.unseen == spec["counts"][-1]
    assert report.drifted() == []


@PROPERTY_SETTINGS
@given(frame=frames(min_rows=1), window=frames())
def test_round_trip_preserves_the_comparison(frame: pd.DataFrame, window: pd.DataFrame) -> None:
    baseline = _baseline(frame, sample_size=15)

    loaded = Baseline.load(baseline.to_json(), baseline.reference_parquet())

    assert loaded.document == baseline.document
    assert compare(loaded, window).to_dict() == compare(baseline, window).to_dict()


_PROPORTIONS = st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=30)


@PROPERTY_SETTINGS
@given(data=st.data(), expected=_PROPORTIONS)
def test_psi_is_non_negative_and_finite(data: st.DataObject, expected: list[float]) -> None:
    actual = data.draw(st.lists(st.floats(min_value=0, max_value=1), min_size=len(expected), max_size=len(expected)))

    value = psi(expected, actual)

    assert math.isfinite(value) and value >= 0.0
    assert psi(expected, expected) == 0.0


@PROPERTY_SETTINGS
@given(data=st.data(), p=_PROPORTIONS.filter(lambda v: sum(v) > 0))
def test_js_distance_is_symmetric_and_in_range(data: st.DataObject, p: list[float]) -> None:
    q = data.draw(
        st.lists(st.floats(min_value=0, max_value=1), min_size=len(p), max_size=len(p)).filter(lambda v: sum(v) > 0)
    )

    value = js_distance(p, q)

    assert 0.0 <= value <= 1.0
    assert value == js_distance(q, p) or abs(value - js_distance(q, p)) <= 1e-12
    assert js_distance(p, p) <= 1e-7


_SAMPLE = st.lists(
    st.one_of(st.floats(min_value=-1e12, max_value=1e12), st.sampled_from([0.0, 1.0])),
    min_size=1,
    max_size=80,
)


@PROPERTY_SETTINGS
@given(reference=_SAMPLE, current=_SAMPLE)
def test_ks_is_in_range_and_matches_scipy(reference: list[float], current: list[float]) -> None:
    value = ks_statistic(reference, current)

    assert 0.0 <= value <= 1.0
    assert abs(value - scipy_ks(reference, current)) <= 1e-9
    assert value == ks_statistic(current, reference)
