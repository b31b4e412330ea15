"""Lambda's ``Invoke``: the request's headers and payload in, AWS's status, headers and payload out."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote

from modelwerk.local.services._routing import AwsError, Call, Reply
from modelwerk.local.services.awslambda.models import RUNTIME

_INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


def invoke(call: Call) -> Reply:
    name = unquote(call.path_params["name"])
    qualifier = parse_qs(call.environ.get("QUERY_STRING", "")).get("Qualifier", [None])[0]
    invocation_type = call.environ.get("HTTP_X_AMZ_INVOCATION_TYPE") or "RequestResponse"
    if invocation_type not in _INVOCATION_TYPES:
        raise AwsError("InvalidParameterValueException",
                       f"InvocationType must be one of {', '.join(_INVOCATION_TYPES)}, not {invocation_type}")
    try:
        json.loads(call.body or b"{}")
    except ValueError as error:
        raise AwsError("InvalidRequestContentException", f"Could not parse request body into json: {error}") from None
    function, code = RUNTIME.function(call.account, call.region, name, qualifier)
    if invocation_type == "DryRun":
        return Reply(204, b"")
    if invocation_type == "Event":
        request_id = RUNTIME.invoke_async(function, code, call.body)
        return Reply(202, b"", {"x-amzn-RequestId": request_id})
    result = RUNTIME.invoke(function, code, call.body)
    headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": result.version}
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if (call.environ.get("HTTP_X_AMZ_LOG_TYPE") or "None") == "Tail":
        headers["X-Amz-Log-Result"] = result.log_tail()
    return Reply(200, result.payload, headers)
