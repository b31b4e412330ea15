"""The embedded AWS: moto's server on 127.0.0.1, in a background process or in this process.

``python -m modelwerk.local.server --port P --account A`` is what ``modelwerk local up`` starts in the background.
Every environment is its own account of the same server; a request's account follows from its credentials (the
default account's, or those ``sts:AssumeRole`` issued), so cross-account paths behave as on AWS.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import urllib.request
from pathlib import Path
from typing import Any

from modelwerk.local.ports import free_port, is_healthy, moto_answers, wait_healthy

__all__ = ["EmbeddedAWS", "free_port", "is_healthy", "wait_healthy"]


class EmbeddedAWS:
    """moto's dispatcher behind our services' middleware, served by werkzeug's threaded server on loopback.

    ``MOTO_ACCOUNT_ID`` would pin every request to one account, so it is never set. ``root`` is the checkout local
    mode runs for and ``state_dir`` where the services keep their records (None: a temporary folder).
    """

    def __init__(self, *, port: int, root: Path | None = None, state_dir: Path | None = None,
                 region: str = "us-east-1"):
        os.environ.pop("MOTO_ACCOUNT_ID", None)
        from modelwerk.local import services

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request would drown a notebook

        self.port = port
        self.context = services.ServiceContext(endpoint_url=f"http://127.0.0.1:{port}", root=root,
                                               state_dir=state_dir, default_region=region)
        self.services = services.load()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedAWS":
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        from modelwerk.local.services import LocalServices

        app = self.app = LocalServices(DomainDispatcherApplication(create_backend_app), self.services)
        self._server = make_server("127.0.0.1", self.port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-aws", daemon=True)
        self._thread.start()
        if not wait_healthy(self.endpoint_url, check=moto_answers):
            raise RuntimeError(f"the embedded AWS did not answer on {self.endpoint_url}")
        self.reset()  # a fresh account, even in a process that ran moto before
        for service in self.services:
            if service.start is not None:
                service.start(self.context)
        self.app.ready = True
        return self

    def reset(self) -> None:
        """Discard every service's state (moto keeps it per process, not per server)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        self.context.stopping.set()
        for service in reversed(self.services):
            if service.stop is not None:
                service.stop()
        self.context.join()
        self.reset()
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the embedded AWS in the foreground until SIGTERM.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, default=None, help="the checkout local mode runs for")
    parser.add_argument("--state-dir", type=Path, default=None, help="where the services keep their records")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = EmbeddedAWS(port=args.port, root=args.root, state_dir=args.state_dir, region=args.region).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print(f"embedded AWS listening on {server.endpoint_url}", flush=True)
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
