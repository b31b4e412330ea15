"""Drift statistics: agreement with reference implementations, baselines, comparisons and their round trips."""

from __future__ import annotations

import doctest
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from modelwerk.core import drift
from modelwerk.core.contract import Contract
from modelwerk.core.drift import (
    OTHER,
    PSI_EPSILON,
    Baseline,
    DriftError,
    build_baseline,
    compare,
    contract_features,
    js_distance,
    ks_statistic,
    psi,
)


def scipy_ks(reference, current) -> float:
    """scipy's two-sample KS statistic (its p-value warns on tiny samples; only the statistic matters here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ks_2samp(reference, current).statistic)


def reference_psi(expected: list[float], actual: list[float], epsilon: float = PSI_EPSILON) -> float:
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e = max(e, epsilon)
        a = max(a, epsilon)
        total += (a - e) * math.log(a / e)
    return total


def reference_js(p: list[float], q: list[float]) -> float:
    p = [x / sum(p) for x in p]
    q = [x / sum(q) for x in q]
    divergence = 0.0
    for x, y in zip(p, q, strict=True):
        m = (x + y) / 2
        if x > 0:
            divergence += 0.5 * x * math.log2(x / m)
        if y > 0:
            divergence += 0.5 * y * math.log2(y / m)
    return math.sqrt(max(divergence, 0.0))


def training(rows: int = 20_000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "vibration": rng.normal(5.0, 1.0, rows),
            "flow": rng.gamma(2.0, 50.0, rows),
            "site": rng.choice(["north", "south", "east"], rows, p=[0.5, 0.3, 0.2]),
            "label": rng.integers(0, 2, rows),
        }
    )


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return build_baseline(training(), numeric=["vibration", "flow"], categorical=["site"])


# ---------------------------------------------------------------------------------------------------------------------
# Statistics against references


@pytest.mark.parametrize(
    ("n_reference", "n_current", "ties"),
    [
        pytest.param(1, 1, False, id="one-each"),
        pytest.param(7, 3, False, id="tiny"),
        pytest.param(100, 1_000, False, id="small-vs-larger"),
        pytest.param(1_000, 50, False, id="larger-vs-small"),
        pytest.param(5_000, 5_000, False, id="equal-sizes"),
        pytest.param(200, 300, True, id="ties"),
        pytest.param(10_000, 777, True, id="ties-different-sizes"),
        pytest.param(1, 500, True, id="one-vs-many-ties"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_matches_scipy(n_reference: int, n_current: int, ties: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if ties:
        reference = rng.integers(0, 10, n_reference).astype(float)
        current = rng.integers(2, 12, n_current).astype(float)
    else:
        reference = rng.normal(0.0, 1.0, n_reference)
        current = rng.normal(0.3, 1.2, n_current)

    expected = scipy_ks(reference, current)

    assert ks_statistic(reference, current) == pytest.approx(expected, abs=1e-9)
    assert ks_statistic(current, reference) == pytest.approx(expected, abs=1e-9)


def test_ks_leaves_out_missing_values() -> None:
    reference = np.array([1.0, np.nan, 2.0, 3.0])
    current = np.array([2.5, 4.0, np.nan])

    assert ks_statistic(reference, current) == pytest.approx(scipy_ks([1.0, 2.0, 3.0], [2.5, 4.0]))


def test_ks_needs_values_on_both_sides() -> None:
    with pytest.raises(DriftError, match="at least one value"):
        ks_statistic([np.nan], [1.0])


@pytest.mark.parametrize("bins", [2, 5, 10, 40])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psi_and_js_match_loop_references(bins: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    expected = rng.dirichlet(np.ones(bins))
    actual = rng.dirichlet(np.ones(bins))
    actual[rng.integers(0, bins)] = 0.0  # an empty bin exercises the epsilon
    actual = actual / actual.sum()

    assert psi(expected, actual) == pytest.approx(reference_psi(list(expected), list(actual)), abs=1e-9)
    assert js_distance(expected, actual) == pytest.approx(reference_js(list(expected), list(actual)), abs=1e-9)
    assert js_distance(expected, actual) == pytest.approx(jensenshannon(expected, actual, base=2), abs=1e-9)


def test_psi_with_an_empty_bin_is_large_but_finite() -> None:
    value = psi([0.5, 0.5, 0.0], [0.45, 0.45, 0.1])

    assert math.isfinite(value)
    assert value == pytest.approx(reference_psi([0.5, 0.5, 0.0], [0.45, 0.45, 0.1]), abs=1e-12)
    assert value > 0.5


def test_psi_epsilon_is_configurable() -> None:
    assert psi([1.0, 0.0], [0.5, 0.5], epsilon=1e-6) > psi([1.0, 0.0], [0.5, 0.5], epsilon=1e-2)


def test_js_distance_is_one_for_disjoint_and_zero_for_equal() -> None:
    assert js_distance([1, 0, 0], [0, 0, 1]) == 1.0
    assert js_distance([2, 2, 4], [0.25, 0.25, 0.5]) == 0.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: psi([0.5, 0.5], [1.0]), "proportions", id="psi-lengths"),
        pytest.param(lambda: psi([0.5, -0.5], [0.5, 0.5]), ">= 0", id="psi-negative"),
        pytest.param(lambda: psi([0.5, 0.5], [0.5, np.nan]), "finite", id="psi-nan"),
        pytest.param(lambda: psi([0.5, 0.5], [0.5, 0.5], epsilon=0), "epsilon", id="psi-epsilon"),
        pytest.param(lambda: js_distance([0, 0], [1, 1]), "positive total", id="js-zero"),
        pytest.param(lambda: js_distance([], []), "non-empty", id="js-empty"),
    ],
)
def test_helpers_reject_bad_input(call, message: str) -> None:
    with pytest.raises(DriftError, match=message):
        call()


# ---------------------------------------------------------------------------------------------------------------------
# Baseline document and reference


def test_baseline_document_describes_numeric_features(baseline: Baseline) -> None:
    spec = baseline.document["features"]["vibration"]

    assert baseline.document["format"] == drift.BASELINE_FORMAT
    assert baseline.document["rows"] == 20_000
    assert spec["kind"] == "numeric"
    assert len(spec["edges"]) == 9 and spec["edges"] == sorted(set(spec["edges"]))
    assert len(spec["counts"]) == 10 and sum(spec["counts"]) == 20_000
    assert sum(spec["proportions"]) == pytest.approx(1.0)
    assert list(spec["quantiles"]) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    assert spec["quantiles"]["p50"] == pytest.approx(5.0, abs=0.05)
    assert spec["mean"] == pytest.approx(5.0, abs=0.05) and spec["std"] == pytest.approx(1.0, abs=0.05)
    assert spec["missing_rate"] == 0.0


def test_bin_edges_are_training_quantiles_with_infinite_outer_edges(baseline: Baseline) -> None:
    edges = baseline.bin_edges("flow")
    values = np.sort(training()["flow"].to_numpy())

    assert edges[0] == -np.inf and edges[-1] == np.inf
    assert np.all(np.diff(edges) > 0)
    assert set(edges[1:-1]) <= set(values)  # inner edges are values of the data
    assert edges[5] == pytest.approx(np.median(values), rel=1e-3)


def test_constant_and_tied_features_get_fewer_bins() -> None:
    frame = pd.DataFrame({"constant": np.full(100, 3.0), "zeros": np.r_[np.zeros(80), np.arange(1.0, 21.0)]})

    result = build_baseline(frame, numeric=["constant", "zeros"], categorical=[])

    assert result.document["features"]["constant"]["edges"] == [3.0]
    assert result.document["features"]["constant"]["counts"] == [100, 0]
    assert result.document["features"]["zeros"]["edges"][0] == 0.0
    assert result.document["features"]["zeros"]["counts"][0] == 80


def test_contract_features_are_the_model_inputs_by_type() -> None:
    root = Path(__file__).resolve().parents[2]
    contract = Contract.load(root / "sagemaker_pipelines" / "pump_health" / "contract.json")

    numeric, categorical = contract_features(contract)

    assert numeric == ["vibration_rms", "bearing_temp_c", "flow_m3h", "pressure_bar", "speed_rpm", "power_kw"]
    assert categorical == ["site"]


def test_categorical_frequencies_cap_the_rest_as_other() -> None:
    values = ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 6 + ["e"] * 4 + [None] * 10
    frame = pd.DataFrame({"kind": values})

    spec = build_baseline(frame, numeric=[], categorical=["kind"], max_categories=2).document["features"]["kind"]

    assert spec["categories"] == ["a", "b", OTHER]
    assert spec["counts"] == [50, 30, 20]
    assert spec["proportions"] == [0.5, 0.3, 0.2]
    assert spec["distinct"] == 5
    assert spec["missing_rate"] == pytest.approx(10 / 110)


def test_categorical_ties_are_ordered_by_name() -> None:
    frame = pd.DataFrame({"kind": ["b", "a", "c", "a", "b", "c"]})

    spec = build_baseline(frame, numeric=[], categorical=["kind"]).document["features"]["kind"]

    assert spec["categories"] == ["a", "b", "c", OTHER]


def test_reference_is_a_seeded_sample_of_at_most_sample_size_rows() -> None:
    frame = training(5_000)

    first = build_baseline(frame, numeric=["vibration"], categorical=["site"], sample_size=1_000, seed=3)
    again = build_baseline(frame, numeric=["vibration"], categorical=["site"], sample_size=1_000, seed=3)
    other = build_baseline(frame, numeric=["vibration"], categorical=["site"], sample_size=1_000, seed=4)

    assert len(first.reference) == 1_000
    assert list(first.reference.columns) == ["vibration", "site"]
    assert np.array_equal(first.reference["vibration"], again.reference["vibration"])
    assert not np.array_equal(first.reference["vibration"], other.reference["vibration"])
    assert set(first.reference["vibration"]) <= set(frame["vibration"])
    assert first.document["reference_rows"] == 1_000


def test_reference_holds_every_row_when_the_data_is_small() -> None:
    frame = training(300)

    result = build_baseline(frame, numeric=["vibration"], categorical=[])

    assert np.array_equal(result.reference["vibration"].to_numpy(), frame["vibration"].to_numpy())


def test_document_round_trips_through_strict_json(baseline: Baseline) -> None:
    text = baseline.to_json()

    loaded = Baseline.load(text, baseline.reference_parquet())

    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON")) == baseline.document
    assert loaded.document == baseline.document
    assert loaded.bin_edges("vibration").tolist() == baseline.bin_edges("vibration").tolist()
    assert len(text) < 10_000


def test_reference_round_trips_through_parquet(baseline: Baseline) -> None:
    loaded = Baseline.load(baseline.document, baseline.reference_parquet())

    assert np.array_equal(loaded.reference["vibration"].to_numpy(), baseline.reference["vibration"].to_numpy())
    assert list(loaded.reference["site"]) == list(baseline.reference["site"])


def test_reference_keeps_missing_values_through_parquet() -> None:
    frame = pd.DataFrame({"x": [1.0, None, "bad", 4.0], "kind": ["a", None, "", "b"]})
    built = build_baseline(frame, numeric=["x"], categorical=["kind"])

    loaded = Baseline.load(built.to_json(), built.reference_parquet())

    assert np.array_equal(loaded.reference["x"].to_numpy(), [1.0, np.nan, np.nan, 4.0], equal_nan=True)
    assert list(loaded.reference["kind"]) == ["a", None, None, "b"]


def test_a_loaded_baseline_compares_exactly_like_the_original(baseline: Baseline) -> None:
    window = training(3_000, seed=9)
    loaded = Baseline.load(json.loads(baseline.to_json()), baseline.reference_parquet())

    assert compare(loaded, window).to_dict() == compare(baseline, window).to_dict()


def test_a_baseline_loaded_without_reference_reports_no_ks(baseline: Baseline) -> None:
    loaded = Baseline.load(baseline.to_json())

    report = compare(loaded, training(2_000, seed=5))

    assert report.features["vibration"].ks is None
    assert report.features["vibration"].psi is not None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param({"format": 99, "rows": 1, "features": {}}, "format 99", id="format"),
        pytest.param({"format": 1, "features": {}}, "rows", id="no-rows"),
        pytest.param({"format": 1, "rows": 1, "features": {"x": {"kind": "text"}}}, "kind", id="kind"),
        pytest.param(
            {"format": 1, "rows": 1, "features": {"x": {"kind": "numeric", "edges": [1.0], "counts": [1]}}},
            "counts",
            id="numeric-counts",
        ),
        pytest.param(
            {"format": 1, "rows": 1, "features": {"x": {"kind": "categorical", "categories": ["a"], "counts": [1]}}},
            OTHER,
            id="categorical-other",
        ),
    ],
)
def test_load_rejects_malformed_documents(document: dict, message: str) -> None:
    with pytest.raises(DriftError, match=message):
        Baseline.load(document)


def test_load_rejects_a_reference_without_the_features(baseline: Baseline) -> None:
    other = build_baseline(training(100), numeric=["label"], categorical=[])

    with pytest.raises(DriftError, match="lacks the feature"):
        Baseline.load(baseline.document, other.reference_parquet())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"numeric": [], "categorical": []}, "at least one feature", id="no-features"),
        pytest.param({"numeric": ["vibration"], "categorical": ["vibration"]}, "twice", id="overlap"),
        pytest.param({"numeric": ["nope"], "categorical": []}, "not in the training frame", id="absent"),
        pytest.param({"numeric": "vibration", "categorical": []}, "list of column names", id="bare-string"),
        pytest.param({"numeric": ["vibration"], "categorical": [], "bins": 0}, "bins", id="bins"),
        pytest.param({"numeric": ["vibration"], "categorical": [], "sample_size": -1}, "sample_size", id="sample"),
        pytest.param({"numeric": [], "categorical": ["site"], "max_categories": 0}, "max_categories", id="cap"),
    ],
)
def test_build_baseline_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(DriftError, match=message):
        build_baseline(training(10), **kwargs)


def test_build_baseline_rejects_an_empty_frame() -> None:
    with pytest.raises(DriftError, match="no rows"):
        build_baseline(training(10).iloc[:0], numeric=["vibration"], categorical=[])


# ---------------------------------------------------------------------------------------------------------------------
# Comparing windows


def test_the_training_data_itself_shows_no_drift(baseline: Baseline) -> None:
    report = compare(baseline, training())

    for name in ("vibration", "flow", "site"):
        assert report.features[name].psi == 0.0
        assert report.features[name].js == 0.0
    assert report.features["vibration"].ks == 0.0
    assert report.drifted() == []


def test_a_fresh_sample_of_the_same_distribution_shows_little_drift(baseline: Baseline) -> None:
    report = compare(baseline, training(10_000, seed=2))

    for name in ("vibration", "flow", "site"):
        assert report.features[name].psi < 0.01
        assert report.features[name].js < 0.05
    assert report.features["vibration"].ks < 0.03
    assert report.drifted() == []


def test_a_shifted_mean_shows_large_psi_and_ks(baseline: Baseline) -> None:
    window = training(5_000, seed=3)
    window["vibration"] = window["vibration"] + 1.0

    report = compare(baseline, window)

    assert report.features["vibration"].psi > 0.5
    assert report.features["vibration"].ks > 0.3
    assert report.features["vibration"].js > 0.3
    assert report.features["flow"].psi < 0.01
    assert report.drifted() == ["vibration"]
    assert report.to_dict()["worst"] == {"feature": "vibration", "psi": report.features["vibration"].psi}


def test_drifted_uses_the_threshold(baseline: Baseline) -> None:
    window = training(5_000, seed=3)
    window["flow"] = window["flow"] * 1.1

    report = compare(baseline, window)
    value = report.features["flow"].psi

    assert report.drifted(threshold_psi=value) == ["flow"]
    assert report.drifted(threshold_psi=value + 1e-9) == []


def test_ks_in_a_comparison_is_exact_against_the_reference_sample() -> None:
    frame = training(50_000)
    built = build_baseline(frame, numeric=["vibration"], categorical=[], sample_size=2_000, seed=11)
    window = training(3_000, seed=4)

    report = compare(built, window)

    expected = scipy_ks(built.reference["vibration"].to_numpy(), window["vibration"].to_numpy())
    assert report.features["vibration"].ks == pytest.approx(expected, abs=1e-9)


def test_unseen_categories_are_counted_and_binned_as_other(baseline: Baseline) -> None:
    window = pd.DataFrame({"site": ["north"] * 90 + ["moon"] * 6 + ["mars"] * 4 + [None] * 10})

    feature = compare(baseline, window).features["site"]

    assert feature.unseen == 10
    assert feature.unseen_rate == pytest.approx(0.1)
    assert feature.missing_rate == pytest.approx(10 / 110)
    assert feature.count == 100
    expected = [0.5, 0.3, 0.2, 0.0]  # north, south, east, other (training proportions, by frequency)
    categories = baseline.document["features"]["site"]["categories"]
    assert categories == ["north", "south", "east", OTHER]
    training_p = baseline.document["features"]["site"]["proportions"]
    assert feature.psi == pytest.approx(reference_psi(training_p, [0.9, 0.0, 0.0, 0.1]), abs=1e-9)
    assert feature.js == pytest.approx(reference_js(training_p, [0.9, 0.0, 0.0, 0.1]), abs=1e-9)
    assert training_p == pytest.approx(expected, abs=0.02)


def test_categories_compare_by_their_string_form() -> None:
    built = build_baseline(pd.DataFrame({"line": [1, 2, 2, 3]}), numeric=[], categorical=["line"])

    feature = compare(built, pd.DataFrame({"line": ["1", "2", "2", "3"]})).features["line"]

    assert feature.unseen == 0 and feature.psi == 0.0


def test_missing_and_added_columns_are_reported(baseline: Baseline) -> None:
    window = training(1_000, seed=5).drop(columns=["flow"]).assign(extra=1.0)

    report = compare(baseline, window).to_dict()

    assert report["schema"] == {"missing": ["flow"], "added": ["label", "extra"]}
    assert report["features"]["flow"] == {
        "kind": "numeric",
        "psi": None,
        "ks": None,
        "js": None,
        "missing_rate": None,
        "count": None,
        "non_numeric": None,
        "distribution": None,
    }
    assert report["features"]["vibration"]["psi"] is not None


def test_non_numeric_strings_count_as_missing_and_are_reported(baseline: Baseline) -> None:
    values = training(1_000, seed=6)["vibration"].astype(object)
    values.iloc[:50] = "sensor fault"
    values.iloc[50:60] = ""
    values.iloc[60:70] = None
    values.iloc[70:75] = "inf"
    window = pd.DataFrame({"vibration": values})

    feature = compare(baseline, window).features["vibration"]

    assert feature.non_numeric == 55
    assert feature.count == 1_000 - 75
    assert feature.missing_rate == pytest.approx(75 / 1_000)
    assert feature.psi < 0.05 and feature.ks < 0.1


def test_numbers_written_as_strings_are_read_as_numbers(baseline: Baseline) -> None:
    window = training(2_000, seed=7)
    as_text = window.assign(vibration=window["vibration"].map(repr))

    assert compare(baseline, as_text).to_dict() == compare(baseline, window).to_dict()


def test_a_column_with_only_missing_values_has_no_statistics(baseline: Baseline) -> None:
    window = pd.DataFrame({"vibration": [None] * 5, "site": [None, "", " ", None, None]})

    report = compare(baseline, window)

    assert report.features["vibration"].missing_rate == 1.0
    assert report.features["vibration"].psi is None and report.features["vibration"].ks is None
    assert report.features["site"].missing_rate == 1.0
    assert report.features["site"].psi is None and report.features["site"].unseen_rate is None


def test_an_empty_window_gives_a_report_without_statistics(baseline: Baseline) -> None:
    report = compare(baseline, training(10).iloc[:0])

    result = report.to_dict()
    assert result["rows"] == 0
    assert all(value is None for f in result["features"].values() for key, value in f.items() if key != "kind")
    assert result["worst"] == {"feature": None, "psi": None}
    assert result["schema"] == {"missing": [], "added": ["label"]}
    assert report.drifted() == []


def test_a_window_without_columns_reports_every_feature_missing(baseline: Baseline) -> None:
    report = compare(baseline, pd.DataFrame())

    assert report.rows == 0
    assert report.missing_columns == ("vibration", "flow", "site")


def test_the_report_is_strict_json(baseline: Baseline) -> None:
    window = training(500, seed=8).assign(vibration=np.nan)

    text = json.dumps(compare(baseline, window).to_dict(), allow_nan=False)

    assert json.loads(text)["features"]["vibration"]["missing_rate"] == 1.0


def test_features_are_compared_side_by_side_on_large_windows(baseline: Baseline) -> None:
    window = training(drift._PARALLEL_ROWS + 10, seed=12)

    in_parallel = compare(baseline, window).to_dict()
    one_by_one = {name: compare(baseline, window[[name]]).to_dict()["features"][name] for name in baseline.features}

    assert in_parallel["features"] == one_by_one


def test_compare_rejects_what_is_not_a_frame(baseline: Baseline) -> None:
    with pytest.raises(DriftError, match="DataFrame"):
        compare(baseline, {"vibration": [1.0]})  # type: ignore[arg-type]


def test_docstring_examples_run() -> None:
    assert doctest.testmod(drift).failed == 0


def test_the_distribution_compared_is_reported_for_plotting(baseline: Baseline) -> None:
    report = compare(baseline, training(2_000, seed=6))
    numeric = next(f for f in report.features.values() if f.kind == "numeric" and f.psi is not None)
    categorical = next(f for f in report.features.values() if f.kind == "categorical" and f.psi is not None)
    for feature in (numeric, categorical):
        shape = feature.distribution
        assert len(shape["labels"]) == len(shape["baseline"]) == len(shape["current"])
        assert math.isclose(sum(shape["baseline"]), 1.0, abs_tol=1e-4)
        assert math.isclose(sum(shape["current"]), 1.0, abs_tol=1e-4)
        assert psi(shape["baseline"], shape["current"]) == pytest.approx(feature.psi, abs=1e-3)
    assert numeric.distribution["labels"][0].startswith("<= ") and numeric.distribution["labels"][-1].startswith("> ")
    assert categorical.distribution["labels"][-1] == OTHER
