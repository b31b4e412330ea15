"""Drift statistics: a baseline built from training data, and how far a window of current data has moved from it.

One implementation behind the training pipeline's baseline step (:func:`build_baseline` on the training data) and the
drift monitor (:func:`compare` of a window of captured requests against the registered baseline).

The baseline has two parts:

- ``document``: a small JSON document (``format``, ``rows``, and per feature its ``kind`` and summary). A numeric
  feature records its quantile bin ``edges``, the training ``counts`` and ``proportions`` per bin, ``quantiles``
  (p01 … p99, linear interpolation), ``mean``, ``std`` (population), ``min``, ``max`` and ``missing_rate``. A
  categorical feature records its ``categories`` (the ``max_categories`` most frequent, then ``"__other__"`` for the
  rest) with ``counts`` and ``proportions``, the number of ``distinct`` values and ``missing_rate``.
- ``reference``: a seeded random sample of at most ``sample_size`` training rows of the features (numeric features
  as float64 with NaN where missing, categorical ones as strings), stored as Parquet, for the exact KS test.

Bins. The edges are the 1/bins … (bins-1)/bins quantiles of the training values, taken as values of the data
(``inverted_cdf``: the smallest value whose empirical CDF reaches the level), without repeats; the outer edges are
-inf and +inf, so every value falls in a bin. The document stores the inner edges only (JSON has no infinity);
:meth:`Baseline.bin_edges` gives the full list. Bins are closed on the right: bin ``i`` holds
``edges[i] < x <= edges[i + 1]``. A feature with ties (many zeros, a constant) gets fewer bins.

Statistics per feature, over the non-missing values only:

- ``psi``: population stability index, ``sum((a - e) * ln(a / e))`` over the bins (or categories), ``e`` the
  training and ``a`` the current proportion. An empty bin would make the log infinite, so proportions below
  :data:`PSI_EPSILON` (1e-4) are raised to it on both sides first, without renormalising: every term stays >= 0
  and a bin that goes from empty to a share ``a`` adds about ``a * ln(a / 1e-4)`` (0.69 for 10 %). Rule of thumb:
  below 0.1 stable, 0.1 to 0.2 moderate, 0.2 or more a shift (:meth:`DriftReport.drifted`).
- ``ks`` (numeric only): the two-sample Kolmogorov–Smirnov statistic, the exact largest distance between the
  empirical CDFs of the reference sample and the current values (both sorted, then ``searchsorted``), in [0, 1].
- ``js``: Jensen–Shannon distance (the square root of the divergence, base 2) between the same distributions as the
  PSI, in [0, 1]: 0 for identical, 1 for disjoint.
- ``missing_rate``: share of the rows whose value is missing. In a numeric feature, values that are not finite
  numbers (strings that do not parse, infinities) count as missing and are reported as ``non_numeric``; empty or
  blank strings and ``"nan"`` are simply missing. A categorical value is compared by its string form (``str``);
  blank strings are missing. Categorical values outside the baseline's categories count as ``"__other__"`` and are
  reported as ``unseen`` (with ``unseen_rate``, their share of the non-missing values); with more than
  ``max_categories`` categories in training, training's rare ones are unseen too (the document does not list them).

A statistic that cannot be computed (no rows, no non-missing values on either side, no reference sample) is
``None``, never an error. Everything here uses numpy/pandas/pyarrow APIs that numpy 1.26, pandas 2.2 and pyarrow 17
(the AWS SDK for pandas Lambda layer) share, so the drift Lambda runs it unchanged. Leaf module.

Example
-------
>>> rng = np.random.default_rng(7)
>>> train = pd.DataFrame({"vibration": rng.normal(5.0, 1.0, 20_000), "site": rng.choice(["north", "south"], 20_000)})
>>> baseline = build_baseline(train, numeric=["vibration"], categorical=["site"])
>>> compare(baseline, train).drifted()
[]
>>> window = pd.DataFrame({"vibration": rng.normal(6.0, 1.0, 5_000), "site": ["north"] * 4_990 + ["west"] * 10})
>>> report = compare(baseline, window)
>>> report.drifted()
['vibration', 'site']
>>> report.features["site"].unseen, report.to_dict()["worst"]["feature"]
(10, 'site')
>>> round(report.features["vibration"].ks, 2)
0.38
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelwerk.core.contract import Contract

__all__ = [
    "BASELINE_FORMAT",
    "MAX_CATEGORIES",
    "OTHER",
    "PSI_EPSILON",
    "PSI_THRESHOLD",
    "QUANTILES",
    "Baseline",
    "DriftError",
    "DriftReport",
    "FeatureDrift",
    "build_baseline",
    "compare",
    "contract_features",
    "js_distance",
    "ks_statistic",
    "psi",
]

#: Version of the baseline document layout.
BASELINE_FORMAT = 1
#: The bucket of categories the baseline does not list (rare in training, or unseen).
OTHER = "__other__"
#: Floor for proportions in the PSI, so an empty bin gives a large but finite term.
PSI_EPSILON = 1e-4
#: PSI at or above which a feature counts as drifted.
PSI_THRESHOLD = 0.2
#: Categories a baseline lists per feature, most frequent first; the rest are ``OTHER``.
MAX_CATEGORIES = 50
#: Quantiles a numeric feature's summary records.
QUANTILES: dict[str, float] = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}

#: Features compared side by side (numpy sorts and searches outside the GIL).
_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: Below this many rows a thread pool costs more than it saves.
_PARALLEL_ROWS = 50_000
#: Strings (stripped, lower case) that mean "no value" rather than "not a number".
_MISSING_TEXT = ["", "nan"]
_KINDS = ("numeric", "categorical")


class DriftError(ValueError):
    """Bad arguments, or a baseline document this module cannot read."""


# --------------------------------------------------------------------------------------------------------------------
# Statistics on plain arrays


def _distribution(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise DriftError(f"{name} must be a non-empty one-dimensional sequence")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise DriftError(f"{name} must hold finite numbers >= 0")
    return array


def psi(
    expected_proportions: Sequence[float], actual_proportions: Sequence[float], epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))``, proportions below ``epsilon`` raised to it.

    The proportions are taken as given (not renormalised); every term is >= 0, so the index is too.

    Example
    -------
    >>> psi([0.5, 0.5], [0.5, 0.5])
    0.0
    >>> round(psi([0.5, 0.5], [0.9, 0.1]), 4)
    0.8789
    """
    expected = _distribution(expected_proportions, "expected_proportions")
    actual = _distribution(actual_proportions, "actual_proportions")
    if expected.shape != actual.shape:
        raise DriftError(f"expected has {len(expected)} proportions, actual {len(actual)}")
    if not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise DriftError(f"epsilon must be a number > 0, not {epsilon!r}")
    e = np.maximum(expected, epsilon)
    a = np.maximum(actual, epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon distance (square root of the divergence, base 2) between two distributions, in [0, 1].

    ``p`` and ``q`` are counts or proportions over the same bins; each is normalised to sum to 1.

    Example
    -------
    >>> js_distance([1, 0], [0, 1]), js_distance([3, 1], [0.75, 0.25])
    (1.0, 0.0)
    """
    p_ = _distribution(p, "p")
    q_ = _distribution(q, "q")
    if p_.shape != q_.shape:
        raise DriftError(f"p has {len(p_)} entries, q {len(q_)}")
    if p_.sum() <= 0 or q_.sum() <= 0:
        raise DriftError("p and q must each have a positive total")
    p_ = p_ / p_.sum()
    q_ = q_ / q_.sum()
    total = p_ + q_

    def kl_to_mean(x: np.ndarray) -> float:
        present = x > 0  # 0 * log(0) = 0; x / m written as 2x / (p + q), which cannot underflow to x / 0
        return float(np.sum(x[present] * np.log2(2.0 * x[present] / total[present])))

    divergence = 0.5 * kl_to_mean(p_) + 0.5 * kl_to_mean(q_)
    return min(1.0, math.sqrt(max(0.0, divergence)))


def _ks_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """KS statistic of two sorted, non-empty samples.

    The CDFs are step functions that only change at data values, so the largest distance is reached at one of them.
    At the last occurrence of each distinct value of ``a`` its own CDF is ``(position + 1) / n``; the other sample's
    is a ``searchsorted``; likewise the other way round.
    """

    def at_values_of(x: np.ndarray, y: np.ndarray) -> float:
        last = np.empty(len(x), dtype=bool)
        last[:-1] = x[1:] != x[:-1]
        last[-1] = True
        positions = np.flatnonzero(last)
        own = (positions + 1) / len(x)
        other = np.searchsorted(y, x[positions], side="right") / len(y)
        return float(np.max(np.abs(own - other)))

    return min(1.0, max(at_values_of(a, b), at_values_of(b, a)))


def ks_statistic(reference: Sequence[float], current: Sequence[float]) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest distance between the two empirical CDFs, in [0, 1].

    Missing values (NaN) are left out; each sample must keep at least one value.

    Example
    -------
    >>> ks_statistic([1.0, 2.0, 3.0, float("nan")], [2.0, 3.0, 4.0, 5.0])
    0.5
    """
    a = np.asarray(reference, dtype=np.float64).ravel()
    b = np.asarray(current, dtype=np.float64).ravel()
    a = np.sort(a[~np.isnan(a)])
    b = np.sort(b[~np.isnan(b)])
    if len(a) == 0 or len(b) == 0:
        raise DriftError("both samples need at least one value that is not missing")
    return _ks_sorted(a, b)


def _bin_counts(sorted_values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Counts per right-closed bin (-inf, e1], (e1, e2], …, (ek, +inf) of sorted values."""
    at_or_below = np.searchsorted(sorted_values, inner_edges, side="right")
    return np.diff(np.concatenate(([0], at_or_below, [len(sorted_values)]))).astype(np.int64)


# --------------------------------------------------------------------------------------------------------------------
# Reading columns


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    column = frame[name]
    if isinstance(column, pd.DataFrame):  # a repeated column name: the first one counts
        column = column.iloc[:, 0]
    return column


def _numeric(series: pd.Series) -> tuple[np.ndarray, int, int]:
    """(float64 values, NaN where missing; missing count; non-numeric count among them).

    Values that are present but not finite numbers (strings that do not parse, infinities) are non-numeric and count
    as missing. Blank strings and ``"nan"`` are missing without being non-numeric.
    """
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        absent = np.isnan(values)
    else:
        values, absent = _coerce_numbers(series)
    unusable = ~np.isfinite(values)
    non_numeric = int(np.count_nonzero(unusable & ~absent))
    if non_numeric:
        values = np.where(unusable, np.nan, values)
    return values, int(np.count_nonzero(unusable)), non_numeric


def _coerce_numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, NaN where not a number; mask of the missing ones) of a column that is not numeric."""
    objects = series.astype(object)
    absent = series.isna().to_numpy(dtype=bool, copy=True)
    try:
        values = pd.to_numeric(objects, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError, OverflowError):  # values pandas cannot coerce (lists, say): go by their text
        values = pd.to_numeric(objects.astype(str), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        values[absent] = np.nan
    failed = np.flatnonzero(np.isnan(values) & ~absent)
    if len(failed):  # usually few: tell blanks and "nan" (missing) from junk (non-numeric)
        text = objects.iloc[failed].astype(str).str.strip().str.lower()
        absent[failed[text.isin(_MISSING_TEXT).to_numpy(dtype=bool)]] = True
    return values, absent


def _category_counts(series: pd.Series) -> tuple[pd.Series, int]:
    """(counts of the non-missing values by string form, most frequent first, ties by name; missing count)."""
    absent = int(series.isna().sum())
    try:
        counts = series.value_counts(dropna=True, sort=False)
    except TypeError:  # unhashable values: compare their string forms
        counts = series[series.notna()].astype(str).value_counts(sort=False)
    counts = counts[counts.to_numpy() > 0]
    names = np.asarray(counts.index.astype(str), dtype=object)
    by_name = pd.Series(counts.to_numpy(dtype=np.int64), index=pd.Index(names, dtype=object))
    by_name = by_name.groupby(level=0, sort=True).sum()  # 1 and "1" are one category
    blank = by_name.index.str.strip().to_numpy() == ""
    absent += int(by_name[blank].sum())
    by_name = by_name[~blank]
    order = np.lexsort((np.arange(len(by_name)), -by_name.to_numpy()))  # count descending, then name (sorted)
    return by_name.iloc[order], absent


def _category_strings(series: pd.Series) -> np.ndarray:
    """Object array of the values' string forms, None where missing or blank."""
    text = series.astype(str).to_numpy(dtype=object)
    blank = pd.Series(text, dtype=object).str.strip().to_numpy() == ""
    text[series.isna().to_numpy(dtype=bool) | blank] = None
    return text


def _finite_or_none(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --------------------------------------------------------------------------------------------------------------------
# Baseline


def _numeric_summary(series: pd.Series, bins: int) -> tuple[dict[str, Any], np.ndarray]:
    values, missing, non_numeric = _numeric(series)
    present = np.sort(values[~np.isnan(values)])
    rows, count = len(values), len(present)
    summary: dict[str, Any] = {
        "kind": "numeric",
        "count": count,
        "missing": missing,
        "non_numeric": non_numeric,
        "missing_rate": _rate(missing, rows),
    }
    if count == 0:
        summary.update(
            edges=[],
            counts=[0],
            proportions=[0.0],
            quantiles={k: None for k in QUANTILES},
            mean=None,
            std=None,
            min=None,
            max=None,
        )
        return summary, values
    levels = np.arange(1, bins) / bins
    edges = np.unique(np.quantile(present, levels, method="inverted_cdf")) if bins > 1 else np.empty(0)
    counts = _bin_counts(present, edges)
    with np.errstate(over="ignore", invalid="ignore"):
        quantiles = np.quantile(present, list(QUANTILES.values()))
        mean, std = present.mean(), present.std()
    summary.update(
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        proportions=[float(c) for c in counts / count],
        quantiles={k: _finite_or_none(q) for k, q in zip(QUANTILES, quantiles, strict=True)},
        mean=_finite_or_none(mean),
        std=_finite_or_none(std),
        min=float(present[0]),
        max=float(present[-1]),
    )
    return summary, values


def _categorical_summary(series: pd.Series, max_categories: int) -> dict[str, Any]:
    counts, missing = _category_counts(series)
    rows, count = len(series), int(counts.sum())
    listed = counts[counts.index != OTHER].iloc[:max_categories]  # "__other__" is the bucket's name, not a category
    other = count - int(listed.sum())
    names = [str(n) for n in listed.index] + [OTHER]
    numbers = [int(c) for c in listed.to_numpy()] + [other]
    return {
        "kind": "categorical",
        "count": count,
        "missing": missing,
        "missing_rate": _rate(missing, rows),
        "distinct": len(counts),
        "categories": names,
        "counts": numbers,
        "proportions": [c / count if count else 0.0 for c in numbers],
    }


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DriftError(f"{what} must be a list of column names, not {value!r}")
    names = list(value)
    if not all(isinstance(n, str) for n in names):
        raise DriftError(f"{what} must hold column names as strings: {names!r}")
    return names


def _check_count(value: Any, what: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DriftError(f"{what} must be an integer >= {minimum}, not {value!r}")


@dataclass(frozen=True, eq=False)
class Baseline:
    """What training data looked like: a small JSON ``document`` and a ``reference`` sample for the KS test.

    Build one with :func:`build_baseline`; store ``to_json()`` and ``reference_parquet()``; read them back with
    :meth:`load`. Treat both parts as read-only.
    """

    document: dict[str, Any]
    reference: pd.DataFrame
    _sorted: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    @property
    def rows(self) -> int:
        return int(self.document["rows"])

    @property
    def features(self) -> list[str]:
        return list(self.document["features"])

    @property
    def numeric(self) -> list[str]:
        return [n for n, f in self.document["features"].items() if f["kind"] == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [n for n, f in self.document["features"].items() if f["kind"] == "categorical"]

    def bin_edges(self, feature: str) -> np.ndarray:
        """All edges of a numeric feature's bins, -inf and +inf included."""
        spec = self.document["features"][feature]
        if spec["kind"] != "numeric":
            raise DriftError(f"{feature!r} is a {spec['kind']} feature; only numeric features have bins")
        return np.concatenate(([-np.inf], np.asarray(spec["edges"], dtype=np.float64), [np.inf]))

    def to_json(self) -> str:
        """The document as compact, strict JSON (no NaN or infinity)."""
        return json.dumps(self.document, separators=(",", ":"), allow_nan=False)

    def reference_parquet(self) -> bytes:
        """The reference sample as Parquet bytes: numeric features as double, categorical ones as string."""
        arrays = {}
        for name in self.features:
            column = self.reference[name] if name in self.reference.columns else pd.Series([], dtype=object)
            if self.document["features"][name]["kind"] == "numeric":
                arrays[name] = pa.array(
                    column.to_numpy(dtype=np.float64, na_value=np.nan), pa.float64(), from_pandas=True
                )
            else:
                arrays[name] = pa.array(column.to_numpy(dtype=object), pa.string(), from_pandas=True)
        buffer = io.BytesIO()
        pq.write_table(pa.table(arrays), buffer, compression="zstd")
        return buffer.getvalue()

    @classmethod
    def load(cls, document: Mapping[str, Any] | str | bytes, parquet_bytes: bytes | None = None) -> Baseline:
        """A baseline from its document (a dict or its JSON) and its reference as Parquet bytes.

        Without ``parquet_bytes`` the reference is empty and ``compare`` reports no KS statistic.
        """
        doc = json.loads(document) if isinstance(document, (str, bytes, bytearray)) else dict(document)
        _check_document(doc)
        names = list(doc["features"])
        if parquet_bytes is None:
            reference = pd.DataFrame(
                {
                    name: pd.Series([], dtype=np.float64 if doc["features"][name]["kind"] == "numeric" else object)
                    for name in names
                }
            )
            return cls(doc, reference)
        try:
            table = pq.read_table(io.BytesIO(parquet_bytes))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DriftError(f"the reference is not readable Parquet ({exc})") from exc
        absent = [name for name in names if name not in table.column_names]
        if absent:
            raise DriftError(f"the reference lacks the feature column(s) {absent}")
        frame = table.select(names).to_pandas()
        columns: dict[str, np.ndarray | pd.Series] = {}
        for name in names:
            if doc["features"][name]["kind"] == "numeric":
                columns[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                strings = frame[name].astype(object)
                columns[name] = strings.where(strings.notna(), None)
        return cls(doc, pd.DataFrame(columns))

    def _reference_sorted(self, feature: str) -> np.ndarray:
        """The reference sample's non-missing values of a numeric feature, sorted (computed once)."""
        cached = self._sorted.get(feature)
        if cached is None:
            if feature in self.reference.columns:
                values = self.reference[feature].to_numpy(dtype=np.float64, na_value=np.nan)
                cached = np.sort(values[np.isfinite(values)])
            else:
                cached = np.empty(0)
            self._sorted[feature] = cached
        return cached

    def __repr__(self) -> str:
        return (
            f"Baseline(rows={self.rows}, numeric={self.numeric}, categorical={self.categorical}, "
            f"reference_rows={len(self.reference)})"
        )


def _check_document(doc: dict[str, Any]) -> None:
    if doc.get("format") != BASELINE_FORMAT:
        raise DriftError(f"baseline format {doc.get('format')!r} is not one this reader knows ({BASELINE_FORMAT})")
    features = doc.get("features")
    if not isinstance(features, dict) or not isinstance(doc.get("rows"), int):
        raise DriftError("a baseline document needs 'rows' and 'features'")
    for name, spec in features.items():
        kind = spec.get("kind") if isinstance(spec, dict) else None
        if kind not in _KINDS:
            raise DriftError(f"feature {name!r}: kind {kind!r} is not one of {_KINDS}")
        if kind == "numeric":
            if not isinstance(spec.get("edges"), list) or len(spec.get("counts", ())) != len(spec["edges"]) + 1:
                raise DriftError(f"feature {name!r}: needs 'edges' and one more 'counts' than edges")
        else:
            categories, counts = spec.get("categories"), spec.get("counts")
            if (
                not categories
                or categories[-1] != OTHER
                or not isinstance(counts, list)
                or len(counts) != len(categories)
            ):
                raise DriftError(f"feature {name!r}: needs 'categories' ending in {OTHER!r} and as many 'counts'")


def contract_features(contract: Contract) -> tuple[list[str], list[str]]:
    """(numeric, categorical) features of a use case: its model inputs (``Contract.input_schema``) by type.

    Integer and double columns are numeric, string and boolean columns categorical; timestamp inputs are left out
    (time moves on by itself, which is not drift).

    Example
    -------
    >>> contract = Contract.from_dict({"use_case": "u", "task": "regression", "label": "y", "key": ["t"],
    ...     "timestamp": "t", "asset": "t", "columns": [{"name": "t", "type": "timestamp", "required": True},
    ...     {"name": "site", "type": "string"}, {"name": "flow", "type": "double"}, {"name": "y", "type": "double"}]})
    >>> contract_features(contract)
    (['flow'], ['site'])
    """
    return split_features((name, contract.column(name).type) for name in contract.input_schema)


def split_features(fields: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) names of ``(name, contract type)`` pairs; timestamps are neither."""
    fields = list(fields)
    numeric = [name for name, kind in fields if kind in ("integer", "double")]
    categorical = [name for name, kind in fields if kind in ("string", "boolean")]
    return numeric, categorical


def build_baseline(
    frame: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    bins: int = 10,
    sample_size: int = 100_000,
    seed: int = 0,
    max_categories: int = MAX_CATEGORIES,
) -> Baseline:
    """The baseline of training data: per-feature summary (the document) and a seeded reference sample.

    Parameters
    ----------
    frame : pandas.DataFrame
        The training data; other columns are ignored.
    numeric, categorical : sequence of str
        The features by kind (disjoint, at least one in all).
    bins : int
        Quantile bins per numeric feature for PSI and JS (fewer where values tie).
    sample_size : int
        Most rows in the reference sample (drawn without replacement with ``seed``; all rows when fewer).
    max_categories : int
        Categories listed per categorical feature, most frequent first; the rest are ``"__other__"``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DriftError(f"frame must be a pandas DataFrame, not {type(frame).__name__}")
    numeric_ = _names(numeric, "numeric")
    categorical_ = _names(categorical, "categorical")
    names = numeric_ + categorical_
    if not names:
        raise DriftError("a baseline needs at least one feature")
    if len(set(names)) != len(names):
        raise DriftError(f"a feature is listed twice (numeric {numeric_}, categorical {categorical_})")
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise DriftError(f"feature column(s) {absent} are not in the training frame")
    if len(frame) == 0:
        raise DriftError("the training frame has no rows")
    _check_count(bins, "bins", 1)
    _check_count(sample_size, "sample_size", 0)
    _check_count(max_categories, "max_categories", 1)

    rows = len(frame)
    size = min(rows, int(sample_size))
    rng = np.random.default_rng(seed)
    sample = np.arange(rows) if size == rows else np.sort(rng.choice(rows, size=size, replace=False))

    features: dict[str, Any] = {}
    reference: dict[str, np.ndarray | pd.Series] = {}
    for name in numeric_:
        features[name], values = _numeric_summary(_column(frame, name), int(bins))
        reference[name] = values[sample]
    for name in categorical_:
        series = _column(frame, name)
        features[name] = _categorical_summary(series, int(max_categories))
        reference[name] = pd.Series(_category_strings(series.iloc[sample]), dtype=object)
    document = {
        "format": BASELINE_FORMAT,
        "rows": rows,
        "bins": int(bins),
        "seed": int(seed),
        "reference_rows": size,
        "features": {name: features[name] for name in names},
    }
    return Baseline(document, pd.DataFrame({name: reference[name] for name in names}))


# --------------------------------------------------------------------------------------------------------------------
# Comparison


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's statistics in a window; ``None`` where a statistic cannot be computed.

    ``count`` is the number of non-missing values. ``non_numeric`` applies to numeric features, ``unseen`` and
    ``unseen_rate`` to categorical ones; ``ks`` is ``None`` for categorical features. ``distribution`` holds what
    the PSI compared, for plotting: ``labels`` (the bins, ``"(a, b]"``, or the categories) with the ``baseline`` and
    ``current`` proportions.
    """

    kind: str
    count: int | None = None
    missing_rate: float | None = None
    psi: float | None = None
    ks: float | None = None
    js: float | None = None
    non_numeric: int | None = None
    unseen: int | None = None
    unseen_rate: float | None = None
    distribution: dict[str, list[Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": self.kind,
            "psi": self.psi,
            "ks": self.ks,
            "js": self.js,
            "missing_rate": self.missing_rate,
            "count": self.count,
        }
        if self.kind == "numeric":
            doc["non_numeric"] = self.non_numeric
        else:
            doc.update(unseen=self.unseen, unseen_rate=self.unseen_rate)
        doc["distribution"] = self.distribution
        return doc


@dataclass(frozen=True)
class DriftReport:
    """How a window of current data compares with a baseline.

    ``features`` has an entry for every baseline feature (all statistics ``None`` for a feature the window lacks,
    and for every feature of an empty window). ``missing_columns`` are baseline features the window lacks,
    ``added_columns`` the window's columns the baseline does not know.
    """

    rows: int
    features: dict[str, FeatureDrift]
    missing_columns: tuple[str, ...] = ()
    added_columns: tuple[str, ...] = ()

    @property
    def worst(self) -> tuple[str | None, float | None]:
        """(feature, PSI) of the feature with the largest PSI; ``(None, None)`` when no PSI was computed."""
        scored = [(name, f.psi) for name, f in self.features.items() if f.psi is not None]
        if not scored:
            return None, None
        return max(scored, key=lambda item: item[1])

    def drifted(self, threshold_psi: float = PSI_THRESHOLD) -> list[str]:
        """Features whose PSI is at or above the threshold, in baseline order."""
        return [name for name, f in self.features.items() if f.psi is not None and f.psi >= threshold_psi]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``rows``, ``features`` (name → statistics), ``schema`` and ``worst``."""
        feature, value = self.worst
        return {
            "rows": self.rows,
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "schema": {"missing": list(self.missing_columns), "added": list(self.added_columns)},
            "worst": {"feature": feature, "psi": value},
        }


def _compare_numeric(baseline: Baseline, name: str, series: pd.Series) -> FeatureDrift:
    spec = baseline.document["features"][name]
    values, missing, non_numeric = _numeric(series)
    present = values[~np.isnan(values)]
    present.sort()
    count = len(present)
    result = {
        "kind": "numeric",
        "count": count,
        "missing_rate": _rate(missing, len(values)),
        "non_numeric": non_numeric,
    }
    expected = np.asarray(spec["counts"], dtype=np.float64)
    if count and expected.sum() > 0:
        actual = _bin_counts(present, np.asarray(spec["edges"], dtype=np.float64))
        expected_p, actual_p = expected / expected.sum(), actual / count
        result.update(psi=psi(expected_p, actual_p), js=js_distance(expected_p, actual_p),
                      distribution=_distribution_of(_bin_labels(spec["edges"]), expected_p, actual_p))
    reference = baseline._reference_sorted(name)
    if count and len(reference):
        result["ks"] = _ks_sorted(reference, present)
    return FeatureDrift(**result)


def _compare_categorical(baseline: Baseline, name: str, series: pd.Series) -> FeatureDrift:
    spec = baseline.document["features"][name]
    counts, missing = _category_counts(series)
    count = int(counts.sum())
    listed = pd.Index(np.asarray(spec["categories"][:-1], dtype=object), dtype=object)
    positions = listed.get_indexer(pd.Index(counts.index, dtype=object))
    unseen = int(counts.to_numpy()[positions < 0].sum())
    result = {
        "kind": "categorical",
        "count": count,
        "missing_rate": _rate(missing, len(series)),
        "unseen": unseen,
        "unseen_rate": _rate(unseen, count),
    }
    expected = np.asarray(spec["counts"], dtype=np.float64)
    if count and expected.sum() > 0:
        buckets = np.where(positions < 0, len(listed), positions)
        actual = np.bincount(buckets, weights=counts.to_numpy(dtype=np.float64), minlength=len(listed) + 1)
        expected_p, actual_p = expected / expected.sum(), actual / count
        result.update(psi=psi(expected_p, actual_p), js=js_distance(expected_p, actual_p),
                      distribution=_distribution_of(spec["categories"], expected_p, actual_p))
    return FeatureDrift(**result)


def _bin_labels(inner_edges: Sequence[float]) -> list[str]:
    """``"<= e1"``, ``"(e1, e2]"``, …, ``"> ek"`` (``"all"`` for a single bin)."""
    edges = [f"{float(edge):.4g}" for edge in inner_edges]
    if not edges:
        return ["all"]
    return [f"<= {edges[0]}", *[f"({a}, {b}]" for a, b in zip(edges, edges[1:])], f"> {edges[-1]}"]


def _distribution_of(labels: Sequence[str], expected: np.ndarray, actual: np.ndarray) -> dict[str, list[Any]]:
    return {"labels": [str(label) for label in labels], "baseline": [round(float(v), 6) for v in expected],
            "current": [round(float(v), 6) for v in actual]}


def compare(baseline: Baseline, current: pd.DataFrame) -> DriftReport:
    """Statistics of a window of current data against a baseline, per feature, plus schema differences.

    Never raises on the window's content: an empty window, a missing column or a column of strings gives ``None``
    statistics or counts them as missing (see the module's notes).
    """
    if not isinstance(baseline, Baseline):
        raise DriftError(f"baseline must be a Baseline, not {type(baseline).__name__}")
    if not isinstance(current, pd.DataFrame):
        raise DriftError(f"current must be a pandas DataFrame, not {type(current).__name__}")
    names = baseline.features
    specs = baseline.document["features"]
    columns = list(current.columns)
    missing = tuple(name for name in names if name not in columns)
    added = tuple(dict.fromkeys(str(c) for c in columns if c not in specs))
    rows = len(current)

    def one(name: str) -> FeatureDrift:
        kind = specs[name]["kind"]
        if rows == 0 or name in missing:
            return FeatureDrift(kind=kind)
        series = _column(current, name)
        if kind == "numeric":
            return _compare_numeric(baseline, name, series)
        return _compare_categorical(baseline, name, series)

    present = [name for name in names if name not in missing]
    if rows >= _PARALLEL_ROWS and len(present) > 1 and _WORKERS > 1:
        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            results = list(pool.map(one, names))
    else:
        results = [one(name) for name in names]
    return DriftReport(
        rows=rows, features=dict(zip(names, results, strict=True)), missing_columns=missing, added_columns=added
    )
