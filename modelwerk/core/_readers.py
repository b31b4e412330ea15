"""Reading landing files into columns: CSV, JSON Lines and Parquet, and the whole-file rejections.

A reader turns bytes into the columns the contract declares (values as read: strings, or typed where the format
carries types), the rows that could not be split into fields (``malformed_row``), and the 1-based row number of every
row. Rows are counted so that every row of the file is either in the columns or among the malformed ones. A file
that cannot be read at all raises :class:`Rejected` with its reason and, where they can be counted, its rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from modelwerk.core._casts import WORKERS
from modelwerk.core.contract import Contract

#: File name extension (lower case) → format.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}

# What a CSV or JSON read with declared types produces per contract type; timestamps are parsed afterwards, because
# a declared zoned timestamp type rejects readings without an offset, and naive readings are UTC by contract.
_READ_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.string(),
}

# Control bytes that do not occur in text (tab, line feed, vertical tab, form feed, carriage return, escape do): a
# file is binary when they make up more than a tenth of its start, or when it holds NUL bytes and is not UTF-8.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27)) + b"\x7f"
_BINARY_SHARE = 0.10
_SAMPLE = 1 << 16
_BLANK = re.compile(rb"\s*")
_TWO_OBJECTS_ON_A_LINE = re.compile(rb"\}[ \t\r]*\{")
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 13))
# Files smaller than this are read line by line: as fast, and Arrow's JSON parser is kept for well-formed big files.
_ARROW_JSON_BYTES = 1 << 16
_PARALLEL_BYTES = 8 << 20  # below this, one serial read is as fast
_READ_ERRORS = (pa.ArrowException, OSError, ValueError, IndexError, KeyError, TypeError)


class Rejected(Exception):
    """The whole file is rejected: ``reason`` as in the decision record, ``rows`` the rows it held (0 if unknown)."""

    def __init__(self, reason: str, rows: int = 0, dropped: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rows = rows
        self.dropped = dropped


@dataclass
class Malformed:
    """A row that could not be split into the declared fields: CSV fields as split, or a JSON line's text."""

    row: int
    fields: list[str] | None = None
    text: str | None = None


@dataclass
class Parsed:
    """The rows of a file that split into fields, by contract column, plus the malformed ones."""

    columns: dict[str, pa.Array | pa.ChunkedArray]
    num_rows: int
    row_numbers: np.ndarray | None = None  # 1-based file row of each row; None: 1..num_rows
    malformed: list[Malformed] = field(default_factory=list)
    wrong_type: dict[str, np.ndarray] = field(default_factory=dict)  # JSON values of a type the column cannot take
    dropped: tuple[str, ...] = ()
    nul: bool = False  # a value may hold a NUL character (text files only)

    @property
    def rows_in(self) -> int:
        return self.num_rows + len(self.malformed)


def file_format(file_name: str) -> str | None:
    """``csv``, ``jsonl`` or ``parquet`` from the file name's extension (any case); None when unsupported."""
    lowered = file_name.lower()
    for extension, fmt in FORMATS.items():
        if lowered.endswith(extension):
            return fmt
    return None


# -- header -------------------------------------------------------------------------------------------------------


class _HeaderRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve_header(names: list[str], contract: Contract) -> tuple[dict[str, int], tuple[str, ...]]:
    """Map contract columns to positions in the file's header; returns (kept, dropped unknown columns).

    Names match after surrounding blanks are stripped (``" site"`` is ``site``). A header that cannot be trusted
    rejects the file, the first of these in this order:

    - ``duplicate_column:<col>``: two header names are the same declared column (also when they differ in case);
    - ``column_name_case:<name>→<col>``: a name differs from a declared column only in case (``Pump_ID→pump_id``);
    - ``missing_column:<col>``: a required column is absent (first in contract order);
    - ``empty_column_name``: a name is empty (a trailing delimiter), under a strict contract;
    - ``unknown_column:<col>``: a name the contract does not declare, under a strict contract (first in file order).

    A lenient contract drops empty and unknown names and lists them (stripped) in the dropped columns.
    """
    declared = set(contract.column_names)
    folded = {name.casefold(): name for name in contract.column_names}
    matches: dict[str, list[tuple[int, str]]] = {}
    unknown: list[str] = []
    for position, written in enumerate(names):
        name = written.strip()
        column = name if name in declared else folded.get(name.casefold()) if name else None
        if column is None:
            unknown.append(name)
        else:
            matches.setdefault(column, []).append((position, name))
    repeated = [column for column, found in matches.items() if len(found) > 1]
    if repeated:
        first = min(repeated, key=lambda column: matches[column][1][0])
        raise _HeaderRejected(f"duplicate_column:{first}")
    for column, ((position, name),) in sorted(matches.items(), key=lambda item: item[1][0][0]):
        if name != column:
            raise _HeaderRejected(f"column_name_case:{name}→{column}")
    for column in contract.columns:
        if column.required and column.name not in matches:
            raise _HeaderRejected(f"missing_column:{column.name}")
    if unknown and contract.unknown_columns == "strict":
        if "" in unknown:
            raise _HeaderRejected("empty_column_name")
        raise _HeaderRejected(f"unknown_column:{unknown[0]}")
    kept = {column: found[0][0] for column, found in matches.items()}
    return kept, tuple(unknown)


