"""Curated snapshot manifests: stable ids, integrity checks, reading objects back."""

from __future__ import annotations

import datetime as dt
import doctest
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwerk.core import snapshot

UTC = dt.UTC
KEY_1 = "pump-health/dt=2025-01-01/part-00000.parquet"
KEY_2 = "pump-health/dt=2025-01-02/part-00000.parquet"


def parquet(values: list[float], *, extra: dict | None = None) -> bytes:
    columns = {
        "pump_id": pa.array([f"P-{i:03d}" for i in range(len(values))]),
        "timestamp": pa.array(
            [dt.datetime(2025, 1, 1, i, tzinfo=UTC) for i in range(len(values))], pa.timestamp("us", tz="UTC")
        ),
        "vibration_rms": pa.array(values, pa.float64()),
        **(extra or {}),
    }
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


@pytest.fixture
def objects() -> dict[tuple[str, str], bytes]:
    return {(KEY_1, "v1"): parquet([1.0, 2.0]), (KEY_2, "v7"): parquet([3.0])}


def manifest_of(objects: dict[tuple[str, str], bytes], **kwargs) -> dict:
    entries = [snapshot.manifest_entry(key, version, data) for (key, version), data in objects.items()]
    return snapshot.build_manifest("pump-health", "curated-bucket", entries, **kwargs)


def test_entry_describes_the_object_from_its_footer(objects) -> None:
    data = objects[(KEY_1, "v1")]
    entry = snapshot.manifest_entry(KEY_1, "v1", data)
    assert entry["rows"] == 2 and entry["size"] == len(data) and len(entry["sha256"]) == 64
    assert entry["schema"] == [
        {"name": "pump_id", "type": "string"},
        {"name": "timestamp", "type": "timestamp[us, tz=UTC]"},
        {"name": "vibration_rms", "type": "double"},
    ]


def test_manifest_has_the_adr_fields(objects) -> None:
    manifest = manifest_of(objects)
    assert {"use_case", "bucket", "objects", "schema", "rows", "snapshot_id", "created_at"} <= set(manifest)
    assert manifest["rows"] == 3
    assert [o["key"] for o in manifest["objects"]] == [KEY_1, KEY_2]
    assert set(manifest["objects"][0]) == {"key", "version_id", "sha256", "rows", "size"}


def test_id_ignores_creation_time_and_entry_order(objects) -> None:
    first = manifest_of(objects, created_at=dt.datetime(2025, 1, 1, tzinfo=UTC))
    reordered = dict(reversed(list(objects.items())))
    later = manifest_of(reordered, created_at=dt.datetime(2026, 6, 1, 12, tzinfo=UTC))
    assert first["created_at"] != later["created_at"]
    assert first["snapshot_id"] == later["snapshot_id"]
    assert snapshot.snapshot_id(first) == first["snapshot_id"]


def test_id_is_the_documented_hash(objects) -> None:
    manifest = manifest_of(objects)
    content = {k: v for k, v in manifest.items() if k not in ("created_at", "snapshot_id")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    assert manifest["snapshot_id"] == hashlib.sha256(canonical).hexdigest()[:16]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda o: {**o, (KEY_2, "v7"): parquet([3.5])}, id="content"),
        pytest.param(lambda o: {(KEY_1, "v1"): o[(KEY_1, "v1")], (KEY_2, "v8"): o[(KEY_2, "v7")]}, id="version"),
        pytest.param(lambda o: {(KEY_1, "v1"): o[(KEY_1, "v1")]}, id="object-removed"),
    ],
)
def test_id_changes_when_an_object_changes(objects, change) -> None:
    assert manifest_of(change(objects))["snapshot_id"] != manifest_of(objects)["snapshot_id"]


def test_verify_object_detects_a_sha_mismatch(objects) -> None:
    entry = manifest_of(objects)["objects"][0]
    snapshot.verify_object(entry, objects[(KEY_1, "v1")])
    with pytest.raises(snapshot.SnapshotIntegrityError, match=r"sha256 .* does not match"):
        snapshot.verify_object(entry, parquet([1.0, 2.5]))


def test_reading_checks_every_object(objects) -> None:
    manifest = manifest_of(objects)
    tampered = {**objects, (KEY_2, "v7"): parquet([9.0])}
    with pytest.raises(snapshot.SnapshotIntegrityError, match=KEY_2):
        snapshot.read_snapshot_objects(manifest, lambda key, version: tampered[(key, version)])


def test_reading_adds_dt_from_the_key_and_fetches_exact_versions(objects) -> None:
    manifest = manifest_of(objects)
    asked: list[tuple[str, str]] = []

    def fetch(key: str, version: str) -> bytes:
        asked.append((key, version))
        return objects[(key, version)]

    table = snapshot.read_snapshot_objects(manifest, fetch)
    assert asked == [(KEY_1, "v1"), (KEY_2, "v7")]
    assert table.column_names == ["pump_id", "timestamp", "vibration_rms", "dt"]
    assert table.column("dt").to_pylist() == ["2025-01-01", "2025-01-01", "2025-01-02"]
    assert table.column("vibration_rms").to_pylist() == [1.0, 2.0, 3.0]


def test_objects_missing_a_newer_column_read_as_nulls() -> None:
    objects = {(KEY_1, "v1"): parquet([1.0]), (KEY_2, "v2"): parquet([2.0], extra={"humidity": pa.array([0.5])})}
    manifest = manifest_of(objects)
    assert [f["name"] for f in manifest["schema"]][-1] == "humidity"
    table = snapshot.read_snapshot_objects(manifest, lambda key, version: objects[(key, version)])
    assert table.column("humidity").to_pylist() == [None, 0.5]


def test_conflicting_column_types_are_refused() -> None:
    objects = {(KEY_1, "v1"): parquet([1.0]), (KEY_2, "v2"): parquet([2.0], extra={"pump_id": pa.array([7])})}
    with pytest.raises(snapshot.SnapshotError, match="column 'pump_id' has type string in one object and int64"):
        manifest_of(objects)


def test_empty_snapshot_reads_as_an_empty_table() -> None:
    manifest = snapshot.build_manifest("pump-health", "curated-bucket", [])
    assert manifest["rows"] == 0
    assert snapshot.read_snapshot_objects(manifest, lambda key, version: b"").num_rows == 0


def test_empty_table_keeps_the_schema(objects) -> None:
    manifest = manifest_of(objects)
    table = snapshot.empty_table(manifest)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.column_names[-1] == "dt"


def test_edited_manifest_is_refused(objects) -> None:
    manifest = manifest_of(objects)
    stored = snapshot.dumps(manifest)
    assert snapshot.load_manifest(stored) == manifest
    edited = {**manifest, "rows": 4}
    with pytest.raises(snapshot.SnapshotError, match="edited"):
        snapshot.load_manifest(snapshot.dumps(edited))


def test_latest_pointer_names_the_manifest(objects) -> None:
    manifest = manifest_of(objects)
    key = snapshot.manifest_key("_snapshots/pump-health/", manifest["snapshot_id"])
    assert key == f"_snapshots/pump-health/{manifest['snapshot_id']}.json"
    assert snapshot.latest_pointer(manifest, key) == {"snapshot_id": manifest["snapshot_id"], "manifest_key": key}


def test_not_parquet_is_a_clear_error() -> None:
    with pytest.raises(snapshot.SnapshotError, match="not a readable Parquet file"):
        snapshot.manifest_entry(KEY_1, "v1", b"not parquet")


def test_docstring_example_runs() -> None:
    result = doctest.testmod(snapshot, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
