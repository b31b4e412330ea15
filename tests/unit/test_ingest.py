"""Contract checks of one landing file (modelwerk.core.ingest): row rules, whole-file rejections, formats, output."""

from __future__ import annotations

import codecs
import datetime as dt
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwerk.core import _readers
from modelwerk.core.contract import Contract
from modelwerk.core.ingest import IngestResult, ingest_file, parquet_bytes, parquet_partitions, raw_arrow_schema
from modelwerk.core.pseudonymize import pseudonymize_value

ROOT = Path(__file__).resolve().parents[2]
PUMP = Contract.load(ROOT / "sagemaker_pipelines" / "pump_health" / "contract.json")
ENERGY = Contract.load(ROOT / "sagemaker_pipelines" / "energy_forecast" / "contract.json")
KEY = b"test-key"
SOURCE = "s3://landing/pump-health/readings.csv"
NOW = dt.datetime(2024, 3, 2, 6, 0, tzinfo=dt.timezone.utc)
COLUMNS = PUMP.column_names
GOOD = {
    "pump_id": "P-001",
    "site": "plant-north",
    "timestamp": "2024-03-01T10:00:00Z",
    "operator_email": "ops@example.com",
    "vibration_rms": "1.5",
    "bearing_temp_c": "60",
    "flow_m3h": "100",
    "pressure_bar": "10",
    "speed_rpm": "1500",
    "power_kw": "100",
    "failure": "0",
}


def row(**changes: str) -> dict[str, str]:
    return {**GOOD, **changes}


def rows(count: int, **changes: str) -> list[dict[str, str]]:
    """``count`` good rows with distinct keys (one pump, ten minutes apart)."""
    return [row(timestamp=f"2024-03-01T{i // 6:02d}:{i % 6 * 10:02d}:00Z", **changes) for i in range(count)]


def csv_bytes(records: list[dict[str, str]], columns: list[str] = COLUMNS) -> bytes:
    lines = [",".join(columns)] + [",".join(r.get(c, "") for c in columns) for r in records]
    return ("\n".join(lines) + "\n").encode("utf-8")


def jsonl_bytes(records: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode("utf-8")


def ingest(data: bytes, file_name: str = "readings.csv", contract: Contract = PUMP) -> IngestResult:
    return ingest_file(data, file_name, contract, pseudonymization_key=KEY, source_key=SOURCE, ingested_at=NOW)


def assert_balanced(result: IngestResult) -> None:
    report = result.report()
    assert report["rows_in"] == report["rows_accepted"] + report["rows_quarantined"]
    assert sum(report["reasons"].values()) == report["rows_quarantined"]


# -- the happy path -----------------------------------------------------------------------------------------------


def test_clean_csv_is_accepted_whole_in_the_raw_schema() -> None:
    result = ingest(csv_bytes(rows(3)))

    assert result.report() == {
        "rows_in": 3,
        "rows_accepted": 3,
        "rows_quarantined": 0,
        "files_quarantined": 0,
        "reasons": {},
        "dropped_columns": [],
        "file_rejection": None,
    }
    assert result.accepted.select(raw_arrow_schema(PUMP).names).cast(raw_arrow_schema(PUMP)).schema == raw_arrow_schema(
        PUMP
    )
    assert result.accepted.column("dt").type == pa.date32()


def test_written_partitions_read_back_in_the_raw_schema_without_dt() -> None:
    result = ingest(csv_bytes(rows(3)))

    files = parquet_partitions(result)

    assert list(files) == ["2024-03-01"]
    table = pq.read_table(io.BytesIO(files["2024-03-01"]))
    assert table.schema == raw_arrow_schema(PUMP)
    assert table.column("_source_key").to_pylist() == [SOURCE] * 3
    assert table.column("_ingested_at").to_pylist() == [NOW] * 3


def test_personal_values_are_replaced_by_their_keyed_digest() -> None:
    result = ingest(csv_bytes(rows(2) + [row(timestamp="2024-03-01T05:00:00Z", operator_email="")]))

    emails = result.accepted.column("operator_email").to_pylist()
    assert emails == [pseudonymize_value("ops@example.com", KEY)] * 2 + [None]


def test_values_are_typed_by_the_contract() -> None:
    result = ingest(csv_bytes([row(vibration_rms=" 2.25 ", failure="1", timestamp="2024-03-01T10:00:00")]))

    first = result.accepted.to_pylist()[0]
    assert first["vibration_rms"] == 2.25
    assert first["failure"] == 1
    assert first["timestamp"] == dt.datetime(2024, 3, 1, 10, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param("2024-03-01T10:00:00Z", dt.datetime(2024, 3, 1, 10), id="zulu"),
        pytest.param("2024-03-01T12:00:00+02:00", dt.datetime(2024, 3, 1, 10), id="offset"),
        pytest.param("2024-03-01T10:00:00", dt.datetime(2024, 3, 1, 10), id="naive-is-utc"),
        pytest.param("2024-03-01 10:00:00.250", dt.datetime(2024, 3, 1, 10, 0, 0, 250000), id="space-fraction"),
        pytest.param("2024-03-01T10:00:00.123456789Z", dt.datetime(2024, 3, 1, 10, 0, 0, 123456), id="nanoseconds"),
    ],
)
def test_iso_timestamps_are_stored_in_utc(written: str, expected: dt.datetime) -> None:
    result = ingest(csv_bytes([row(timestamp=written)]))

    assert result.accepted.column("timestamp").to_pylist() == [expected.replace(tzinfo=dt.timezone.utc)]


