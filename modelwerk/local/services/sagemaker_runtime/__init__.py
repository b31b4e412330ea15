"""sagemaker-runtime on the embedded AWS's own URL: ``InvokeEndpoint`` handed to the local SageMaker Runtime.

On AWS the runtime has an endpoint of its own, and so has the embedded AWS (``runtime_endpoint_url``, in the
profiles' ``services`` section). A client given only ``AWS_ENDPOINT_URL`` sends its invocations here: they are passed
on unchanged, signature included (the runtime routes by the caller's account), instead of reaching moto's canned
answer.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

from modelwerk.local.services._routing import Call, Reply, Route, Service

#: The request headers InvokeEndpoint's model sends (and the signature's, and botocore's call id, which the runtime
#: keeps as the capture's event id so that a retried call is captured once), passed on as they came.
_PASSED_ON = ("authorization", "content-type", "accept", "x-amz-date", "x-amz-security-token",
              "x-amz-content-sha256", "x-amzn-sagemaker-", "amz-sdk-")


def invoke_endpoint(call: Call) -> Reply:
    from modelwerk.local.services.sagemaker.endpoints import runtime_url

    target = urlsplit(runtime_url({})["url"])
    headers = {key[5:].replace("_", "-").lower(): value for key, value in call.environ.items()
               if key.startswith("HTTP_")}
    if call.environ.get("CONTENT_TYPE"):
        headers["content-type"] = call.environ["CONTENT_TYPE"]
    headers = {k: v for k, v in headers.items() if k.startswith(_PASSED_ON)}
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    try:
        connection.request("POST", call.environ["PATH_INFO"], body=call.body, headers=headers)
        response = connection.getresponse()
        body = response.read()
        answer = {k: v for k, v in response.getheaders() if k.lower() not in ("content-length", "connection",
                                                                              "transfer-encoding", "date", "server")}
        return Reply(response.status, body, answer)
    finally:
        connection.close()


SERVICE = Service(name="sagemaker-runtime", handlers={"InvokeEndpoint": invoke_endpoint},
                  routes=(Route("POST", r"/endpoints/(?P<name>[^/]+)/invocations", "InvokeEndpoint"),))

__all__ = ["SERVICE", "invoke_endpoint"]
