"""Contract checks of one landing file: the single implementation behind the ingestion Lambda and local mode.

:func:`ingest_file` reads a file (CSV, JSON Lines or Parquet, by extension), checks every row against the use case's
:class:`~modelwerk.core.contract.Contract`, pseudonymizes the personal columns and returns an :class:`IngestResult`:
the accepted rows in the raw zone's schema with their ``dt`` partition, the quarantined rows with their reason, or
the reason the whole file was rejected. Every row that comes in is either accepted or quarantined
(``rows_in == rows_accepted + rows_quarantined``), whatever the bytes.

Row rules, checked in this order (the first failing rule names the reason; within a rule, columns in contract
order): ``nul_byte:<col>`` (a value holding a NUL character), ``type:<col>``, ``out_of_range:<col>`` (min/max inclusive), ``not_allowed:<col>``, ``pattern:<col>`` (full
match), ``missing_required:<col>`` (the contract's timestamp column counts as required: it decides the partition),
then ``duplicate_key`` (within the file, among rows that passed the other rules: the first occurrence is kept).
A row that does not split into the header's fields is ``malformed_row``. Whole-file reasons: ``unsupported_format``,
``empty_file`` (no rows), ``encoding`` (neither UTF-8 nor UTF-16/32 that says so), ``binary_file``,
``unreadable:<format>``, and the header's (see ``_readers.resolve_header``, in this order):
``duplicate_column:<col>``, ``column_name_case:<name>→<col>``, ``missing_column:<col>`` (a required column absent),
``empty_column_name`` and ``unknown_column:<col>`` (strict contracts; lenient ones drop empty and unknown columns
and list them in ``dropped_columns``). A rejected file's rows, where they can be counted, are counted in and
quarantined, so the balance holds for rejected files too (a binary file, an unsupported format and a Parquet file
whose footer cannot be read count none).

Values: empty cells and empty strings are nulls; numbers and timestamps may carry surrounding blanks; integers may
be written as integral floats (``3.0``); booleans are true/false/1/0 in any case; timestamps are ISO 8601 with or
without an offset (without one they are UTC) and are stored as timestamp[us, UTC]; NaN is a missing value.

The happy path is vectorised end to end: Arrow reads a CSV once, as text (in parts side by side when it is large and
unquoted), each column is then converted with one cast (the few values that do not convert are isolated without
giving up the vectorised cast, see ``_casts``), and the rules run as Arrow compute over whole columns. Python loops
run only over distinct values (pattern, allowed values, pseudonymization) or over the lines of a JSON file that
Arrow cannot read as a whole. Columns convert and partitions are written on a few threads (Arrow works outside the
GIL).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelwerk.core import _readers
from modelwerk.core._casts import ARROW_TYPES, TS_UTC, WORKERS, from_typed, null_out, single, take_rows, to_bool_mask
from modelwerk.core.contract import INGESTED_AT, PARTITION_COLUMN, SOURCE_KEY, Column, Contract
from modelwerk.core.pseudonymize import pseudonymize_array, pseudonymize_value

__all__ = [
    "FORMATS",
    "IngestResult",
    "file_format",
    "ingest_file",
    "jsonl_bytes",
    "parquet_bytes",
    "parquet_partitions",
    "raw_arrow_schema",
]

FORMATS = _readers.FORMATS
file_format = _readers.file_format

REASON = "_reason"
ROW = "_row"
FIELDS = "_fields"
TEXT = "_text"


def raw_arrow_schema(contract: Contract) -> pa.Schema:
    """Arrow schema of raw rows: the contract's columns typed, then ``_ingested_at`` and ``_source_key``.

    Example
    -------
    >>> from modelwerk.core.contract import Contract
    >>> c = Contract.from_dict({"use_case": "u", "task": "regression", "label": "y", "key": ["t"], "timestamp": "t",
    ...     "asset": "t", "columns": [{"name": "t", "type": "timestamp", "required": True},
    ...     {"name": "y", "type": "double"}]})
    >>> raw_arrow_schema(c).names
    ['t', 'y', '_ingested_at', '_source_key']
    """
    fields = [pa.field(c.name, ARROW_TYPES[c.type]) for c in contract.columns]
    return pa.schema([*fields, pa.field(INGESTED_AT, TS_UTC), pa.field(SOURCE_KEY, pa.string())])


_DICTIONARY = pa.dictionary(pa.int32(), pa.string())


def _accepted_schema(contract: Contract) -> pa.Schema:
    """The raw schema plus ``dt``, with the string columns dictionary-encoded."""
    schema = raw_arrow_schema(contract)
    strings = [c.name for c in contract.columns if c.type == "string"]
    for name in [*strings, SOURCE_KEY]:
        schema = schema.set(schema.get_field_index(name), pa.field(name, _DICTIONARY))
    return schema.append(pa.field(PARTITION_COLUMN, pa.date32()))


def _quarantine_schema(columns: list[str]) -> pa.Schema:
    return pa.schema(
        [pa.field(REASON, pa.string()), pa.field(ROW, pa.int64()), pa.field(SOURCE_KEY, pa.string())]
        + [pa.field(name, pa.string()) for name in columns]
        + [pa.field(FIELDS, pa.list_(pa.string())), pa.field(TEXT, pa.string())]
    )


@dataclass(frozen=True)
class IngestResult:
    """What became of one landing file.

    ``accepted`` holds the accepted rows in the raw schema plus ``dt`` (date32, the UTC date of the contract's
    timestamp); :meth:`partitions` splits them by ``dt`` for writing. String columns (and ``_source_key``) are
    dictionary-encoded in memory, as Parquet stores them anyway; :func:`parquet_bytes` writes them as plain strings,
    so the files read back in :func:`raw_arrow_schema`. ``quarantine`` holds one row per quarantined
    row: ``_reason``, ``_row`` (1-based row in the file), ``_source_key``, the row's fields as read (strings, personal
    ones pseudonymized), and for a malformed row ``_fields`` (CSV: the fields as split) or ``_text`` (JSON: the line),
    pseudonymized as a whole when the contract has personal columns, since their columns cannot be told apart.
    """

    rows_in: int
    accepted: pa.Table
    quarantine: pa.Table
    file_rejection: str | None = None
    dropped_columns: tuple[str, ...] = ()
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rows_accepted(self) -> int:
        return self.accepted.num_rows

    @property
    def rows_quarantined(self) -> int:
        return self.rows_in - self.rows_accepted

    @property
    def files_quarantined(self) -> int:
        return 1 if self.file_rejection else 0

    @property
    def quarantined_rows(self) -> list[dict[str, Any]]:
        """The quarantined rows as dicts, in file order (keys that do not apply to a row are left out)."""
        return list(self.iter_quarantined_rows())

    def iter_quarantined_rows(self, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
        """The quarantined rows one by one, converted a batch at a time (a file can quarantine millions)."""
        for batch in self.quarantine.to_batches(max_chunksize=batch_size):
            for record in batch.to_pylist():
                if record[REASON] == "malformed_row":  # no columns to show: the fields as split, or the text
                    yield {k: record[k] for k in (REASON, ROW, SOURCE_KEY, FIELDS, TEXT) if record[k] is not None}
                    continue
                del record[FIELDS], record[TEXT]
                yield record

    def quarantine_jsonl(self) -> bytes:
        """The quarantined rows as JSON Lines (the quarantine zone's format); empty bytes when there are none."""
        return jsonl_bytes(self.iter_quarantined_rows())

    def report(self) -> dict[str, Any]:
        """Counts for the ledger and metrics; ``sum(reasons.values()) == rows_quarantined``.

        Example
        -------
        >>> report = IngestResult(0, pa.table({}), pa.table({}), "empty_file", reasons={"empty_file": 0}).report()
        >>> report["files_quarantined"], report["reasons"]
        (1, {'empty_file': 0})
        """
        return {
            "rows_in": self.rows_in,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "files_quarantined": self.files_quarantined,
            "reasons": dict(sorted(self.reasons.items())),
            "dropped_columns": list(self.dropped_columns),
            "file_rejection": self.file_rejection,
        }

    def partitions(self) -> dict[str, pa.Table]:
        """Accepted rows by ``dt`` ('YYYY-MM-DD' → rows in the raw schema, without the ``dt`` column), by date."""
        table = self.accepted
        if table.num_rows == 0:
            return {}
        days = single(table.column(PARTITION_COLUMN).cast(pa.int32())).to_numpy(zero_copy_only=False)
        if (np.diff(days) < 0).any():
            order = np.argsort(days, kind="stable")
            table, days = table.take(pa.array(order)), days[order]
        columns = [name for name in table.column_names if name != PARTITION_COLUMN]
        table = table.select(columns)
        bounds = np.flatnonzero(np.diff(days)) + 1
        starts = [0, *bounds.tolist()]
        ends = [*bounds.tolist(), len(days)]
        epoch = _dt.date(1970, 1, 1)
        return {
            (epoch + _dt.timedelta(days=int(days[start]))).isoformat(): table.slice(start, end - start)
            for start, end in zip(starts, ends)
        }


def ingest_file(
    data: bytes,
    file_name: str,
    contract: Contract,
    *,
    pseudonymization_key: bytes,
    source_key: str,
    ingested_at: _dt.datetime,
) -> IngestResult:
    """Check one landing file against its contract.

    Parameters
    ----------
    data
        The file's bytes.
    file_name
        Its name; the extension picks the format (.csv, .jsonl/.ndjson/.json, .parquet).
    contract
        The use case's contract.
    pseudonymization_key
        Secret key of the HMAC that replaces personal values.
    source_key
        ``s3://bucket/key`` of the landing object, stored with every row.
    ingested_at
        Time of the ingestion (naive means UTC), stored with every row.

    Example
    -------
    >>> from datetime import datetime, timezone
    >>> from modelwerk.core.contract import Contract
    >>> c = Contract.from_dict({"use_case": "u", "task": "regression", "label": "y", "key": ["t"], "timestamp": "t",
    ...     "asset": "t", "columns": [{"name": "t", "type": "timestamp", "required": True},
    ...     {"name": "y", "type": "double", "min": 0}]})
    >>> r = ingest_file(b"t,y\\n2024-01-01T00:00:00Z,1.5\\n2024-01-01T01:00:00Z,-1\\n", "a.csv", c,
    ...     pseudonymization_key=b"k", source_key="s3://landing/u/a.csv",
    ...     ingested_at=datetime(2024, 1, 2, tzinfo=timezone.utc))
    >>> r.report()["rows_accepted"], r.report()["reasons"]
    (1, {'out_of_range:y': 1})
    """
    ingested_at = _utc(ingested_at)
    fmt = file_format(file_name)
    try:
        if fmt is None:
            raise _readers.Rejected("unsupported_format")
        parsed = _readers.READERS[fmt](data, contract)
    except _readers.Rejected as rejection:
        return IngestResult(
            rows_in=rejection.rows,
            accepted=_accepted_schema(contract).empty_table(),
            quarantine=_quarantine_schema([]).empty_table(),
            file_rejection=rejection.reason,
            dropped_columns=rejection.dropped,
            reasons={rejection.reason: rejection.rows},
        )
    return _check(parsed, contract, pseudonymization_key, source_key, ingested_at)


def _utc(moment: _dt.datetime) -> _dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc)


