"""The drift monitor's work on one window of captured requests: bodies to feature rows, rows to drift statistics,
captured predictions joined to ground truth for model quality.

One implementation for the drift Lambda (``lambdas/drift_monitor``), ``modelwerk monitor run`` and the tests. It
reads what the capture holds (``modelwerk.core.capture``) and compares with the baseline registered with the version
an endpoint serves (``modelwerk.core.drift``); it makes no AWS call.

Requests are read as the serving container reads them: ``text/csv`` rows without a header in the version's input
order; ``application/json`` as ``{"instances": [...]}``, a list of rows or one object; ``application/jsonlines``
one row per line; a row is a list in input order or an object of ``column: value``. What cannot be read is counted,
never fatal: a line that is not a capture record (``bad_lines``), a request whose body is not readable or whose
content type is not one of those (``bad_requests``), a row with the wrong number of values (``bad_rows``); the first
few reasons are kept. Values stay as sent; :func:`modelwerk.core.drift.compare` counts the non-numeric ones.

Example
-------
>>> from modelwerk.core.capture import capture_line
>>> lines = capture_line("1.5,north", "text/csv", "0", "text/csv") + capture_line('{"x": 2, "site": "south"}',
...     "application/json", '{"predictions": [1]}', "application/json") + b"not a record\\n"
>>> window = read_window([lines], ["x", "site"])
>>> window.frame.to_dict("list"), window.requests, window.bad_lines
({'x': ['1.5', 2], 'site': ['north', 'south']}, 2, 1)
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelwerk.core.capture import CapturedRequest, csv_filter, iter_lines
from modelwerk.core.gate import label_text

__all__ = ["QualityError", "Window", "compare_window", "feature_summary", "hour_prefixes", "input_columns",
           "numeric_inputs", "predictions_frame", "quality", "read_batch", "read_window", "window_bounds"]

#: Reasons kept per window (the counts are always complete).
KEEP_ERRORS = 10
#: Arrow reads capture objects in blocks of this size (a line longer than a block is read line by line).
_BLOCK_BYTES = 16 << 20
_CSV, _JSON, _JSONLINES = "text/csv", "application/json", "application/jsonlines"
_MEDIA = {_CSV: _CSV, _JSON: _JSON, _JSONLINES: _JSONLINES, "application/x-jsonlines": _JSONLINES}


class QualityError(ValueError):
    """Ground truth that cannot be scored (no label column, an unknown task)."""


@dataclass
class Window:
    """The feature rows of a window's requests, and what could not be read.

    ``frame`` has the input columns in order (values as sent, ``None`` where a JSON row left one out) plus the extra
    columns JSON rows named; ``predictions`` holds, per readable request that had them, the caller's ``InferenceId``
    and the captured output (for joining ground truth).
    """

    frame: pd.DataFrame
    requests: int = 0
    bad_lines: int = 0
    bad_requests: int = 0
    bad_rows: int = 0
    errors: list[str] = field(default_factory=list)
    content_types: Counter = field(default_factory=Counter)
    predictions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.frame)

    def problem(self, reason: str) -> None:
        if len(self.errors) < KEEP_ERRORS:
            self.errors.append(reason)


def window_bounds(end: _dt.datetime, minutes: int) -> tuple[_dt.datetime, _dt.datetime]:
    """``[end - minutes, end)`` in UTC, ``end`` truncated to the minute: the window a scheduled run looks at."""
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    if minutes < 1:
        raise ValueError("a window lasts at least one minute")
    end = end.astimezone(_dt.timezone.utc).replace(second=0, microsecond=0)
    return end - _dt.timedelta(minutes=minutes), end


def hour_prefixes(start: _dt.datetime, end: _dt.datetime) -> list[str]:
    """The ``yyyy/mm/dd/hh`` key parts of the capture objects that may hold records of ``[start, end)``."""
    hour = start.astimezone(_dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    prefixes = []
    while hour < end:
        prefixes.append(f"{hour:%Y/%m/%d/%H}")
        hour += _dt.timedelta(hours=1)
    return prefixes


def read_window(bodies: Iterable[bytes | str], columns: Sequence[str], *,
                start: _dt.datetime | None = None, end: _dt.datetime | None = None,
                numeric: Collection[str] = ()) -> Window:
    """The feature rows of the capture objects' records whose inference time is in ``[start, end)`` (all if not
    given); ``columns`` are the model's inputs in request order.

    ``numeric`` names the inputs the baseline holds as numbers: an object whose records are all clean CSV requests
    is read in one pass by Arrow (:func:`_read_csv_object`), those columns as float64 and the others as text, which
    gives the same statistics as reading it line by line, only about four times faster. Any other object (JSON
    bodies, a corrupt line, a row of the wrong width, a value that is not a number) is read line by line, which
    counts and explains every problem.
    """
    columns = list(columns)
    numeric = set(numeric)
    width = len(columns)
    csv_rows: list[list[Any]] = []
    dict_rows: list[dict[str, Any]] = []
    tables: list[Any] = []
    window = Window(frame=pd.DataFrame())
    for body in bodies:
        table = _read_csv_object(body, columns, numeric, start, end, window)
        if table is not None:
            tables.append(table)
            continue
        lines = iter_lines(body, keep_errors=KEEP_ERRORS)
        for record in lines:
            when = record.inference_time
            if (start is not None and when < start) or (end is not None and when >= end):
                continue
            window.requests += 1
            rows = _request_rows(record, window)
            if rows is None:
                continue
            for row in rows:
                if isinstance(row, dict):
                    dict_rows.append(row)
                elif isinstance(row, list) and len(row) == width:
                    csv_rows.append(row)
                else:
                    window.bad_rows += 1
                    size = len(row) if isinstance(row, list) else type(row).__name__
                    window.problem(f"request {record.event_id}: a row of {size} value(s), the model takes {width}")
            if record.inference_id is not None and record.output_data is not None:
                window.predictions.append((record.inference_id, record.output_data))
        window.bad_lines += lines.corrupt
        for number, reason in lines.errors:
            window.problem(f"line {number}: {reason}")
    frames = []
    if tables:
        frames.append(_arrow().concat_tables(tables).to_pandas())
    if csv_rows:
        frames.append(pd.DataFrame(csv_rows, columns=columns, dtype=object))
    if dict_rows:
        named = pd.DataFrame.from_records(dict_rows)
        frames.append(named.reindex(columns=[*columns, *[c for c in named.columns if c not in columns]]))
    window.frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns, dtype=object)
    return window


def read_batch(bodies: Iterable[bytes | str], columns: Sequence[str], *, input_filter: str | None = None,
               numeric: Collection[str] = ()) -> Window:
    """The feature rows of a batch transform's captured inputs: the job's input objects (headerless CSV, one record
    a line), each record cut by the job's ``InputFilter`` to what the model was sent, then named ``columns``.

    ``requests`` counts the objects; a record whose filtered width is not the model's is a bad row, an object that is
    not CSV a bad request, each counted with its first reasons kept. ``numeric`` columns are read as float64 where
    every value is a number (else left as sent, so the comparison counts what is not).
    """
    columns = list(columns)
    pick = csv_filter(input_filter)
    numeric = set(numeric)
    window = Window(frame=pd.DataFrame())
    parts: list[pd.DataFrame] = []
    for number, body in enumerate(bodies, start=1):
        window.requests += 1
        window.content_types["text/csv"] += 1
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        try:
            records = [row for row in csv.reader(io.StringIO(text), strict=True) if row]
        except (csv.Error, UnicodeDecodeError) as exc:
            window.bad_requests += 1
            window.problem(f"input object {number}: not CSV ({exc})")
            continue
        good: list[list[str]] = []
        for row in records:
            try:
                values = [row[i] for i in pick(len(row))]
            except IndexError as exc:
                values, reason = [], str(exc)
            else:
                reason = f"a record of {len(values)} value(s) after the input filter, the model takes {len(columns)}"
            if len(values) != len(columns):
                window.bad_rows += 1
                window.problem(f"input object {number}: {reason}")
                continue
            good.append(values)
        if good:
            parts.append(pd.DataFrame(good, columns=columns, dtype=object))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns, dtype=object)
    for name in numeric & set(columns):
        values = frame[name].replace("", None)
        converted = pd.to_numeric(values, errors="coerce")
        if bool((converted.notna() | values.isna()).all()):
            frame[name] = converted.astype("float64")
    window.frame = frame
    return window


def _arrow() -> Any:
    import pyarrow  # noqa: PLC0415 - loaded with the first capture object, not with the module

    return pyarrow


#: The capture record fields the Arrow reading takes; anything else in a line is ignored, as line by line.
def _capture_schema() -> Any:
    pa = _arrow()
    side = pa.struct([("observedContentType", pa.string()), ("mode", pa.string()), ("data", pa.string()),
                      ("encoding", pa.string())])
    return pa.schema([
        ("captureData", pa.struct([("endpointInput", side), ("endpointOutput", side)])),
        ("eventMetadata", pa.struct([("eventId", pa.string()), ("inferenceId", pa.string()),
                                     ("inferenceTime", pa.string())])),
        ("eventVersion", pa.string()),
    ])


def _read_csv_object(body: bytes | str, columns: list[str], numeric: set[str], start: _dt.datetime | None,
                     end: _dt.datetime | None, window: Window) -> Any:
    """The feature rows of one capture object as an Arrow table when every record in the window is a CSV request
    that reads cleanly (``window`` counts them); ``None``, with ``window`` untouched, when the object needs reading
    line by line.

    Arrow parses the JSON lines against the record's schema, checks what :func:`~modelwerk.core.capture.parse_line`
    checks (version, modes, encodings, event id, a UTC time), joins the CSV bodies and reads them with the numeric
    inputs as float64 (only ``""`` is missing, as line by line). Any doubt (a parse error, a quote, a time in
    another format, a JSON or base64 body) gives ``None``.
    """
    if not columns:
        return None
    pa = _arrow()
    import pyarrow.compute as pc  # noqa: PLC0415
    import pyarrow.csv as pa_csv  # noqa: PLC0415
    import pyarrow.json as pa_json  # noqa: PLC0415

    raw = body.encode("utf-8") if isinstance(body, str) else body
    if not raw.strip():
        return None
    try:
        records = pa_json.read_json(
            io.BytesIO(raw), read_options=pa_json.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=pa_json.ParseOptions(explicit_schema=_capture_schema(), unexpected_field_behavior="ignore"))
        times = pc.strptime(pc.struct_field(records.column("eventMetadata"), [2]), format="%Y-%m-%dT%H:%M:%SZ",
                            unit="s")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if not _all(pc, pc.is_valid(times)):
        return None
    keep = pc.is_valid(times)
    if start is not None:
        keep = pc.and_(keep, pc.greater_equal(times, pa.scalar(_naive_utc(start), pa.timestamp("s"))))
    if end is not None:
        keep = pc.and_(keep, pc.less(times, pa.scalar(_naive_utc(end), pa.timestamp("s"))))
    records = records.filter(keep)
    types = {name: pa.float64() if name in numeric else pa.string() for name in columns}
    if len(records) == 0:
        return pa.table({name: pa.array([], type_) for name, type_ in types.items()})
    capture, metadata = records.column("captureData"), records.column("eventMetadata")
    inputs, outputs = pc.struct_field(capture, [0]), pc.struct_field(capture, [1])
    data = pc.struct_field(inputs, [2])
    output_mode = pc.struct_field(outputs, [1])
    valid = [
        pc.equal(records.column("eventVersion"), "0"),
        pc.is_valid(pc.struct_field(metadata, [0])),
        pc.equal(pc.struct_field(inputs, [1]), "INPUT"),
        pc.equal(pc.struct_field(inputs, [3]), "CSV"),
        pc.is_valid(data),
        pc.invert(pc.match_substring(data, '"')),
        pc.or_(pc.is_null(output_mode), pc.and_(pc.equal(output_mode, "OUTPUT"),
                                                pc.is_in(pc.struct_field(outputs, [3]), pa.array(["CSV", "JSON"])))),
    ]
    if not all(_all(pc, check) for check in valid):
        return None
    content_types = pc.value_counts(pc.struct_field(inputs, [0])).to_pylist()
    if any(_MEDIA.get(item["values"].split(";")[0].strip().lower()) != _CSV for item in content_types):
        return None
    text = "\n".join(data.to_pylist()).encode("utf-8")
    try:
        table = pa_csv.read_csv(
            io.BytesIO(text),
            read_options=pa_csv.ReadOptions(column_names=columns, block_size=_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    window.requests += len(records)
    for item in content_types:
        window.content_types[item["values"]] += item["counts"]
    identified = pc.and_(pc.is_valid(pc.struct_field(metadata, [1])), pc.is_valid(pc.struct_field(outputs, [2])))
    window.predictions += zip(pc.filter(pc.struct_field(metadata, [1]), identified).to_pylist(),
                              pc.filter(pc.struct_field(outputs, [2]), identified).to_pylist())
    return table


def _all(pc: Any, mask: Any) -> bool:
    """Every value of a boolean array true (a null counts as false)."""
    return bool(pc.all(pc.fill_null(mask, False)).as_py())


def _naive_utc(when: _dt.datetime) -> _dt.datetime:
    return when.astimezone(_dt.timezone.utc).replace(tzinfo=None)


def _request_rows(record: CapturedRequest, window: Window) -> list[Any] | None:
    media = _MEDIA.get((record.input_content_type or "").split(";")[0].strip().lower())
    window.content_types[record.input_content_type or "none"] += 1
    if record.input_data is None:
        window.bad_requests += 1
        window.problem(f"request {record.event_id}: the capture holds no input")
        return None
    if media is None:
        window.bad_requests += 1
        window.problem(f"request {record.event_id}: content type {record.input_content_type!r} is not CSV, JSON "
                       "or JSON Lines")
        return None
    text = record.input_data
    try:
        if media == _CSV:
            return _csv_rows(text)
        if media == _JSON:
            document = json.loads(text)
            if isinstance(document, dict):
                document = document["instances"] if "instances" in document else [document]
            if not isinstance(document, list):
                raise ValueError(f"the JSON body is a {type(document).__name__}")
            return document
        return [json.loads(line) for line in text.split("\n") if line.strip()]
    except (ValueError, csv.Error) as exc:
        window.bad_requests += 1
        window.problem(f"request {record.event_id}: {media} body not readable: {exc}")
        return None


def _csv_rows(text: str) -> list[list[str]]:
    if '"' not in text:
        return [line.rstrip("\r").split(",") for line in text.split("\n") if line.strip()]
    return [row for row in csv.reader(io.StringIO(text), strict=True) if row]


def input_columns(baseline: Any) -> list[str]:
    """The model's inputs in request order: the baseline's ``inputs`` (written by the baseline step), else its
    features."""
    inputs = baseline.document.get("inputs")
    return [f["name"] for f in inputs] if inputs else list(baseline.features)


def numeric_inputs(baseline: Any) -> list[str]:
    """The inputs the baseline holds as numbers (:func:`read_window` reads them as float64 where it can)."""
    return [name for name, spec in baseline.document["features"].items() if spec.get("kind") == "numeric"]


def compare_window(baseline: Any, window: Window) -> dict[str, Any]:
    """The window's drift report (``DriftReport.to_dict()``), booleans read as the baseline step wrote them."""
    from modelwerk.core import drift

    frame = window.frame
    booleans = [f["name"] for f in baseline.document.get("inputs") or () if f.get("type") == "boolean"]
    if booleans and len(frame):
        frame = frame.copy()
        for name in booleans:
            if name in frame.columns:
                frame[name] = frame[name].map(_boolean_text)
    return drift.compare(baseline, frame).to_dict()


