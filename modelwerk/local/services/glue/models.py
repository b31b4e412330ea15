"""Glue job runs: the job moto stores, run as a local process, with Glue's states, logs, events and records.

A run is a ``JobRun`` (botocore's shape) kept as JSON under the server's ``glue/runs/`` folder, so it outlives the
thread that ran it and the server. Its process is the job's script (:mod:`.launch`) with the caller's credentials;
what it prints goes to CloudWatch Logs (``/aws-glue/jobs/output`` and ``/aws-glue/jobs/error``, one stream per run,
as Glue writes them), its end is Glue's ``Glue Job State Change`` event on the account's default bus.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from modelwerk.local.services._context import ensure_log_stream
from modelwerk.local.services.glue import exceptions, launch

log = logging.getLogger("modelwerk.local.glue")

LOG_GROUP = "/aws-glue/jobs"
OUTPUT_LOG_GROUP = f"{LOG_GROUP}/output"
ERROR_LOG_GROUP = f"{LOG_GROUP}/error"
#: States of a run that holds one of the job's concurrent slots; the others are final.
ACTIVE_STATES = ("STARTING", "RUNNING", "STOPPING", "WAITING")
#: Glue's default timeout of a job run, in minutes (48 hours).
DEFAULT_TIMEOUT_MINUTES = 2880
#: DPUs of one worker, for MaxCapacity and AllocatedCapacity of worker-typed jobs.
WORKER_DPUS = {"G.025X": 0.25, "G.1X": 1.0, "G.2X": 2.0, "G.4X": 4.0, "G.8X": 8.0, "Z.2X": 2.0}
#: Glue's capacity of a job that names neither workers nor capacity (glueetl: 10 DPUs; pythonshell: 1/16 DPU).
DEFAULT_CAPACITY = {"pythonshell": 0.0625}
#: How a run's end reads in its event (severity, message; FAILED carries the run's ErrorMessage).
EVENT_OUTCOMES = {"SUCCEEDED": ("INFO", "Job run succeeded"), "STOPPED": ("INFO", "Job run stopped"),
                  "TIMEOUT": ("WARN", "Job run timed out"), "FAILED": ("ERROR", "")}
_TIMESTAMPS = ("StartedOn", "LastModifiedOn", "CompletedOn")
#: Seconds between the polls of a running process (exit, stop, timeout) and between log shipments.
_POLL_SECONDS = 0.5
_SHIP_SECONDS = 2.0
#: Seconds a stopped process gets to end before it is killed.
_STOP_GRACE_SECONDS = 10.0
_ERROR_MESSAGE_CHARS = 2048


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(when: datetime) -> str:
    return when.isoformat()


class _LogStreams:
    """What the script prints, shipped to its run's output and error streams every few seconds."""

    def __init__(self, client: Any, run_id: str):
        self.client = client
        self.run_id = run_id
        self.pending: dict[str, list[dict[str, Any]]] = {OUTPUT_LOG_GROUP: [], ERROR_LOG_GROUP: []}
        self.created: set[str] = set()
        self.lock = threading.Lock()

    def add(self, group: str, line: str) -> None:
        if line.strip():
            with self.lock:
                self.pending[group].append({"timestamp": int(time.time() * 1000), "message": line})

    def ship(self) -> None:
        for group in self.pending:
            with self.lock:
                events, self.pending[group] = self.pending[group], []
            if not events:
                continue
            try:
                self._stream(group)
                for start in range(0, len(events), 1000):
                    self.client.put_log_events(logGroupName=group, logStreamName=self.run_id,
                                               logEvents=events[start:start + 1000])
            except Exception as error:  # noqa: BLE001 - as on Glue, a lost log line never fails the run
                log.warning("log lines of job run %s not shipped to %s: %s", self.run_id, group, error)

    def _stream(self, group: str) -> None:
        if group in self.created:
            return
        ensure_log_stream(self.client, group, self.run_id)
        self.created.add(group)


class _Run:
    """One run: its record, and while it runs, its process and what was asked of it."""

    def __init__(self, account: str, region: str, record: dict[str, Any], path: Path):
        self.account = account
        self.region = region
        self.record = record
        self.path = path
        self.process: subprocess.Popen[str] | None = None
        self.stop_requested = threading.Event()

    @property
    def state(self) -> str:
        return self.record["JobRunState"]

    def save(self) -> None:
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.record, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, self.path)


