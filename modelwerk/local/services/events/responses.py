"""The events service's local controls (``POST /modelwerk-api/events/<name>``)."""

from __future__ import annotations

from typing import Any

from modelwerk.local.services.events.models import ROUTER


def deliveries(body: dict[str, Any]) -> dict[str, Any]:
    """The recorded deliveries: ``since`` (ISO time), ``detail_type``, ``event_id`` filter them; with ``event_id``,
    ``wait`` (seconds) waits for that event's queued deliveries to finish first."""
    return {"Deliveries": ROUTER.deliveries(since=body.get("since"), detail_type=body.get("detail_type"),
                                            event_id=body.get("event_id"), wait=float(body.get("wait") or 0))}


def fire_schedule(body: dict[str, Any]) -> dict[str, Any]:
    """Fire a scheduled rule now (``account``, ``region``, ``rule``, optional ``bus``) and answer its deliveries."""
    rule = ROUTER.find_rule(str(body["account"]), body["region"], body["rule"], body.get("bus") or "default")
    event_id, records = ROUTER.fire(rule, wait=True)
    return {"EventId": event_id, "Deliveries": records}