# -- text checks --------------------------------------------------------------------------------------------------


def _text(data: bytes, fmt: str) -> bytes:
    """UTF-8 text without a byte order mark, or a rejection: empty_file, encoding, binary_file.

    UTF-16 and UTF-32 are read when a byte order mark says so, and UTF-16 without one when its zero bytes say so
    (every other byte of Latin text); other encodings are rejected with their rows counted. A few NUL bytes do not
    make a file binary: the rows that hold them are quarantined (``nul_byte:<col>``), the others are read.
    """
    if _BLANK.fullmatch(data):
        raise Rejected("empty_file")
    wide = _wide_encoding(data)
    if wide:
        try:
            data = data.decode(wide).encode("utf-8")
        except UnicodeError:
            raise Rejected("encoding", _count_lines(data.decode(wide, errors="replace").encode("utf-8"), fmt)) from None
        if _BLANK.fullmatch(data):
            raise Rejected("empty_file")
    sample = data[:_SAMPLE]
    if len(sample) - len(sample.translate(None, _CONTROL)) > _BINARY_SHARE * len(sample):
        raise Rejected("binary_file")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
        if _BLANK.fullmatch(data):
            raise Rejected("empty_file")
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            if b"\x00" in sample:  # zero bytes in what is not even UTF-8: not text (an image, an archive)
                raise Rejected("binary_file") from None
            raise Rejected("encoding", _count_lines(data, fmt)) from None
    return data


def _wide_encoding(data: bytes) -> str | None:
    """The codec of UTF-32 or UTF-16 text (by its byte order mark, or UTF-16's zero bytes); None for other data."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = data[: _SAMPLE & ~1]
    if len(sample) < 4 or len(data) % 2:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _count_lines(data: bytes, fmt: str) -> int:
    """Rows of a text file that cannot be parsed: non-blank lines, less the header of a CSV."""
    lines = sum(1 for line in re.split(rb"\r\n|\r|\n", data) if line.strip())
    return max(lines - 1, 0) if fmt == "csv" else lines


def _holds_nul(data: bytes) -> bool:
    """Whether a value may hold a NUL character: a NUL byte, or JSON's escaped one."""
    return b"\x00" in data or b"\\u0000" in data


# -- CSV ----------------------------------------------------------------------------------------------------------


def read_csv(data: bytes, contract: Contract) -> Parsed:
    """Read a CSV file: the first non-blank line is the header, every further non-empty line (record) is a row."""
    data = _text(data, "csv").lstrip(b" \t\r\n")
    end = len(data)
    for terminator in (b"\n", b"\r"):
        found = data.find(terminator)
        if found != -1:
            end = min(end, found)
    try:
        header = pa_csv.read_csv(
            io.BytesIO(data[:end] + b"\n"), read_options=pa_csv.ReadOptions(use_threads=False)
        ).column_names
    except _READ_ERRORS:
        raise Rejected("unreadable:csv", _count_lines(data, "csv")) from None
    positional = [f"f{i}" for i in range(len(header))]
    try:
        kept, dropped = resolve_header(header, contract)
    except _HeaderRejected as rejection:
        raise Rejected(rejection.reason, _count_csv_rows(data, positional)) from None

    # Every column is read as text and converted afterwards, column by column (see _casts): one pass over the file
    # whatever it holds. Reading with the declared types saves under a tenth on a clean file (a million rows, serial:
    # 0.29 s against 0.31 s) but must read the whole file again as text when a single value does not convert (0.63 s).
    include = [positional[i] for i in kept.values()]
    convert = pa_csv.ConvertOptions(
        column_types={positional[i]: pa.string() for i in kept.values()},
        include_columns=include,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        check_utf8=False,  # checked once for the whole file in _text
    )
    table, malformed = _read_rows(data, positional, convert)
    if table.num_rows == 0 and not malformed:
        raise Rejected("empty_file")
    parsed = Parsed(
        columns={name: table.column(positional[i]) for name, i in kept.items()},
        num_rows=table.num_rows,
        malformed=[Malformed(row, fields=_split(text)) for row, text in malformed],
        dropped=dropped,
        nul=_holds_nul(data),
    )
    return _number_rows(parsed)


