"""Processing step: a snapshot (or an S3 prefix of files) -> headerless CSV records a Batch Transform can split.

Batch Transform cannot split Parquet, and one record the model refuses fails a whole job: this step writes the rows
as CSV lines (``row_id``, then the version's inputs in its input order), checked against the contract first. Rows
that fail go to ``failures.jsonl`` with their reason and are counted, never dropped silently.

Inputs (``/opt/ml/processing/input/<name>``, or ``--<name> PATH``): ``contract`` (``contract.json``), ``version``
(``version.json`` of ``resolve_version.py``).
Outputs: ``records`` (``part-NNNNN.csv``), ``keys`` (``keys.parquet``: row_id and the key columns), ``failures``
(``failures.jsonl``, possibly empty), ``export`` (``export.json``: rows_in, rows_exported, rows_failed, snapshot_id).
Arguments: ``--snapshot-id`` (``latest`` or an id; read from ``--snapshot-bucket`` at the versions its manifest pins,
each object checked against its sha256) or ``--input-uri`` (``s3://bucket/prefix/``: every ``.parquet`` and ``.csv``
object under it, in the contract's columns; when given it wins), ``--rows-per-object``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import batch_common as bc
import step_common as sc
from modelwerk.core import snapshot
from modelwerk.core.contract import Contract
from modelwerk.core.layout import snapshot_prefix


def read_snapshot(contract: Contract, columns: list[str], snapshot_id: str, bucket: str,
                  client: Any = None) -> tuple[pd.DataFrame, str]:
    """The snapshot's rows (``columns`` only) and its id; ``latest`` follows the pointer preparation moves."""
    fetch = sc.s3_fetcher(bucket, client)
    document = json.loads(fetch(f"{snapshot_prefix(contract.use_case)}{snapshot_id or 'latest'}.json", None))
    if "manifest_key" in document and "objects" not in document:
        document = json.loads(fetch(document["manifest_key"], None))
    manifest = snapshot.load_manifest(json.dumps(document))
    if manifest["use_case"] != contract.use_case:
        raise sc.StepError(f"snapshot {manifest['snapshot_id']} is of {manifest['use_case']!r}, not "
                           f"{contract.use_case!r}")
    available = {f["name"] for f in manifest["schema"]}
    missing = [c for c in columns if c not in available]
    if missing and manifest["objects"]:
        raise sc.StepError(f"snapshot {manifest['snapshot_id']} has no column(s) {missing} the version needs")
    objects = sc.s3_fetcher(manifest["bucket"], client)
    table = snapshot.read_snapshot_objects(manifest, sc.prefetched(manifest, objects), columns=columns)
    return table.select([c for c in columns if c in table.column_names]).to_pandas(), manifest["snapshot_id"]


def read_prefix(uri: str, columns: list[str], client: Any = None) -> pd.DataFrame:
    """Every ``.parquet`` and ``.csv`` (with a header) object under ``uri``, ``columns`` only, as text-or-typed rows."""
    if client is None:
        import boto3

        client = boto3.client("s3")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    frames = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if not key.endswith((".parquet", ".csv")):
                continue
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            if key.endswith(".parquet"):
                frame = pq.read_table(io.BytesIO(body)).to_pandas()
            else:
                frame = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False, na_values=[""])
            absent = [c for c in columns if c not in frame.columns]
            if absent:
                raise sc.StepError(f"s3://{bucket}/{key} has no column(s) {absent} the version needs")
            frames.append(frame[columns])
    if not frames:
        raise sc.StepError(f"no .parquet or .csv object under {uri}")
    return pd.concat(frames, ignore_index=True)


def export(frame: pd.DataFrame, contract: Contract, version: dict[str, Any], *, records: Path, keys: Path,
           failures: Path, rows_per_object: int = bc.ROWS_PER_OBJECT) -> dict[str, int]:
    """Write the records, keys and failures of ``frame``; the counts of ``export.json``."""
    schema = version["input_schema"]
    frame = frame.reset_index(drop=True)
    frame.insert(0, bc.ROW_ID, range(len(frame)))
    reasons = bc.check_rows(frame, contract, schema)
    ok = reasons == ""
    key_names = bc.key_columns(contract)
    failed = frame.loc[~ok, [bc.ROW_ID, *key_names]].copy()
    failed["reason"] = reasons[~ok]
    sc.output_folder(failures)
    (Path(failures) / bc.FAILURES_FILE).write_text(bc.jsonl(failed.to_dict("records")), encoding="utf-8")
    good = frame.loc[ok]
    pq.write_table(pa.Table.from_pandas(good[[bc.ROW_ID, *key_names]], preserve_index=False),
                   sc.output_folder(keys) / bc.KEYS_FILE)
    lines = good[bc.ROW_ID].astype(str)
    for field in schema:
        lines = lines + "," + bc.csv_text(good[field["name"]], field.get("type") or "string")
    folder = sc.output_folder(records)
    values = lines.tolist()
    for number, start in enumerate(range(0, len(values), rows_per_object)):
        chunk = values[start:start + rows_per_object]
        (folder / f"part-{number:05d}.csv").write_text("\n".join(chunk) + "\n", encoding="utf-8")
    return {"rows_in": int(len(frame)), "rows_exported": int(ok.sum()), "rows_failed": int((~ok).sum()),
            "objects": -(-len(values) // rows_per_object)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="export_batch.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    for name in ("contract", "version"):
        parser.add_argument(f"--{name}", default=sc.processing_input(name))
    for name in ("records", "keys", "failures", "export"):
        parser.add_argument(f"--{name}", default=sc.processing_output(name))
    parser.add_argument("--snapshot-id", default="latest")
    parser.add_argument("--snapshot-bucket", default="")
    parser.add_argument("--input-uri", default="")
    parser.add_argument("--rows-per-object", type=int, default=bc.ROWS_PER_OBJECT)
    args = parser.parse_args(argv)

    contract = sc.load_contract(args.contract)
    version = bc.load_version(args.version)
    columns = list(dict.fromkeys([*bc.key_columns(contract), *(f["name"] for f in version["input_schema"])]))
    if args.input_uri.strip():
        frame, snapshot_id = read_prefix(args.input_uri.strip(), columns), ""
    else:
        if not args.snapshot_bucket:
            raise sc.StepError("pass --snapshot-bucket (the curated bucket) or --input-uri")
        frame, snapshot_id = read_snapshot(contract, columns, args.snapshot_id, args.snapshot_bucket)
    counts = export(frame, contract, version, records=Path(args.records), keys=Path(args.keys),
                    failures=Path(args.failures), rows_per_object=args.rows_per_object)
    report = {"format": sc.FORMAT, "use_case": contract.use_case, "snapshot_id": snapshot_id,
              "input_uri": args.input_uri.strip(), "model_package_arn": version["model_package_arn"], **counts}
    sc.write_json(sc.output_folder(args.export) / bc.EXPORT_FILE, report)
    sc.logger.info("exported %d of %d rows (%d failed the contract checks)", counts["rows_exported"],
                   counts["rows_in"], counts["rows_failed"])
    if counts["rows_exported"] == 0:
        raise sc.StepError(f"none of the {counts['rows_in']} rows can be scored (see failures.jsonl): a transform "
                           "needs at least one record")


if __name__ == "__main__":
    sys.exit(sc.run(main, failure_file=sc.PROCESSING_MESSAGE_FILE))
