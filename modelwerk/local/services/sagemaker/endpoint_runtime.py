"""The SageMaker Runtime process of the embedded AWS: one URL for every account's endpoints.

The server starts :mod:`modelwerk.local.runtime` in the background when it starts, over the endpoint records of
every account (``endpoints/<account>/<region>/``), and stops it when it stops. Clients reach it through
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, which ``local up`` sets from the control ``runtime``. It captures the
endpoints' requests through a spool under ``local/capture-spool`` of the state folder: a runtime started after a
crash writes what the dead one spooled.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from modelwerk.local.services._routing import AwsError

log = logging.getLogger("modelwerk.local")

#: How long the runtime may take to answer /ping.
START_TIMEOUT_SECONDS = 30.0


class RuntimeProcess:
    def __init__(self, context: Any):
        self.context = context
        self.url: str | None = None
        self.pid: int | None = None
        self.error: str | None = None
        self._ready = threading.Event()
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it on a thread of the server: the server answers meanwhile."""
        self.context.spawn("sagemaker-runtime", self._run)

    def wait(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        """Its URL once it answers; an error saying why it does not."""
        if not self._ready.wait(timeout):
            raise AwsError("ServiceUnavailable", "the local SageMaker Runtime is still starting", 503)
        if self.url is None:
            raise AwsError("InternalFailure", f"the local SageMaker Runtime did not start: {self.error}", 500)
        return self.url

    def stop(self) -> None:
        from modelwerk.local.endpoints import stop_process

        if self._process is not None:
            stop_process(self._process.pid, timeout=10.0)
            self._process = None

    def _run(self) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID

        from modelwerk.local.endpoints import checkout_root, ping
        from modelwerk.local.ports import free_port

        try:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            records = self.context.folder("endpoints")
            samples = self.context.folder("local", "metrics")
            spool = self.context.folder("local", "capture-spool")
            log_path = self.context.folder("local") / "sagemaker-runtime.log"
            variables = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            variables.update(self.context.credentials(DEFAULT_ACCOUNT_ID))
            variables["MODELWERK_LOCAL_ROOT"] = str(checkout_root(self.context.root))
            with open(log_path, "ab") as stream:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "modelwerk.local.runtime", "--port", str(port), "--records-dir",
                     str(records), "--server", self.context.endpoint_url, "--region", self.context.default_region,
                     "--samples-dir", str(samples), "--capture-spool", str(spool)],
                    stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    env=variables, cwd=str(checkout_root(self.context.root)))
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while time.monotonic() < deadline and not self.context.stopping.is_set():
                if self._process.poll() is not None:
                    self.error = f"it ended with exit code {self._process.returncode}; see {log_path}"
                    return
                if ping(url, timeout=1.0):
                    self.url, self.pid = url, self._process.pid
                    log.info("the local SageMaker Runtime answers on %s", url)
                    return
                time.sleep(0.1)
            self.error = f"it did not answer /ping within {START_TIMEOUT_SECONDS:.0f} s; see {log_path}"
        except OSError as error:
            self.error = str(error)
        finally:
            self._ready.set()
