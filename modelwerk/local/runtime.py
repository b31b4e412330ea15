"""The SageMaker Runtime API of local mode: ``POST /endpoints/{name}/invocations`` in front of local endpoints.

An unmodified boto3 ``sagemaker-runtime`` client with ``endpoint_url`` set to this gateway (or
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, which local mode sets) invokes local endpoints as it would real ones. The
gateway does what SageMaker's front end does and the serving container does not: it routes a request to a variant's
fleet by weight (blue/green shifts traffic by rewriting the weights), loads a multi-model endpoint's target model from
its S3 prefix into the container on first use, answers errors in the Runtime API's shape (``ValidationError``,
``ModelError`` with the container's status and message), and publishes SageMaker's invocation metrics.

Endpoints are the JSON records under ``--endpoints-dir`` (one ``<endpoint>.json`` each, written by
:mod:`modelwerk.endpoints`); the gateway rereads a record when its file changes, so deploys need no restart.

``python -m modelwerk.local.runtime --port P --endpoints-dir DIR`` is what ``modelwerk local up`` starts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("modelwerk.runtime")

#: SageMaker's InvokeEndpoint payload limit.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
#: How often the endpoint records are checked for changes (seconds).
REFRESH_SECONDS = 0.25
#: Request headers of InvokeEndpoint that reach the container.
FORWARDED = (b"content-type", b"accept", b"x-amzn-sagemaker-inference-id", b"x-amzn-sagemaker-custom-attributes",
             b"x-amzn-sagemaker-target-model")
TARGET_MODEL = "x-amzn-sagemaker-target-model"
TARGET_VARIANT = "x-amzn-sagemaker-target-variant"
INVOCATIONS_PREFIX = "/endpoints/"
INVOCATIONS_SUFFIX = "/invocations"


class InvokeError(Exception):
    """An InvokeEndpoint error: HTTP status, the Runtime API's error type, and a message for the caller."""

    def __init__(self, status: int, error_type: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.error_type, self.message, self.extra = status, error_type, message, extra

    def body(self) -> bytes:
        return json.dumps({"message": self.message, **self.extra}).encode()


@dataclass
class Fleet:
    """One fleet of a production variant: a serving process and the share of traffic it gets."""

    name: str
    url: str
    weight: float
    mode: str = "SingleModel"
    model_data_prefix: str | None = None
    model_cache_dir: str | None = None
    fleet: str = "blue"


@dataclass
class Route:
    endpoint: str
    fleets: list[Fleet]
    mode: str = "SingleModel"

    def pick(self, variant: str | None) -> Fleet:
        candidates = [f for f in self.fleets if f.weight > 0 and (variant is None or f.name == variant)]
        if not candidates:
            if variant is not None:
                raise InvokeError(400, "ValidationError",
                                    f"Endpoint {self.endpoint} has no variant {variant} taking traffic")
            raise InvokeError(400, "ValidationError", f"Endpoint {self.endpoint} has no variant taking traffic")
        if len(candidates) == 1:
            return candidates[0]
        total = sum(f.weight for f in candidates)
        point = random.random() * total
        for fleet in candidates:
            point -= fleet.weight
            if point < 0:
                return fleet
        return candidates[-1]


def read_route(path: Path) -> Route:
    doc = json.loads(path.read_text(encoding="utf-8"))
    fleets = [Fleet(name=v.get("name", "AllTraffic"), url=v["url"], weight=float(v.get("weight", 1.0)),
                    mode=doc.get("mode", "SingleModel"), model_data_prefix=v.get("model_data_prefix"),
                    model_cache_dir=v.get("model_cache_dir"), fleet=v.get("fleet", "blue"))
              for v in doc.get("variants", []) if v.get("url")]
    return Route(endpoint=doc["endpoint"], fleets=fleets, mode=doc.get("mode", "SingleModel"))


@dataclass
class EndpointTable:
    """The endpoint records of a folder, reread when a file changes (checked at most every REFRESH_SECONDS)."""

    folder: Path
    routes: dict[str, Route] = field(default_factory=dict)
    _seen: dict[str, float] = field(default_factory=dict)
    _checked: float = 0.0

    def get(self, name: str) -> Route | None:
        now = time.monotonic()
        if now - self._checked > REFRESH_SECONDS:
            self._checked = now
            self.refresh()
        return self.routes.get(name)

    def refresh(self) -> None:
        seen: dict[str, float] = {}
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            name = entry.name[:-5]
            mtime = entry.stat().st_mtime_ns
            seen[name] = mtime
            if self._seen.get(name) != mtime:
                try:
                    self.routes[name] = read_route(Path(entry.path))
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("endpoint record %s unreadable: %s", entry.path, exc)
                    seen.pop(name)
        for gone in set(self.routes) - set(seen):
            self.routes.pop(gone, None)
        self._seen = seen


class ModelLoader:
    """Multi-model endpoints: fetch a target model from the variant's S3 prefix and load it into the container.

    As on SageMaker, a model is loaded on its first invocation (``POST /models`` with the downloaded artifact) and
    loaded again when the container has since evicted it (it answers 404 for a model it does not hold).
    """

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._loaded: set[tuple[str, str]] = set()
        self._s3: Any = None

    def forget(self, fleet: Fleet, model: str) -> None:
        self._loaded.discard((fleet.url, model))

    def is_loaded(self, fleet: Fleet, model: str) -> bool:
        return (fleet.url, model) in self._loaded

    async def ensure(self, session: Any, fleet: Fleet, model: str) -> None:
        key = (fleet.url, model)
        if key in self._loaded:
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._loaded:
                return
            folder = await asyncio.get_running_loop().run_in_executor(None, self._download, fleet, model)
            async with session.post(f"{fleet.url}/models", json={"model_name": model, "url": str(folder)}) as resp:
                text = await resp.text()
                if resp.status not in (200, 201, 409):
                    raise InvokeError(424, "ModelError", f"Model {model} failed to load: {_message(text)}",
                                        OriginalStatusCode=resp.status, OriginalMessage=_message(text))
            self._loaded.add(key)

    def _download(self, fleet: Fleet, model: str) -> Path:
        if not fleet.model_data_prefix or not fleet.model_cache_dir:
            raise InvokeError(400, "ValidationError", "Endpoint is not a multi-model endpoint")
        if model.startswith("/") or ".." in model.split("/"):
            raise InvokeError(400, "ValidationError", f"TargetModel {model!r} must be a path under the model prefix")
        bucket, _, prefix = fleet.model_data_prefix.removeprefix("s3://").partition("/")
        key = prefix.rstrip("/") + "/" + model if prefix else model
        folder = Path(fleet.model_cache_dir) / hashlib.sha256(model.encode()).hexdigest()[:16]
        target = folder / "model.tar.gz"
        if target.is_file():
            return folder
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        from botocore.exceptions import ClientError

        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise InvokeError(404, "ValidationError",
                                    f"TargetModel {model} not found under {fleet.model_data_prefix}") from None
            raise InvokeError(424, "ModelError", f"TargetModel {model} could not be read: {code}") from None
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / ".model.tar.gz.partial"
        partial.write_bytes(body)
        os.replace(partial, target)
        return folder


def _message(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    return str(doc.get("message", doc)) if isinstance(doc, dict) else str(doc)


class Gateway:
    """The ASGI application (raw, no framework: it sits on every request's path)."""

    def __init__(self, endpoints_dir: Path, *, metrics: Any = None):
        self.table = EndpointTable(Path(endpoints_dir))
        self.loader = ModelLoader()
        self.metrics = metrics
        self._session: Any = None

    async def _client(self):
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=None),
                timeout=aiohttp.ClientTimeout(total=60), skip_auto_headers=("User-Agent",),
                auto_decompress=False)
        return self._session

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] == "GET" and path == "/ping":
            await _respond(send, 200, b"", [])
            return
        if not (path.startswith(INVOCATIONS_PREFIX) and path.endswith(INVOCATIONS_SUFFIX)):
            await _error(send, InvokeError(404, "UnknownOperationException", f"No operation at {path}"))
            return
        if scope["method"] != "POST":
            await _error(send, InvokeError(405, "ValidationError", "InvokeEndpoint is a POST"))
            return
        name = unquote(path[len(INVOCATIONS_PREFIX):-len(INVOCATIONS_SUFFIX)])
        started = time.perf_counter()
        fleet: Fleet | None = None
        status = 500
        model_seconds: float | None = None
        try:
            route = self.table.get(name)
            if route is None:
                raise InvokeError(400, "ValidationError", f"Endpoint {name} not found; 'modelwerk endpoints list' "
                                                            "shows the local endpoints")
            headers = {k.lower(): v for k, v in scope["headers"]}
            body = await _read_body(receive)
            fleet = route.pick(_header(headers, TARGET_VARIANT))
            status, out_headers, payload, model_seconds = await self._invoke(route, fleet, headers, body)
            await _respond(send, 200, payload, out_headers)
        except InvokeError as error:
            status = error.status if error.status != 424 else error.extra.get("OriginalStatusCode", 424)
            await _error(send, error)
        except Exception:  # noqa: BLE001 - the caller gets the Runtime API's shape; the log gets the traceback
            log.exception("invocation of %s failed", name)
            status = 500
            await _error(send, InvokeError(500, "InternalFailure", f"The local runtime failed invoking {name}; "
                                                                   "see .modelwerk/local/runtime.log"))
        finally:
            if self.metrics is not None and fleet is not None:
                total = time.perf_counter() - started
                model_us = None if model_seconds is None else int(model_seconds * 1e6)  # never reached the model
                self.metrics.record(name, fleet.name, status, model_us,
                                    int(max(total - (model_seconds or 0.0), 0) * 1e6))

    async def _invoke(self, route: Route, fleet: Fleet, headers: dict[bytes, bytes], body: bytes):
        if len(body) > MAX_PAYLOAD_BYTES:
            raise InvokeError(413, "ValidationError",
                                f"Request body of {len(body)} bytes is over the {MAX_PAYLOAD_BYTES} byte limit; "
                                "send fewer rows per request")
        target = _header(headers, TARGET_MODEL)
        session = await self._client()
        if route.mode == "MultiModel":
            if not target:
                raise InvokeError(400, "ValidationError",
                                    f"Endpoint {route.endpoint} is a multi-model endpoint: set TargetModel")
            await self.loader.ensure(session, fleet, target)
        elif target:
            raise InvokeError(400, "ValidationError",
                                f"Endpoint {route.endpoint} is not a multi-model endpoint: TargetModel is not allowed")
        forwarded = {k.decode(): v.decode("latin-1") for k, v in headers.items() if k in FORWARDED}
        for attempt in (1, 2):
            status, out_headers, payload, seconds = await self._post(session, fleet, forwarded, body)
            if status == 404 and target and attempt == 1:
                self.loader.forget(fleet, target)  # evicted by the container's LRU since: load it again
                await self.loader.ensure(session, fleet, target)
                continue
            break
        if status >= 400:
            message = _message(payload.decode("utf-8", "replace"))
            raise InvokeError(424, "ModelError",
                                f"Received {'client' if status < 500 else 'server'} error ({status}) from "
                                f"{fleet.name} with message \"{message}\"",
                                OriginalStatusCode=status, OriginalMessage=message)
        return status, out_headers, payload, seconds

    async def _post(self, session: Any, fleet: Fleet, headers: dict[str, str], body: bytes):
        import aiohttp

        started = time.perf_counter()
        for attempt in (1, 2, 3):
            try:
                async with session.post(f"{fleet.url}/invocations", data=body, headers=headers) as resp:
                    payload = await resp.read()
                    seconds = time.perf_counter() - started
                    out = [(b"x-amzn-invoked-production-variant", fleet.name.encode())]
                    content_type = resp.headers.get("Content-Type")
                    if content_type:
                        out.append((b"content-type", content_type.encode()))
                    custom = resp.headers.get("X-Amzn-SageMaker-Custom-Attributes")
                    if custom:
                        out.append((b"x-amzn-sagemaker-custom-attributes", custom.encode()))
                    return resp.status, out, payload, seconds
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if attempt == 3:
                    raise InvokeError(503, "ServiceUnavailable",
                                        f"Variant {fleet.name} is not answering ({exc.__class__.__name__}); "
                                        "'modelwerk endpoints describe' shows its state") from None
                await asyncio.sleep(0.2 * attempt)  # a worker being replaced: its supervisor restarts it
        raise AssertionError("unreachable")

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                if self.metrics is not None:
                    self.metrics.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _header(headers: dict[bytes, bytes], name: str) -> str | None:
    value = headers.get(name.encode())
    return value.decode("latin-1") if value else None


async def _read_body(receive: Any) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_PAYLOAD_BYTES:
            raise InvokeError(413, "ValidationError",
                                f"Request body is over the {MAX_PAYLOAD_BYTES} byte limit; send fewer rows per request")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Any, error: InvokeError) -> None:
    await _respond(send, error.status, error.body(),
                   [(b"content-type", b"application/json"), (b"x-amzn-errortype", error.error_type.encode())])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelwerk.local.runtime", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--endpoints-dir", required=True, type=Path)
    parser.add_argument("--no-metrics", action="store_true", help="do not publish invocation metrics")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    import uvicorn

    metrics = None
    if not args.no_metrics and os.environ.get("AWS_ENDPOINT_URL"):
        from modelwerk.local.endpoint_metrics import InvocationMetrics

        def cloudwatch() -> Any:
            import boto3

            return boto3.client("cloudwatch")

        import boto3

        from modelwerk.local.endpoint_metrics import default_samples_dir

        account = boto3.client("sts").get_caller_identity()["Account"]
        # alarms judge deployments within seconds locally
        metrics = InvocationMetrics(cloudwatch, flush_seconds=1.0, samples_dir=default_samples_dir(account))
    app = Gateway(args.endpoints_dir, metrics=metrics)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