class _Reasons:
    """The first failing rule of every row: a code per row (-1: none yet) and the reason of each code."""

    def __init__(self, rows: int) -> None:
        self.codes = np.full(rows, -1, dtype=np.int32)
        self.names: list[str] = []

    def mark(self, failed: np.ndarray | pa.Array | pa.ChunkedArray | None, reason: str) -> None:
        """Give ``reason`` to the rows in ``failed`` (a mask; Arrow nulls count as False) that have none yet."""
        if failed is None:
            return
        if not isinstance(failed, np.ndarray):
            if not pc.any(failed).as_py():  # the common case: nothing fails, no mask to convert
                return
            failed = to_bool_mask(failed)
        first = failed & (self.codes < 0)
        if first.any():
            self.codes[first] = len(self.names)
            self.names.append(reason)

    @property
    def ok(self) -> np.ndarray:
        return self.codes < 0


def _check(
    parsed: _readers.Parsed, contract: Contract, key: bytes, source_key: str, ingested_at: _dt.datetime
) -> IngestResult:
    n = parsed.num_rows
    reasons = _Reasons(n)
    typed: dict[str, pa.Array | pa.ChunkedArray] = {}
    # Arrow releases the GIL while it converts: the columns convert side by side.
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        conversions = list(pool.map(lambda column: _convert(parsed, column), contract.columns))
    if parsed.nul:
        for column in contract.columns:
            reasons.mark(_nul_values(parsed.columns.get(column.name)), f"nul_byte:{column.name}")
    for column, (converted, invalid) in zip(contract.columns, conversions):
        typed[column.name] = converted
        reasons.mark(invalid, f"type:{column.name}")
    for column in contract.columns:
        if column.min is not None or column.max is not None:
            reasons.mark(_out_of_range(typed[column.name], column.min, column.max), f"out_of_range:{column.name}")
    for column in contract.columns:
        if column.allowed is not None:
            reasons.mark(_not_allowed(typed[column.name], column.allowed), f"not_allowed:{column.name}")
    for column in contract.columns:
        if column.pattern:
            reasons.mark(_pattern_failures(typed[column.name], column.pattern), f"pattern:{column.name}")
    for column in contract.columns:
        values = typed[column.name]
        if (column.required or column.name == contract.timestamp) and values.null_count:
            reasons.mark(pc.is_null(values), f"missing_required:{column.name}")
    reasons.mark(_duplicates(typed, contract.key, reasons.ok), "duplicate_key")

    ok = reasons.ok
    accepted = _accepted(typed, ok, contract, key, source_key, ingested_at)
    quarantine = _quarantine(parsed, reasons, contract, key, source_key)
    tally = np.bincount(reasons.codes[~ok], minlength=len(reasons.names))
    counts = Counter({name: int(count) for name, count in zip(reasons.names, tally) if count})
    if parsed.malformed:
        counts["malformed_row"] += len(parsed.malformed)
    return IngestResult(
        rows_in=parsed.rows_in,
        accepted=accepted,
        quarantine=quarantine,
        dropped_columns=parsed.dropped,
        reasons=dict(counts),
    )


