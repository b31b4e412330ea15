"""Processing step: score the trained model on the test split; write the metrics a pipeline condition reads.

Inputs (``/opt/ml/processing/input/<name>``, or ``--<name> PATH``):
    model   the training job's ``model.tar.gz`` (the file or its folder), or a folder with model.joblib + metadata.json
    test    the test split preprocessing wrote (CSV + schema.json)
Output (``/opt/ml/processing/output/evaluation``, or ``--evaluation PATH``): ``evaluation.json``:
    classification ``{"metrics": {"accuracy"|"precision"|"recall"|"f1"|"roc_auc": {"value": x}}, "task": ...}``,
    regression ``{"metrics": {"rmse"|"mae"|"r2": {"value": x}}, "task": ...}``; a value is null when undefined
    (roc_auc of a test split holding one class).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence

import step_common as sc


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    for name in ("model", "test"):
        parser.add_argument(f"--{name}", default=sc.processing_input(name))
    parser.add_argument("--evaluation", default=sc.processing_output("evaluation"))
    args = parser.parse_args(argv)

    test, schema = sc.read_split(args.test, what="test")
    if test.empty:
        raise sc.StepError("the test split is empty: nothing to evaluate on")
    with tempfile.TemporaryDirectory(prefix="model-") as workdir:
        model, metadata = sc.load_model(args.model, workdir)
    if metadata["input_schema"] != schema["input_schema"] or metadata["label"] != schema["label"]:
        raise sc.StepError("the model's metadata.json and the test split's schema.json name different columns")
    metrics = sc.score(model, test, metadata)
    document = sc.evaluation_document(metrics, metadata, len(test))
    path = sc.write_json(sc.output_folder(args.evaluation) / sc.EVALUATION_FILE, document)
    sc.logger.info("%s on %d test rows: %s -> %s", metadata["task"], len(test), metrics, path)


if __name__ == "__main__":
    sys.exit(sc.run(main, failure_file=sc.PROCESSING_MESSAGE_FILE))
