"""Model artifacts: loading one, predicting with it, and the multi-model registry (an LRU under a memory budget).

Artifact
    ``model.tar.gz`` (or the folder SageMaker extracts it into) holding ``model.joblib``, a fitted estimator with
    ``predict()``, and ``metadata.json`` with at least ``input_schema`` (``[{"name", "type"}]``, the request's column
    order) and ``task`` (decision record 0002). A model fitted on a DataFrame (scikit-learn's ``feature_names_in_``)
    gets a typed DataFrame with its feature names; one fitted on an array gets a float64 array (no pandas per request).

Predicting
    Requests for one model that arrive together are predicted together: each request's rows join a queue, and one
    ``predict()`` call takes every row waiting (up to :data:`MAX_BATCH_ROWS`), then each request gets its share. It
    adds no waiting (the batch is what is there when the event loop gets to it), and under load it turns many small
    calls, each paying the estimator's fixed validation cost, into a few. Where the call runs is measured, not
    guessed: at load, the model predicts one row and 256 rows of its own schema; a batch whose estimated time is under
    :data:`INLINE_BUDGET_SECONDS` runs on the event loop (a thread hand-off would cost more than the prediction),
    anything slower in a thread, so ``/ping`` answers while it runs. If a batch fails, its requests are predicted
    one by one, so an error reaches only the request that caused it.

Multi-model registry
    Models loaded by ``POST /models`` or on first use (``<model root>/<name>``) stay loaded while they fit the
    memory budget; a model's footprint is estimated from its artifact's size (the extracted files). Loading a model
    that does not fit unloads the least recently used ones first; one that would not fit an empty budget is refused
    (507).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import json
import logging
import math
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelwerk_serving.codecs import InputSchema, native
from modelwerk_serving.errors import BadRequest, HTTPError, ModelLoadError

logger = logging.getLogger("modelwerk.serving")

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
MODEL_ARCHIVE = "model.tar.gz"
TASKS = ("classification", "regression")

#: A batch estimated to predict faster than this runs on the event loop; slower ones run in a thread.
INLINE_BUDGET_SECONDS = 0.001
#: Most rows one ``predict()`` call takes from the queue (a request with more rows is predicted alone).
MAX_BATCH_ROWS = 10_000
_MEASURE_ROWS = 256
_MEASURE_RUNS = 3


# --------------------------------------------------------------------------------------------------------------------
# Artifacts


@dataclass(frozen=True)
class Artifact:
    """An artifact ready to load: the folder holding its files, their size, and the folder to remove afterwards."""

    folder: Path
    size_bytes: int
    temporary: Path | None = None

    def cleanup(self) -> None:
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)


def prepare_artifact(path: Path, workdir: Path) -> Artifact:
    """The artifact at ``path``: a folder holding ``model.joblib``, a folder holding ``model.tar.gz``, or a
    ``.tar.gz`` file; archives are extracted into a new folder under ``workdir``."""
    if path.is_dir() and (path / MODEL_FILE).is_file():
        return Artifact(path, _folder_size(path))
    if path.is_dir() and (path / MODEL_ARCHIVE).is_file():
        archive = path / MODEL_ARCHIVE
    elif path.is_file():
        archive = path
    elif path.exists():
        raise ModelLoadError(f"{path} holds neither {MODEL_FILE} nor {MODEL_ARCHIVE}")
    else:
        raise ModelLoadError(f"{path} does not exist")
    workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="model-", dir=workdir))
    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(folder, filter="data")
            else:  # pragma: no cover - Python before 3.11.4
                tar.extractall(folder)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ModelLoadError(f"{archive} is not a readable tar archive ({exc})") from None
    if not (folder / MODEL_FILE).is_file():
        shutil.rmtree(folder, ignore_errors=True)
        raise ModelLoadError(f"{archive} has no {MODEL_FILE} at its top level")
    return Artifact(folder, _folder_size(folder), temporary=folder)


def _folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _read_metadata(folder: Path) -> dict[str, Any]:
    file = folder / METADATA_FILE
    if not file.is_file():
        raise ModelLoadError(f"the artifact has no {METADATA_FILE} beside {MODEL_FILE}")
    try:
        metadata = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{METADATA_FILE} is not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{METADATA_FILE} is not a JSON object")
    if metadata.get("task") not in TASKS:
        raise ModelLoadError(f"{METADATA_FILE}: task {metadata.get('task')!r} is neither classification nor regression")
    return metadata


def _unpickle(file: Path) -> Any:
    import joblib

    try:
        return joblib.load(file)
    except Exception as exc:  # noqa: BLE001 - unpickling fails in many ways (truncated, garbage, a missing module)
        raise ModelLoadError(f"{MODEL_FILE} cannot be loaded ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------------------------------------------
# A loaded model


@dataclass
class _Waiting:
    features: Any
    rows: int
    future: asyncio.Future


class Model:
    """A loaded estimator with its schema; :meth:`features` reads a request's rows, :meth:`predict` predicts them."""

    def __init__(self, name: str, url: str, artifact: Artifact, executor: Executor):
        started = time.perf_counter()
        self.name = name
        self.url = url
        self.footprint_bytes = artifact.size_bytes
        self.metadata = _read_metadata(artifact.folder)
        self.schema = InputSchema(self.metadata.get("input_schema"))
        self.task: str = self.metadata["task"]
        self.estimator = _unpickle(artifact.folder / MODEL_FILE)
        if not callable(getattr(self.estimator, "predict", None)):
            raise ModelLoadError(f"{MODEL_FILE} holds a {type(self.estimator).__name__}, which has no predict()")
        self.feature_order = self._feature_order()
        self._executor = executor
        self._waiting: list[_Waiting] = []
        self._scheduled = False
        self._running = False
        self.seconds_one_row, self.seconds_per_row = self._measure()
        self.load_seconds = time.perf_counter() - started

    def _feature_order(self) -> list[str] | None:
        """The DataFrame column order of a model fitted on a DataFrame; None for one fitted on an array."""
        names = getattr(self.estimator, "feature_names_in_", None)
        if names is not None:
            names = [str(n) for n in names]
            if set(names) != set(self.schema.names):
                raise ModelLoadError(
                    f"the model's feature names {sorted(names)} differ from metadata.json's input_schema "
                    f"{sorted(self.schema.names)}"
                )
            return names
        if not self.schema.numeric:
            text = [f"{n} ({t})" for n, t, k in zip(self.schema.names, self.schema.types, self.schema.kinds)
                    if k not in ("number", "boolean")]
            raise ModelLoadError(f"the model was fitted on an array, which holds numbers only; input_schema has {text}")
        expected = getattr(self.estimator, "n_features_in_", None)
        if expected is not None and int(expected) != self.schema.width:
            raise ModelLoadError(
                f"the model takes {expected} features; metadata.json's input_schema names {self.schema.width}"
            )
        return None

    # -- requests -----------------------------------------------------------------------------------------------

    def features(self, rows: list[list[Any]]) -> Any:
        """The rows as the model takes them: a float64 array, or a typed DataFrame; :class:`BadRequest` on a bad value."""
        if self.feature_order is None:
            return self.schema.array(rows)
        return self.schema.frame(rows, self.feature_order)

    def csv_features(self, body: bytes) -> Any:
        """The features of a CSV body of plain numbers read in one pass (:meth:`InputSchema.plain_csv`), as
        :meth:`features` would make them; None for any other body (read it with ``schema.rows``)."""
        array = self.schema.plain_csv(body)
        if array is None or self.feature_order is None:
            return array
        import pandas as pd

        position = {name: j for j, name in enumerate(self.schema.names)}  # built as InputSchema.frame builds it
        return pd.DataFrame({name: np.ascontiguousarray(array[:, position[name]]) for name in self.feature_order})

    def inline(self, rows: int) -> bool:
        """Whether predicting ``rows`` rows is fast enough to run on the event loop (see the module docstring)."""
        return self.seconds_one_row + self.seconds_per_row * (rows - 1) <= INLINE_BUDGET_SECONDS

    async def predict(self, features: Any, rows: int) -> list[Any]:
        """Predictions for one request's features (JSON-native), predicted together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append(_Waiting(features, rows, future))
        if not self._scheduled and not self._running:
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return await future

    def describe(self) -> dict[str, Any]:
        return {
            "modelName": self.name,
            "modelUrl": self.url,
            "task": self.task,
            "label": self.metadata.get("label"),
            "inputSchema": [{"name": n, "type": t} for n, t in zip(self.schema.names, self.schema.types)],
            "footprintMB": round(self.footprint_bytes / 2**20, 3),
        }

    # -- batching -----------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self._scheduled = False
        if self._running or not self._waiting:
            return
        batch, rows = [self._waiting[0]], self._waiting[0].rows
        for waiting in self._waiting[1:]:
            if rows + waiting.rows > MAX_BATCH_ROWS:
                break
            batch.append(waiting)
            rows += waiting.rows
        del self._waiting[: len(batch)]
        loop = asyncio.get_running_loop()
        if self.inline(rows):
            self._settle(batch, self._predict_batch(batch))
            if self._waiting and not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._dispatch)
            return
        self._running = True
        done = loop.run_in_executor(self._executor, self._predict_batch, batch)
        done.add_done_callback(lambda result: self._finished(batch, result))

    def _finished(self, batch: list[_Waiting], done: asyncio.Future) -> None:
        self._running = False
        try:
            outcomes = done.result()
        except BaseException as exc:  # noqa: BLE001 - the executor itself failed (shut down): every request fails
            outcomes = [exc] * len(batch)
        self._settle(batch, outcomes)
        if self._waiting and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    @staticmethod
    def _settle(batch: list[_Waiting], outcomes: Sequence[Any]) -> None:
        for waiting, outcome in zip(batch, outcomes):
            if waiting.future.done():  # the client went away
                continue
            if isinstance(outcome, BaseException):
                waiting.future.set_exception(outcome)
            else:
                waiting.future.set_result(outcome)

    def _predict_batch(self, batch: list[_Waiting]) -> list[Any]:
        """Each request's predictions (or the exception that stopped them)."""
        if len(batch) > 1:
            try:
                predictions = self._call(self._combine([w.features for w in batch]))
            except Exception as exc:  # noqa: BLE001 - find out which request it was: predict each alone below
                logger.debug("a batch of %d requests failed (%s); predicting them one by one", len(batch),
                             _one_line(exc))
            else:
                outcomes, start = [], 0
                for waiting in batch:
                    outcomes.append(predictions[start : start + waiting.rows])
                    start += waiting.rows
                return outcomes
        outcomes = []
        for waiting in batch:
            try:
                outcomes.append(self._call(waiting.features))
            except Exception as exc:  # noqa: BLE001 - handed to the request, which answers with it
                outcomes.append(exc)
        return outcomes

    def _combine(self, parts: list[Any]) -> Any:
        if self.feature_order is None:
            return np.concatenate(parts)
        import pandas as pd

        return pd.concat(parts, ignore_index=True)

    def _call(self, features: Any) -> list[Any]:
        predictions = native(self.estimator.predict(features))
        if len(predictions) != len(features):
            raise RuntimeError(f"the model returned {len(predictions)} predictions for {len(features)} rows")
        return predictions

    def _measure(self) -> tuple[float, float]:
        """Seconds to predict one row, and per further row, on rows of the model's own schema (zeros, missing
        strings); infinite when such rows cannot be predicted, so predictions always run in a thread."""

        def best(features: Any) -> float:
            times = []
            for _ in range(_MEASURE_RUNS):
                started = time.perf_counter()
                self._call(features)
                times.append(time.perf_counter() - started)
                if times[-1] > 10 * INLINE_BUDGET_SECONDS:
                    break
            return min(times)

        row = [0.0 if kind in ("number", "boolean") else None for kind in self.schema.kinds]
        try:
            one = self.features([list(row)])
            started = time.perf_counter()
            self._call(one)  # the first call pays for lazy set-up
            if time.perf_counter() - started > 10 * INLINE_BUDGET_SECONDS:
                return math.inf, math.inf
            seconds_one = best(one)
            if seconds_one > INLINE_BUDGET_SECONDS:
                return seconds_one, seconds_one
            seconds_many = best(self.features([list(row) for _ in range(_MEASURE_ROWS)]))
        except Exception as exc:  # noqa: BLE001 - a model may refuse synthetic rows; it still serves real ones
            logger.info("model %r: no trial prediction on synthetic rows (%s); predictions run in a thread",
                        self.name, _one_line(exc))
            return math.inf, math.inf
        return seconds_one, max(0.0, (seconds_many - seconds_one) / (_MEASURE_ROWS - 1))


