"""Lambda functions as moto stores them, run as AWS runs them: warm execution environments, one process each.

moto keeps each function's configuration and code (the zip bytes, from ``CreateFunction`` or from the asset object
CloudFormation names). Its code is unpacked once per CodeSha256; an execution environment is a child process
(:mod:`.worker`) with the function's environment variables and its account's credentials, which stays warm between
invocations and is replaced when the function's code or configuration changes, or when it timed out or died. What it
prints goes to CloudWatch Logs (``/aws/lambda/<name>``, one stream per environment) and its Embedded Metric Format
lines become metrics, as on AWS. Layers the template names by ARN are not fetched: this checkout's virtual environment
(Powertools, pandas, pyarrow) stands in for them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelwerk.local.services._context import ensure_log_stream
from modelwerk.local.services._routing import AwsError
from modelwerk.local.services.awslambda.metrics import publish_embedded_metrics

log = logging.getLogger("modelwerk.local")

WORKER = Path(__file__).with_name("worker.py")
#: Execution environments one function version may run at once (AWS scales further; this machine is small).
MAX_ENVIRONMENTS = 3
#: The end of the log ``LogType: Tail`` returns, as on AWS.
LOG_TAIL_BYTES = 4096
#: Lambda's limit on an execution environment's initialization (importing the handler), apart from the timeout.
INIT_TIMEOUT_SECONDS = 10.0
#: How long the log lines of a finished invocation may trail its result.
_LOG_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class FunctionVersion:
    """What an execution environment runs: one function version's code and configuration."""

    account: str
    region: str
    name: str
    arn: str
    version: str
    handler: str
    runtime: str
    package_type: str
    code_sha256: str
    timeout: int
    memory_mb: int
    role: str
    environment: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        """Changes whenever the code or the configuration does: a new environment then."""
        return hashlib.sha256(json.dumps(vars(self), sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Result:
    """One invocation's answer: the payload, Lambda's ``FunctionError`` and the invocation's log."""

    payload: bytes
    function_error: str | None = None
    log_lines: list[str] = field(default_factory=list)
    version: str = "$LATEST"

    def log_tail(self) -> str:
        text = "".join(line + "\n" for line in self.log_lines).encode("utf-8")
        return base64.b64encode(text[-LOG_TAIL_BYTES:]).decode("ascii")

    def payload_json(self) -> Any:
        return json.loads(self.payload or b"null")


class Environment:
    """One execution environment: a warm worker process, its pipes, and the lines it printed."""

    def __init__(self, function: FunctionVersion, code_dir: Path, variables: dict[str, str]):
        self.function = function
        self.stream = f"{time.strftime('%Y/%m/%d')}/[{function.version}]{uuid.uuid4().hex}"
        events_read, self._events = os.pipe()
        self._results, results_write = os.pipe()
        env = {**variables, "AWS_LAMBDA_LOG_STREAM_NAME": self.stream}
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(WORKER), str(events_read), str(results_write)], env=env, cwd=code_dir,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(events_read, results_write), start_new_session=True)
        os.close(events_read)
        os.close(results_write)
        self._buffer = b""
        self._initialized = False
        self._lines: list[str] = []
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read_output, name=f"lambda-log-{function.name}", daemon=True)
        self._reader.start()

    def alive(self) -> bool:
        return self.process.poll() is None

    def _read_output(self) -> None:
        for raw in self.process.stdout:
            with self._lock:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def take_lines(self, until: str | None = None, timeout: float = _LOG_GRACE_SECONDS) -> list[str]:
        """The lines printed since the last call, after waiting (briefly) for a line starting with ``until``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while until and not any(line.startswith(until) for line in self._lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive():
                    break
                self._lock.wait(remaining)
            lines, self._lines = self._lines, []
        return lines

    def run(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one invocation and wait for its answer; None if it did not answer within ``timeout`` seconds. The
        environment's initialization (importing the handler) has its own limit, as on AWS, before that."""
        if not self._initialized:
            ready = self._read(time.monotonic() + max(INIT_TIMEOUT_SECONDS, timeout))
            if ready is None or ready.get("died"):
                return ready
            self._initialized = True
        request = {**request, "deadline": time.time() + timeout}
        os.write(self._events, (json.dumps(request) + "\n").encode("utf-8"))
        return self._read(time.monotonic() + timeout)

    def _read(self, deadline: float) -> dict[str, Any] | None:
        """The worker's next message; None past ``deadline``, ``{"died": True}`` if the worker exited."""
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._results], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self._results, 65536)
            if not chunk:
                return {"died": True}
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except OSError:
                pass
        self.process.wait(timeout=10)
        for fd in (self._events, self._results):
            try:
                os.close(fd)
            except OSError:
                pass


