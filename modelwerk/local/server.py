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
import socket
import threading
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_healthy(endpoint_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/config", timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(endpoint_url: str, deadline_seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if is_healthy(endpoint_url):
            return True
        time.sleep(0.1)
    return False


class EmbeddedAWS:
    """moto's threaded server. ``MOTO_ACCOUNT_ID`` would pin every request to one account, so it is never set."""

    def __init__(self, *, port: int):
        os.environ.pop("MOTO_ACCOUNT_ID", None)
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request would drown a notebook

        self.port = port
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedAWS":
        self._server.start()
        if not wait_healthy(self.endpoint_url):
            raise RuntimeError(f"the embedded AWS did not answer on {self.endpoint_url}")
        self.reset()  # a fresh account, even in a process that ran moto before
        return self

    def reset(self) -> None:
        """Discard every service's state (moto keeps it per process, not per server)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        self.reset()
        self._server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the embedded AWS in the foreground until SIGTERM.")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = EmbeddedAWS(port=args.port).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print(f"embedded AWS listening on {server.endpoint_url}", flush=True)
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
