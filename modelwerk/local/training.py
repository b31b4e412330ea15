"""A SageMaker training job as a local process, under the contract of the SageMaker training toolkit (script mode).

What a framework container does before it calls the user's script, done here with this machine's Python: the
channels staged into ``/opt/ml/input/data/<channel>``, ``hyperparameters.json``, ``inputdataconfig.json`` and
``resourceconfig.json`` under ``/opt/ml/input/config``, the code archive (``sagemaker_submit_directory``)
unpacked into ``/opt/ml/code``, the ``SM_*`` variables set, and the script run as
``python3 <sagemaker_program> --<hyperparameter> <value> ...``. When it succeeds, ``/opt/ml/model`` becomes
``<S3OutputPath>/<job>/output/model.tar.gz`` and ``/opt/ml/output/data`` ``.../output/output.tar.gz``, as SageMaker
uploads them. All ``/opt/ml`` paths are folders of the job's work folder.
"""

from __future__ import annotations

import json
import os
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

from modelwerk.errors import ExecutionFailedError
from modelwerk.local.processing import (
    JobResult,
    StepFailed,
    _local,
    _split_s3,
    failure_message,
    process_environment,
    run_job_process,
    stage_in,
)

#: Hyperparameters the toolkit reads itself; the script gets the others.
TOOLKIT_HYPERPARAMETERS = ("sagemaker_program", "sagemaker_submit_directory", "sagemaker_container_log_level",
                           "sagemaker_region", "sagemaker_job_name")
CURRENT_HOST = "algo-1"


def _unpack(s3: Any, uri: str, target: Path, root: Path) -> None:
    """``sagemaker_submit_directory``: an S3 archive (downloaded and unpacked) or a folder of the container."""
    target.mkdir(parents=True, exist_ok=True)
    if not uri.startswith("s3://"):
        source = Path(_local(uri, root))
        if not source.is_dir():
            raise ExecutionFailedError(f"sagemaker_submit_directory {uri} is neither an S3 archive nor a folder")
        if source.resolve() != target.resolve():
            import shutil

            shutil.copytree(source, target, dirs_exist_ok=True)
        return
    bucket, key = _split_s3(uri)
    archive = target.parent / "sourcedir.tar.gz"
    s3.download_file(bucket, key, str(archive))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(target, filter="data")
    except tarfile.TarError as exc:
        raise ExecutionFailedError(f"sagemaker_submit_directory {uri} is not a tar archive ({exc})") from exc
    finally:
        archive.unlink(missing_ok=True)