class _Pool:
    """The execution environments of one function version."""

    def __init__(self, function: FunctionVersion):
        self.function = function
        self.idle: list[Environment] = []
        self.count = 0
        self.closed = False
        self.condition = threading.Condition()

    def acquire(self, make: Any) -> Environment:
        with self.condition:
            while True:
                while self.idle:
                    environment = self.idle.pop()
                    if environment.alive():
                        return environment
                    self.count -= 1
                    environment.close()
                if self.count < MAX_ENVIRONMENTS:
                    self.count += 1
                    break
                self.condition.wait()
        try:
            return make()
        except Exception:
            with self.condition:
                self.count -= 1
                self.condition.notify()
            raise

    def release(self, environment: Environment, keep: bool) -> None:
        with self.condition:
            if keep and environment.alive() and not self.closed:
                self.idle.append(environment)
            else:
                self.count -= 1
                environment.close()
            self.condition.notify()

    def close(self) -> None:
        with self.condition:
            self.closed = True
            idle, self.idle = self.idle, []
            self.count -= len(idle)
        for environment in idle:
            environment.close()


class LambdaRuntime:
    """Invocations of the functions moto stores, in every account and region of the embedded AWS."""

    def __init__(self) -> None:
        self.context: Any = None
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._lock = threading.Lock()
        self._unpack_lock = threading.Lock()

    def start(self, context: Any) -> None:
        self.context = context

    def stop(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    # -- the function -----------------------------------------------------------------------------------------------
    def function(self, account: str, region: str, name: str,
                 qualifier: str | None = None) -> tuple[FunctionVersion, bytes]:
        """The stored function (by name, name:qualifier or ARN) and its code; AWS's 404 when there is none."""
        from moto.awslambda.exceptions import LambdaClientError
        from moto.awslambda.models import lambda_backends

        if name.startswith("arn:"):
            parts = name.split(":")
            account, region = parts[4], parts[3]
        try:
            fn = lambda_backends[account][region].get_function(name, qualifier)
        except LambdaClientError as error:
            raise AwsError(error.error_type, error.message, error.code) from None
        qualified = (qualifier and qualifier != "$LATEST") or ":" in name.split("function:")[-1]
        version = str(fn.version) if qualified else "$LATEST"
        function = FunctionVersion(
            account=account, region=region, name=fn.function_name,
            arn=f"arn:aws:lambda:{region}:{account}:function:{fn.function_name}", version=version,
            handler=fn.handler or "", runtime=fn.run_time or "", package_type=fn.package_type,
            code_sha256=getattr(fn, "code_digest", "") or "", timeout=int(fn.timeout), memory_mb=int(fn.memory_size),
            role=fn.role, environment=tuple(sorted((fn.environment_vars or {}).items())))
        return function, getattr(fn, "code_bytes", b"")

    def _check_runnable(self, function: FunctionVersion, code: bytes) -> None:
        if function.package_type != "Zip":
            raise AwsError("InvalidRuntimeException", f"{function.name} is a container image function; the "
                           "embedded AWS runs only .zip functions (no Docker)", 502)
        if not function.runtime.startswith("python3"):
            raise AwsError("InvalidRuntimeException", f"{function.name} runs on {function.runtime or 'no runtime'}; "
                           "the embedded AWS runs only Python functions", 502)
        if not code:
            raise AwsError("InvalidZipFileException", f"{function.name} has no code: its .zip file or S3 object "
                           "was not found when the function was created", 502)

    def _code_dir(self, function: FunctionVersion, code: bytes) -> Path:
        """The code, unpacked once per CodeSha256 under the services' state folder."""
        folder = self.context.folder("lambda", "code")
        target = folder / function.code_sha256
        with self._unpack_lock:
            if not target.is_dir():
                staging = folder / f".{function.code_sha256}.{uuid.uuid4().hex}"
                import io

                try:
                    with zipfile.ZipFile(io.BytesIO(code)) as archive:
                        archive.extractall(staging)
                except zipfile.BadZipFile as error:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise AwsError("InvalidZipFileException", f"{function.name}: the code is not a .zip file: "
                                   f"{error}", 502) from None
                staging.rename(target)
        return target

    def _variables(self, function: FunctionVersion, code_dir: Path) -> dict[str, str]:
        """The environment of an execution environment: the function's variables, its account's credentials and
        Lambda's reserved variables (which a function cannot override)."""
        # MODELWERK_EMBEDDED_AWS marks the processes of this embedded AWS, which a later 'local up' stops if it died
        inherited = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR", "MODELWERK_EMBEDDED_AWS")
                     if k in os.environ}
        return {
            **inherited, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "TZ": ":UTC",
            # No X-Ray daemon runs locally: Powertools' tracer stays off unless the function says otherwise.
            "POWERTOOLS_TRACE_DISABLED": "true",
            **dict(function.environment),
            **self.context.credentials(function.account, function.region),
            "AWS_LAMBDA_FUNCTION_NAME": function.name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": function.version,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "LAMBDA_TASK_ROOT": str(code_dir), "_HANDLER": function.handler,
        }

    def _pool(self, function: FunctionVersion) -> _Pool:
        """The pool of this version of the function; an older configuration's environments are retired."""
        with self._lock:
            pool = self._pools.get((function.arn, function.version))
            if pool is not None and pool.function.key == function.key:
                return pool
            self._pools[(function.arn, function.version)] = fresh = _Pool(function)
        if pool is not None:
            pool.close()
        return fresh

    # -- invocations ------------------------------------------------------------------------------------------------
    def invoke(self, function: FunctionVersion, code: bytes, payload: bytes, request_id: str | None = None) -> Result:
        """Run one invocation and wait for it (up to the function's timeout)."""
        self._check_runnable(function, code)
        code_dir = self._code_dir(function, code)
        pool = self._pool(function)
        environment = pool.acquire(lambda: Environment(function, code_dir, self._variables(function, code_dir)))
        request_id = request_id or str(uuid.uuid4())
        request = {"request_id": request_id, "payload": payload.decode("utf-8") or "{}", "timeout": function.timeout,
                   "account": function.account}
        keep = True
        try:
            answer = environment.run(request, function.timeout)
            if answer is None:  # the function's Timeout, enforced: the environment is discarded
                keep = False
                stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                lines = environment.take_lines(timeout=0.2)
                lines.append(f"{stamp} {request_id} Task timed out after {function.timeout:.2f} seconds")
                lines.append(f"END RequestId: {request_id}")
                result = Result(json.dumps({
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out after {function.timeout:.2f} "
                                    "seconds"}).encode(), "Unhandled", lines, function.version)
            elif answer.get("died"):
                keep = False
                environment.process.wait(timeout=10)
                lines = environment.take_lines(timeout=0.5)
                message = (f"RequestId: {request_id} Error: Runtime exited with error: exit status "
                           f"{environment.process.returncode}")
                lines.append(message)
                result = Result(json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode(),
                                "Unhandled", lines, function.version)
            else:
                lines = environment.take_lines(until=f"REPORT RequestId: {request_id}")
                body = answer["payload"] if answer["ok"] else json.dumps(answer["payload"])
                result = Result(body.encode("utf-8"), None if answer["ok"] else "Unhandled", lines, function.version)
        finally:
            pool.release(environment, keep)
        self._ship_logs(function, environment.stream, result.log_lines)
        return result

    def invoke_async(self, function: FunctionVersion, code: bytes, payload: bytes) -> str:
        """Queue an invocation (InvocationType Event) and return its request id; it runs in the background."""
        self._check_runnable(function, code)
        request_id = str(uuid.uuid4())

        def run() -> None:
            result = self.invoke(function, code, payload, request_id)
            if result.function_error:
                log.warning("asynchronous invocation of %s failed: %s", function.name,
                            result.payload.decode("utf-8", "replace")[:500])

        self.context.spawn(f"lambda-event-{function.name}", run)
        return request_id

    # -- logs and metrics -------------------------------------------------------------------------------------------
    def _ship_logs(self, function: FunctionVersion, stream: str, lines: list[str]) -> None:
        """The invocation's output into ``/aws/lambda/<name>`` and its EMF lines into CloudWatch metrics."""
        lines = [line for line in lines if line.strip()]
        if not lines:
            return
        session = self.context.session(function.account, function.region)
        try:
            publish_embedded_metrics(lines, session, endpoint_url=self.context.endpoint_url)
            logs = session.client("logs", endpoint_url=self.context.endpoint_url)
            group = f"/aws/lambda/{function.name}"
            ensure_log_stream(logs, group, stream)
            now = int(time.time() * 1000)
            logs.put_log_events(logGroupName=group, logStreamName=stream,
                                logEvents=[{"timestamp": now, "message": line} for line in lines])
        except Exception as error:  # noqa: BLE001 - lost logs never fail the invocation
            log.warning("logs of %s not shipped: %s", function.name, error)


RUNTIME = LambdaRuntime()
