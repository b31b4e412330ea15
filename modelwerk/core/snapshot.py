"""Curated snapshots: the manifest that pins the exact data a model version was trained on.

A snapshot lists every current object of a use case's curated table with its S3 version id, sha256, row count and
size, plus the table's schema (read from the Parquet footers). Its id is the first 16 hex of the sha256 of the
manifest's canonical content without its creation time, so an unchanged table keeps its id and any changed object
gives a new one (ADR 0001). The preparation job writes manifests with this module; the library reads snapshots back
through ``read_snapshot_objects``, which checks every object against its sha256.

Leaf module: stdlib and pyarrow only, so the Glue job, the library and the local runtime share it.

Example
-------
>>> import io, pyarrow as pa, pyarrow.parquet as pq
>>> buffer = io.BytesIO()
>>> pq.write_table(pa.table({"x": [1.0, 2.0]}), buffer)
>>> data = buffer.getvalue()
>>> entry = manifest_entry("pump-health/dt=2025-01-01/part-00000.parquet", "v1", data)
>>> manifest = build_manifest("pump-health", "curated-bucket", [entry])
>>> manifest["rows"], len(manifest["snapshot_id"])
(2, 16)
>>> read_snapshot_objects(manifest, lambda key, version_id: data).column_names
['x', 'dt']
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: Manifest fields that do not take part in the snapshot id.
VOLATILE_FIELDS = ("created_at", "snapshot_id")
#: Name of the pointer to the newest manifest, beside the manifests.
LATEST = "latest.json"
#: Version of the manifest document layout.
MANIFEST_FORMAT = 1

_HIVE_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=([^/]*)$")
_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]$")

Fetch = Callable[[str, "str | None"], bytes]


class SnapshotError(ValueError):
    """A manifest is malformed or inconsistent (schema conflict, wrong id, object outside a partition)."""


class SnapshotIntegrityError(SnapshotError):
    """An object's bytes do not match the sha256 (or size) its snapshot recorded."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def schema_fields(schema: pa.Schema) -> list[dict[str, str]]:
    """``[{"name", "type"}]`` of an Arrow schema, types as pyarrow spells them (``timestamp[us, tz=UTC]``)."""
    return [{"name": field.name, "type": str(field.type)} for field in schema]


def arrow_type(text: str) -> pa.DataType:
    """The Arrow type a manifest schema names (the inverse of ``str(type)`` for the types tables hold)."""
    match = _TIMESTAMP.match(text)
    if match:
        return pa.timestamp(match.group(1), tz=match.group(2))
    try:
        return pa.type_for_alias(text)
    except (KeyError, ValueError) as exc:
        raise SnapshotError(f"manifest schema type {text!r} is not a type this reader knows") from exc


def manifest_entry(key: str, version_id: str | None, data: bytes) -> dict[str, Any]:
    """Describe one curated Parquet object: key, version id, sha256, rows, size and its schema (from the footer)."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise SnapshotError(f"{key}: not a readable Parquet file ({exc})") from exc
    return {
        "key": key,
        "version_id": version_id,
        "sha256": sha256_hex(data),
        "rows": parquet.metadata.num_rows,
        "size": len(data),
        "schema": schema_fields(parquet.schema_arrow),
    }


def merge_schemas(schemas: Iterable[list[Mapping[str, str]]]) -> list[dict[str, str]]:
    """Union of object schemas in order of first appearance; a column with two types is an error.

    Objects written before a contract gained a column lack it; readers fill it with nulls.
    """
    merged: dict[str, str] = {}
    for schema in schemas:
        for field in schema:
            name, type_ = field["name"], field["type"]
            if merged.setdefault(name, type_) != type_:
                raise SnapshotError(f"column {name!r} has type {merged[name]} in one object and {type_} in another")
    return [{"name": name, "type": type_} for name, type_ in merged.items()]


def canonical_content(manifest: Mapping[str, Any]) -> bytes:
    """The bytes the snapshot id hashes: the manifest without its volatile fields, as sorted compact JSON."""
    content = {k: v for k, v in manifest.items() if k not in VOLATILE_FIELDS}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def snapshot_id(manifest: Mapping[str, Any]) -> str:
    """First 16 hex of the sha256 of the manifest's canonical content (creation time excluded)."""
    return sha256_hex(canonical_content(manifest))[:16]


def build_manifest(
    use_case: str,
    bucket: str,
    entries: Iterable[Mapping[str, Any]],
    *,
    created_at: _dt.datetime | None = None,
) -> dict[str, Any]:
    """The manifest of a curated table from ``manifest_entry`` results (any order; objects are sorted by key).

    ``created_at`` defaults to now (UTC); it is recorded but never changes the id.
    """
    entries = sorted(entries, key=lambda e: e["key"])
    keys = [e["key"] for e in entries]
    if len(set(keys)) != len(keys):
        raise SnapshotError(f"{use_case}: an object key appears twice in the snapshot")
    objects = [
        {
            "key": e["key"],
            "version_id": e["version_id"],
            "sha256": e["sha256"],
            "rows": int(e["rows"]),
            "size": int(e["size"]),
        }
        for e in entries
    ]
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "use_case": use_case,
        "bucket": bucket,
        "objects": objects,
        "schema": merge_schemas(e.get("schema", []) for e in entries),
        "rows": sum(o["rows"] for o in objects),
    }
    when = created_at or _dt.datetime.now(_dt.UTC)
    manifest["created_at"] = when.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")
    manifest["snapshot_id"] = snapshot_id(manifest)
    return manifest