def test_mixed_timestamp_forms_in_one_file_all_parse() -> None:
    written = ["2024-03-01T10:00:00Z", "2024-03-01T10:10:00", "2024-03-01T12:20:00+02:00"]

    result = ingest(csv_bytes([row(timestamp=t) for t in written]))

    assert result.rows_accepted == 3


def test_dt_is_the_utc_date_of_the_timestamp() -> None:
    result = ingest(csv_bytes([row(timestamp="2024-03-01T23:30:00-02:00"), row(timestamp="2024-03-01T23:30:00Z")]))

    assert set(result.partitions()) == {"2024-03-01", "2024-03-02"}


def test_partitions_group_unsorted_rows_by_day() -> None:
    days = ["2024-03-02", "2024-03-01", "2024-03-02", "2024-03-01"]
    records = [row(pump_id=f"P-00{i}", timestamp=f"{d}T10:00:00Z") for i, d in enumerate(days)]

    parts = ingest(csv_bytes(records)).partitions()

    assert {d: t.num_rows for d, t in parts.items()} == {"2024-03-01": 2, "2024-03-02": 2}
    assert parts["2024-03-01"].column("pump_id").to_pylist() == ["P-001", "P-003"]
    assert "dt" not in parts["2024-03-01"].column_names


def test_boundaries_of_min_and_max_are_inclusive() -> None:
    result = ingest(csv_bytes([row(vibration_rms="100", flow_m3h="0")]))

    assert result.rows_accepted == 1


def test_integral_floats_are_integers() -> None:
    result = ingest(csv_bytes([row(failure="1.0")]))

    assert result.accepted.column("failure").to_pylist() == [1]


def test_optional_column_absent_from_the_header_is_null() -> None:
    columns = [c for c in COLUMNS if c != "operator_email"]

    result = ingest(csv_bytes(rows(2), columns))

    assert result.rows_accepted == 2
    assert result.accepted.column("operator_email").null_count == 2


def test_columns_may_come_in_any_order() -> None:
    result = ingest(csv_bytes(rows(2), list(reversed(COLUMNS))))

    assert result.rows_accepted == 2


def test_utf8_byte_order_mark_is_ignored() -> None:
    result = ingest(codecs.BOM_UTF8 + csv_bytes(rows(1)))

    assert result.rows_accepted == 1


def test_crlf_line_endings_and_blank_lines_are_fine() -> None:
    data = csv_bytes(rows(2)).replace(b"\n", b"\r\n").replace(b"\r\n", b"\r\n\r\n", 1)

    result = ingest(data)

    assert result.rows_in == 2
    assert result.rows_accepted == 2


