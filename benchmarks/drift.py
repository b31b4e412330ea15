"""Benchmark: the drift monitor side by side with Evidently's data drift preset and scipy's ks_2samp, one run.

Aim
    The statistics of 1,000,000 current rows x 20 features against a 100,000-row baseline in at most 0.5 s on one
    core (at least 70x Evidently's data drift preset on the same data), and the whole monitor, from capture JSON
    Lines to published metrics, in at most 5 s on 1,000,000 captured rows.

Method
    Data, generated deterministically: 100,000 training rows and 1,000,000 current rows of 16 numeric features
    (normal, log-normal, Poisson counts with ties, bimodal, uniform; some with 1 % missing) and 4 categorical
    ones; in the current rows 6 features have moved (a mean, a spread, a tail, a rate, a category mix, a new
    category). The baseline is built by ``modelwerk.core.drift.build_baseline``, as the pipeline's baseline step
    does (quantile bins, a 100,000-row reference sample for the exact KS test).

    1. Statistics on in-memory columns, each side pinned to core 0, best of ``--repeat``:
       - the monitor: ``drift.compare`` (PSI, exact KS, Jensen–Shannon, missing and unseen rates, every feature);
       - scipy: ``scipy.stats.ks_2samp`` per numeric feature, the reference sample against the current column;
       - Evidently's ``DataDriftPreset`` with its defaults, in its own virtual environment from
         ``benchmarks/drift_peers/evidently.txt`` (Evidently needs pandas < 3), the report's ``run`` timed alone.
       The features each side flags are printed side by side.
    2. The whole monitor: the current rows as 100 capture objects of 10,000 one-row CSV requests, in SageMaker's
       format and key layout, in S3 (moto, in process); the drift Lambda's handler, invoked with the scheduled
       event, lists and reads them, finds the version the endpoint serves and its baseline, compares, writes the
       report and emits the metrics (EMF). Beside it, the same objects read line by line (the path an object with a
       corrupt line takes), to show what the Arrow reading buys.

    python benchmarks/drift.py                 # 1,000,000 rows; Evidently installs once into its own venv
    python benchmarks/drift.py --rows 100000 --repeat 1 --skip-evidently   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

import peer_venv  # noqa: E402 - benchmarks/peer_venv.py, beside this script
from modelwerk.core import drift, monitor  # noqa: E402
from modelwerk.core.capture import capture_line, object_key  # noqa: E402

PEERS = Path(__file__).resolve().parent / "drift_peers"
DEFAULT_WORK = ROOT / ".modelwerk" / "benchmarks" / "drift"
NUMERIC = [f"n{i:02d}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]
ENDPOINT = "bench-drift"
SERVING = "modelwerk-bench-serving"
ARTIFACTS = "modelwerk-bench-artifacts"
END = dt.datetime(2026, 3, 1, 13, 0, tzinfo=dt.timezone.utc)
REQUESTS_PER_OBJECT = 10_000


def features(rows: int, seed: int, moved: bool) -> pd.DataFrame:
    """16 numeric and 4 categorical features; ``moved`` shifts six of them."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        kind = i % 5
        if kind == 0:
            values = rng.normal(50 + (2.5 if moved and i == 0 else 0), 5, rows)
        elif kind == 1:
            values = rng.normal(100, 10 * (1.5 if moved and i == 6 else 1), rows)
        elif kind == 2:
            values = rng.lognormal(1.0, 0.5 + (0.3 if moved and i == 2 else 0), rows)
        elif kind == 3:
            values = rng.poisson(4 if moved and i == 3 else 3, rows).astype(np.float64)
        else:
            values = np.where(rng.random(rows) < 0.5, rng.normal(10, 1, rows), rng.normal(20, 2, rows))
        if i % 4 == 1:
            values[rng.random(rows) < 0.01] = np.nan
        columns[name] = np.round(values, 4)
    mix = [0.4, 0.3, 0.2, 0.1]
    for i, name in enumerate(CATEGORICAL):
        levels = [f"{name}-{level}" for level in "abcd"]
        if moved and i == 0:
            columns[name] = rng.choice(levels, rows, p=mix[::-1])
        elif moved and i == 1:
            columns[name] = rng.choice([*levels, f"{name}-new"], rows, p=[0.35, 0.25, 0.15, 0.1, 0.15])
        else:
            columns[name] = rng.choice(levels, rows, p=mix)
    return pd.DataFrame(columns)


