"""The worker's data capture: requests sampled into a buffer, written to S3 by a background thread.

On the request path a captured invocation is one tuple appended to a list under a lock, nothing more. A thread turns
the buffer into SageMaker's capture lines (``modelwerk.core.capture``) every ``flush_seconds``, or sooner when
``max_records`` requests (or :data:`MAX_BUFFER_BYTES` of bodies) are waiting, and writes one object per flush (one
per hour the flush spans, so an object's key names the hour of its records) with ``put_object``, SSE-KMS when a key
is configured. boto3 finds the embedded AWS of local mode through ``AWS_ENDPOINT_URL``.

A write that fails is kept, with its key, and tried again at the next flush; the server never stops for it. What
is kept is bounded (:data:`MAX_PENDING_BYTES`): past that the oldest objects are given up, and the log says how many
records were lost. :meth:`CaptureWriter.close` (the worker's shutdown, on SIGTERM) flushes what is left.
"""

from __future__ import annotations

import datetime as _dt
import logging
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from modelwerk.core.capture import capture_line, object_key
from modelwerk_serving.settings import CaptureSettings

logger = logging.getLogger("modelwerk.serving.capture")

#: Bodies waiting in the buffer that wake the writer before its interval is up.
MAX_BUFFER_BYTES = 16 * 2**20
#: Objects that failed to be written and wait for the next attempt, at most.
MAX_PENDING_BYTES = 256 * 2**20
#: Records serialized between two hand-overs of the GIL to the event loop's thread.
YIELD_EVERY = 128
#: While writes keep failing, how often the log repeats it.
FAILURE_LOG_SECONDS = 30.0


@dataclass
class _Object:
    key: str
    body: bytes
    records: int


class CaptureWriter:
    """Buffers captured invocations and writes them to ``settings.s3_uri`` from a background thread."""

    def __init__(self, settings: CaptureSettings, *, client: Any = None):
        self.settings = settings
        self._client = client
        self._fraction = settings.sampling_percent / 100.0
        self._buffer: list[tuple[float, bytes, str, bytes, str, str | None]] = []
        self._buffered_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pending: deque[_Object] = deque()
        self._pending_bytes = 0
        self._failing_since: float | None = None
        self._last_failure_log: float | None = None
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self.written_records = 0
        self.lost_records = 0

    def start(self) -> CaptureWriter:
        self._thread.start()
        return self

    def record(
        self, input_body: bytes, input_type: str, output_body: bytes, output_type: str, inference_id: str | None
    ) -> None:
        """Capture one invocation (or not, by the sampling percentage). Called on the request path: cheap."""
        if self._fraction < 1.0 and random.random() >= self._fraction:
            return
        item = (time.time(), input_body, input_type, output_body, output_type, inference_id)
        with self._lock:
            self._buffer.append(item)
            self._buffered_bytes += len(input_body) + len(output_body)
            full = len(self._buffer) >= self.settings.max_records or self._buffered_bytes >= MAX_BUFFER_BYTES
        if full:
            self._wake.set()

    def close(self, timeout: float = 60.0) -> None:
        """Write what is buffered and stop the thread (the worker's shutdown)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("capture: the final write to %s did not finish in %.0f s", self.settings.s3_uri, timeout)

    # -- the writer thread -------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.settings.flush_seconds)
            self._wake.clear()
            self._flush()
        self._flush()
        if self._pending:
            lost = sum(o.records for o in self._pending)
            self.lost_records += lost
            logger.error("capture: %d record(s) could not be written to %s before the server stopped and are lost",
                         lost, self.settings.s3_uri)

    def _flush(self) -> None:
        with self._lock:
            items, self._buffer = self._buffer, []
            self._buffered_bytes = 0
        try:
            for obj in self._objects(items):
                self._pending.append(obj)
                self._pending_bytes += len(obj.body)
            self._write_pending()
        except Exception as exc:  # noqa: BLE001 - capture must never take the server down
            logger.error("capture: flushing failed: %s", " ".join(f"{type(exc).__name__}: {exc}".split()))
        self._bound_pending()

    def _objects(self, items: list[tuple[float, bytes, str, bytes, str, str | None]]) -> list[_Object]:
        """Capture lines grouped into objects: one per hour of the records' times, at most ``max_records`` each."""
        objects: list[_Object] = []
        lines: list[bytes] = []
        first, hour = 0.0, -1
        for number, (stamp, input_body, input_type, output_body, output_type, inference_id) in enumerate(items):
            if lines and (int(stamp // 3600) != hour or len(lines) >= self.settings.max_records):
                objects.append(self._object(first, lines))
                lines = []
            if not lines:
                first, hour = stamp, int(stamp // 3600)
            lines.append(capture_line(input_body, input_type, output_body, output_type, event_id=str(uuid.uuid4()),
                                      inference_id=inference_id,
                                      inference_time=_dt.datetime.fromtimestamp(stamp, _dt.UTC)))
            if number % YIELD_EVERY == YIELD_EVERY - 1:
                time.sleep(0)  # hand the GIL to the event loop: a big flush must not hold up requests
        if lines:
            objects.append(self._object(first, lines))
        return objects

    def _object(self, first: float, lines: list[bytes]) -> _Object:
        s = self.settings
        key = object_key(s.prefix, s.endpoint_name, s.variant_name, _dt.datetime.fromtimestamp(first, _dt.UTC))
        return _Object(key=key, body=b"".join(lines), records=len(lines))

    def _write_pending(self) -> None:
        if not self._pending:
            return
        try:
            client = self._s3()
        except Exception as exc:  # noqa: BLE001 - no client (a bad AWS configuration): keep everything, try again
            self._failed(exc)
            return
        extra: dict[str, str] = {"ContentType": "application/jsonlines"}
        if self.settings.kms_key_id:
            extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.settings.kms_key_id)
        while self._pending:
            obj = self._pending[0]
            try:
                client.put_object(Bucket=self.settings.bucket, Key=obj.key, Body=obj.body, **extra)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the object, try again at the next flush
                self._failed(exc)
                return
            self._pending.popleft()
            self._pending_bytes -= len(obj.body)
            self.written_records += obj.records
        if self._failing_since is not None:
            logger.info("capture: writing to %s works again after %.0f s", self.settings.s3_uri,
                        time.monotonic() - self._failing_since)
            self._failing_since = None
            self._last_failure_log = None

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if self._last_failure_log is None or now - self._last_failure_log >= FAILURE_LOG_SECONDS:
            self._last_failure_log = now
            waiting = sum(o.records for o in self._pending)
            logger.warning("capture: cannot write to %s (%s); %d record(s) kept for the next attempt",
                           self.settings.s3_uri, " ".join(f"{type(exc).__name__}: {exc}".split())[:300], waiting)

    def _bound_pending(self) -> None:
        lost = 0
        while self._pending and self._pending_bytes > MAX_PENDING_BYTES:
            obj = self._pending.popleft()
            self._pending_bytes -= len(obj.body)
            lost += obj.records
        if lost:
            self.lost_records += lost
            logger.error("capture: %d record(s) given up after failed writes to %s (more than %d MB waiting)",
                         lost, self.settings.s3_uri, MAX_PENDING_BYTES // 2**20)

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
            self._client = boto3.session.Session().client("s3", config=config)
        return self._client
