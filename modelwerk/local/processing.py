"""A SageMaker processing job as a local process, under the container contract the step scripts are written for.

The job's ``/opt/ml`` is a work folder; each S3 input is staged into its local path from S3 (the embedded S3 in local
mode), the container's entry point runs with this machine's Python, and each output folder is uploaded to its S3
URI when the process succeeds. The arguments are a ``CreateProcessingJob`` request with every pipeline expression
already resolved, exactly as a pipeline's processing step holds it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelwerk.errors import ExecutionFailedError

CONTAINER_ROOT = "/opt/ml/"


class StepFailed(ExecutionFailedError):
    """A job's process failed; ``log`` holds everything it printed."""

    def __init__(self, message: str, *, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class StepStopped(StepFailed):
    """A job's process was ended because its execution was asked to stop (``StopPipelineExecution``)."""


#: How often a running job checks whether it was asked to stop.
_STOP_POLL_SECONDS = 0.5


def run_process(name: str, command: list[str], *, env: dict[str, str], cwd: Path, timeout: float | None = None,
                stop: threading.Event | None = None) -> subprocess.CompletedProcess:
    """Run a job's process to its end, or end it (and what it started) when ``stop`` is set or ``timeout`` passes.

    Raises :class:`StepStopped` when stopped and ``subprocess.TimeoutExpired`` (with the output so far) on timeout.
    """
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        wait = _STOP_POLL_SECONDS
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        try:
            stdout, stderr = process.communicate(timeout=wait)
            return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:
            stopped = stop is not None and stop.is_set()
            late = deadline is not None and time.monotonic() >= deadline
            if not (stopped or late):
                continue
        stdout, stderr = _end(process)
        if stopped:
            raise StepStopped(f"step {name} stopped: its execution was asked to stop", log=stdout + stderr)
        raise subprocess.TimeoutExpired(command, timeout or 0, output=stdout, stderr=stderr)


def run_job_process(name: str, command: list[str], arguments: dict[str, Any], *, env: dict[str, str], cwd: Path,
                    stop: threading.Event | None = None) -> subprocess.CompletedProcess:
    """A processing or training job's process under its ``StoppingCondition``: past ``MaxRuntimeInSeconds`` it is
    stopped and the step fails saying so."""
    timeout = arguments.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    try:
        return run_process(name, command, env=env, cwd=cwd, timeout=float(timeout) if timeout else None, stop=stop)
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"step {name} stopped: it ran past MaxRuntimeInSeconds ({timeout} s)",
                         log=f"{exc.stdout or ''}{exc.stderr or ''}") from None