def _boolean_text(value: Any) -> Any:
    """``True``/``False`` as the baseline holds booleans; anything else as it came (an unseen category)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0"):
        return "True"
    if text in ("false", "0", "0.0"):
        return "False"
    return None if text == "" else value


def feature_summary(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per feature the four figures the monitor publishes: ``psi``, ``ks``, ``js``, ``missing_rate``."""
    return {name: {key: stats.get(key) for key in ("psi", "ks", "js", "missing_rate")}
            for name, stats in report["features"].items()}


# --------------------------------------------------------------------------------------------------------------------
# Model quality


def _predicted_values(output: str) -> list[Any]:
    """The predictions of a captured response: CSV lines, ``{"predictions": [...]}`` or JSON Lines."""
    text = output.strip()
    if not text:
        return []
    if text.startswith("{") or text.startswith("["):
        try:
            document = json.loads(text)
        except ValueError:
            return [json.loads(line).get("prediction") for line in text.splitlines() if line.strip()]
        if isinstance(document, dict):
            document = document.get("predictions", [document.get("prediction")])
        return list(document)
    return [line.strip() for line in text.splitlines()]


def predictions_frame(window: Window) -> pd.DataFrame:
    """One row per captured prediction with an inference id: ``inference_id``, ``row`` (0-based), ``prediction``."""
    records = []
    for inference_id, output in window.predictions:
        try:
            values = _predicted_values(output)
        except (ValueError, AttributeError):
            window.problem(f"inference {inference_id}: the captured output is not readable")
            continue
        records += [(inference_id, row, value) for row, value in enumerate(values)]
    return pd.DataFrame(records, columns=["inference_id", "row", "prediction"])


