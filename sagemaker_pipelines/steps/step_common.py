"""What the training pipeline's step scripts share: paths, inputs, the split by time, the model, its metrics.

The scripts beside this module (``preprocess.py``, ``train.py``, ``evaluate.py``, ``baseline.py``) are thin
``main()`` functions over the functions here, so tests call the same code the containers run. One set of scripts
serves every use case: all they know of a use case is its contract (``contract.json``, an input of the first step),
and from there on the ``schema.json`` that travels with every data split (decision record 0002).

Container contract
    Processing steps read ``/opt/ml/processing/input/<name>`` and write ``/opt/ml/processing/output/<name>``; each
    script takes ``--<name>`` for every input and output it has, defaulting to that path, so a local executor or a
    test maps them anywhere. The training step reads ``SM_CHANNEL_<NAME>``, ``SM_MODEL_DIR``,
    ``SM_OUTPUT_DATA_DIR`` and its hyperparameters (``SM_HPS``, ``/opt/ml/input/config/hyperparameters.json`` and
    ``--name value`` arguments, the way SageMaker passes them to a script), each overridable by an argument.

Imports
    The container receives these scripts and ``modelwerk/core`` (the library's dependency-free leaf package), nothing
    else of the library: this module imports ``modelwerk.core`` only, and is itself imported from the script folder.
    Its name avoids ``common``, which SageMaker's own training drivers use as a package name.

Errors
    :func:`run` turns any failure into a non-zero exit whose last line on stderr is one line saying what went wrong;
    the pipeline console and the local executor show the tail of stderr. SageMaker's failure file gets the same line.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import logging
import math
import os
import sys
import tarfile
import tempfile
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelwerk.core import snapshot
from modelwerk.core.contract import Contract, ContractError

logger = logging.getLogger("modelwerk.steps")

#: Version of the layouts this module writes (schema.json, metadata.json, evaluation.json, lineage.json).
FORMAT = 1

PROCESSING_INPUT = "/opt/ml/processing/input"
PROCESSING_OUTPUT = "/opt/ml/processing/output"
#: Where SageMaker looks for a processing job's exit message (shown as the job's ExitMessage).
PROCESSING_MESSAGE_FILE = "/opt/ml/output/message"

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
SCHEMA_FILE = "schema.json"
CONTRACT_FILE = "contract.json"
LINEAGE_FILE = "lineage.json"
EVALUATION_FILE = "evaluation.json"
BASELINE_FILE = "baseline.json"
REFERENCE_FILE = "reference.parquet"
MODEL_ARCHIVE = "model.tar.gz"

#: Splits preprocessing writes, oldest first.
SPLITS = ("train", "validation", "test")
TRAIN_FRACTION = 0.70
VALIDATION_FRACTION = 0.15

#: Contract types the model treats as numbers (booleans become 0.0/1.0); strings are one-hot encoded.
NUMERIC_TYPES = ("integer", "double", "boolean")
_BOOLEAN_TEXT = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}
_S3_WORKERS = 16


class StepError(Exception):
    """A step cannot go on: a missing or malformed input, an empty split, a bad argument. One line, no traceback."""


# --------------------------------------------------------------------------------------------------------------------
# Running a step


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None, *, failure_file: str) -> int:
    """Run a step's ``main``; on failure print a traceback only for the unexpected, then ``error: <one line>``.

    Returns the exit code (0 or 1) for ``sys.exit``. ``failure_file`` is where SageMaker reads the job's failure
    reason; it is written only when its folder exists (inside a SageMaker container), never created.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    try:
        main(argv)
        return 0
    except (StepError, snapshot.SnapshotError, ContractError) as exc:
        message = _one_line(exc)
    except Exception as exc:  # noqa: BLE001 - every failure must end in one readable line
        traceback.print_exc(file=sys.stderr)
        message = _one_line(f"{type(exc).__name__}: {exc}")
    sys.stdout.flush()
    line = f"error: {message}"
    if os.path.isdir(os.path.dirname(failure_file)):
        try:
            Path(failure_file).write_text(line[:1024] + "\n", encoding="utf-8")
        except OSError:
            pass
    print(line, file=sys.stderr, flush=True)
    return 1