# -- row rules ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"vibration_rms": "fast"}, "type:vibration_rms", id="type-double"),
        pytest.param({"failure": "yes"}, "type:failure", id="type-integer"),
        pytest.param({"failure": "0.5"}, "type:failure", id="type-integer-fraction"),
        pytest.param({"timestamp": "yesterday"}, "type:timestamp", id="type-timestamp"),
        pytest.param({"timestamp": "2024-02-30T00:00:00Z"}, "type:timestamp", id="type-timestamp-no-such-day"),
        pytest.param({"vibration_rms": "100.01"}, "out_of_range:vibration_rms", id="above-max"),
        pytest.param({"flow_m3h": "-0.5"}, "out_of_range:flow_m3h", id="below-min"),
        pytest.param({"vibration_rms": "inf"}, "out_of_range:vibration_rms", id="infinity"),
        pytest.param({"site": "plant-west"}, "not_allowed:site", id="not-allowed"),
        pytest.param({"site": "Plant-North"}, "not_allowed:site", id="not-allowed-case"),
        pytest.param({"pump_id": "P-1"}, "pattern:pump_id", id="pattern"),
        pytest.param({"pump_id": "P-0012"}, "pattern:pump_id", id="pattern-full-match"),
        pytest.param({"bearing_temp_c": ""}, "missing_required:bearing_temp_c", id="missing-required"),
        pytest.param({"vibration_rms": "NaN"}, "missing_required:vibration_rms", id="nan-is-missing"),
        pytest.param({"site": ""}, "missing_required:site", id="missing-required-string"),
    ],
)
def test_a_failing_row_is_quarantined_with_its_reason(changes: dict[str, str], reason: str) -> None:
    result = ingest(csv_bytes([*rows(2), row(**{"timestamp": "2024-03-01T09:00:00Z", **changes})]))

    assert result.rows_accepted == 2
    assert result.reasons == {reason: 1}
    assert result.quarantined_rows[0]["_reason"] == reason
    assert_balanced(result)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"bearing_temp_c": "", "failure": "x"}, "type:failure", id="type-before-missing"),
        pytest.param(
            {"pump_id": "P-1", "vibration_rms": "500"}, "out_of_range:vibration_rms", id="range-before-pattern"
        ),
        pytest.param({"site": "moon", "pump_id": "bad"}, "not_allowed:site", id="allowed-before-pattern"),
        pytest.param({"vibration_rms": "x", "failure": "y"}, "type:vibration_rms", id="columns-in-contract-order"),
    ],
)
def test_the_first_failing_rule_names_the_reason(changes: dict[str, str], reason: str) -> None:
    result = ingest(csv_bytes([row(**changes)]))

    assert result.reasons == {reason: 1}


def test_duplicate_key_keeps_the_first_occurrence() -> None:
    first = row(vibration_rms="1.0")
    again = row(vibration_rms="2.0")

    result = ingest(csv_bytes([first, again]))

    assert result.accepted.column("vibration_rms").to_pylist() == [1.0]
    assert result.quarantined_rows[0]["_reason"] == "duplicate_key"
    assert result.quarantined_rows[0]["_row"] == 2


def test_duplicate_key_compares_instants_not_spellings() -> None:
    result = ingest(csv_bytes([row(timestamp="2024-03-01T10:00:00Z"), row(timestamp="2024-03-01T12:00:00+02:00")]))

    assert result.reasons == {"duplicate_key": 1}


def test_a_rejected_row_does_not_shadow_a_later_good_row_with_its_key() -> None:
    result = ingest(csv_bytes([row(vibration_rms="-5"), row()]))

    assert result.rows_accepted == 1
    assert result.reasons == {"out_of_range:vibration_rms": 1}


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("P-002,plant-north,2024-03-01T10:00:00Z", id="truncated"),
        pytest.param("P-002,plant-north,2024-03-01T10:00:00Z,a@b.c,1,1,1,1,1,1,0,surplus", id="extra-field"),
        pytest.param('P-002,"plant-north', id="unterminated-quote"),
    ],
)
def test_a_line_with_the_wrong_number_of_fields_is_a_malformed_row(line: str) -> None:
    data = csv_bytes(rows(2)) + line.encode()

    result = ingest(data)

    assert result.rows_in == 3
    assert result.rows_accepted == 2
    assert result.reasons == {"malformed_row": 1}
    assert result.quarantined_rows[0]["_row"] == 3


def test_quarantined_rows_carry_their_row_number_around_malformed_rows_and_blank_lines() -> None:
    lines = csv_bytes([row(), row(timestamp="2024-03-01T11:00:00Z", site="moon")]).decode().splitlines()
    data = "\n".join([lines[0], "P-1,truncated", "", lines[1], lines[2]]).encode()

    result = ingest(data)

    assert [(q["_row"], q["_reason"]) for q in result.quarantined_rows] == [
        (1, "malformed_row"),
        (3, "not_allowed:site"),
    ]


