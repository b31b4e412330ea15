"""Run a deployed Lambda function in this process, as AWS would run it: its handler, its code asset, its environment.

The function is found through the local deployment record (the template that was deployed names the handler and
the code asset); its environment comes back from the embedded Lambda service, resolved as CloudFormation resolved
it. Nothing here imports ``lambdas/``: the code is loaded from the synthesized asset folder, once per function.

A function of another account than dev's (staging's or prod's drift monitor) runs with that account's credentials,
as Lambda gives a function its role's: in ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` and,
since handlers call ``boto3.client(...)``, as boto3's default session while the handler runs. What it prints (logs,
metrics) goes to that account's CloudWatch.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import threading
import time
import uuid
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import boto3

from modelwerk.errors import LocalModeError, NotFoundError
from modelwerk.local import deployment_record

_environment_lock = threading.Lock()


@dataclass(frozen=True)
class LocalFunction:
    name: str
    handler: str
    asset_dir: Path
    environment: dict[str, str]
    timeout: int
    memory_mb: int


@dataclass
class LambdaContext:
    """The attributes Powertools and handlers read from a Lambda context (the local runner's, and the handler tests')."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str
    region: str
    account: str

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_seconds * 1000


def _stage_session(stage: str) -> boto3.Session | None:
    """The session of the stage's account; None for dev, whose credentials are this process's own."""
    if stage == "dev":
        return None
    from modelwerk import local

    return local.session(stage)


def find_function(name: str, stage: str = "dev", session: boto3.Session | None = None) -> LocalFunction:
    record = deployment_record(stage)
    for stack in record["stacks"]:
        template = json.loads(Path(stack["template_file"]).read_text(encoding="utf-8"))
        for logical_id, resource in stack["resources"].items():
            if resource["type"] != "AWS::Lambda::Function" or resource["physical_id"] != name:
                continue
            definition = template["Resources"][logical_id]
            asset_dir = _code_asset(definition, stack)
            if asset_dir is None:
                raise LocalModeError(f"function {name} has no code asset in the cloud assembly; local mode runs "
                                     "functions from their synthesized code assets")
            config = (session or boto3).client("lambda").get_function_configuration(FunctionName=name)
            return LocalFunction(
                name=name,
                handler=definition["Properties"]["Handler"],
                asset_dir=asset_dir,
                environment=config.get("Environment", {}).get("Variables", {}),
                timeout=int(config.get("Timeout", 3)),
                memory_mb=int(config.get("MemorySize", 128)),
            )
    raise NotFoundError(f"no function named {name!r} is deployed in the local {stage} stage; run 'modelwerk local up'")


def _code_asset(definition: dict[str, Any], stack: dict[str, Any]) -> Path | None:
    """The folder of a function's code: the asset whose published object key the template's Code names."""
    code = definition["Properties"].get("Code", {})
    key = code.get("S3Key")
    if not key or not stack.get("assets_file"):
        return None
    assets_file = Path(stack["assets_file"])
    manifest = json.loads(assets_file.read_text(encoding="utf-8"))
    for asset in manifest.get("files", {}).values():
        if any(d.get("objectKey") == key for d in asset["destinations"].values()):
            return assets_file.parent / asset["source"]["path"]
    return None


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    with _environment_lock:
        saved = {k: os.environ.get(k) for k in variables}
        os.environ.update(variables)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


_loaded: dict[tuple[str, Path], Any] = {}


@contextmanager
def _default_session(session: boto3.Session | None) -> Iterator[None]:
    """``boto3.client(...)`` in the handler answers with ``session``'s account (boto3 keeps its default session and its
    credentials once made: environment variables alone would not reach it)."""
    if session is None:
        yield
        return
    saved = boto3.DEFAULT_SESSION
    boto3.DEFAULT_SESSION = session
    try:
        yield
    finally:
        boto3.DEFAULT_SESSION = saved


def _credentials(session: boto3.Session | None) -> dict[str, str]:
    if session is None:
        return {}
    frozen = session.get_credentials().get_frozen_credentials()
    variables = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        variables["AWS_SESSION_TOKEN"] = frozen.token
    return variables