def processing_input(name: str) -> str:
    return f"{PROCESSING_INPUT}/{name}"


def processing_output(name: str) -> str:
    return f"{PROCESSING_OUTPUT}/{name}"


def output_folder(path: str | Path) -> Path:
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_json(path: Path, document: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (pd.Timestamp, _dt.datetime, _dt.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def input_file(path: str | Path, *, name: str, what: str, suffix: str = ".json") -> Path:
    """The file an input names: ``path`` itself, ``path/<name>``, or the only ``*<suffix>`` file in the folder."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise StepError(f"{what}: {path} does not exist (is the input mapped?)")
    if (path / name).is_file():
        return path / name
    candidates = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffix))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise StepError(f"{what}: no {name} or other *{suffix} file in {path}")
    raise StepError(f"{what}: {path} holds {len(candidates)} *{suffix} files and no {name}; pass the file itself")


# --------------------------------------------------------------------------------------------------------------------
# Contract, manifest, snapshot


def load_contract(path: str | Path) -> Contract:
    """The use case's contract from a ``contract.json`` file (or the folder holding it)."""
    file = input_file(path, name=CONTRACT_FILE, what="contract")
    try:
        return Contract.load(file)
    except json.JSONDecodeError as exc:
        raise StepError(f"contract: {file} is not JSON ({exc})") from exc


def load_manifest(path: str | Path) -> dict[str, Any]:
    """A snapshot manifest from its JSON file (or the folder holding only it); its id is checked against its content."""
    file = input_file(path, name="manifest.json", what="manifest")
    try:
        return snapshot.load_manifest(file.read_bytes())
    except json.JSONDecodeError as exc:
        raise StepError(f"manifest: {file} is not JSON ({exc})") from exc


def resolve_manifest(path: str | Path, snapshot_bucket: str | None, client: Any = None) -> dict[str, Any]:
    """The manifest the ``manifest`` input names: the manifest itself, or the ``latest.json`` pointer preparation
    moves (``{"snapshot_id", "manifest_key"}``), followed to its manifest in ``snapshot_bucket``."""
    file = input_file(path, name="manifest.json", what="manifest")
    try:
        document = json.loads(file.read_bytes())
    except json.JSONDecodeError as exc:
        raise StepError(f"manifest: {file} is not JSON ({exc})") from exc
    if "objects" in document or "manifest_key" not in document:
        return load_manifest(path)
    if not snapshot_bucket:
        raise StepError("manifest: the input is a snapshot pointer; pass --snapshot-bucket to follow it")
    data = s3_fetcher(snapshot_bucket, client)(document["manifest_key"], None)
    try:
        return snapshot.load_manifest(data)
    except json.JSONDecodeError as exc:
        raise StepError(f"manifest: s3://{snapshot_bucket}/{document['manifest_key']} is not JSON ({exc})") from exc


def s3_fetcher(bucket: str, client: Any = None) -> snapshot.Fetch:
    """``fetch(key, version_id)`` over boto3 (which honours ``AWS_ENDPOINT_URL``) for one bucket."""
    if client is None:
        import boto3

        client = boto3.client("s3")

    def fetch(key: str, version_id: str | None) -> bytes:
        extra = {"VersionId": version_id} if version_id else {}
        try:
            return client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except Exception as exc:  # botocore's errors have no common importable base worth the import here
            version = f" (version {version_id})" if version_id else ""
            raise StepError(f"cannot read s3://{bucket}/{key}{version}: {_one_line(exc)}") from exc

    return fetch


def prefetched(manifest: Mapping[str, Any], fetch: snapshot.Fetch, workers: int = _S3_WORKERS) -> snapshot.Fetch:
    """Download every object of a manifest concurrently, then serve them to ``read_snapshot_objects`` in its order."""
    wanted = [(o["key"], o.get("version_id")) for o in manifest["objects"]]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(wanted)))) as pool:
        blobs = dict(zip(wanted, pool.map(lambda kv: fetch(*kv), wanted)))
    return lambda key, version_id: blobs[(key, version_id)]


