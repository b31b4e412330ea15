"""The data-capture format: records as SageMaker writes them, the object key layout, and reading them back."""

from __future__ import annotations

import base64
import datetime as dt
import doctest
import json

import pytest

from modelwerk.core import capture
from modelwerk.core.capture import CaptureRecordError, capture_line, capture_record, iter_lines, object_key, parse_line

WHEN = dt.datetime(2026, 3, 1, 12, 7, 5, 42_000, tzinfo=dt.UTC)


def test_a_record_has_sagemakers_shape():
    record = capture_record("1.5,2.0\n", "text/csv", '{"predictions":[1]}', "application/json",
                            event_id="e-1", inference_id="order-7", inference_time=WHEN)

    assert record == {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1.5,2.0\n",
                              "encoding": "CSV"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                               "data": '{"predictions":[1]}', "encoding": "JSON"},
        },
        "eventMetadata": {"eventId": "e-1", "inferenceId": "order-7", "inferenceTime": "2026-03-01T12:07:05Z"},
        "eventVersion": "0",
    }


def test_the_inference_id_is_recorded_only_when_given():
    record = capture_record(b"1", "text/csv", b"0", "text/csv", inference_time=WHEN)

    assert "inferenceId" not in record["eventMetadata"]
    assert record["eventMetadata"]["eventId"]  # a fresh UUID


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        pytest.param("text/csv; charset=utf-8", "CSV", id="csv-with-charset"),
        pytest.param("application/json", "JSON", id="json"),
        pytest.param("application/jsonlines", "JSON", id="jsonlines"),
        pytest.param("application/x-npy", "BASE64", id="binary"),
    ],
)
def test_text_content_types_are_captured_as_text_others_as_base64(content_type, encoding):
    side = capture_record(b"[1,2]", content_type, None, None, inference_time=WHEN)["captureData"]["endpointInput"]

    assert side["encoding"] == encoding
    assert side["data"] == ("[1,2]" if encoding != "BASE64" else base64.b64encode(b"[1,2]").decode())


def test_a_text_body_that_is_not_utf8_is_kept_exactly_as_base64():
    record = capture_record(b"\xff\xfe1,2", "text/csv", b"0", "text/csv", inference_time=WHEN)
    side = record["captureData"]["endpointInput"]

    assert side["encoding"] == "BASE64"
    assert base64.b64decode(side["data"]) == b"\xff\xfe1,2"


def test_a_line_round_trips_through_parse_line():
    line = capture_line("größe,1\n", "text/csv", b'{"prediction":"ok"}\n', "application/jsonlines",
                        inference_id="i-9", inference_time=WHEN)

    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.isascii()  # nothing a line splitter could take for a line break
    parsed = parse_line(line)
    assert (parsed.input_data, parsed.input_content_type, parsed.input_encoding) == ("größe,1\n", "text/csv", "CSV")
    assert (parsed.output_data, parsed.output_encoding) == ('{"prediction":"ok"}\n', "JSON")
    assert parsed.inference_id == "i-9"
    assert parsed.inference_time == WHEN.replace(microsecond=0)


@pytest.mark.parametrize(
    ("input_data", "input_type", "output_data", "output_type", "inference_id"),
    [
        pytest.param('a "quoted", \\ back\tslash\n', "text/csv", "1\n", "text/csv", None, id="escapes"),
        pytest.param("größe \u2028 \x00 \U0001f600", "application/json", b"[1]", "application/json", 'id "7"',
                     id="unicode-and-controls"),
        pytest.param(b"\x00\xff", "application/x-npy", None, None, "x", id="base64-input-only"),
        pytest.param(None, None, "0", "text/csv; charset=utf-8", None, id="output-only"),
    ],
)
def test_a_line_is_exactly_the_json_of_the_record(input_data, input_type, output_data, output_type, inference_id):
    arguments = {"event_id": "e-1", "inference_id": inference_id, "inference_time": WHEN}

    line = capture_line(input_data, input_type, output_data, output_type, **arguments)

    record = capture_record(input_data, input_type, output_data, output_type, **arguments)
    assert line == json.dumps(record, separators=(",", ":")).encode("ascii") + b"\n"


def test_base64_sides_are_decoded_to_text():
    parsed = parse_line(capture_line(b"1,2", "application/octet-stream", b"0", "text/csv", inference_time=WHEN))

    assert (parsed.input_data, parsed.input_encoding) == ("1,2", "BASE64")


def test_an_input_only_capture_has_no_output_side():
    parsed = parse_line(capture_line(b"1,2", "text/csv", None, None, inference_time=WHEN))

    assert parsed.input_data == "1,2"
    assert parsed.output_data is None and parsed.output_content_type is None


