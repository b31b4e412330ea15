"""Data capture in SageMaker's own format: one JSON line per request, objects under an hourly key layout.

One implementation for every side of it: the serving container writes these lines, the local runtime writes and
reads them, and the drift monitor reads what SageMaker (or the container, in local mode) captured.

A record, as SageMaker writes it::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "1.5,2.0", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                        "data": "1\\n", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<given by the caller>",
                       "inferenceTime": "2026-03-01T12:00:05Z"},
     "eventVersion": "0"}

``data`` holds the body as text when its content type is a CSV or JSON type (``encoding`` ``CSV`` or ``JSON``) and
as base64 otherwise (``BASE64``). ``inferenceId`` is there only when the caller sent one. A capture configured for
input or output only leaves the other side out. Objects are
``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl`` (UTC), named for their first record.

Standard library only: the drift Lambda and the serving image carry this module without its package.

Example
-------
>>> import datetime as dt
>>> when = dt.datetime(2026, 3, 1, 12, 0, 5, 250_000, tzinfo=dt.timezone.utc)
>>> line = capture_line("1.5,2.0", "text/csv", "1\\n", "text/csv", inference_id="order-7", inference_time=when)
>>> record = parse_line(line)
>>> record.input_data, record.output_data, record.inference_id, record.inference_time.isoformat()
('1.5,2.0', '1\\n', 'order-7', '2026-03-01T12:00:05+00:00')
>>> object_key("capture", "pump-health", "AllTraffic", when, unique="0b6e")
'capture/pump-health/AllTraffic/2026/03/01/12/00-05-250-0b6e.jsonl'
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote  # the json module's own (C) string encoder
from typing import Any

__all__ = [
    "BASE64",
    "CSV",
    "CSV_CONTENT_TYPES",
    "EVENT_VERSION",
    "JSON",
    "JSON_CONTENT_TYPES",
    "CaptureLines",
    "BATCH_INPUT",
    "BATCH_OUTPUT",
    "CaptureRecordError",
    "CapturedRequest",
    "batch_manifest",
    "batch_manifest_key",
    "CsvFilter",
    "csv_filter",
    "manifest_uris",
    "capture_line",
    "capture_record",
    "encoding_for",
    "iter_lines",
    "object_key",
    "parse_line",
]

EVENT_VERSION = "0"
CSV = "CSV"
JSON = "JSON"
BASE64 = "BASE64"
ENCODINGS = (CSV, JSON, BASE64)
#: Content types captured as text, like an endpoint's ``CaptureContentTypeHeader`` (media types, lower case).
CSV_CONTENT_TYPES = frozenset({"text/csv"})
JSON_CONTENT_TYPES = frozenset({"application/json", "application/jsonlines"})

_SIDES = (("endpointInput", "INPUT"), ("endpointOutput", "OUTPUT"))


class CaptureRecordError(ValueError):
    """A capture line is not a record of this format (not JSON, a field missing or of the wrong kind)."""


@dataclass(frozen=True)
class CapturedRequest:
    """One captured request, bodies decoded to text. A side the capture left out is ``None``."""

    event_id: str
    inference_time: _dt.datetime
    inference_id: str | None
    input_content_type: str | None
    input_encoding: str | None
    input_data: str | None
    output_content_type: str | None
    output_encoding: str | None
    output_data: str | None
    event_version: str = EVENT_VERSION


# --------------------------------------------------------------------------------------------------------------------
# Writing


def encoding_for(
    content_type: str | None,
    *,
    csv_types: Iterable[str] = CSV_CONTENT_TYPES,
    json_types: Iterable[str] = JSON_CONTENT_TYPES,
) -> str:
    """``CSV``, ``JSON`` or ``BASE64`` for a body of this content type (parameters such as charset ignored)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in csv_types:
        return CSV
    if media in json_types:
        return JSON
    return BASE64