def model_columns(contract: Contract) -> list[str]:
    """The columns a model sees: its inputs (``contract.input_schema``) and the label."""
    return [*contract.input_schema, contract.label]


def read_snapshot(contract: Contract, manifest: Mapping[str, Any], fetch: snapshot.Fetch) -> pd.DataFrame:
    """The model's columns plus the timestamp and key of every row the snapshot pins (each object's sha256 checked)."""
    if manifest["use_case"] != contract.use_case:
        raise StepError(
            f"the manifest is a snapshot of {manifest['use_case']!r}, the contract is {contract.use_case!r}"
        )
    available = {f["name"] for f in manifest["schema"]}
    order = [contract.timestamp, *[k for k in contract.key if k != contract.timestamp]]
    wanted = list(dict.fromkeys([*model_columns(contract), *order]))
    missing = [c for c in wanted if c not in available]
    if missing and manifest["objects"]:
        raise StepError(f"snapshot {manifest['snapshot_id']} has no column(s) {missing} that the contract names")
    table = snapshot.read_snapshot_objects(manifest, prefetched(manifest, fetch), columns=wanted)
    return table.select([c for c in wanted if c in table.column_names]).to_pandas()


# --------------------------------------------------------------------------------------------------------------------
# Split by time


def split_by_time(
    frame: pd.DataFrame,
    timestamp: str,
    *,
    order_by: Sequence[str] = (),
    train_fraction: float = TRAIN_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
) -> dict[str, pd.DataFrame]:
    """Oldest rows to train, the next to validation, the newest to test (70/15/15 by default).

    Why time and not random: neighbouring sensor readings of one asset are nearly the same row (and share rolling
    windows and the label's horizon), so a random split puts near-copies of test rows into training and the test
    metric flatters the model. A model is used on the future; it is tested on the newest data it has not seen.

    Rows are ordered by ``timestamp`` then ``order_by`` (stable), so the split never depends on the input order. A cut
    moves to the nearest change of timestamp: readings of one instant never straddle two splits.
    """
    if not (0 < train_fraction < 1 and 0 < validation_fraction < 1 and train_fraction + validation_fraction < 1):
        raise StepError(
            f"split fractions train={train_fraction}, validation={validation_fraction} must be > 0 "
            "and leave a share for test"
        )
    ordered = frame.sort_values([timestamp, *order_by], kind="mergesort").reset_index(drop=True)
    stamps, _ = pd.factorize(ordered[timestamp], sort=True)  # one increasing integer per instant
    rows = len(ordered)

    def cut(target: int) -> int:
        if target <= 0 or target >= rows:
            return min(max(target, 0), rows)
        first = int(np.searchsorted(stamps, stamps[target], side="left"))
        after = int(np.searchsorted(stamps, stamps[target], side="right"))
        return first if target - first <= after - target else after

    first_cut = cut(round(rows * train_fraction))
    second_cut = max(first_cut, cut(round(rows * (train_fraction + validation_fraction))))
    splits = {
        "train": ordered.iloc[:first_cut],
        "validation": ordered.iloc[first_cut:second_cut],
        "test": ordered.iloc[second_cut:],
    }
    empty = [name for name, part in splits.items() if part.empty]
    if empty:
        distinct = ordered[timestamp].nunique()
        raise StepError(
            f"{rows} rows over {distinct} distinct timestamps are too few to split by time: {', '.join(empty)} "
            "would be empty"
        )
    return splits


