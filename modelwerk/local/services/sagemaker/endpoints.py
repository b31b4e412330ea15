"""SageMaker endpoints: local fleets of the serving container, blue/green with rollback alarms."""

from __future__ import annotations

from typing import Any

HANDLERS: dict[str, Any] = {}
CONTROLS: dict[str, Any] = {}


def start(context: Any) -> None:
    """Background work of this part while the server runs."""


def stop() -> None:
    """End the background work :func:`start` began."""