def _encoded(data: bytes | str, content_type: str) -> tuple[str, str]:
    """(the text ``data`` holds, its encoding) for one side of a record."""
    encoding = encoding_for(content_type)
    if encoding != BASE64:
        if not isinstance(data, bytes):
            return data, encoding
        try:
            return data.decode("utf-8"), encoding
        except UnicodeDecodeError:  # a text content type over bytes that are not UTF-8: keep them exactly
            return base64.b64encode(data).decode("ascii"), BASE64
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii"), BASE64


def _time_text(when: _dt.datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("inference_time must be timezone-aware (UTC)")
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sides(input_data: bytes | str | None, input_content_type: str | None, output_data: bytes | str | None,
           output_content_type: str | None) -> list[tuple[str, str, str, str, str]]:
    """(field, mode, content type, text, encoding) of each side given; at least one side, each with its type."""
    sides = []
    for (field, mode), data, content_type in zip(
        _SIDES, (input_data, output_data), (input_content_type, output_content_type)
    ):
        if data is not None:
            if not content_type:
                raise ValueError(f"{field}: a content type is needed with the data")
            sides.append((field, mode, content_type, *_encoded(data, content_type)))
    if not sides:
        raise ValueError("a capture record needs the input, the output or both")
    return sides


def capture_record(
    input_data: bytes | str | None,
    input_content_type: str | None,
    output_data: bytes | str | None,
    output_content_type: str | None,
    *,
    event_id: str | None = None,
    inference_id: str | None = None,
    inference_time: _dt.datetime | None = None,
) -> dict[str, Any]:
    """One capture record as a dict. Pass ``None`` data to leave a side out (input-only or output-only capture).

    ``event_id`` defaults to a new UUID, ``inference_time`` to now; ``inference_id`` is recorded only when given.
    """
    capture = {field: {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}
               for field, mode, content_type, text, encoding in _sides(input_data, input_content_type, output_data,
                                                                       output_content_type)}
    metadata = {"eventId": event_id or str(uuid.uuid4())}
    if inference_id is not None:
        metadata["inferenceId"] = inference_id
    metadata["inferenceTime"] = _time_text(inference_time or _dt.datetime.now(_dt.UTC))
    return {"captureData": capture, "eventMetadata": metadata, "eventVersion": EVENT_VERSION}


def capture_line(
    input_data: bytes | str | None,
    input_content_type: str | None,
    output_data: bytes | str | None,
    output_content_type: str | None,
    *,
    event_id: str | None = None,
    inference_id: str | None = None,
    inference_time: _dt.datetime | None = None,
) -> bytes:
    """:func:`capture_record` as one line of JSON, newline included (what a capture object holds).

    The same bytes as ``json.dumps(capture_record(...), separators=(",", ":"))`` plus a newline, assembled
    directly because the serving container writes one per request. Non-ASCII text is escaped, so the line holds no
    character that a line splitter could take for a line break.
    """
    sides = [f'"{field}":{{"observedContentType":{_quote(content_type)},"mode":"{mode}",'
             f'"data":{_quote(text)},"encoding":"{encoding}"}}'
             for field, mode, content_type, text, encoding in _sides(input_data, input_content_type, output_data,
                                                                     output_content_type)]
    metadata = f'"eventId":{_quote(event_id or str(uuid.uuid4()))}'
    if inference_id is not None:
        metadata += f',"inferenceId":{_quote(inference_id)}'
    when = _time_text(inference_time or _dt.datetime.now(_dt.UTC))
    line = (f'{{"captureData":{{{",".join(sides)}}},"eventMetadata":{{{metadata},"inferenceTime":"{when}"}},'
            f'"eventVersion":"{EVENT_VERSION}"}}\n')
    return line.encode("ascii")


def object_key(
    prefix: str, endpoint: str, variant: str, when: _dt.datetime, *, unique: str | None = None
) -> str:
    """``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<unique>.jsonl``, ``when`` in UTC.

    ``prefix`` is the key prefix of the capture destination (``s3://bucket/<prefix>``; may be empty); ``unique``
    defaults to a new UUID, so writers never overwrite each other's objects.
    """
    for name, value in (("endpoint", endpoint), ("variant", variant)):
        if not value or "/" in value:
            raise ValueError(f"{name} {value!r} must be a non-empty name without '/'")
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware (UTC)")
    when = when.astimezone(_dt.UTC)
    name = f"{when:%M-%S}-{when.microsecond // 1000:03d}-{unique or uuid.uuid4()}.jsonl"
    parts = [prefix.strip("/"), endpoint, variant, f"{when:%Y/%m/%d/%H}", name]
    return "/".join(part for part in parts if part)


# --------------------------------------------------------------------------------------------------------------------
# Reading


def _field(document: dict[str, Any], name: str, where: str) -> Any:
    if name not in document:
        raise CaptureRecordError(f"{where} has no {name!r}")
    return document[name]


def _text_field(document: dict[str, Any], name: str, where: str) -> str:
    value = _field(document, name, where)
    if not isinstance(value, str):
        raise CaptureRecordError(f"{where}.{name} is {type(value).__name__}, not a string")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CaptureRecordError(f"{where} is {type(value).__name__}, not an object")
    return value


def _parse_side(capture: dict[str, Any], field: str, mode: str) -> tuple[str | None, str | None, str | None]:
    if field not in capture:
        return None, None, None
    side = _object(capture[field], f"captureData.{field}")
    where = f"captureData.{field}"
    content_type = _text_field(side, "observedContentType", where)
    if _text_field(side, "mode", where) != mode:
        raise CaptureRecordError(f"{where}.mode is {side['mode']!r}, not {mode!r}")
    encoding = _text_field(side, "encoding", where)
    if encoding not in ENCODINGS:
        raise CaptureRecordError(f"{where}.encoding is {encoding!r}, not one of {', '.join(ENCODINGS)}")
    data = _text_field(side, "data", where)
    if encoding == BASE64:
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise CaptureRecordError(f"{where}.data is not base64 of UTF-8 text ({exc})") from exc
    return content_type, encoding, data


def _parse_time(text: str) -> _dt.datetime:
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise CaptureRecordError(f"eventMetadata.inferenceTime {text!r} is not an ISO-8601 time") from exc
    if when.tzinfo is None:
        raise CaptureRecordError(f"eventMetadata.inferenceTime {text!r} has no time zone")
    return when.astimezone(_dt.UTC)


def parse_line(line: bytes | str) -> CapturedRequest:
    """One capture line (a JSON record) as a :class:`CapturedRequest`; :class:`CaptureRecordError` if it is not one."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CaptureRecordError(f"the line is not UTF-8 ({exc})") from exc
    try:
        document = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CaptureRecordError(f"the line is not JSON ({exc})") from exc
    document = _object(document, "the record")
    version = _text_field(document, "eventVersion", "the record")
    if version != EVENT_VERSION:
        raise CaptureRecordError(f"eventVersion {version!r} is not {EVENT_VERSION!r}")
    capture = _object(_field(document, "captureData", "the record"), "captureData")
    (in_type, in_encoding, in_data), (out_type, out_encoding, out_data) = (
        _parse_side(capture, field, mode) for field, mode in _SIDES
    )
    if in_data is None and out_data is None:
        raise CaptureRecordError("captureData has neither endpointInput nor endpointOutput")
    metadata = _object(_field(document, "eventMetadata", "the record"), "eventMetadata")
    inference_id = metadata.get("inferenceId")
    if inference_id is not None and not isinstance(inference_id, str):
        raise CaptureRecordError(f"eventMetadata.inferenceId is {type(inference_id).__name__}, not a string")
    return CapturedRequest(
        event_id=_text_field(metadata, "eventId", "eventMetadata"),
        inference_time=_parse_time(_text_field(metadata, "inferenceTime", "eventMetadata")),
        inference_id=inference_id,
        input_content_type=in_type,
        input_encoding=in_encoding,
        input_data=in_data,
        output_content_type=out_type,
        output_encoding=out_encoding,
        output_data=out_data,
        event_version=version,
    )


class CaptureLines:
    """The records of a capture object, corrupt lines counted and skipped (see :func:`iter_lines`).

    After (or during) iteration, ``records`` is the number of records yielded, ``corrupt`` the number of lines that
    are not records, and ``errors`` the first ``keep_errors`` of them as ``(line number, reason)``. Blank lines are
    neither. Iterating again starts over.
    """

    def __init__(self, body: bytes | str, *, keep_errors: int = 10):
        self._body = body
        self._keep_errors = keep_errors
        self.records = 0
        self.corrupt = 0
        self.errors: list[tuple[int, str]] = []

    def __iter__(self) -> Iterator[CapturedRequest]:
        self.records, self.corrupt, self.errors = 0, 0, []
        newline = b"\n" if isinstance(self._body, bytes) else "\n"
        for number, line in enumerate(self._body.split(newline), start=1):
            if not line.strip():
                continue
            try:
                record = parse_line(line)
            except CaptureRecordError as exc:
                self.corrupt += 1
                if len(self.errors) < self._keep_errors:
                    self.errors.append((number, str(exc)))
                continue
            self.records += 1
            yield record


def iter_lines(body: bytes | str, *, keep_errors: int = 10) -> CaptureLines:
    """The records of a capture object's body; corrupt lines are skipped and counted on the returned object.

    >>> lines = iter_lines(capture_line("1,2", "text/csv", "0", "text/csv") + b"not json\\n")
    >>> [r.input_data for r in lines], lines.records, lines.corrupt
    (['1,2'], 1, 1)
    """
    return CaptureLines(body, keep_errors=keep_errors)


# --------------------------------------------------------------------------------------------------------------------
# Batch transform capture


#: The two folders a transform job's data capture holds under its ``DestinationS3Uri``.
BATCH_INPUT = "input"
BATCH_OUTPUT = "output"


def batch_manifest(prefix: str, relative_keys: Iterable[str]) -> bytes:
    """A batch capture object as SageMaker writes it: not the data, a manifest of the job's objects in
    ``TransformS3DataSource``'s manifest format (``[{"prefix": "s3://bucket/prefix/"}, "relative/key", ...]``); the
    ``input`` side names the objects the job read, the ``output`` side the ``.out`` objects it wrote.

    >>> batch_manifest("s3://b/in/", ["part-00000.csv"])
    b'[{"prefix": "s3://b/in/"}, "part-00000.csv"]'
    """
    if not prefix.startswith("s3://"):
        raise ValueError(f"a manifest prefix is an s3:// URI, not {prefix!r}")
    return json.dumps([{"prefix": prefix}, *relative_keys]).encode("utf-8")


def batch_manifest_key(destination: str, side: str, when: _dt.datetime, *, unique: str | None = None) -> str:
    """The key of a batch capture manifest under the capture destination's key prefix:
    ``<destination>/<input|output>/yyyy/mm/dd/hh/<uuid>.json`` (UTC, the hour the job captured it).

    >>> batch_manifest_key("capture-batch/pump-health/exec-1", "input",
    ...                    _dt.datetime(2026, 3, 1, 12, 5, tzinfo=_dt.timezone.utc), unique="0b6e")
    'capture-batch/pump-health/exec-1/input/2026/03/01/12/0b6e.json'
    """
    if side not in (BATCH_INPUT, BATCH_OUTPUT):
        raise ValueError(f"side must be {BATCH_INPUT!r} or {BATCH_OUTPUT!r}, not {side!r}")
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware")
    when = when.astimezone(_dt.timezone.utc)
    return f"{destination.strip('/')}/{side}/{when:%Y/%m/%d/%H}/{unique or uuid.uuid4()}.json"


def manifest_uris(body: bytes | str) -> list[str]:
    """The S3 URIs a batch capture manifest names (its prefix joined to each relative key).

    >>> manifest_uris('[{"prefix": "s3://b/in/"}, "a.csv", "sub/b.csv"]')
    ['s3://b/in/a.csv', 's3://b/in/sub/b.csv']
    """
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise CaptureRecordError(f"a batch capture manifest is not JSON: {exc}") from None
    if (not isinstance(document, list) or not document or not isinstance(document[0], dict)
            or not isinstance(document[0].get("prefix"), str) or not document[0]["prefix"].startswith("s3://")):
        raise CaptureRecordError('a batch capture manifest is [{"prefix": "s3://..."}, "<key>", ...]')
    prefix = document[0]["prefix"]
    if not prefix.endswith("/"):
        prefix += "/"
    keys = document[1:]
    if not all(isinstance(key, str) for key in keys):
        raise CaptureRecordError("a batch capture manifest lists its objects as strings")
    return [prefix + key.lstrip("/") for key in keys]


_CSV_INDEXES = re.compile(r"^\$\[\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*\]$")
_CSV_SLICE = re.compile(r"^\$\[\s*(-?\d*)\s*:\s*(-?\d*)\s*\]$")


@dataclass(frozen=True)
class CsvFilter:
    """A transform's CSV ``InputFilter``/``OutputFilter``: the JSONPath subset SageMaker applies to CSV records — the
    whole record (``$``), some indexes (``$[0]``, ``$[0,2]``, ``$[-1]``) or one slice (``$[1:]``, ``$[:3]``,
    ``$[1:3]``; both ends included, as SageMaker's examples read it). Indexes past the record are an
    :class:`IndexError`.

    >>> f = CsvFilter.parse("$[1:]"); f.columns(4), f.drops_first, CsvFilter.parse("$[0,-1]").select(list("abcd"))
    ([1, 2, 3], True, ['a', 'd'])
    """

    indexes: tuple[int, ...] | None = None
    start: int | None = None
    end: int | None = None

    @classmethod
    def parse(cls, expression: str | None) -> "CsvFilter":
        """The filter ``expression`` names (none or ``$``: the whole record); a :class:`ValueError` for another."""
        text = (expression or "$").strip()
        if text == "$":
            return cls()
        matched = _CSV_INDEXES.match(text)
        if matched:
            return cls(indexes=tuple(int(i) for i in matched.group(1).split(",")))
        matched = _CSV_SLICE.match(text)
        if matched and (matched.group(1) or matched.group(2)):
            return cls(start=int(matched.group(1)) if matched.group(1) else None,
                       end=int(matched.group(2)) if matched.group(2) else None)
        raise ValueError(f"{expression!r} is not a CSV filter: $, an index or indexes ($[0], $[0,2], $[-1]) or one "
                         "slice ($[1:], $[:3], $[1:3])")

    @property
    def whole(self) -> bool:
        return self.indexes is None and self.start is None and self.end is None

    @property
    def drops_first(self) -> bool:
        """``$[1:]``: the record less its first column (the row key), the inference pipeline's filter."""
        return self.indexes is None and self.start == 1 and self.end is None

    def columns(self, width: int) -> list[int]:
        """The positions the filter keeps in a record of ``width`` values, in order."""
        if self.whole:
            return list(range(width))
        if self.indexes is not None:
            for index in self.indexes:
                if not -width <= index < width:
                    raise IndexError(f"index {index} is outside a row of {width} column(s)")
            return [index + width if index < 0 else index for index in self.indexes]
        start = 0 if self.start is None else (self.start + width if self.start < 0 else self.start)
        end = width - 1 if self.end is None else (self.end + width if self.end < 0 else self.end)
        if not 0 <= start < width or end >= width:
            raise IndexError(f"slice [{self.start or ''}:{self.end or ''}] is outside a row of {width} column(s)")
        return list(range(start, end + 1))

    def select(self, fields: list[str]) -> list[str]:
        return fields if self.whole else [fields[i] for i in self.columns(len(fields))]


def csv_filter(expression: str | None) -> Callable[[int], list[int]]:
    """The columns a transform's CSV filter keeps, as a function of a record's width (:class:`CsvFilter`).

    >>> csv_filter("$[1:]")(4), csv_filter("$[0,-1]")(4), csv_filter(None)(2), csv_filter("$[1:2]")(4)
    ([1, 2, 3], [0, 3], [0, 1], [1, 2])
    """
    return CsvFilter.parse(expression).columns