def _pack_and_upload(s3: Any, folder: Path, uri: str) -> None:
    archive = folder.parent / (folder.name + ".tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    bucket, key = _split_s3(uri)
    s3.upload_file(str(archive), bucket, key)


def run_training_job(name: str, arguments: dict[str, Any], *, work_dir: Path, s3: Any,
                     environment: dict[str, str] | None = None, stop: threading.Event | None = None) -> JobResult:
    """Run one training job locally; raise :class:`StepFailed` with the script's failure reason, and
    :class:`~modelwerk.local.processing.StepStopped` when ``stop`` is set while it runs."""
    started = time.monotonic()
    root = work_dir / "opt" / "ml"
    config_dir, data_dir = root / "input" / "config", root / "input" / "data"
    model_dir, output_dir, code_dir = root / "model", root / "output", root / "code"
    for folder in (config_dir, data_dir, model_dir, output_dir / "data"):
        folder.mkdir(parents=True, exist_ok=True)

    channels = arguments.get("InputDataConfig", [])
    for channel in channels:
        stage_in(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], data_dir / channel["ChannelName"])
    hyperparameters = {k: str(v) for k, v in arguments.get("HyperParameters", {}).items()}
    program = hyperparameters.get("sagemaker_program")
    if not program:
        raise ExecutionFailedError(f"step {name}: no sagemaker_program hyperparameter names the script to run")
    _unpack(s3, hyperparameters.get("sagemaker_submit_directory", "/opt/ml/code"), code_dir, root)
    if not (code_dir / program).is_file():
        raise ExecutionFailedError(f"step {name}: the code archive holds no {program}")

    script_hyperparameters = {k: v for k, v in hyperparameters.items() if k not in TOOLKIT_HYPERPARAMETERS}
    resources = arguments.get("ResourceConfig", {})
    (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config_dir / "inputdataconfig.json").write_text(json.dumps(
        {c["ChannelName"]: {"TrainingInputMode": arguments.get("AlgorithmSpecification", {}).get(
            "TrainingInputMode", "File"), "S3DistributionType": "FullyReplicated"} for c in channels}))
    (config_dir / "resourceconfig.json").write_text(json.dumps(
        {"current_host": CURRENT_HOST, "hosts": [CURRENT_HOST], "current_instance_type": resources.get("InstanceType")}))

    names = [c["ChannelName"] for c in channels]
    toolkit = {
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DIR": str(output_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
        "SM_OUTPUT_FAILURE": str(output_dir / "failure"),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_INPUT_CONFIG_DIR": str(config_dir),
        "SM_CHANNELS": json.dumps(names),
        "SM_HPS": json.dumps(script_hyperparameters),
        "SM_USER_ENTRY_POINT": program,
        "SM_MODULE_DIR": hyperparameters.get("sagemaker_submit_directory", ""),
        "SM_CURRENT_HOST": CURRENT_HOST,
        "SM_HOSTS": json.dumps([CURRENT_HOST]),
        "SM_NUM_GPUS": "0",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_TRAINING_ENV": json.dumps({"job_name": name, "hyperparameters": script_hyperparameters,
                                       "channel_input_dirs": {n: str(data_dir / n) for n in names}}),
        **{f"SM_CHANNEL_{n.upper()}": str(data_dir / n) for n in names},
        **{f"SM_HP_{k.upper()}": v for k, v in script_hyperparameters.items()},
    }
    env = process_environment(root, arguments.get("Environment", {}), {**(environment or {}), **toolkit})
    command = ["python3", str(code_dir / program)]
    for key, value in script_hyperparameters.items():
        command += [f"--{key}", value]
    result = run_job_process(name, command, arguments, env=env, cwd=code_dir, stop=stop)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        failure = output_dir / "failure"
        reason = failure.read_text(encoding="utf-8").strip() if failure.is_file() else ""
        if reason:
            raise StepFailed(f"step {name} failed (exit {result.returncode}): {reason.splitlines()[-1]}", log=log)
        raise StepFailed(failure_message(name, result), log=log)

    output_path = str(arguments["OutputDataConfig"]["S3OutputPath"]).rstrip("/")
    model_uri = f"{output_path}/{name}/output/model.tar.gz"
    _pack_and_upload(s3, model_dir, model_uri)
    _pack_and_upload(s3, output_dir / "data", f"{output_path}/{name}/output/output.tar.gz")
    metrics = [{"MetricName": k, "Value": float(v)} for k, v in _printed_metrics(result.stdout).items()]
    properties = {
        "TrainingJobName": name,
        "TrainingJobStatus": "Completed",
        "AlgorithmSpecification": arguments.get("AlgorithmSpecification", {}),
        "HyperParameters": hyperparameters,
        "ModelArtifacts": {"S3ModelArtifacts": model_uri},
        "OutputDataConfig": arguments.get("OutputDataConfig", {}),
        "FinalMetricDataList": metrics,
    }
    return JobResult(properties=properties, log=log, seconds=time.monotonic() - started)


def _printed_metrics(stdout: str) -> dict[str, float]:
    """``name=value`` lines the script prints (``validation:f1=0.8``), as a metric definition would pick them up."""
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and ":" in name and " " not in name:
            try:
                found[name] = float(value)
            except ValueError:
                continue
    return found
