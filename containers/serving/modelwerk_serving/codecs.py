"""Request bodies to rows of features, predictions to response bodies: SageMaker's CSV, JSON and JSON Lines.

Requests
    ``text/csv``: rows without a header, the model's columns in ``input_schema`` order, quoted as RFC 4180 when a
    value needs it. ``application/json``: ``{"instances": [...]}``, a bare list, or one object; each row a list of
    values in column order or an object of ``column: value`` (every column named, ``null`` for a missing value).
    ``application/jsonlines``: one row (list or object) per line. Empty lines carry no row.

Values
    By the column's type in the model's ``input_schema`` (the contract's types, or Glue's names for them): numbers
    (``double``, ``integer``, ``bigint``, ...) become float64, booleans 1.0/0.0 (``true``/``false``/``1``/``0``),
    strings stay strings, timestamps are ISO-8601 times. An empty value, ``null`` or ``nan`` is missing (NaN),
    refused in a column the contract requires (``"required": true`` in ``input_schema``, the rule its training data
    had) and otherwise the model's business. A number must be finite: ``inf``, ``-inf`` and what overflows float64
    (``1e309``, a 400-digit integer) are refused, as JSON's ``NaN``/``Infinity`` constants are.

Limits
    The body is at most SageMaker's 6 MB (the app checks) and JSON at most :data:`MAX_JSON_DEPTH` deep. Every refusal
    is a :class:`BadRequest` (400) naming the row and the column; reading a body never answers 5xx.

Responses
    ``text/csv``: one prediction per line. ``application/json``: ``{"predictions": [...]}``.
    ``application/jsonlines``: ``{"prediction": value}`` per line. Predictions are JSON-native (a label or a number;
    a missing or non-finite number is ``null`` in JSON and empty in CSV).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from modelwerk_serving.errors import BadRequest, HTTPError, ModelLoadError

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
FORMATS = (CSV, JSON, JSONLINES)
#: Media types a request or an Accept header may name, to the format they mean.
_MEDIA_TYPES = {
    CSV: CSV,
    JSON: JSON,
    JSONLINES: JSONLINES,
    "application/x-jsonlines": JSONLINES,
}
_SUPPORTED = "text/csv, application/json or application/jsonlines"

#: Column kinds by type name: the contract's types and the Glue/Athena names of the same.
_KINDS = {
    **dict.fromkeys(("double", "float", "real", "integer", "int", "bigint", "smallint", "tinyint", "long",
                     "decimal", "numeric"), "number"),
    **dict.fromkeys(("boolean", "bool"), "boolean"),
    **dict.fromkeys(("string", "varchar", "char", "text"), "string"),
    **dict.fromkeys(("timestamp", "date", "datetime"), "timestamp"),
}
_PARAMETERS = re.compile(r"\(.*\)$")  # decimal(10,2), varchar(64)
_BOOLEAN_TEXT = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}
_NAN = float("nan")
#: How deep a JSON request may nest: ``{"instances": [[...]]}`` is 3; a value is never a container.
MAX_JSON_DEPTH = 8
#: The bytes a plain numeric CSV body is made of (see :meth:`InputSchema.plain_csv`).
_PLAIN_CSV_BYTES = b"0123456789+-.eE,\n"
#: Predictions of these exact types are one ``repr`` a CSV line (booleans, None and strings take ``_csv_cell``).
_NUMBER_TYPES = {int, float}
#: JSON integers longer than this are read as floats (exact to 2**53 anyway), so a huge one overflows to inf and is
#: refused as not finite instead of costing a quadratic int conversion.
_LONGEST_INT = 18


# --------------------------------------------------------------------------------------------------------------------
# Content negotiation


def media_type(header: str | None) -> str:
    """The media type of a Content-Type or Accept entry, lower case, without parameters."""
    return (header or "").split(";", 1)[0].strip().lower()


def request_format(content_type: str | None) -> str:
    """The format of a request body from its Content-Type; 415 if the server does not read it."""
    fmt = _MEDIA_TYPES.get(media_type(content_type))
    if fmt is None:
        if not content_type:
            raise HTTPError(415, f"the request has no Content-Type; send {_SUPPORTED}")
        raise HTTPError(415, f"Content-Type {content_type!r} is not supported; send {_SUPPORTED}")
    return fmt


def response_format(accept: str | None, request: str) -> str:
    """The format of the response: the Accept header's preferred one the server writes, else the request's; 406."""
    if not accept:
        return request
    exact = _MEDIA_TYPES.get(accept.strip().lower())
    if exact is not None:
        return exact
    best, best_quality = None, 0.0
    for entry in accept.split(","):
        media, _, parameters = entry.partition(";")
        media = media.strip().lower()
        quality = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media in ("*/*", "*", ""):
            candidate = request
        elif media == "text/*":
            candidate = CSV
        elif media == "application/*":
            candidate = request if request != CSV else JSON
        else:
            candidate = _MEDIA_TYPES.get(media)
        if candidate is not None and quality > best_quality:
            best, best_quality = candidate, quality
    if best is None:
        raise HTTPError(406, f"Accept {accept!r}: the server answers {_SUPPORTED}")
    return best


# --------------------------------------------------------------------------------------------------------------------
# The model's columns


def column_kind(type_name: str) -> str:
    """``number``, ``boolean``, ``string`` or ``timestamp`` for a type name of an ``input_schema``."""
    kind = _KINDS.get(_PARAMETERS.sub("", str(type_name).strip().lower()))
    if kind is None:
        raise ModelLoadError(f"input_schema type {type_name!r} is not one the server knows ({', '.join(sorted(_KINDS))})")
    return kind


class InputSchema:
    """The columns a request sends, in order (``metadata.json``'s ``input_schema``), and how to read their values."""

    def __init__(self, fields: Sequence[Mapping[str, Any]]):
        if not isinstance(fields, Sequence) or isinstance(fields, str) or not fields:
            raise ModelLoadError("metadata.json: input_schema must be a non-empty list of {name, type}")
        names, types, required = [], [], []
        for field in fields:
            if not isinstance(field, Mapping) or not isinstance(field.get("name"), str) or "type" not in field:
                raise ModelLoadError(f"metadata.json: input_schema entry {field!r} is not {{name, type}}")
            names.append(field["name"])
            types.append(str(field["type"]))
            required.append(field.get("required") is True)
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)
        if repeated:
            raise ModelLoadError(f"metadata.json: input_schema names {repeated} more than once")
        self.names: tuple[str, ...] = tuple(names)
        self.types: tuple[str, ...] = tuple(types)
        self.kinds: tuple[str, ...] = tuple(column_kind(t) for t in types)
        self.required: tuple[bool, ...] = tuple(required)
        self.width = len(names)
        self._name_set = frozenset(names)
        self._names_list = list(names)
        self.numeric = all(kind in ("number", "boolean") for kind in self.kinds)
        self._numbers_only = all(kind == "number" for kind in self.kinds)
        # A first CSV row equal to the column names is a header only if some non-string column has a name that is
        # not itself a number; otherwise it could be data.
        self._lower_names = [n.strip().lower() for n in names]
        self._header_detectable = any(k != "string" and not _is_number(n) for k, n in zip(self.kinds, names))

    def describe(self) -> str:
        shown = ", ".join(self.names[:12]) + (", ..." if self.width > 12 else "")
        return f"{self.width} column(s): {shown}"

    # -- bodies to rows ------------------------------------------------------------------------------------------

    def rows(self, body: bytes, fmt: str) -> list[list[Any]]:
        """The body's rows as lists of raw values in column order; :class:`BadRequest` if it holds none or bad ones."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"the body is not UTF-8 text (byte {exc.start} cannot be decoded)") from None
        if fmt == CSV:
            rows = self._csv_rows(text)
        elif fmt == JSON:
            rows = [self._row(r, i) for i, r in enumerate(_json_rows(text), start=1)]
        else:
            rows = [self._row(r, i) for i, r in enumerate(_jsonlines_rows(text), start=1)]
        if not rows:
            raise BadRequest("the body holds no rows")
        return rows

    def plain_csv(self, body: bytes) -> np.ndarray | None:
        """A CSV body of plain numbers (digits, signs, points, exponents, commas and newlines only) read in one pass
        by pandas' C reader, as a float64 array; None when the body is anything else, or any value is not finite or
        a row not this schema's width: :meth:`rows` then reads it (and names what is wrong). For such bodies the C
        reader accepts exactly what ``float()`` does and rounds the same; it skips empty lines as :meth:`rows` does."""
        if not self._numbers_only or not body or body.translate(None, _PLAIN_CSV_BYTES):
            return None
        import pandas as pd

        try:
            frame = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float64, na_filter=False, engine="c")
            array = frame.to_numpy()
        except Exception:  # noqa: BLE001 - not a table this reader takes: the general reader answers for the body
            return None
        if array.ndim != 2 or array.shape[1] != self.width or not np.isfinite(array).all():
            return None
        return np.ascontiguousarray(array)

    def _csv_rows(self, text: str) -> list[list[Any]]:
        if '"' not in text:  # no quoting: the same rows csv.reader would read, without its per-line overhead
            rows = []
            for line in text.split("\n"):
                line = line.removesuffix("\r")
                if line:
                    rows.append(line.split(","))
        else:
            reader = csv.reader(io.StringIO(text, newline=""), strict=True)
            try:
                rows = [row for row in reader if row]
            except csv.Error as exc:
                raise BadRequest(f"malformed CSV at line {reader.line_num}: {exc}") from None
        if (self._header_detectable and rows and rows[0][0].strip().lower() == self._lower_names[0]
                and [v.strip().lower() for v in rows[0]] == self._lower_names):
            raise BadRequest(f"row 1 is a header; a CSV body holds rows only, in this column order: {self.describe()}")
        width = self.width
        for number, row in enumerate(rows, start=1):
            if len(row) != width:
                raise BadRequest(f"row {number} has {len(row)} value(s); the model takes {self.describe()}")
        return rows

    def _row(self, row: Any, number: int) -> list[Any]:
        if isinstance(row, list):
            if len(row) != self.width:
                raise BadRequest(f"row {number} has {len(row)} value(s); the model takes {self.describe()}")
            return row
        if isinstance(row, dict):
            if row.keys() != self._name_set:
                unknown = sorted(set(row) - self._name_set)
                missing = [n for n in self.names if n not in row]
                parts = []
                if unknown:
                    parts.append(f"unknown column(s) {_short(unknown)}")
                if missing:
                    parts.append(f"no value for {_short(missing)} (send null for a missing value)")
                raise BadRequest(f"row {number}: {'; '.join(parts)}; the model takes {self.describe()}")
            return [row[name] for name in self._names_list]
        raise BadRequest(
            f"row {number} is {_kind_of(row)}; a row is a list of values in column order or an object of "
            f"column: value (one row as JSON: [[...]] or {{...}})"
        )

    # -- rows to features ----------------------------------------------------------------------------------------

    def array(self, rows: list[list[Any]]) -> np.ndarray:
        """A float64 array (rows x columns) for a model fitted on an array; every column must be numeric."""
        if self._numbers_only:
            try:
                array = np.array(rows, dtype=np.float64)
                if array.ndim == 2 and np.isfinite(array).all():  # not lists as values, nothing missing or infinite
                    return array
            except (ValueError, TypeError, OverflowError):
                pass  # an empty value, or a value that is not a number: the column readers say which
        out = np.empty((len(rows), self.width), dtype=np.float64)
        for j, kind in enumerate(self.kinds):
            out[:, j] = self._numbers(rows, j) if kind == "number" else self._booleans(rows, j)
        return out

    def frame(self, rows: list[list[Any]], order: Sequence[str]) -> Any:
        """A DataFrame with the columns in ``order`` (the model's ``feature_names_in_``), typed as in training:
        numbers and booleans float64, strings object (NaN where missing), timestamps UTC."""
        import pandas as pd

        position = {name: j for j, name in enumerate(self.names)}
        data = {}
        for name in order:
            j = position[name]
            kind = self.kinds[j]
            if kind == "number":
                data[name] = self._numbers(rows, j)
            elif kind == "boolean":
                data[name] = self._booleans(rows, j)
            elif kind == "string":
                data[name] = pd.Series(self._strings(rows, j), dtype=object)
            else:
                data[name] = self._timestamps(rows, j)
        return pd.DataFrame(data)

    def _bad(self, number: int, j: int, value: Any, what: str) -> BadRequest:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return BadRequest(f"row {number}, column {self.names[j]!r} ({self.types[j]}): {shown} is not {what}")

    def _numbers(self, rows: list[list[Any]], j: int) -> np.ndarray:
        values = [row[j] for row in rows]
        try:
            array = np.array([_NAN if v is None or v == "" else v for v in values], dtype=np.float64)
            if array.ndim == 1:  # not a list of lists
                return self._checked(array, values, j)
        except (ValueError, TypeError, OverflowError):
            pass
        for number, value in enumerate(values, start=1):
            if isinstance(value, (list, dict, bool)):
                raise self._bad(number, j, value, "a number")
            if isinstance(value, str) and value:
                try:
                    float(value)
                except ValueError:
                    raise self._bad(number, j, value, "a number") from None
            if isinstance(value, int) and not isinstance(value, bool):
                try:
                    float(value)
                except OverflowError:
                    raise self._bad(number, j, value, "a finite number (it overflows a double)") from None
        raise BadRequest(f"column {self.names[j]!r} ({self.types[j]}) holds values that are not numbers")

    def _checked(self, array: np.ndarray, values: list[Any], j: int) -> np.ndarray:
        """``array`` when every value is finite, or missing in a column that allows it; else 400 naming the first."""
        finite = np.isfinite(array)
        if finite.all():
            return array
        missing = np.isnan(array)
        bad = ~finite & ~missing if not self.required[j] else ~finite
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            if missing[first]:
                raise self._bad(first + 1, j, values[first], "a value (the column is required: no missing values)")
            raise self._bad(first + 1, j, values[first], "a finite number")
        return array

    def _booleans(self, rows: list[list[Any]], j: int) -> np.ndarray:
        out = np.empty(len(rows), dtype=np.float64)
        for i, row in enumerate(rows):
            value = row[j]
            if value is None or value == "":
                if self.required[j]:
                    raise self._bad(i + 1, j, value, "a value (the column is required: no missing values)")
                out[i] = _NAN
            elif isinstance(value, (bool, int, float)) and value in (0, 1):
                out[i] = float(value)
            elif isinstance(value, str) and value.strip().lower() in _BOOLEAN_TEXT:
                out[i] = _BOOLEAN_TEXT[value.strip().lower()]
            else:
                raise self._bad(i + 1, j, value, "a boolean (true, false, 1 or 0)")
        return out

    def _strings(self, rows: list[list[Any]], j: int) -> list[Any]:
        out: list[Any] = []
        for i, row in enumerate(rows):
            value = row[j]
            if value is None or value == "":
                if self.required[j]:
                    raise self._bad(i + 1, j, value, "a value (the column is required: no missing values)")
                out.append(_NAN)
            elif isinstance(value, str):
                out.append(value)
            elif isinstance(value, (bool, int, float)):
                out.append(str(value))
            else:
                raise self._bad(i + 1, j, value, "a string")
        return out

    def _timestamps(self, rows: list[list[Any]], j: int) -> Any:
        import pandas as pd

        texts = []
        for i, row in enumerate(rows):
            value = row[j]
            if value is not None and not isinstance(value, str):
                raise self._bad(i + 1, j, value, "an ISO-8601 time")
            if not value and self.required[j]:
                raise self._bad(i + 1, j, value, "a value (the column is required: no missing values)")
            texts.append(value or None)
        parsed = pd.to_datetime(pd.Series(texts, dtype=object), utc=True, format="ISO8601", errors="coerce")
        bad = parsed.isna() & pd.Series([t is not None for t in texts])
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            raise self._bad(first + 1, j, texts[first], "an ISO-8601 time")
        return parsed


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(type(value), type(value).__name__)


def _short(names: Iterable[str], limit: int = 8) -> str:
    names = list(names)
    return ", ".join(repr(n) for n in names[:limit]) + (", ..." if len(names) > limit else "")


def _refuse_constant(name: str) -> Any:
    raise BadRequest(f"JSON has no {name}: send a finite number, or null for a missing value")


def _json_int(text: str) -> int | float:
    return int(text) if len(text) <= _LONGEST_INT else float(text)


def _too_deep(text: str) -> bool:
    """Whether JSON text nests deeper than :data:`MAX_JSON_DEPTH` (brackets inside strings count too: a body that
    needs them that deep is no request of this contract either)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    depth = deepest = 0
    for char in re.sub(r'"(?:[^"\\]|\\.)*"|[^\[\]{}]', "", text):
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return True
    return False


def _parse_json(text: str, where: str) -> Any:
    """One JSON document with the limits above; :class:`BadRequest` for anything that is not such a document."""
    if _too_deep(text):
        raise BadRequest(f"the JSON{where} nests more than {MAX_JSON_DEPTH} deep; a row is a list or an object of "
                         "values")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON{where}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (RecursionError, ValueError) as exc:
        raise BadRequest(f"malformed JSON{where}: {type(exc).__name__}: {exc}") from None


def _json_rows(text: str) -> list[Any]:
    document = _parse_json(text, "")
    if isinstance(document, dict):
        if "instances" in document:
            rows = document["instances"]
            if not isinstance(rows, list):
                raise BadRequest(f"\"instances\" is {_kind_of(rows)}; it must be a list of rows")
            return rows
        return [document]
    if isinstance(document, list):
        return document
    raise BadRequest(f"the JSON body is {_kind_of(document)}; send {{\"instances\": [...]}}, a list of rows or an object")


def _jsonlines_rows(text: str) -> list[Any]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        rows.append(_parse_json(line, f" on line {number}"))
    return rows


# --------------------------------------------------------------------------------------------------------------------
# Predictions to bodies


def native(predictions: Any) -> list[Any]:
    """Predictions as JSON-native Python values; a missing or non-finite number becomes None."""
    array = np.asarray(predictions)
    kind = array.dtype.kind
    if kind == "f":
        values = array.tolist()
        if not np.isfinite(array).all():
            values = _finite(values)
        return values
    if kind in "iub":
        return array.tolist()
    if kind == "M":
        return np.datetime_as_string(array, timezone="UTC").tolist()
    if kind in "US":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.tolist()]
    return [_plain(v) for v in array.tolist()]


def _finite(values: Any) -> Any:
    if isinstance(values, list):
        return [_finite(v) for v in values]
    return values if math.isfinite(values) else None


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def encode(predictions: list[Any], fmt: str) -> bytes:
    """The response body of JSON-native predictions in a format of :data:`FORMATS`."""
    if fmt == CSV:
        if predictions and set(map(type, predictions)) <= _NUMBER_TYPES:
            return (("%r\n" * len(predictions)) % tuple(predictions)).encode("ascii")  # one formatting pass
        return "".join(_csv_line(v) for v in predictions).encode("utf-8")
    if fmt == JSON:
        return json.dumps({"predictions": predictions}, separators=(",", ":")).encode("utf-8")
    return "".join(json.dumps({"prediction": v}, separators=(",", ":")) + "\n" for v in predictions).encode("utf-8")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        if any(c in value for c in ',"\r\n'):
            return '"' + value.replace('"', '""') + '"'
        return value
    return repr(value) if isinstance(value, float) else str(value)


def _csv_line(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_csv_cell(v) for v in value) + "\n"
    return _csv_cell(value) + "\n"
