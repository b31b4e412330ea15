"""Loopback ports and health checks of the embedded AWS, shared by the server and the processes its services start."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_healthy(endpoint_url: str, timeout: float = 1.0) -> bool:
    """The embedded AWS answers, and its services run (moto's server alone answers ``/moto-api/`` too)."""
    try:
        request = urllib.request.Request(f"{endpoint_url}/modelwerk-api/server/ready", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(endpoint_url: str, deadline_seconds: float = 30.0, *, check=is_healthy) -> bool:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if check(endpoint_url):
            return True
        time.sleep(0.1)
    return False


def moto_answers(endpoint_url: str, timeout: float = 1.0) -> bool:
    """moto's dispatcher answers (before the services started)."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/config", timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False
