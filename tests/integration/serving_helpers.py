"""What the serving container's tests share: model artifacts to serve, and the server as a process on a free port.

The server runs as it does in local mode, ``python -m modelwerk_serving`` with ``containers/serving`` and the
repository on ``PYTHONPATH``; this folder is on it too, so the server can unpickle :class:`SlowModel`.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SERVING = ROOT / "containers" / "serving"
STEPS = ROOT / "sagemaker_pipelines" / "steps"


class SlowModel:
    """An estimator slow to unpickle and to predict (it sleeps), to watch the server while a model works."""

    def __init__(self, *, load_seconds: float = 0.0, predict_seconds: float = 0.0, n_features: int = 3):
        self.load_seconds = load_seconds
        self.predict_seconds = predict_seconds
        self.n_features_in_ = n_features

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        time.sleep(self.load_seconds)

    def predict(self, features: Any) -> np.ndarray:
        time.sleep(self.predict_seconds)
        return np.arange(len(features), dtype=np.int64) % 2


def write_artifact(folder: Path, estimator: Any, columns: list[tuple[str, str]], *, task: str = "classification",
                   label: str = "y", archive: bool = False, **metadata: Any) -> Path:
    """``model.joblib`` + ``metadata.json`` in ``folder`` (as the training step writes them); with ``archive``, only
    the ``model.tar.gz`` SageMaker makes of them. Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {"format": 1, "input_schema": [{"name": n, "type": t} for n, t in columns], "label": label,
                "task": task, **metadata}
    if task == "classification" and hasattr(estimator, "classes_"):
        document.setdefault("classes", np.asarray(estimator.classes_).tolist())
    joblib.dump(estimator, folder / "model.joblib")
    (folder / "metadata.json").write_text(json.dumps(document), encoding="utf-8")
    if archive:
        with tarfile.open(folder / "model.tar.gz", "w:gz") as tar:
            for name in ("model.joblib", "metadata.json"):
                tar.add(folder / name, arcname=name)
                (folder / name).unlink()
    return folder


def logistic_regression(features: int = 10, *, rows: int = 400, seed: int = 0) -> tuple[Any, np.ndarray]:
    """A logistic regression fitted on a numpy array (no feature names), and rows to ask it about."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    y = (x[:, 0] + 0.5 * x[:, 1 % features] > 0).astype(np.int64)
    return LogisticRegression(max_iter=200).fit(x, y), x


def numeric_columns(count: int) -> list[tuple[str, str]]:
    return [(f"f{i}", "double") for i in range(count)]


def step_common():
    """The training steps' shared module, imported the way the step scripts import it."""
    if "step_common" not in sys.modules:
        spec = importlib.util.spec_from_file_location("step_common", STEPS / "step_common.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["step_common"] = module
        spec.loader.exec_module(module)
    return sys.modules["step_common"]


def pump_health_artifact(folder: Path, *, rows: int = 3000, seed: int = 5) -> tuple[Path, Any, Any]:
    """A pump-health model trained by the training step's own functions on generated data.

    Returns (folder, the generated frame, the training step's typed frame of the same rows).
    """
    from modelwerk import settings, synthetic

    sc = step_common()
    use_case = settings.load().use_case("pump-health")
    generated = synthetic.generate(use_case, rows=rows, seed=seed)
    schema = sc.schema_document(use_case.contract)
    typed = generated[[f["name"] for f in schema["input_schema"]] + [schema["label"]]].copy()
    for field in schema["input_schema"]:
        if field["type"] == "string":
            typed[field["name"]] = typed[field["name"]].astype(object)
        else:
            typed[field["name"]] = typed[field["name"]].astype("float64")
    hyperparameters = sc.resolve_hyperparameters({"max_iter": 20})
    model = sc.fit_model(typed, None, schema, hyperparameters)
    metadata = sc.model_metadata(model, schema, trained_rows=len(typed), validation_rows=0, validation_metrics={},
                                 hyperparameters=hyperparameters)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    sc.write_json(folder / "metadata.json", metadata)
    return folder, generated, typed


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(port: int, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 15.0) -> Response:
    """One HTTP request with exactly these headers (http.client adds no Content-Type or Accept of its own)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body.encode() if isinstance(body, str) else body,
                           headers=headers or {})
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


class ServingProcess:
    """``python -m modelwerk_serving`` on a free port, its output in a log file."""

    def __init__(self, log_file: Path, **env: str):
        from modelwerk.local.server import free_port

        self.port = free_port()
        self.log_file = log_file
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_", "MODELWERK_"))}
        self.env = {
            **base,
            "PYTHONPATH": os.pathsep.join([str(SERVING), str(ROOT), str(Path(__file__).parent)]),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "MODELWERK_SERVING_HOST": "127.0.0.1",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> ServingProcess:
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "modelwerk_serving"], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def ping(self, timeout: float = 2.0) -> int | None:
        """/ping's status, or None while nothing answers."""
        try:
            return request(self.port, "GET", "/ping", timeout=timeout).status
        except OSError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> list[int]:
        """Poll /ping until 200; the statuses seen on the way. Fails with the log if the server exits."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            status = self.ping()
            if status is not None:
                seen.append(status)
                if status == 200:
                    return seen
            time.sleep(0.05)
        raise AssertionError(f"the server was not ready in {timeout} s:\n{self.log()}")

    def post(self, path: str, body: bytes | str, content_type: str | None = "text/csv",
             headers: dict[str, str] | None = None, timeout: float = 15.0) -> Response:
        headers = dict(headers or {})
        if content_type is not None:
            headers["Content-Type"] = content_type
        return request(self.port, "POST", path, body, headers, timeout=timeout)

    def get(self, path: str) -> Response:
        return request(self.port, "GET", path)

    def delete(self, path: str) -> Response:
        return request(self.port, "DELETE", path)

    def workers(self) -> list[int]:
        """The worker processes' ids (the supervisor's children that run a server)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and b"spawn_main" in command:
                found.append(int(entry.name))
        return found

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code (killed after ``timeout``)."""
        if self.process.poll() is None:
            workers = self.workers()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                for pid in workers:  # orphaned by the kill
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        return self.process.returncode


def csv_body(rows: np.ndarray) -> str:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows)


def runtime_url(endpoint_url: str) -> str:
    """The embedded AWS's SageMaker Runtime URL, from its local control (what ``local up`` writes into the profiles)."""
    import urllib.request

    request = urllib.request.Request(f"{endpoint_url}/modelwerk-api/sagemaker/runtime", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["url"]


def wait_for(condition, seconds: float = 30.0):
    """``condition()``'s first truthy answer within ``seconds``; fails the test otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError("the condition did not hold in time")