def manifest_key(prefix: str, snapshot_id_: str) -> str:
    """Key of a manifest under the use case's snapshot prefix (``_snapshots/<use-case>/``)."""
    return f"{prefix}{snapshot_id_}.json"


def latest_pointer(manifest: Mapping[str, Any], key: str) -> dict[str, str]:
    """The ``latest.json`` document pointing at a manifest."""
    return {"snapshot_id": manifest["snapshot_id"], "manifest_key": key}


def dumps(document: Mapping[str, Any]) -> bytes:
    """A manifest (or pointer) as the JSON bytes stored in S3."""
    return (json.dumps(document, sort_keys=True, indent=2) + "\n").encode("utf-8")


def verify_manifest(manifest: Mapping[str, Any]) -> None:
    """Raise ``SnapshotError`` if the manifest's id does not match its content (it was edited)."""
    for field in ("use_case", "bucket", "objects", "schema", "rows", "snapshot_id"):
        if field not in manifest:
            raise SnapshotError(f"manifest has no {field!r}")
    expected = snapshot_id(manifest)
    if manifest["snapshot_id"] != expected:
        raise SnapshotError(
            f"manifest says snapshot {manifest['snapshot_id']} but its content hashes to {expected}: it was edited"
        )


def load_manifest(data: bytes | str) -> dict[str, Any]:
    """Parse manifest JSON and check its id against its content."""
    manifest = json.loads(data)
    verify_manifest(manifest)
    return manifest


def verify_object(entry: Mapping[str, Any], data: bytes) -> None:
    """Raise ``SnapshotIntegrityError`` unless ``data`` is exactly the object the entry recorded."""
    where = f"s3 object {entry['key']} (version {entry.get('version_id')})"
    actual = sha256_hex(data)
    if actual != entry["sha256"]:
        raise SnapshotIntegrityError(
            f"{where}: sha256 {actual} does not match the snapshot's {entry['sha256']}; the object is not the one the "
            "snapshot pinned (read the version the manifest names, or take a new snapshot)"
        )
    if "size" in entry and len(data) != entry["size"]:
        raise SnapshotIntegrityError(f"{where}: {len(data)} bytes, the snapshot recorded {entry['size']}")


def partition_values(key: str) -> dict[str, str]:
    """Hive partition segments of an object key: ``a/dt=2025-01-01/part.parquet`` -> ``{"dt": "2025-01-01"}``."""
    values: dict[str, str] = {}
    for segment in key.split("/")[:-1]:
        match = _HIVE_SEGMENT.match(segment)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def empty_table(manifest: Mapping[str, Any], partition_columns: Iterable[str] = ("dt",)) -> pa.Table:
    """A table with the manifest's schema (plus the partition columns as strings) and no rows."""
    fields = [pa.field(f["name"], arrow_type(f["type"])) for f in manifest["schema"]]
    fields += [pa.field(name, pa.string()) for name in partition_columns]
    return pa.schema(fields).empty_table()


def read_snapshot_objects(
    manifest: Mapping[str, Any],
    fetch: Fetch,
    *,
    columns: list[str] | None = None,
) -> pa.Table:
    """Read every object of a snapshot into one table, checking each against its sha256.

    ``fetch(key, version_id)`` returns an object's bytes (an ``s3.get_object`` with ``VersionId``, or a local file).
    Partition segments of the keys (``dt=...``) become string columns after the file columns. Columns are in the
    manifest's schema order; objects lacking a column get nulls. ``columns`` selects file columns to keep.
    Raises ``SnapshotIntegrityError`` on the first object whose bytes differ from the snapshot.
    """
    tables: list[pa.Table] = []
    partition_names: list[str] = []
    for entry in manifest["objects"]:
        data = fetch(entry["key"], entry.get("version_id"))
        verify_object(entry, data)
        table = pq.read_table(io.BytesIO(data), columns=[c for c in columns if c != "dt"] if columns else None)
        partitions = partition_values(entry["key"])
        if not partitions:
            raise SnapshotError(f"{entry['key']}: object is not inside a hive partition (no dt=... in its key)")
        for name, value in partitions.items():
            if name in table.column_names:
                raise SnapshotError(f"{entry['key']}: partition column {name!r} is also a column inside the file")
            table = table.append_column(pa.field(name, pa.string()), pa.array([value] * table.num_rows, pa.string()))
            if name not in partition_names:
                partition_names.append(name)
        tables.append(table)
    names = [f["name"] for f in manifest["schema"] if columns is None or f["name"] in columns]
    if not tables:
        return empty_table(manifest, partition_names or ["dt"]).select(names + (partition_names or ["dt"]))
    combined = pa.concat_tables(tables, promote_options="default")
    for field in manifest["schema"]:
        if field["name"] in names and field["name"] not in combined.column_names:
            combined = combined.append_column(field["name"], pa.nulls(combined.num_rows, arrow_type(field["type"])))
    return combined.select(names + partition_names)
