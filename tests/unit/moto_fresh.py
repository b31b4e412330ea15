"""moto's mock with empty backends, whatever ran in this test process before.

``mock_aws`` resets moto's backends only when no other mock is active; a test process of the suite also runs
embedded AWS servers and other modules' mocks, so the modules that count on an empty account reset it themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from moto import mock_aws


#: What points boto3 elsewhere than moto's mock: a local mode's profile a session fixture of this process exported.
_POINTERS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_ENDPOINT_URL")


@contextmanager
def fresh_mock_aws() -> Iterator[None]:
    import os

    from moto.moto_api._internal.models import moto_api_backend

    saved = {k: v for k, v in os.environ.items() if k in _POINTERS or k.startswith("AWS_ENDPOINT_URL_")}
    for name in saved:
        del os.environ[name]
    try:
        with mock_aws():
            moto_api_backend.reset()
            yield
    finally:
        os.environ.update(saved)
