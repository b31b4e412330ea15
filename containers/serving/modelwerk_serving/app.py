"""The ASGI application: SageMaker's inference contract, single-model and multi-model.

Routes
    ``GET /ping``: 200 once the model is loaded (single-model) or the registry is up (multi-model), 503 before.
    ``POST /invocations``: predictions for the rows of the body (see :mod:`modelwerk_serving.codecs`); in
    multi-model mode for the model the ``X-Amzn-SageMaker-Target-Model`` header names, loaded from the model root
    on first use. Multi-model mode adds SageMaker's model API (multi-model-server's management API):
    ``POST /models`` ``{"model_name", "url"}``, ``GET /models`` (``limit``, ``next_page_token``),
    ``GET``/``DELETE /models/{name}`` and ``POST /models/{name}/invoke``.

Errors
    Every failure is a status code and ``{"message": "<one line>"}``: 4xx for what the caller can fix, 5xx only for
    the server's own faults (logged with their traceback, which the caller never sees). Reading a request body into
    the model's features is the caller's side by construction: whatever fails there answers 400 (the codecs name
    the row and column of a bad value; anything unforeseen is logged and still answers 400, never 500).

Speed
    A plain ASGI callable: one comparison per route, response headers built once, nothing logged per request. The
    capture of an invocation is one append to a buffer (:mod:`modelwerk_serving.capture`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from modelwerk_serving import codecs
from modelwerk_serving.capture import CaptureWriter
from modelwerk_serving.errors import BadRequest, HTTPError, ModelLoadError
from modelwerk_serving.models import (
    Artifact,
    Model,
    ModelRegistry,
    check_model_name,
    load_model,
    prediction_error,
)
from modelwerk_serving.settings import Settings

logger = logging.getLogger("modelwerk.serving")

#: SageMaker's limit on a real-time invocation's payload.
MAX_BODY_BYTES = 6 * 2**20
#: The exit code uvicorn's supervisor takes for "this worker cannot start": it stops instead of restarting it.
STARTUP_FAILURE = 3
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_JSON = b"application/json"
_CONTENT_TYPES = {fmt: (b"content-type", fmt.encode("ascii")) for fmt in codecs.FORMATS}
_HEALTHY = b'{"status":"Healthy"}'


class _Disconnected(Exception):
    """The client went away before its request body arrived: nobody to answer."""


class App:
    """The server's ASGI application. Built in the supervisor with the settings, run in each worker.

    ``model_folder`` (single-model mode) is the artifact's folder, already extracted when the model directory held
    a ``model.tar.gz``. Everything else is created at start-up in the worker: the object itself is sent to the
    worker processes as it is.
    """

    def __init__(self, settings: Settings, model_folder: Path | None = None):
        self.settings = settings
        self.model_folder = model_folder
        self._model: Model | None = None
        self._registry: ModelRegistry | None = None
        self._capture: CaptureWriter | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._workdir: Path | None = None
        self._loading: asyncio.Task | None = None
        #: Set by the supervisor for workers that replace one that died: such a worker loads its model before it
        #: accepts a connection, so the endpoint's traffic never meets it unready (the first workers answer /ping 503
        #: while they load, as SageMaker's contract has it: nothing is served before /ping says 200).
        self.replacement = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            try:
                await self._http(scope, receive, send)
            except HTTPError as exc:
                await _answer(send, exc.status, _message(exc.message), _JSON)
            except _Disconnected:
                return
            except Exception as exc:
                logger.exception("%s %s failed", scope.get("method"), scope.get("path"))
                await _answer(send, 500, _message(f"internal error ({type(exc).__name__}); see the server log"), _JSON)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- routes ------------------------------------------------------------------------------------------------------

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/invocations":
            if method != "POST":
                raise HTTPError(405, f"{method} /invocations: use POST")
            await self._invocations(scope, receive, send, None)
        elif path == "/ping":
            if method != "GET":
                raise HTTPError(405, f"{method} /ping: use GET")
            await self._ping(send)
        elif self.settings.multi_model and (path == "/models" or path.startswith("/models/")):
            await self._models(scope, receive, send, path, method)
        else:
            raise HTTPError(404, f"no route {method} {path}")

    async def _ping(self, send: Any) -> None:
        ready = self._registry is not None if self.settings.multi_model else self._model is not None
        if ready:
            await _answer(send, 200, _HEALTHY, _JSON)
        elif self.settings.multi_model:
            await _answer(send, 503, _message("the server is starting"), _JSON)
        else:
            await _answer(send, 503, _message("the model is loading"), _JSON)

    async def _invocations(self, scope: dict[str, Any], receive: Any, send: Any, model_name: str | None) -> None:
        content_type = accept = inference_id = target = length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"x-amzn-sagemaker-inference-id":
                inference_id = value.decode("latin-1")
            elif name == b"x-amzn-sagemaker-target-model":
                target = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        if not self.settings.multi_model and self._model is None:
            raise HTTPError(503, "the model is loading")
        request_format = codecs.request_format(content_type)
        response_format = codecs.response_format(accept, request_format)
        body = await _read_body(receive, length)
        if self.settings.multi_model:
            name = model_name if model_name is not None else target
            if not name:
                raise BadRequest("multi-model mode: name the model in the X-Amzn-SageMaker-Target-Model header")
            if self._registry is None:
                raise HTTPError(503, "the server is starting")
            model = await self._registry.get(name)
        else:
            model = self._model
        try:
            features = model.csv_features(body) if request_format == codecs.CSV else None
            if features is None:
                features = model.features(model.schema.rows(body, request_format))
        except HTTPError:
            raise
        except Exception as exc:  # noqa: BLE001 - reading the caller's body: whatever fails there is about the body
            logger.warning("a request body could not be read: %s", _one_line(exc), exc_info=exc)
            raise BadRequest(f"the body cannot be read as rows of the model's columns: {_one_line(exc)}") from None
        try:
            predictions = await model.predict(features, len(features))
        except Exception as exc:  # noqa: BLE001 - sorted into the caller's fault (4xx) or the model's (5xx)
            raise prediction_error(exc) from None
        output = codecs.encode(predictions, response_format)
        await _answer(send, 200, output, _CONTENT_TYPES[response_format][1])
        if self._capture is not None:
            self._capture.record(body, content_type, output, response_format, inference_id)

    async def _models(self, scope: dict[str, Any], receive: Any, send: Any, path: str, method: str) -> None:
        registry = self._registry
        if registry is None:
            raise HTTPError(503, "the server is starting")  # /ping says so too
        if path == "/models":
            if method == "GET":
                await self._list(scope, send, registry)
            elif method == "POST":
                document = _json_object(await _read_body(receive, None))
                model = await registry.load(document.get("model_name"), document.get("url"))
                await _answer(send, 200, _json({"message": f"model {model.name!r} loaded", **model.describe()}), _JSON)
            else:
                raise HTTPError(405, f"{method} /models: use GET or POST")
            return
        rest = path[len("/models/"):]
        if method == "POST" and rest.endswith("/invoke"):
            await self._invocations(scope, receive, send, check_model_name(rest[: -len("/invoke")]))
        elif method == "GET":
            await _answer(send, 200, _json(registry.loaded(rest).describe()), _JSON)
        elif method == "DELETE":
            registry.unload(rest)
            await _answer(send, 200, _message(f"model {rest!r} unloaded"), _JSON)
        else:
            raise HTTPError(405, f"{method} {path}: use GET, DELETE, or POST .../invoke")

    async def _list(self, scope: dict[str, Any], send: Any, registry: ModelRegistry) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        limit_text = query.get("limit", [str(DEFAULT_PAGE_SIZE)])[-1]
        try:
            limit = int(limit_text)
        except ValueError:
            raise BadRequest(f"limit {limit_text!r} is not a whole number") from None
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise BadRequest(f"limit {limit} must be from 1 to {MAX_PAGE_SIZE}")
        models, token = registry.page(limit, query.get("next_page_token", [None])[-1] or None)
        document: dict[str, Any] = {"models": [{"modelName": m.name, "modelUrl": m.url} for m in models]}
        if token is not None:
            document["nextPageToken"] = token
        await _answer(send, 200, _json(document), _JSON)

    # -- start-up and shutdown ---------------------------------------------------------------------------------------

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._startup()
                except Exception as exc:  # noqa: BLE001 - reported to uvicorn, which stops the worker
                    logger.error("the server cannot start: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.replacement and self._loading is not None:
                    await self._loading  # uvicorn accepts connections only after startup completes
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _startup(self) -> None:
        settings = self.settings
        self._executor = ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) + 4),
                                            thread_name_prefix="predict")
        self._workdir = Path(tempfile.mkdtemp(prefix="modelwerk-serving-"))
        if settings.capture is not None:
            self._capture = CaptureWriter(settings.capture).start()
            logger.info("capturing %g%% of invocations to %s", settings.capture.sampling_percent,
                        settings.capture.s3_uri)
        if settings.multi_model:
            self._loading = asyncio.get_running_loop().create_task(self._start_registry())
        else:
            self._loading = asyncio.get_running_loop().create_task(self._load_single())

    async def _start_registry(self) -> None:
        """Multi-model mode is ready (``/ping`` 200) once the model frameworks are imported: loading a model then
        takes milliseconds, not the second the first import of scikit-learn costs."""
        await asyncio.get_running_loop().run_in_executor(self._executor, _import_frameworks)
        settings = self.settings
        self._registry = ModelRegistry(root=settings.model_root, budget_bytes=int(settings.mme_memory_mb * 2**20),
                                       workdir=self._workdir, executor=self._executor)
        logger.info("multi-model mode: models from %s, memory budget %.0f MB", settings.model_root,
                    settings.mme_memory_mb)

    async def _load_single(self) -> None:
        """Load the one model while ``/ping`` answers 503; a model that cannot be loaded stops the server."""
        folder = self.model_folder or self.settings.model_dir
        loop = asyncio.get_running_loop()
        try:
            artifact = Artifact(folder, await loop.run_in_executor(self._executor, _size, folder))
            self._model = await loop.run_in_executor(
                self._executor, load_model, str(self.settings.model_dir), str(self.settings.model_dir), artifact,
                self._executor,
            )
        except asyncio.CancelledError:
            raise
        except ModelLoadError as exc:
            _stop_worker(f"cannot load the model from {self.settings.model_dir}: {exc}")
        except Exception as exc:  # noqa: BLE001 - whatever it is, the server cannot serve without its model
            _stop_worker(f"cannot load the model from {self.settings.model_dir}: {type(exc).__name__}: {exc}")

    async def _shutdown(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self._capture is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._capture.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def _import_frameworks() -> None:
    import joblib  # noqa: F401

    frameworks = ("pandas", "sklearn.pipeline", "sklearn.compose", "sklearn.linear_model", "sklearn.ensemble", "xgboost")
    for name in frameworks:
        try:
            importlib.import_module(name)
        except ImportError:  # without this framework the server serves models of the others
            logger.info("%s is not importable here: models that need it will fail to load", name)
        except Exception as exc:  # noqa: BLE001 - a broken installation: the same, but say what broke
            logger.warning("%s cannot be imported (%s): models that need it will fail to load", name,
                           " ".join(f"{type(exc).__name__}: {exc}".split()))


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def _stop_worker(message: str) -> None:
    """End this worker with uvicorn's start-up failure code, which makes the supervisor stop the server rather
    than restart a worker that would fail the same way. Nothing is in flight: without a model nothing was served."""
    logger.error(" ".join(message.split()))
    logging.shutdown()
    sys.stderr.flush()
    os._exit(STARTUP_FAILURE)


# -- HTTP helpers --------------------------------------------------------------------------------------------------


async def _answer(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode("ascii"))],
    })
    await send({"type": "http.response.body", "body": body})


def _json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _message(text: str) -> bytes:
    return _json({"message": " ".join(str(text).split())})


async def _read_body(receive: Any, length: bytes | None) -> bytes:
    """The whole request body; 413 past SageMaker's 6 MB, 400 when empty."""
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise BadRequest(f"Content-Length {length.decode('latin-1')!r} is not a number") from None
        if declared > MAX_BODY_BYTES:
            raise HTTPError(413, f"the body is {declared} bytes; the limit is {MAX_BODY_BYTES} (6 MB)")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _Disconnected
    body = message.get("body", b"")
    if message.get("more_body", False):
        chunks, size = [body], len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HTTPError(413, f"the body is more than {MAX_BODY_BYTES} bytes (6 MB), SageMaker's limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
    if len(body) > MAX_BODY_BYTES:
        raise HTTPError(413, f"the body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} (6 MB)")
    if not body:
        raise BadRequest("the request body is empty")
    return body


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise BadRequest('the body must be a JSON object {"model_name": ..., "url": ...}')
    return document
