"""SageMaker's invocation metrics for local endpoints, published to the embedded CloudWatch.

On AWS, SageMaker publishes per endpoint variant, in namespace ``AWS/SageMaker`` with the dimensions
``EndpointName`` and ``VariantName``: ``Invocations``, ``Invocation4XXErrors`` and ``Invocation5XXErrors`` (unit
``None``; the error metrics carry 1 or 0 per request, so their Average is the error rate and their Sum the count),
``ModelLatency`` and ``OverheadLatency`` (``Microseconds``), and on multi-model endpoints ``ModelCacheHit`` (1 or 0
per request). The local SageMaker Runtime records each request here; a background thread aggregates the requests
per second and publishes them, so recording costs an append and nothing else.

Counters are published as ``StatisticValues`` (one datum per second, not one per request). Latencies are published
as ``Values``/``Counts``, the form from which CloudWatch computes percentiles. The embedded CloudWatch keeps every
such sample but answers no percentile: ``GetMetricStatistics`` drops ``ExtendedStatistics`` and a ``pNN`` stat in
``GetMetricData`` fails. So the publisher also appends the latency samples it published to a sample log under the
local records (``<records>/local/metrics/``), and the local alarm evaluator computes percentiles from it
(:class:`SampleLog`); counts, sums and averages always come from the embedded CloudWatch itself.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

NAMESPACE = "AWS/SageMaker"
#: CloudWatch's limits for one PutMetricData datum and request (the request also stays far below 1 MB).
MAX_VALUES_PER_DATUM = 150
MAX_DATUMS_PER_REQUEST = 20
#: Datums kept for a retry while CloudWatch cannot be reached; beyond it the oldest are dropped (and logged).
MAX_PENDING_DATUMS = 50_000
#: Where the sample log lives under the local records.
SAMPLES_DIR = Path("local") / "metrics"
LATENCY_METRICS = ("ModelLatency", "OverheadLatency")
#: Every local process (fleets, runtimes, Spark, the embedded AWS) shares this machine's cores, so a model latency
#: judged locally counts as slow only above this: the threshold of deployed ModelLatency alarms and the promotion
#: gate's budget are at least this locally (the dev endpoints configure it themselves).
LOCAL_LATENCY_FLOOR_MS = 2000
_SAMPLE_KEYS = {"namespace", "metric", "dimensions", "timestamp", "values", "counts"}


def default_records_dir() -> Path | None:
    """The local records of this checkout (or ``MODELWERK_STATE_DIR``), as local mode finds them; None outside."""
    from modelwerk import local, settings

    root = os.environ.get("MODELWERK_LOCAL_ROOT") or settings.find_checkout()
    if root is None and not os.environ.get("MODELWERK_STATE_DIR"):
        return None
    return local._records_dir(Path(root or "."))


def samples_dir(records: Path, account: str) -> Path:
    """``<records>/local/metrics/<account>``: one log per account, as CloudWatch keeps metrics per account (staging's
    and prod's endpoints share names)."""
    return records / SAMPLES_DIR / account


def default_samples_dir(account: str) -> Path | None:
    """This checkout's sample log of ``account``, or None outside a checkout."""
    records = default_records_dir()
    return samples_dir(records, account) if records else None


@dataclass
class _Second:
    """What one endpoint variant served within one second."""

    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    model_latency: Counter = field(default_factory=Counter)
    overhead_latency: Counter = field(default_factory=Counter)
    cache_hits: int = 0
    cache_lookups: int = 0


@dataclass
class _Pending:
    datum: dict[str, Any]
    #: The sample-log line of a latency datum, written once CloudWatch accepted the datum.
    sample: dict[str, Any] | None = None


class InvocationMetrics:
    """Collects per-request measurements and publishes SageMaker's invocation metrics every ``flush_seconds``.

    ``cloudwatch_client_factory`` returns a CloudWatch client; it is called on the flushing thread, so its cost never
    lands on a request. A flush that fails is logged and retried at the next one; nothing is raised into the caller.

    Example
    -------
    >>> metrics = InvocationMetrics(lambda: boto3.client("cloudwatch"))
    >>> metrics.record("pump-health", "AllTraffic", 200, model_latency_us=2400, overhead_latency_us=310)
    >>> metrics.close()  # publishes what is left
    """

    def __init__(self, cloudwatch_client_factory: Callable[[], Any], flush_seconds: float = 5.0, *,
                 samples_dir: Path | str | None = None, namespace: str = NAMESPACE):
        if not callable(cloudwatch_client_factory):
            raise TypeError("cloudwatch_client_factory must be a callable that returns a CloudWatch client")
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be positive, not {flush_seconds!r}")
        self._factory = cloudwatch_client_factory
        self._client: Any = None
        self.flush_seconds = float(flush_seconds)
        self.namespace = namespace
        self.samples = SampleLog(Path(samples_dir) if samples_dir else None)
        self._buffer: deque = deque()
        self._append = self._buffer.append  # bound once: record() is on every request's path
        self._pending: deque[_Pending] = deque()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        #: Requests that could not be counted (malformed measurements) and datums given up, both also logged.
        self.rejected = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="invocation-metrics", daemon=True)
        self._thread.start()

    # -- the request path -------------------------------------------------------------------------------------------
    def record(self, endpoint: str, variant: str, status_code: int, model_latency_us: float | None,
               overhead_latency_us: float | None, target_model: str | None = None, *,
               model_cache_hit: bool | None = None) -> None:
        """Count one request. ``model_latency_us`` is None when the request never reached the model.

        ``target_model`` is accepted for the multi-model call site; SageMaker's invocation metrics carry no
        target-model dimension, so it does not split them. ``model_cache_hit`` (multi-model endpoints) adds
        ``ModelCacheHit``.
        """
        self._append((time.time(), endpoint, variant, status_code, model_latency_us, overhead_latency_us,
                             model_cache_hit))

    # -- the flushing thread ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def flush(self) -> bool:
        """Publish what was recorded; False (and logged) if CloudWatch did not take it, kept for the next flush."""
        with self._flush_lock:
            self._aggregate()
            if not self._pending:
                return True
            try:
                if self._client is None:
                    self._client = self._factory()
                self._publish()
            except Exception as error:  # noqa: BLE001 - any failure is retried; the request path never sees it
                self._client = None
                log.warning("publishing %d invocation metric datum(s) failed, retrying in %.0f s: %s",
                            len(self._pending), self.flush_seconds, error)
                return False
            return True

    def close(self) -> None:
        """Stop the flushing thread and publish what is left."""
        if self._closed:
            return
        self._closed = True
        self._append = self._record_after_close
        self._stop.set()
        self._thread.join(timeout=self.flush_seconds + 30)
        if not self.flush():
            log.warning("%d invocation metric datum(s) were not published before close", len(self._pending))

    def _record_after_close(self, measurement: tuple) -> None:
        self.rejected += 1
        if self.rejected == 1 or self.rejected % 1000 == 0:
            log.warning("a request was recorded after the invocation metrics were closed: not published "
                        "(%d so far)", self.rejected)

    def __enter__(self) -> "InvocationMetrics":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- aggregation -------------------------------------------------------------------------------------------------
    def _aggregate(self) -> None:
        seconds: dict[tuple[str, str, int], _Second] = {}
        rejected: list[str] = []
        while True:
            try:
                at, endpoint, variant, status, model_us, overhead_us, cache_hit = self._buffer.popleft()
            except IndexError:
                break
            problem = _problem(endpoint, variant, status, model_us, overhead_us)
            if problem:
                rejected.append(problem)
                continue
            second = seconds.setdefault((endpoint, variant, int(at)), _Second())
            second.invocations += 1
            second.errors_4xx += 400 <= status < 500
            second.errors_5xx += status >= 500
            if model_us is not None:
                second.model_latency[round(float(model_us))] += 1
            if overhead_us is not None:
                second.overhead_latency[round(float(overhead_us))] += 1
            if cache_hit is not None:
                second.cache_lookups += 1
                second.cache_hits += bool(cache_hit)
        if rejected:
            self.rejected += len(rejected)
            log.warning("%d request measurement(s) not counted in the invocation metrics, for example: %s",
                        len(rejected), rejected[0])
        for (endpoint, variant, second_at), second in sorted(seconds.items(), key=lambda item: item[0][2]):
            self._pending.extend(self._datums(endpoint, variant, second_at, second))
        overflow = len(self._pending) - MAX_PENDING_DATUMS
        if overflow > 0:
            for _ in range(overflow):
                self._pending.popleft()
            self.dropped += overflow
            log.error("CloudWatch has not taken invocation metrics for a while: %d oldest datum(s) dropped", overflow)

    def _datums(self, endpoint: str, variant: str, second_at: int, second: _Second) -> Iterable[_Pending]:
        dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        base = {"Dimensions": dimensions, "Timestamp": second_at}
        n = second.invocations
        yield _Pending({**base, "MetricName": "Invocations", "Unit": "None",
                        "StatisticValues": {"SampleCount": n, "Sum": n, "Minimum": 1.0, "Maximum": 1.0}})
        for name, errors in (("Invocation4XXErrors", second.errors_4xx), ("Invocation5XXErrors", second.errors_5xx)):
            yield _Pending({**base, "MetricName": name, "Unit": "None", "StatisticValues": _zero_one(errors, n)})
        if second.cache_lookups:
            yield _Pending({**base, "MetricName": "ModelCacheHit", "Unit": "None",
                            "StatisticValues": _zero_one(second.cache_hits, second.cache_lookups)})
        for name, samples in (("ModelLatency", second.model_latency), ("OverheadLatency", second.overhead_latency)):
            values = sorted(samples)
            for start in range(0, len(values), MAX_VALUES_PER_DATUM):
                chunk = values[start:start + MAX_VALUES_PER_DATUM]
                counts = [samples[v] for v in chunk]
                yield _Pending(
                    {**base, "MetricName": name, "Unit": "Microseconds", "Values": [float(v) for v in chunk],
                     "Counts": [float(c) for c in counts]},
                    {"namespace": self.namespace, "metric": name, "unit": "Microseconds",
                     "dimensions": {"EndpointName": endpoint, "VariantName": variant}, "timestamp": second_at,
                     "values": chunk, "counts": counts})

    # -- publishing --------------------------------------------------------------------------------------------------
    def _publish(self) -> None:
        """Send the pending datums in order; each accepted request leaves the queue, so a retry sends no duplicate."""
        region = getattr(getattr(self._client, "meta", None), "region_name", None)
        while self._pending:
            batch = [self._pending[i] for i in range(min(MAX_DATUMS_PER_REQUEST, len(self._pending)))]
            self._client.put_metric_data(Namespace=self.namespace, MetricData=[p.datum for p in batch])
            for _ in batch:
                self._pending.popleft()
            self.samples.append([{**p.sample, "region": region} for p in batch if p.sample is not None])


