"""Ingestion of one landed object: read it, check it against its contract, write raw and quarantine, record it.

The checks themselves are ``modelwerk.core.ingest`` (shared with local mode); this module is the S3, SSM and Secrets
Manager around them, in the layout of decision record 0001:

1. read the object (the version the event names) and hash it;
2. load the use case's contract from SSM (cached for a few minutes); an unknown use case quarantines the file;
3. look the object up in the ingestion ledger: if it is there, it was ingested already and nothing is written;
4. check the file; write the accepted rows as one Parquet object per ``dt``, the quarantined rows as JSON Lines and
   a rejected file as a copy with ``reason.json`` beside it;
5. write the ledger record last, so an invocation that fails half-way is simply done again by the retry (every key
   is derived from the content, so repeating a write overwrites the same object).

Configuration comes from the environment the construct sets, read once at first use (not at import).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from modelwerk.core import layout
from modelwerk.core.contract import Contract
from modelwerk.core.ingest import IngestResult, ingest_file, parquet_partitions

logger = Logger(child=True)

#: How long a contract read from SSM is trusted before it is read again (a deployment may change it).
CONTRACT_TTL_SECONDS = 300.0
UNKNOWN_USE_CASE = "unknown_use_case"

STATUS_INGESTED = "ingested"  # rows accepted and/or quarantined
STATUS_QUARANTINED = "quarantined"  # the whole file was rejected
STATUS_ALREADY_INGESTED = "already_ingested"
STATUS_SKIPPED = "skipped"  # a folder placeholder (key ending in '/') or an object deleted before it was read

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_GONE = _NOT_FOUND | {"NoSuchVersion"}
_PARAMETER_UNAVAILABLE = {"ParameterNotFound", "AccessDeniedException"}


@dataclass(frozen=True)
class Settings:
    """The function's environment (set by the ingestion construct)."""

    raw_bucket: str
    quarantine_bucket: str
    contract_parameter_prefix: str
    pseudonymization_secret_arn: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        names = {
            "raw_bucket": "RAW_BUCKET",
            "quarantine_bucket": "QUARANTINE_BUCKET",
            "contract_parameter_prefix": "CONTRACT_PARAMETER_PREFIX",
            "pseudonymization_secret_arn": "PSEUDONYMIZATION_SECRET_ARN",
        }
        missing = [variable for variable in names.values() if not environ.get(variable)]
        if missing:
            raise RuntimeError(f"the ingestion function needs the environment variable(s) {', '.join(missing)}")
        return cls(**{attribute: environ[variable] for attribute, variable in names.items()})


class _State:
    """What one execution environment reads once and reuses across invocations."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.clients: dict[str, Any] = {}
        self.contracts: dict[str, tuple[float, Contract]] = {}
        self.key: bytes | None = None


_state = _State()


def reset() -> None:
    """Forget settings, clients, contracts and the key (tests, or a local runtime that changes the environment)."""
    global _state
    _state = _State()


def settings() -> Settings:
    if _state.settings is None:
        _state.settings = Settings.from_environment()
    return _state.settings


def _client(service: str) -> Any:
    if service not in _state.clients:
        _state.clients[service] = boto3.client(service)  # honours AWS_ENDPOINT_URL (local mode)
    return _state.clients[service]


def load_contract(use_case: str) -> Contract | None:
    """The use case's contract from SSM, cached for ``CONTRACT_TTL_SECONDS``; None for an unknown use case."""
    cached = _state.contracts.get(use_case)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    name = f"{settings().contract_parameter_prefix}{use_case}/contract"
    try:
        value = _client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as error:
        # the function may read only the contracts of the use cases it serves: another folder is denied, not missing
        if error.response.get("Error", {}).get("Code") in _PARAMETER_UNAVAILABLE:
            logger.warning("no contract for this use case", extra={"use_case": use_case, "parameter": name})
            return None
        raise
    contract = Contract.from_json(value)
    _state.contracts[use_case] = (time.monotonic() + CONTRACT_TTL_SECONDS, contract)
    return contract


def pseudonymization_key() -> bytes:
    """The HMAC key: the secret's string value as UTF-8 (or its binary value). Read once; it is never rotated."""
    if _state.key is None:
        secret = _client("secretsmanager").get_secret_value(SecretId=settings().pseudonymization_secret_arn)
        value = secret.get("SecretBinary") or secret["SecretString"].encode("utf-8")
        if not value:
            raise RuntimeError("the pseudonymization secret is empty")
        _state.key = value
    return _state.key


