"""The serving container's codecs: content negotiation, bodies to typed features, predictions to bodies."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "containers" / "serving"))

from modelwerk_serving import codecs
from modelwerk_serving.codecs import CSV, JSON, JSONLINES, InputSchema
from modelwerk_serving.errors import BadRequest, HTTPError, ModelLoadError

PUMP = InputSchema([
    {"name": "site", "type": "string"},
    {"name": "vibration_rms", "type": "double"},
    {"name": "running", "type": "boolean"},
    {"name": "starts", "type": "bigint"},
])
NUMBERS = InputSchema([{"name": f"f{i}", "type": "double"} for i in range(3)])


# -- content negotiation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        pytest.param("text/csv", CSV, id="csv"),
        pytest.param("text/csv; charset=utf-8", CSV, id="csv-charset"),
        pytest.param("Application/JSON", JSON, id="json-any-case"),
        pytest.param("application/jsonlines", JSONLINES, id="jsonlines"),
        pytest.param("application/x-jsonlines", JSONLINES, id="jsonlines-alias"),
    ],
)
def test_request_formats_by_content_type(header, fmt):
    assert codecs.request_format(header) == fmt


@pytest.mark.parametrize("header", [None, "", "application/x-npy", "text/plain"])
def test_other_content_types_are_415(header):
    with pytest.raises(HTTPError, match="Content-Type") as caught:
        codecs.request_format(header)
    assert caught.value.status == 415


@pytest.mark.parametrize(
    ("accept", "request_format", "fmt"),
    [
        pytest.param(None, CSV, CSV, id="none-means-the-requests"),
        pytest.param("*/*", JSON, JSON, id="anything"),
        pytest.param("application/json", CSV, JSON, id="exact"),
        pytest.param("text/html, application/jsonlines;q=0.5, text/csv;q=0.9", JSON, CSV, id="quality"),
        pytest.param("text/*", JSON, CSV, id="text-wildcard"),
        pytest.param("application/*", CSV, JSON, id="application-wildcard"),
        pytest.param("application/jsonlines; charset=utf-8", CSV, JSONLINES, id="parameters"),
    ],
)
def test_response_format_follows_accept(accept, request_format, fmt):
    assert codecs.response_format(accept, request_format) == fmt


@pytest.mark.parametrize("accept", ["text/html", "application/xml, image/png", "text/csv;q=0"])
def test_an_accept_the_server_cannot_answer_is_406(accept):
    with pytest.raises(HTTPError, match="Accept") as caught:
        codecs.response_format(accept, CSV)
    assert caught.value.status == 406


# -- bodies to rows -----------------------------------------------------------------------------------------------


def test_csv_rows_one_and_many():
    assert PUMP.rows(b"north,1.5,true,3\n", CSV) == [["north", "1.5", "true", "3"]]
    assert PUMP.rows(b"north,1.5,true,3\r\nsouth,,0,\r\n\r\n", CSV) == [
        ["north", "1.5", "true", "3"],
        ["south", "", "0", ""],
    ]


def test_csv_with_quotes_is_read_as_rfc_4180():
    assert PUMP.rows(b'"north, east",1.5,true,3\n"say ""hi""",2,false,1', CSV) == [
        ["north, east", "1.5", "true", "3"],
        ['say "hi"', "2", "false", "1"],
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b'"north,1.5,true,3\n', "malformed CSV", id="open-quote"),
        pytest.param(b'north,"1"5,true,3\n', "malformed CSV", id="text-after-quote"),
        pytest.param(b"north,1.5,true\n", r"row 1 has 3 value\(s\); the model takes 4 column", id="too-few"),
        pytest.param(b"north,1.5,true,3\nnorth,1,1,1,1\n", "row 2 has 5 value", id="too-many"),
        pytest.param(b"site,vibration_rms,running,starts\nnorth,1,1,1\n", "row 1 is a header", id="header"),
        pytest.param(b"\n\n", "no rows", id="blank"),
        pytest.param(b"\xff\xfe1,2", "not UTF-8", id="not-utf8"),
    ],
)
def test_bad_csv_is_400_with_a_reason(body, reason):
    with pytest.raises(BadRequest, match=reason):
        PUMP.rows(body, CSV)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"instances": [["north", 1.5, True, 3]]}, id="instances-of-lists"),
        pytest.param({"instances": [{"starts": 3, "site": "north", "running": True, "vibration_rms": 1.5}]},
                     id="instances-of-objects"),
        pytest.param([["north", 1.5, True, 3]], id="bare-list"),
        pytest.param([{"site": "north", "vibration_rms": 1.5, "running": True, "starts": 3}], id="bare-objects"),
        pytest.param({"site": "north", "vibration_rms": 1.5, "running": True, "starts": 3}, id="one-object"),
    ],
)
def test_json_shapes_give_rows_in_column_order(body):
    assert PUMP.rows(json.dumps(body).encode(), JSON) == [["north", 1.5, True, 3]]