def test_quarantined_row_shows_fields_as_read_with_personal_ones_pseudonymized() -> None:
    result = ingest(csv_bytes([row(vibration_rms="1.50e3")]))

    (quarantined,) = result.quarantined_rows
    assert quarantined["_source_key"] == SOURCE
    assert quarantined["vibration_rms"] == "1.50e3"
    assert quarantined["operator_email"] == pseudonymize_value("ops@example.com", KEY)
    assert list(quarantined)[:3] == ["_reason", "_row", "_source_key"]


def test_malformed_row_fields_are_pseudonymized_when_the_contract_has_personal_columns() -> None:
    result = ingest(csv_bytes([]) + b"P-001,ops@example.com\n" + csv_bytes(rows(1)).split(b"\n", 1)[1])

    (quarantined,) = result.quarantined_rows
    assert quarantined["_fields"] == [pseudonymize_value(v, KEY) for v in ("P-001", "ops@example.com")]
    assert "pump_id" not in quarantined


def test_a_large_file_read_in_parts_numbers_its_rows_as_a_single_read_does(monkeypatch: pytest.MonkeyPatch) -> None:
    start = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    lines = csv_bytes([row(timestamp=(start + dt.timedelta(minutes=i)).isoformat()) for i in range(120_000)]).split(
        b"\n"
    )
    for position in (7, 30_000, 45_001, 60_000):  # malformed rows, spread over the parts
        lines[position] = b"P-001,cut"
    lines[50_000] = b""  # a blank line is no row
    lines[70_000] = lines[70_000].replace(b"plant-north", b"moon")
    data = b"\n".join(lines)
    assert len(_readers._parts(data)) > 1 or _readers.WORKERS == 1  # read in parts where the machine allows

    in_parts = ingest(data)
    monkeypatch.setattr(_readers, "WORKERS", 1)
    single = ingest(data)

    assert in_parts.report() == single.report()
    assert in_parts.quarantined_rows == single.quarantined_rows
    assert [q["_row"] for q in single.quarantined_rows] == [7, 30_000, 45_001, 59_999, 69_999]


def test_quarantine_jsonl_has_one_object_per_quarantined_row() -> None:
    result = ingest(csv_bytes([row(site="moon"), row(timestamp="2024-03-01T11:00:00Z", pump_id="x")]))

    lines = result.quarantine_jsonl().decode().splitlines()

    assert [json.loads(line)["_reason"] for line in lines] == ["not_allowed:site", "pattern:pump_id"]


# -- whole-file rejections ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "file_name", "reason"),
    [
        pytest.param(b"a,b\n1,2\n", "readings.xlsx", "unsupported_format", id="unsupported-format"),
        pytest.param(b"a,b\n", "readings.csv.gz", "unsupported_format", id="compressed"),
        pytest.param(b"", "readings.csv", "empty_file", id="empty-csv"),
        pytest.param(b" \n\r\n\t", "readings.csv", "empty_file", id="blank-csv"),
        pytest.param(b"", "readings.jsonl", "empty_file", id="empty-jsonl"),
        pytest.param(b"", "readings.parquet", "empty_file", id="empty-parquet"),
        pytest.param(csv_bytes([]), "readings.csv", "empty_file", id="header-only"),
        pytest.param(
            csv_bytes(rows(1)).replace(b"ops@", "Müller@".encode("latin-1")), "r.csv", "encoding", id="latin-1"
        ),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "r.csv", "binary_file", id="png"),
        pytest.param(gzip.compress(csv_bytes(rows(5))), "readings.csv", "binary_file", id="gzip-named-csv"),
        pytest.param(b"PAR1 this is not parquet", "readings.parquet", "unreadable:parquet", id="not-parquet"),
        pytest.param(csv_bytes(rows(1)), "readings.parquet", "unreadable:parquet", id="csv-named-parquet"),
    ],
)
def test_a_file_that_cannot_be_read_is_rejected_whole(data: bytes, file_name: str, reason: str) -> None:
    result = ingest(data, file_name)

    assert result.file_rejection == reason
    assert result.files_quarantined == 1
    assert result.rows_accepted == 0
    assert_balanced(result)


