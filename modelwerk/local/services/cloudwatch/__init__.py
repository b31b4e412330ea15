"""cloudwatch: alarms evaluated at their period boundaries, composite alarms, their history and actions."""

from __future__ import annotations

from typing import Any

from modelwerk.local.services._routing import Service
from modelwerk.local.services.cloudwatch import responses
from modelwerk.local.services.cloudwatch.actions import AlarmActions
from modelwerk.local.services.cloudwatch.evaluation import AlarmEvaluator
from modelwerk.local.services.cloudwatch.models import CloudWatchAlarms

#: Seconds between two looks at which alarms reached a period boundary (the shortest alarm period is 10 s).
TICK_SECONDS = 1.0


def _start(context: Any) -> None:
    alarms = CloudWatchAlarms(context.folder("cloudwatch"))
    evaluator = AlarmEvaluator(alarms, AlarmActions(context, alarms.lock))
    responses.attach(responses.Running(alarms, evaluator))
    context.every("cloudwatch-alarms", TICK_SECONDS, evaluator.tick)


def _stop() -> None:
    responses.attach(None)


SERVICE = Service(name="cloudwatch", handlers=responses.HANDLERS, controls=responses.CONTROLS, start=_start,
                  stop=_stop)
