"""Benchmark: the serving container side by side with its peers, one core each, same models, same request.

Aim
    The container serves a 1-row CSV request to the logistic regression at least 2x the requests/s of KServe's
    Python model server, with p99 latency at most 5 ms at 8 connections, data capture on; the SageMaker Runtime
    route of local mode (gateway + container) at least matches KServe; a small model's cold load (first invocation
    of a model not yet loaded) takes at most 20 ms.

Method
    Two models are trained at the start, deterministically on generated data (no downloads): a scikit-learn
    logistic regression and a 100-tree XGBoost classifier, 10 numeric features, fitted on numpy arrays, written as
    the training step writes an artifact (``model.joblib`` + ``metadata.json``) and logged to an MLflow store in
    the work folder. Every server serves the same joblib file and gets the same row:

    - the container's ``/invocations``, capture on (to a bucket of an embedded AWS) and off;
    - the SageMaker Runtime route of local mode exactly as ``deploy`` starts it: the model's ``model.tar.gz`` in the
      embedded S3, ``CreateModel``/``CreateEndpointConfig`` (DataCaptureConfig, 100 %)/``CreateEndpoint`` against the
      embedded AWS, which starts the serving fleet and its SageMaker Runtime (capture through its disk spool,
      invocation metrics to the embedded CloudWatch); ``wrk`` sends ``/endpoints/<name>/invocations`` to the runtime;
      the runtime and the fleet are moved to core 0 once started;
    - KServe's model server (a ``kserve.Model`` as KServe's own sklearnserver, V1 ``:predict`` with the row as JSON,
      which is all V1 takes; gRPC, the per-request latency log line and the access log off);
    - multi-model-server with the sagemaker-inference toolkit's default handler service, configuration and log
      settings (one worker, CSV in and out);
    - MLflow's scoring server (``mlflow models serve --env-manager local``, one worker, as it ships; CSV with its
      header line, which its CSV format requires);
    - the floor: a bare ASGI app on the project's uvicorn answering a constant.

    Each server runs alone, pinned to core 0 (``taskset -c 0``, with the runtime route's gateway beside its
    container); ``wrk`` runs on core 1 with 8 connections and 1 thread: a warm-up, then three runs of a fixed
    duration of which the best counts (other work on a shared machine only ever takes throughput away), a Lua
    ``done`` hook reporting requests/s and the exact p50/p99 of its latency histogram. Beside them: the CPU the
    server's processes spent per request (steadier than requests/s when the machine is shared) and the share of
    core 0 other processes took meanwhile. The embedded AWS and this script stay on core 1. Every server's answer
    is checked against the model's own prediction before it is measured, and the capture records are counted
    against the requests served.

    Multi-model: 1,000 tiny logistic regressions (distinct files) in a model root. The container loads each with
    ``POST /models`` and invokes it (cold load), invokes each again (warm), then, restarted, loads each lazily on
    its first invocation routed by ``X-Amzn-SageMaker-Target-Model``. multi-model-server registers models with
    ``POST /models?url=...`` (one worker process per model): 50 of them, its total extrapolated to all.

    Peers install into their own virtual environments under the work folder from the pins in
    ``benchmarks/serving_peers/`` (reused while the pins are unchanged), never into the project's.

    python benchmarks/serving.py                  # 3 x 10 s per server and model, 1,000 + 50 multi-model loads
    python benchmarks/serving.py --quick          # 1 x 2 s, 100 + 10: a smoke run
    python benchmarks/serving.py --targets container,kserve --profile
    python benchmarks/serving.py --targets crash  # the fault run alone

Fault run (``crash``)
    The deployed route (as above) under ``CRASH_CLIENTS`` threads of boto3 ``sagemaker-runtime`` clients with
    ``Config(retries={"mode": "standard"})`` (3 attempts), each invoking one 1-row CSV after another for
    ``CRASH_SECONDS``; at ``CRASH_KILL_AT`` the fleet's serving worker gets SIGKILL. It reports the requests that
    failed after the client's retries (aim: 0), the outage (the longest time no request completed, around the kill),
    and the 2xx answers missing from the capture in S3 once the runtime stopped gracefully (aim: 0).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

import peer_venv  # noqa: E402 - benchmarks/peer_venv.py, beside this script
from modelwerk.local.server import free_port, wait_healthy  # noqa: E402
from sagemaker_pipelines.steps.step_common import FORMAT, METADATA_FILE, MODEL_FILE  # noqa: E402

PEERS = Path(__file__).resolve().parent / "serving_peers"
SERVING = ROOT / "containers" / "serving"
SERVER_PACKAGE = SERVING / "modelwerk_serving"
GATEWAY = ROOT / "modelwerk" / "local" / "runtime.py"
DEFAULT_WORK = ROOT / ".modelwerk" / "benchmarks" / "serving"

SERVER_CORE, CLIENT_CORE = 0, 1
FEATURES = [f"f{i}" for i in range(10)]
LABEL = "failure"
TRAIN_ROWS = 20_000
SEED = 20_240_601
MME_FEATURES = 4
MME_ROWS = 64
REGION = "eu-central-1"
BUCKET = "modelwerk-benchmark-capture"
TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"

TARGETS = {  # name: label in the table
    "container": "modelwerk container, capture on",
    "container-nocapture": "modelwerk container, capture off",
    "runtime": "runtime route as deployed (capture, metrics)",
    "kserve": "KServe model server (V1, JSON)",
    "mms": "multi-model-server + sagemaker-inference",
    "mlflow": "MLflow scoring server",
    "floor": "uvicorn constant (floor)",
    "crash": "fault run: a serving worker killed under load",
}
MODELS = ("logistic", "xgboost")
#: The fault run: load from boto3 clients with standard retries, one serving worker killed part-way.
CRASH_CLIENTS = 4
CRASH_SECONDS = 60.0
CRASH_KILL_AT = 20.0
AIM_CONTAINER_OVER_KSERVE = 2.0
AIM_P99_MS = 5.0
AIM_COLD_LOAD_MS = 20.0


class BenchmarkError(Exception):
    """Something the benchmark needs is missing or a server misbehaved: one line for the user, exit 1."""


# --- tools and environments ------------------------------------------------------------------------------------


def check_tools(targets: set[str]) -> None:
    """The tools the run needs, with how to get each; all missing ones in one message."""
    missing = []
    if not shutil.which("wrk"):
        missing.append("wrk (the load generator): apt-get install -y wrk")
    if not shutil.which("taskset"):
        missing.append("taskset (pins servers to a core): apt-get install -y util-linux")
    if "mms" in targets and not shutil.which("java"):
        missing.append("java 17 (multi-model-server's front end): apt-get install -y openjdk-17-jre-headless")
    try:
        import xgboost  # noqa: F401
    except ImportError:
        missing.append("xgboost in the project venv: .venv/bin/pip install -c constraints.txt xgboost-cpu==3.2.0")
    if "mlflow" in targets and not shutil.which("mlflow", path=str(Path(sys.executable).parent)):
        missing.append("mlflow in the project venv: .venv/bin/pip install -c constraints.txt -r requirements.txt")
    needs_server = targets & {"container", "container-nocapture", "runtime", "mme"}
    if needs_server and not (SERVER_PACKAGE / "__main__.py").is_file():
        missing.append(f"the serving container's server: {SERVER_PACKAGE.relative_to(ROOT)}/__main__.py")
    if missing:
        raise BenchmarkError("missing: " + "; ".join(missing))
    cores = os.sched_getaffinity(0)
    if not {SERVER_CORE, CLIENT_CORE} <= cores:
        raise BenchmarkError(f"needs cores {SERVER_CORE} and {CLIENT_CORE}; this process may run on {sorted(cores)}")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def check_framework_pins(peers: list[str]) -> None:
    """A peer serves the joblib files with the framework versions that wrote them: frameworks.txt's pins."""
    frameworks = ROOT / "frameworks.txt"
    if not frameworks.is_file():
        return
    wanted = _pins(frameworks)
    for name in peers:
        pinned = _pins(PEERS / f"{name}.txt")
        wrong = [f"{p}=={pinned.get(p, '(none)')}" for p, v in wanted.items() if pinned.get(p) != v]
        if wrong:
            raise BenchmarkError(f"serving_peers/{name}.txt pins {', '.join(wrong)}; frameworks.txt pins "
                                 + ", ".join(f"{p}=={v}" for p, v in wanted.items()))


