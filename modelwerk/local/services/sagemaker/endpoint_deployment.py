"""Blue/green as SageMaker runs it: the traffic steps of a ``DeploymentConfig`` and the rollback alarms' watch.

A ``BlueGreenUpdatePolicy`` shifts traffic to the new fleet all at once, by a canary then the rest, or in linear
steps; each step bakes for ``WaitIntervalInSeconds`` while the ``AutoRollbackConfiguration`` alarms are watched, and
the old fleet stops ``TerminationWaitInSeconds`` after the last step. Without a policy SageMaker deploys blue/green,
all at once. Locally the waits are capped (:data:`WAIT_CAP_SECONDS`, :data:`TERMINATION_WAIT_CAP_SECONDS`) so that a
deployment takes seconds, not the cloud's minutes.

Alarm states are the embedded CloudWatch's: before each look the watch asks its evaluator for a fresh evaluation
(the control ``POST /modelwerk-api/cloudwatch/evaluate-alarms``; without it, states are read as they are). An alarm
counts as tripped if it was in ALARM at any moment since the watch began (its state history says so), as SageMaker
notices an alarm that fired between two of its own looks.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("modelwerk.local")

#: Local caps of a traffic step's bake (``WaitIntervalInSeconds``) and of ``TerminationWaitInSeconds``.
WAIT_CAP_SECONDS = 3.0
TERMINATION_WAIT_CAP_SECONDS = 8.0
#: How often the rollback alarms are looked at while a step bakes.
ALARM_POLL_SECONDS = 0.5
#: SageMaker's default policy: blue/green, all traffic at once, no bake.
DEFAULT_POLICY = {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                  "TerminationWaitInSeconds": 0}


@dataclass(frozen=True)
class Step:
    """Traffic on the new fleet (a share of 1) and how long it bakes there (seconds, capped)."""

    share: float
    seconds: float


def traffic_steps(policy: dict[str, Any] | None, instance_count: int) -> list[Step]:
    """The steps of a ``BlueGreenUpdatePolicy`` (None: SageMaker's default, all at once)."""
    routing = (policy or DEFAULT_POLICY)["TrafficRoutingConfiguration"]
    wait = min(float(routing.get("WaitIntervalInSeconds", 0)), WAIT_CAP_SECONDS)
    kind = routing["Type"]
    if kind == "ALL_AT_ONCE":
        return [Step(1.0, wait)]
    size = routing.get("CanarySize" if kind == "CANARY" else "LinearStepSize")
    if not size:
        raise ValueError(f"a {kind} traffic routing needs {'CanarySize' if kind == 'CANARY' else 'LinearStepSize'}")
    share = _share(size, instance_count)
    if kind == "CANARY":
        return [Step(share, wait), Step(1.0, wait)] if share < 1.0 else [Step(1.0, wait)]
    steps = [Step(round(share * n, 4), wait) for n in range(1, math.ceil(1.0 / share))]
    return [*steps, Step(1.0, wait)]


def termination_wait(policy: dict[str, Any] | None) -> float:
    return min(float((policy or DEFAULT_POLICY).get("TerminationWaitInSeconds", 0)), TERMINATION_WAIT_CAP_SECONDS)


def _share(size: dict[str, Any], instance_count: int) -> float:
    value = float(size["Value"])
    if size["Type"] == "CAPACITY_PERCENT":
        share = value / 100.0
    else:  # INSTANCE_COUNT: that many of the new fleet's instances take traffic
        share = value / max(instance_count, 1)
    if share <= 0:
        raise ValueError(f"a traffic step of {size['Value']} {size['Type']} moves no traffic")
    return min(share, 1.0)


@dataclass
class AlarmWatch:
    """The rollback alarms of one deployment, in the endpoint's account and region."""

    endpoint_url: str
    account: str
    region: str
    names: list[str]
    since: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    _evaluator: bool = True

    def wait(self, seconds: float, cancelled: Any) -> tuple[str, str] | None:
        """Bake ``seconds``: the first alarm that tripped (name, reason), else None; stops early when ``cancelled``
        (a threading.Event) is set."""
        deadline = time.monotonic() + seconds
        while True:
            tripped = self.tripped()
            if tripped or time.monotonic() >= deadline or cancelled.is_set():
                return tripped
            cancelled.wait(min(ALARM_POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))

    def tripped(self) -> tuple[str, str] | None:
        if not self.names:
            return None
        found = self._in_alarm()  # first as they are: a state set by hand counts before an evaluation resets it
        if found:
            return found
        self._evaluate()
        return self._in_alarm()

    def _evaluate(self) -> None:
        """Ask the embedded CloudWatch to evaluate the alarms now; without that control, states are read as they are."""
        if not self._evaluator:
            return
        body = json.dumps({"account": self.account, "region": self.region, "alarm_names": self.names}).encode()
        request = urllib.request.Request(f"{self.endpoint_url}/modelwerk-api/cloudwatch/evaluate-alarms",
                                         data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30):
                pass
        except urllib.error.HTTPError as error:
            if error.code == 404:
                self._evaluator = False
                log.info("the embedded CloudWatch evaluates no alarms on request: reading their states as they are")
            else:
                log.warning("evaluating alarms %s failed: %s", self.names, error)
        except OSError as error:
            log.warning("evaluating alarms %s failed: %s", self.names, error)

    def _in_alarm(self) -> tuple[str, str] | None:
        from moto.cloudwatch.models import cloudwatch_backends

        alarms = cloudwatch_backends[self.account][self.region].alarms
        for name in self.names:
            alarm = alarms.get(name)
            if alarm is None:
                continue
            # history holds each earlier state with the time it began; the current state began at its own timestamp
            spans = [(entry[3], entry[4], entry[1]) for entry in list(alarm.history) if entry[0] == "StateUpdate"]
            spans.append((alarm.state_value, alarm.state_updated_timestamp, alarm.state_reason))
            for index, (state, _began, reason) in enumerate(spans):
                ended = spans[index + 1][1] if index + 1 < len(spans) else None
                if state == "ALARM" and (ended is None or _aware(ended) > self.since):
                    return name, reason
        return None


def missing_alarms(account: str, region: str, names: list[str]) -> list[str]:
    from moto.cloudwatch.models import cloudwatch_backends

    alarms = cloudwatch_backends[account][region].alarms
    return [name for name in names if name not in alarms]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
