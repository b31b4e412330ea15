"""Data verbs: generate, ingest, prepare, query, read curated snapshots.

Each verb runs the deployed component through AWS's APIs: the ingestion Lambda reacts to the upload (S3 ->
EventBridge -> Lambda) and writes its ledger, the Glue job prepares (``StartJobRun``). Locally the embedded AWS runs
the same function and the same job script (Spark in local mode). The library only uploads, starts, waits and reads.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from modelwerk.core import layout
from modelwerk.errors import ExecutionFailedError, NotFoundError, TimeoutError, ValidationError
from modelwerk.platform import Platform, resolve
from modelwerk.query import query  # noqa: F401  (re-exported: modelwerk.data.query)
from modelwerk.waiting import poll

Progress = Callable[[str], None]

INGEST_COUNTS = ("rows_in", "rows_accepted", "rows_quarantined", "files_quarantined")
#: Glue's job run states that end a run.
_GLUE_FINISHED = ("SUCCEEDED", "FAILED", "ERROR", "TIMEOUT", "STOPPED")


# -- generate ---------------------------------------------------------------------------------------------------------
def generate(use_case: str, *, rows: int, out: str | Path, seed: int = 0, drift: float = 0.0,
             bad_rows: float = 0.0) -> dict[str, Any]:
    """Write a deterministic synthetic file for ``use_case`` (format from the extension of ``out``).

    Example
    -------
    >>> modelwerk.data.generate("pump-health", rows=10_000, seed=7, bad_rows=0.01, out="pumps.csv")
    """
    from modelwerk import settings, synthetic

    if rows <= 0:
        raise ValidationError(f"--rows must be a positive number of rows, not {rows}")
    if not 0 <= bad_rows < 1:
        raise ValidationError(f"--bad-rows is a fraction between 0 and 1, not {bad_rows}")
    if drift < 0:
        raise ValidationError(f"--drift must be 0 or more, not {drift}")
    config = settings.load()
    use_case_config = config.use_case(use_case)
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".jsonl", ".ndjson", ".parquet"):
        raise ValidationError(f"cannot write {out.name}: name the output .csv, .jsonl or .parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = synthetic.generate_file(use_case_config, out, rows=rows, seed=seed, drift=drift, bad_rows=bad_rows)
    return {"use_case": use_case, "out": str(out), **summary}


# -- ingest -----------------------------------------------------------------------------------------------------------
#: Ledger statuses of an ingestion that is over (a claimed entry is one under way).
_LEDGER_DONE = ("ingested", "quarantined")


def _read_ledger(platform: Platform, use_case: str, key: str, content_sha256: str) -> dict[str, Any] | None:
    """The ingestion function's ledger entry for this object key and content, if it wrote one (a finished record,
    or the claim of an ingestion under way)."""
    s3 = platform.session().client("s3")
    try:
        return json.loads(s3.get_object(Bucket=platform.bucket("raw"),
                                        Key=layout.ledger_key(use_case, key, content_sha256))["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def _claim_expired(entry: dict[str, Any]) -> bool:
    """An entry claimed by an ingestion that stopped before it finished (its claim ran out)."""
    until = entry.get("claimed_until")
    return entry.get("status") not in _LEDGER_DONE and bool(until) and \
        datetime.fromisoformat(until) <= datetime.now(timezone.utc)


def _wait_for_ledger(platform: Platform, use_case: str, key: str, content_sha256: str, timeout: float,
                     stale_claim: str | None = None) -> dict[str, Any]:
    """The ingestion function's finished ledger record for this upload; ``stale_claim`` names an expired claim seen
    before the upload, which the function is about to take over (it ends no wait)."""
    where = f"s3://{platform.bucket('landing')}/{key}"

    def over(e: dict[str, Any] | None) -> bool:
        if e is None:
            return False
        return e.get("status") in _LEDGER_DONE or (_claim_expired(e) and e.get("claimed_by") != stale_claim)

    try:
        entry = poll(lambda: _read_ledger(platform, use_case, key, content_sha256), over,
                     timeout=timeout, cap=2.0, what=f"the ingestion of {where}")
    except TimeoutError:
        raise TimeoutError(f"the ingestion of {where} did not finish within {timeout:.0f} s; check the ingestion "
                           f"Lambda's logs and its dead-letter queue") from None
    if entry.get("status") not in _LEDGER_DONE:
        raise ExecutionFailedError(f"the ingestion of {where} stopped before it finished (its claim ran out at "
                                   f"{entry.get('claimed_until')}); check the ingestion Lambda's logs and its "
                                   f"dead-letter queue, then ingest the file again")
    return entry


def _already_ingested(path: Path) -> dict[str, Any]:
    return {"file": str(path), "status": "already_ingested", **{name: 0 for name in INGEST_COUNTS}}


def ingest(use_case: str, files: Iterable[str | Path], *, env: str | None = None, timeout: float = 900,
           progress: Progress | None = None) -> dict[str, Any]:
    """Land ``files`` for ``use_case`` and return the ingestion counts (rows in = accepted + quarantined).

    Each file is uploaded to the landing zone; the ingestion Lambda, started by the upload's EventBridge event,
    checks it against the use case's contract and writes a ledger entry, which this waits for. A file whose content
    was ingested under the same name before, or is being ingested by another upload at the same time, counts
    nothing and is ``already_ingested``. ``rejected`` lists the files rejected whole: their reason and where the
    quarantine keeps them.

    Example
    -------
    >>> modelwerk.data.ingest("pump-health", ["pumps.csv"])["rows_accepted"]
    """
    platform = resolve(env)
    platform.contract(use_case)
    paths = [Path(f) for f in files]
    if not paths:
        raise ValidationError("no files given: name one or more .csv, .jsonl or .parquet files to ingest")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValidationError(f"file(s) not found: {', '.join(missing)}; check the path(s) and try again")
    s3 = platform.session().client("s3")
    landing = platform.bucket("landing")
    totals: dict[str, Any] = {name: 0 for name in INGEST_COUNTS}
    totals.update(reasons={}, files=[], rejected=[])
    for path in paths:
        data = path.read_bytes()
        key = f"{use_case}/{path.name}"
        if progress:
            progress(f"ingesting {path.name}")
        digest = hashlib.sha256(data).hexdigest()
        entry = _read_ledger(platform, use_case, key, digest)
        if entry is not None and not _claim_expired(entry):
            # The function ingests an object key and content once: the ledger holds that ingestion's counts (or
            # the claim of one under way, whose counts its own upload reports).
            totals["files"].append(_already_ingested(path))
            continue
        uploaded = s3.put_object(Bucket=landing, Key=key, Body=data).get("VersionId")
        record = _wait_for_ledger(platform, use_case, key, digest, timeout,
                                  stale_claim=entry.get("claimed_by") if entry else None)
        if uploaded and record.get("version_id") and record["version_id"] != uploaded:
            # another upload of the same content, at the same time, was the one ingested: it reports the counts
            totals["files"].append(_already_ingested(path))
            continue
        for name in INGEST_COUNTS:
            totals[name] += int(record.get(name, 0))
        for reason, count in record.get("reasons", {}).items():
            totals["reasons"][reason] = totals["reasons"].get(reason, 0) + int(count)
        entry = {"file": str(path), "status": record.get("status"),
                 **{name: record.get(name, 0) for name in INGEST_COUNTS}}
        if record.get("file_rejection"):
            kept = [k for k in record.get("quarantine_keys", []) if not k.endswith("/reason.json")]
            where = f"s3://{platform.bucket('quarantine')}/{kept[0]}" if kept else None
            entry.update(file_rejection=record["file_rejection"], quarantined_to=where)
            totals["rejected"].append({"file": str(path), "reason": record["file_rejection"], "quarantined_to": where})
        totals["files"].append(entry)
    return totals


# -- prepare ----------------------------------------------------------------------------------------------------------
def _run_job(platform: Platform, use_case: str, job_name: str, timeout: float,
             progress: Progress | None) -> dict[str, Any]:
    """Start the deployed Glue job, wait for it, and read the report it wrote under the curated zone's ``_runs/``."""
    glue = platform.session().client("glue")
    s3 = platform.session().client("s3")
    started = datetime.now(timezone.utc).replace(microsecond=0)
    run_id = glue.start_job_run(JobName=job_name)["JobRunId"]
    states: list[str] = []

    def report(run: dict[str, Any]) -> None:
        if progress and (not states or states[-1] != run["JobRunState"]):
            progress(f"{job_name}: {run['JobRunState']}")
        states.append(run["JobRunState"])

    run = poll(lambda: glue.get_job_run(JobName=job_name, RunId=run_id)["JobRun"],
               lambda r: r["JobRunState"] in _GLUE_FINISHED, timeout=timeout, on_poll=report,
               what=f"the preparation job {job_name} run {run_id}")
    if run["JobRunState"] != "SUCCEEDED":
        raise ExecutionFailedError(f"the preparation job {job_name} ended {run['JobRunState']}: "
                                   f"{run.get('ErrorMessage', '')}")
    # Reports are keyed by the moment the run wrote them (``_runs/<use case>/<UTC stamp>.json``): list from this start.
    prefix = f"_runs/{use_case}/"
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=platform.bucket("curated"), Prefix=prefix, StartAfter=f"{prefix}{started.strftime('%Y%m%dT%H%M%S')}")
    reports = [o for page in pages for o in page.get("Contents", [])]
    if not reports:
        raise ExecutionFailedError(f"the preparation job {job_name} succeeded but wrote no report")
    newest = max(reports, key=lambda o: o["Key"])
    return json.loads(s3.get_object(Bucket=platform.bucket("curated"), Key=newest["Key"])["Body"].read())


