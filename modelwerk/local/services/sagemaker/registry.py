"""SageMaker the model registry: state change events, and what moto's registry lacks."""

from __future__ import annotations

from typing import Any

HANDLERS: dict[str, Any] = {}
CONTROLS: dict[str, Any] = {}


def start(context: Any) -> None:
    """Background work of this part while the server runs."""


def stop() -> None:
    """End the background work :func:`start` began."""