def error_message(stderr: list[str], returncode: int) -> str:
    """The run's ErrorMessage as Glue gives it: the script's exception (its last traceback's final lines), else the
    last lines it wrote on stderr, else its exit code."""
    lines = [line.rstrip() for line in stderr if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        tail = [line for line in lines[starts[-1] + 1:] if not line.startswith((" ", "\t"))]
        message = "\n".join(tail)
    else:
        message = "\n".join(lines[-8:])
    message = message or f"Command failed with exit code {returncode}"
    return message if len(message) <= _ERROR_MESSAGE_CHARS else message[:_ERROR_MESSAGE_CHARS - 3] + "..."


def _capacity(job: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """WorkerType, NumberOfWorkers, MaxCapacity and AllocatedCapacity of a run: the run's settings, else the job's."""
    worker_type = params.get("WorkerType") or job.get("WorkerType")
    workers = params.get("NumberOfWorkers") or job.get("NumberOfWorkers")
    capacity = params.get("MaxCapacity") or params.get("AllocatedCapacity")
    if capacity is None and worker_type in WORKER_DPUS and workers:
        capacity = WORKER_DPUS[worker_type] * int(workers)
    if capacity is None:
        capacity = job.get("MaxCapacity") or job.get("AllocatedCapacity")
    if capacity is None:
        capacity = DEFAULT_CAPACITY.get((job.get("Command") or {}).get("Name", "glueetl"), 10.0)
    settings = {"MaxCapacity": float(capacity), "AllocatedCapacity": int(capacity)}
    if worker_type:
        settings["WorkerType"] = worker_type
    if workers:
        settings["NumberOfWorkers"] = int(workers)
    return settings


class JobRuns:
    """Every account's job runs in this server: started, watched, stopped, recorded."""

    def __init__(self) -> None:
        self.context: Any = None
        self._runs: dict[str, _Run] = {}
        self._lock = threading.RLock()

    # -- life of the service ----------------------------------------------------------------------------------------
    def start(self, context: Any) -> None:
        """Load the recorded runs; a run the server was running when it last stopped did not finish."""
        self.context = context
        self._runs = {}
        for path in sorted(self._folder().glob("*/*/*/*.json")):
            account, region = path.parts[-4], path.parts[-3]
            run = _Run(account, region, json.loads(path.read_text(encoding="utf-8")), path)
            if run.state in ACTIVE_STATES:
                self._end(run, "FAILED", "the embedded AWS stopped during this run", emit=False)
            self._runs[run.record["Id"]] = run

    def stop(self) -> None:
        """End the runs still running: their processes stop with the server."""
        with self._lock:
            running = [run for run in self._runs.values() if run.process is not None]
        for run in running:
            _terminate(run.process)

    def _folder(self) -> Path:
        return self.context.folder("glue", "runs")

    # -- the API ----------------------------------------------------------------------------------------------------
    def start_job_run(self, account: str, region: str, params: dict[str, Any]) -> str:
        job_name = params["JobName"]
        job = _job(account, region, job_name)
        previous = self._runs.get(params.get("JobRunId") or "")
        limit = int((job.get("ExecutionProperty") or {}).get("MaxConcurrentRuns") or 1)
        timeout = params.get("Timeout") or job.get("Timeout") or DEFAULT_TIMEOUT_MINUTES
        if int(timeout) < 1:
            raise exceptions.invalid_input("Timeout must be at least 1 minute")
        with self._lock:
            active = [r for r in self._of_job(account, region, job_name) if r.state in ACTIVE_STATES]
            if len(active) >= limit:
                if params.get("JobRunQueuingEnabled"):
                    raise exceptions.invalid_input(
                        f"job run queuing is not run by the embedded AWS: {job_name} already has {len(active)} "
                        f"of {limit} concurrent runs; start the run when one has ended")
                raise exceptions.concurrent_runs_exceeded(job_name)
            run = self._new_run(account, region, job, params, int(timeout), previous)
        self.context.spawn(f"glue-{run.record['Id']}", self._execute, run, job, params.get("Arguments") or {})
        return run.record["Id"]

    def get_job_run(self, account: str, region: str, job_name: str, run_id: str) -> dict[str, Any]:
        _job(account, region, job_name)
        run = self._runs.get(run_id)
        if run is None or (run.account, run.region, run.record["JobName"]) != (account, region, job_name):
            raise exceptions.job_run_not_found(job_name, run_id)
        with self._lock:
            return _answer(run)

    def get_job_runs(self, account: str, region: str, job_name: str) -> list[dict[str, Any]]:
        """The job's runs, newest first."""
        _job(account, region, job_name)
        with self._lock:
            runs = sorted(self._of_job(account, region, job_name), key=lambda r: r.record["StartedOn"], reverse=True)
            return [_answer(run) for run in runs]

    def batch_stop_job_run(self, account: str, region: str, job_name: str,
                           run_ids: list[str]) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
        """Ask each run's process to stop (state STOPPING, then STOPPED); the runs that cannot be stopped, with why."""
        stopped: list[dict[str, str]] = []
        errors: list[dict[str, Any]] = []
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is None or (run.account, run.region, run.record["JobName"]) != (account, region, job_name):
                errors.append(_stop_error(job_name, run_id, "EntityNotFoundException",
                                          f"Job run {run_id} of job {job_name} not found."))
                continue
            with self._lock:
                if run.state not in ACTIVE_STATES:
                    errors.append(_stop_error(job_name, run_id, "InvalidInputException",
                                              f"Job run {run_id} has already ended: {run.state}"))
                    continue
                run.stop_requested.set()
                if run.state != "STOPPING":
                    self._set(run, "STOPPING")
            stopped.append({"JobName": job_name, "JobRunId": run_id})
        return stopped, errors

    # -- a run ------------------------------------------------------------------------------------------------------
    def _of_job(self, account: str, region: str, job_name: str) -> list[_Run]:
        with self._lock:
            return [run for run in self._runs.values()
                    if (run.account, run.region, run.record["JobName"]) == (account, region, job_name)]

    def _new_run(self, account: str, region: str, job: dict[str, Any], params: dict[str, Any], timeout: int,
                 previous: _Run | None) -> _Run:
        now = _iso(_now())
        run_id = f"jr_{secrets.token_hex(32)}"
        record: dict[str, Any] = {
            "Id": run_id,
            "Attempt": 0,
            "JobName": job["Name"],
            "JobMode": "SCRIPT",
            "StartedOn": now,
            "LastModifiedOn": now,
            "JobRunState": "STARTING",
            "Arguments": dict(params.get("Arguments") or {}),
            "PredecessorRuns": [],
            "ExecutionTime": 0,
            "Timeout": timeout,
            "LogGroupName": LOG_GROUP,
            "ExecutionClass": params.get("ExecutionClass") or job.get("ExecutionClass") or "STANDARD",
            **_capacity(job, params),
        }
        if previous is not None:
            record["PreviousRunId"] = previous.record["Id"]
            record["Attempt"] = previous.record.get("Attempt", 0) + 1
        if job.get("GlueVersion"):
            record["GlueVersion"] = job["GlueVersion"]
        security = params.get("SecurityConfiguration") or job.get("SecurityConfiguration")
        if security:
            record["SecurityConfiguration"] = security
        notification = params.get("NotificationProperty") or job.get("NotificationProperty")
        if notification:
            record["NotificationProperty"] = notification
        folder = self._folder() / account / region / quote(job["Name"], safe="")
        folder.mkdir(parents=True, exist_ok=True)
        run = _Run(account, region, record, folder / f"{run_id}.json")
        run.save()
        self._runs[run_id] = run
        return run

    def _set(self, run: _Run, state: str, **fields: Any) -> None:
        with self._lock:
            run.record.update(JobRunState=state, LastModifiedOn=_iso(_now()), **fields)
            run.save()

    def _end(self, run: _Run, state: str, error: str | None = None, *, running_since: float | None = None,
             emit: bool = True) -> None:
        fields: dict[str, Any] = {"CompletedOn": _iso(_now())}
        if running_since is not None:
            fields["ExecutionTime"] = int(round(time.monotonic() - running_since))
        if error:
            fields["ErrorMessage"] = error
        self._set(run, state, **fields)
        if emit:
            severity, message = EVENT_OUTCOMES[state]
            self.context.emit_event(run.account, run.region, source="aws.glue", detail_type="Glue Job State Change",
                                    detail={"jobName": run.record["JobName"], "severity": severity, "state": state,
                                            "jobRunId": run.record["Id"], "message": message or error or ""})

    def _execute(self, run: _Run, job: dict[str, Any], own_arguments: dict[str, str]) -> None:
        """Stage, run and watch the script until it ends, is stopped or times out; record and announce the end."""
        work = self.context.folder("glue", "work", run.record["Id"])
        streams: _LogStreams | None = None
        try:
            streams = _LogStreams(self.context.client("logs", run.account, run.region), run.record["Id"])
            state, error, running_since = self._run_process(run, job, own_arguments, work, streams)
        except launch.LaunchError as failure:
            state, error, running_since = "FAILED", str(failure), None
        except Exception as failure:  # noqa: BLE001 - a run that breaks here ends FAILED with why, never hangs
            log.exception("job run %s failed to run", run.record["Id"])
            state, error, running_since = "FAILED", f"the embedded AWS could not run the job: {failure}", None
        finally:
            if streams is not None:
                streams.ship()
            shutil.rmtree(work, ignore_errors=True)
        self._end(run, state, error, running_since=running_since)
        retries = int(job.get("MaxRetries") or 0)
        if state == "FAILED" and run.record["Attempt"] < retries and not self.context.stopping.is_set():
            self._retry(run, job, own_arguments)

    def _run_process(self, run: _Run, job: dict[str, Any], own_arguments: dict[str, str], work: Path,
                     streams: _LogStreams) -> tuple[str, str | None, float | None]:
        if run.stop_requested.is_set():
            return "STOPPED", None, None
        s3 = self.context.client("s3", run.account, run.region)
        arguments = launch.run_arguments(job, own_arguments)
        how = launch.prepare(s3, job, arguments, work, self.context.credentials(run.account, run.region))
        for note in how.notes:
            streams.add(ERROR_LOG_GROUP, note)
        with self._lock:
            if run.stop_requested.is_set():
                return "STOPPED", None, None
            run.process = subprocess.Popen(how.command, env=how.env, cwd=how.cwd, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                           errors="replace", start_new_session=True)
            self._set(run, "RUNNING")
        running_since = time.monotonic()
        stderr_tail: deque[str] = deque(maxlen=200)
        readers = [threading.Thread(target=_read, args=(run.process.stdout, streams, OUTPUT_LOG_GROUP, None),
                                    daemon=True),
                   threading.Thread(target=_read, args=(run.process.stderr, streams, ERROR_LOG_GROUP, stderr_tail),
                                    daemon=True)]
        for reader in readers:
            reader.start()
        deadline = running_since + run.record["Timeout"] * 60
        outcome: str | None = None
        last_ship = running_since
        while run.process.poll() is None:
            if outcome is None:
                if run.stop_requested.is_set():
                    outcome = "STOPPED"
                elif self.context.stopping.is_set():
                    outcome = "SERVER_STOPPED"
                elif time.monotonic() > deadline:
                    outcome = "TIMEOUT"
                if outcome is not None:
                    threading.Thread(target=_terminate, args=(run.process,), daemon=True).start()
            if time.monotonic() - last_ship > _SHIP_SECONDS:
                streams.ship()
                last_ship = time.monotonic()
            time.sleep(_POLL_SECONDS)
        for reader in readers:
            reader.join(timeout=10)
        returncode = run.process.returncode
        with self._lock:
            run.process = None
        if run.stop_requested.is_set():
            return "STOPPED", None, running_since
        if outcome == "TIMEOUT":
            return "TIMEOUT", f"Job run exceeded its timeout of {run.record['Timeout']} minutes", running_since
        if outcome == "SERVER_STOPPED" or (returncode != 0 and self.context.stopping.is_set()):
            return "FAILED", "the embedded AWS stopped during this run", running_since
        if returncode == 0:
            return "SUCCEEDED", None, running_since
        return "FAILED", error_message(list(stderr_tail), returncode), running_since

    def _retry(self, failed: _Run, job: dict[str, Any], own_arguments: dict[str, str]) -> None:
        """Glue's MaxRetries: a failed run starts again as the next attempt, with the same arguments."""
        params = {"JobName": job["Name"], "Arguments": own_arguments, "Timeout": failed.record["Timeout"]}
        with self._lock:
            run = self._new_run(failed.account, failed.region, job, params, failed.record["Timeout"], failed)
        self._execute(run, job, own_arguments)


def _job(account: str, region: str, job_name: str) -> dict[str, Any]:
    """The job as moto stores it (``GetJob``'s ``Job``)."""
    from moto.glue.models import glue_backends

    job = glue_backends[account][region].jobs.get(job_name)
    if job is None:
        raise exceptions.job_not_found(job_name)
    return job.as_dict()


def _answer(run: _Run) -> dict[str, Any]:
    """The record in botocore's JobRun shape: timestamps as datetimes, nothing empty."""
    record = {name: value for name, value in run.record.items() if value is not None}
    for name in _TIMESTAMPS:
        if name in record:
            record[name] = datetime.fromisoformat(record[name])
    return record


def _stop_error(job_name: str, run_id: str, code: str, message: str) -> dict[str, Any]:
    return {"JobName": job_name, "JobRunId": run_id, "ErrorDetail": {"ErrorCode": code, "ErrorMessage": message}}


def _read(pipe: Any, streams: _LogStreams, group: str, tail: deque[str] | None) -> None:
    for line in pipe:
        line = line.rstrip("\n")
        streams.add(group, line)
        if tail is not None:
            tail.append(line)
    pipe.close()


def _terminate(process: subprocess.Popen[str] | None) -> None:
    """SIGTERM to the run's process group (the script and its Spark JVM), SIGKILL if it has not ended in time."""
    if process is None or process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=_STOP_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


#: The runs of this server (one per process, like moto's backends).
job_runs = JobRuns()
