"""Waiting on AWS's asynchronous work (a job run, a pipeline execution, an endpoint update): one polling loop.

Polls start fast (most local and many AWS calls finish in seconds) and back off to ``cap`` seconds, so a wait is
cheap on AWS's API limits and prompt locally, with the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from modelwerk.errors import TimeoutError

T = TypeVar("T")


def poll(describe: Callable[[], T], finished: Callable[[T], bool], *, timeout: float, what: str,
         first: float = 0.5, cap: float = 15.0, on_poll: Callable[[T], None] | None = None) -> T:
    """Call ``describe()`` until ``finished(result)``; the last result. :class:`TimeoutError` naming ``what``."""
    deadline = time.monotonic() + timeout
    interval = first
    while True:
        result = describe()
        if on_poll is not None:
            on_poll(result)
        if finished(result):
            return result
        if time.monotonic() + interval > deadline:
            raise TimeoutError(f"{what} did not finish within {timeout:.0f} s")
        time.sleep(interval)
        interval = min(cap, interval * 1.5)
