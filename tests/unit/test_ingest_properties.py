"""Properties of the ingestion core on arbitrary input: it never raises and every row is accounted for."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelwerk.core.contract import Contract
from modelwerk.core.ingest import IngestResult, ingest_file

ROOT = Path(__file__).resolve().parents[2]
PUMP = Contract.load(ROOT / "sagemaker_pipelines" / "pump_health" / "contract.json")
ENERGY = Contract.load(ROOT / "sagemaker_pipelines" / "energy_forecast" / "contract.json")
NOW = dt.datetime(2024, 3, 2, tzinfo=dt.timezone.utc)
HEADER = ",".join(PUMP.column_names)
EXTENSIONS = [".csv", ".jsonl", ".json", ".ndjson", ".parquet", ".txt"]

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Field values: plausible ones, near misses and junk, from an alphabet without separators, quotes or line breaks.
_JUNK = st.text(alphabet=st.characters(blacklist_characters=',"\r\n\x00', blacklist_categories=("Cs",)), max_size=8)
_VALUES = {
    "pump_id": st.sampled_from(["P-001", "P-002", "P-1", "", "X-001"]) | _JUNK,
    "site": st.sampled_from(["plant-north", "plant-east", "moon", ""]),
    "timestamp": st.sampled_from(
        ["2024-03-01T10:00:00Z", "2024-03-01T10:00:00", "2024-03-01T12:00:00+02:00", "2024-02-30T00:00:00", "", "x"]
    ),
    "operator_email": st.sampled_from(["a@x.org", "b@x.org", ""]) | _JUNK,
    "failure": st.sampled_from(["0", "1", "1.0", "2", "-1", "", " 1 ", "yes"]),
}
_NUMBER = st.sampled_from(["0", "1.5", " 42 ", "1e2", "-3", "100", "100.5", "nan", "inf", "", "abc"]) | _JUNK


def _record() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({c: _VALUES.get(c, _NUMBER) for c in PUMP.column_names})


def _csv_line(record: dict[str, str]) -> str:
    return ",".join(record[c] for c in PUMP.column_names)


def ingest(data: bytes, file_name: str, contract: Contract = PUMP) -> IngestResult:
    return ingest_file(data, file_name, contract, pseudonymization_key=b"k", source_key="s3://l/u/f", ingested_at=NOW)


def assert_accounted_for(result: IngestResult) -> None:
    report = result.report()
    assert report["rows_in"] >= 0
    assert report["rows_in"] == report["rows_accepted"] + report["rows_quarantined"]
    assert sum(report["reasons"].values()) == report["rows_quarantined"]
    assert report["files_quarantined"] == (1 if result.file_rejection else 0)
    if result.file_rejection is None:
        assert result.quarantine.num_rows == report["rows_quarantined"]
        assert sum(t.num_rows for t in result.partitions().values()) == report["rows_accepted"]
    json.dumps(report)  # the ledger stores it


def _non_empty_lines(text: str) -> int:
    return sum(1 for line in text.replace("\r\n", "\n").split("\n") if line)


@pytest.mark.parametrize("extension", EXTENSIONS)
@PROPERTY_SETTINGS
@given(data=st.binary(max_size=400))
def test_random_bytes_never_raise_and_balance(extension: str, data: bytes) -> None:
    assert_accounted_for(ingest(data, "f" + extension))


@PROPERTY_SETTINGS
@given(body=st.lists(st.text(max_size=60), max_size=12), extension=st.sampled_from([".csv", ".jsonl"]))
def test_random_text_lines_under_a_valid_header_never_raise_and_balance(body: list[str], extension: str) -> None:
    data = "\n".join([HEADER, *body]).encode("utf-8", "surrogatepass")

    assert_accounted_for(ingest(data, "f" + extension))


@PROPERTY_SETTINGS
@given(
    records=st.lists(_record(), max_size=12),
    dropped=st.lists(st.integers(0, 10), max_size=4),
    cut=st.integers(0, 400),
)
def test_every_non_empty_csv_line_after_the_header_is_a_row(records: list[dict], dropped: list[int], cut: int) -> None:
    lines = [HEADER]
    for number, record in enumerate(records):
        fields = [record[c] for c in PUMP.column_names]
        if number in dropped:  # a line with fields missing
            fields = fields[: len(fields) // 2]
        lines.append(",".join(fields))
    text = "\n".join(lines)
    text = text[: len(HEADER) + 1 + cut]  # and possibly a truncated last line

    result = ingest(text.encode(), "f.csv")

    assert_accounted_for(result)
    if result.file_rejection is None:
        assert result.rows_in == _non_empty_lines(text) - 1


@PROPERTY_SETTINGS
@given(records=st.lists(_record(), max_size=10), junk=st.lists(st.text(max_size=30), max_size=4))
def test_every_non_blank_json_line_is_a_row(records: list[dict], junk: list[str]) -> None:
    lines = [json.dumps(r) for r in records] + [j.replace("\n", " ").replace("\r", " ") for j in junk]
    text = "\n".join(lines)

    result = ingest(text.encode("utf-8", "surrogatepass"), "f.jsonl")

    assert_accounted_for(result)
    if result.file_rejection is None:
        assert result.rows_in == sum(1 for line in lines if line.strip(" \t\r"))


@PROPERTY_SETTINGS
@given(records=st.lists(_record(), min_size=1, max_size=12))
def test_csv_and_json_lines_of_the_same_values_give_the_same_result(records: list[dict]) -> None:
    csv = "\n".join([HEADER, *(_csv_line(r) for r in records)]).encode()
    jsonl = "\n".join(json.dumps(r) for r in records).encode()

    from_csv, from_json = ingest(csv, "f.csv"), ingest(jsonl, "f.jsonl")

    assert from_csv.reasons == from_json.reasons
    assert from_csv.accepted.to_pylist() == from_json.accepted.to_pylist()
    assert [q["_row"] for q in from_csv.quarantined_rows] == [q["_row"] for q in from_json.quarantined_rows]


@PROPERTY_SETTINGS
@given(
    records=st.lists(_record(), max_size=6),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-32", "shift_jis", "cp437"]),
    extension=st.sampled_from([".csv", ".jsonl"]),
    extra=st.text(max_size=10),
)
def test_text_in_any_encoding_never_raises_and_balances(
    records: list[dict], encoding: str, extension: str, extra: str
) -> None:
    text = "\n".join([HEADER, *(_csv_line(r) for r in records)]) + extra

    data = text.encode(encoding, errors="replace")

    assert_accounted_for(ingest(data, "f" + extension))


@PROPERTY_SETTINGS
@given(body=st.lists(st.text(max_size=40), max_size=8))
def test_lenient_contract_never_raises_and_balances(body: list[str]) -> None:
    header = ",".join([*ENERGY.column_names, "extra"])
    data = "\n".join([header, *body]).encode("utf-8", "surrogatepass")

    assert_accounted_for(ingest(data, "f.csv", ENERGY))


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_a_big_json_lines_file_read_by_arrow_gives_what_the_line_by_line_read_gives(line_end, monkeypatch) -> None:
    from modelwerk.core import _readers

    record = {"pump_id": "P-001", "site": "plant-north", "operator_email": "a@x.org", "failure": 0}
    record.update({c: 1.5 for c in PUMP.column_names if c not in record and c != "timestamp"})
    lines = [json.dumps({**record, "timestamp": f"2024-03-01T{h % 24:02d}:{m:02d}:00Z", "vibration_rms": -1.0 if m == 7
                         else 1.5}) for h in range(40) for m in range(60)]
    data = line_end.join(lines).encode()
    assert len(data) > _readers._ARROW_JSON_BYTES and _readers._one_object_per_line(data)

    fast = ingest(data, "f.jsonl")
    monkeypatch.setattr(_readers, "_ARROW_JSON_BYTES", len(data) + 1)
    slow = ingest(data, "f.jsonl")

    assert fast.reasons == slow.reasons and fast.reasons  # the out-of-range readings, found both ways
    assert fast.accepted.to_pylist() == slow.accepted.to_pylist()
    assert [q["_row"] for q in fast.quarantined_rows] == [q["_row"] for q in slow.quarantined_rows]
