"""The local event router: delivers an event to the targets of the EventBridge rules that match it.

The embedded AWS stores rules but runs no targets (a Lambda target needs Docker there), so local mode routes events
itself, narrowly: rules are read from the embedded EventBridge, matched with the embedded AWS's own pattern matcher (its
``TestEventPattern`` API answers nothing), and a
Lambda target is invoked in-process through the local Lambda host. A target that is another account's event bus
(prod's alarms forwarded to dev's default bus) gets the event unchanged if that bus's policy admits the sending
account, and the event is routed there in that account's stage; an event that already crossed accounts is not
forwarded again, as on AWS. Everything delivered is returned, so callers can show it.

What AWS services emit themselves (SageMaker's model package state changes, for example) the local runtime dispatches
here too. Besides the rules, an event reaches in-process subscribers (:func:`subscribe`), and every event is appended to
``<records>/local/events.jsonl`` so that another process can follow what was dispatched.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import boto3

from modelwerk.local import lambdas

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


def put_event(event: dict[str, Any], *, bus: str = "default", stage: str = "dev",
              session: Any = None) -> list[Delivery]:
    """Route ``event`` (the full EventBridge envelope) to every matching rule's targets and to the subscribers.

    ``session`` (a boto3 session) reads the rules of another account, the registry's for example; default: this
    process's default session (the dev account). ``stage`` is the local stage whose functions the targets name.
    """
    _record(event)
    return _route(event, bus, stage, session) + _notify_subscribers(event)


def _route(event: dict[str, Any], bus: str, stage: str, session: Any, forwarded: bool = False) -> list[Delivery]:
    """The deliveries of the rules on ``bus`` (of ``session``'s account) that match ``event``."""
    from moto.events.models import EventPattern

    events = (session or boto3).client("events")
    deliveries = []
    for page in events.get_paginator("list_rules").paginate(EventBusName=bus):
        for rule in page["Rules"]:
            if rule.get("State") != "ENABLED" or not rule.get("EventPattern"):
                continue
            if not EventPattern.load(rule["EventPattern"]).matches_event(event):
                continue
            for target in events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]:
                arn = target["Arn"]
                if ":lambda:" in arn and ":function:" in arn:
                    name = arn.split(":function:")[1].split(":")[0]
                    payload = json.loads(target["Input"]) if target.get("Input") else event
                    deliveries.append(Delivery(rule["Name"], arn, lambdas.invoke(name, payload, stage=stage)))
                elif ":events:" in arn and ":event-bus/" in arn:
                    deliveries.extend(_forward(rule, arn, event, forwarded))
                else:
                    log.info("rule %s: target %s is not routed locally", rule["Name"], arn)
    return deliveries + _start_pipelines(event, stage)


def _forward(rule: dict[str, Any], bus_arn: str, event: dict[str, Any], forwarded: bool) -> list[Delivery]:
    """Put ``event`` on another account's bus and route it there: the delivery to the bus (its result: what the
    event reached there), then those deliveries themselves."""
    from modelwerk import local

    sender = rule["Arn"].split(":")[4]
    account, bus = bus_arn.split(":")[4], bus_arn.split(":event-bus/", 1)[1]
    if forwarded:
        log.info("rule %s: the event came from another account's bus and is not forwarded again", rule["Name"])
        return [Delivery(rule["Name"], bus_arn, "not forwarded: the event already crossed accounts")]
    state = local.read_state()
    env = next((name for name, number in (state.accounts if state else {}).items() if number == account), None)
    if env is None:
        log.info("rule %s: bus %s is in no local account", rule["Name"], bus_arn)
        return [Delivery(rule["Name"], bus_arn, LookupError(f"account {account} is not a local environment"))]
    session = local.session(env, state)
    if account != sender and not bus_admits(session, bus, sender, event):
        log.warning("rule %s: bus %s does not admit account %s's %s", rule["Name"], bus_arn, sender,
                    event.get("detail-type"))
        return [Delivery(rule["Name"], bus_arn, PermissionError(
            f"the policy of {bus_arn} does not allow account {sender} to put this event"))]
    reached = _route(event, bus, env, session, forwarded=account != sender)
    return [Delivery(rule["Name"], bus_arn, reached), *reached]


