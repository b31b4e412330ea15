"""Processing step: the transform's ``.out`` objects -> partitioned Parquet predictions with lineage, in the
analytics zone, where the Glue table the CDK app declares (daily ``dt`` partitions, projected) makes them queryable.

Inputs (``/opt/ml/processing/input/<name>``, or ``--<name> PATH``): ``contract``, ``version`` (``version.json``),
``export`` (``export.json``), ``keys`` (``keys.parquet``), ``predictions`` (the transform's output: one ``.out`` per
input object, ``row_id,prediction`` per line).
Outputs: ``report`` (``predictions.json``: rows_in, rows_scored, rows_failed, output_table, output_uri),
``failures`` (``failures.jsonl``: the exported rows that came back without a usable prediction, with the reason).
Arguments: ``--execution-id``, ``--analytics-bucket``, ``--table-prefix`` (``predictions/<use-case>/``),
``--database``, ``--table``.

Each row keeps the contract's key columns and gets ``prediction`` (typed as the contract types the label) and the
lineage columns ``model_package_arn``, ``model_version``, ``snapshot_id``, ``execution_id``, ``scored_at``. The object
is ``s3://<analytics>/<table-prefix>dt=<scoring day>/<execution id>.parquet``: a rerun of an execution replaces its
own object and nothing else.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import batch_common as bc
import step_common as sc
from modelwerk.core.contract import PARTITION_COLUMN, Contract

PREDICTION_TYPES = {"integer": pa.int64(), "double": pa.float64(), "boolean": pa.bool_(), "string": pa.string()}


def read_outputs(folder: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """``row_id`` and ``prediction`` (as text) of every ``.out`` file under ``folder``; unreadable lines' reasons."""
    rows: list[tuple[int, str]] = []
    problems: list[str] = []
    files = sorted(Path(folder).rglob("*.out"))
    if not files:
        raise sc.StepError(f"predictions: no .out object in {folder} (did the transform write any?)")
    for file in files:
        for number, fields in enumerate(csv.reader(io.StringIO(file.read_text(encoding="utf-8"))), start=1):
            if not fields:
                continue
            try:
                rows.append((int(fields[0]), fields[-1] if len(fields) > 1 else ""))
            except ValueError:
                problems.append(f"{file.name}:{number}: no row id in {','.join(fields)[:80]!r}")
    return pd.DataFrame(rows, columns=[bc.ROW_ID, bc.PREDICTION]), problems