def load_model(name: str, url: str, artifact: Artifact, executor: Executor) -> Model:
    """Load and measure a model (blocking: call it in a thread); :class:`ModelLoadError` if it cannot be served."""
    model = Model(name, url, artifact, executor)
    inline_rows = _inline_rows(model)
    logger.info(
        "model %r loaded from %s in %.0f ms (%.0f KB; %s)", name, url, model.load_seconds * 1000,
        model.footprint_bytes / 1024,
        f"batches up to {inline_rows} rows predicted on the event loop" if inline_rows else "predictions in a thread",
    )
    return model


def _inline_rows(model: Model) -> int:
    if not model.inline(1):
        return 0
    if model.seconds_per_row <= 0:
        return MAX_BATCH_ROWS
    return int(min(MAX_BATCH_ROWS, 1 + (INLINE_BUDGET_SECONDS - model.seconds_one_row) / model.seconds_per_row))


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def prediction_error(exc: Exception) -> HTTPError:
    """What the caller hears when ``predict()`` raised: input errors are theirs (400), anything else the model's."""
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, (ValueError, TypeError, KeyError, IndexError)):
        return BadRequest(f"the model cannot predict these rows: {_one_line(exc)}")
    logger.error("model prediction failed: %s", _one_line(exc), exc_info=exc)
    return HTTPError(500, f"the model failed to predict: {_one_line(exc)}")