def _convert(parsed: _readers.Parsed, column: Column) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray | None]:
    """A column in its contract type, and the rows whose value is not of that type."""
    values = parsed.columns.get(column.name)
    if values is None:
        absent = pa.nulls(parsed.num_rows, ARROW_TYPES[column.type])
        return (pc.dictionary_encode(absent) if column.type == "string" else absent), None
    wrong = parsed.wrong_type.get(column.name)
    converted, invalid = from_typed(null_out(values, wrong) if wrong is not None else values, column.type)
    if wrong is not None:
        invalid = wrong if invalid is None else invalid | wrong
    if column.type == "string":  # hashed once here; the rules and the writer then work on the distinct values
        converted = _empty_is_null(pc.dictionary_encode(single(converted)))
    return converted, invalid


def _nul_values(values: pa.Array | pa.ChunkedArray | None) -> pa.Array | pa.ChunkedArray | None:
    """Values as read that hold a NUL character (no type takes one, and no reader downstream expects one)."""
    if values is None or not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return None
    return pc.match_substring(values, "\x00")


def _empty_is_null(values: pa.DictionaryArray) -> pa.DictionaryArray:
    """An empty string is no value, whatever the format (a CSV reads it as null already)."""
    empty = pc.index(values.dictionary, "").as_py()
    if empty < 0:
        return values
    indices = pc.if_else(pc.equal(values.indices, empty), pa.scalar(None, values.indices.type), values.indices)
    return pa.DictionaryArray.from_arrays(indices, values.dictionary)