def peer_python(work: Path, name: str, log: Path) -> Path:
    """The Python of the peer's own virtual environment, from ``serving_peers/<name>.txt``."""
    try:
        return peer_venv.peer_python(PEERS / f"{name}.txt", work / "venvs" / name, log)
    except peer_venv.PeerInstallError as exc:
        raise BenchmarkError(str(exc)) from None


# --- models ----------------------------------------------------------------------------------------------------


@dataclass
class Model:
    name: str
    folder: Path  # model.joblib + metadata.json
    estimator: Any
    mlflow_uri: str = ""


def generated_data(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Numeric sensor-like features and a binary label that depends on them non-linearly (so trees have work)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    weights = rng.normal(size=features)
    score = x @ weights + 0.8 * np.sin(2 * x[:, 0]) * x[:, 1 % features] + rng.normal(scale=0.5, size=rows)
    return x, (score > 0).astype(np.int64)


def metadata(estimator: Any, features: list[str], rows: int, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """``metadata.json`` in the shape of ``step_common.model_metadata`` (which needs a fitted Pipeline)."""
    import sklearn

    classes = [int(c) for c in estimator.classes_]
    iterations = getattr(estimator, "n_iter_", getattr(estimator, "n_estimators", 0))
    return {
        "format": FORMAT,
        "use_case": "serving-benchmark",
        "input_schema": [{"name": name, "type": "double"} for name in features],
        "label": LABEL,
        "label_type": "integer",
        "task": "classification",
        "sklearn_version": sklearn.__version__,
        "python_version": ".".join(str(v) for v in sys.version_info[:3]),
        "trained_rows": rows,
        "validation_rows": 0,
        "validation_metrics": {},
        "hyperparameters": hyperparameters,
        "iterations": int(np.max(iterations)),
        "classes": classes,
        "positive_class": classes[1],
    }


def write_artifact(folder: Path, estimator: Any, document: dict[str, Any]) -> Path:
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, folder / MODEL_FILE)
    (folder / METADATA_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def train_models(work: Path) -> dict[str, Model]:
    from sklearn.linear_model import LogisticRegression
    from xgboost import XGBClassifier

    x, y = generated_data(TRAIN_ROWS, len(FEATURES), SEED)
    logistic_hp = {"C": 1.0, "max_iter": 1000}
    xgboost_hp = {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.1, "tree_method": "hist", "n_jobs": 1,
                  "random_state": SEED}
    estimators = {
        "logistic": (LogisticRegression(**logistic_hp).fit(x, y), logistic_hp),
        "xgboost": (XGBClassifier(**xgboost_hp).fit(x, y), xgboost_hp),
    }
    return {
        name: Model(name, write_artifact(work / "models" / name, estimator, metadata(estimator, FEATURES, len(y), hp)),
                    estimator)
        for name, (estimator, hp) in estimators.items()
    }


def log_to_mlflow(work: Path, models: dict[str, Model]) -> str:
    """Log each model to an MLflow store in the work folder (its model URI goes into ``Model.mlflow_uri``);
    returns the tracking URI the scoring server resolves ``models:/`` against."""
    import logging

    import mlflow
    import mlflow.sklearn
    import mlflow.xgboost
    import pandas as pd
    from mlflow.models import infer_signature

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    store = work / "mlflow"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("serving-benchmark", artifact_location=(store / "artifacts").as_uri())
    x, _ = generated_data(8, len(FEATURES), SEED + 1)
    frame = pd.DataFrame(x, columns=FEATURES)
    for model in models.values():
        signature = infer_signature(frame, model.estimator.predict(x))
        flavor = mlflow.xgboost if model.name == "xgboost" else mlflow.sklearn  # each in its own flavor's format
        with mlflow.start_run(experiment_id=experiment, run_name=model.name):
            info = flavor.log_model(model.estimator, name="model", signature=signature)
        model.mlflow_uri = info.model_uri
    return uri


# --- requests --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request a target serves: what wrk sends and what the check sends first."""

    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def content_type(self) -> str:
        return self.headers["Content-Type"]


def request_row(seed: int = SEED + 2) -> np.ndarray:
    x, _ = generated_data(1, len(FEATURES), seed)
    return np.round(x[0], 4)


def csv_body(row: np.ndarray) -> bytes:
    return ",".join(repr(float(v)) for v in row).encode()


def prediction_of(body: bytes, content_type: str) -> Any:
    """The first prediction of a response body: CSV (a line per row) or JSON ``{"predictions": [...]}``."""
    text = body.decode("utf-8", "replace").strip()
    if "json" in content_type:
        document = json.loads(text)
        predictions = document["predictions"] if isinstance(document, dict) else document
        value = predictions[0]
    else:
        value = text.splitlines()[0].split(",")[0]
    return int(float(value))


def post(port: int, request: Request, timeout: float = 10.0) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", request.path, body=request.body, headers=request.headers)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        connection.close()


# --- servers ---------------------------------------------------------------------------------------------------


@dataclass
class Service:
    """A server process: its command (run under ``taskset``), environment, port and how to tell it is ready."""

    name: str
    command: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ping: str | None = None  # a GET path that answers 200 once ready; else the first request that succeeds


@dataclass
class Running:
    service: Service
    process: subprocess.Popen
    log: Path


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWERK_", "SAGEMAKER_", "PYTHONPATH"))}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", MLFLOW_DISABLE_TELEMETRY="true",
               AWS_ACCESS_KEY_ID="benchmark", AWS_SECRET_ACCESS_KEY="benchmark", AWS_DEFAULT_REGION=REGION)
    return env


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


@contextlib.contextmanager
def running(service: Service, logs: Path, *, core: int = SERVER_CORE,
            ready: Callable[[], bool] | None = None, timeout: float = 180.0) -> Iterator[Running]:
    """Start a server pinned to ``core`` in its own process group, wait until it is ready, stop the whole group."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{service.name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["taskset", "-c", str(core), *service.command], env={**base_env(), **service.env}, cwd=service.cwd,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    handle = Running(service, process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise BenchmarkError(f"{service.name} exited with {process.returncode} before it was ready: "
                                     f"{_tail(log)} (log: {log})")
            if _is_ready(service, ready):
                break
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{service.name} was not ready within {timeout:.0f} s (log: {log})")
            time.sleep(0.2)
        yield handle
    finally:
        stop(handle)


def _is_ready(service: Service, ready: Callable[[], bool] | None) -> bool:
    try:
        if service.ping:
            connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=2)
            try:
                connection.request("GET", service.ping)
                if connection.getresponse().status != 200:
                    return False
            finally:
                connection.close()
        return ready() if ready else True
    except (OSError, http.client.HTTPException):
        return False


def stop(handle: Running, grace: float = 20.0) -> None:
    """SIGTERM to the process group (servers flush and finish in-flight work), SIGKILL after ``grace`` seconds."""
    process = handle.process
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        print(f"  {handle.service.name} did not stop within {grace:.0f} s of SIGTERM: killed", flush=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers the server left behind
    process.wait()


def _group(pgid: int) -> Iterator[Path]:
    """The /proc folders of a process group's members."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    yield entry


def _cpu_seconds(proc: Path) -> float:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of a process group's live members (a server's workers live as long as it does)."""
    return sum(_cpu_seconds(proc) for proc in _group(pgid))


def core_busy(core: int = SERVER_CORE) -> float:
    """Seconds the core has been busy since boot (/proc/stat: everything but idle and iowait)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(v) for v in line.split()[1:]]
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in a process group (a server, its workers, a JVM and its Python workers)."""
    total_kb = 0
    for proc in _group(pgid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


# --- load ------------------------------------------------------------------------------------------------------

WRK_SCRIPT = """\
local file = assert(io.open({body_file}, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d %d %d %.1f %.1f %.1f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass
class Load:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    cpu_seconds: float = 0.0  # the server's processes, all threads, during the measurement
    others: float = 0.0  # share of the server core that other processes of the machine took meanwhile

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu_seconds / self.requests if self.requests else float("nan")

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk(port: int, request: Request, seconds: float, connections: int, scratch: Path) -> Load:
    """Run wrk on the client core against one request; exact p50/p99 from its histogram through a Lua hook."""
    scratch.mkdir(parents=True, exist_ok=True)
    body_file = scratch / "body"
    body_file.write_bytes(request.body)
    headers = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in request.headers.items())
    script = scratch / "request.lua"
    script.write_text(WRK_SCRIPT.format(body_file=json.dumps(str(body_file)), headers=headers), encoding="utf-8")
    command = ["taskset", "-c", str(CLIENT_CORE), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}{request.path}"]
    result = subprocess.run(command, capture_output=True, text=True)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRK_RESULT")), None)
    if result.returncode != 0 or line is None:
        raise BenchmarkError(f"wrk failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-300:]}")
    requests, duration_us, *errors, p50, p99, mean = line.split()[1:]
    return Load(int(requests), int(duration_us) / 1e6, sum(int(e) for e in errors), float(p50) / 1e3,
                float(p99) / 1e3, float(mean) / 1e3)


# --- targets ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    target: str
    model: str
    load: Load | None = None
    note: str = ""


@dataclass
class Context:
    work: Path
    logs: Path
    python: Path
    duration: float
    warmup: float
    repeat: int
    connections: int
    row: np.ndarray
    models: dict[str, Model]
    aws_url: str = ""
    mlflow_tracking: str = ""
    peers: dict[str, Path] = field(default_factory=dict)
    profile: bool = False
    captured: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # endpoint: (records, objects, served)
    crash: dict[str, Any] = field(default_factory=dict)
    mms_models: Path | None = None
    load_before: str = field(default_factory=lambda: load_average())


def load_average() -> str:
    """The machine's 1/5/15-minute load: other work on a shared machine shows up here, and in the numbers."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def container_service(ctx: Context, name: str, env: dict[str, str], port: int | None = None) -> Service:
    port = port or free_port()
    return Service(
        name=name,
        command=[str(ctx.python), "-m", "modelwerk_serving"],
        port=port,
        env={"PYTHONPATH": f"{SERVING}:{ROOT}", "SAGEMAKER_BIND_TO_PORT": str(port),
             "MODELWERK_SERVING_HOST": "127.0.0.1", **env},
        cwd=ROOT,
        ping="/ping",
    )


def capture_env(ctx: Context, endpoint: str) -> dict[str, str]:
    return {"MODELWERK_CAPTURE_S3_URI": f"s3://{BUCKET}/capture", "MODELWERK_ENDPOINT_NAME": endpoint,
            "AWS_ENDPOINT_URL": ctx.aws_url}


def csv_request(ctx: Context, path: str = "/invocations") -> Request:
    return Request(path, csv_body(ctx.row), {"Content-Type": "text/csv", "Accept": "text/csv"})


def measure(ctx: Context, servers: list[Running], port: int, request: Request, expected: int | None) -> Load:
    """Check the answer, warm up, then measure ``ctx.repeat`` times and keep the best; the warm-up is discarded.

    The CPU time ``servers`` (their whole process groups) use during a measurement goes with it: unlike requests/s,
    the CPU a request costs hardly moves when other work shares the machine.
    """
    label = servers[-1].service.name
    status, body, content_type = post(port, request)
    if status != 200:
        raise BenchmarkError(f"{label}: answered {status}: {body[:200]!r}")
    if expected is not None:
        got = prediction_of(body, content_type)
        if got != expected:
            raise BenchmarkError(f"{label}: predicted {got}, the model predicts {expected}")
    scratch = ctx.work / "wrk"
    if ctx.warmup > 0:
        wrk(port, request, ctx.warmup, ctx.connections, scratch)
    runs = []
    for _ in range(ctx.repeat):
        before, core_before, started = sum(group_cpu_seconds(s.process.pid) for s in servers), core_busy(), time.time()
        run = wrk(port, request, ctx.duration, ctx.connections, scratch)
        run.cpu_seconds = sum(group_cpu_seconds(s.process.pid) for s in servers) - before
        run.others = max(0.0, core_busy() - core_before - run.cpu_seconds) / (time.time() - started)
        runs.append(run)
    return max(runs, key=lambda run: run.rate)  # a shared machine's noise only ever takes throughput away


def expected_prediction(ctx: Context, model: Model) -> int:
    return int(model.estimator.predict(ctx.row.reshape(1, -1))[0])


def count_capture(ctx: Context, endpoint: str) -> tuple[int, int]:
    """(records, objects) the container captured for ``endpoint`` in the embedded S3."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=ctx.aws_url, region_name=REGION, aws_access_key_id="benchmark",
                      aws_secret_access_key="benchmark")
    records = objects = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"capture/{endpoint}/"):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            records += sum(1 for line in body.splitlines() if line.strip())
            objects += 1
    return records, objects


