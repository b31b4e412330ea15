"""Errors that become an HTTP answer: a status code and one line for the caller, never a traceback."""

from __future__ import annotations


class HTTPError(Exception):
    """The request cannot be served; ``status`` and ``message`` are what the caller receives."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())


class BadRequest(HTTPError):
    """400: the body does not hold rows the model takes (malformed, wrong column count, a value of the wrong kind)."""

    def __init__(self, message: str):
        super().__init__(400, message)


class ModelLoadError(Exception):
    """A model artifact cannot be loaded (missing files, not a model, metadata that does not match the model)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