def best(function, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def scipy_ks(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    from scipy.stats import ks_2samp

    return {name: float(ks_2samp(reference[name].dropna(), current[name].dropna()).statistic) for name in NUMERIC}


def evidently(work: Path, reference: pd.DataFrame, current: pd.DataFrame, repeat: int) -> dict[str, Any]:
    python = peer_venv.peer_python(PEERS / "evidently.txt", work / "venvs" / "evidently", work / "install.log")
    reference_file, current_file = work / "reference.parquet", work / "current.parquet"
    reference.to_parquet(reference_file)
    current.to_parquet(current_file)
    run = subprocess.run(
        [str(python), str(PEERS / "evidently_run.py"), str(reference_file), str(current_file),
         "--numeric", ",".join(NUMERIC), "--categorical", ",".join(CATEGORICAL), "--repeat", str(repeat),
         "--core", "0"], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"Evidently failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def capture_objects(current: pd.DataFrame, baseline: drift.Baseline) -> list[tuple[str, bytes]]:
    """The current rows as one-row CSV requests in capture objects, in the baseline's input order."""
    order = monitor.input_columns(baseline)
    bodies = current[order].to_csv(header=False, index=False, na_rep="", float_format="%.4f").splitlines()
    start = END - dt.timedelta(minutes=50)
    objects = []
    for first in range(0, len(bodies), REQUESTS_PER_OBJECT):
        at = start + dt.timedelta(milliseconds=first * 2)
        lines = [capture_line(body, "text/csv", "0\n", "text/csv", event_id=f"e-{first + i}",
                              inference_id=f"r-{first + i}", inference_time=at + dt.timedelta(milliseconds=i * 2))
                 for i, body in enumerate(bodies[first:first + REQUESTS_PER_OBJECT])]
        objects.append((object_key("capture", ENDPOINT, "AllTraffic", at, unique=f"{first:08d}"), b"".join(lines)))
    return objects


def whole_monitor(baseline: drift.Baseline, objects: list[tuple[str, bytes]], repeat: int) -> tuple[float, dict]:
    """The drift Lambda's handler over the capture objects in moto's S3: (best seconds, its result)."""
    import boto3
    from moto import mock_aws

    environment = {"AWS_DEFAULT_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": "bench", "POWERTOOLS_LOG_LEVEL": "WARNING",
                   "AWS_SECRET_ACCESS_KEY": "bench", "SERVING_BUCKET": SERVING,
                   "POWERTOOLS_METRICS_NAMESPACE": "Modelwerk/Monitoring"}
    os.environ.update(environment)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    handler = importlib.import_module("lambdas.drift_monitor.handler")
    event = json.loads((ROOT / "tests" / "events" / "drift_monitor_scheduled.json").read_text())
    event["detail"] = {"endpoint": ENDPOINT, "window_minutes": 60}
    event["time"] = END.strftime("%Y-%m-%dT%H:%M:%SZ")
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (SERVING, ARTIFACTS):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        s3.put_object(Bucket=ARTIFACTS, Key="baseline/baseline.json", Body=baseline.to_json().encode())
        s3.put_object(Bucket=ARTIFACTS, Key="baseline/reference.parquet", Body=baseline.reference_parquet())
        for key, body in objects:
            s3.put_object(Bucket=SERVING, Key=key, Body=body)
        sagemaker = boto3.client("sagemaker")
        sagemaker.create_model_package_group(ModelPackageGroupName="bench")
        package = sagemaker.create_model_package(
            ModelPackageGroupName="bench", ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "serving:1", "ModelDataUrl": f"s3://{ARTIFACTS}/m"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
            CustomerMetadataProperties={"baseline_uri": f"s3://{ARTIFACTS}/baseline/baseline.json"})
        sagemaker.create_model(ModelName=ENDPOINT, ExecutionRoleArn="arn:aws:iam::123456789012:role/endpoint",
                               PrimaryContainer={"ModelPackageName": package["ModelPackageArn"]})
        sagemaker.create_endpoint_config(EndpointConfigName=ENDPOINT, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": ENDPOINT, "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1}])
        sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
        emitted = io.StringIO()

        def invoke():
            with contextlib.redirect_stdout(emitted):
                return handler.handler(dict(event), _Context())

        seconds, result = best(invoke, repeat)
    metrics = sum(len(m["Metrics"]) for line in emitted.getvalue().splitlines() if '"_aws"' in line
                  for m in json.loads(line)["_aws"]["CloudWatchMetrics"])
    result["metrics_per_run"] = metrics // repeat
    return seconds, result


class _Context:
    function_name = "modelwerk-bench-drift-monitor"
    function_version = "$LATEST"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:modelwerk-bench-drift-monitor"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="current rows (default 1,000,000)")
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per side, the best counts (Evidently: 2 at most)")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="work folder: Evidently's venv (kept) and the Parquet files it reads")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {0})  # every measured side on core 0 (Evidently pins itself to it too)

    print(f"data: {args.baseline_rows:,} training rows, {args.rows:,} current rows, "
          f"{len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical features", flush=True)
    train = features(args.baseline_rows, seed=1, moved=False)
    current = features(args.rows, seed=2, moved=True)
    baseline = drift.build_baseline(train, numeric=NUMERIC, categorical=CATEGORICAL,
                                    sample_size=args.baseline_rows)
    baseline.document["inputs"] = [{"name": name, "type": "double" if name in NUMERIC else "string"}
                                   for name in train.columns]

    print("1. statistics on in-memory columns (core 0)", flush=True)
    ours, report = best(lambda: drift.compare(baseline, current), args.repeat)
    scipy_seconds, ks = best(lambda: scipy_ks(train, current), args.repeat)
    exact = max(abs(ks[name] - report.features[name].ks) for name in NUMERIC)
    rows = [("monitor: drift.compare (PSI, KS, JS, missing; 20 features)", ours),
            ("scipy.stats.ks_2samp per numeric feature (16)", scipy_seconds)]
    peer = None
    if not args.skip_evidently:
        peer = evidently(args.work, train, current, min(args.repeat, 2))
        rows.append(("Evidently DataDriftPreset (defaults, 20 features)", min(peer["seconds"])))
    for label, seconds in rows:
        print(f"  {label:<62} {seconds:8.3f} s   {seconds / ours:7.1f}x the monitor")
    print(f"  largest difference between the monitor's KS and scipy's: {exact:.2e}")
    print(f"  flagged by the monitor (PSI >= 0.2): {', '.join(report.drifted())}")
    if peer:
        print(f"  flagged by Evidently:                {', '.join(peer['drifted'])}")

    print("2. the whole monitor: capture JSON Lines in S3 -> report and metrics (core 0)", flush=True)
    objects = capture_objects(current, baseline)
    size = sum(len(body) for _, body in objects)
    seconds, result = whole_monitor(baseline, objects, args.repeat)
    line_by_line, _ = best(lambda: monitor.read_window([body + b"\n{corrupt\n" for _, body in objects],
                                                      monitor.input_columns(baseline),
                                                      numeric=monitor.numeric_inputs(baseline)), 1)
    print(f"  {len(objects)} objects, {size / 1e6:,.0f} MB, {result['rows']:,} rows; "
          f"{result['metrics_per_run']} metrics published; worst {result['worst']['feature']} "
          f"(PSI {result['worst']['psi']:.2f})")
    print(f"  drift Lambda handler, end to end          {seconds:8.3f} s   aim <= 5 s")
    print(f"  reading alone, line by line (no Arrow)    {line_by_line:8.3f} s   "
          f"{line_by_line / seconds:5.1f}x the whole monitor")
    if peer:
        print(f"  Evidently's preset alone / whole monitor  {min(peer['seconds']) / seconds:8.1f}x")
    print(json.dumps({"rows": args.rows, "statistics_s": round(ours, 4), "scipy_ks_s": round(scipy_seconds, 4),
                      "evidently_s": round(min(peer["seconds"]), 3) if peer else None,
                      "whole_monitor_s": round(seconds, 3), "line_by_line_read_s": round(line_by_line, 3)}))


if __name__ == "__main__":
    main()
