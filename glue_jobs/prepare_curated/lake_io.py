"""S3 side of the preparation job: raw listing, processing state, staging, curated upload, snapshot publication.

Everything here goes through a boto3 S3 client the caller passes, so it runs against AWS or the embedded AWS of
local mode (``AWS_ENDPOINT_URL``) alike. Layout (ADR 0001):

- raw objects: ``s3://<raw>/<use-case>/dt=YYYY-MM-DD/<sha16>.parquet``
- curated objects: ``s3://<curated>/<use-case>/dt=YYYY-MM-DD/part-*.parquet``
- state: ``s3://<curated>/_state/<use-case>.json``: the raw objects (key -> ETag) already prepared
- snapshots: ``s3://<curated>/_snapshots/<use-case>/<snapshot_id>.json`` and ``latest.json``
- run reports: ``s3://<curated>/_runs/<use-case>/<UTC timestamp>.json``
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from modelwerk.core import layout, snapshot

STATE_PREFIX = "_state/"
RUNS_PREFIX = "_runs/"
#: Name of the single compacted object per curated partition written in local mode.
PART_NAME = "part-00000.parquet"

_PARTITION = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})/[^/]+$")
_TABLE_OBJECT = re.compile(r"^dt=\d{4}-\d{2}-\d{2}/[^/._][^/]*\.parquet$")  # Athena skips "." and "_" files


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str
    size: int = 0
    version_id: str | None = None

    @property
    def partition(self) -> str | None:
        return partition_of(self.key)


def partition_of(key: str) -> str | None:
    """The ``dt`` of an object directly inside a ``dt=YYYY-MM-DD/`` folder, else ``None``."""
    match = _PARTITION.search(key)
    return match.group(1) if match else None


def is_table_object(key: str, prefix: str) -> bool:
    """A data file of the table at ``prefix``: ``<prefix>dt=YYYY-MM-DD/<name>.parquet``, not hidden, not staged."""
    return key.startswith(prefix) and bool(_TABLE_OBJECT.match(key[len(prefix) :]))


def state_key(use_case: str) -> str:
    return f"{STATE_PREFIX}{use_case}.json"


def run_report_key(use_case: str, when: _dt.datetime) -> str:
    stamp = when.astimezone(_dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{RUNS_PREFIX}{use_case}/{stamp}.json"


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def iso(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")


# --- generic object access --------------------------------------------------------------------------------------


def list_objects(s3: Any, bucket: str, prefix: str) -> list[S3Object]:
    """Current objects under a prefix (key, ETag without quotes, size)."""
    objects: list[S3Object] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            objects.append(S3Object(key=item["Key"], etag=item["ETag"].strip('"'), size=item["Size"]))
    return objects


def current_versions(s3: Any, bucket: str, prefix: str) -> list[S3Object]:
    """Current object versions under a prefix (delete markers and noncurrent versions left out)."""
    objects: list[S3Object] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Versions", []):
            if item.get("IsLatest"):
                version = item.get("VersionId")
                objects.append(
                    S3Object(
                        key=item["Key"],
                        etag=item["ETag"].strip('"'),
                        size=item["Size"],
                        version_id=None if version in (None, "null") else version,
                    )
                )
    return sorted(objects, key=lambda o: o.key)


def get_bytes(s3: Any, bucket: str, key: str, version_id: str | None = None) -> bytes:
    extra = {"VersionId": version_id} if version_id else {}
    return s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()


def get_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """A JSON document, or ``None`` if the key does not exist."""
    try:
        return json.loads(get_bytes(s3, bucket, key))
    except s3.exceptions.NoSuchKey:
        return None


def put_json(s3: Any, bucket: str, key: str, document: Mapping[str, Any]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=snapshot.dumps(document), ContentType="application/json")


# --- raw side and processing state ------------------------------------------------------------------------------


def raw_objects(s3: Any, bucket: str, use_case: str) -> dict[str, S3Object]:
    """The raw table's data objects (``dt=.../*.parquet``) by key."""
    prefix = layout.raw_prefix(use_case)
    return {o.key: o for o in list_objects(s3, bucket, prefix) if is_table_object(o.key, prefix)}


def load_state(s3: Any, bucket: str, use_case: str) -> dict[str, Any]:
    """The state object, or an empty state (nothing prepared yet)."""
    state = get_json(s3, bucket, state_key(use_case)) or {}
    state.setdefault("use_case", use_case)
    state.setdefault("objects", {})
    return state


def touched_partitions(raw: Mapping[str, S3Object], processed: Mapping[str, str]) -> list[str]:
    """Partitions with a raw object that is new, changed (other ETag) or gone since it was last prepared."""
    changed = {key for key, obj in raw.items() if processed.get(key) != obj.etag}
    changed |= set(processed) - set(raw)
    return sorted({p for p in (partition_of(k) for k in changed) if p})