def _load_handler(function: LocalFunction):
    """The handler, imported once per function (two functions from one asset, dev's and prod's drift monitor, are
    two sandboxes: their module-scope loggers and metrics must not be shared)."""
    module_name, _, attribute = function.handler.rpartition(".")
    path = function.asset_dir / (module_name.replace(".", "/") + ".py")
    key = (function.name, path)
    if key not in _loaded:
        if not path.is_file():
            raise LocalModeError(f"{function.name}: handler file {path} is missing from the code asset")
        unique = f"_modelwerk_lambda_{function.name.replace('-', '_')}_{module_name.replace('.', '_')}"
        before = set(sys.modules)
        sys.path.insert(0, str(function.asset_dir))
        try:
            spec = importlib.util.spec_from_file_location(unique, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[unique] = module
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(function.asset_dir))
        # Sibling modules of this asset must not shadow another function's modules of the same name.
        for name in set(sys.modules) - before - {unique}:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(str(function.asset_dir)):
                del sys.modules[name]
        _loaded[key] = getattr(module, attribute)
    return _loaded[key]


def invoke(name: str, event: dict[str, Any], *, stage: str = "dev", environment: dict[str, str] | None = None) -> Any:
    """Invoke the deployed function ``name`` with ``event`` and return what its handler returns.

    ``environment`` adds variables the local runtime needs on top of the deployed ones (a role to reach another
    account through, where AWS would honour a resource policy that the embedded AWS does not). ``stage`` is the
    local stage that deployed the function: it runs in that stage's account."""
    session = _stage_session(stage)
    function = find_function(name, stage, session)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    account = (session or boto3).client("sts").get_caller_identity()["Account"]
    context = LambdaContext(function.name, function.memory_mb, function.timeout, str(uuid.uuid4()), region, account)
    runtime_env = {
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "_HANDLER": function.handler,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    output = _outputs.setdefault(function.name, io.StringIO())
    variables = {**function.environment, **(environment or {}), **runtime_env, **_credentials(session)}
    try:
        with _environment(variables), _default_session(session), redirect_stdout(output), redirect_stderr(output):
            handler = _load_handler(function)  # module-scope Powertools objects read the environment at import
            return handler(event, context)
    finally:
        _ship_logs(function.name, context.aws_request_id, output, session)


#: One output stream per function: what its handler prints (logs, EMF metrics) goes to CloudWatch Logs, as on AWS.
#: The same stream object every time, because loggers created at import keep a reference to it.
_outputs: dict[str, io.StringIO] = {}


def _ship_logs(function_name: str, request_id: str, output: io.StringIO,
               session: boto3.Session | None = None) -> None:
    lines = [line for line in output.getvalue().splitlines() if line.strip()]
    output.seek(0)
    output.truncate()
    if not lines:
        return
    publish_embedded_metrics(lines, session)
    logs = (session or boto3).client("logs")
    group = f"/aws/lambda/{function_name}"
    stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{request_id.replace('-', '')}"
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": now, "message": line} for line in lines])


def publish_embedded_metrics(lines: list[str], session: boto3.Session | None = None) -> int:
    """Metrics in CloudWatch's embedded metric format (what Powertools prints) put into the embedded CloudWatch (of
    ``session``'s account; default this process's), as CloudWatch Logs extracts them on AWS; returns how many data
    points were put."""
    from datetime import datetime, timezone

    data: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if '"_aws"' not in line:
            continue
        try:
            document = json.loads(line)
            meta = document["_aws"]
            when = datetime.fromtimestamp(int(meta["Timestamp"]) / 1000, tz=timezone.utc)
            directives = meta["CloudWatchMetrics"]
        except (ValueError, KeyError, TypeError):
            continue
        for directive in directives:
            for dimension_set in directive.get("Dimensions") or [[]]:
                dimensions = [{"Name": name, "Value": str(document[name])} for name in dimension_set
                              if name in document]
                for metric in directive.get("Metrics", []):
                    values = document.get(metric["Name"])
                    for value in values if isinstance(values, list) else [values]:
                        if isinstance(value, (int, float)):
                            data.setdefault(directive["Namespace"], []).append({
                                "MetricName": metric["Name"], "Dimensions": dimensions, "Timestamp": when,
                                "Value": float(value), "Unit": metric.get("Unit") or "None"})
    cloudwatch = (session or boto3).client("cloudwatch") if data else None
    for namespace, points in data.items():
        for start in range(0, len(points), 1000):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=points[start:start + 1000])
    return sum(len(points) for points in data.values())
