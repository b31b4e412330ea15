"""What the inference pipeline's step scripts share: the files they hand each other and the contract checks.

The inference pipeline (``sagemaker_pipelines/inference_pipeline.py``) runs ``resolve_version.py`` ->
``export_batch.py`` -> Batch Transform -> ``write_predictions.py``. The files between them::

    version.json      the version to score with: model_package_arn, model_version, use_case, input_schema (name and
                      type, in the order a CSV request carries them), label, task
    export.json       rows_in, rows_exported, rows_failed, snapshot_id, input_uri, objects
    keys.parquet      row_id and the contract's key columns of every exported row
    part-NNNNN.csv    headerless records: row_id, then the version's inputs in input order
    failures.jsonl    one line per row that could not be scored: row_id (when it had one), its key, the reason

Batch Transform sends each CSV line to the model without its first field (``InputFilter $[1:]``) and joins the
answer back to the line (``JoinSource Input``), keeping the row id and the prediction (``OutputFilter $[0,-1]``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import step_common as sc
from modelwerk.core.contract import Contract

VERSION_FILE = "version.json"
EXPORT_FILE = "export.json"
KEYS_FILE = "keys.parquet"
FAILURES_FILE = "failures.jsonl"
PREDICTIONS_FILE = "predictions.json"
ROW_ID = "row_id"
PREDICTION = "prediction"
#: Lineage columns every prediction row carries.
LINEAGE_COLUMNS = ("model_package_arn", "model_version", "snapshot_id", "execution_id", "scored_at")
#: Records per CSV object: small enough that instances share the work, large enough to keep requests full.
ROWS_PER_OBJECT = 200_000
_NUMERIC = ("integer", "double")
_BOOLEAN_VALUES = {"true", "false", "1", "0", "1.0", "0.0"}
#: Characters a value cannot carry through a line-split, comma-separated transform input.
_UNSAFE = re.compile(r'[,"\r\n]')


def load_version(path: str | Path) -> dict[str, Any]:
    """``version.json`` (the file or its folder) as ``resolve_version.py`` wrote it."""
    file = sc.input_file(path, name=VERSION_FILE, what="version")
    document = json.loads(file.read_text(encoding="utf-8"))
    for field in ("model_package_arn", "input_schema"):
        if not document.get(field):
            raise sc.StepError(f"version: {file} has no {field!r}")
    return document


def load_json(path: str | Path, name: str, what: str) -> dict[str, Any]:
    return json.loads(sc.input_file(path, name=name, what=what).read_text(encoding="utf-8"))


def key_columns(contract: Contract) -> list[str]:
    """The row key of the use case (the contract's ``key``, timestamp included)."""
    return list(dict.fromkeys([*contract.key, contract.timestamp]))


def check_rows(frame: pd.DataFrame, contract: Contract, input_schema: Sequence[Mapping[str, Any]]) -> pd.Series:
    """Per row, why it cannot be scored ('' when it can): a key or required input missing, a value that is not of its
    type, out of the contract's range or allowed values, or a text the CSV transform cannot carry."""
    reasons = pd.Series("", index=frame.index, dtype=object)

    def fail(mask: Any, reason: str) -> None:
        mask = pd.Series(mask, index=frame.index).fillna(False).astype(bool) & (reasons == "")
        reasons[mask] = reason

    for name in key_columns(contract):
        if name not in frame.columns:
            raise sc.StepError(f"the input has no key column {name!r}")
        fail(frame[name].isna(), f"key column {name!r} is missing")
    for field in input_schema:
        name, type_ = field["name"], field.get("type") or "string"
        if name not in frame.columns:
            raise sc.StepError(f"the input has no column {name!r}, an input of the model")
        try:
            column = contract.column(name)
        except KeyError:
            column = None
        values = frame[name]
        missing = values.isna() | (values.astype(str).str.len() == 0) if values.dtype == object else values.isna()
        if field.get("required", column.required if column is not None else False):
            fail(missing, f"{name!r} is required and missing")
        present = ~missing
        if type_ in _NUMERIC:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            fail(present & numbers.isna(), f"{name!r} is not a number")
            fail(present & ~np.isfinite(numbers.fillna(0.0)), f"{name!r} is not a finite number")
            if column is not None and column.min is not None:
                fail(present & (numbers < column.min), f"{name!r} is below the contract's min {column.min}")
            if column is not None and column.max is not None:
                fail(present & (numbers > column.max), f"{name!r} is above the contract's max {column.max}")
        elif type_ == "boolean":
            text = values.astype(str).str.strip().str.lower()
            fail(present & ~text.isin(_BOOLEAN_VALUES), f"{name!r} is not a boolean")
        else:
            text = values.astype(str)
            fail(present & text.str.contains(_UNSAFE), f"{name!r} holds a comma, quote or line break, which a "
                                                        "line-split CSV transform cannot carry")
            if column is not None and column.allowed:
                fail(present & ~text.isin(column.allowed), f"{name!r} is not one of the contract's allowed values")
            if column is not None and column.pattern:
                fail(present & ~text.str.fullmatch(column.pattern), f"{name!r} does not match the contract's "
                                                                     "pattern")
    return reasons


def csv_text(values: pd.Series, type_: str) -> pd.Series:
    """Values as a CSV request carries them: numbers in full precision, booleans true/false, missing empty."""
    if type_ in _NUMERIC:
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        return numbers.map(lambda v: "" if v is None or math.isnan(v) else repr(float(v)))
    if type_ == "boolean":
        text = values.astype(str).str.strip().str.lower()
        return text.map(lambda v: "true" if v in ("true", "1", "1.0") else "false" if v in ("false", "0", "0.0")
                        else "").where(values.notna(), "")
    if type_ == "timestamp":
        return pd.to_datetime(values, utc=True, errors="coerce").map(
            lambda v: "" if pd.isna(v) else v.isoformat().replace("+00:00", "Z"))
    return values.astype(object).where(values.notna(), "").astype(str)


def jsonl(records: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(record, default=sc._json_default, sort_keys=True) + "\n" for record in records)
