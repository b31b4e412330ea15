"""Glue job entry point: prepare a use case's curated table from its raw table, then publish a snapshot.

On Glue (``awsglue`` importable) the arguments come from ``getResolvedOptions``; locally the same names are
parsed with argparse plus ``--local``::

    python glue_jobs/prepare_curated/job.py --local --use_case pump-health \\
        --raw_bucket <raw> --curated_bucket <curated> \\
        --contract_parameter /modelwerk/dev/use-cases/pump-health/contract [--partitions auto|2025-01-01,...] \\
        [--work_dir <folder>]

``--partitions auto`` (the default) prepares the partitions that raw objects not yet prepared touch (state object
``s3://<curated>/_state/<use-case>.json``); a comma list of dates prepares exactly those. On Glue, Spark reads and
writes s3:// directly (dynamic partition overwrite). Locally (s3a cannot be had offline) the raw partitions are
staged with boto3 (``AWS_ENDPOINT_URL`` points it at the embedded AWS), Spark runs ``local[*]`` on the files, and
one compacted file per partition is uploaded. Both then publish the snapshot, update the state, store the run
report under ``s3://<curated>/_runs/<use-case>/`` and print it as the last line on stdout.

The transform is ``transform.py`` (pure Spark), the S3 side ``lake_io.py``; this module only resolves arguments,
paths and the Spark session. On Glue pass them (and the ``modelwerk`` package) with ``--extra-py-files``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

# Siblings of this script: beside it locally, passed with --extra-py-files on Glue.
import lake_io
import transform as prep

from modelwerk.core.contract import Contract

ARGUMENTS = ("use_case", "raw_bucket", "curated_bucket", "contract_parameter")
#: Shuffle partitions in local mode: the staged data is small and local[*] has few cores.
LOCAL_SHUFFLE_PARTITIONS = "4"


@dataclass(frozen=True)
class JobArgs:
    use_case: str
    raw_bucket: str
    curated_bucket: str
    contract_parameter: str
    partitions: str = "auto"
    local: bool = False
    work_dir: str | None = None


def resolve_args(argv: list[str]) -> JobArgs:
    """Job arguments: Glue's resolved options on Glue, argparse with ``--local`` elsewhere."""
    if not {"--local", "-h", "--help"} & set(argv):
        try:
            from awsglue.utils import getResolvedOptions  # only on Glue; not on PyPI
        except ImportError:
            raise SystemExit("awsglue is not importable: outside Glue run the job with --local") from None
        names = [*ARGUMENTS, *(["partitions"] if "--partitions" in argv else [])]
        options = getResolvedOptions(argv, names)
        return JobArgs(**{name: options[name] for name in names})
    parser = argparse.ArgumentParser(prog="job.py", description="Prepare a curated table and publish its snapshot.")
    for name in ARGUMENTS:
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--partitions", default="auto", help="auto, or a comma list of dates (YYYY-MM-DD)")
    parser.add_argument("--local", action="store_true", help="local Spark on staged files (embedded AWS)")
    parser.add_argument("--work_dir", help="staging folder (kept); default: a temporary folder, removed")
    return JobArgs(**vars(parser.parse_args(argv[1:])))


def requested_partitions(value: str) -> list[str] | None:
    """``None`` for ``auto``, else the validated, sorted dates of a comma list."""
    if value.strip().lower() == "auto":
        return None
    dates = [p.strip() for p in value.split(",") if p.strip()]
    try:
        return sorted({_dt.date.fromisoformat(p).isoformat() for p in dates})
    except ValueError:
        raise SystemExit(f"--partitions must be 'auto' or dates like 2025-01-31, comma separated: {value!r}") from None


def spark_session(args: JobArgs):
    """Local: ``local[*]``, few shuffle partitions, quiet. Glue: the job's session. Both: UTC, dynamic overwrite."""
    # pyspark 4 warns about pandas 3, which the job never hands to Spark.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    from pyspark.sql import SparkSession

    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # Read into the Hadoop configuration of the writers: no _SUCCESS marker inside the table location.
        "mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    }
    if args.local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            SparkSession.builder.master("local[*]")
            .appName(f"prepare-{args.use_case}")
            .config("spark.sql.shuffle.partitions", LOCAL_SHUFFLE_PARTITIONS)
            .config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")  # local mode stays on loopback
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        )
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
    else:
        spark = SparkSession.builder.getOrCreate()
    for key, value in settings.items():
        spark.conf.set(key, value)
    return spark


