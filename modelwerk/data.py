"""Data verbs: generate, ingest, prepare, query, read curated snapshots.

Each verb runs the deployed component, wherever the platform is: on AWS the ingestion Lambda reacts to the upload
and the Glue job prepares; in local mode the same Lambda handler runs in-process on the same event and the same
job script runs with Spark in local mode. The library only uploads, starts, waits and reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from modelwerk.core import layout
from modelwerk.errors import ExecutionFailedError, NotFoundError, TimeoutError, ValidationError
from modelwerk.platform import Platform, resolve
from modelwerk.query import query  # noqa: F401  (re-exported: modelwerk.data.query)

Progress = Callable[[str], None]

INGEST_COUNTS = ("rows_in", "rows_accepted", "rows_quarantined", "files_quarantined")
#: Glue's own job parameters are hyphenated (--enable-metrics, --extra-py-files); the job's own are snake_case.
_GLUE_SYSTEM_ARGUMENT_PREFIXES = ("--enable-", "--extra-", "--job-", "--TempDir", "--conf", "--datalake-",
                                  "--additional-", "--python-modules-installer-option", "--user-jars-first")


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
def _object_created_event(platform: Platform, bucket: str, key: str, size: int, etag: str,
                          version_id: str | None) -> dict[str, Any]:
    """An S3 "Object Created" event exactly as EventBridge delivers it."""
    import boto3

    account = boto3.client("sts").get_caller_identity()["Account"]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": platform.region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag.strip('"'),
                       **({"version-id": version_id} if version_id else {}), "sequencer": uuid.uuid4().hex[:18]},
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account,
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject",
        },
    }


def _wait_for_ledger(platform: Platform, use_case: str, key: str, content_sha256: str, timeout: float) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3")
    ledger_key = layout.ledger_key(use_case, key, content_sha256)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(s3.get_object(Bucket=platform.bucket("raw"), Key=ledger_key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            time.sleep(2)
    raise TimeoutError(f"the ingestion of s3://{platform.bucket('landing')}/{key} did not finish within {timeout:.0f} s; "
                       "check the ingestion Lambda's logs and its dead-letter queue")


def ingest(use_case: str, files: Iterable[str | Path], *, env: str | None = None, timeout: float = 900,
           progress: Progress | None = None) -> dict[str, Any]:
    """Land ``files`` for ``use_case`` and return the ingestion counts (rows in = accepted + quarantined).

    Each file is uploaded to the landing zone; the ingestion Lambda checks it against the use case's contract.
    Locally the Lambda's handler runs in-process on the same EventBridge event; on AWS this waits for its ledger.

    Example
    -------
    >>> modelwerk.data.ingest("pump-health", ["pumps.csv"])["rows_accepted"]
    """
    import boto3

    platform = resolve(env)
    platform.contract(use_case)
    paths = [Path(f) for f in files]
    if not paths:
        raise ValidationError("no files given: name one or more .csv, .jsonl or .parquet files to ingest")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValidationError(f"file(s) not found: {', '.join(missing)}; check the path(s) and try again")
    s3 = boto3.client("s3")
    landing = platform.bucket("landing")
    totals: dict[str, Any] = {name: 0 for name in INGEST_COUNTS}
    totals.update(reasons={}, files=[])
    for path in paths:
        data = path.read_bytes()
        key = f"{use_case}/{path.name}"
        if progress:
            progress(f"ingesting {path.name}")
        put = s3.put_object(Bucket=landing, Key=key, Body=data)
        if platform.local:
            from modelwerk.local import events

            event = _object_created_event(platform, landing, key, len(data), put["ETag"], put.get("VersionId"))
            deliveries = events.put_event(event)
            results = [d.result for d in deliveries if isinstance(d.result, dict)]
            if not results:
                raise ExecutionFailedError("no ingestion function answered the upload; run 'modelwerk local up' again")
            record = results[0]
        else:
            record = _wait_for_ledger(platform, use_case, key, hashlib.sha256(data).hexdigest(), timeout)
        if record.get("status") == "already_ingested":
            # The ledger holds the first ingestion's counts; this upload added nothing.
            totals["files"].append({"file": str(path), "status": "already_ingested",
                                    **{name: 0 for name in INGEST_COUNTS}})
            continue
        for name in INGEST_COUNTS:
            totals[name] += int(record.get(name, 0))
        for reason, count in record.get("reasons", {}).items():
            totals["reasons"][reason] = totals["reasons"].get(reason, 0) + int(count)
        totals["files"].append({"file": str(path), "status": record.get("status"),
                                **{name: record.get(name, 0) for name in INGEST_COUNTS}})
    return totals


# -- prepare ----------------------------------------------------------------------------------------------------------
def _download_s3_url(url: str, target: Path) -> Path:
    import boto3

    bucket, _, key = url.removeprefix("s3://").partition("/")
    target.write_bytes(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    return target


def _run_job_locally(platform: Platform, job_name: str, progress: Progress | None) -> dict[str, Any]:
    """Run the deployed Glue job's script as a local process (Spark local mode) with its deployed arguments."""
    import boto3

    job = boto3.client("glue").get_job(JobName=job_name)["Job"]
    arguments = job.get("DefaultArguments", {})
    with tempfile.TemporaryDirectory(prefix="modelwerk-job-") as work:
        work_dir = Path(work)
        script = _download_s3_url(job["Command"]["ScriptLocation"], work_dir / "job.py")
        python_path = [str(work_dir)]
        for url in filter(None, arguments.get("--extra-py-files", "").split(",")):
            archive = _download_s3_url(url, work_dir / Path(url).name)
            if zipfile.is_zipfile(archive):
                python_path.append(str(archive))
        command = [sys.executable, str(script)]
        for name, value in arguments.items():
            if not name.startswith(_GLUE_SYSTEM_ARGUMENT_PREFIXES) and name[2:].replace("_", "").isalnum():
                command += [name, value]
        command += ["--local", "--work_dir", str(work_dir / "spark")]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(python_path + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),  # Spark stays on loopback
        }
        if progress:
            progress(f"running {job_name} with Spark in local mode")
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise ExecutionFailedError(f"the preparation job {job_name} failed (exit {result.returncode}):\n{tail}")
    for line in reversed(result.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ExecutionFailedError(f"the preparation job {job_name} printed no report")


def _run_job_on_glue(platform: Platform, use_case: str, job_name: str, timeout: float,
                     progress: Progress | None) -> dict[str, Any]:
    import boto3

    glue = boto3.client("glue")
    s3 = boto3.client("s3")
    started = datetime.now(timezone.utc)
    run_id = glue.start_job_run(JobName=job_name)["JobRunId"]
    deadline = time.monotonic() + timeout
    while True:
        run = glue.get_job_run(JobName=job_name, RunId=run_id)["JobRun"]
        state = run["JobRunState"]
        if progress:
            progress(f"{job_name}: {state}")
        if state == "SUCCEEDED":
            break
        if state in ("FAILED", "ERROR", "TIMEOUT", "STOPPED"):
            raise ExecutionFailedError(f"the preparation job {job_name} ended {state}: {run.get('ErrorMessage', '')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the preparation job {job_name} run {run_id} is still {state} after {timeout:.0f} s")
        time.sleep(15)
    listing = s3.list_objects_v2(Bucket=platform.bucket("curated"), Prefix=f"_runs/{use_case}/")
    reports = [o for o in listing.get("Contents", []) if o["LastModified"] >= started]
    if not reports:
        raise ExecutionFailedError(f"the preparation job {job_name} succeeded but wrote no report")
    newest = max(reports, key=lambda o: o["LastModified"])
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
    job_name = platform.preparation_job(use_case)
    if platform.local:
        report = _run_job_locally(platform, job_name, progress)
    else:
        report = _run_job_on_glue(platform, use_case, job_name, timeout, progress)
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
    import boto3

    platform = resolve(env)
    platform.contract(use_case)
    s3 = boto3.client("s3")
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
    import boto3

    from modelwerk.core.snapshot import read_snapshot_objects

    manifest = snapshot_manifest(use_case, snapshot_id, env=env)
    s3 = boto3.client("s3")

    def fetch(key: str, version_id: str | None) -> bytes:
        args = {"Bucket": manifest["bucket"], "Key": key}
        if version_id and version_id != "null":
            args["VersionId"] = version_id
        return s3.get_object(**args)["Body"].read()

    table = read_snapshot_objects(manifest, fetch)
    frame = table.to_pandas()
    frame.attrs["snapshot_id"] = manifest["snapshot_id"]
    return frame