def prepare(use_case: str, *, env: str | None = None, timeout: float = 3600,
            progress: Progress | None = None) -> dict[str, Any]:
    """Recompute the curated partitions new raw data touched and publish a data snapshot.

    Returns ``rows_in``, ``rows_out``, ``duplicates_dropped``, ``snapshot_id``, ``database`` and ``table``.

    Example
    -------
    >>> modelwerk.data.prepare("pump-health")["snapshot_id"]
    """
    platform = resolve(env)
    platform.contract(use_case)
    report = _run_job(platform, use_case, platform.preparation_job(use_case), timeout, progress)
    return {
        "rows_in": int(report["rows_in"]),
        "rows_out": int(report["rows_out"]),
        "duplicates_dropped": int(report["duplicates_dropped"]),
        "snapshot_id": report["snapshot_id"],
        "database": platform.database("curated"),
        "table": platform.table(use_case),
        "partitions": report.get("partitions", []),
    }


# -- snapshots --------------------------------------------------------------------------------------------------------
def snapshot_manifest(use_case: str, snapshot_id: str | None = None, *, env: str | None = None) -> dict[str, Any]:
    """The manifest of a data snapshot (default: the ``latest`` one that ``prepare`` moved)."""
    platform = resolve(env)
    platform.contract(use_case)
    s3 = platform.session().client("s3")
    bucket = platform.bucket("curated")
    prefix = layout.snapshot_prefix(use_case)
    try:
        if snapshot_id in (None, "latest"):
            pointer = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}latest.json")["Body"].read())
            snapshot_id = pointer["snapshot_id"]
        return json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}{snapshot_id}.json")["Body"].read())
    except s3.exceptions.NoSuchKey:
        what = "no snapshot yet" if snapshot_id in (None, "latest") else f"no snapshot {snapshot_id}"
        raise NotFoundError(f"{use_case} has {what}: run 'modelwerk data prepare --use-case {use_case}' first") from None


def read_curated(use_case: str, snapshot_id: str | None = None, *, env: str | None = None) -> pd.DataFrame:
    """The curated table of ``use_case`` exactly as snapshot ``snapshot_id`` pinned it (default: latest).

    Every object is fetched at the version the manifest names and its sha256 checked, so the same id always
    yields the same rows.

    Example
    -------
    >>> frame = modelwerk.data.read_curated("pump-health")
    """
    from modelwerk.core.snapshot import read_snapshot_objects

    manifest = snapshot_manifest(use_case, snapshot_id, env=env)
    s3 = resolve(env).session().client("s3")

    def fetch(key: str, version_id: str | None) -> bytes:
        args = {"Bucket": manifest["bucket"], "Key": key}
        if version_id and version_id != "null":
            args["VersionId"] = version_id
        return s3.get_object(**args)["Body"].read()

    table = read_snapshot_objects(manifest, fetch)
    frame = table.to_pandas()
    frame.attrs["snapshot_id"] = manifest["snapshot_id"]
    return frame
