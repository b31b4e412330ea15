"""Processing step: the drift baseline of the model's inputs, computed on the train split.

Input (``/opt/ml/processing/input/train``, or ``--train PATH``): the train split preprocessing wrote.
Output (``/opt/ml/processing/output/baseline``, or ``--baseline PATH``): ``baseline.json`` (the statistics the drift
monitor compares captured requests with, strict JSON) and ``reference.parquet`` (a seeded sample of the inputs), both
from ``modelwerk.core.drift.build_baseline``; ``Baseline.load`` reads them back.
Arguments: ``--bins`` (10), ``--sample-size`` (100000), ``--seed`` (0).
Integer and double inputs are numeric; string and boolean inputs categorical.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import step_common as sc


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="baseline.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--train", default=sc.processing_input("train"))
    parser.add_argument("--baseline", default=sc.processing_output("baseline"))
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--sample-size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, schema = sc.read_split(args.train, what="train")
    baseline = sc.build_baseline(train, schema, bins=args.bins, sample_size=args.sample_size, seed=args.seed)
    folder = sc.output_folder(args.baseline)
    (folder / sc.BASELINE_FILE).write_text(baseline.to_json() + "\n", encoding="utf-8")
    (folder / sc.REFERENCE_FILE).write_bytes(baseline.reference_parquet())
    sc.logger.info("baseline of %d rows written to %s", len(train), folder)


if __name__ == "__main__":
    sys.exit(sc.run(main, failure_file=sc.PROCESSING_MESSAGE_FILE))
