"""Ingestion of one landed object: read it, check it against its contract, write raw and quarantine, record it.

The checks themselves are ``modelwerk.core.ingest`` (shared with local mode); this module is the S3, SSM and Secrets
Manager around them, in the layout of decision record 0001:

1. read the object (the version the event names) and hash it;
2. load the use case's contract from SSM (cached for a few minutes); an unknown use case quarantines the file;
3. claim the object's ledger entry (a conditional put that only one invocation wins): if the entry is a finished
   record, or a live claim of another invocation (a second upload of the same content at the same time), the file
   is ``already_ingested`` and nothing is written. A claim expires when the invocation that took it can no longer be
   running (its remaining time plus a margin), so a function that dies after claiming blocks the file only until
   then; a retry of the same event (same event id) takes its own claim over at once;
4. check the file; write the accepted rows as one Parquet object per ``dt``, the quarantined rows as JSON Lines and
   a rejected file as a copy with ``reason.json`` beside it;
5. write the ledger record last, over the claim, so an invocation that fails half-way is simply done again by the
   retry (every key is derived from the content, so repeating a write overwrites the same object). An invocation
   that fails with an error gives its claim back first.

Configuration comes from the environment the construct sets, read once at first use (not at import).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
import uuid
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
STATUS_CLAIMED = "claimed"  # a ledger entry while an invocation works on the file: ``claimed_by``, ``claimed_until``

#: How long an invocation may run when its caller does not say (Lambda's longest timeout), and how much longer its
#: claim holds (clocks of two invocations differ a little).
DEFAULT_RUN_SECONDS = 900.0
CLAIM_MARGIN_SECONDS = 60.0

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_GONE = _NOT_FOUND | {"NoSuchVersion"}
_PARAMETER_UNAVAILABLE = {"ParameterNotFound", "AccessDeniedException"}
# A conditional put lost: the entry exists (If-None-Match) or changed (If-Match), or another conditional put of the
# same key was under way.
_CONDITION_FAILED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


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
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    now: dt.datetime | None = None,
    claim_id: str | None = None,
    run_seconds: float = DEFAULT_RUN_SECONDS,
) -> dict[str, Any]:
    """Ingest the landing object ``s3://bucket/key`` and return its ledger record.

    The record is the file's report (``rows_in``, ``rows_accepted``, ``rows_quarantined``, ``files_quarantined``,
    ``reasons``, ``dropped_columns``, ``file_rejection``) plus ``status``, ``use_case``, ``source_key``,
    ``version_id``, ``sha256``, ``raw_keys``, ``quarantine_keys``, ``ingested_at`` and ``ledger_key``.
    ``claim_id`` names this attempt in the ledger claim (the event id: a retry of the same event takes its claim
    over); ``run_seconds`` is how long this invocation may still run (the claim expires a margin after that).
    A file another invocation has ingested or is ingesting answers ``already_ingested`` with that entry.
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
    claim = {
        **base,
        "status": STATUS_CLAIMED,
        "claimed_by": claim_id or str(uuid.uuid4()),
        "claimed_until": (moment + dt.timedelta(seconds=run_seconds + CLAIM_MARGIN_SECONDS)).isoformat(),
        "ledger_key": ledger_key,
    }
    previous = _claim(ledger_key, claim, moment)
    if previous is not None:
        logger.info("already ingested", extra={"source_key": source_key, "ledger_key": ledger_key,
                                               "ledger_status": previous.get("status")})
        return {**previous, "status": STATUS_ALREADY_INGESTED}

    try:
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
    except Exception:
        _release(ledger_key, claim)
        raise
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


def _claim(ledger_key: str, claim: dict[str, Any], moment: dt.datetime) -> dict[str, Any] | None:
    """Take the ledger entry for this invocation: None when taken, else the entry that makes the file ingested
    already (a finished record, or another invocation's claim that has not expired).

    The entry is created only if absent (``If-None-Match: *``); a claim that expired, or that this event took before
    (a retry), is replaced only if unchanged since read (``If-Match``), so of two invocations one wins.
    """
    bucket, body = settings().raw_bucket, _json(claim)
    for _ in range(5):
        if _put_if(bucket, ledger_key, body, IfNoneMatch="*"):
            return None
        entry, etag = _read_entry(bucket, ledger_key)
        if entry is None:
            continue  # a claim given back in between: try again
        if entry.get("status") != STATUS_CLAIMED:
            return entry
        expired = dt.datetime.fromisoformat(entry["claimed_until"]) <= moment
        if not expired and entry.get("claimed_by") != claim["claimed_by"]:
            return entry
        if _put_if(bucket, ledger_key, body, IfMatch=etag):
            return None
    raise RuntimeError(f"could not claim s3://{bucket}/{ledger_key}: it kept changing; the retry will try again")


def _release(ledger_key: str, claim: dict[str, Any]) -> None:
    """Give back this invocation's claim (the ingestion failed), so a new upload of the file need not wait for it to
    expire. Best effort: the claim expires anyway."""
    bucket = settings().raw_bucket
    try:
        entry, _ = _read_entry(bucket, ledger_key)
        if entry and entry.get("status") == STATUS_CLAIMED and entry.get("claimed_by") == claim["claimed_by"]:
            _client("s3").delete_object(Bucket=bucket, Key=ledger_key)
    except ClientError:
        logger.warning("could not give back the ledger claim", extra={"ledger_key": ledger_key}, exc_info=True)


def _put_if(bucket: str, key: str, body: bytes, **condition: str) -> bool:
    """A conditional put; False when its condition did not hold."""
    try:
        _client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _CONDITION_FAILED | _NOT_FOUND:
            return False
        raise
    return True


def _read_entry(bucket: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object and its ETag, or (None, None) when there is none."""
    try:
        answer = _client("s3").get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _NOT_FOUND:
            return None, None
        raise
    return json.loads(answer["Body"].read()), answer["ETag"]


def _put(bucket: str, key: str, body: bytes, content_type: str) -> None:
    _client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
