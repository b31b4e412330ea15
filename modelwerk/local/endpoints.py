"""Local endpoints: the serving container's code as local processes, one per fleet, behind the local runtime.

An endpoint is a record (what :mod:`modelwerk.local.runtime` routes by) and one serving process per fleet:
``python -m modelwerk_serving`` from ``containers/serving/``, started the way SageMaker starts the image (model under
``MODELWERK_MODEL_DIR``, port from ``SAGEMAKER_BIND_TO_PORT``, the container's environment). Data capture is the
runtime's (the front end's, as on AWS), from the record's ``capture``. The embedded SageMaker keeps its
records under ``<records>/endpoints/<account>/<region>/<name>.json`` (one runtime serves every account); the
library's own local deploy keeps ``<records>/endpoints/<env>/<name>.json``. ``modelwerk local down`` stops every
fleet with the embedded AWS, serverless ones (started by the runtime on demand) included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelwerk.errors import LocalModeError, ValidationError
from modelwerk.local import pid_alive as alive

#: The production variant's name: blue/green keeps it and swaps the fleet behind it, as SageMaker does.
VARIANT = "AllTraffic"
#: How long a fleet may take to answer /ping with 200 after it started.
START_TIMEOUT_SECONDS = 90.0


class DeploymentError(ValidationError):
    """A fleet did not become healthy (its model failed to load, or its process ended)."""


#: The file in a serverless variant's folder that holds the fleet the SageMaker Runtime started on demand.
SERVERLESS_PID_FILE = "serverless.pid"


def endpoints_dir(records: Path, env: str) -> Path:
    """The endpoints of one environment (its account): the folder its local runtime routes from."""
    return records / "endpoints" / env


def record_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.json"


def read_record(folder: Path, name: str) -> dict[str, Any] | None:
    path = record_path(folder, name)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """Replace the record in one step: the runtime rereads it while requests flow."""
    path = record_path(folder, record["endpoint"])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(partial, path)


def all_records(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            continue
    return found


def remove_record(folder: Path, name: str) -> None:
    record_path(folder, name).unlink(missing_ok=True)


def extract_model(archive: bytes, folder: Path) -> Path:
    """Unpack a ``model.tar.gz`` as SageMaker does into /opt/ml/model, refusing paths that leave the folder."""
    import io

    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(folder, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DeploymentError(f"the model artifact is not a readable model.tar.gz ({exc}); retrain or re-register "
                              "the version") from None
    return folder


@dataclass(frozen=True)
class Fleet:
    """A running serving process of an endpoint."""

    fleet: str
    url: str
    pid: int
    log: str

    def to_record(self, weight: float, **extra: Any) -> dict[str, Any]:
        return {"name": VARIANT, "fleet": self.fleet, "url": self.url, "pid": self.pid, "log": self.log,
                "weight": weight, **extra}


def checkout_root(root: Path | None) -> Path:
    """The checkout local mode runs for; without one (a bare embedded AWS in a test), the checkout this package was
    imported from, when it is one."""
    if root is not None:
        return Path(root)
    return Path(__file__).resolve().parents[2]


def serving_code(root: Path | None) -> Path:
    folder = checkout_root(root) / "containers" / "serving"
    if not (folder / "modelwerk_serving").is_dir():
        raise LocalModeError(f"{folder} has no serving code; local endpoints run from a checkout of the platform")
    return folder


def start_fleet(*, root: Path | None, workdir: Path, endpoint: str, fleet: str, environment: dict[str, str],
                variant: str = VARIANT, inherit_aws: bool = True) -> Fleet:
    """Start one serving process and wait until its /ping answers 200.

    ``inherit_aws=False`` keeps this process's ``AWS_*`` variables from the fleet: ``environment`` then holds all of
    them (the endpoint account's credentials), as a container on SageMaker sees only its execution role's.
    """
    from modelwerk.local.ports import free_port

    root = checkout_root(root)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / f"{fleet}.log"
    inherited = {k: v for k, v in os.environ.items() if inherit_aws or not k.startswith("AWS_")}
    env = {**inherited, **environment,
           "PYTHONPATH": os.pathsep.join([str(serving_code(root)), str(root)]),
           "SAGEMAKER_BIND_TO_PORT": str(port), "MODELWERK_SERVING_HOST": "127.0.0.1",
           "MODELWERK_ENDPOINT_NAME": endpoint, "MODELWERK_VARIANT_NAME": variant, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "modelwerk_serving", "serve"], cwd=root, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeploymentError(f"the {fleet} fleet of {endpoint} stopped while starting: {_last_line(log_path)}")
        if ping(url):
            return Fleet(fleet=fleet, url=url, pid=process.pid, log=str(log_path))
        time.sleep(0.1)
    stop_process(process.pid)
    raise DeploymentError(f"the {fleet} fleet of {endpoint} did not answer /ping within {START_TIMEOUT_SECONDS:.0f} s: "
                          f"{_last_line(log_path)}")


def _last_line(log_path: Path) -> str:
    try:
        lines = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if " ERROR " in line and "server stopped" not in line]
    return (errors or lines or ["no log"])[-1].strip()[:300]


def ping(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stop_process(pid: int | None, timeout: float = 15.0) -> None:
    """SIGTERM the fleet's process group (its supervisor and workers), SIGKILL what is left after ``timeout``."""
    if not alive(pid):
        return
    try:
        group = os.getpgid(pid)
        os.killpg(group, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if not alive(pid):
                return
        time.sleep(0.05)
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass


def stop_all(records: Path) -> int:
    """Stop every local endpoint's processes in every environment and account (``local down``); the number stopped."""
    stopped = 0
    base = records / "endpoints"
    folders = sorted(p for pattern in ("*", "*/*") for p in base.glob(pattern) if p.is_dir())
    for record in (r for folder in folders for r in all_records(folder) if isinstance(r, dict)):
        for variant in record.get("variants", []):
            if alive(variant.get("pid")):
                stop_process(variant["pid"])
                stopped += 1
            serverless = variant.get("serverless") if isinstance(variant.get("serverless"), dict) else {}
            pid = _serverless_pid(Path(serverless["workdir"])) if serverless.get("workdir") else None
            if pid is not None:
                stop_process(pid)
                stopped += 1
    return stopped


def _serverless_pid(workdir: Path) -> int | None:
    """The running process of a serverless variant's fleet, which the SageMaker Runtime started on demand (it stops
    it itself when it stops; a runtime that was killed leaves it to ``local down``)."""
    try:
        pid = int((workdir / SERVERLESS_PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None