def test_jsonlines_rows_are_lists_or_objects_one_per_line():
    body = b'["north", 1.5, true, 3]\n\n{"site": "south", "vibration_rms": null, "running": false, "starts": 1}\n'

    assert PUMP.rows(body, JSONLINES) == [["north", 1.5, True, 3], ["south", None, False, 1]]


@pytest.mark.parametrize(
    ("body", "fmt", "reason"),
    [
        pytest.param(b'{"instances": [1, 2', JSON, "malformed JSON", id="truncated"),
        pytest.param(b'"text"', JSON, "the JSON body is a string", id="scalar"),
        pytest.param(b'{"instances": {"a": 1}}', JSON, "must be a list", id="instances-not-a-list"),
        pytest.param(b"[1.5, 2.5, 3.5]", JSON, r"row 1 is a number.*\[\[\.\.\.\]\]", id="flat-list"),
        pytest.param(b'[["north", 1.5, true]]', JSON, "row 1 has 3 value", id="short-row"),
        pytest.param(b'{"site": "north", "vibration_rms": 1, "running": true, "starts": 3, "x": 1}', JSON,
                     "unknown column.*'x'", id="unknown-column"),
        pytest.param(b'{"site": "north", "vibration_rms": 1}', JSON,
                     "no value for 'running', 'starts'.*send null", id="missing-columns"),
        pytest.param(b'{"instances": []}', JSON, "no rows", id="no-rows"),
        pytest.param(b'["north", 1.5, true, 3]\n{oops\n', JSONLINES, "line 2", id="jsonlines-bad-line"),
    ],
)
def test_bad_json_is_400_with_a_reason(body, fmt, reason):
    with pytest.raises(BadRequest, match=reason):
        PUMP.rows(body, fmt)


# -- rows to features ---------------------------------------------------------------------------------------------


def test_an_array_model_gets_float64_with_missing_values_as_nan():
    array = NUMBERS.array(NUMBERS.rows(b"1,2.5,-3\n4,,nan\n", CSV))

    assert array.dtype == np.float64 and array.shape == (2, 3)
    assert array[0].tolist() == [1.0, 2.5, -3.0]
    assert array[1, 0] == 4.0 and math.isnan(array[1, 1]) and math.isnan(array[1, 2])


def test_json_numbers_and_nulls_become_an_array_too():
    array = NUMBERS.array(NUMBERS.rows(b'{"instances": [[1, null, "2.5"]]}', JSON))

    assert array[0, 0] == 1.0 and math.isnan(array[0, 1]) and array[0, 2] == 2.5


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"1,2,3\n4,x,6\n", r"row 2, column 'f1' \(double\): 'x' is not a number", id="text"),
        pytest.param(b'[[1, [2], 3]]', r"row 1, column 'f1' \(double\): \[2\] is not a number", id="nested"),
    ],
)
def test_a_value_that_is_not_a_number_is_400_naming_row_and_column(body, reason):
    fmt = CSV if body[:1] != b"[" else JSON
    with pytest.raises(BadRequest, match=reason):
        NUMBERS.array(NUMBERS.rows(body, fmt))


def test_a_frame_is_typed_as_in_training_in_the_models_column_order():
    rows = PUMP.rows(b"north,1.5,true,3\n,,FALSE,\n", CSV)

    frame = PUMP.frame(rows, ["starts", "site", "vibration_rms", "running"])

    assert list(frame.columns) == ["starts", "site", "vibration_rms", "running"]
    assert frame["site"].dtype == object and frame["site"].iloc[0] == "north" and pd.isna(frame["site"].iloc[1])
    assert frame["vibration_rms"].dtype == np.float64 and math.isnan(frame["vibration_rms"].iloc[1])
    assert frame["running"].tolist() == [1.0, 0.0]
    assert frame["starts"].iloc[0] == 3.0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"north,1.5,maybe,3", r"column 'running' \(boolean\): 'maybe' is not a boolean", id="boolean"),
        pytest.param(b"north,fast,true,3", r"column 'vibration_rms' \(double\): 'fast' is not a number", id="number"),
    ],
)
def test_bad_values_in_a_frame_are_400(body, reason):
    with pytest.raises(BadRequest, match=reason):
        PUMP.frame(PUMP.rows(body, CSV), list(PUMP.names))