def _out_of_range(values: pa.Array | pa.ChunkedArray, low: float | None, high: float | None) -> pa.Array | None:
    """Values below ``low`` or above ``high`` (both inclusive bounds); one min/max pass when all are inside."""
    extremes = pc.min_max(values)
    smallest, largest = extremes["min"].as_py(), extremes["max"].as_py()
    if smallest is None:
        return None
    failures = []
    if low is not None and smallest < low:
        failures.append(pc.less(values, low))
    if high is not None and largest > high:
        failures.append(pc.greater(values, high))
    if not failures:
        return None
    return failures[0] if len(failures) == 1 else pc.or_(failures[0], failures[1])


def _failing_values(values: pa.DictionaryArray, passes: Any) -> pa.Array | None:
    """Rows whose value fails ``passes``, tested once per distinct value of a dictionary-encoded column."""
    dictionary = values.dictionary.to_pylist()
    failing = [code for code, value in enumerate(dictionary) if value is not None and not passes(value)]
    if not failing:
        return None
    return pc.is_in(values.indices, value_set=pa.array(failing, type=values.indices.type))


def _not_allowed(values: pa.DictionaryArray, allowed: tuple[str, ...]) -> pa.Array | None:
    permitted = set(allowed)
    return _failing_values(values, permitted.__contains__)