def prepare_splits(
    contract: Contract,
    frame: pd.DataFrame,
    *,
    train_fraction: float = TRAIN_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Drop rows without timestamp or label, split by time; returns (splits, what happened for lineage.json)."""
    if frame.empty:
        raise StepError("the snapshot has no rows: nothing to train on")
    usable = frame[contract.timestamp].notna() & frame[contract.label].notna()
    kept = frame[usable]
    if kept.empty:
        raise StepError(f"none of the snapshot's {len(frame)} rows has both a timestamp and a label {contract.label!r}")
    order_by = [k for k in contract.key if k != contract.timestamp]
    splits = split_by_time(
        kept,
        contract.timestamp,
        order_by=order_by,
        train_fraction=train_fraction,
        validation_fraction=validation_fraction,
    )
    report = {
        "rows_read": len(frame),
        "rows_dropped": {"missing_timestamp_or_label": int((~usable).sum())},
        "split": {
            "rule": "by time: oldest rows to train, next to validation, newest to test; cuts at timestamp changes",
            "ordered_by": [contract.timestamp, *order_by],
            "fractions": {
                "train": train_fraction,
                "validation": validation_fraction,
                "test": round(1.0 - train_fraction - validation_fraction, 10),
            },
            **{name: time_range(part, contract.timestamp) for name, part in splits.items()},
        },
    }
    return splits, report


def time_range(part: pd.DataFrame, timestamp: str) -> dict[str, Any]:
    return {"rows": len(part), "first": _iso(part[timestamp].min()), "last": _iso(part[timestamp].max())}


def _iso(value: Any) -> str:
    return pd.Timestamp(value).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------------------------------
# Splits on disk: CSV with a header, schema.json beside it


def schema_document(contract: Contract) -> dict[str, Any]:
    """``schema.json``: the model's inputs with their contract types and whether the contract requires them (the
    serving container refuses a missing value only where the training data could not have one), the label, the
    task."""
    return {
        "format": FORMAT,
        "use_case": contract.use_case,
        "input_schema": [{"name": n, "type": contract.column(n).type, "required": contract.column(n).required}
                         for n in contract.input_schema],
        "label": contract.label,
        "label_type": contract.column(contract.label).type,
        "task": contract.task,
    }


def write_split(folder: str | Path, name: str, part: pd.DataFrame, schema: Mapping[str, Any]) -> Path:
    """``<folder>/<name>.csv`` (the schema's columns, inputs then label, with a header) and ``<folder>/schema.json``."""
    folder = output_folder(folder)
    columns = [f["name"] for f in schema["input_schema"]] + [schema["label"]]
    part[columns].to_csv(folder / f"{name}.csv", index=False, lineterminator="\n", na_rep="")
    write_json(folder / SCHEMA_FILE, schema)
    return folder / f"{name}.csv"


def read_schema(folder: str | Path) -> dict[str, Any]:
    file = Path(folder) / SCHEMA_FILE
    if not file.is_file():
        raise StepError(f"{folder}: no {SCHEMA_FILE} (is this a folder the preprocess step wrote?)")
    schema = json.loads(file.read_text(encoding="utf-8"))
    for field in ("input_schema", "label", "task"):
        if field not in schema:
            raise StepError(f"{file}: no {field!r}")
    return schema


def read_split(folder: str | Path, *, what: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """All CSV files of a split folder, typed by its ``schema.json``: (frame of inputs + label, schema)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StepError(f"{what}: {folder} does not exist (is the input mapped?)")
    schema = read_schema(folder)
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise StepError(f"{what}: no CSV file in {folder}")
    types = {f["name"]: f["type"] for f in schema["input_schema"]}
    types[schema["label"]] = schema.get("label_type", "double" if schema["task"] == "regression" else "string")
    parts = [pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""]) for f in files]
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    missing = [name for name in types if name not in frame.columns]
    if missing:
        raise StepError(f"{what}: {folder} lacks column(s) {missing} that its {SCHEMA_FILE} names")
    typed = pd.DataFrame({name: _typed(frame[name], type_, name, what) for name, type_ in types.items()})
    label = schema["label"]
    if typed[label].isna().any():
        raise StepError(f"{what}: the label {label!r} is missing in {int(typed[label].isna().sum())} row(s)")
    if schema["task"] == "classification" and types[label] in ("integer", "boolean"):
        typed[label] = typed[label].astype("int64" if types[label] == "integer" else bool)
    return typed, schema


def _typed(values: pd.Series, type_: str, name: str, what: str) -> pd.Series:
    if type_ == "string":
        return values.astype(object).where(values.notna(), np.nan)
    if type_ == "boolean":
        mapped = values.str.strip().str.lower().map(_BOOLEAN_TEXT)
        bad = values.notna() & mapped.isna()
        if bad.any():
            raise StepError(f"{what}: column {name!r} has non-boolean value {values[bad].iloc[0]!r}")
        return mapped.astype("float64")
    try:
        return pd.to_numeric(values, errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise StepError(f"{what}: column {name!r} ({type_}) holds a value that is not a number ({exc})") from exc


def features(frame: pd.DataFrame, input_schema: Iterable[Mapping[str, str]]) -> pd.DataFrame:
    """The model's input columns, in the schema's order (what a caller of the endpoint sends)."""
    return frame[[f["name"] for f in input_schema]]


# --------------------------------------------------------------------------------------------------------------------
# Training

#: Hyperparameters the training step accepts, with their types and defaults.
HYPERPARAMETERS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "max_iter": (int, 300),
    "learning_rate": (float, 0.1),
    "max_leaf_nodes": (int, 31),
    "max_depth": (int, None),
    "min_samples_leaf": (int, 20),
    "l2_regularization": (float, 0.0),
    "early_stopping": (str, "auto"),
    "n_iter_no_change": (int, 10),
    "class_weight": (str, None),
    "max_categories": (int, None),
    "random_state": (int, 0),
}


def _convert(name: str, value: Any) -> Any:
    kind, _ = HYPERPARAMETERS[name]
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    try:
        if kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            return float(value)
        return str(value).strip().lower() if name in ("early_stopping", "class_weight") else str(value)
    except (TypeError, ValueError) as exc:
        raise StepError(f"hyperparameter {name}={value!r} is not a {kind.__name__}") from exc


def resolve_hyperparameters(*sources: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid by each source in turn (later wins); unknown names are an error.

    Names may use ``-`` or ``_``; SageMaker's own keys (``sagemaker_*``) and private ones (``_*``) are ignored.
    Values may be strings (``hyperparameters.json`` holds only strings) or JSON values.
    """
    resolved = {name: default for name, (_, default) in HYPERPARAMETERS.items()}
    for source in sources:
        for raw_name, value in source.items():
            name = raw_name.replace("-", "_")
            if name.startswith(("sagemaker_", "_")):
                continue
            if name not in HYPERPARAMETERS:
                raise StepError(f"unknown hyperparameter {raw_name!r}; known: {', '.join(sorted(HYPERPARAMETERS))}")
            resolved[name] = _convert(name, value)
    if resolved["early_stopping"] not in ("auto", "true", "false"):
        raise StepError(f"hyperparameter early_stopping={resolved['early_stopping']!r} must be auto, true or false")
    if resolved["class_weight"] not in (None, "balanced"):
        raise StepError(f"hyperparameter class_weight={resolved['class_weight']!r} must be balanced or none")
    return resolved


def hyperparameter_sources(
    cli: Mapping[str, Any], *, environ: Mapping[str, str], config_file: str | Path
) -> list[Mapping[str, Any]]:
    """Where SageMaker puts hyperparameters, weakest first: the config file, ``SM_HPS``, then ``--name value``."""
    sources: list[Mapping[str, Any]] = []
    config = Path(config_file)
    if config.is_file():
        sources.append(json.loads(config.read_text(encoding="utf-8") or "{}"))
    if environ.get("SM_HPS"):
        try:
            sources.append(json.loads(environ["SM_HPS"]))
        except json.JSONDecodeError as exc:
            raise StepError(f"SM_HPS is not JSON ({exc})") from exc
    sources.append(cli)
    return sources


def parse_hyperparameter_arguments(extra: Sequence[str]) -> dict[str, str]:
    """``--name value`` / ``--name=value`` pairs left over by argparse (SageMaker passes hyperparameters so)."""
    values: dict[str, str] = {}
    items = list(extra)
    while items:
        item = items.pop(0)
        if not item.startswith("--") or len(item) == 2:
            raise StepError(f"unexpected argument {item!r}; hyperparameters are passed as --name value")
        name, sep, value = item[2:].partition("=")
        if not sep:
            if not items:
                raise StepError(f"hyperparameter argument {item} has no value")
            value = items.pop(0)
        values[name] = value
    return values


def build_model(schema: Mapping[str, Any], hyperparameters: Mapping[str, Any]) -> Any:
    """Unfitted (features, estimator): strings one-hot encoded (unknown values ignored), numbers as they are.

    Only scikit-learn classes, no functions of this module: the serving container unpickles the model with
    scikit-learn alone.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.preprocessing import OneHotEncoder

    strings = [f["name"] for f in schema["input_schema"] if f["type"] == "string"]
    numbers = [f["name"] for f in schema["input_schema"] if f["type"] in NUMERIC_TYPES]
    known = ("string", *NUMERIC_TYPES)
    unsupported = [f"{f['name']} ({f['type']})" for f in schema["input_schema"] if f["type"] not in known]
    if unsupported:
        raise StepError(f"input column(s) of a type the model cannot use: {', '.join(unsupported)}")
    transformers: list[tuple[str, Any, list[str]]] = []
    if strings:
        encoder = OneHotEncoder(
            handle_unknown="ignore", sparse_output=False, max_categories=hyperparameters["max_categories"]
        )
        transformers.append(("categorical", encoder, strings))
    if numbers:
        transformers.append(("numeric", "passthrough", numbers))
    if not transformers:
        raise StepError("the schema has no input columns: nothing to learn from")
    transformer = ColumnTransformer(transformers, remainder="drop")
    common = {
        "learning_rate": hyperparameters["learning_rate"],
        "max_iter": hyperparameters["max_iter"],
        "max_leaf_nodes": hyperparameters["max_leaf_nodes"],
        "max_depth": hyperparameters["max_depth"],
        "min_samples_leaf": hyperparameters["min_samples_leaf"],
        "l2_regularization": hyperparameters["l2_regularization"],
        "n_iter_no_change": hyperparameters["n_iter_no_change"],
        "random_state": hyperparameters["random_state"],
    }
    if schema["task"] == "classification":
        estimator = HistGradientBoostingClassifier(class_weight=hyperparameters["class_weight"], **common)
    elif schema["task"] == "regression":
        estimator = HistGradientBoostingRegressor(**common)
    else:
        raise StepError(f"task {schema['task']!r} is neither classification nor regression")
    return transformer, estimator


def fit_model(
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    schema: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
) -> Any:
    """Fit the pipeline (features, estimator) on the train split.

    Early stopping (``early_stopping`` auto or true) watches the validation split, the next period in time, when this
    scikit-learn accepts one (``fit(X_val=...)``, 1.6 and later); otherwise scikit-learn's own rule applies (a random
    10 % of train, from 10,000 rows on when ``auto``).
    """
    from sklearn.pipeline import Pipeline

    if train.empty:
        raise StepError("the training set is empty: no rows to fit on")
    label = schema["label"]
    if schema["task"] == "classification" and train[label].nunique() < 2:
        only = train[label].iloc[0]
        raise StepError(f"the training set has a single class of {label!r} ({only!r}): nothing to learn")
    transformer, estimator = build_model(schema, hyperparameters)
    x_train = transformer.fit_transform(features(train, schema["input_schema"]))
    fit_arguments: dict[str, Any] = {}
    stopping = hyperparameters["early_stopping"]
    with_validation = validation is not None and not validation.empty and stopping != "false"
    if with_validation and "X_val" in inspect.signature(estimator.fit).parameters:
        estimator.set_params(early_stopping=True)
        fit_arguments = {
            "X_val": transformer.transform(features(validation, schema["input_schema"])),
            "y_val": validation[label].to_numpy(),
        }
    else:
        estimator.set_params(early_stopping={"auto": "auto", "true": True, "false": False}[stopping])
    estimator.fit(x_train, train[label].to_numpy(), **fit_arguments)
    return Pipeline([("features", transformer), ("model", estimator)])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def model_metadata(
    model: Any,
    schema: Mapping[str, Any],
    *,
    trained_rows: int,
    validation_rows: int,
    validation_metrics: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
) -> dict[str, Any]:
    """``metadata.json``: what a serving container needs besides the pickled model."""
    import sklearn

    estimator = model.steps[-1][1]
    document: dict[str, Any] = {
        "format": FORMAT,
        "use_case": schema.get("use_case"),
        "input_schema": [dict(f) for f in schema["input_schema"]],
        "label": schema["label"],
        "label_type": schema.get("label_type"),
        "task": schema["task"],
        "sklearn_version": sklearn.__version__,
        "python_version": ".".join(str(v) for v in sys.version_info[:3]),
        "trained_rows": int(trained_rows),
        "validation_rows": int(validation_rows),
        "validation_metrics": dict(validation_metrics),
        "hyperparameters": dict(hyperparameters),
        "iterations": int(getattr(estimator, "n_iter_", 0)),
    }
    if schema["task"] == "classification":
        document["classes"] = [_plain(c) for c in estimator.classes_]
        if len(estimator.classes_) == 2:
            document["positive_class"] = _plain(estimator.classes_[1])
    return document


# --------------------------------------------------------------------------------------------------------------------
# Metrics


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def classification_metrics(y_true: Any, y_pred: Any, proba: Any, classes: Sequence[Any]) -> dict[str, float | None]:
    """accuracy, precision, recall, f1, roc_auc. Two classes: of the positive class (the larger, ``classes[1]``);
    more: macro averages and one-vs-rest AUC. ``roc_auc`` is None when the labels hold a single class."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    y_true = np.asarray(y_true)
    binary = len(classes) == 2
    averaging = {"average": "binary", "pos_label": classes[1]} if binary else {"average": "macro"}
    metrics: dict[str, float | None] = {
        "accuracy": _number(accuracy_score(y_true, y_pred)),
        "precision": _number(precision_score(y_true, y_pred, zero_division=0, **averaging)),
        "recall": _number(recall_score(y_true, y_pred, zero_division=0, **averaging)),
        "f1": _number(f1_score(y_true, y_pred, zero_division=0, **averaging)),
        "roc_auc": None,
    }
    if len(np.unique(y_true)) > 1:
        try:
            if binary:
                metrics["roc_auc"] = _number(roc_auc_score(y_true == classes[1], np.asarray(proba)[:, 1]))
            else:
                metrics["roc_auc"] = _number(roc_auc_score(y_true, proba, multi_class="ovr", labels=list(classes)))
        except ValueError as exc:
            logger.warning("roc_auc left out: %s", exc)
    return metrics


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float | None]:
    """rmse, mae, r2 (r2 None with fewer than two rows)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return {
        "rmse": _number(math.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": _number(mean_absolute_error(y_true, y_pred)),
        "r2": _number(r2_score(y_true, y_pred)) if len(y_true) > 1 else None,
    }


def score(model: Any, frame: pd.DataFrame, schema: Mapping[str, Any]) -> dict[str, float | None]:
    """The task's metrics of ``model`` on ``frame`` (inputs + label)."""
    x, y = features(frame, schema["input_schema"]), frame[schema["label"]].to_numpy()
    if schema["task"] == "classification":
        return classification_metrics(y, model.predict(x), model.predict_proba(x), list(model.classes_))
    return regression_metrics(y, model.predict(x))