def typed_predictions(text: pd.Series, label_type: str) -> tuple[pd.Series, pd.Series]:
    """(predictions typed as the label, mask of those that are not of that type)."""
    text = text.fillna("").astype(str).str.strip()
    empty = text == ""
    if label_type in ("integer", "double"):
        numbers = pd.to_numeric(text, errors="coerce")
        bad = ~empty & numbers.isna()
        if label_type == "integer":
            whole = numbers.notna() & (numbers % 1 == 0)
            bad |= numbers.notna() & ~whole
            return numbers.where(whole).astype("Int64"), bad | empty
        return numbers.astype("float64"), bad | empty
    if label_type == "boolean":
        lowered = text.str.lower()
        values = lowered.map({"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False})
        return values.astype("boolean"), values.isna()
    return text.where(~empty), empty


def predictions_table(keys: pd.DataFrame, outputs: pd.DataFrame, contract: Contract,
                      lineage: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scored rows with lineage, failed rows with their reason): every exported row lands in exactly one."""
    outputs = outputs.drop_duplicates(bc.ROW_ID, keep="last")
    joined = keys.merge(outputs, on=bc.ROW_ID, how="left", indicator=True)
    label_type = contract.column(contract.label).type
    values, bad = typed_predictions(joined[bc.PREDICTION], label_type)
    missing = joined["_merge"] == "left_only"
    reasons = pd.Series("", index=joined.index, dtype=object)
    reasons[bad] = f"the model's answer is not a {label_type} prediction"
    reasons[missing] = "no prediction came back for this row"
    failed = joined.loc[reasons != "", [c for c in keys.columns]].copy()
    failed["reason"] = reasons[reasons != ""]
    scored = joined.loc[reasons == "", list(keys.columns)].copy()
    scored[bc.PREDICTION] = values[reasons == ""]
    for name in bc.LINEAGE_COLUMNS:
        scored[name] = lineage[name]
    return scored.drop(columns=[bc.ROW_ID]).reset_index(drop=True), failed


def arrow_table(scored: pd.DataFrame, contract: Contract) -> pa.Table:
    """The Parquet schema the Glue table declares: keys, prediction, lineage (the partition lives in the key)."""
    fields = []
    scored = scored.copy()
    for name in bc.key_columns(contract):
        type_ = contract.column(name).type
        if type_ == "timestamp":  # keys read from CSV files arrive as text
            scored[name] = pd.to_datetime(scored[name], utc=True)
        elif type_ in ("integer", "double"):
            scored[name] = pd.to_numeric(scored[name]).astype("Int64" if type_ == "integer" else "float64")
        fields.append(pa.field(name, pa.timestamp("us", tz="UTC") if type_ == "timestamp"
                               else PREDICTION_TYPES.get(type_, pa.string())))
    fields.append(pa.field(bc.PREDICTION, PREDICTION_TYPES.get(contract.column(contract.label).type, pa.string())))
    fields += [pa.field("model_package_arn", pa.string()), pa.field("model_version", pa.int64()),
               pa.field("snapshot_id", pa.string()), pa.field("execution_id", pa.string()),
               pa.field("scored_at", pa.timestamp("us", tz="UTC"))]
    return pa.Table.from_pandas(scored, schema=pa.schema(fields), preserve_index=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="write_predictions.py", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    for name in ("contract", "version", "export", "keys", "predictions"):
        parser.add_argument(f"--{name}", default=sc.processing_input(name))
    for name in ("report", "failures"):
        parser.add_argument(f"--{name}", default=sc.processing_output(name))
    parser.add_argument("--execution-id", required=True)
    parser.add_argument("--analytics-bucket", required=True)
    parser.add_argument("--table-prefix", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--table", required=True)
    args = parser.parse_args(argv)

    contract = sc.load_contract(args.contract)
    version = bc.load_version(args.version)
    exported = bc.load_json(args.export, bc.EXPORT_FILE, "export")
    keys = pq.read_table(sc.input_file(args.keys, name=bc.KEYS_FILE, what="keys", suffix=".parquet")).to_pandas()
    outputs, problems = read_outputs(args.predictions)
    for problem in problems[:10]:
        sc.logger.warning("unreadable transform output line: %s", problem)
    scored_at = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    lineage = {"model_package_arn": version["model_package_arn"], "model_version": int(version["model_version"]),
               "snapshot_id": exported.get("snapshot_id") or "", "execution_id": args.execution_id,
               "scored_at": pd.Timestamp(scored_at)}
    scored, failed = predictions_table(keys, outputs, contract, lineage)
    sc.output_folder(args.failures)
    (Path(args.failures) / bc.FAILURES_FILE).write_text(bc.jsonl(failed.to_dict("records")), encoding="utf-8")

    prefix = args.table_prefix if args.table_prefix.endswith("/") else args.table_prefix + "/"
    key = f"{prefix}{PARTITION_COLUMN}={scored_at:%Y-%m-%d}/{args.execution_id}.parquet"
    buffer = io.BytesIO()
    pq.write_table(arrow_table(scored, contract), buffer, compression="snappy")
    import boto3

    boto3.client("s3").put_object(Bucket=args.analytics_bucket, Key=key, Body=buffer.getvalue())
    rows_failed = int(exported.get("rows_failed", 0)) + len(failed)
    report = {"format": sc.FORMAT, "rows_in": int(exported.get("rows_in", len(keys))), "rows_scored": len(scored),
              "rows_failed": rows_failed, "rows_failed_export": int(exported.get("rows_failed", 0)),
              "rows_failed_transform": len(failed), "output_table": f"{args.database}.{args.table}",
              "output_uri": f"s3://{args.analytics_bucket}/{key}", "snapshot_id": lineage["snapshot_id"],
              "model_package_arn": lineage["model_package_arn"], "model_version": lineage["model_version"],
              "execution_id": args.execution_id, "scored_at": scored_at.isoformat().replace("+00:00", "Z"),
              "unreadable_lines": len(problems)}
    sc.write_json(sc.output_folder(args.report) / bc.PREDICTIONS_FILE, report)
    sc.logger.info("%d rows scored, %d failed -> %s", report["rows_scored"], rows_failed, report["output_uri"])


if __name__ == "__main__":
    sys.exit(sc.run(main, failure_file=sc.PROCESSING_MESSAGE_FILE))