#: The condition keys EventBridge evaluates on PutEvents that the local router evaluates too.
_EVENT_KEYS = {"events:source": "source", "events:detail-type": "detail-type"}


def bus_admits(session: Any, bus: str, account: str, event: dict[str, Any]) -> bool:
    """Whether the policy of ``bus`` (in ``session``'s account) lets ``account`` put ``event``: an Allow statement
    for events:PutEvents naming the account (by id or root ARN) whose conditions, if any, are on the event's source
    and detail-type (StringEquals, ForAllValues/ForAnyValue:StringEquals). Anything else is not admitted."""
    described = session.client("events").describe_event_bus(Name=bus)
    statements = json.loads(described.get("Policy") or "{}").get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        principal = statement.get("Principal", {})
        principals = principal.get("AWS", []) if isinstance(principal, dict) else []
        principals = [principals] if isinstance(principals, str) else principals
        if statement.get("Effect") != "Allow" or not {"events:PutEvents", "events:*"} & set(actions):
            continue
        if not any(p == account or (p.startswith("arn:") and p.split(":")[4:6] == [account, "root"]) for p in
                   principals):
            continue
        if all(_condition_holds(operator, values, event)
               for operator, values in (statement.get("Condition") or {}).items()):
            return True
    return False


def _condition_holds(operator: str, values: dict[str, Any], event: dict[str, Any]) -> bool:
    if operator not in ("StringEquals", "ForAllValues:StringEquals", "ForAnyValue:StringEquals"):
        return False
    for key, allowed in values.items():
        field = _EVENT_KEYS.get(key.lower())
        allowed = [allowed] if isinstance(allowed, str) else list(allowed)
        if field is None or event.get(field) not in allowed:
            return False
    return True


def _pipeline_rules(stage: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, resolved properties) of the stage's rules with a SageMaker pipeline target: the local runtime owns
    them (the embedded EventBridge fails every event that matches one)."""
    from modelwerk import local

    try:
        record = local.deployment_record(stage)
    except Exception:  # noqa: BLE001 - no deployment (a test's own embedded AWS): no such rules
        return []
    rules = []
    for stack in record.get("stacks", []):
        for logical_id, resource in (stack.get("resources") or {}).items():
            attributes = resource.get("attributes") or {}
            if resource.get("type") == "AWS::Events::Rule" and attributes.get("EventPattern") and any(
                    "SageMakerPipelineParameters" in t for t in attributes.get("Targets", [])):
                rules.append((f"{stack.get('stack_name', '')}/{logical_id}", attributes))
    return rules


def _start_pipelines(event: dict[str, Any], stage: str) -> list[Delivery]:
    """Start, through the local executor, the pipelines of the rules that match ``event`` (not waiting for them)."""
    from moto.events.models import EventPattern

    deliveries = []
    for name, rule in _pipeline_rules(stage):
        if rule.get("State", "ENABLED") != "ENABLED":
            continue
        pattern = rule["EventPattern"]
        if not EventPattern.load(json.dumps(pattern) if isinstance(pattern, dict) else pattern).matches_event(event):
            continue
        for target in rule["Targets"]:
            parameters = {p["Name"]: p["Value"] for p in
                          target.get("SageMakerPipelineParameters", {}).get("PipelineParameterList", [])}
            arn = target["Arn"]
            try:
                execution = _start_pipeline(arn.rsplit("/", 1)[-1], parameters, stage)
            except Exception as error:  # noqa: BLE001 - EventBridge, too, records a failed target and goes on
                log.warning("rule %s: pipeline %s did not start: %s", name, arn, error)
                execution = error
            deliveries.append(Delivery(name, arn, execution))
    return deliveries


def _start_pipeline(pipeline_name: str, parameters: dict[str, str], stage: str) -> Any:
    """Start the pipeline of the stage whose rule matched (not the environment this process works in: a prod
    alarm forwarded to dev starts dev's pipeline)."""
    from modelwerk import naming, pipelines, settings

    config = settings.load()
    use_case = next((u for u in config.use_cases
                     if naming.training_pipeline_name(config.project, stage, u) == pipeline_name), None)
    if use_case is None:
        raise LookupError(f"no use case runs pipeline {pipeline_name}")
    return pipelines.run(use_case, parameters, wait=False, env=stage)
