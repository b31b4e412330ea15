"""The runtime inside one Lambda execution environment: import the handler once, then run invocations as they come.

Started by the embedded Lambda service as ``python -P worker.py EVENTS_FD RESULTS_FD`` with the function's code folder
first on ``sys.path`` and the function's environment. It reads one JSON line per invocation from ``EVENTS_FD`` and
writes one JSON line per result to ``RESULTS_FD`` (and a first one once the handler is imported); what the handler
prints goes to stdout, framed by Lambda's ``START``/``END``/``REPORT`` lines, which the service ships to CloudWatch
Logs. This module imports nothing of the
project (the code folder's ``modelwerk/core`` must be the one the function imports), only the standard library.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any


@dataclass
class LambdaContext:
    """The Lambda context object: the attributes Powertools and handlers read (also the handler tests' fake)."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str
    region: str
    account: str
    function_version: str = "$LATEST"
    log_stream_name: str = ""
    #: Epoch seconds by which the invocation must end (None: the full timeout from now).
    deadline: float | None = None
    identity: Any = None
    client_context: Any = None

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        if self.deadline is None:
            return self.timeout_seconds * 1000
        return max(0, int((self.deadline - time.time()) * 1000))


def _error(error_type: str, message: str, trace: list[str] | None = None) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": "", "stackTrace": trace or []}


def _load_handler(spec: str) -> tuple[Any, dict[str, Any] | None]:
    """The handler named by ``module.attribute``, or Lambda's own error for a module or handler that is missing."""
    module_name, _, attribute = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - reported as the runtime reports it, on every invocation
        traceback.print_exc()
        return None, _error("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}")
    handler = getattr(module, attribute, None)
    if handler is None:
        return None, _error("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'")
    return handler, None


def _run(handler: Any, payload: str, context: LambdaContext) -> dict[str, Any]:
    """One invocation: the handler's result as JSON, or the error the runtime reports (unhandled, unserializable)."""
    try:
        result = handler(json.loads(payload), context)
    except Exception as error:  # noqa: BLE001 - an unhandled error is the invocation's answer, as on AWS
        trace = traceback.format_tb(error.__traceback__.tb_next)  # the function's frames, not this runtime's
        print(f"[ERROR] {type(error).__name__}: {error}\nTraceback (most recent call last):\n" + "".join(trace),
              flush=True)
        return {"ok": False, "payload": {"errorMessage": str(error), "errorType": type(error).__name__,
                                         "requestId": context.aws_request_id, "stackTrace": trace}}
    try:
        return {"ok": True, "payload": json.dumps(result)}
    except (TypeError, ValueError) as error:
        message = f"Unable to marshal response: {error}"
        print(f"[ERROR] Runtime.MarshalError: {message}", flush=True)
        return {"ok": False, "payload": {**_error("Runtime.MarshalError", message),
                                         "requestId": context.aws_request_id}}


def main() -> None:
    events = os.fdopen(int(sys.argv[1]), "r", encoding="utf-8")
    results = os.fdopen(int(sys.argv[2]), "w", encoding="utf-8")
    sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
    os.chdir(os.environ["LAMBDA_TASK_ROOT"])
    handler, init_error = _load_handler(os.environ["_HANDLER"])
    sys.stdout.flush()
    results.write(json.dumps({"initialized": init_error is None}) + "\n")
    results.flush()
    for line in events:
        request = json.loads(line)
        request_id = request["request_id"]
        version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        print(f"START RequestId: {request_id} Version: {version}", flush=True)
        started = time.monotonic()
        os.environ["_X_AMZN_TRACE_ID"] = request.get("trace_id", "")
        context = LambdaContext(
            function_name=os.environ["AWS_LAMBDA_FUNCTION_NAME"],
            memory_limit_in_mb=int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]),
            timeout_seconds=int(request["timeout"]), aws_request_id=request_id, region=os.environ["AWS_REGION"],
            account=request["account"], function_version=version,
            log_stream_name=os.environ["AWS_LAMBDA_LOG_STREAM_NAME"], deadline=request["deadline"])
        if init_error is not None:
            answer = {"ok": False, "payload": {**init_error, "requestId": request_id}}
        else:
            answer = _run(handler, request["payload"], context)
        sys.stdout.flush()
        sys.stderr.flush()
        elapsed = (time.monotonic() - started) * 1000
        print(f"END RequestId: {request_id}", flush=True)
        print(f"REPORT RequestId: {request_id}\tDuration: {elapsed:.2f} ms\tBilled Duration: {int(elapsed) + 1} ms"
              f"\tMemory Size: {context.memory_limit_in_mb} MB", flush=True)
        results.write(json.dumps({"request_id": request_id, **answer}, default=str) + "\n")
        results.flush()


if __name__ == "__main__":
    main()