def quality(predictions: pd.DataFrame, labels: pd.DataFrame, task: str) -> dict[str, Any]:
    """Predictions joined to ground truth on ``inference_id`` (and ``row`` where the labels give it; else row 0).

    Classification: ``accuracy`` and ``f1`` (binary, positive class ``1``; macro over classes otherwise).
    Regression: ``rmse`` and ``mae``. Always ``matched`` (pairs scored) and ``unmatched_labels``.
    """
    if "inference_id" not in labels.columns or "label" not in labels.columns:
        raise QualityError("ground truth needs the columns inference_id and label")
    if task not in ("classification", "regression"):
        raise QualityError(f"task {task!r} is not classification or regression")
    truth = labels.copy()
    truth["inference_id"] = truth["inference_id"].astype(str)
    truth["row"] = pd.to_numeric(truth["row"], errors="coerce").fillna(0).astype(int) if "row" in truth else 0
    found = predictions.copy()
    found["inference_id"] = found["inference_id"].astype(str)
    joined = truth.merge(found, on=["inference_id", "row"], how="left")
    paired = joined[joined["prediction"].notna() & joined["label"].notna()]
    result: dict[str, Any] = {"matched": int(len(paired)), "unmatched_labels": int(len(joined) - len(paired))}
    if paired.empty:
        keys = ("accuracy", "f1") if task == "classification" else ("rmse", "mae")
        return {**result, **dict.fromkeys(keys)}
    if task == "regression":
        predicted = pd.to_numeric(paired["prediction"], errors="coerce").to_numpy(dtype=np.float64)
        actual = pd.to_numeric(paired["label"], errors="coerce").to_numpy(dtype=np.float64)
        usable = np.isfinite(predicted) & np.isfinite(actual)
        error = predicted[usable] - actual[usable]
        result["matched"] = int(usable.sum())
        if not usable.any():
            return {**result, "rmse": None, "mae": None}
        return {**result, "rmse": float(math.sqrt(np.mean(error ** 2))), "mae": float(np.mean(np.abs(error)))}
    predicted = paired["prediction"].map(label_text).to_numpy(dtype=object)
    actual = paired["label"].map(label_text).to_numpy(dtype=object)
    accuracy = float(np.mean(predicted == actual))
    classes = sorted(set(actual) | set(predicted))
    positive = ["1"] if set(classes) <= {"0", "1"} else classes
    scores = []
    for cls in positive:
        tp = int(np.sum((predicted == cls) & (actual == cls)))
        fp = int(np.sum((predicted == cls) & (actual != cls)))
        fn = int(np.sum((predicted != cls) & (actual == cls)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {**result, "accuracy": accuracy, "f1": float(np.mean(scores))}
