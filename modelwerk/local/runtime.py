"""The SageMaker Runtime API of local mode: ``POST /endpoints/{name}/invocations`` in front of local endpoints.

An unmodified boto3 ``sagemaker-runtime`` client with ``endpoint_url`` set to this gateway (or
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, which local mode sets) invokes local endpoints as it would real ones. The
gateway does what SageMaker's front end does and the serving container does not: it routes a request to a variant's
fleet by weight (blue/green shifts traffic by rewriting the weights), loads a multi-model endpoint's target model from
its S3 prefix into the container on first use, answers errors in the Runtime API's shape (``ValidationError``,
``ModelError`` with the container's status and message), and publishes SageMaker's invocation metrics.

Endpoints are JSON records (one ``<endpoint>.json`` each); the gateway rereads a record when its file changes, so
deploys need no restart. Two ways to find them:

- ``--records-dir DIR --server URL``: the embedded SageMaker's records, ``DIR/<account>/<region>/<endpoint>.json``.
  One runtime serves every account, as one regional SageMaker Runtime URL does on AWS: a request goes to the
  endpoint of the caller's account (the access key of its signature, resolved by the embedded AWS's control
  ``POST /modelwerk-api/sagemaker/account-of``) in the region it was signed for. The embedded AWS starts this
  runtime itself and publishes its URL (``POST /modelwerk-api/sagemaker/runtime``). Invocation metrics go to the
  endpoint's account, in its region.
- ``--endpoints-dir DIR``: one folder of records, one account (the library's own local deploy).

Data capture happens here, as SageMaker's front end captures on AWS (not the container): a record's ``capture``
(the endpoint config's DataCaptureConfig) makes the gateway capture each answered request in SageMaker's format and
key layout (:mod:`modelwerk.core.capture`). The capture line is appended to a spool on local disk before the answer
is sent (:class:`CaptureSpool`), so an answered request is captured even when this process or a serving worker dies;
a background thread writes the spool to S3 and a later runtime replays what a dead one left. A retried request
(botocore resends a POST with the same ``amz-sdk-invocation-id``) keeps its event id and is captured once.

A serverless variant (its record's ``serverless``: the endpoint config's ServerlessConfig, an idle time, the folder
its model was extracted to) has no running fleet until a request comes: this gateway starts one then, and that
request waits for it (a cold start, published as ``ModelSetupTime``); the fleet stops after the idle time without a
request, or once the record no longer routes to it. At most ``MaxConcurrency`` requests are in flight on it; beyond,
the caller gets ``ThrottlingException`` (429), as Serverless Inference throttles (:class:`ServerlessCapacity`).

A fleet's workers share one listening socket held by the container's supervisor; a worker accepts only once its
model is loaded, so traffic reaches healthy workers only. A connection that breaks (a worker killed mid-request) is
retried on a new connection for up to :data:`RECONNECT_SECONDS` while the supervisor replaces the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
import urllib.request
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from modelwerk.core.capture import capture_line, object_key
from modelwerk.local.endpoints import SERVERLESS_PID_FILE

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
#: How long a request keeps trying a fleet whose connections break or are refused (a worker being replaced).
RECONNECT_SECONDS = 20.0
#: botocore's id of one API call, the same on each of its retries: the capture's event id when given.
INVOCATION_ID = b"amz-sdk-invocation-id"
_CALL_ID = re.compile(rb"[0-9A-Za-z-]{1,64}")
#: The access key and region of a SigV4 signature.
_CREDENTIAL = re.compile(rb"Credential=([^/,\s]+)/[^/]+/([^/]+)/")
#: How often idle serverless fleets are looked for (seconds).
SERVERLESS_REAP_SECONDS = 0.5


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
    #: The endpoint's account and region (records of the embedded SageMaker): where its models are read.
    account: str | None = None
    region: str | None = None
    #: The endpoint's DataCaptureConfig as the record holds it (None: no capture).
    capture: dict[str, Any] | None = None
    #: A serverless variant: started here on demand (None: a running fleet at ``url``).
    serverless: ServerlessSpec | None = None


@dataclass(frozen=True)
class ServerlessSpec:
    """A serverless variant as its record describes it: its capacity, idle time, and how to start its fleet."""

    memory_mb: int
    max_concurrency: int
    idle_seconds: float
    workdir: str
    environment: dict[str, str]


@dataclass
class Route:
    endpoint: str
    fleets: list[Fleet]
    mode: str = "SingleModel"
    #: The record this route was read from.
    record: str | None = None

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
                    mode=v.get("mode") or doc.get("mode", "SingleModel"), model_data_prefix=v.get("model_data_prefix"),
                    model_cache_dir=v.get("model_cache_dir"), fleet=v.get("fleet", "blue"),
                    account=doc.get("account"), region=doc.get("region"),
                    capture=_capture_of(v.get("capture", doc.get("capture")), doc["endpoint"],
                                        v.get("name", "AllTraffic"), doc.get("account"), doc.get("region")),
                    serverless=_serverless_of(v.get("serverless")))
              for v in doc.get("variants", []) if v.get("url") or v.get("serverless")]
    return Route(endpoint=doc["endpoint"], fleets=fleets, mode=doc.get("mode", "SingleModel"), record=str(path))


def _serverless_of(config: Any) -> ServerlessSpec | None:
    """The record's serverless variant (``config``: its ServerlessConfig), or None for a variant on instances."""
    if not isinstance(config, dict) or not config.get("workdir"):
        return None
    capacity = config.get("config") or {}
    return ServerlessSpec(memory_mb=int(capacity.get("MemorySizeInMB", 0)),
                          max_concurrency=max(int(capacity.get("MaxConcurrency", 1)), 1),
                          idle_seconds=float(config.get("idle_seconds", 300.0)), workdir=str(config["workdir"]),
                          environment={str(k): str(v) for k, v in (config.get("environment") or {}).items()})