def test_a_record_needs_a_side_and_an_aware_time():
    with pytest.raises(ValueError, match="input, the output or both"):
        capture_record(None, None, None, None)
    with pytest.raises(ValueError, match="timezone-aware"):
        capture_record(b"1", "text/csv", None, None, inference_time=dt.datetime(2026, 1, 1))


def test_object_keys_follow_sagemakers_layout():
    assert object_key("capture/", "pump-health", "AllTraffic", WHEN, unique="u1") == (
        "capture/pump-health/AllTraffic/2026/03/01/12/07-05-042-u1.jsonl"
    )
    assert object_key("", "e", "v", WHEN, unique="u").startswith("e/v/2026/03/01/12/")


def test_object_keys_are_in_utc_and_unique_by_default():
    berlin = WHEN.astimezone(dt.timezone(dt.timedelta(hours=1)))

    first, second = (object_key("p", "e", "AllTraffic", berlin) for _ in range(2))

    assert first.startswith("p/e/AllTraffic/2026/03/01/12/07-05-042-")
    assert first != second


def test_object_keys_refuse_names_that_would_break_the_layout():
    with pytest.raises(ValueError, match="endpoint"):
        object_key("p", "a/b", "AllTraffic", WHEN)


def _valid() -> dict:
    return json.loads(capture_line("1", "text/csv", "0", "text/csv", inference_id="x", inference_time=WHEN))


def _without(path: tuple[str, ...]) -> dict:
    document = _valid()
    target = document
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return document


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(b"{not json", "not JSON", id="not-json"),
        pytest.param(b"\xff\xfe", "not UTF-8", id="not-utf8"),
        pytest.param(b"[1, 2]", "not an object", id="not-an-object"),
        pytest.param(json.dumps(_without(("eventVersion",))), "eventVersion", id="no-version"),
        pytest.param(json.dumps({**_valid(), "eventVersion": "7"}), "eventVersion", id="unknown-version"),
        pytest.param(json.dumps(_without(("captureData",))), "captureData", id="no-capture-data"),
        pytest.param(json.dumps({**_valid(), "captureData": {}}), "neither", id="no-sides"),
        pytest.param(json.dumps(_without(("eventMetadata", "inferenceTime"))), "inferenceTime", id="no-time"),
        pytest.param(json.dumps(_without(("captureData", "endpointInput", "data"))), "data", id="no-data"),
    ],
)
def test_corrupt_lines_raise_a_clear_error(line, reason):
    with pytest.raises(CaptureRecordError, match=reason):
        parse_line(line)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        pytest.param("encoding", "XML", "encoding", id="unknown-encoding"),
        pytest.param("mode", "OUTPUT", "mode", id="wrong-mode"),
        pytest.param("data", 12, "not a string", id="data-not-text"),
    ],
)
def test_a_side_with_a_bad_field_is_corrupt(field, value, reason):
    document = _valid()
    document["captureData"]["endpointInput"][field] = value

    with pytest.raises(CaptureRecordError, match=reason):
        parse_line(json.dumps(document))


def test_bad_base64_and_bad_times_are_corrupt():
    document = _valid()
    document["captureData"]["endpointInput"].update(encoding="BASE64", data="***")
    with pytest.raises(CaptureRecordError, match="base64"):
        parse_line(json.dumps(document))

    document = _valid()
    document["eventMetadata"]["inferenceTime"] = "2026-03-01T12:00:00"
    with pytest.raises(CaptureRecordError, match="time zone"):
        parse_line(json.dumps(document))


def test_the_error_is_a_value_error():
    assert issubclass(CaptureRecordError, ValueError)


def test_iter_lines_skips_and_counts_corrupt_lines():
    good = [capture_line(f"{i}", "text/csv", "0", "text/csv", inference_time=WHEN) for i in range(3)]
    body = good[0] + b"garbage\n" + good[1] + b"\n" + b'{"eventVersion": "0"}\n' + good[2]

    lines = iter_lines(body)
    records = list(lines)

    assert [r.input_data for r in records] == ["0", "1", "2"]
    assert (lines.records, lines.corrupt) == (3, 2)
    assert [number for number, _ in lines.errors] == [2, 5]


def test_iter_lines_reads_text_bodies_and_starts_over_when_iterated_again():
    body = capture_line("1", "text/csv", "0", "text/csv", inference_time=WHEN).decode() + "oops\n"
    lines = iter_lines(body)

    assert len(list(lines)) == 1 and len(list(lines)) == 1
    assert lines.corrupt == 1


def test_docstring_examples_run():
    assert doctest.testmod(capture, raise_on_error=False).failed == 0