def test_timestamps_are_parsed_as_utc_and_bad_ones_named():
    schema = InputSchema([{"name": "at", "type": "timestamp"}, {"name": "x", "type": "double"}])

    frame = schema.frame(schema.rows(b"2026-03-01T12:00:00Z,1\n2026-03-01T13:30:00+01:00,2\n", CSV), ["at", "x"])
    assert frame["at"].dt.tz is not None
    assert frame["at"].iloc[1] == pd.Timestamp("2026-03-01T12:30:00Z")

    with pytest.raises(BadRequest, match=r"row 1, column 'at' \(timestamp\): 'noon' is not an ISO-8601 time"):
        schema.frame(schema.rows(b"noon,1\n", CSV), ["at", "x"])


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        pytest.param([], "non-empty list", id="empty"),
        pytest.param([{"name": "a"}], "is not", id="no-type"),
        pytest.param([{"name": "a", "type": "double"}, {"name": "a", "type": "double"}], "more than once",
                     id="repeated"),
        pytest.param([{"name": "a", "type": "geometry"}], "geometry", id="unknown-type"),
    ],
)
def test_a_bad_input_schema_fails_the_model_load(fields, reason):
    with pytest.raises(ModelLoadError, match=reason):
        InputSchema(fields)


def test_glue_type_names_are_understood():
    schema = InputSchema([{"name": "a", "type": "decimal(10,2)"}, {"name": "b", "type": "varchar(64)"},
                          {"name": "c", "type": "int"}])

    assert schema.kinds == ("number", "string", "number")


# -- predictions to bodies ----------------------------------------------------------------------------------------


def test_predictions_become_json_native_values():
    assert codecs.native(np.array([1, 0], dtype=np.int64)) == [1, 0]
    assert codecs.native(np.array([0.5, np.nan, np.inf])) == [0.5, None, None]
    assert codecs.native(np.array(["ok", "failure"], dtype=object)) == ["ok", "failure"]
    assert codecs.native(np.array([np.int64(3), np.float32(0.5)], dtype=object)) == [3, 0.5]
    assert codecs.native(np.array([True, False])) == [True, False]


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        pytest.param(CSV, b'1\n0.25\nok\n"a, b"\n\ntrue\n', id="csv"),
        pytest.param(JSON, b'{"predictions":[1,0.25,"ok","a, b",null,true]}', id="json"),
        pytest.param(JSONLINES, b'{"prediction":1}\n{"prediction":0.25}\n{"prediction":"ok"}\n'
                                b'{"prediction":"a, b"}\n{"prediction":null}\n{"prediction":true}\n', id="jsonlines"),
    ],
)
def test_predictions_are_encoded_in_each_format(fmt, body):
    assert codecs.encode([1, 0.25, "ok", "a, b", None, True], fmt) == body


# -- client input that is never a 5xx (issue 17) -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "1e309", "9" * 400])
def test_a_number_that_is_not_finite_is_refused_naming_row_and_column(value):
    with pytest.raises(BadRequest, match=r"row 2, column 'f1' \(double\).*a finite number"):
        NUMBERS.array(NUMBERS.rows(f"1,2,3\n1,{value},3\n".encode(), CSV))


@pytest.mark.parametrize("body", ['[[1, NaN, 3]]', '[[1, Infinity, 3]]', '[[1, -Infinity, 3]]'])
def test_json_constants_for_non_finite_numbers_are_refused(body):
    with pytest.raises(BadRequest, match="JSON has no"):
        NUMBERS.rows(body.encode(), JSON)


def test_a_huge_json_integer_is_refused_as_not_finite():
    with pytest.raises(BadRequest, match=r"row 1, column 'f0'.*a finite number"):
        NUMBERS.array(NUMBERS.rows(f"[[{'9' * 5000}, 1, 2]]".encode(), JSON))


@pytest.mark.parametrize("fmt", [JSON, JSONLINES])
def test_deep_json_is_refused(fmt):
    with pytest.raises(BadRequest, match="nests more than"):
        NUMBERS.rows(("[" * 10_000 + "]" * 10_000).encode(), fmt)


def test_a_missing_value_is_refused_only_where_the_contract_requires_one():
    schema = InputSchema([{"name": "a", "type": "double", "required": True}, {"name": "b", "type": "double"}])

    assert math.isnan(schema.array(schema.rows(b"1,\n", CSV))[0, 1])
    with pytest.raises(BadRequest, match=r"row 2, column 'a' \(double\).*required"):
        schema.array(schema.rows(b"1,2\nnan,2\n", CSV))