def read_raw(spark: Any, paths: list[str], contract: Contract) -> Any:
    """The raw files as one DataFrame. Files written before a contract change may lack columns (merged as nulls)
    or hold a column in another physical type (int32 for bigint), which no single Parquet scan reads: then the
    files are read in groups of equal schema, each typed to the contract, and united."""
    try:
        return spark.read.option("mergeSchema", "true").parquet(*paths)
    except Exception as exc:  # noqa: BLE001 - Spark raises JVM errors; the fallback below re-raises real ones
        print(
            f"raw files disagree on column types ({str(exc).splitlines()[0][:200]}); reading them by schema",
            file=sys.stderr,
        )
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(spark.read.parquet(path).schema.json(), []).append(path)
    frames = [prep.typed(spark.read.parquet(*group), contract) for group in groups.values()]
    return functools.reduce(lambda left, right: left.unionByName(right), frames)


def load_contract(ssm: Any, parameter: str, use_case: str) -> Contract:
    contract = Contract.from_json(ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
    if contract.use_case != use_case:
        raise SystemExit(f"contract {parameter} is for use case {contract.use_case!r}, not {use_case!r}")
    return contract


def prepare(args: JobArgs, contract: Contract, s3: Any, raw: dict[str, lake_io.S3Object], partitions: list[str]) -> int:
    """Recompute the curated ``partitions``; returns rows_in (raw rows of those partitions read)."""
    needed = set(partitions) | set(prep.context_partitions(partitions, contract))
    sources = [o for o in raw.values() if o.partition in needed]
    with_rows = {o.partition for o in sources}
    if not any(p in with_rows for p in partitions):
        for partition in partitions:  # every raw object of these partitions is gone: so are their curated rows
            lake_io.replace_partition(s3, args.curated_bucket, args.use_case, partition, None)
        return 0

    work = Path(args.work_dir or tempfile.mkdtemp(prefix=f"prepare-{args.use_case}-")) if args.local else None
    spark = spark_session(args)
    try:
        if work is not None:
            paths = [str(p) for p in lake_io.stage_objects(s3, args.raw_bucket, sources, work / "raw")]
        else:
            paths = [f"s3://{args.raw_bucket}/{o.key}" for o in sources]
        raw_rows = read_raw(spark, paths, contract)
        curated = prep.transform(raw_rows, contract, partitions)
        rows_in = prep.touched_rows(raw_rows, contract, partitions).count()
        if work is not None:
            output = work / "curated"
            shutil.rmtree(output, ignore_errors=True)  # a kept --work_dir must not leak an earlier run's files
            curated.write.mode("overwrite").partitionBy("dt").parquet(str(output))
            lake_io.upload_partitions(s3, args.curated_bucket, args.use_case, output, partitions)
        else:
            location = f"s3://{args.curated_bucket}/{args.use_case}/"
            curated.write.mode("overwrite").partitionBy("dt").parquet(location)
            for partition in sorted(set(partitions) - with_rows):
                lake_io.replace_partition(s3, args.curated_bucket, args.use_case, partition, None)
        return rows_in
    finally:
        if args.local:
            spark.stop()
            if work is not None and not args.work_dir:
                shutil.rmtree(work, ignore_errors=True)


def run(args: JobArgs) -> dict[str, Any]:
    started = lake_io.utc_now()
    s3 = boto3.client("s3")
    contract = load_contract(boto3.client("ssm"), args.contract_parameter, args.use_case)
    raw = lake_io.raw_objects(s3, args.raw_bucket, args.use_case)
    state = lake_io.load_state(s3, args.curated_bucket, args.use_case)
    partitions = requested_partitions(args.partitions)
    if partitions is None:
        existing = {o.partition for o in raw.values() if o.partition}
        partitions = prep.affected_partitions(lake_io.touched_partitions(raw, state["objects"]), existing, contract)

    rows_in = prepare(args, contract, s3, raw, partitions) if partitions else 0

    finished = lake_io.utc_now()
    manifest, manifest_key = lake_io.publish_snapshot(s3, args.curated_bucket, args.use_case, when=finished)
    done = set(partitions)
    rows_out = sum(o["rows"] for o in manifest["objects"] if lake_io.partition_of(o["key"]) in done)
    report = {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "duplicates_dropped": rows_in - rows_out,
        "partitions": partitions,
        "snapshot_id": manifest["snapshot_id"],
        "manifest_key": manifest_key,
    }
    state = lake_io.updated_state(state, raw, partitions, snapshot_id=manifest["snapshot_id"], when=finished)
    lake_io.save_state(s3, args.curated_bucket, state)
    record = {
        **report,
        "use_case": args.use_case,
        "started_at": lake_io.iso(started),
        "finished_at": lake_io.iso(finished),
    }
    lake_io.put_run_report(s3, args.curated_bucket, args.use_case, record, finished)
    return report


def main(argv: list[str] | None = None) -> None:
    report = run(resolve_args(list(sys.argv if argv is None else argv)))
    print(json.dumps(report, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