def test_truncated_parquet_is_unreadable() -> None:
    data = parquet_bytes(ingest(csv_bytes(rows(3))).accepted)

    result = ingest(data[: len(data) // 2], "readings.parquet")

    assert result.file_rejection == "unreadable:parquet"


def test_missing_required_column_rejects_the_file_and_counts_its_rows() -> None:
    columns = [c for c in COLUMNS if c != "bearing_temp_c"]

    result = ingest(csv_bytes(rows(4), columns))

    assert result.file_rejection == "missing_column:bearing_temp_c"
    assert (result.rows_in, result.rows_quarantined) == (4, 4)
    assert result.reasons == {"missing_column:bearing_temp_c": 4}


def test_unknown_column_rejects_the_file_under_a_strict_contract() -> None:
    result = ingest(csv_bytes(rows(2), [*COLUMNS, "colour"]))

    assert result.file_rejection == "unknown_column:colour"
    assert result.rows_quarantined == 2


# -- header names ---------------------------------------------------------------------------------------------------


def header_file(header: str, count: int = 4) -> bytes:
    """``count`` good rows under a header line written as given (its fields in the contract's order)."""
    lines = [header] + [",".join(r[c] for c in COLUMNS) for r in rows(count)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        pytest.param(",".join(COLUMNS).replace("site", "site,site", 1), "duplicate_column:site", id="repeated"),
        pytest.param(",".join(COLUMNS).replace("site", "site,Site", 1), "duplicate_column:site", id="repeated-case"),
        pytest.param(",".join(COLUMNS).replace("pump_id", "Pump_ID"), "column_name_case:Pump_ID→pump_id", id="case"),
        pytest.param(
            ",".join(COLUMNS).replace("pump_id", " PUMP_ID "), "column_name_case:PUMP_ID→pump_id", id="case-and-blanks"
        ),
        pytest.param(",".join(COLUMNS) + ",", "empty_column_name", id="trailing-delimiter"),
        pytest.param(",".join(COLUMNS).replace("site,", "site,,", 1), "empty_column_name", id="empty-name"),
        pytest.param(",".join(COLUMNS) + ",colour,", "empty_column_name", id="empty-before-unknown"),
    ],
)
def test_a_header_name_that_cannot_be_trusted_rejects_the_file_with_its_rows_counted(header: str, reason: str) -> None:
    data = header_file(header)
    if header.count(",") != len(COLUMNS) - 1:  # the rows carry the extra field too
        extra = header.count(",") - len(COLUMNS) + 1
        data = header_file(header).replace(b"0\n", b"0" + b"," * extra + b"\n")

    result = ingest(data)

    assert result.report() == {
        "rows_in": 4,
        "rows_accepted": 0,
        "rows_quarantined": 4,
        "files_quarantined": 1,
        "reasons": {reason: 4},
        "dropped_columns": [],
        "file_rejection": reason,
    }


def test_header_names_with_surrounding_blanks_are_the_declared_columns() -> None:
    result = ingest(header_file(",".join(f" {c}\t" for c in COLUMNS)))

    assert (result.rows_in, result.rows_accepted, result.file_rejection) == (4, 4, None)


def test_json_keys_are_matched_as_csv_header_names_are() -> None:
    spaced = [{(" site " if k == "site" else k): v for k, v in r.items()} for r in rows(3)]
    cased = [{("Site" if k == "site" else k): v for k, v in r.items()} for r in rows(3)]

    from_spaced, from_cased = ingest(jsonl_bytes(spaced), "r.jsonl"), ingest(jsonl_bytes(cased), "r.jsonl")

    assert (from_spaced.rows_accepted, from_spaced.file_rejection) == (3, None)
    assert (from_cased.rows_in, from_cased.reasons) == (3, {"column_name_case:Site→site": 3})


def test_a_lenient_contract_drops_an_empty_column_name() -> None:
    header = ",".join(c for c in ENERGY.column_names if c not in ("shift_lead", "humidity_pct")) + ","
    data = f"{header}\nPV-01,solar,2024-03-01T10:00:00Z,500,20,3,10,50,20,\n".encode()

    result = ingest(data, contract=ENERGY)

    assert (result.rows_accepted, result.dropped_columns) == (1, ("",))


# -- encodings and NUL bytes ----------------------------------------------------------------------------------------


def readings(count: int, **changes: str) -> list[dict[str, str]]:
    """``count`` good rows of one pump, ten minutes apart from 2024-03-01 00:00 (any count, across days)."""
    start = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    return [row(timestamp=(start + dt.timedelta(minutes=10 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"), **changes)
            for i in range(count)]



@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_text_is_read_with_every_row_counted_once(encoding: str) -> None:
    records = readings(1000)
    records[7] = row(timestamp=records[7]["timestamp"], site="plant-mars")

    result = ingest(csv_bytes(records).decode().encode(encoding))

    assert (result.rows_in, result.rows_accepted, result.reasons) == (1000, 999, {"not_allowed:site": 1})


def test_nul_bytes_in_two_fields_quarantine_those_two_rows_and_the_rest_is_read() -> None:
    data = csv_bytes(readings(1000))
    data = data.replace(b"plant-north,2024-03-01T00:10", b"plant\x00north,2024-03-01T00:10")
    data = data.replace(b"2024-03-01T00:20:00Z,ops@example.com,1.5", b"2024-03-01T00:20:00Z,ops@example.com,1.\x005")

    result = ingest(data)

    assert (result.rows_in, result.rows_accepted, result.rows_quarantined) == (1000, 998, 2)
    assert result.reasons == {"nul_byte:site": 1, "nul_byte:vibration_rms": 1}
    assert [(q["_row"], q["_reason"]) for q in result.quarantined_rows] == [(2, "nul_byte:site"),
                                                                             (3, "nul_byte:vibration_rms")]


def test_an_escaped_nul_in_json_is_quarantined_like_a_nul_byte() -> None:
    records = rows(3)
    records[1] = {**records[1], "pump_id": "P-0\x0001"}

    result = ingest(jsonl_bytes(records), "r.jsonl")

    assert (result.rows_in, result.rows_accepted, result.reasons) == (3, 2, {"nul_byte:pump_id": 1})


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "shift_jis"])
def test_text_in_another_encoding_is_rejected_with_its_rows_counted(encoding: str) -> None:
    data = csv_bytes(readings(1000, operator_email="Müller@example.com" if encoding != "shift_jis" else "日本@example.com"))

    result = ingest(data.decode().encode(encoding))

    assert (result.file_rejection, result.rows_in, result.rows_quarantined) == ("encoding", 1000, 1000)
    assert result.reasons == {"encoding": 1000}


def test_unknown_columns_are_dropped_and_reported_under_a_lenient_contract() -> None:
    header = ",".join([c for c in ENERGY.column_names if c not in ("shift_lead", "humidity_pct")] + ["note"])
    data = f"{header}\nPV-01,solar,2024-03-01T10:00:00Z,500,20,3,10,50,20,hello\n".encode()

    result = ingest(data, contract=ENERGY)

    assert result.rows_accepted == 1
    assert result.dropped_columns == ("note",)
    assert result.report()["dropped_columns"] == ["note"]
    assert "note" not in result.accepted.column_names


# -- JSON Lines ---------------------------------------------------------------------------------------------------


def json_row(**changes: object) -> dict:
    typed: dict = {
        **GOOD,
        "vibration_rms": 1.5,
        "bearing_temp_c": 60,
        "flow_m3h": 100.0,
        "pressure_bar": 10,
        "speed_rpm": 1500,
        "power_kw": 100,
        "failure": 0,
    }
    return {**typed, **changes}


@pytest.mark.parametrize("extension", [".jsonl", ".ndjson", ".json"])
def test_json_lines_are_accepted_by_any_of_their_extensions(extension: str) -> None:
    data = jsonl_bytes([json_row(), json_row(timestamp="2024-03-01T11:00:00Z")])

    result = ingest(data, "readings" + extension)

    assert result.rows_accepted == 2
    assert result.accepted.column("vibration_rms").to_pylist() == [1.5, 1.5]


def test_json_numbers_may_come_as_strings() -> None:
    result = ingest(jsonl_bytes([json_row(vibration_rms="1.5", failure="1")]), "r.jsonl")

    assert result.accepted.column("failure").to_pylist() == [1]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(b'{"pump_id": "P-009", "site": ', "malformed_row", id="not-json"),
        pytest.param(b"[1, 2, 3]", "malformed_row", id="not-an-object"),
        pytest.param(b'{"a": 1} {"b": 2}', "malformed_row", id="two-objects-on-a-line"),
        pytest.param(json.dumps(json_row(pump_id=7)).encode(), "type:pump_id", id="number-for-string"),
        pytest.param(json.dumps(json_row(failure=True)).encode(), "type:failure", id="boolean-for-integer"),
        pytest.param(json.dumps(json_row(vibration_rms={"v": 1})).encode(), "type:vibration_rms", id="object-value"),
        pytest.param(
            json.dumps({k: v for k, v in json_row().items() if k != "site"}).encode(),
            "missing_required:site",
            id="key-absent-in-one-line",
        ),
    ],
)
def test_a_bad_json_line_is_quarantined_with_its_reason(line: bytes, reason: str) -> None:
    data = jsonl_bytes([json_row(timestamp="2024-03-01T01:00:00Z")]) + b"\n" + line + b"\n"

    result = ingest(data, "readings.jsonl")

    assert result.rows_in == 2
    assert result.reasons == {reason: 1}
    assert result.quarantined_rows[0]["_row"] == 2