def _capture_of(config: Any, endpoint: str, variant: str, account: str | None,
                region: str | None) -> dict[str, Any] | None:
    """The record's DataCaptureConfig as the gateway uses it, or None when it captures nothing. ``destination`` is
    what a spool line starts with: where its record goes."""
    if not isinstance(config, dict) or not config.get("EnableCapture", True) or not config.get("DestinationS3Uri"):
        return None
    percent = float(config.get("InitialSamplingPercentage", 100))
    if percent <= 0:
        return None
    modes = {str(o.get("CaptureMode", "")).lower() for o in config.get("CaptureOptions") or [] if isinstance(o, dict)}
    bucket, _, prefix = str(config["DestinationS3Uri"]).removeprefix("s3://").partition("/")
    destination = {"bucket": bucket, "prefix": prefix.strip("/"), "endpoint": endpoint, "variant": variant,
                   "account": account, "region": region, "kms_key_id": config.get("KmsKeyId") or None}
    return {"fraction": percent / 100.0, "input": not modes or "input" in modes,
            "output": not modes or "output" in modes,
            "destination": json.dumps(destination, separators=(",", ":")).encode()}


class CaptureSpool:
    """Captured invocations on local disk first, then in S3: nothing answered is lost to a crash.

    :meth:`record` (on the request path, before the answer) appends one line,
    ``<destination>\t<epoch seconds>\t<event id>\t<capture line>``,
    to this process's open segment file with a single ``write``: once it returns, the record survives this
    process being killed. Every ``flush_seconds`` a thread seals the segment and writes each sealed segment to S3,
    one object per destination and hour (at most ``max_records`` records each), then deletes it. Object keys are
    derived from the segment's name, so writing a segment again after a failure or a crash replaces the same
    objects; event ids already written are skipped. At start the spool adopts the segments of runtimes that are
    gone; :meth:`close` (a graceful stop) writes everything before it returns.
    """

    def __init__(self, folder: Path, clients: Any = None, *, flush_seconds: float = 1.0, max_records: int = 10_000):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._clients = clients
        self.flush_seconds = flush_seconds
        self.max_records = max_records
        self._lock = threading.Lock()
        self._sequence = 0
        self._fd: int | None = None
        self._written = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._s3: dict[tuple[str | None, str | None], Any] = {}
        self._stop = threading.Event()
        self.records = 0
        self.uploaded = 0
        self._adopt()
        self._open()
        self._thread = threading.Thread(target=self._run, name="capture-spool", daemon=True)
        self._thread.start()

    # -- the request path -------------------------------------------------------------------------------------------
    def record(self, fleet: Fleet, body: bytes, content_type: str | None, output: bytes,
               output_type: str | None, inference_id: str | None, event_id: str | None) -> None:
        capture = fleet.capture
        if capture is None or (capture["fraction"] < 1.0 and random.random() >= capture["fraction"]):
            return
        now = time.time()
        event_id = event_id or str(uuid.uuid4())
        line = capture_line(body if capture["input"] else None, content_type or "application/octet-stream",
                            output if capture["output"] else None, output_type or "application/octet-stream",
                            event_id=event_id, inference_id=inference_id,
                            inference_time=_dt.datetime.fromtimestamp(now, _dt.timezone.utc))
        prefix = f"\t{now:.3f}\t{event_id}\t".encode("latin-1", "replace")
        with self._lock:
            os.write(self._fd, capture["destination"] + prefix + line)
            self._written += 1
            self.records += 1

    # -- segments ----------------------------------------------------------------------------------------------------
    def _open(self) -> None:
        self._sequence += 1
        path = self.folder / f"{os.getpid()}-{self._sequence:08d}.spool"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._path = path
        self._written = 0

    def _seal(self) -> None:
        """Close the open segment if it holds records and start a new one (an empty one is kept open)."""
        with self._lock:
            if not self._written:
                return
            os.close(self._fd)
            os.replace(self._path, self._path.with_suffix(".ready"))
            self._open()

    def _adopt(self) -> None:
        """Seal the segments of runtimes that are gone (killed before they wrote them)."""
        from modelwerk.local import pid_alive

        for path in self.folder.glob("*.spool"):
            owner = path.name.split("-", 1)[0]
            if owner.isdigit() and int(owner) != os.getpid() and not pid_alive(int(owner)):
                os.replace(path, path.with_suffix(".ready"))

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def flush(self) -> bool:
        """Write every sealed segment to S3; False (and logged) when one could not be, kept for the next flush."""
        self._seal()
        done = True
        for path in sorted(self.folder.glob("*.ready")):
            try:
                self._upload(path)
            except Exception as error:  # noqa: BLE001 - kept on disk and tried again; the request path never sees it
                log.warning("capture: segment %s not written to S3 yet (%s); retrying", path.name,
                            " ".join(str(error).split())[:300])
                done = False
                continue
            path.unlink(missing_ok=True)
        return done

    def _upload(self, path: Path) -> None:
        data = path.read_bytes()
        data = data[: data.rfind(b"\n") + 1]  # a line cut short by a crash was never answered
        groups: dict[tuple[bytes, int], list[bytes]] = {}
        first: dict[tuple[bytes, int], float] = {}
        ids: list[str] = []
        taken: set[str] = set()
        for raw in data.splitlines():
            try:
                destination, stamp, event_bytes, line = raw.split(b"\t", 3)
                when, event = float(stamp), event_bytes.decode("latin-1")
            except ValueError:
                log.warning("capture: skipping a malformed line in %s", path.name)
                continue
            if event in self._seen or event in taken:
                continue
            taken.add(event)
            ids.append(event)
            group = groups.setdefault((destination, int(when // 3600)), [])
            first.setdefault((destination, int(when // 3600)), when)
            group.append(line + b"\n")
        for number, ((destination, hour), lines) in enumerate(sorted(groups.items())):
            where = json.loads(destination)
            for start in range(0, len(lines), self.max_records):
                chunk = lines[start:start + self.max_records]
                unique = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{path.stem}/{number}/{start}"))
                key = object_key(where["prefix"], where["endpoint"], where["variant"],
                                 _dt.datetime.fromtimestamp(first[(destination, hour)], _dt.timezone.utc),
                                 unique=unique)
                extra: dict[str, str] = {"ContentType": "application/jsonlines"}
                if where.get("kms_key_id"):
                    extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=where["kms_key_id"])
                self._s3_of(where).put_object(Bucket=where["bucket"], Key=key, Body=b"".join(chunk), **extra)
                self.uploaded += len(chunk)
        for event in ids:
            self._seen[event] = None
        while len(self._seen) > 1_000_000:
            self._seen.popitem(last=False)

    def _s3_of(self, where: dict[str, Any]) -> Any:
        """S3 in the endpoint's account (its execution role on AWS), or this process's own credentials."""
        key = (where.get("account"), where.get("region")) if self._clients is not None else (None, None)
        client = self._s3.get(key)
        if client is None:
            if key[0] is not None:
                client = self._clients("s3", key[0], key[1])
            else:
                import boto3

                client = boto3.client("s3")
            self._s3[key] = client
        return client

    def close(self) -> None:
        """Write everything to S3 (a graceful stop); what cannot be written stays on disk for the next runtime."""
        self._stop.set()
        self._thread.join(timeout=self.flush_seconds + 30)
        if not self.flush():
            log.error("capture: some records could not be written to S3 before the stop; they stay in %s and are "
                      "written by the next runtime", self.folder)
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                if not self._written:
                    self._path.unlink(missing_ok=True)


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

    def __init__(self, clients: Any = None) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._loaded: set[tuple[str, str]] = set()
        self._s3: Any = None
        #: ``clients(service, account, region)``: a client in the endpoint's account (None: this process's own).
        self._clients = clients

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
        from botocore.exceptions import ClientError

        try:
            body = self._s3_of(fleet).get_object(Bucket=bucket, Key=key)["Body"].read()
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

    def _s3_of(self, fleet: Fleet) -> Any:
        """S3 as the endpoint's account reads it (its execution role on AWS)."""
        if self._clients is not None and fleet.account:
            return self._clients("s3", fleet.account, fleet.region)
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3


def _message(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    return str(doc.get("message", doc)) if isinstance(doc, dict) else str(doc)


@dataclass
class _Warm:
    """A serverless fleet that runs."""

    url: str
    pid: int
    endpoint: str
    variant: str
    record: str | None
    idle_seconds: float
    last_used: float


class ServerlessCapacity:
    """Serverless variants' fleets: started by the first request, stopped after the variant's idle time without one.

    The request that finds no fleet waits while one starts (a cold start); its duration is published as SageMaker's
    ``ModelSetupTime`` (``AWS/SageMaker``, microseconds, per EndpointName and VariantName) before the request is
    answered. At most ``MaxConcurrency`` requests are in flight on a variant (waiting for a cold start counts); the
    next gets ``ThrottlingException``. A fleet also stops once its record routes to it no longer (the endpoint was
    deleted or updated), and when the runtime stops.

    ``credentials(account, region)``: the endpoint account's ``AWS_*`` variables for the fleet (None: this process's
    own). ``cloudwatch(account, region)``: a client that ModelSetupTime is published with (None: not published).
    """

    def __init__(self, *, credentials: Any = None, cloudwatch: Any = None,
                 reap_seconds: float = SERVERLESS_REAP_SECONDS):
        self._credentials = credentials
        self._cloudwatch = cloudwatch
        self._lock = threading.Lock()
        self._warm: dict[str, _Warm] = {}
        self._in_flight: dict[str, int] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._stop = threading.Event()
        self.reap_seconds = reap_seconds
        self._thread = threading.Thread(target=self._reap_loop, name="serverless-reaper", daemon=True)
        self._thread.start()

    @contextlib.asynccontextmanager
    async def serving(self, route: Route, fleet: Fleet) -> Any:
        """The URL of the variant's running fleet (started if none runs) for one request; throttled beyond
        MaxConcurrency."""
        spec = fleet.serverless
        assert spec is not None
        key = spec.workdir
        with self._lock:
            if self._in_flight.get(key, 0) >= spec.max_concurrency:
                raise InvokeError(429, "ThrottlingException",
                                  f"Endpoint {route.endpoint} variant {fleet.name} has {spec.max_concurrency} "
                                  "invocations in flight, its MaxConcurrency; retry later or raise MaxConcurrency")
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            yield await self._url(route, fleet, spec)
        finally:
            with self._lock:
                self._in_flight[key] -= 1
                warm = self._warm.get(key)
                if warm is not None:
                    warm.last_used = time.monotonic()

    async def _url(self, route: Route, fleet: Fleet, spec: ServerlessSpec) -> str:
        with self._lock:
            warm = self._warm.get(spec.workdir)
        if warm is not None:
            return warm.url
        async with self._starting.setdefault(spec.workdir, asyncio.Lock()):
            with self._lock:
                warm = self._warm.get(spec.workdir)
            if warm is not None:
                return warm.url
            loop = asyncio.get_running_loop()
            began = time.perf_counter()
            try:
                started = await loop.run_in_executor(None, self._start, route.endpoint, fleet, spec)
            except Exception as error:  # noqa: BLE001 - the container did not start: the caller is told why
                log.warning("serverless %s/%s did not start: %s", route.endpoint, fleet.name, error)
                raise InvokeError(424, "ModelError", f"The serverless variant {fleet.name} of {route.endpoint} did "
                                                     f"not start: {error}") from None
            setup_us = (time.perf_counter() - began) * 1e6
            with self._lock:
                self._warm[spec.workdir] = _Warm(url=started.url, pid=started.pid, endpoint=route.endpoint,
                                                 variant=fleet.name, record=route.record,
                                                 idle_seconds=spec.idle_seconds, last_used=time.monotonic())
            log.info("serverless %s/%s started in %.2f s on %s", route.endpoint, fleet.name, setup_us / 1e6,
                     started.url)
            await loop.run_in_executor(None, self._publish_setup, route.endpoint, fleet, setup_us)
            return started.url

    def _start(self, endpoint: str, fleet: Fleet, spec: ServerlessSpec) -> Any:
        from modelwerk.local.endpoints import start_fleet

        environment = dict(spec.environment)
        own = self._credentials is None or not fleet.account
        if not own:
            environment.update(self._credentials(fleet.account, fleet.region))
        root = os.environ.get("MODELWERK_LOCAL_ROOT")
        started = start_fleet(root=Path(root) if root else None, workdir=Path(spec.workdir), endpoint=endpoint,
                              fleet=fleet.fleet, environment=environment, variant=fleet.name, inherit_aws=own)
        (Path(spec.workdir) / SERVERLESS_PID_FILE).write_text(str(started.pid), encoding="utf-8")
        return started

    def _publish_setup(self, endpoint: str, fleet: Fleet, setup_us: float) -> None:
        if self._cloudwatch is None:
            return
        datum = {"MetricName": "ModelSetupTime", "Unit": "Microseconds", "Value": float(round(setup_us)),
                 "Timestamp": _dt.datetime.now(_dt.timezone.utc),
                 "Dimensions": [{"Name": "EndpointName", "Value": endpoint},
                                {"Name": "VariantName", "Value": fleet.name}]}
        try:
            self._cloudwatch(fleet.account, fleet.region).put_metric_data(Namespace="AWS/SageMaker",
                                                                          MetricData=[datum])
        except Exception as error:  # noqa: BLE001 - a metric lost never fails the request that started the fleet
            log.warning("ModelSetupTime of %s/%s not published: %s", endpoint, fleet.name, error)

    # -- scaling to zero ---------------------------------------------------------------------------------------------
    def _reap_loop(self) -> None:
        while not self._stop.wait(self.reap_seconds):
            try:
                self.reap()
            except Exception:  # noqa: BLE001 - logged; the next look tries again
                log.exception("serverless: looking for idle fleets failed")

    def reap(self) -> int:
        """Stop the fleets idle for their idle time, or no longer routed to; how many stopped."""
        with self._lock:
            records = {key: warm.record for key, warm in self._warm.items()}
        gone = {key for key, record in records.items() if not _routes_to(record, key)}
        now = time.monotonic()
        stopping = []
        with self._lock:
            for key, warm in list(self._warm.items()):
                if self._in_flight.get(key, 0):
                    continue
                if key in gone or now - warm.last_used >= warm.idle_seconds:
                    stopping.append((key, self._warm.pop(key)))
        for key, warm in stopping:
            self._stop_fleet(key, warm, "no longer routed to" if key in gone else
                             f"idle for {warm.idle_seconds:g} s")
        return len(stopping)

    def _stop_fleet(self, key: str, warm: _Warm, why: str) -> None:
        from modelwerk.local.endpoints import stop_process

        log.info("serverless %s/%s stops (%s)", warm.endpoint, warm.variant, why)
        stop_process(warm.pid)
        (Path(key) / SERVERLESS_PID_FILE).unlink(missing_ok=True)

    def running(self) -> dict[str, str]:
        """Working folder -> URL of each running serverless fleet."""
        with self._lock:
            return {key: warm.url for key, warm in self._warm.items()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.reap_seconds + 5)
        with self._lock:
            stopping = list(self._warm.items())
            self._warm.clear()
        for key, warm in stopping:
            self._stop_fleet(key, warm, "the runtime stops")


def _routes_to(record: str | None, workdir: str) -> bool:
    """Whether the endpoint record still routes to the serverless fleet of ``workdir``."""
    if record is None:
        return True
    try:
        doc = json.loads(Path(record).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # being replaced: looked at again at the next reap
    return any(isinstance(v.get("serverless"), dict) and v["serverless"].get("workdir") == workdir
               for v in doc.get("variants", []))


class Accounts:
    """Every account's endpoints behind one runtime: the caller's account from its access key (asked once per key of
    the embedded AWS, which issued it), clients and invocation metrics in an endpoint's account."""

    def __init__(self, server_url: str, *, default_region: str, samples_dir: Path | None = None,
                 metrics: bool = True):
        from modelwerk.local.services._context import ServiceContext

        self.server_url = server_url.rstrip("/")
        self.default_region = default_region
        self.samples_dir = samples_dir
        self.publish_metrics = metrics
        self._context = ServiceContext(endpoint_url=self.server_url, default_region=default_region)
        self._accounts: dict[str, str] = {}
        self._metrics: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def account_of(self, access_key: str) -> str:
        """Blocking (an HTTP call the first time): run it off the event loop."""
        known = self._accounts.get(access_key)
        if known is not None:
            return known
        request = urllib.request.Request(f"{self.server_url}/modelwerk-api/sagemaker/account-of", method="POST",
                                         data=json.dumps({"access_key": access_key}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            account = json.loads(response.read())["account"]
        self._accounts[access_key] = account
        return account

    def client(self, service: str, account: str, region: str | None) -> Any:
        return self._context.client(service, account, region or self.default_region)

    def credentials(self, account: str, region: str | None) -> dict[str, str]:
        """``AWS_*`` variables of a process acting in ``account`` (a serverless fleet)."""
        return self._context.credentials(account, region or self.default_region)

    def metrics(self, account: str, region: str) -> Any:
        """The invocation metrics published into ``account``'s CloudWatch in ``region`` (None when switched off)."""
        if not self.publish_metrics:
            return None
        with self._lock:
            found = self._metrics.get((account, region))
            if found is None:
                from modelwerk.local.endpoint_metrics import InvocationMetrics

                samples = self.samples_dir / account if self.samples_dir else None
                # alarms judge deployments within seconds locally
                found = InvocationMetrics(lambda: self.client("cloudwatch", account, region), flush_seconds=1.0,
                                          samples_dir=samples)
                self._metrics[(account, region)] = found
            return found

    def close(self) -> None:
        with self._lock:
            for metrics in self._metrics.values():
                metrics.close()
            self._metrics.clear()


class FleetConnections:
    """Keep-alive HTTP/1.1 connections to the fleets, one request at a time on each: the invocation's hot path.

    A general HTTP client costs several times the serving container's own time per request; this speaks just what
    the serving container answers (a body of ``Content-Length`` bytes, or up to the close). A request on an idle
    connection the fleet has closed meanwhile is sent again on a new one at once; every other connection failure
    reaches the caller (``OSError``, ``IncompleteReadError``), as does ``TimeoutError`` after ``timeout`` seconds.
    """

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self._idle: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def post(self, url: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        idle = self._idle.setdefault(url, [])
        if idle:
            reader, writer = idle.pop()
            try:
                return await self._exchange(url, path, headers, body, reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass  # closed by the fleet while idle (or its worker died): a new connection below
        host, _, port = url.removeprefix("http://").partition(":")
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(host, int(port or 80))
        return await self._exchange(url, path, headers, body, reader, writer)

    async def _exchange(self, url: str, path: str, headers: dict[str, str], body: bytes,
                        reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, dict, bytes]:
        lines = [f"POST {path} HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\nContent-Length: {len(body)}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        try:
            async with asyncio.timeout(self.timeout):
                writer.write("".join(lines).encode("latin-1") + b"\r\n" + body)
                head = await reader.readuntil(b"\r\n\r\n")
                status_line, *fields = head[:-4].split(b"\r\n")
                answer = {}
                for line in fields:
                    name, _, value = line.partition(b":")
                    answer[name.strip().lower()] = value.strip()
                length = answer.get(b"content-length")
                payload = await (reader.readexactly(int(length)) if length is not None else reader.read())
        except BaseException:
            writer.close()
            raise
        if length is None or answer.get(b"connection", b"").lower() == b"close":
            writer.close()
        else:
            self._idle[url].append((reader, writer))
        return int(status_line.split(b" ", 2)[1]), answer, payload

    def close(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()


class Gateway:
    """The ASGI application (raw, no framework: it sits on every request's path).

    With ``accounts``, ``endpoints_dir`` holds ``<account>/<region>/`` folders and a request is routed by its
    signature; without, it is one folder of records and ``metrics`` records every request.
    """

    def __init__(self, endpoints_dir: Path, *, metrics: Any = None, accounts: Accounts | None = None,
                 spool: CaptureSpool | None = None):
        self.folder = Path(endpoints_dir)
        self.spool = spool
        self.table = EndpointTable(self.folder)
        self.accounts = accounts
        self._tables: dict[tuple[str, str], EndpointTable] = {}
        self.loader = ModelLoader(accounts.client if accounts is not None else None)
        self.metrics = metrics
        self.connections = FleetConnections()
        self._session: Any = None
        if accounts is not None:
            self.serverless = ServerlessCapacity(
                credentials=accounts.credentials,
                cloudwatch=(lambda account, region: accounts.client("cloudwatch", account, region))
                if accounts.publish_metrics else None)
        else:
            self.serverless = ServerlessCapacity(cloudwatch=_own_cloudwatch if metrics is not None else None)

    async def _routing(self, headers: dict[bytes, bytes]) -> tuple[EndpointTable, Any]:
        """The records and the metrics of the caller's account and region."""
        if self.accounts is None:
            return self.table, self.metrics
        signed = _CREDENTIAL.search(headers.get(b"authorization", b""))
        if signed:
            access_key, region = signed.group(1).decode("latin-1"), signed.group(2).decode("latin-1")
            loop = asyncio.get_running_loop()
            try:
                account = await loop.run_in_executor(None, self.accounts.account_of, access_key)
            except OSError as error:
                raise InvokeError(500, "InternalFailure", f"the embedded AWS did not say whose access key "
                                                          f"{access_key} is: {error}") from None
        else:  # an unsigned request: the embedded AWS's default account, as moto takes it
            from moto.core import DEFAULT_ACCOUNT_ID

            account, region = DEFAULT_ACCOUNT_ID, self.accounts.default_region
        table = self._tables.get((account, region))
        if table is None:
            table = self._tables[(account, region)] = EndpointTable(self.folder / account / region)
        return table, self.accounts.metrics(account, region)

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
        metrics = self.metrics
        try:
            headers = {k.lower(): v for k, v in scope["headers"]}
            table, metrics = await self._routing(headers)
            route = table.get(name)
            if route is None:
                raise InvokeError(400, "ValidationError", f"Endpoint {name} not found; 'modelwerk endpoints list' "
                                                            "shows the local endpoints")
            body = await _read_body(receive)
            fleet = route.pick(_header(headers, TARGET_VARIANT))
            status, out_headers, payload, model_seconds = await self._invoke(route, fleet, headers, body)
            if fleet.capture is not None and self.spool is not None:  # on disk before the caller has its answer
                self.spool.record(fleet, body, _header(headers, "content-type"), payload, _content_type(out_headers),
                                  _header(headers, "x-amzn-sagemaker-inference-id"),
                                  _call_id(headers))
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
            if metrics is not None and fleet is not None:
                total = time.perf_counter() - started
                model_us = None if model_seconds is None else int(model_seconds * 1e6)  # never reached the model
                metrics.record(name, fleet.name, status, model_us, int(max(total - (model_seconds or 0.0), 0) * 1e6))

    async def _invoke(self, route: Route, fleet: Fleet, headers: dict[bytes, bytes], body: bytes):
        if len(body) > MAX_PAYLOAD_BYTES:
            raise InvokeError(413, "ValidationError",
                                f"Request body of {len(body)} bytes is over the {MAX_PAYLOAD_BYTES} byte limit; "
                                "send fewer rows per request")
        target = _header(headers, TARGET_MODEL)
        session = await self._client()
        if fleet.mode == "MultiModel":
            if not target:
                raise InvokeError(400, "ValidationError",
                                    f"Endpoint {route.endpoint} is a multi-model endpoint: set TargetModel")
            await self.loader.ensure(session, fleet, target)
        elif target:
            raise InvokeError(400, "ValidationError",
                                f"Endpoint {route.endpoint} is not a multi-model endpoint: TargetModel is not allowed")
        forwarded = {k.decode(): v.decode("latin-1") for k, v in headers.items() if k in FORWARDED}
        if fleet.serverless is not None:
            async with self.serverless.serving(route, fleet) as url:
                return await self._answer(session, dataclasses.replace(fleet, url=url), target, forwarded, body)
        return await self._answer(session, fleet, target, forwarded, body)

    async def _answer(self, session: Any, fleet: Fleet, target: str | None, forwarded: dict[str, str], body: bytes):
        """The fleet's answer (a multi-model target loaded again if the container evicted it), or ModelError."""
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
        started = time.perf_counter()
        deadline = time.monotonic() + RECONNECT_SECONDS
        pause = 0.02
        while True:
            try:
                status, answer, payload = await self.connections.post(fleet.url, "/invocations", headers, body)
                seconds = time.perf_counter() - started
                out = [(b"x-amzn-invoked-production-variant", fleet.name.encode())]
                content_type = answer.get(b"content-type")
                if content_type:
                    out.append((b"content-type", content_type))
                custom = answer.get(b"x-amzn-sagemaker-custom-attributes")
                if custom:
                    out.append((b"x-amzn-sagemaker-custom-attributes", custom))
                return status, out, payload, seconds
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
                # a worker killed mid-request, or none accepting yet: its supervisor replaces it, and the new
                # connection waits in the fleet's backlog until a worker with its model loaded accepts it
                if isinstance(exc, TimeoutError) or time.monotonic() + pause > deadline:
                    raise InvokeError(503, "ServiceUnavailable",
                                        f"Variant {fleet.name} is not answering ({exc.__class__.__name__}); "
                                        "'modelwerk endpoints describe' shows its state") from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                self.connections.close()
                await asyncio.get_running_loop().run_in_executor(None, self.serverless.close)
                if self.spool is not None:
                    await asyncio.get_running_loop().run_in_executor(None, self.spool.close)
                if self.metrics is not None:
                    self.metrics.close()
                if self.accounts is not None:
                    self.accounts.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _call_id(headers: dict[bytes, bytes]) -> str | None:
    """botocore's invocation id when it is one (a UUID), to serve as the capture's event id."""
    value = headers.get(INVOCATION_ID)
    return value.decode("ascii") if value and _CALL_ID.fullmatch(value) else None


def _content_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"content-type":
            return value.decode("latin-1")
    return None


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
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--records-dir", type=Path, help="the embedded SageMaker's records: <account>/<region>/")
    where.add_argument("--endpoints-dir", type=Path, help="one folder of endpoint records, one account")
    parser.add_argument("--server", help="the embedded AWS (with --records-dir)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"),
                        help="the region of unsigned requests (with --records-dir)")
    parser.add_argument("--samples-dir", type=Path, help="latency samples for percentile alarms, per account")
    parser.add_argument("--no-metrics", action="store_true", help="do not publish invocation metrics")
    parser.add_argument("--capture-spool", type=Path,
                        help="the data capture spool (default: .capture-spool in the records folder)")
    parser.add_argument("--capture-flush-seconds", type=float, default=1.0,
                        help="how often the spool is written to S3 (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    import uvicorn

    if args.records_dir is not None:
        if not args.server:
            parser.error("--records-dir needs --server, the embedded AWS that keeps the records")
        accounts = Accounts(args.server, default_region=args.region, samples_dir=args.samples_dir,
                            metrics=not args.no_metrics)
        spool = CaptureSpool(args.capture_spool or args.records_dir / ".capture-spool", accounts.client,
                             flush_seconds=args.capture_flush_seconds)
        app = Gateway(args.records_dir, accounts=accounts, spool=spool)
        _exit_with_parent()
    else:
        app = Gateway(args.endpoints_dir, metrics=None if args.no_metrics else _own_account_metrics(),
                      spool=CaptureSpool(args.capture_spool or args.endpoints_dir / ".capture-spool",
                                         flush_seconds=args.capture_flush_seconds))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="on")


def _exit_with_parent(seconds: float = 2.0) -> None:
    """The embedded AWS started this runtime and stops it; should it end without doing so (killed), the runtime
    ends too rather than serving a server that is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(seconds)
        log.info("the embedded AWS that started this runtime is gone: stopping")
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _own_cloudwatch(account: str | None, region: str | None) -> Any:
    """This process's own CloudWatch (the library's local deploy): ModelSetupTime goes where its metrics go."""
    import boto3

    return boto3.client("cloudwatch")


def _own_account_metrics() -> Any:
    """Invocation metrics into this process's account (the library's local deploy), None outside local mode."""
    if not os.environ.get("AWS_ENDPOINT_URL"):
        return None
    import boto3

    from modelwerk.local.endpoint_metrics import InvocationMetrics, default_samples_dir

    account = boto3.client("sts").get_caller_identity()["Account"]
    # alarms judge deployments within seconds locally
    return InvocationMetrics(lambda: boto3.client("cloudwatch"), flush_seconds=1.0,
                             samples_dir=default_samples_dir(account))


if __name__ == "__main__":
    main()