def evaluation_document(metrics: Mapping[str, float | None], schema: Mapping[str, Any], rows: int) -> dict[str, Any]:
    """The property-file shape a pipeline condition reads: ``{"metrics": {"<name>": {"value": x}}, "task": ...}``."""
    return {
        "metrics": {name: {"value": value} for name, value in metrics.items()},
        "task": schema["task"],
        "label": schema["label"],
        "rows": int(rows),
        "format": FORMAT,
    }


# --------------------------------------------------------------------------------------------------------------------
# Model artifact


def load_model(path: str | Path, workdir: str | Path | None = None) -> tuple[Any, dict[str, Any]]:
    """(model, metadata) from a ``model.tar.gz`` file, a folder holding one, or a folder holding the model's files."""
    import joblib

    path = Path(path)
    if not path.exists():
        raise StepError(f"model: {path} does not exist (is the input mapped?)")
    archive = path if path.is_file() else path / MODEL_ARCHIVE
    if path.is_dir() and (path / MODEL_FILE).is_file():
        folder = path
    elif archive.is_file():
        folder = Path(workdir or tempfile.mkdtemp(prefix="model-"))
        try:
            with tarfile.open(archive, "r:*") as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(folder, filter="data")
                else:  # pragma: no cover - Python before 3.11.4
                    tar.extractall(folder)  # noqa: S202 - our own training job's artifact
        except tarfile.TarError as exc:
            raise StepError(f"model: {archive} is not a readable tar archive ({exc})") from exc
    else:
        raise StepError(f"model: neither {MODEL_FILE} nor {MODEL_ARCHIVE} in {path}")
    for name in (MODEL_FILE, METADATA_FILE):
        if not (folder / name).is_file():
            raise StepError(f"model: the artifact has no {name}")
    metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    return joblib.load(folder / MODEL_FILE), metadata


