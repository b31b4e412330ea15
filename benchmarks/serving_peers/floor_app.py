"""The floor: a bare ASGI application on uvicorn that reads the request and answers a constant.

What any Python server on uvicorn costs before it parses a row or runs a model; run with the project's uvicorn,
the server the container runs on::

    python -m uvicorn floor_app:app --port 8080 --no-access-log --log-level warning
"""

from __future__ import annotations

BODY = b"0\n"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/csv"), (b"content-length", str(len(BODY)).encode())],
}
RESPONSE = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole request, as a server must before answering
        message = await receive()
        more = message.get("more_body", False)
    await send(START)
    await send(RESPONSE)