def test_json_required_key_absent_from_every_line_rejects_the_file() -> None:
    records = [
        {k: v for k, v in json_row(timestamp=f"2024-03-01T0{i}:00:00Z").items() if k != "power_kw"} for i in range(3)
    ]

    result = ingest(jsonl_bytes(records), "readings.jsonl")

    assert result.file_rejection == "missing_column:power_kw"
    assert result.rows_quarantined == 3


def test_json_unknown_key_rejects_the_file_under_a_strict_contract() -> None:
    result = ingest(jsonl_bytes([json_row(colour="red")]), "readings.jsonl")

    assert result.file_rejection == "unknown_column:colour"


def test_json_malformed_line_text_is_pseudonymized_when_the_contract_has_personal_columns() -> None:
    data = jsonl_bytes([json_row()]) + b'{"operator_email": "ops@example.com",\n'

    result = ingest(data, "readings.jsonl")

    assert result.quarantined_rows[0]["_text"] == pseudonymize_value('{"operator_email": "ops@example.com",', KEY)


# -- Parquet ------------------------------------------------------------------------------------------------------


def test_parquet_with_narrower_types_is_accepted() -> None:
    table = pa.table(
        {
            "pump_id": ["P-001"],
            "site": ["plant-north"],
            "timestamp": pa.array([dt.datetime(2024, 3, 1, 10)], pa.timestamp("ms")),
            "vibration_rms": pa.array([1.5], pa.float32()),
            "bearing_temp_c": [60.0],
            "flow_m3h": pa.array([100], pa.int32()),
            "pressure_bar": [10.0],
            "speed_rpm": [1500.0],
            "power_kw": [100.0],
            "failure": pa.array([0], pa.int8()),
        }
    )

    result = ingest(parquet_bytes(table), "readings.parquet")

    assert result.rows_accepted == 1
    assert result.accepted.column("timestamp").to_pylist() == [dt.datetime(2024, 3, 1, 10, tzinfo=dt.timezone.utc)]