def _read_rows(data: bytes, names: list[str], convert: pa_csv.ConvertOptions) -> tuple[pa.Table, list[tuple[int, str]]]:
    """The rows after the header and the malformed ones as (data row number, text); Rejected when unreadable."""
    parts = _parts(data)
    if len(parts) > 1:
        buffer = pa.py_buffer(data)

        def read(part: tuple[int, int]) -> tuple[pa.Table, list[tuple[int, str]]]:
            malformed: list[tuple[int, str]] = []
            source = pa.BufferReader(buffer.slice(part[0], part[1] - part[0]))
            return _arrow_csv(source, names, convert, malformed, header=False), malformed

        try:
            with ThreadPoolExecutor(max_workers=len(parts)) as pool:
                results = list(pool.map(read, parts))
        except _READ_ERRORS:
            results = []
        if results:
            tables, malformed, offset = [], [], 0
            for table, bad in results:
                malformed += [(row + offset if row > 0 else -1, text) for row, text in bad]
                offset += table.num_rows + len(bad)
                tables.append(table)
            return pa.concat_tables(tables), malformed
    for block_size in (None, len(data) + 1):  # one block for all, when a row is longer than a block
        malformed = []
        try:
            return _arrow_csv(io.BytesIO(data), names, convert, malformed, block_size=block_size), malformed
        except _READ_ERRORS:
            continue
    raise Rejected("unreadable:csv", _count_lines(data, "csv"))


