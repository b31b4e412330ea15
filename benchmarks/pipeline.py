"""Benchmark: the local pipeline executor against running the same step scripts directly, for both use cases.

Sets up local mode from this checkout in a temporary state folder (``local up``: the embedded AWS in its own process,
every environment's stage deployed, this process pointed at dev's profile), generates, ingests and prepares one
snapshot per use case (outside the timings), then, per use case, in one run:

- floor: the four step scripts of the code archive run one after another as plain processes on local folders
  (preprocess reads the snapshot from the embedded S3 at its pinned versions, as it must; train, evaluate and
  baseline read the previous step's folders) — no staging, no archive, no registry;
- executor: the local pipeline executor on the definition the dev stage deployed (read back with DescribePipeline),
  run in this process the way the embedded AWS runs an execution: in the pipeline's account, with clients and job
  credentials from the server's service context (so jobs reach the embedded AWS as its own jobs do): staging inputs
  in and outputs out of S3, unpacking the code archive per job, the model tarball, the condition, the registration
  in the registry account and the execution record; caching is bypassed (a fresh records folder per run);
- ``modelwerk.pipelines.run``: what a user calls, i.e. StartPipelineExecution on the embedded AWS (which runs the same
  executor on a thread of the server), followed through DescribePipelineExecution and ListPipelineExecutionSteps
  until it ends, plus the checks before it starts and the MLflow logging after it; the server's step cache is emptied
  before each run. Its polls back off (up to 15 s, as on AWS), so this wall time may include part of one interval
  after the end; ``server s`` is the execution's own time as DescribePipelineExecution reports it (creation to
  last change), the executor on the server's thread.

Prints the wall times and the ratios to the floor.

    python benchmarks/pipeline.py                   # 40,000 pump-health rows, 6,000 energy-forecast rows
    python benchmarks/pipeline.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = {"pump-health": 40_000, "energy-forecast": 6_000}


def floor(work: Path, use_case: str, snapshot_id: str, curated_bucket: str, code_dir: Path, contract: Path,
          manifest: Path) -> float:
    """The step scripts in sequence, as plain processes; returns the wall time."""
    if work.exists():
        shutil.rmtree(work)
    out = {name: work / name for name in ("train", "validation", "test", "lineage", "model", "output", "evaluation",
                                          "baseline")}
    steps = code_dir / "steps"
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    commands = [
        [steps / "preprocess.py", "--contract", contract, "--manifest", manifest, "--snapshot-id", snapshot_id,
         "--snapshot-bucket", curated_bucket, *[a for n in ("train", "validation", "test", "lineage")
                                                for a in (f"--{n}", out[n])]],
        [steps / "train.py", "--train", out["train"], "--validation", out["validation"], "--model-dir", out["model"],
         "--output-data-dir", out["output"], "--hyperparameters-file", work / "none.json"],
        [steps / "evaluate.py", "--model", out["model"], "--test", out["test"], "--evaluation", out["evaluation"]],
        [steps / "baseline.py", "--train", out["train"], "--baseline", out["baseline"]],
    ]
    started = time.perf_counter()
    for command in commands:
        subprocess.run([sys.executable, *map(str, command)], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine and use case (the best is reported)")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="modelwerk-bench-"))
    os.environ["MODELWERK_STATE_DIR"] = str(state)
    from modelwerk import data, local, pipelines, platform, settings
    from modelwerk.local.pipeline_executor import PipelineExecutor
    from modelwerk.local.services._context import ServiceContext
    from sagemaker_pipelines import code_archive

    print("setting up local mode and one snapshot per use case (not timed) ...", file=sys.stderr)
    state_info = local.up(ROOT)
    try:
        resolved = platform.resolve(refresh=True)
        dev = platform.session("dev")
        account, region = state_info.accounts["dev"], state_info.region
        # The server's own machinery: clients in any account and the credentials its jobs get.
        context = ServiceContext(endpoint_url=state_info.endpoint_url, root=ROOT, state_dir=state / "bench",
                                 default_region=region)
        server_cache = state / "runs" / account / region / "step-cache"
        curated = resolved.bucket("curated")
        code_dir = state / "code"
        code_dir.mkdir()
        import tarfile

        with tarfile.open(code_archive.build(state), "r:gz") as tar:
            tar.extractall(code_dir, filter="data")
        results = []
        for use_case, rows in ROWS.items():
            source = state / f"{use_case}.csv"
            data.generate(use_case, rows=rows, out=source, seed=3)
            data.ingest(use_case, [source])
            snapshot_id = data.prepare(use_case)["snapshot_id"]
            manifest = state / f"{use_case}-manifest.json"
            dev.client("s3").download_file(curated, f"_snapshots/{use_case}/{snapshot_id}.json", str(manifest))
            contract_file = settings.load(ROOT).use_case(use_case).folder / "contract.json"

            doc = pipelines.definition(use_case)
            name = resolved.parameters[f"use-cases/{use_case}/pipeline-name"]
            arn = dev.client("sagemaker").describe_pipeline(PipelineName=name)["PipelineArn"]
            best = {"floor": float("inf"), "executor": float("inf"), "pipelines.run": float("inf"),
                    "server": float("inf")}
            for _ in range(args.repeat):
                best["floor"] = min(best["floor"], floor(state / "floor", use_case, snapshot_id, curated, code_dir,
                                                         contract_file, manifest))
                records = state / "bench" / "executor"
                shutil.rmtree(records, ignore_errors=True)
                executor = PipelineExecutor(
                    doc, pipeline_arn=arn, records_dir=records,
                    clients=lambda service, other: context.client(service, other or account, region),
                    environment=context.credentials(account, region))
                started = time.perf_counter()
                execution = executor.run({"SnapshotId": snapshot_id})
                best["executor"] = min(best["executor"], time.perf_counter() - started)
                if execution.status != "Succeeded":
                    raise SystemExit(f"{use_case}: the execution failed: {execution.failure_reason}")
                shutil.rmtree(server_cache, ignore_errors=True)
                started = time.perf_counter()
                run = pipelines.run(use_case, {"SnapshotId": snapshot_id})
                best["pipelines.run"] = min(best["pipelines.run"], time.perf_counter() - started)
                if run.status != "Succeeded":
                    raise SystemExit(f"{use_case}: the execution failed: {run.failure_reason}")
                server = datetime.fromisoformat(run.ended_at) - datetime.fromisoformat(run.started_at)
                best["server"] = min(best["server"], server.total_seconds())
            results.append((use_case, rows, best))
    finally:
        local.down(ROOT)
        shutil.rmtree(state, ignore_errors=True)

    print(f"\n{'use case':<16} {'rows':>7} {'floor s':>8} {'executor s':>11} {'ratio':>6} {'pipelines.run s':>16} "
          f"{'ratio':>6} {'server s':>9} {'ratio':>6}")
    for use_case, rows, best in results:
        print(f"{use_case:<16} {rows:>7} {best['floor']:>8.2f} {best['executor']:>11.2f} "
              f"{best['executor'] / best['floor']:>6.2f} {best['pipelines.run']:>16.2f} "
              f"{best['pipelines.run'] / best['floor']:>6.2f} {best['server']:>9.2f} "
              f"{best['server'] / best['floor']:>6.2f}")


if __name__ == "__main__":
    main()
