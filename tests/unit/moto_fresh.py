"""moto's mock with empty backends, whatever ran in this test process before.

``mock_aws`` resets moto's backends only when no other mock is active; a test process of the suite also runs
embedded AWS servers and other modules' mocks, so the modules that count on an empty account reset it themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from moto import mock_aws


@contextmanager
def fresh_mock_aws() -> Iterator[None]:
    from moto.moto_api._internal.models import moto_api_backend

    with mock_aws():
        moto_api_backend.reset()
        yield