def run_container(ctx: Context, model: Model, *, capture: bool) -> Result:
    target = "container" if capture else "container-nocapture"
    endpoint = f"bench-{model.name}-{int(time.time())}"
    env = {"MODELWERK_MODEL_DIR": str(model.folder), **(capture_env(ctx, endpoint) if capture else {})}
    service = container_service(ctx, f"{target}-{model.name}", env)
    with running(service, ctx.logs) as server:
        load = measure(ctx, [server], service.port, csv_request(ctx), expected_prediction(ctx, model))
        if ctx.profile and capture and model.name == "logistic":
            profile(ctx, server, service.port, csv_request(ctx), "the container's worker, logistic, capture on")
    if capture:
        records, objects = count_capture(ctx, endpoint)
        ctx.captured[endpoint] = (records, objects, load.requests)
        if records < load.requests:
            return Result(target, model.name, load, f"capture lost records: {records} for {load.requests} requests")
        return Result(target, model.name, load, f"captured {records} records in {objects} objects")
    return Result(target, model.name, load)


@dataclass
class Deployed:
    endpoint: str
    runtime_url: str
    runtime_pid: int
    fleet_pid: int


def aws_client(ctx: Context, service: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=ctx.aws_url, region_name=REGION, aws_access_key_id="benchmark",
                        aws_secret_access_key="benchmark")


