"""Event bus policies as the embedded EventBridge judges them, for a caller that holds a bus's session.

The embedded AWS delivers events itself (:mod:`modelwerk.local.services.events`); this is the same policy check a
cross-account delivery makes, for code and tests that look at a deployed bus's policy through its API.
"""

from __future__ import annotations

from typing import Any

from modelwerk.local.services.events.models import policy_admits

__all__ = ["bus_admits"]


def bus_admits(session: Any, bus: str, account: str, event: dict[str, Any]) -> bool:
    """Whether the policy of ``bus`` (in ``session``'s account) lets ``account`` put ``event``
    (:func:`modelwerk.local.services.events.models.policy_admits`)."""
    described = session.client("events").describe_event_bus(Name=bus)
    return policy_admits(described.get("Policy"), account, event)
