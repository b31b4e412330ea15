"""Glue's scheduled triggers: an ACTIVATED trigger of type SCHEDULED starts its actions' job runs at its cron times
while the server runs (the preparation job's hourly schedule, for one). The schedule grammar is EventBridge's, which
Glue shares."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from modelwerk.local.services.events.schedules import Schedule, ScheduleError
from modelwerk.local.services.glue.models import job_runs

log = logging.getLogger("modelwerk.local")

#: How often due triggers are looked for.
TICK_SECONDS = 5.0


class ScheduledTriggers:
    def __init__(self) -> None:
        self._due: dict[str, datetime] = {}

    def start(self, context: Any) -> None:
        self._due = {}
        context.every("glue-triggers", TICK_SECONDS, self.tick)

    def tick(self, now: datetime | None = None) -> list[str]:
        """Start the job runs of every scheduled trigger whose time came; their run ids."""
        from moto.glue.models import glue_backends

        now = now or datetime.now(timezone.utc)
        started = []
        for account, regions in list(glue_backends.items()):
            for region, backend in list(regions.items()):
                for trigger in list(backend.triggers.values()):
                    if trigger.trigger_type != "SCHEDULED" or trigger.state != "ACTIVATED" or not trigger.schedule:
                        continue
                    started += self._fire_if_due(account, region, trigger, now)
        return started

    def _fire_if_due(self, account: str, region: str, trigger: Any, now: datetime) -> list[str]:
        key = trigger.arn
        try:
            schedule = Schedule(trigger.schedule)
        except ScheduleError as error:
            log.warning("glue trigger %s: schedule %s does not parse: %s", trigger.name, trigger.schedule, error)
            return []
        due = self._due.setdefault(key, schedule.next_after(now))
        if now < due:
            return []
        self._due[key] = schedule.next_after(now)
        started = []
        for action in trigger.actions:
            arguments = action.as_dict().get("Arguments") or {}
            try:
                started.append(job_runs.start_job_run(account, region, {"JobName": action.job_name,
                                                                        "Arguments": arguments}))
            except Exception as error:  # noqa: BLE001 - Glue records a trigger's failed start and goes on
                log.warning("glue trigger %s: %s did not start: %s", trigger.name, action.job_name, error)
        return started


scheduled_triggers = ScheduledTriggers()
