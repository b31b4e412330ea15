"""The embedded AWS: moto's server on 127.0.0.1, in a background process or in this process.

``python -m modelwerk.local.server --port P --state-dir D --persist`` is what ``modelwerk local up`` starts in the
background. Every environment is its own account of the same server; a request's account follows from its credentials
(the default account's, or those ``sts:AssumeRole`` issued), so cross-account paths behave as on AWS. With ``persist``
its state survives it (:mod:`modelwerk.local.state`): restored when it starts, saved with every change.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from modelwerk.local.ports import free_port, is_healthy, moto_answers, wait_healthy

__all__ = ["EmbeddedAWS", "free_port", "is_healthy", "wait_healthy"]


class EmbeddedAWS:
    """moto's dispatcher behind our services' middleware, served by werkzeug's threaded server on loopback.

    ``MOTO_ACCOUNT_ID`` would pin every request to one account, so it is never set. ``root`` is the checkout local
    mode runs for and ``state_dir`` where the services keep their records (None: a temporary folder). ``persist``
    restores the state kept in ``state_dir`` when it starts and keeps every change there (``local up``, ``start()``).
    """

    def __init__(self, *, port: int, root: Path | None = None, state_dir: Path | None = None,
                 region: str = "us-east-1", persist: bool = False):
        os.environ.pop("MOTO_ACCOUNT_ID", None)
        from modelwerk.local import services

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request would drown a notebook

        self.port = port
        self.context = services.ServiceContext(endpoint_url=f"http://127.0.0.1:{port}", root=root,
                                               state_dir=state_dir, default_region=region)
        self.services = services.load()
        if persist and state_dir is None:
            raise ValueError("an embedded AWS keeps its state in a state_dir: give one to persist")
        self.persist = persist
        self.persistence: Any = None
        #: What the last start restored: seconds it took and the endpoints whose fleets it restarted.
        self.restored: dict[str, Any] = {"restored": False}
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
        served: Any = app
        if self.persist:
            from modelwerk.local.state import Persistence, Snapshots

            served = self.persistence = Persistence(app, Snapshots(Path(self.context.state_dir or ".")))
        self._server = make_server("127.0.0.1", self.port, _Answers(served, self), threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-aws", daemon=True)
        self._thread.start()
        if not wait_healthy(self.endpoint_url, check=moto_answers):
            raise RuntimeError(f"the embedded AWS did not answer on {self.endpoint_url}")
        self.reset()  # a fresh account, even in a process that ran moto before
        if self.persistence is not None:
            started = time.monotonic()
            self.restored["restored"] = self.persistence.snapshots.restore()
            self.restored["restore_seconds"] = round(time.monotonic() - started, 3)
            self.persistence.start()  # from here on, every change is kept
        for service in self.services:
            if service.start is not None:
                service.start(self.context)
        if self.restored["restored"]:
            from modelwerk.local.state import restart_endpoints

            self.restored["endpoints"] = restart_endpoints(self.context)
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
        if self.persistence is not None:
            self.persistence.stop()  # the last snapshot, before moto's state is reset
        self.reset()
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join()


class _Answers:
    """``POST /modelwerk-api/server/state``: what the server restored and how its snapshots go (saves, failures)."""

    PATH = "/modelwerk-api/server/state"

    def __init__(self, app: Any, server: EmbeddedAWS):
        self.app, self.server = app, server

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != self.PATH:
            return self.app(environ, start_response)
        persistence = self.server.persistence
        answer = {"persist": persistence is not None, **self.server.restored}
        if persistence is not None:
            answer.update(saves=persistence.saves, failures=persistence.failures)
        body = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the embedded AWS in the foreground until SIGTERM.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, default=None, help="the checkout local mode runs for")
    parser.add_argument("--state-dir", type=Path, default=None, help="where the services keep their records")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--persist", action="store_true", help="restore the state kept in --state-dir, keep changes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.state_dir is not None:
        from modelwerk.local.state import MARKER

        # every process this server starts carries it: a later ``local up`` finds what a crash left running
        os.environ[MARKER] = str(args.state_dir.resolve())
    server = EmbeddedAWS(port=args.port, root=args.root, state_dir=args.state_dir, region=args.region,
                         persist=args.persist).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print(f"embedded AWS listening on {server.endpoint_url}", flush=True)
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