def _parts(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the rows after the header, cut at line ends, to read side by side; one range or none when the
    file is small or a cut could fall inside a quoted value (a quote anywhere after the header)."""
    body = data.find(b"\n") + 1
    if WORKERS < 2 or body == 0 or len(data) - body < _PARALLEL_BYTES or data.find(b'"', body) != -1:
        return []
    if b"\r" in data[: body - 2]:  # the header ends at a lone carriage return: the first line feed is not its end
        return []
    cuts = [body]
    for i in range(1, WORKERS):
        cut = data.find(b"\n", body + (len(data) - body) * i // WORKERS) + 1
        if cut <= cuts[-1]:
            break
        cuts.append(cut)
    cuts.append(len(data))
    view = memoryview(data)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a and not _BLANK.fullmatch(view[a:b])]


def _arrow_csv(
    source: Any,
    names: list[str],
    convert: pa_csv.ConvertOptions,
    malformed: list[tuple[int, str]],
    *,
    header: bool = True,
    block_size: int | None = None,
) -> pa.Table:
    """Read with Arrow, serially: malformed rows are collected with their data row number (counted from 1 after the
    header, blank lines not counted), which Arrow knows only in a serial read."""
    first = 1 if header else 0

    def on_invalid(row: Any) -> str:
        number = row.number if row.number is not None and row.number > first else -1
        malformed.append((number - first if number > 0 else -1, row.text))
        return "skip"

    options = {"block_size": block_size} if block_size else {}
    return pa_csv.read_csv(
        source,
        read_options=pa_csv.ReadOptions(use_threads=False, column_names=names, skip_rows=first, **options),
        parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=False),
        convert_options=convert,
    )


def _count_csv_rows(data: bytes, names: list[str]) -> int:
    malformed: list[tuple[int, str]] = []
    convert = pa_csv.ConvertOptions(column_types={names[0]: pa.string()}, include_columns=names[:1])
    try:
        return _arrow_csv(io.BytesIO(data), names, convert, malformed).num_rows + len(malformed)
    except _READ_ERRORS:
        return _count_lines(data, "csv")


def _split(text: str) -> list[str]:
    try:
        return [value for record in csv.reader(io.StringIO(text)) for value in record]
    except csv.Error:
        return [text]


def _number_rows(parsed: Parsed) -> Parsed:
    """Give the read rows their file row numbers, around the malformed ones."""
    if not parsed.malformed:
        return parsed
    total = parsed.rows_in
    known = [m.row for m in parsed.malformed if 1 <= m.row <= total]
    if len(set(known)) != len(parsed.malformed):
        # positions unknown: number the read rows first, the malformed ones after them
        for offset, row in enumerate(parsed.malformed, start=parsed.num_rows + 1):
            row.row = offset
        return parsed
    numbers = np.arange(1, total + 1, dtype=np.int64)
    parsed.row_numbers = numbers[~np.isin(numbers, np.array(known, dtype=np.int64))]
    return parsed


# -- JSON Lines ---------------------------------------------------------------------------------------------------


def read_jsonl(data: bytes, contract: Contract) -> Parsed:
    """Read JSON Lines: every non-blank line is a row, and must be one JSON object."""
    data = _text(data, "jsonl")
    parsed = _jsonl_declared(data, contract) or _jsonl_lines(data, contract)
    parsed.nul = _holds_nul(data)
    return parsed


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _one_object_per_line(data: bytes) -> bool:
    """Every line, the last one too, is ``{...}`` with nothing around it (LF or CRLF line ends, no blank lines)."""
    body = data[:-1] if data.endswith(b"\n") else data
    body = body[:-1] if body.endswith(b"\r") else body
    if not (body.startswith(b"{") and body.endswith(b"}")):
        return False
    crlf = body.count(b"}\r\n{")
    return body.count(b"\n") == body.count(b"}\n{") + crlf and body.count(b"\r") == crlf


def _jsonl_declared(data: bytes, contract: Contract) -> Parsed | None:
    """The fast path: Arrow reads the lines with the contract's types. None when only a line-by-line read can tell
    what happened (a line that is not an object, a value of another type, a required column that never appears)."""
    if (len(data) < _ARROW_JSON_BYTES or not _one_object_per_line(data) or _TWO_OBJECTS_ON_A_LINE.search(data)
            or len(data.translate(None, _CONTROL_BYTES)) != len(data) or not _is_utf8(data)):
        # Arrow's JSON parser has crashed the process, now and then, on a few hundred random bytes: only big files of
        # plain text with one object per line take it; everything else goes line by line.
        return None
    schema = pa.schema([(c.name, _READ_TYPES[c.type]) for c in contract.columns])
    try:
        # A key outside the contract is an error here, so the slow path reports it as a dropped column.
        table = pa_json.read_json(
            io.BytesIO(data),
            read_options=pa_json.ReadOptions(
                use_threads=WORKERS > 1 and len(data) >= _PARALLEL_BYTES,
                block_size=max(1 << 20, min(len(data), 1 << 26)),
            ),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="error", newlines_in_values=False
            ),
        )
    except _READ_ERRORS:
        return None
    if table.num_rows == 0:
        return None
    for column in contract.columns:
        if column.required and table.column(column.name).null_count == table.num_rows:
            return None  # absent from every line (a file rejection) or null in every line: the slow path tells
    return Parsed(columns={c.name: table.column(c.name) for c in contract.columns}, num_rows=table.num_rows)


def _jsonl_lines(data: bytes, contract: Contract) -> Parsed:
    objects: list[dict[str, Any]] = []
    numbers: list[int] = []
    malformed: list[Malformed] = []
    seen: dict[str, None] = {}
    row = 0
    for line in data.decode("utf-8").split("\n"):
        if not line.strip(" \t\r"):
            continue
        row += 1
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            malformed.append(Malformed(row, text=line.rstrip("\r")))
            continue
        objects.append(value)
        numbers.append(row)
        seen.update(dict.fromkeys(value))
    keys = list(seen)
    try:
        kept, dropped = resolve_header(keys, contract)
    except _HeaderRejected as rejection:
        raise Rejected(rejection.reason, row) from None
    columns: dict[str, pa.Array] = {}
    wrong_type: dict[str, np.ndarray] = {}
    for column in contract.columns:
        if column.name not in kept:
            continue
        key = keys[kept[column.name]]
        texts, wrong = _json_texts([o.get(key) for o in objects], column.type)
        columns[column.name] = pa.array(texts, type=pa.string())
        if wrong.any():
            wrong_type[column.name] = wrong
    return Parsed(
        columns=columns,
        num_rows=len(objects),
        row_numbers=np.array(numbers, dtype=np.int64),
        malformed=malformed,
        wrong_type=wrong_type,
        dropped=dropped,
    )


def _json_texts(values: list[Any], column_type: str) -> tuple[list[str | None], np.ndarray]:
    """Each JSON value as text, and whether its JSON type fits the column (numbers may also come as strings)."""
    texts: list[str | None] = []
    wrong = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if value is None:
            texts.append(None)
            continue
        if isinstance(value, str):
            texts.append(value)
            continue
        texts.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        if isinstance(value, bool):
            wrong[i] = column_type != "boolean"
        elif isinstance(value, (int, float)):
            wrong[i] = column_type not in ("integer", "double")
        else:
            wrong[i] = True
    return texts, wrong


# -- Parquet ------------------------------------------------------------------------------------------------------


def read_parquet(data: bytes, contract: Contract) -> Parsed:
    """Read a Parquet file; its schema is the header."""
    if not data:
        raise Rejected("empty_file")
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        names = parquet.schema_arrow.names
        rows = parquet.metadata.num_rows
    except _READ_ERRORS:
        raise Rejected("unreadable:parquet") from None
    try:
        kept, dropped = resolve_header(names, contract)
    except _HeaderRejected as rejection:
        raise Rejected(rejection.reason, rows) from None
    if rows == 0:
        raise Rejected("empty_file")
    try:
        table = parquet.read(use_threads=False)
    except _READ_ERRORS:
        raise Rejected("unreadable:parquet", rows) from None
    return Parsed(columns={name: table.column(i) for name, i in kept.items()}, num_rows=table.num_rows, dropped=dropped)


READERS = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}