# --------------------------------------------------------------------------------------------------------------------
# Multi-model registry

#: Printable, no whitespace or backslash; SageMaker's target model names are relative paths such as ``a/b.tar.gz``.
_MODEL_NAME = re.compile(r"^[^\s\\]{1,1024}$")


def check_model_name(name: Any) -> str:
    """``name`` if it is a usable model name (400 otherwise): never a way out of the model root."""
    if not isinstance(name, str) or not _MODEL_NAME.match(name) or name.startswith("/"):
        raise BadRequest(f"model name {name!r} must be 1-1024 printable characters without spaces or a leading '/'")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise BadRequest(f"model name {name!r} has an empty, '.' or '..' path segment")
    return name


def _mb(size: float) -> str:
    return f"{size / 2**20:.2f}"


class ModelRegistry:
    """The models a multi-model server holds: loaded on request or on first use, least recently used unloaded first.

    Runs on the event loop (no locks); loading happens in a thread, and a load in progress is shared by every
    request that needs the model.
    """

    def __init__(self, *, root: Path, budget_bytes: int, workdir: Path, executor: Executor):
        self.root = root
        self.budget_bytes = budget_bytes
        self._workdir = workdir
        self._executor = executor
        self._loaded: OrderedDict[str, Model] = OrderedDict()
        self._loading: dict[str, asyncio.Future] = {}
        self._used = 0
        self._reserved = 0

    @property
    def used_bytes(self) -> int:
        return self._used

    def loaded(self, name: str) -> Model:
        """A loaded model (404 if it is not)."""
        model = self._loaded.get(name)
        if model is None:
            raise HTTPError(404, f"model {name!r} is not loaded")
        return model

    async def load(self, name: str, url: Any) -> Model:
        """``POST /models``: load ``url`` (a local folder or ``.tar.gz``) as ``name``; 409 if it is already loaded."""
        check_model_name(name)
        if not isinstance(url, str) or not url.strip():
            raise BadRequest("url must be the local path of the model's folder or model.tar.gz")
        path_text = url.strip().removeprefix("file://")
        if "://" in path_text:
            raise BadRequest(f"url {url!r}: only local paths are loaded (the platform downloads the artifact first)")
        if name in self._loaded or name in self._loading:
            raise HTTPError(409, f"model {name!r} is already loaded; unload it first to load it again")
        path = Path(path_text)
        if not path.exists():
            raise BadRequest(f"url {url!r}: no such file or folder")
        return await self._load(name, url, path)

    async def get(self, name: str) -> Model:
        """The model to invoke: loaded, being loaded, or found under the model root and loaded now (404 if none)."""
        model = self._loaded.get(name)
        if model is not None:
            self._loaded.move_to_end(name)
            return model
        pending = self._loading.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        check_model_name(name)
        path = self.root / name
        if not _inside(path, self.root) or not path.exists():
            raise HTTPError(404, f"model {name!r} is not loaded and not found under the model root")
        return await self._load(name, str(path), path)

    def unload(self, name: str) -> Model:
        """``DELETE /models/{name}`` (404 if not loaded)."""
        model = self.loaded(name)
        del self._loaded[name]
        self._used -= model.footprint_bytes
        logger.info("model %r unloaded", name)
        return model

    def page(self, limit: int, token: str | None) -> tuple[list[Model], str | None]:
        """Loaded models by name, ``limit`` after the page ``token`` names; the next page's token or None."""
        names = sorted(self._loaded)
        start = 0
        if token:
            try:
                padded = token.encode("ascii") + b"=" * (-len(token) % 4)
                after = base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
            except (binascii.Error, UnicodeError, ValueError):
                raise BadRequest(f"next_page_token {token!r} is not a token this server gave") from None
            start = bisect.bisect_right(names, after)
        chosen = names[start : start + limit]
        more = start + limit < len(names)
        next_token = base64.urlsafe_b64encode(chosen[-1].encode("utf-8")).decode("ascii").rstrip("=") if more else None
        return [self._loaded[n] for n in chosen], next_token

    async def _load(self, name: str, url: str, path: Path) -> Model:
        loop = asyncio.get_running_loop()
        shared = loop.create_future()
        self._loading[name] = shared
        try:
            model = await self._load_now(loop, name, url, path)
        except BaseException as exc:
            shared.set_exception(exc)
            shared.exception()  # those who shared it re-raise it; no "never retrieved" warning when nobody did
            raise
        finally:
            del self._loading[name]
        self._loaded[name] = model
        self._used += model.footprint_bytes
        shared.set_result(model)
        return model

    async def _load_now(self, loop: asyncio.AbstractEventLoop, name: str, url: str, path: Path) -> Model:
        artifact = await loop.run_in_executor(self._executor, _prepare, path, self._workdir, name)
        try:
            self._reserve(name, artifact.size_bytes)
            try:
                return await loop.run_in_executor(self._executor, _load, name, url, artifact, self._executor)
            finally:
                self._reserved -= artifact.size_bytes
        finally:
            artifact.cleanup()

    def _reserve(self, name: str, size: int) -> None:
        if size > self.budget_bytes:
            raise HTTPError(
                507, f"model {name!r} needs about {_mb(size)} MB; the memory budget is {_mb(self.budget_bytes)} MB"
            )
        while self._used + self._reserved + size > self.budget_bytes and self._loaded:
            evicted, model = self._loaded.popitem(last=False)
            self._used -= model.footprint_bytes
            logger.info("model %r unloaded (least recently used) to make room for %r", evicted, name)
        if self._used + self._reserved + size > self.budget_bytes:
            raise HTTPError(
                507, f"model {name!r} needs about {_mb(size)} MB; models being loaded hold the rest of the "
                f"{_mb(self.budget_bytes)} MB memory budget"
            )
        self._reserved += size


def _inside(path: Path, root: Path) -> bool:
    try:
        return os.path.commonpath([path.resolve(), root.resolve()]) == str(root.resolve())
    except ValueError:
        return False


def _prepare(path: Path, workdir: Path, name: str) -> Artifact:
    try:
        return prepare_artifact(path, workdir)
    except ModelLoadError as exc:
        raise HTTPError(422, f"model {name!r} cannot be loaded: {exc}") from None


def _load(name: str, url: str, artifact: Artifact, executor: Executor) -> Model:
    try:
        return load_model(name, url, artifact, executor)
    except ModelLoadError as exc:
        raise HTTPError(422, f"model {name!r} cannot be loaded: {exc}") from None
    except MemoryError:
        raise HTTPError(507, f"model {name!r} does not fit in this machine's memory") from None

