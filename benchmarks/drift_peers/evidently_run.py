"""Evidently's data drift preset on the benchmark's data, run in Evidently's own virtual environment.

Prints one JSON object: the seconds of each run of the report (loading the Parquet files is not timed), the
drifted columns and each column's drift value as Evidently decides them with its defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reference")
    parser.add_argument("current")
    parser.add_argument("--numeric", required=True, help="comma-separated numeric columns")
    parser.add_argument("--categorical", required=True, help="comma-separated categorical columns")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--core", type=int)
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    numeric, categorical = args.numeric.split(","), args.categorical.split(",")
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    reference = Dataset.from_pandas(pd.read_parquet(args.reference), data_definition=definition)
    current = Dataset.from_pandas(pd.read_parquet(args.current), data_definition=definition)
    seconds, snapshot = [], None
    for _ in range(args.repeat):
        started = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current, reference)
        seconds.append(time.perf_counter() - started)
    values, drifted = {}, []
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            value = float(metric["value"])
            values[config["column"]] = {"method": config["method"], "value": value, "threshold": config["threshold"]}
            p_value = "p_value" in config["method"].lower()
            if (value < config["threshold"]) if p_value else (value >= config["threshold"]):
                drifted.append(config["column"])
    print(json.dumps({"seconds": seconds, "drifted": drifted, "values": values}))


if __name__ == "__main__":
    main()