def deploy_endpoint(ctx: Context, model: Model, endpoint: str) -> Deployed:
    """The endpoint as ``deploy`` makes it: artifact in S3, model, config with data capture, endpoint; the embedded
    AWS starts the fleet and the SageMaker Runtime. Both are moved to the server core."""
    import io
    import tarfile

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for path in sorted(model.folder.iterdir()):
            tar.add(path, arcname=path.name)
    s3, sagemaker = aws_client(ctx, "s3"), aws_client(ctx, "sagemaker")
    s3.put_object(Bucket=BUCKET, Key=f"models/{endpoint}/model.tar.gz", Body=archive.getvalue())
    sagemaker.create_model(ModelName=endpoint, ExecutionRoleArn="arn:aws:iam::123456789012:role/endpoint",
                           PrimaryContainer={"Image": "modelwerk-serving:latest",
                                             "ModelDataUrl": f"s3://{BUCKET}/models/{endpoint}/model.tar.gz"})
    sagemaker.create_endpoint_config(
        EndpointConfigName=endpoint,
        DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 100,
                           "DestinationS3Uri": f"s3://{BUCKET}/capture",
                           "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]},
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": endpoint, "InstanceType": "ml.m5.large",
                             "InitialInstanceCount": 1}])
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1,
                                                                                          "MaxAttempts": 120})
    request = urllib.request.Request(f"{ctx.aws_url}/modelwerk-api/sagemaker/runtime", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        runtime_url = json.loads(response.read())["url"]
    record = json.loads(next((ctx.work / "aws-state" / "endpoints").glob(f"*/{REGION}/{endpoint}.json")).read_text())
    fleet_pid = int(record["variants"][0]["pid"])
    runtime_pid = int(next(line.split()[0] for line in subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
        if "modelwerk.local.runtime" in line and ctx.aws_url in line))
    for pid in (runtime_pid, *group_pids(fleet_pid)):
        subprocess.run(["taskset", "-a", "-cp", str(SERVER_CORE), str(pid)], capture_output=True)
    return Deployed(endpoint, runtime_url, runtime_pid, fleet_pid)


def group_pids(pgid: int) -> list[int]:
    return [int(p.name) for p in _group(pgid)]


def run_runtime(ctx: Context, model: Model) -> Result:
    endpoint = f"bench-rt-{model.name}-{int(time.time())}"
    deployed = deploy_endpoint(ctx, model, endpoint)
    port = int(deployed.runtime_url.rsplit(":", 1)[1])
    request = Request(f"/endpoints/{endpoint}/invocations", csv_body(ctx.row),
                      {"Content-Type": "text/csv", "Accept": "text/csv"})
    logs = ctx.work / "aws-state" / "local"
    front = Running(Service(name="runtime", command=[], port=port), _Pid(deployed.runtime_pid), logs)
    fleet = Running(Service(name=f"runtime-fleet-{model.name}", command=[], port=0), _Pid(deployed.fleet_pid), logs)
    load = measure(ctx, [fleet, front], port, request, expected_prediction(ctx, model))
    if ctx.profile and model.name == "logistic":
        profile(ctx, front, port, request, "the SageMaker Runtime route as deployed, logistic")
    aws_client(ctx, "sagemaker").delete_endpoint(EndpointName=endpoint)
    served = load.requests  # the check and the warm-up are captured too: the records are at least this many
    records, objects = wait_for_capture(ctx, endpoint, served)
    ctx.captured[endpoint] = (records, objects, served)
    note = (f"captured {records} records in {objects} objects" if records >= served
            else f"capture lost records: {records} for {served} requests")
    return Result("runtime", model.name, load, note)


@dataclass
class _Pid:
    pid: int


def wait_for_capture(ctx: Context, endpoint: str, at_least: int, seconds: float = 30.0) -> tuple[int, int]:
    """The capture of ``endpoint`` once it holds ``at_least`` records (the runtime writes its spool every second)."""
    deadline = time.monotonic() + seconds
    while True:
        records, objects = count_capture(ctx, endpoint)
        if records >= at_least or time.monotonic() > deadline:
            return records, objects
        time.sleep(1.0)


def captured_event_ids(ctx: Context, endpoint: str) -> list[str]:
    s3 = aws_client(ctx, "s3")
    ids = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"capture/{endpoint}/"):
        for item in page.get("Contents", []):
            for line in s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read().splitlines():
                if line.strip():
                    ids.append(json.loads(line)["eventMetadata"]["eventId"])
    return ids