def _end(process: subprocess.Popen) -> tuple[str, str]:
    """Terminate a job's process group (SIGTERM, then SIGKILL after 10 s); what it printed."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            stdout, stderr = process.communicate(timeout=grace)
            return stdout or "", stderr or ""
        except subprocess.TimeoutExpired:
            continue
    return "", ""


@dataclass(frozen=True)
class JobResult:
    """What the executor records of a finished job: its describe-like properties, log and duration."""

    properties: dict[str, Any]
    log: str
    seconds: float


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ExecutionFailedError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def stage_in(s3: Any, uri: str, target: Path) -> int:
    """Copy an S3 prefix (or one object) into ``target``, keeping the key layout below the prefix."""
    bucket, prefix = _split_s3(uri)
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            relative = Path(key).name if key == prefix else key[len(prefix):].lstrip("/")
            if not relative or key.endswith("/"):
                continue
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(destination))
            copied += 1
    if copied == 0:
        raise ExecutionFailedError(f"the input {uri} holds no objects")
    return copied


def stage_out(s3: Any, source: Path, uri: str) -> int:
    """Upload every file below ``source`` under the S3 prefix ``uri``."""
    bucket, prefix = _split_s3(uri)
    prefix = prefix.rstrip("/")
    uploaded = 0
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        s3.upload_file(str(file), bucket, f"{prefix}/{file.relative_to(source).as_posix()}")
        uploaded += 1
    return uploaded


def _local(value: str, root: Path) -> str:
    """Container paths below /opt/ml, mapped into the work folder (also inside a shell command); the rest unchanged."""
    return value.replace(CONTAINER_ROOT, f"{root}/")


#: Job variables a local process does not get: the package mirror (there is no CodeArtifact in the embedded AWS, and
#: this machine's environment holds the model frameworks' pins already, so pip installs nothing).
LOCAL_ONLY_DROPPED = ("CA_REPOSITORY_ARN",)


def process_environment(root: Path, job_environment: dict[str, Any], base: dict[str, str] | None) -> dict[str, str]:
    """The variables a job's process gets: ours, the job's (paths mapped), and this machine's Python as ``python3``."""
    job = {k: _local(str(v), root) for k, v in job_environment.items() if k not in LOCAL_ONLY_DROPPED}
    env = {**os.environ, **(base or {}), **job}
    for name in LOCAL_ONLY_DROPPED:
        env.pop(name, None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def failure_message(step: str, result: subprocess.CompletedProcess) -> str:
    """A failed job's reason: the script's last line on stderr, as SageMaker shows a job's FailureReason."""
    lines = result.stderr.strip().splitlines() or (result.stdout or "").strip().splitlines() or ["(no output)"]
    return f"step {step} failed (exit {result.returncode}): {lines[-1]}"


def run_processing_job(name: str, arguments: dict[str, Any], *, work_dir: Path, s3: Any,
                       environment: dict[str, str] | None = None, stop: threading.Event | None = None) -> JobResult:
    """Run one processing job locally; raise :class:`ExecutionFailedError` with the script's last lines on failure,
    :class:`StepStopped` when ``stop`` is set while it runs."""
    started = time.monotonic()
    root = work_dir / "opt" / "ml"
    inputs = arguments.get("ProcessingInputs", [])
    outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
    for item in inputs:
        stage_in(s3, item["S3Input"]["S3Uri"], Path(_local(item["S3Input"]["LocalPath"], root)))
    for item in outputs:
        Path(_local(item["S3Output"]["LocalPath"], root)).mkdir(parents=True, exist_ok=True)
    (root / "output").mkdir(parents=True, exist_ok=True)

    app = arguments["AppSpecification"]
    entrypoint = [sys.executable if part in ("python", "python3") else _local(part, root)
                  for part in app.get("ContainerEntrypoint", [])]
    if not entrypoint:
        raise ExecutionFailedError(f"step {name}: the job names no ContainerEntrypoint to run")
    command = entrypoint + [_local(str(a), root) for a in app.get("ContainerArguments", [])]
    # The scripts take every channel's path as --<name>, so the mapped folders reach them without /opt/ml.
    for item in inputs:
        if item["InputName"] != "code":
            command += [f"--{item['InputName']}", _local(item["S3Input"]["LocalPath"], root)]
    for item in outputs:
        command += [f"--{item['OutputName']}", _local(item["S3Output"]["LocalPath"], root)]
    env = process_environment(root, arguments.get("Environment", {}), environment)
    result = run_job_process(name, command, arguments, env=env, cwd=work_dir, stop=stop)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise StepFailed(failure_message(name, result), log=log)
    for item in outputs:
        stage_out(s3, Path(_local(item["S3Output"]["LocalPath"], root)), item["S3Output"]["S3Uri"])
    properties = {
        "ProcessingJobName": name,
        "ProcessingJobStatus": "Completed",
        "AppSpecification": app,
        # Property references address outputs by name: Outputs['train'].
        "ProcessingOutputConfig": {"Outputs": {item["OutputName"]: item for item in outputs}},
        "ProcessingInputs": {item["InputName"]: item for item in inputs},
    }
    return JobResult(properties=properties, log=log, seconds=time.monotonic() - started)


def read_property_file(arguments: dict[str, Any], property_file: dict[str, Any], s3: Any) -> Any:
    """A step's property file (``{"PropertyFileName", "OutputName", "FilePath"}``) read back from its output."""
    import json

    outputs = {o["OutputName"]: o for o in arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])}
    output = outputs.get(property_file["OutputName"])
    if output is None:
        raise ExecutionFailedError(f"property file {property_file['PropertyFileName']} names no output "
                                   f"{property_file['OutputName']!r}")
    bucket, prefix = _split_s3(output["S3Output"]["S3Uri"])
    key = f"{prefix.rstrip('/')}/{property_file['FilePath']}"
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