def _pattern_failures(values: pa.DictionaryArray, pattern: str) -> pa.Array | None:
    """Full-match the contract's (Python) regular expression, once per distinct value."""
    regex = re.compile(pattern)
    return _failing_values(values, lambda value: regex.fullmatch(value) is not None)


def _duplicates(
    typed: dict[str, pa.Array | pa.ChunkedArray], key: tuple[str, ...], ok: np.ndarray
) -> np.ndarray | None:
    """Rows whose key an earlier passing row already has."""
    candidates = np.flatnonzero(ok)
    if len(candidates) < 2 or not key:
        return None
    subset = None if len(candidates) == len(ok) else candidates
    combined = np.zeros(len(candidates), dtype=np.int64)
    cardinality = 1  # combined codes are below this
    for name in key:
        codes, width = _key_codes(single(typed[name]))
        if subset is not None:
            codes = codes[subset]
        if cardinality * width >= 2**62:  # renumber densely before the product could overflow
            combined, uniques = pd.factorize(combined)
            combined, cardinality = combined.astype(np.int64), len(uniques)
        combined = combined * width + codes
        cardinality *= width
    repeated = pd.Series(combined, copy=False).duplicated(keep="first").to_numpy()
    if not repeated.any():
        return None
    failed = np.zeros(len(ok), dtype=bool)
    failed[candidates[repeated]] = True
    return failed


def _key_codes(values: pa.Array) -> tuple[np.ndarray, int]:
    """Non-negative int64 codes, equal exactly for equal values, and a bound ``width`` (codes < width).

    Integers and timestamps in a narrow range (a file's readings) are their offset from the minimum, which costs no
    hashing; strings are already dictionary-encoded; anything else is encoded here.
    """
    if pa.types.is_dictionary(values.type):
        width = len(values.dictionary) + 1  # nulls (never in a key that passed missing_required) get the last code
        return pc.fill_null(values.indices, width - 1).to_numpy(zero_copy_only=False).astype(np.int64), width
    if pa.types.is_integer(values.type) or pa.types.is_timestamp(values.type):
        extremes = pc.min_max(values)
        low, high = extremes["min"].cast(pa.int64()).as_py(), extremes["max"].cast(pa.int64()).as_py()
        if low is not None and high - low < 2**40:
            numbers = pc.fill_null(values.cast(pa.int64()), high + 1).to_numpy(zero_copy_only=False)
            return numbers - low, high - low + 2  # a null (failed rows only) gets the last code
    encoded = pc.dictionary_encode(values)
    width = len(encoded.dictionary) + 1  # nulls (never in a key that passed missing_required) get the last code
    indices = pc.fill_null(encoded.indices, width - 1)
    return indices.to_numpy(zero_copy_only=False).astype(np.int64), width


def _accepted(
    typed: dict[str, pa.Array | pa.ChunkedArray],
    ok: np.ndarray,
    contract: Contract,
    key: bytes,
    source_key: str,
    ingested_at: _dt.datetime,
) -> pa.Table:
    keep = _keeper(ok)
    columns = []
    for column in contract.columns:
        values = typed[column.name]
        if column.personal:  # a dictionary: only its distinct values are hashed
            values = pseudonymize_array(values, key, as_dictionary=True)
        columns.append(keep(values))
    rows = int(ok.sum())
    timestamps = columns[contract.column_names.index(contract.timestamp)]
    columns.append(pa.repeat(pa.scalar(ingested_at, type=TS_UTC), rows))
    columns.append(pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([source_key])))
    columns.append(pc.cast(timestamps, pa.date32()))
    return pa.Table.from_arrays(columns, schema=_accepted_schema(contract))


