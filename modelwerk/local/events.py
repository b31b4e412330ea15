"""The local event router: delivers an event to the targets of the EventBridge rules that match it.

The embedded AWS stores rules but runs no targets (a Lambda target needs Docker there), so local mode routes events
itself, narrowly: rules are read from the embedded EventBridge, matched with the embedded AWS's own pattern matcher (its
``TestEventPattern`` API answers nothing), and a
Lambda target is invoked in-process through the local Lambda host. Everything delivered is returned, so callers can
show it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import boto3

from modelwerk.local import lambdas

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    rule: str
    target_arn: str
    result: Any


def put_event(event: dict[str, Any], *, bus: str = "default", stage: str = "dev") -> list[Delivery]:
    """Route ``event`` (the full EventBridge envelope) to every matching rule's targets."""
    from moto.events.models import EventPattern

    events = boto3.client("events")
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
                else:
                    log.info("rule %s: target %s is not routed locally", rule["Name"], arn)
    return deliveries