def updated_state(
    state: Mapping[str, Any],
    raw: Mapping[str, S3Object],
    partitions: Iterable[str],
    *,
    snapshot_id: str,
    when: _dt.datetime,
) -> dict[str, Any]:
    """The state after preparing ``partitions``: their raw objects as listed at the start of the run, others kept."""
    done = set(partitions)
    objects = {k: e for k, e in state.get("objects", {}).items() if partition_of(k) not in done}
    objects.update({k: o.etag for k, o in raw.items() if o.partition in done})
    return {
        "use_case": state["use_case"],
        "objects": dict(sorted(objects.items())),
        "snapshot_id": snapshot_id,
        "updated_at": iso(when),
    }


def save_state(s3: Any, bucket: str, state: Mapping[str, Any]) -> None:
    put_json(s3, bucket, state_key(state["use_case"]), state)


def stage_objects(s3: Any, bucket: str, objects: Iterable[S3Object], folder: Path) -> list[Path]:
    """Download objects into ``folder`` keeping their keys as relative paths; returns the local files."""
    files: list[Path] = []
    for obj in objects:
        target = folder / obj.key
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, obj.key, str(target))
        files.append(target)
    return files


# --- curated side -----------------------------------------------------------------------------------------------


def partition_prefix(use_case: str, partition: str) -> str:
    return f"{layout.curated_prefix(use_case)}dt={partition}/"


def compacted(files: list[Path]) -> bytes:
    """One Parquet file's bytes from a partition's files (the file itself when there is only one)."""
    if len(files) == 1:
        return files[0].read_bytes()
    table = pa.concat_tables([pq.read_table(f) for f in sorted(files)], promote_options="default")
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def replace_partition(s3: Any, bucket: str, use_case: str, partition: str, data: bytes | None) -> None:
    """Make ``data`` the only object of a curated partition (``None``: leave the partition empty).

    The new object is written first, then the partition's other objects are deleted, so readers never see the
    partition empty; in the versioned bucket the previous versions stay readable for older snapshots.
    """
    prefix = partition_prefix(use_case, partition)
    target = prefix + PART_NAME
    if data is not None:
        s3.put_object(Bucket=bucket, Key=target, Body=data)
    stale = [o.key for o in list_objects(s3, bucket, prefix) if data is None or o.key != target]
    for start in range(0, len(stale), 1000):
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start : start + 1000]], "Quiet": True}
        )


def upload_partitions(s3: Any, bucket: str, use_case: str, output: Path, partitions: Iterable[str]) -> None:
    """Upload a local ``partitionBy("dt")`` output: one object per touched partition; partitions without output
    rows are emptied."""
    for partition in sorted(set(partitions)):
        files = sorted(f for f in (output / f"dt={partition}").glob("*.parquet") if not f.name.startswith("."))
        replace_partition(s3, bucket, use_case, partition, compacted(files) if files else None)


def publish_snapshot(s3: Any, bucket: str, use_case: str, *, when: _dt.datetime) -> tuple[dict[str, Any], str]:
    """Manifest the curated table's current objects, store it, move ``latest.json``; returns (manifest, key).

    Objects whose version the previous manifest already describes are not downloaded again (an S3 version never
    changes); they carry that manifest's schema. An unchanged table gives the same id; its manifest is then left
    as first written.
    """
    prefix = layout.snapshot_prefix(use_case)
    latest_key = prefix + snapshot.LATEST
    previous: dict[str, Any] | None = None
    pointer = get_json(s3, bucket, latest_key)
    if pointer:
        previous = get_json(s3, bucket, pointer["manifest_key"])
    known = {(o["key"], o["version_id"]): o for o in (previous or {}).get("objects", []) if o.get("version_id")}

    entries: list[dict[str, Any]] = []
    table = layout.curated_prefix(use_case)
    for obj in current_versions(s3, bucket, table):
        if not is_table_object(obj.key, table):
            continue
        reused = known.get((obj.key, obj.version_id))
        if reused is not None and reused["size"] == obj.size:
            entries.append({**reused, "schema": previous["schema"]})  # type: ignore[index]
        else:
            entries.append(
                snapshot.manifest_entry(obj.key, obj.version_id, get_bytes(s3, bucket, obj.key, obj.version_id))
            )

    manifest = snapshot.build_manifest(use_case, bucket, entries, created_at=when)
    key = snapshot.manifest_key(prefix, manifest["snapshot_id"])
    stored = get_json(s3, bucket, key)
    if stored is None:
        put_json(s3, bucket, key, manifest)
    else:
        manifest = stored
    put_json(s3, bucket, latest_key, snapshot.latest_pointer(manifest, key))
    return manifest, key


def put_run_report(s3: Any, bucket: str, use_case: str, report: Mapping[str, Any], when: _dt.datetime) -> str:
    key = run_report_key(use_case, when)
    put_json(s3, bucket, key, report)
    return key