def run_crash(ctx: Context, model: Model) -> Result:
    """The fault run (see the module docstring): lost requests after retry, outage, uncaptured 2xx."""
    import threading

    import boto3
    from botocore.config import Config

    endpoint = f"bench-crash-{model.name}-{int(time.time())}"
    deployed = deploy_endpoint(ctx, model, endpoint)
    body = csv_body(ctx.row)
    config = Config(retries={"mode": "standard"}, read_timeout=70)
    answered: list[tuple[float, str]] = []  # (completion time, the call's invocation id)
    failures: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        runtime = boto3.client("sagemaker-runtime", endpoint_url=deployed.runtime_url, region_name=REGION,
                               aws_access_key_id="benchmark", aws_secret_access_key="benchmark", config=config)
        ids: list[str] = []
        runtime.meta.events.register("before-send.*.*", lambda request, **_: ids.append(
            request.headers.get("amz-sdk-invocation-id", b"").decode() if isinstance(
                request.headers.get("amz-sdk-invocation-id"), bytes) else request.headers.get(
                "amz-sdk-invocation-id", "")))
        while not stop.is_set():
            try:
                runtime.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType="text/csv")["Body"].read()
                answered.append((time.monotonic(), ids[-1]))
            except Exception as exc:  # noqa: BLE001 - counted: a request lost after the client's retries
                failures.append(f"{type(exc).__name__}: {exc}"[:200])

    threads = [threading.Thread(target=client_loop) for _ in range(CRASH_CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(CRASH_KILL_AT)
    workers = [pid for pid in group_pids(deployed.fleet_pid)  # uvicorn's workers, not the resource tracker
               if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    killed_at = time.monotonic()
    for pid in workers[:1]:
        os.kill(pid, signal.SIGKILL)
    time.sleep(max(0.0, CRASH_SECONDS - (time.monotonic() - started)))
    stop.set()
    for thread in threads:
        thread.join(120)
    times = sorted(t for t, _ in answered)
    around = [t for t in times if killed_at - 5 <= t <= killed_at + 30]
    outage = max((b - a for a, b in zip(around, around[1:])), default=float("nan"))
    aws_client(ctx, "sagemaker").delete_endpoint(EndpointName=endpoint)
    stop_runtime(ctx)  # a graceful stop flushes the capture spool
    captured = set(captured_event_ids(ctx, endpoint))
    uncaptured = sum(1 for _, event in answered if event not in captured)
    note = (f"{len(answered)} answered, {len(failures)} lost after retry, outage {outage:.2f} s after killing worker "
            f"{workers[:1]}, {uncaptured} 2xx not captured ({len(captured)} records); client: {CRASH_CLIENTS} threads "
            f"of boto3 sagemaker-runtime, retries standard (3 attempts)")
    if failures:
        note += f"; first failure: {failures[0]}"
    ctx.crash = {"answered": len(answered), "lost": len(failures), "outage_s": outage, "uncaptured": uncaptured}
    return Result("crash", model.name, None, note)


def stop_runtime(ctx: Context) -> None:
    """Restart the embedded AWS's SageMaker Runtime gracefully (SIGTERM: it writes its capture spool first)."""
    for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines():
        if "modelwerk.local.runtime" in line and ctx.aws_url in line:
            pid = int(line.split()[0])
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.2)


def run_kserve(ctx: Context, model: Model) -> Result:
    port = free_port()
    service = Service(
        name=f"kserve-{model.name}",
        command=[str(ctx.peers["kserve"]), str(PEERS / "kserve_model.py"), "--model_dir", str(model.folder),
                 "--model_name", model.name, "--http_port", str(port), "--enable_grpc", "false",
                 "--enable_latency_logging", "false", "--quiet"],
        port=port, ping=f"/v1/models/{model.name}",
    )
    body = json.dumps({"instances": [[float(v) for v in ctx.row]]}).encode()
    request = Request(f"/v1/models/{model.name}:predict", body, {"Content-Type": "application/json"})
    with running(service, ctx.logs) as server:
        load = measure(ctx, [server], port, request, expected_prediction(ctx, model))
    return Result("kserve", model.name, load)


def free_short_port() -> int:
    """A free port below 32767: multi-model-server rejects larger ones ("Invalid port number"), and the kernel's
    ephemeral range starts above it."""
    import socket

    for port in random.Random().sample(range(20_000, 32_000), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchmarkError("no free port between 20000 and 32000 for multi-model-server")


def mms_model_dir(ctx: Context, folder: Path) -> Path:
    """A copy of a model folder where multi-model-server can take it: it parses any path that contains ".model" (as
    the work folder's ``.modelwerk`` does) as an archive's file name, and fails."""
    if ctx.mms_models is None:
        ctx.mms_models = Path(tempfile.mkdtemp(prefix="serving-benchmark-mms-"))
    copy = ctx.mms_models / folder.name
    if not copy.exists():
        shutil.copytree(folder, copy)
    return copy


def mms_service(ctx: Context, name: str, model_dir: Path | None) -> Service:
    port = free_short_port()
    folder = ctx.work / "mms" / name
    shutil.rmtree(folder, ignore_errors=True)
    return Service(
        name=name,
        command=[str(ctx.peers["mms"]), str(PEERS / "mms_serve.py"), "--port", str(port), "--work", str(folder),
                 *(["--model-dir", str(model_dir)] if model_dir else [])],
        port=port,
        env={"PYTHONPATH": str(PEERS), "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"},
        ping="/ping",
    )


def run_mms(ctx: Context, model: Model) -> Result:
    service = mms_service(ctx, f"mms-{model.name}", mms_model_dir(ctx, model.folder))
    request = csv_request(ctx)
    # Its /ping answers before the model's worker is up; the worker answers 503 until then.
    with running(service, ctx.logs, ready=lambda: post(service.port, request)[0] != 503) as server:
        load = measure(ctx, [server], service.port, request, expected_prediction(ctx, model))
    return Result("mms", model.name, load)


def run_mlflow(ctx: Context, model: Model) -> Result:
    port = free_port()
    venv_bin = Path(sys.executable).parent
    service = Service(
        name=f"mlflow-{model.name}",
        command=[str(venv_bin / "mlflow"), "models", "serve", "-m", model.mlflow_uri, "--env-manager", "local",
                 "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        port=port,
        env={"MLFLOW_TRACKING_URI": ctx.mlflow_tracking, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"},
        cwd=ctx.work,
        ping="/ping",
    )
    body = (",".join(FEATURES) + "\n").encode() + csv_body(ctx.row)
    request = Request("/invocations", body, {"Content-Type": "text/csv"})
    with running(service, ctx.logs) as server:
        load = measure(ctx, [server], port, request, expected_prediction(ctx, model))
    return Result("mlflow", model.name, load, "CSV with a header line")


def run_floor(ctx: Context) -> Result:
    port = free_port()
    service = Service(
        name="floor",
        command=[str(ctx.python), "-m", "uvicorn", "floor_app:app", "--host", "127.0.0.1", "--port", str(port),
                 "--no-access-log", "--log-level", "warning", "--lifespan", "off"],
        port=port, env={"PYTHONPATH": str(PEERS)}, cwd=PEERS,
    )
    with running(service, ctx.logs, ready=lambda: post(port, csv_request(ctx))[0] == 200) as server:
        load = measure(ctx, [server], port, csv_request(ctx), None)
    return Result("floor", "-", load, uvicorn_stack(ctx))


def uvicorn_stack(ctx: Context) -> str:
    """Which event loop and HTTP parser uvicorn picks in the project venv (it falls back without uvloop/httptools)."""
    probe = "import importlib.util as u; print(bool(u.find_spec('uvloop')), bool(u.find_spec('httptools')))"
    uvloop, httptools = subprocess.run([str(ctx.python), "-c", probe], capture_output=True, text=True).stdout.split()
    loop, parser = ("uvloop" if uvloop == "True" else "asyncio"), ("httptools" if httptools == "True" else "h11")
    return f"uvicorn with {loop} + {parser}"


# --- profile ---------------------------------------------------------------------------------------------------


def profile(ctx: Context, server: Running, port: int, request: Request, what: str) -> None:
    """Sample ``server``'s busiest process with py-spy (its own venv) while wrk loads ``port``; print where the time
    goes. Its samples are printed only, never mixed into the measured numbers."""
    spy = ctx.peers.get("py-spy") or peer_python(ctx.work, "py-spy", ctx.logs / "install.log")
    ctx.peers["py-spy"] = spy
    busiest = max(_group(server.process.pid), key=_cpu_seconds, default=None)  # the worker, not its supervisor
    worker = int(busiest.name) if busiest else server.process.pid
    out = ctx.work / f"profile-{server.service.name}.txt"
    seconds = max(3, round(ctx.duration))
    with (ctx.logs / "py-spy.log").open("wb") as log:
        recorder = subprocess.Popen(
            ["taskset", "-c", str(CLIENT_CORE), str(spy.parent / "py-spy"), "record", "--pid", str(worker),
             "--duration", str(seconds), "--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking",
             "--threads"],
            stdout=log, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        wrk(port, request, seconds, ctx.connections, ctx.work / "wrk")
        recorder.wait(timeout=60)
    if not out.is_file():
        print(f"  py-spy wrote no profile (see {ctx.logs / 'py-spy.log'})")
        return
    print(f"\nprofile of {what} (pid {worker}) under load (raw stacks: {out}):")
    print(summarize_profile(out.read_text(encoding="utf-8")))


#: Frames every sample of a thread passes through: they say nothing about where the time goes.
_WRAPPERS = ("multiprocessing/", "asyncio/runners.py", "uvicorn/_compat.py", "uvicorn/server.py", "uvicorn/_subprocess",
             "uvicorn/supervisors/", "uvicorn/main.py", "threading.py", "<module>", "Runner.run", "runpy>",
             "__main__.py")


_LINE = re.compile(r":\d+\)$")


def summarize_profile(raw: str, top: int = 20) -> str:
    """py-spy's raw stacks (``--threads``) as shares of the samples: per thread, by function itself, and inclusive
    of what a function calls."""
    threads: dict[str, int] = {}
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        thread, *frames = (_LINE.sub(")", frame) for frame in stack.split(";"))
        samples += n
        name = thread.split(": ", 1)[-1]
        threads[name] = threads.get(name, 0) + n
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            if not any(w in frame for w in _WRAPPERS):
                inclusive[frame] = inclusive.get(frame, 0) + n
    if not samples:
        return "  no samples"
    ranked = sorted(threads.items(), key=lambda kv: -kv[1])
    by_thread = ", ".join(f"{name} {100 * n / samples:.0f} %" for name, n in ranked)
    lines = [f"  {samples} samples; by thread: {by_thread}"]
    lines.append("  own %  function (time in the function itself)")
    lines += [f"  {100 * n / samples:5.1f}  {f}" for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    lines.append("  incl % function (with what it calls)")
    lines += [f"  {100 * n / samples:5.1f}  {f}" for f, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


# --- multi-model -----------------------------------------------------------------------------------------------


@dataclass
class MmeResult:
    label: str
    models: int
    cold_ms: list[float]
    warm_ms: list[float]
    rss_mb: float  # the server's processes with every model loaded
    base_rss_mb: float  # before the first model
    note: str = ""

    @property
    def mb_per_model(self) -> float:
        return (self.rss_mb - self.base_rss_mb) / self.models


def tiny_models(root: Path, count: int) -> dict[str, tuple[Path, bytes, int]]:
    """``count`` distinct tiny logistic regressions under ``root``: name -> (folder, CSV row, its prediction)."""
    from sklearn.linear_model import LogisticRegression

    shutil.rmtree(root, ignore_errors=True)
    features = [f"x{i}" for i in range(MME_FEATURES)]
    models = {}
    for i in range(count):
        x, y = generated_data(MME_ROWS, MME_FEATURES, SEED + 1000 + i)
        estimator = LogisticRegression().fit(x, y)
        name = f"model-{i:04d}"
        folder = write_artifact(root / name, estimator, metadata(estimator, features, MME_ROWS, {}))
        row = np.round(x[0], 4)
        models[name] = (folder, csv_body(row), int(estimator.predict(row.reshape(1, -1))[0]))
    return models


class Client:
    """One keep-alive connection on the client core's side: timed requests, one at a time (what a cold load is)."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        data = response.read()
        return response.status, data, (time.perf_counter() - started) * 1e3

    def close(self) -> None:
        self.connection.close()


def _check(label: str, status: int, body: bytes, expected: int | None = None) -> None:
    if status != 200:
        raise BenchmarkError(f"{label}: answered {status}: {body[:300]!r}")
    if expected is not None and prediction_of(body, "text/csv") != expected:
        raise BenchmarkError(f"{label}: predicted {prediction_of(body, 'text/csv')}, the model predicts {expected}")


def mme_container(ctx: Context, models: dict[str, tuple[Path, bytes, int]], root: Path) -> list[MmeResult]:
    env = {"SAGEMAKER_MULTI_MODEL": "true", "MODELWERK_MODEL_ROOT": str(root), "MODELWERK_MME_MEMORY_MB": "8192"}
    csv = {"Content-Type": "text/csv", "Accept": "text/csv"}
    names = list(models)
    results = []

    def warm_pass(client: Client) -> list[float]:
        times = []
        for name in random.Random(SEED).sample(names, len(names)):
            _, body, expected = models[name]
            status, answer, ms = client.call("POST", "/invocations", body, {**csv, TARGET_MODEL_HEADER: name})
            _check(f"invoke {name}", status, answer, expected)
            times.append(ms)
        return times

    service = container_service(ctx, "mme-container-explicit", env)
    with running(service, ctx.logs) as server:
        base = group_rss_mb(server.process.pid)
        client = Client(service.port)
        cold = []
        for name in names:
            folder, body, expected = models[name]
            load = json.dumps({"model_name": name, "url": str(folder)}).encode()
            status, answer, load_ms = client.call("POST", "/models", load, {"Content-Type": "application/json"})
            _check(f"POST /models {name}", status, answer)
            status, answer, invoke_ms = client.call("POST", f"/models/{name}/invoke", body, csv)
            _check(f"POST /models/{name}/invoke", status, answer, expected)
            cold.append(load_ms + invoke_ms)
        warm = warm_pass(client)
        rss = group_rss_mb(server.process.pid)
        client.close()
    results.append(MmeResult("modelwerk: POST /models + invoke", len(names), cold, warm, rss, base))

    service = container_service(ctx, "mme-container-lazy", env)
    with running(service, ctx.logs) as server:
        base = group_rss_mb(server.process.pid)
        client = Client(service.port)
        cold = []
        for name in names:
            _, body, expected = models[name]
            status, answer, ms = client.call("POST", "/invocations", body, {**csv, TARGET_MODEL_HEADER: name})
            _check(f"lazy invoke {name}", status, answer, expected)
            cold.append(ms)
        warm = warm_pass(client)
        rss = group_rss_mb(server.process.pid)
        client.close()
    results.append(MmeResult("modelwerk: lazy, target-model header", len(names), cold, warm, rss, base))
    return results


def mme_mms(ctx: Context, models: dict[str, tuple[Path, bytes, int]], count: int) -> MmeResult:
    names = list(models)[:count]
    csv = {"Content-Type": "text/csv", "Accept": "text/csv"}
    service = mms_service(ctx, "mme-mms", None)
    with running(service, ctx.logs) as server:
        base = group_rss_mb(server.process.pid)
        client = Client(service.port)
        cold, warm = [], []
        for name in names:
            folder, body, expected = models[name]
            query = urllib.parse.urlencode({"url": str(mms_model_dir(ctx, folder)), "model_name": name,
                                            "initial_workers": 1,
                                            "synchronous": "true"})
            status, answer, load_ms = client.call("POST", f"/models?{query}")
            _check(f"MMS POST /models {name}", status, answer)
            status, answer, invoke_ms = client.call("POST", f"/predictions/{name}", body, csv)
            _check(f"MMS invoke {name}", status, answer, expected)
            cold.append(load_ms + invoke_ms)
        for name in random.Random(SEED).sample(names, len(names)):
            _, body, expected = models[name]
            status, answer, ms = client.call("POST", f"/predictions/{name}", body, csv)
            _check(f"MMS invoke {name}", status, answer, expected)
            warm.append(ms)
        rss = group_rss_mb(server.process.pid)
        client.close()
    result = MmeResult("multi-model-server: POST /models?url= + invoke", len(names), cold, warm, rss, base)
    total_s = sum(cold) / 1e3
    everything = len(models) if len(models) > len(names) else 1000
    result.note = (f"{len(names)} models loaded in {total_s:.1f} s; {everything} would take ~"
                   f"{total_s * everything / len(names):.0f} s and ~"
                   f"{(base + result.mb_per_model * everything) / 1024:.1f} GiB (extrapolated linearly)")
    return result


# --- report ----------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def ratios(a: Result | None, b: Result | None) -> tuple[str, str]:
    """(requests/s of a over b, requests per CPU-second of a over b)."""
    if not (a and b and a.load and b.load):
        return "n/a", "n/a"
    return (f"{a.load.rate / b.load.rate:.2f}x",
            f"{b.load.cpu_us_per_request / a.load.cpu_us_per_request:.2f}x" if a.load.cpu_seconds > 0 else "n/a")


def spool_cost_us(ctx: Context, records: int = 20_000) -> float:
    """The runtime's capture cost per request: :meth:`CaptureSpool.record` of one 1-row request, timed in-process
    (its uploads go nowhere: the spool is closed without writing)."""
    from modelwerk.local.runtime import CaptureSpool, Fleet, _capture_of

    folder = Path(tempfile.mkdtemp(dir=ctx.work))
    try:
        spool = CaptureSpool(folder, flush_seconds=3600)
        fleet = Fleet(name="AllTraffic", url="http://127.0.0.1:1", weight=1.0, capture=_capture_of(
            {"DestinationS3Uri": f"s3://{BUCKET}/capture"}, "cost", "AllTraffic", None, None))
        body, output = csv_body(ctx.row), b"1\n"
        started = time.perf_counter()
        for _ in range(records):
            spool.record(fleet, body, "text/csv", output, "text/csv", None, None)
        elapsed = time.perf_counter() - started
        spool._stop.set()
        return elapsed / records * 1e6
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(ctx: Context, results: list[Result], mme: list[MmeResult]) -> list[str]:
    """Print the table, the ratios and the aims; returns the aims missed."""
    print(f"\nserving: each server alone on core {SERVER_CORE}; wrk -t1 -c{ctx.connections} on core {CLIENT_CORE}; "
          f"{ctx.warmup:g} s warm-up, then the best of {ctx.repeat} x {ctx.duration:g} s; one 1-row request "
          f"({len(FEATURES)} doubles); load average {ctx.load_before} before, {load_average()} after")
    print(f"{'target':<42} {'model':<9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'others':>6} "
          f"{'errors':>6}  note")
    for r in results:
        label = TARGETS[r.target]
        if r.load:
            print(f"{label:<42} {r.model:<9} {r.load.rate:>8,.0f} {r.load.p50_ms:>7.2f} {r.load.p99_ms:>7.2f} "
                  f"{r.load.cpu_us_per_request:>10.0f} {r.load.others:>6.0%} {r.load.errors:>6}  {r.note}")
        else:
            print(f"{label:<42} {r.model:<9} {'-':>8} {'-':>7} {'-':>7} {'-':>10} {'-':>6} {'-':>6}  {r.note}")
    print(f"(CPU us/req: the server's processes; others: the share of core {SERVER_CORE} other processes of the "
          "machine took during the measurement)")

    def find(target: str, model: str) -> Result | None:
        return next((r for r in results if r.target == target and r.model == model), None)

    floor = find("floor", "-")
    print(f"\n{'ratio':<26}" + "".join(f"{m + ' req/s':>17}{'req/CPU-s':>11}" for m in MODELS))
    rows = [("container / KServe", "container", "kserve"), ("runtime route / KServe", "runtime", "kserve"),
            ("container / MMS", "container", "mms"), ("container / MLflow", "container", "mlflow"),
            ("container / floor", "container", None), ("capture on / off", "container", "container-nocapture")]
    for title, left, right in rows:
        cells = [ratios(find(left, m), find(right, m) if right else floor) for m in MODELS]
        print(f"{title:<26}" + "".join(f"{rate:>17}{cpu:>11}" for rate, cpu in cells))
    if find("runtime", "logistic") or ctx.crash:
        print(f"capture at the runtime route: {spool_cost_us(ctx):.1f} us per request (the capture line appended to "
              "the disk spool before the answer; writing it to S3 happens off the request path)")
    for m in MODELS:
        on, off = find("container", m), find("container-nocapture", m)
        if on and off and on.load and off.load:
            print(f"capture costs ({m}): {1e6 / on.load.rate - 1e6 / off.load.rate:+.0f} us of server time per "
                  f"request, p99 {on.load.p99_ms - off.load.p99_ms:+.2f} ms")

    if mme:
        print(f"\nmulti-model: tiny logistic regressions ({MME_FEATURES} features), one request at a time from core "
              f"{CLIENT_CORE}; cold = first invocation of a model not loaded (load + predict)")
        print(f"{'(ms; RSS with every model loaded)':<48} {'models':>6} {'cold p50':>9} {'cold p99':>9} "
              f"{'warm p50':>9} {'warm p99':>9} {'RSS MB':>8} {'KB/model':>9}")
        for m in mme:
            print(f"{m.label:<48} {m.models:>6} {percentile(m.cold_ms, 50):>9.2f} {percentile(m.cold_ms, 99):>9.2f} "
                  f"{percentile(m.warm_ms, 50):>9.2f} {percentile(m.warm_ms, 99):>9.2f} {m.rss_mb:>8.0f} "
                  f"{1024 * m.mb_per_model:>9,.0f}")
            if m.note:
                print(f"  {m.note}")
        ours = next((m for m in mme if m.label.startswith("modelwerk: POST")), None)
        theirs = next((m for m in mme if m.label.startswith("multi-model-server")), None)
        if ours and theirs:
            ours_ms, theirs_ms = percentile(ours.cold_ms, 50), percentile(theirs.cold_ms, 50)
            print(f"cold load ms, ours vs MMS (p50): {ours_ms:.2f} vs {theirs_ms:.0f} ({theirs_ms / ours_ms:.0f}x)")

    missed = []
    print("\naims:")
    container, kserve, runtime = find("container", "logistic"), find("kserve", "logistic"), find("runtime", "logistic")

    def aim(text: str, ok: bool | None) -> None:
        state = "n/a" if ok is None else ("met" if ok else "MISSED")
        if ok is False:
            missed.append(text)
        print(f"  {state:<6} {text}")

    if container and container.load and kserve and kserve.load:
        aim(f"container >= {AIM_CONTAINER_OVER_KSERVE:g}x KServe, logistic, capture on: "
            f"{container.load.rate / kserve.load.rate:.2f}x",
            container.load.rate >= AIM_CONTAINER_OVER_KSERVE * kserve.load.rate)
    else:
        aim(f"container >= {AIM_CONTAINER_OVER_KSERVE:g}x KServe (not measured)", None)
    if container and container.load:
        aim(f"container p99 <= {AIM_P99_MS:g} ms at {ctx.connections} connections, logistic, capture on: "
            f"{container.load.p99_ms:.2f} ms", container.load.p99_ms <= AIM_P99_MS)
    if runtime and runtime.load and kserve and kserve.load:
        aim(f"runtime route >= KServe, logistic: {runtime.load.rate / kserve.load.rate:.2f}x",
            runtime.load.rate >= kserve.load.rate)
    else:
        aim(f"runtime route >= KServe ({runtime.note if runtime else 'not measured'})", None)
    if ctx.crash:
        aim(f"a worker killed under load: lost requests after retry = 0: {ctx.crash['lost']} of "
            f"{ctx.crash['answered'] + ctx.crash['lost']} (outage {ctx.crash['outage_s']:.2f} s)",
            ctx.crash["lost"] == 0)
        aim(f"a worker killed under load: uncaptured 2xx = 0: {ctx.crash['uncaptured']}", ctx.crash["uncaptured"] == 0)
    cold = [m for m in mme if m.label.startswith("modelwerk")]
    for m in cold:
        aim(f"cold load <= {AIM_COLD_LOAD_MS:g} ms ({m.label}): p50 {percentile(m.cold_ms, 50):.2f} ms",
            percentile(m.cold_ms, 50) <= AIM_COLD_LOAD_MS)
    return missed


# --- main ------------------------------------------------------------------------------------------------------


def start_embedded_aws(ctx: Context) -> subprocess.Popen:
    port = free_port()
    shutil.rmtree(ctx.work / "aws-state", ignore_errors=True)
    log = (ctx.logs / "embedded-aws.log").open("wb")
    process = subprocess.Popen([str(ctx.python), "-m", "modelwerk.local.server", "--port", str(port), "--region",
                                REGION, "--state-dir", str(ctx.work / "aws-state")],
                               env={**base_env(), "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    ctx.aws_url = f"http://127.0.0.1:{port}"
    if not wait_healthy(ctx.aws_url, 60):
        process.kill()
        raise BenchmarkError(f"the embedded AWS did not start (log: {ctx.logs / 'embedded-aws.log'})")
    import boto3

    boto3.client("s3", endpoint_url=ctx.aws_url, region_name=REGION, aws_access_key_id="benchmark",
                 aws_secret_access_key="benchmark").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return process


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="seconds measured per server and model (default 10)")
    parser.add_argument("--warmup", type=float, help="seconds of load before each measurement (default 3)")
    parser.add_argument("--repeat", type=int, help="measurements per server and model, the best counts (default 3)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--mme-models", type=int, help="tiny models the container loads (default 1000)")
    parser.add_argument("--mms-models", type=int, help="tiny models multi-model-server registers (default 50)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 s, 1 s warm-up, 100 and 10 models")
    parser.add_argument("--targets", default=",".join([*TARGETS, "mme"]),
                        help=f"comma-separated subset of {', '.join([*TARGETS, 'mme'])} (default: all)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of logistic, xgboost")
    parser.add_argument("--profile", action="store_true",
                        help="sample the container (logistic, capture on) and the runtime gateway under load with "
                             "py-spy and print where the time goes")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="work folder: peer venvs (kept), models, logs (default .modelwerk/benchmarks/serving)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (2.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 3.0)
    args.repeat = args.repeat or (1 if quick else 3)
    args.mme_models = args.mme_models or (100 if quick else 1000)
    args.mms_models = args.mms_models or (10 if quick else 50)
    args.targets = {t.strip() for t in args.targets.split(",") if t.strip()}
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = args.targets - {*TARGETS, "mme"}
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join([*TARGETS, 'mme'])}")
    if not set(args.models) <= set(MODELS) or not args.models:
        parser.error(f"--models takes a subset of {', '.join(MODELS)}")
    if min(args.duration, args.repeat, args.connections, args.mme_models, args.mms_models) < 1:
        parser.error("--duration, --repeat, --connections and the model counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # no network calls from this run
    try:
        return run(args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    check_tools(args.targets)
    work = args.work.resolve()
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    os.sched_setaffinity(0, {CLIENT_CORE})  # this script, its clients and the embedded AWS stay off the server core

    print(f"work folder {work}", flush=True)
    check_framework_pins([name for name, wanted in (("kserve", {"kserve"}), ("mms", {"mms", "mme"}))
                          if args.targets & wanted])
    peers = {}
    if args.targets & {"kserve"}:
        peers["kserve"] = peer_python(work, "kserve", logs / "install.log")
    if args.targets & {"mms", "mme"}:
        peers["mms"] = peer_python(work, "mms", logs / "install.log")
    if args.profile:
        peers["py-spy"] = peer_python(work, "py-spy", logs / "install.log")

    started = time.perf_counter()
    models = train_models(work)
    ctx = Context(work=work, logs=logs, python=Path(sys.executable), duration=args.duration, warmup=args.warmup,
                  repeat=args.repeat, connections=args.connections, row=request_row(), models=models, peers=peers,
                  profile=args.profile)
    if "mlflow" in args.targets:
        ctx.mlflow_tracking = log_to_mlflow(work, models)
    print(f"models trained and written in {time.perf_counter() - started:.1f} s: "
          + ", ".join(f"{m.name} ({(m.folder / MODEL_FILE).stat().st_size / 1024:.0f} KiB)" for m in models.values()),
          flush=True)

    aws = start_embedded_aws(ctx) if args.targets & {"container", "runtime", "crash"} else None
    results: list[Result] = []
    mme: list[MmeResult] = []
    try:
        plan: list[tuple[str, str, Callable[[], Result]]] = []
        for name in args.models:
            model = models[name]
            plan += [
                ("container", name, lambda m=model: run_container(ctx, m, capture=True)),
                ("container-nocapture", name, lambda m=model: run_container(ctx, m, capture=False)),
                ("runtime", name, lambda m=model: run_runtime(ctx, m)),
                *([("crash", name, lambda m=model: run_crash(ctx, m))] if name == args.models[0] else []),
                ("kserve", name, lambda m=model: run_kserve(ctx, m)),
                ("mms", name, lambda m=model: run_mms(ctx, m)),
                ("mlflow", name, lambda m=model: run_mlflow(ctx, m)),
            ]
        plan.append(("floor", "-", lambda: run_floor(ctx)))
        for target, model_name, step in plan:
            if target not in args.targets:
                continue
            print(f"  {TARGETS[target]}, {model_name} ...", flush=True)
            try:
                result = step()
            except BenchmarkError as exc:
                result = Result(target, model_name, note=f"failed: {exc}")
            results.append(result)
            if result.load:
                load = result.load
                print(f"    {load.rate:,.0f} req/s, p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, "
                      f"{load.cpu_us_per_request:.0f} us CPU/req, {load.errors} errors {result.note}", flush=True)
            else:
                print(f"    {result.note}", flush=True)
        if "mme" in args.targets:
            print(f"  multi-model: {args.mme_models} tiny models ...", flush=True)
            root = work / "mme-models"
            tiny = tiny_models(root, max(args.mme_models, args.mms_models))
            mine = dict(list(tiny.items())[: args.mme_models])
            if (SERVER_PACKAGE / "__main__.py").is_file():
                mme += mme_container(ctx, mine, root)
            print(f"  multi-model-server: {args.mms_models} models ...", flush=True)
            mme.append(mme_mms(ctx, tiny, args.mms_models))
    finally:
        if ctx.mms_models is not None:
            shutil.rmtree(ctx.mms_models, ignore_errors=True)
        if aws is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(aws.pid, signal.SIGTERM)
            aws.wait(timeout=30)

    missed = report(ctx, results, mme)
    if missed and not args.profile:
        print("  --targets container --models logistic --profile shows where the container's time goes")
    failed = [r for r in results if r.note.startswith(("failed", "capture lost"))]
    if failed:
        print(f"\n{len(failed)} measurement(s) failed or lost capture records: see the notes above and {logs}")
        return 1
    return 0  # a missed aim is a finding, printed above, not a failure of the run


if __name__ == "__main__":
    sys.exit(main())