def test_parquet_value_of_the_wrong_type_is_a_type_failure() -> None:
    table = pa.table({c: [GOOD[c]] for c in COLUMNS}).set_column(0, "pump_id", pa.array([1], pa.int64()))

    result = ingest(parquet_bytes(table), "readings.parquet")

    assert result.reasons == {"type:pump_id": 1}
    assert result.quarantined_rows[0]["pump_id"] == "1"


def test_parquet_round_trip_of_raw_output_is_accepted_again() -> None:
    first = ingest(csv_bytes(rows(3)))
    raw = pq.read_table(io.BytesIO(parquet_bytes(first.accepted))).drop_columns(["_ingested_at", "_source_key", "dt"])

    again = ingest(parquet_bytes(raw), "again.parquet")

    assert again.rows_accepted == 3  # personal values were already digests: they stay strings


# -- report -------------------------------------------------------------------------------------------------------


def test_report_balances_rows_and_reasons_on_a_mixed_file() -> None:
    records = [*rows(5), row(site="moon"), rows(1)[0], row(timestamp="2024-03-01T23:00:00Z", failure="x")]

    result = ingest(csv_bytes(records) + b"P-1,broken\n")

    assert result.report()["rows_in"] == 9
    assert result.reasons == {"not_allowed:site": 1, "duplicate_key": 1, "type:failure": 1, "malformed_row": 1}
    assert_balanced(result)