def ingest_object(
    bucket: str, key: str, *, version_id: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Ingest the landing object ``s3://bucket/key`` and return its ledger record.

    The record is the file's report (``rows_in``, ``rows_accepted``, ``rows_quarantined``, ``files_quarantined``,
    ``reasons``, ``dropped_columns``, ``file_rejection``) plus ``status``, ``use_case``, ``source_key``,
    ``version_id``, ``sha256``, ``raw_keys``, ``quarantine_keys``, ``ingested_at`` and ``ledger_key``.
    """
    source_key = f"s3://{bucket}/{key}"
    use_case = layout.use_case_of(key)
    file_name = key.rsplit("/", 1)[-1]
    if not file_name:
        logger.info("folder placeholder, nothing to ingest", extra={"source_key": source_key})
        return {"status": STATUS_SKIPPED, "use_case": use_case, "source_key": source_key}

    request: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        request["VersionId"] = version_id
    try:
        data = _client("s3").get_object(**request)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in _GONE:
            raise
        # deleted (or replaced) before it could be read: nothing to ingest, and retrying will not change that
        logger.warning("landed object is gone", extra={"source_key": source_key, "version_id": version_id})
        return {"status": STATUS_SKIPPED, "use_case": use_case, "source_key": source_key, "reason": "object_gone"}
    sha256 = hashlib.sha256(data).hexdigest()
    moment = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    base = {"use_case": use_case, "source_key": source_key, "version_id": version_id, "sha256": sha256}

    contract = load_contract(use_case) if use_case else None
    if contract is None:
        # no ledger: the function may write ledgers only for the use cases it serves; quarantining again is harmless
        quarantine_keys = _quarantine_file(use_case, file_name, data, sha256, UNKNOWN_USE_CASE, base, moment)
        return {
            **_report(rows_in=0, reason=UNKNOWN_USE_CASE),
            **base,
            "status": STATUS_QUARANTINED,
            "raw_keys": [],
            "quarantine_keys": quarantine_keys,
            "ingested_at": moment.isoformat(),
            "ledger_key": None,
        }

    ledger_key = layout.ledger_key(use_case, key, sha256)
    previous = _read_json(settings().raw_bucket, ledger_key)
    if previous is not None:
        logger.info("already ingested", extra={"source_key": source_key, "ledger_key": ledger_key})
        return {**previous, "status": STATUS_ALREADY_INGESTED}

    result = ingest_file(
        data,
        file_name,
        contract,
        pseudonymization_key=pseudonymization_key(),
        source_key=source_key,
        ingested_at=moment,
    )
    record = {
        **result.report(),
        **base,
        "status": STATUS_QUARANTINED if result.file_rejection else STATUS_INGESTED,
        **_write(result, use_case, file_name, data, sha256, base, moment),
        "ingested_at": moment.isoformat(),
        "ledger_key": ledger_key,
    }
    _put(settings().raw_bucket, ledger_key, _json(record), "application/json")
    logger.info("ingested", extra={k: record[k] for k in ("source_key", "status", "rows_in", "reasons")})
    return record


def _write(
    result: IngestResult,
    use_case: str,
    file_name: str,
    data: bytes,
    sha256: str,
    base: dict[str, Any],
    moment: dt.datetime,
) -> dict[str, list[str]]:
    if result.file_rejection:
        keys = _quarantine_file(use_case, file_name, data, sha256, result.file_rejection, base, moment)
        return {"raw_keys": [], "quarantine_keys": keys}
    cfg = settings()
    raw_keys = []
    for day, body in parquet_partitions(result).items():
        raw_key = layout.raw_object_key(use_case, day, sha256)
        _put(cfg.raw_bucket, raw_key, body, "application/vnd.apache.parquet")
        raw_keys.append(raw_key)
    quarantine_keys = []
    if result.quarantine.num_rows:
        rows_key = layout.quarantine_rows_key(use_case, moment.date().isoformat(), sha256)
        _put(cfg.quarantine_bucket, rows_key, result.quarantine_jsonl(), "application/x-ndjson")
        quarantine_keys.append(rows_key)
    return {"raw_keys": raw_keys, "quarantine_keys": quarantine_keys}


def _quarantine_file(
    use_case: str, file_name: str, data: bytes, sha256: str, reason: str, base: dict[str, Any], moment: dt.datetime
) -> list[str]:
    cfg = settings()
    file_key = layout.quarantine_file_key(use_case, sha256, file_name)
    reason_key = layout.quarantine_reason_key(use_case, sha256)
    _put(cfg.quarantine_bucket, file_key, data, "application/octet-stream")
    document = {**base, "reason": reason, "file_name": file_name, "quarantined_at": moment.isoformat()}
    _put(cfg.quarantine_bucket, reason_key, _json(document), "application/json")
    logger.warning("file quarantined", extra={"source_key": base["source_key"], "reason": reason})
    return [file_key, reason_key]


def _report(*, rows_in: int, reason: str) -> dict[str, Any]:
    return {
        "rows_in": rows_in,
        "rows_accepted": 0,
        "rows_quarantined": rows_in,
        "files_quarantined": 1,
        "reasons": {reason: rows_in},
        "dropped_columns": [],
        "file_rejection": reason,
    }


def _read_json(bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = _client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _NOT_FOUND:
            return None
        raise
    return json.loads(body)


def _put(bucket: str, key: str, body: bytes, content_type: str) -> None:
    _client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
