"""Processing step: read a curated snapshot, keep the model's columns, split by time into train/validation/test.

Inputs (``/opt/ml/processing/input/<name>``, or ``--<name> PATH``):
    contract   ``contract.json`` of the use case (the file or its folder)
    manifest   the snapshot manifest JSON the preparation job wrote (the file or its folder), or the ``latest.json``
               pointer it moves, followed to its manifest in ``--snapshot-bucket``
Outputs (``/opt/ml/processing/output/<name>``, or ``--<name> PATH``):
    train, validation, test   ``<name>.csv`` (header; the contract's input_schema columns, then the label) and
                              ``schema.json``
    lineage                   ``lineage.json``: snapshot id, the objects read (key, version, sha256), the split,
                              the model's ``input_schema`` (name and type, in the order a CSV request carries them)
Other arguments: ``--snapshot-id`` (checked against the manifest unless ``latest``; the resolved id is recorded),
``--snapshot-bucket`` (the curated bucket, to follow a pointer), ``--train-fraction`` (0.70),
``--validation-fraction`` (0.15; test gets the rest).

Every object is read at the version the manifest pins, from the manifest's bucket, with boto3 (``AWS_ENDPOINT_URL``
is honoured) and checked against its sha256; a mismatch fails the step.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import step_common as sc


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="preprocess.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    for name in ("contract", "manifest"):
        parser.add_argument(f"--{name}", default=sc.processing_input(name))
    for name in (*sc.SPLITS, "lineage"):
        parser.add_argument(f"--{name}", default=sc.processing_output(name))
    parser.add_argument("--snapshot-id", default="", help="the snapshot the pipeline was started for (checked)")
    parser.add_argument("--snapshot-bucket", default="", help="the curated bucket, where a pointer's manifest lives")
    parser.add_argument("--train-fraction", type=float, default=sc.TRAIN_FRACTION)
    parser.add_argument("--validation-fraction", type=float, default=sc.VALIDATION_FRACTION)
    args = parser.parse_args(argv)

    contract = sc.load_contract(args.contract)
    manifest = sc.resolve_manifest(args.manifest, args.snapshot_bucket or None)
    if args.snapshot_id not in ("", "latest") and args.snapshot_id != manifest["snapshot_id"]:
        raise sc.StepError(f"--snapshot-id {args.snapshot_id} but the manifest is snapshot {manifest['snapshot_id']}")
    sc.logger.info(
        "snapshot %s of %s: %d objects, %d rows", manifest["snapshot_id"], manifest["use_case"],
        len(manifest["objects"]), manifest["rows"],
    )
    frame = sc.read_snapshot(contract, manifest, sc.s3_fetcher(manifest["bucket"]))
    splits, report = sc.prepare_splits(
        contract, frame, train_fraction=args.train_fraction, validation_fraction=args.validation_fraction
    )
    schema = sc.schema_document(contract)
    for name, part in splits.items():
        path = sc.write_split(getattr(args, name), name, part, schema)
        sc.logger.info("%s: %d rows -> %s", name, len(part), path)
    lineage = {
        "format": sc.FORMAT,
        "use_case": contract.use_case,
        "snapshot_id": manifest["snapshot_id"],
        "bucket": manifest["bucket"],
        "objects": [
            {"key": o["key"], "version_id": o.get("version_id"), "sha256": o["sha256"]} for o in manifest["objects"]
        ],
        "columns": sc.model_columns(contract),
        "input_schema": schema["input_schema"],
        "label": contract.label,
        "task": contract.task,
        **report,
    }
    sc.write_json(sc.output_folder(args.lineage) / sc.LINEAGE_FILE, lineage)


if __name__ == "__main__":
    sys.exit(sc.run(main, failure_file=sc.PROCESSING_MESSAGE_FILE))
