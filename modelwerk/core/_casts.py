"""Vectorised conversion of read values to contract types, telling which values do not convert.

Every converter first tries one cast of the whole column (the common case: a clean file). Only when that fails does
it look for the culprits, by casting halves until each failure is isolated: a column with a few bad values costs
about two more casts. A column with many (blanks around every number, say) is trimmed in one vectorised pass, and a
regular expression that accepts a superset of what the cast accepts sets obvious garbage aside before the halving.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Threads for reading, converting and writing side by side (Arrow does the work outside the GIL).
WORKERS = max(1, min(4, os.cpu_count() or 1))

TS_UTC = pa.timestamp("us", tz="UTC")
TS_NAIVE = pa.timestamp("us")

#: Arrow type of each contract type in the raw zone.
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": TS_UTC,
}

TRUE_VALUES = ("true", "1")
FALSE_VALUES = ("false", "0")

# Supersets of what Arrow's parsers accept: a value failing these can never cast.
_INTEGER_SHAPE = r"^[+-]?(?:[0-9]+|0[xX][0-9a-fA-F]+)$"
_DOUBLE_SHAPE = r"^[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))$"
_TIMESTAMP_SHAPE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ].*)?$"
_HAS_OFFSET = r"[T ][0-9:.]+(?:[zZ]|[+-][0-9]{2}(?::?[0-9]{2})?)$"

_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError)
_SMALL = 16
_FEW = 32
_INT64_LIMIT = 2.0**63


def to_bool_mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as a numpy mask, nulls as False."""
    filled = pc.fill_null(values, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks() if filled.num_chunks != 1 else filled.chunk(0)
    return filled.to_numpy(zero_copy_only=False)


def valid_mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return to_bool_mask(pc.is_valid(values))


def single(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (a table column read from a file comes in chunks)."""
    if isinstance(values, pa.ChunkedArray):
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def take_rows(values: pa.Array | pa.ChunkedArray, positions: np.ndarray) -> pa.Array:
    """``values`` at ``positions`` (sorted), taken chunk by chunk: no copy of the whole column for a few rows."""
    if not isinstance(values, pa.ChunkedArray):
        return values.take(pa.array(positions, type=pa.int64()))
    starts = np.cumsum([0] + [len(chunk) for chunk in values.chunks])
    owner = np.searchsorted(starts, positions, side="right") - 1
    parts = [
        values.chunk(i).take(pa.array(positions[owner == i] - starts[i], type=pa.int64()))
        for i in np.unique(owner).tolist()
    ]
    return pa.concat_arrays(parts) if parts else pa.array([], type=values.type)


def null_out(values: pa.Array | pa.ChunkedArray, mask: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """``values`` with the positions in ``mask`` set to null."""
    if not mask.any():
        return values
    values = single(values)
    return pc.if_else(pa.array(mask), pa.nulls(len(values), values.type), values)


class _TooManyFailures(Exception):
    pass


def _cast_isolating(
    values: pa.Array | pa.ChunkedArray,
    cast: Callable[[pa.Array], pa.Array],
    target: pa.DataType,
    budget: list[int] | None = None,
) -> pa.Array:
    """Cast ``values``; where a value does not convert, the result is null. Splits in halves to find failures.

    With a ``budget`` (a one-element list, the failures still allowed), gives up with :class:`_TooManyFailures`
    once more values fail: halving pays off for a few failures, not for a column of them.
    """
    try:
        return cast(values)
    except _CAST_ERRORS:
        pass
    values = single(values)
    n = len(values)
    if n == 1:
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise _TooManyFailures
        return pa.nulls(1, target)
    if n <= _SMALL:
        return pa.concat_arrays([_cast_isolating(values.slice(i, 1), cast, target, budget) for i in range(n)])
    half = n // 2
    left = _cast_isolating(values.slice(0, half), cast, target, budget)
    right = _cast_isolating(values.slice(half), cast, target, budget)
    return pa.concat_arrays([left, right])


def _convert_strings(
    values: pa.Array | pa.ChunkedArray, cast: Callable[[pa.Array], pa.Array], target: pa.DataType, shape: str
) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray | None]:
    """(converted, invalid mask or None). Blank strings are nulls, not failures; blanks around a value are fine."""
    try:
        return cast(values), None
    except _CAST_ERRORS:
        pass
    values = single(values)
    try:  # usually a few bad values: find them by halving, then give those a second chance without blanks
        converted = _cast_isolating(values, cast, target, budget=[_FEW])
    except _TooManyFailures:
        return _convert_many(values, cast, target, shape)
    failed = np.flatnonzero(valid_mask(values) & ~valid_mask(converted))
    retried = pc.utf8_trim_whitespace(values.take(pa.array(failed)))
    retried = null_out(retried, to_bool_mask(pc.equal(retried, "")))
    fixed = _cast_isolating(retried, cast, target)
    mask = np.zeros(len(values), dtype=bool)
    mask[failed] = True
    converted = pc.replace_with_mask(converted, pa.array(mask), fixed)
    invalid = np.zeros(len(values), dtype=bool)
    invalid[failed[valid_mask(retried) & ~valid_mask(fixed)]] = True
    return converted, (invalid if invalid.any() else None)


def _convert_many(
    values: pa.Array, cast: Callable[[pa.Array], pa.Array], target: pa.DataType, shape: str
) -> tuple[pa.Array, np.ndarray | None]:
    """The vectorised route for a column with many values that do not cast as they are."""
    trimmed = pc.utf8_trim_whitespace(values)
    trimmed = null_out(trimmed, to_bool_mask(pc.equal(trimmed, "")))
    try:
        return cast(trimmed), None
    except _CAST_ERRORS:
        pass
    present = valid_mask(trimmed)
    plausible = to_bool_mask(pc.match_substring_regex(trimmed, shape))
    candidates = null_out(trimmed, present & ~plausible)
    converted = _cast_isolating(candidates, cast, target)
    invalid = present & ~valid_mask(converted)
    return converted, (invalid if invalid.any() else None)


def _cast_double(values: pa.Array) -> pa.Array:
    return pc.cast(values, pa.float64())


def _cast_int(values: pa.Array) -> pa.Array:
    return pc.cast(values, pa.int64())


def parse_timestamps(values: pa.Array) -> pa.Array:
    """ISO 8601 strings to timestamp[us, UTC]: with an offset converted to UTC, without one taken as UTC.

    Raises an Arrow error when any value does not parse (the isolating converters call it on slices).
    """
    attempts = (_ts_aware, _ts_naive)
    first = pc.drop_null(values.slice(0, 64))  # try the form of the first readings first (a failed cast costs)
    if len(first) and not pc.match_substring_regex(first.slice(0, 1), _HAS_OFFSET)[0].as_py():
        attempts = (_ts_naive, _ts_aware)
    for attempt in attempts:
        try:
            return attempt(values)
        except _CAST_ERRORS:
            pass
    values = single(values)
    has_offset = to_bool_mask(pc.match_substring_regex(values, _HAS_OFFSET))
    present = valid_mask(values)
    out = np.zeros(len(values), dtype=np.int64)
    for mask, attempt in ((has_offset & present, _ts_aware), (~has_offset & present, _ts_naive)):
        positions = np.flatnonzero(mask)
        if len(positions):
            parsed = attempt(values.take(pa.array(positions)))  # raises when one of them does not parse
            out[positions] = parsed.cast(pa.int64()).to_numpy(zero_copy_only=False)
    return pa.array(out, mask=~present).cast(TS_UTC)


def _ts_aware(values: pa.Array) -> pa.Array:
    try:
        return pc.cast(values, TS_UTC)
    except _CAST_ERRORS:  # more than six fractional digits: parse as nanoseconds, keep microseconds
        return pc.cast(pc.cast(values, pa.timestamp("ns", tz="UTC")), TS_UTC, safe=False)


def _ts_naive(values: pa.Array) -> pa.Array:
    try:
        parsed = pc.cast(values, TS_NAIVE)
    except _CAST_ERRORS:
        parsed = pc.cast(pc.cast(values, pa.timestamp("ns")), TS_NAIVE, safe=False)
    return parsed.cast(TS_UTC)  # a naive reading is UTC: same instant value, zone attached


def nan_to_null(values: pa.Array) -> pa.Array:
    """NaN is a missing reading, not a number: make it null so required/range rules treat it as missing."""
    nan = pc.is_nan(values)
    if not pc.any(nan).as_py():
        return values
    return null_out(values, to_bool_mask(nan))


def from_strings(values: pa.Array, column_type: str) -> tuple[pa.Array, np.ndarray | None]:
    """Convert a string column to its contract type. Returns (typed array, mask of values that are not that type)."""
    if column_type == "string":
        return values, None
    if column_type == "boolean":
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        lowered = null_out(lowered, to_bool_mask(pc.equal(lowered, "")))
        is_true = to_bool_mask(pc.is_in(lowered, value_set=pa.array(TRUE_VALUES)))
        is_false = to_bool_mask(pc.is_in(lowered, value_set=pa.array(FALSE_VALUES)))
        present = valid_mask(lowered)
        out = pa.array(is_true, mask=~(is_true | is_false))
        invalid = present & ~(is_true | is_false)
        return out, (invalid if invalid.any() else None)
    if column_type == "double":
        converted, invalid = _convert_strings(values, _cast_double, pa.float64(), _DOUBLE_SHAPE)
        return nan_to_null(converted), invalid
    if column_type == "timestamp":
        return _convert_strings(values, parse_timestamps, TS_UTC, _TIMESTAMP_SHAPE)
    if column_type == "integer":
        converted, invalid = _convert_strings(values, _cast_int, pa.int64(), _INTEGER_SHAPE)
        if invalid is None:
            return converted, None
        # integral numbers written as floats ("3.0", "1e3") are integers too
        as_double, _ = _convert_strings(null_out(values, ~invalid), _cast_double, pa.float64(), _DOUBLE_SHAPE)
        integral = to_bool_mask(_integral(as_double))
        rescued = pc.cast(null_out(as_double, ~integral), pa.int64())
        converted = pc.if_else(pa.array(integral), rescued, converted)
        invalid = invalid & ~integral
        return converted, (invalid if invalid.any() else None)
    raise ValueError(f"unknown column type {column_type!r}")


def _integral(values: pa.Array) -> pa.Array:
    finite = pc.is_finite(values)
    whole = pc.equal(pc.floor(values), values)
    in_range = pc.and_(pc.greater_equal(values, -_INT64_LIMIT), pc.less(values, _INT64_LIMIT))
    return pc.and_(pc.and_(finite, whole), in_range)


def from_typed(values: pa.Array, column_type: str) -> tuple[pa.Array, np.ndarray | None]:
    """Convert a typed column (Parquet, a CSV read with declared types, JSON numbers) to its contract type.

    Strings go through :func:`from_strings`; a value of a type the column cannot take is invalid.
    """
    source = values.type
    if pa.types.is_dictionary(source):
        values = values.cast(source.value_type)
        source = values.type
    if pa.types.is_string(source) or pa.types.is_large_string(source):
        return from_strings(values.cast(pa.string()), column_type)
    if pa.types.is_null(source):
        return pa.nulls(len(values), ARROW_TYPES[column_type]), None
    target = ARROW_TYPES[column_type]
    if source == target and column_type != "double":
        return values, None
    if column_type == "integer" and pa.types.is_integer(source):
        converted = _cast_isolating(values, _cast_int, pa.int64())
    elif column_type == "integer" and pa.types.is_floating(source):
        values = nan_to_null(values.cast(pa.float64()))
        integral = to_bool_mask(_integral(values))
        converted = pc.cast(null_out(values, ~integral), pa.int64())
    elif column_type == "double" and (
        pa.types.is_integer(source) or pa.types.is_floating(source) or pa.types.is_decimal(source)
    ):
        converted = nan_to_null(_cast_isolating(values, _cast_double, pa.float64()))
        if pa.types.is_floating(source):  # a NaN read is a missing value, not a failed conversion
            values = nan_to_null(values)
    elif column_type == "boolean" and pa.types.is_boolean(source):
        converted = values
    elif column_type == "timestamp" and pa.types.is_timestamp(source):
        converted = _cast_isolating(values, _timestamp_to_utc, TS_UTC)
    elif column_type == "timestamp" and pa.types.is_date(source):
        converted = _cast_isolating(values, lambda v: pc.cast(v, TS_NAIVE).cast(TS_UTC), TS_UTC)
    else:
        return pa.nulls(len(values), target), _or_none(valid_mask(values))
    invalid = valid_mask(values) & ~valid_mask(converted)
    return converted, _or_none(invalid)


def _timestamp_to_utc(values: pa.Array) -> pa.Array:
    if values.type.tz is None:
        values = pc.cast(values, TS_NAIVE, safe=False)
        return values.cast(TS_UTC)
    return pc.cast(values, TS_UTC, safe=False)


def _or_none(mask: np.ndarray) -> np.ndarray | None:
    return mask if mask.any() else None
