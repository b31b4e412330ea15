"""Events in local mode, for the code that still puts them by hand: the embedded EventBridge delivers them.

The embedded AWS matches an event against the rules of its bus and delivers it to their targets itself
(:mod:`modelwerk.local.services.events`: Lambda functions, SageMaker pipelines, SNS topics, other accounts' buses
whose policy admits the sender). :func:`put_event` is a ``PutEvents`` through boto3 that waits for those deliveries
and returns them; besides the rules, an event reaches in-process subscribers (:func:`subscribe`), and every event put
here is appended to ``<records>/local/events.jsonl`` so that another process can follow what was dispatched.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from modelwerk.errors import ExecutionFailedError
from modelwerk.local.services.events.models import policy_admits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    rule: str
    target_arn: str
    result: Any


#: In-process subscribers by detail-type: the local stand-in for a rule whose target lives in this process.
_subscribers: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}
_subscribers_lock = threading.Lock()
_log_lock = threading.Lock()
EVENTS_FILE = "events.jsonl"


def subscribe(detail_type: str, callback: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """Call ``callback(event)`` for every locally dispatched event of ``detail_type``; returns ``callback``.

    Example
    -------
    >>> events.subscribe("SageMaker Model Package State Change", lambda event: print(event["detail"]))
    """
    with _subscribers_lock:
        _subscribers.setdefault(detail_type, []).append(callback)
    return callback


def unsubscribe(detail_type: str, callback: Callable[[dict[str, Any]], Any]) -> bool:
    """Stop calling ``callback`` for ``detail_type``; False if it was not subscribed."""
    with _subscribers_lock:
        callbacks = _subscribers.get(detail_type, [])
        if callback not in callbacks:
            return False
        callbacks.remove(callback)
        return True


def events_file(root: Path | str | None = None) -> Path | None:
    """Where dispatched events are appended (``<records>/local/events.jsonl``), or None outside a checkout."""
    from modelwerk import local, settings

    root = root or os.environ.get("MODELWERK_LOCAL_ROOT") or settings.find_checkout()
    if root is None and not os.environ.get("MODELWERK_STATE_DIR"):
        return None
    return local._records_dir(Path(root or ".")) / "local" / EVENTS_FILE


def _record(event: dict[str, Any]) -> None:
    path = events_file()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _log_lock, path.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(event, default=str) + "\n")


def _notify_subscribers(event: dict[str, Any]) -> list[Delivery]:
    with _subscribers_lock:
        callbacks = list(_subscribers.get(event.get("detail-type", ""), []))
    deliveries = []
    for callback in callbacks:
        name = f"{getattr(callback, '__module__', '')}.{getattr(callback, '__qualname__', repr(callback))}"
        try:
            result: Any = callback(event)
        except Exception as error:  # a subscriber's failure is reported on its delivery, not raised into the caller
            log.warning("subscriber %s failed on %s: %s", name, event.get("detail-type"), error)
            result = error
        deliveries.append(Delivery("local-subscriber", f"python:{name}", result))
    return deliveries


def put_event(event: dict[str, Any], *, bus: str = "default", stage: str = "dev", session: Any = None,
              wait: float = 60.0) -> list[Delivery]:
    """Put ``event`` (the EventBridge envelope: source, detail-type, detail, resources) on ``bus`` of ``session``'s
    account (default: this process's) and return the deliveries of the rules it matched, once made (``wait`` seconds
    at most), then those of the subscribers. A failed delivery's result is an :class:`ExecutionFailedError`.
    ``stage`` is no longer read: a target runs in the account its ARN names, as on AWS."""
    import boto3

    _record(event)
    client = (session or boto3.Session()).client("events")
    entry = {"Source": event["source"], "DetailType": event["detail-type"],
             "Detail": json.dumps(event.get("detail", {}), default=str), "Resources": list(event.get("resources", [])),
             "EventBusName": bus}
    answer = client.put_events(Entries=[entry])["Entries"][0]
    if not answer.get("EventId"):
        raise ExecutionFailedError(f"PutEvents refused the event: {answer.get('ErrorCode')}: "
                                   f"{answer.get('ErrorMessage')}")
    deliveries = [Delivery(record["rule"], record["target_arn"], _result(record))
                  for record in _deliveries(client.meta.endpoint_url, answer["EventId"], wait)]
    return deliveries + _notify_subscribers(event)


def _result(record: dict[str, Any]) -> Any:
    if record["outcome"] == "failed":
        return ExecutionFailedError(f"{record['error']['code']}: {record['error']['message']}")
    return record.get("result", record["outcome"])


def _deliveries(endpoint_url: str, event_id: str, wait: float) -> list[dict[str, Any]]:
    """The embedded EventBridge's deliveries of one event (its control ``events/deliveries``)."""
    request = urllib.request.Request(f"{endpoint_url}/modelwerk-api/events/deliveries", method="POST",
                                     data=json.dumps({"event_id": event_id, "wait": wait}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=wait + 30) as response:
        return json.loads(response.read())["Deliveries"]


def bus_admits(session: Any, bus: str, account: str, event: dict[str, Any]) -> bool:
    """Whether the policy of ``bus`` (in ``session``'s account) lets ``account`` put ``event``
    (:func:`modelwerk.local.services.events.models.policy_admits`)."""
    described = session.client("events").describe_event_bus(Name=bus)
    return policy_admits(described.get("Policy"), account, event)
