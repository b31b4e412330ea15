"""Training step (script mode): fit a gradient-boosting pipeline on the train split, write the model artifact.

Inputs: ``--train`` (``SM_CHANNEL_TRAIN``, /opt/ml/input/data/train) and ``--validation`` (``SM_CHANNEL_VALIDATION``,
/opt/ml/input/data/validation; optional): folders with CSV files and the ``schema.json`` preprocessing wrote.
Hyperparameters: ``/opt/ml/input/config/hyperparameters.json`` (``--hyperparameters-file``), then ``SM_HPS``, then
``--name value`` arguments, later winning (see ``step_common.HYPERPARAMETERS`` for names and defaults).
Outputs: ``--model-dir`` (``SM_MODEL_DIR``, /opt/ml/model): ``model.joblib`` (a scikit-learn Pipeline: one-hot
encoded strings, numbers as they are, HistGradientBoostingClassifier or Regressor by task) and ``metadata.json``
(input_schema, label, task, classes, sklearn_version, trained_rows, validation_metrics). ``--output-data-dir``
(``SM_OUTPUT_DATA_DIR``, /opt/ml/output/data): ``validation_metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import step_common as sc


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--train", default=_env("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    parser.add_argument("--validation", default=_env("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation"))
    parser.add_argument("--model-dir", default=_env("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--output-data-dir", default=_env("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    config_dir = _env("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")
    parser.add_argument("--hyperparameters-file", default=f"{config_dir}/hyperparameters.json")
    args, extra = parser.parse_known_args(argv)

    cli = sc.parse_hyperparameter_arguments(extra)
    sources = sc.hyperparameter_sources(cli, environ=os.environ, config_file=args.hyperparameters_file)
    hyperparameters = sc.resolve_hyperparameters(*sources)
    sc.logger.info("hyperparameters: %s", json.dumps(hyperparameters, sort_keys=True))

    train, schema = sc.read_split(args.train, what="train")
    validation = None
    if Path(args.validation).is_dir() and any(Path(args.validation).glob("*.csv")):
        validation, validation_schema = sc.read_split(args.validation, what="validation")
        if validation_schema["input_schema"] != schema["input_schema"] or validation_schema["label"] != schema["label"]:
            raise sc.StepError("the validation split's schema.json differs from the train split's")
    else:
        sc.logger.info("no validation split at %s: training without one", args.validation)

    model = sc.fit_model(train, validation, schema, hyperparameters)
    metrics = sc.score(model, validation, schema) if validation is not None and len(validation) else {}
    for name, value in metrics.items():
        print(f"validation:{name}={value}", flush=True)  # for metric definitions in the training job

    metadata = sc.model_metadata(
        model,
        schema,
        trained_rows=len(train),
        validation_rows=0 if validation is None else len(validation),
        validation_metrics=metrics,
        hyperparameters=hyperparameters,
    )
    import joblib

    model_dir = sc.output_folder(args.model_dir)
    joblib.dump(model, model_dir / sc.MODEL_FILE)
    sc.write_json(model_dir / sc.METADATA_FILE, metadata)
    sc.write_json(sc.output_folder(args.output_data_dir) / "validation_metrics.json", metrics)
    sc.logger.info("model of %d rows written to %s", len(train), model_dir)


if __name__ == "__main__":
    sys.exit(sc.run(main, failure_file=_env("SM_OUTPUT_FAILURE", "/opt/ml/output/failure")))