def _zero_one(ones: int, total: int) -> dict[str, float]:
    """The statistics of ``total`` samples of which ``ones`` are 1 and the rest 0 (SageMaker's per-request flags)."""
    return {"SampleCount": float(total), "Sum": float(ones), "Minimum": 0.0 if ones < total else 1.0,
            "Maximum": 1.0 if ones else 0.0}


def _problem(endpoint: Any, variant: Any, status: Any, model_us: Any, overhead_us: Any) -> str | None:
    if not isinstance(endpoint, str) or not endpoint or not isinstance(variant, str) or not variant:
        return f"endpoint and variant must be non-empty strings, got {endpoint!r}/{variant!r}"
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return f"status code {status!r} of {endpoint}/{variant} is not an HTTP status"
    for name, value in (("model latency", model_us), ("overhead latency", overhead_us)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return f"{name} {value!r} of {endpoint}/{variant} is not a non-negative number of microseconds"
    return None


class SampleLog:
    """Latency samples as published to CloudWatch, kept where the local alarm evaluator can compute percentiles.

    Each publishing process appends JSON lines to its own file (no locking between writers); a reader follows every
    file incrementally and keeps what it has read in memory.
    """

    #: A reader forgets samples this much older than the newest it read (CloudWatch's longest alarm window is a day).
    RETENTION_SECONDS = 2 * 24 * 3600

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._file: Path | None = None
        self._offsets: dict[Path, int] = {}
        self._lines: list[dict[str, Any]] = []
        self._read_lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------------------------------------
    def append(self, lines: list[dict[str, Any]]) -> None:
        if not lines or self.directory is None:
            return
        try:
            if self._file is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._file = self.directory / f"samples-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            payload = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
            with self._file.open("a", encoding="utf-8") as stream:
                stream.write(payload)
        except OSError as error:
            log.error("latency samples not written to %s (percentile alarms cannot see them): %s",
                      self.directory, error)

    # -- reading ------------------------------------------------------------------------------------------------------
    def samples(self, *, namespace: str, metric: str, dimensions: dict[str, str], unit: str | None,
                region: str | None, start: float, end: float) -> list[tuple[float, list[float], list[float]]]:
        """``(timestamp, values, counts)`` of one metric (exact dimensions, as CloudWatch matches) in [start, end)."""
        with self._read_lock:
            self._follow()
            return [(line["timestamp"], line["values"], line["counts"]) for line in self._lines
                    if start <= line["timestamp"] < end and line["metric"] == metric
                    and line["namespace"] == namespace and line["dimensions"] == dimensions
                    and (unit is None or line.get("unit") == unit)
                    and (region is None or line.get("region") in (None, region))]

    def _follow(self) -> None:
        if self.directory is None or not self.directory.is_dir():
            return
        read = 0
        for path in sorted(self.directory.glob("samples-*.jsonl")):
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as stream:
                    stream.seek(offset)
                    chunk = stream.read()
            except OSError as error:
                log.warning("cannot read latency samples from %s: %s", path, error)
                continue
            complete = chunk.rfind(b"\n") + 1  # a line still being written is read next time
            for raw in chunk[:complete].splitlines():
                try:
                    line = json.loads(raw)
                    if not isinstance(line, dict) or not _SAMPLE_KEYS <= line.keys():
                        raise ValueError(raw[:80])
                except ValueError:
                    log.warning("skipping a malformed line in %s", path)
                    continue
                self._lines.append(line)
                read += 1
            self._offsets[path] = offset + complete
        if read:
            horizon = max(line["timestamp"] for line in self._lines) - self.RETENTION_SECONDS
            self._lines = [line for line in self._lines if line["timestamp"] >= horizon]
