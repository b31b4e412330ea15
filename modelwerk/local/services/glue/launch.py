"""What one job run executes: the job's script and files staged from S3, the arguments it sees, its environment.

As on Glue, the script gets the run's arguments (the job's DefaultArguments, overridden by the run's Arguments, then
the job's NonOverridableArguments) except Glue's own, which Glue consumes (``--job-*``, ``--enable-*``,
``--extra-*``, ...). ``--extra-py-files`` go on the script's import path, ``--extra-files`` into its working folder,
``--conf`` to Spark. Spark runs in local mode (``local[*]`` on loopback) and, since s3a cannot be had offline, the
script is told so with ``--local --work_dir <folder>``: a script reads and writes S3 with boto3 there and keeps its
Spark files in that folder (``glue_jobs/prepare_curated/job.py`` does).
"""

from __future__ import annotations

import os
import shlex
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Glue's own job parameters (Glue consumes them; the script never sees them): these names and these prefixes.
SYSTEM_ARGUMENTS = ("--TempDir", "--conf", "--scriptLocation", "--class", "--user-jars-first", "--executor-cores",
                    "--spark-event-logs-path", "--python-modules-installer-option", "--auto-scale-within-microbatch",
                    "--customer-driver-env-vars", "--customer-executor-env-vars")
SYSTEM_ARGUMENT_PREFIXES = ("--job-", "--enable-", "--extra-", "--datalake-", "--additional-", "--continuous-log-",
                            "--write-shuffle-")
#: Spark local mode, on loopback, without its web UI: what every PySpark session of the script starts with.
SPARK_SUBMIT = ("--master", "local[*]", "--conf", "spark.driver.host=127.0.0.1",
                "--conf", "spark.driver.bindAddress=127.0.0.1", "--conf", "spark.ui.enabled=false")
#: Job types a local process runs: Spark ETL, Python shell, Spark streaming (until stopped or timed out).
RUNNABLE_COMMANDS = ("glueetl", "pythonshell", "gluestreaming")


class LaunchError(Exception):
    """The run cannot start: the job's script or files are missing, or its type cannot run here."""


@dataclass(frozen=True)
class Launch:
    command: list[str]
    env: dict[str, str]
    cwd: Path
    notes: tuple[str, ...] = ()  # what the run's error log should say about arguments not applied locally


def run_arguments(job: dict[str, Any], arguments: dict[str, str] | None) -> dict[str, str]:
    """The arguments a run gets: the job's defaults, the run's own over them, the job's non-overridable last."""
    return {**(job.get("DefaultArguments") or {}), **(arguments or {}), **(job.get("NonOverridableArguments") or {})}


def script_arguments(arguments: dict[str, str]) -> list[str]:
    """``--name value`` pairs for the script: Glue's own parameters left out."""
    argv: list[str] = []
    for name, value in arguments.items():
        if name not in SYSTEM_ARGUMENTS and not name.startswith(SYSTEM_ARGUMENT_PREFIXES):
            argv += [name, value]
    return argv


def _split_s3(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise LaunchError(f"{url!r} is not an s3:// URL")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def _download(s3: Any, url: str, folder: Path) -> Path:
    bucket, key = _split_s3(url)
    target = folder / Path(key).name
    try:
        s3.download_file(bucket, key, str(target))
    except Exception as error:  # noqa: BLE001 - botocore's ClientError; the run fails with its reason
        raise LaunchError(f"cannot read {url}: {error}") from None
    return target


def _urls(value: str | None) -> list[str]:
    return [url.strip() for url in (value or "").split(",") if url.strip()]


def prepare(s3: Any, job: dict[str, Any], arguments: dict[str, str], work: Path,
            credentials: dict[str, str]) -> Launch:
    """Stage the job's script and files into ``work`` and say how to run it (``s3``: a client of the caller)."""
    command = job.get("Command") or {}
    kind = command.get("Name", "glueetl")
    if kind not in RUNNABLE_COMMANDS:
        raise LaunchError(f"the embedded AWS runs {', '.join(RUNNABLE_COMMANDS)} jobs locally, not {kind!r} jobs")
    if not command.get("ScriptLocation"):
        raise LaunchError("the job has no Command.ScriptLocation")
    script = _download(s3, command["ScriptLocation"], work)
    import_path = [str(work)]
    for url in _urls(arguments.get("--extra-py-files")):
        file = _download(s3, url, work)
        if zipfile.is_zipfile(file):
            import_path.append(str(file))
    for url in _urls(arguments.get("--extra-files")):
        _download(s3, url, work)
    spark_submit = list(SPARK_SUBMIT)
    if arguments.get("--conf"):
        spark_submit += ["--conf", *shlex.split(arguments["--conf"])]
    notes = tuple(f"{name} is not applied by the embedded AWS: the run uses the server's Python environment"
                  for name in ("--additional-python-modules", "--python-modules-installer-option")
                  if name in arguments)
    (work / "tmp").mkdir(exist_ok=True)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AWS_") and name not in ("PYTHONPATH", "PYSPARK_SUBMIT_ARGS")}
    env.update(credentials)
    env.update({
        "PYTHONPATH": os.pathsep.join(import_path),
        "PYTHONUNBUFFERED": "1",  # lines reach the job's log streams as they are printed
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_SUBMIT_ARGS": shlex.join([*spark_submit, "pyspark-shell"]),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "TMPDIR": str(work / "tmp"),
    })
    argv = [sys.executable, str(script), *script_arguments(arguments), "--local", "--work_dir", str(work / "spark")]
    return Launch(command=argv, env=env, cwd=work, notes=notes)
