"""Lambda in local mode, for the code that still calls it by name: the embedded Lambda runs the functions.

The functions run in the embedded AWS (:mod:`modelwerk.local.services.awslambda`) as AWS runs them; :func:`invoke`
is a ``lambda:Invoke`` through boto3 in the stage's account. :class:`LambdaContext` is the runtime's context object
(the handler tests use it as their fake); :func:`publish_embedded_metrics` turns Embedded Metric Format lines into
CloudWatch metrics, as CloudWatch Logs does on AWS.
"""

from __future__ import annotations

import json
from typing import Any

from modelwerk.errors import ExecutionFailedError
from modelwerk.local.services.awslambda.metrics import publish_embedded_metrics
from modelwerk.local.services.awslambda.worker import LambdaContext

__all__ = ["LambdaContext", "invoke", "publish_embedded_metrics"]


def invoke(name: str, event: dict[str, Any], *, stage: str = "dev", environment: dict[str, str] | None = None) -> Any:
    """Invoke the deployed function ``name`` of the local ``stage`` with ``event`` and return its result.

    ``environment`` adds variables to the function's configuration first (a role to reach another account through,
    where AWS would honour a resource policy that the embedded AWS does not). A function error is raised as
    :class:`ExecutionFailedError` with the runtime's error type and message."""
    import boto3
    from botocore.config import Config

    from modelwerk import local

    session = boto3.Session() if stage == "dev" else local.session(stage)
    client = session.client("lambda", config=Config(read_timeout=960, retries={"max_attempts": 1}))
    if environment:
        variables = client.get_function_configuration(FunctionName=name).get("Environment", {}).get("Variables", {})
        if any(variables.get(k) != v for k, v in environment.items()):
            client.update_function_configuration(FunctionName=name,
                                                 Environment={"Variables": {**variables, **environment}})
    answer = client.invoke(FunctionName=name, Payload=json.dumps(event, default=str).encode("utf-8"))
    payload = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError"):
        error = payload if isinstance(payload, dict) else {"errorMessage": str(payload)}
        raise ExecutionFailedError(f"function {name} failed: {error.get('errorType', 'Error')}: "
                                   f"{error.get('errorMessage', '')}")
    return payload
