"""Object keys of the ingestion in the lake buckets (decision record 0001).

One implementation of the key layout, shared by the ingestion Lambda, the local runtime and the library, so a
notebook can find what the Lambda wrote (for example whether a landing object was already ingested).
"""

from __future__ import annotations

import hashlib

__all__ = [
    "UNKNOWN_USE_CASE_FOLDER",
    "curated_prefix",
    "ledger_prefix",
    "raw_prefix",
    "snapshot_prefix",
    "ledger_key",
    "quarantine_file_key",
    "quarantine_reason_key",
    "quarantine_rows_key",
    "raw_object_key",
    "sha16",
    "use_case_of",
]

#: Folder for landing objects whose key has no use-case segment (``s3://landing/file.csv``).
UNKNOWN_USE_CASE_FOLDER = "_unknown"


def raw_prefix(use_case: str) -> str:
    """Table location of a use case in the raw bucket."""
    return f"{use_case}/"


def curated_prefix(use_case: str) -> str:
    """Table location of a use case in the curated (and analytics) bucket."""
    return f"{use_case}/"


def snapshot_prefix(use_case: str) -> str:
    """Manifests live outside the table location so table readers never see them."""
    return f"_snapshots/{use_case}/"


def ledger_prefix(use_case: str) -> str:
    """Ingestion ledger (one record per landing object and content hash), outside the raw table location."""
    return f"_ledger/{use_case}/"


def sha16(value: bytes | str) -> str:
    """First 16 hex characters of the SHA-256 of ``value`` (a string is hashed as UTF-8)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()[:16]


def use_case_of(landing_key: str) -> str:
    """The use case of a landing object: the first segment of its key ('' when the key has none)."""
    head, sep, _ = landing_key.partition("/")
    return head if sep else ""


def _folder(use_case: str) -> str:
    return use_case or UNKNOWN_USE_CASE_FOLDER


def raw_object_key(use_case: str, dt: str, content_sha256: str) -> str:
    """``<use-case>/dt=YYYY-MM-DD/<sha16>.parquet`` in the raw bucket; ``content_sha256`` is the full hex digest."""
    return f"{raw_prefix(_folder(use_case))}dt={dt}/{content_sha256[:16]}.parquet"


def ledger_key(use_case: str, landing_key: str, content_sha256: str) -> str:
    """``_ledger/<use-case>/<sha16 of the landing key>-<sha16 of the content>.json`` in the raw bucket.

    Example
    -------
    >>> ledger_key("pump-health", "pump-health/a.csv", "ab" * 32)
    '_ledger/pump-health/a7ef60f608fb6143-abababababababab.json'
    """
    return f"{ledger_prefix(_folder(use_case))}{sha16(landing_key)}-{content_sha256[:16]}.json"


def quarantine_rows_key(use_case: str, ingestion_date: str, content_sha256: str) -> str:
    """``<use-case>/rows/dt=<ingestion date>/<sha16>.jsonl`` in the quarantine bucket."""
    return f"{_folder(use_case)}/rows/dt={ingestion_date}/{content_sha256[:16]}.jsonl"


def quarantine_file_key(use_case: str, content_sha256: str, file_name: str) -> str:
    """``<use-case>/files/<sha16>/<file name>`` in the quarantine bucket: a whole rejected file."""
    return f"{_folder(use_case)}/files/{content_sha256[:16]}/{file_name}"


def quarantine_reason_key(use_case: str, content_sha256: str) -> str:
    """``<use-case>/files/<sha16>/reason.json``: why the file beside it was rejected."""
    return f"{_folder(use_case)}/files/{content_sha256[:16]}/reason.json"
