"""The server's settings: every environment variable it reads, in one place, read once at start-up.

SageMaker's own variables configure what SageMaker sets (the port, multi-model mode, the worker count); the
``MODELWERK_*`` ones what only this server has (where models are, the memory budget of multi-model mode, data
capture in local mode). An empty variable counts as unset. A bad value stops the server at start-up with one line
(:class:`SettingsError`), never a request later.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# SageMaker's inference contract.
PORT = "SAGEMAKER_BIND_TO_PORT"
MULTI_MODEL = "SAGEMAKER_MULTI_MODEL"
WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
# This server.
HOST = "MODELWERK_SERVING_HOST"
MODEL_DIR = "MODELWERK_MODEL_DIR"
MODEL_ROOT = "MODELWERK_MODEL_ROOT"
MME_MEMORY_MB = "MODELWERK_MME_MEMORY_MB"
# Data capture by the container itself, when it runs alone (on AWS the endpoint captures, and in local mode the
# SageMaker Runtime route does, as SageMaker's front end).
CAPTURE_S3_URI = "MODELWERK_CAPTURE_S3_URI"
CAPTURE_SAMPLING_PERCENT = "MODELWERK_CAPTURE_SAMPLING_PERCENT"
CAPTURE_FLUSH_SECONDS = "MODELWERK_CAPTURE_FLUSH_SECONDS"
CAPTURE_MAX_RECORDS = "MODELWERK_CAPTURE_MAX_RECORDS"
CAPTURE_KMS_KEY_ID = "MODELWERK_CAPTURE_KMS_KEY_ID"
ENDPOINT_NAME = "MODELWERK_ENDPOINT_NAME"
VARIANT_NAME = "MODELWERK_VARIANT_NAME"

DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"
DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_MODEL_ROOT = "/opt/ml/models"
DEFAULT_WORKERS = 1
#: Share of the machine's (or the container's) memory that multi-model mode fills with models by default: the rest
#: is for the interpreter, request bodies and the copies a prediction makes.
DEFAULT_MME_MEMORY_FRACTION = 0.5
DEFAULT_SAMPLING_PERCENT = 100.0
DEFAULT_FLUSH_SECONDS = 1.0
DEFAULT_MAX_RECORDS = 10_000
DEFAULT_VARIANT = "AllTraffic"

_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(.*))?$")
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62})$")


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot run with (one line, names the variable)."""


@dataclass(frozen=True)
class CaptureSettings:
    """Where and how often each worker writes the requests it captures (SageMaker's format and key layout)."""

    bucket: str
    prefix: str
    endpoint_name: str
    variant_name: str = DEFAULT_VARIANT
    sampling_percent: float = DEFAULT_SAMPLING_PERCENT
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    max_records: int = DEFAULT_MAX_RECORDS
    kms_key_id: str | None = None

    @property
    def s3_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class Settings:
    """What the server runs with; :meth:`from_environ` reads it once, the workers get this object as it is."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    multi_model: bool = False
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    model_root: Path = Path(DEFAULT_MODEL_ROOT)
    mme_memory_mb: float = 0.0
    capture: CaptureSettings | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables (``os.environ`` by default); :class:`SettingsError` on a bad value."""
        env = {k: v for k, v in (os.environ if environ is None else environ).items() if v.strip()}
        multi_model = _boolean(env, MULTI_MODEL, False)
        workers = _integer(env, WORKERS, DEFAULT_WORKERS, minimum=1)
        if multi_model and workers != 1:
            raise SettingsError(
                f"{WORKERS}={workers}: multi-model mode runs one worker (the loaded models live in it); "
                f"unset it or set 1"
            )
        memory = _number(env, MME_MEMORY_MB, None, minimum_exclusive=0.0)
        return cls(
            host=env.get(HOST, DEFAULT_HOST).strip(),
            port=_integer(env, PORT, DEFAULT_PORT, minimum=1, maximum=65535),
            workers=workers,
            multi_model=multi_model,
            model_dir=Path(env.get(MODEL_DIR, DEFAULT_MODEL_DIR)),
            model_root=Path(env.get(MODEL_ROOT, DEFAULT_MODEL_ROOT)),
            mme_memory_mb=memory if memory is not None else default_memory_budget_mb(),
            capture=_capture(env),
        )


def _capture(env: Mapping[str, str]) -> CaptureSettings | None:
    uri = env.get(CAPTURE_S3_URI, "").strip()
    if not uri:
        return None
    match = _S3_URI.match(uri)
    if not match:
        raise SettingsError(f"{CAPTURE_S3_URI}={uri!r} is not an s3://bucket/prefix URI")
    endpoint = env.get(ENDPOINT_NAME, "").strip()
    if not endpoint:
        raise SettingsError(f"{ENDPOINT_NAME} must be set when {CAPTURE_S3_URI} is (it names the capture keys)")
    variant = env.get(VARIANT_NAME, DEFAULT_VARIANT).strip()
    for name, value in ((ENDPOINT_NAME, endpoint), (VARIANT_NAME, variant)):
        if not _NAME.match(value):
            raise SettingsError(f"{name}={value!r} is not an endpoint or variant name (letters, digits, '-')")
    return CaptureSettings(
        bucket=match.group(1),
        prefix=(match.group(2) or "").strip("/"),
        endpoint_name=endpoint,
        variant_name=variant,
        sampling_percent=_number(env, CAPTURE_SAMPLING_PERCENT, DEFAULT_SAMPLING_PERCENT, minimum=0.0, maximum=100.0),
        flush_seconds=_number(env, CAPTURE_FLUSH_SECONDS, DEFAULT_FLUSH_SECONDS, minimum_exclusive=0.0),
        max_records=_integer(env, CAPTURE_MAX_RECORDS, DEFAULT_MAX_RECORDS, minimum=1),
        kms_key_id=env.get(CAPTURE_KMS_KEY_ID, "").strip() or None,
    )


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    if name not in env:
        return default
    value = env[name].strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name}={env[name]!r} is neither true nor false")


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    if name not in env:
        return default
    try:
        value = int(env[name].strip())
    except ValueError:
        raise SettingsError(f"{name}={env[name]!r} is not a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise SettingsError(f"{name}={value} must be {bounds}")
    return value


def _number(
    env: Mapping[str, str],
    name: str,
    default: float | None,
    *,
    minimum: float | None = None,
    minimum_exclusive: float | None = None,
    maximum: float | None = None,
) -> float | None:
    if name not in env:
        return default
    try:
        value = float(env[name].strip())
    except ValueError:
        raise SettingsError(f"{name}={env[name]!r} is not a number") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name}={env[name]!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={value:g} must be at least {minimum:g}")
    if minimum_exclusive is not None and value <= minimum_exclusive:
        raise SettingsError(f"{name}={value:g} must be more than {minimum_exclusive:g}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value:g} must be at most {maximum:g}")
    return value


def machine_memory_bytes() -> int:
    """The memory this process may use: the container's cgroup limit when there is one, else the machine's."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:
            return int(text)
    return physical


def default_memory_budget_mb() -> float:
    """Half of :func:`machine_memory_bytes`, in MB of 2**20 bytes (``MODELWERK_MME_MEMORY_MB`` when unset)."""
    return machine_memory_bytes() * DEFAULT_MME_MEMORY_FRACTION / 2**20