_MAX_RUNS = 1024


def _keeper(ok: np.ndarray) -> Any:
    """A function that keeps the rows in ``ok``: slices around the failing rows when they are few (no copy), a
    filter otherwise."""
    if ok.all():
        return lambda values: values
    edges = np.flatnonzero(np.diff(np.concatenate([[False], ok, [False]]).astype(np.int8)))
    runs = list(zip(edges[::2].tolist(), (edges[1::2] - edges[::2]).tolist()))
    if len(runs) > _MAX_RUNS:
        mask = pa.array(ok)
        return lambda values: values.filter(mask)

    def keep(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
        pieces = [values.slice(start, length) for start, length in runs]
        chunks = [c for p in pieces for c in (p.chunks if isinstance(p, pa.ChunkedArray) else [p]) if len(c)]
        return pa.chunked_array(chunks, type=values.type)

    return keep


def _as_text(values: pa.Array) -> pa.Array:
    """Values as strings, the way the quarantine shows them."""
    if pa.types.is_string(values.type):
        return values
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    try:
        return pc.cast(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return pa.array(
            [None if v is None else json.dumps(v, default=str, ensure_ascii=False) for v in values.to_pylist()],
            type=pa.string(),
        )


def _quarantine(
    parsed: _readers.Parsed, reasons: _Reasons, contract: Contract, key: bytes, source_key: str
) -> pa.Table:
    present = [c.name for c in contract.columns if c.name in parsed.columns]
    schema = _quarantine_schema(present)
    bad = np.flatnonzero(~reasons.ok)
    parts = []
    if len(bad):
        numbers = parsed.row_numbers[bad] if parsed.row_numbers is not None else bad.astype(np.int64) + 1
        reason_names = pa.array(reasons.names, type=pa.string())
        arrays: list[Any] = [
            reason_names.take(pa.array(reasons.codes[bad])),
            pa.array(numbers, type=pa.int64()),
            pa.repeat(pa.scalar(source_key, type=pa.string()), len(bad)),
        ]
        for name in present:
            text = _as_text(take_rows(parsed.columns[name], bad))
            arrays.append(pseudonymize_array(text, key) if contract.column(name).personal else text)
        arrays += [pa.nulls(len(bad), pa.list_(pa.string())), pa.nulls(len(bad), pa.string())]
        parts.append(pa.Table.from_arrays(arrays, schema=schema))
    if parsed.malformed:
        personal = bool(contract.personal_columns)

        def hide(value: str | None) -> str | None:
            return pseudonymize_value(value, key) if personal and value is not None else value

        records = [
            {
                REASON: "malformed_row",
                ROW: m.row,
                SOURCE_KEY: source_key,
                FIELDS: None if m.fields is None else [hide(v) for v in m.fields],
                TEXT: hide(m.text),
            }
            for m in parsed.malformed
        ]
        parts.append(pa.Table.from_pylist(records, schema=schema))
    if not parts:
        return schema.empty_table()
    table = pa.concat_tables(parts)
    return table.sort_by(ROW) if len(parts) > 1 else table


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as Parquet (Snappy-compressed), ready to put to S3."""
    sink = pa.BufferOutputStream()
    # without the Arrow schema, dictionary-encoded strings read back as strings (the raw schema)
    pq.write_table(table, sink, compression="snappy", store_schema=False)
    return sink.getvalue().to_pybytes()


def parquet_partitions(result: IngestResult) -> dict[str, bytes]:
    """The accepted rows as one Parquet file per ``dt`` ('YYYY-MM-DD' → bytes), written side by side."""
    partitions = result.partitions()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return dict(zip(partitions, pool.map(parquet_bytes, partitions.values())))


def jsonl_bytes(records: Iterable[dict[str, Any]]) -> bytes:
    """Dicts as JSON Lines (UTF-8, one compact object per line); empty bytes for no records."""
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
    sink = io.BytesIO()
    batch: list[str] = []
    for record in records:
        batch.append(encode(record))
        if len(batch) == 10_000:
            sink.write(("\n".join(batch) + "\n").encode("utf-8"))
            batch.clear()
    if batch:
        sink.write(("\n".join(batch) + "\n").encode("utf-8"))
    return sink.getvalue()