# --------------------------------------------------------------------------------------------------------------------
# Drift baseline


def baseline_columns(schema: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) input columns: integers and doubles are numeric; strings and booleans categorical."""
    from modelwerk.core.drift import split_features

    return split_features((f["name"], f["type"]) for f in schema["input_schema"])


def build_baseline(frame: pd.DataFrame, schema: Mapping[str, Any], *, bins: int, sample_size: int, seed: int) -> Any:
    """The drift baseline of the model's inputs (``modelwerk.core.drift``, shared with the drift monitor).

    Booleans go in as ``True``/``False``, so their string form matches what a captured JSON request holds.
    """
    try:
        from modelwerk.core import drift
    except ImportError as exc:
        raise StepError(f"modelwerk.core.drift is not available to this step ({exc})") from exc
    if frame.empty:
        raise StepError("the training set is empty: no baseline to compute")
    numeric, categorical = baseline_columns(schema)
    inputs = features(frame, schema["input_schema"]).copy()
    for name in [f["name"] for f in schema["input_schema"] if f["type"] == "boolean"]:
        inputs[name] = inputs[name].map({1.0: True, 0.0: False}).astype(object)
    try:
        baseline = drift.build_baseline(
            inputs, numeric=numeric, categorical=categorical, bins=bins, sample_size=sample_size, seed=seed
        )
    except drift.DriftError as exc:
        raise StepError(f"baseline: {exc}") from exc
    # The drift monitor reads captured CSV requests in this order and normalises booleans by these types.
    baseline.document["inputs"] = [{"name": f["name"], "type": f["type"]} for f in schema["input_schema"]]
    baseline.document["task"] = schema["task"]  # how the monitor scores ground truth
    return baseline
