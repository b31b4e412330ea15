"""EventBridge's deliveries to the targets moto does not run, and its schedules.

moto matches an event against the rules of its bus (``PutEvents``, S3's EventBridge notifications, the events the
services emit) and calls ``Rule.send_to_targets``, which delivers to log groups, SQS queues, archives and API
destinations and raises on anything else. The router wraps that method while the server runs: a disabled rule and a
scheduled rule (moto's empty pattern matches every event) receive nothing; moto's own targets are delivered as
moto delivers them; the others are queued and delivered by a worker thread, so ``PutEvents`` and ``PutObject``
return at once, as on AWS:

- a Lambda function is invoked asynchronously (InvocationType Event) by the embedded Lambda;
- a SageMaker pipeline is started with the target's ``SageMakerPipelineParameters``;
- an SNS topic gets the event (or the target's input) as its message;
- another account's event bus gets the event if that bus's policy admits the sending account; an event that
  already crossed accounts is not forwarded again.

``Input``, ``InputPath`` and ``InputTransformer`` are applied. A failed delivery goes to the target's dead-letter
queue, with EventBridge's error attributes, or is logged. Every delivery is a line of ``events/deliveries.jsonl``.
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from modelwerk.local.services.events.schedules import Schedule, ScheduleError
from modelwerk.local.services.events.transform import target_input

log = logging.getLogger("modelwerk.local")

DELIVERIES_FILE = "deliveries.jsonl"
_ENABLED = ("ENABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")
#: How often the scheduler looks for due rules.
SCHEDULE_TICK_SECONDS = 5.0


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_time(value: Any) -> str:
    """An event's ``time`` as EventBridge writes it (moto keeps epoch seconds)."""
    if isinstance(value, (int, float)):
        return _iso(datetime.fromtimestamp(value, tz=timezone.utc))
    if isinstance(value, datetime):
        return _iso(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return str(value or _iso(datetime.now(timezone.utc)))


def _moto_delivers(arn: str) -> bool:
    """Targets moto's own ``send_to_targets`` delivers: log groups, SQS queues, archives, API destinations."""
    parts = arn.split(":", 5)
    service, resource = (parts[2], parts[5]) if len(parts) == 6 else ("", "")
    return service in ("logs", "sqs") or (service == "events" and (resource == "" or
                                                                   resource.startswith("api-destination")))


@dataclass(frozen=True)
class RuleRef:
    """What a delivery needs of a rule (moto's object may change while the delivery waits)."""

    account: str
    region: str
    name: str
    arn: str
    bus: str


@dataclass
class _Job:
    rule: RuleRef
    target: dict[str, Any]
    event: dict[str, Any]
    ingestion_time: str


# -- bus policies ---------------------------------------------------------------------------------------------------
#: The condition keys EventBridge evaluates on PutEvents that the router evaluates too.
_EVENT_KEYS = {"events:source": "source", "events:detail-type": "detail-type"}


def policy_admits(policy: str | dict[str, Any] | None, account: str, event: dict[str, Any]) -> bool:
    """Whether a bus policy lets ``account`` put ``event``: an Allow statement for events:PutEvents naming the
    account (by id or root ARN) whose conditions, if any, are on the event's source and detail-type (StringEquals,
    ForAllValues/ForAnyValue:StringEquals). Anything else is not admitted."""
    document = json.loads(policy) if isinstance(policy, str) else (policy or {})
    statements = document.get("Statement", [])
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


class DeliveryError(Exception):
    """A target that could not be reached: EventBridge's error code and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class EventRouter:
    """The deliveries of every account's rules, and the schedules of every account's scheduled rules."""

    def __init__(self) -> None:
        self.context: Any = None
        self._original: Any = None
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending: Counter[str] = Counter()
        self._settled = threading.Condition()
        self._log_lock = threading.Lock()
        self._next_fire: dict[str, tuple[str, datetime]] = {}

    # -- life cycle -------------------------------------------------------------------------------------------------
    def start(self, context: Any) -> None:
        """Wrap moto's ``Rule.send_to_targets`` (moto has no other hook for the targets it does not run)."""
        from moto.events.models import Rule

        self.context = context
        self._queue = queue.Queue()
        self._next_fire = {}
        if not getattr(Rule.send_to_targets, "modelwerk_router", False):
            self._original = Rule.send_to_targets
            router = self

            def send_to_targets(rule: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
                router.route(rule, original_event, transform_input)

            send_to_targets.modelwerk_router = True  # type: ignore[attr-defined]
            Rule.send_to_targets = send_to_targets
        context.spawn("events-deliveries", self._work)
        context.every("events-schedules", SCHEDULE_TICK_SECONDS, self.tick)

    def stop(self) -> None:
        from moto.events.models import Rule

        if self._original is not None:
            Rule.send_to_targets = self._original
            self._original = None
        self._queue.put(None)

    # -- matching ---------------------------------------------------------------------------------------------------
    def route(self, rule: Any, event: dict[str, Any], transform_input: bool = True) -> None:
        """moto's rule ``rule`` is offered ``event``: deliver it if the rule is enabled and its pattern matches."""
        if rule.state not in _ENABLED or not rule.event_pattern.get_pattern():
            return
        if not rule.event_pattern.matches_event(event):
            return
        from moto.events.utils import _BASE_EVENT_MESSAGE

        if event.get("id") == _BASE_EVENT_MESSAGE["id"]:
            event["id"] = str(uuid.uuid4())  # S3's notifications reuse moto's template id; every event has its own
        self.deliver(rule, event, transform_input)

    def deliver(self, rule: Any, event: dict[str, Any], transform_input: bool = True,
                wait: bool = False) -> list[dict[str, Any]]:
        """Deliver ``event`` to every target of ``rule``: moto's own targets now, the others through the queue (or
        now, with ``wait``); with ``wait``, answers the deliveries."""
        ref = RuleRef(rule.account_id, rule.region_name, rule.name, rule.arn, rule.event_bus_name)
        ingestion_time = _event_time(event.get("ingestion-time") or event.get("time"))
        plain = {k: v for k, v in event.items() if k != "ingestion-time"}
        plain["time"] = _event_time(plain.get("time"))
        records = []
        for target in list(rule.targets):
            if _moto_delivers(target["Arn"]):
                records.append(self._deliver_through_moto(rule, ref, target, event, transform_input))
                continue
            job = _Job(ref, copy.deepcopy(target), copy.deepcopy(plain), ingestion_time)
            if wait:
                records.append(self._run(job))
            else:
                with self._settled:
                    self._pending[plain["id"]] += 1
                self._queue.put(job)
        return records

    def _deliver_through_moto(self, rule: Any, ref: RuleRef, target: dict[str, Any], event: dict[str, Any],
                              transform_input: bool) -> dict[str, Any]:
        single = copy.copy(rule)
        single.targets = [target]
        try:  # moto's template parser drops fields (``account``) from an event no transformer asked to change
            self._original(single, copy.deepcopy(event), transform_input and bool(target.get("InputTransformer")))
            return self._record(ref, target, event, "delivered")
        except Exception as error:  # noqa: BLE001 - a failed delivery is recorded, never raised into PutEvents
            return self._failed(_Job(ref, target, event, ""), DeliveryError("InternalException", str(error)))

    # -- the worker -------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run(job)
            except Exception:  # noqa: BLE001 - one delivery's failure never stops the others
                log.exception("delivery of %s to %s failed", job.event.get("id"), job.target.get("Arn"))
            finally:
                with self._settled:
                    self._pending[job.event["id"]] -= 1
                    if self._pending[job.event["id"]] <= 0:
                        del self._pending[job.event["id"]]
                    self._settled.notify_all()

    def _run(self, job: _Job) -> dict[str, Any]:
        arn = job.target["Arn"]
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        try:
            if service == "lambda":
                result = self._to_function(job)
            elif service == "sagemaker" and ":pipeline/" in arn:
                result = self._to_pipeline(job)
            elif service == "sns":
                result = self._to_topic(job)
            elif service == "events" and ":event-bus/" in arn:
                return self._to_bus(job)
            else:
                raise DeliveryError("NotSupported", f"the embedded AWS delivers no events to {arn}")
        except DeliveryError as error:
            return self._failed(job, error)
        except Exception as error:  # noqa: BLE001 - EventBridge, too, records a failed target and goes on
            return self._failed(job, DeliveryError(getattr(error, "code", None) or type(error).__name__,
                                                   getattr(error, "message", None) or str(error)))
        return self._record(job.rule, job.target, job.event, "delivered", result=result)

    def _input(self, job: _Job) -> str:
        return target_input(job.target, job.event, rule_arn=job.rule.arn, rule_name=job.rule.name,
                            ingestion_time=job.ingestion_time)

    def _to_function(self, job: _Job) -> dict[str, Any]:
        from modelwerk.local.services.awslambda.models import RUNTIME

        function, code = RUNTIME.function(job.rule.account, job.rule.region, job.target["Arn"])
        request_id = RUNTIME.invoke_async(function, code, self._input(job).encode("utf-8"))
        return {"InvocationType": "Event", "RequestId": request_id}

    def _to_pipeline(self, job: _Job) -> dict[str, Any]:
        from modelwerk.local.services.sagemaker import pipelines

        arn = job.target["Arn"]
        parts = arn.split(":")
        parameters = {p["Name"]: p["Value"] for p in
                      (job.target.get("SageMakerPipelineParameters") or {}).get("PipelineParameterList", [])}
        execution = pipelines.start_pipeline_execution(self.context, account=parts[4], region=parts[3],
                                                       pipeline=arn.rsplit("/", 1)[-1], parameters=parameters,
                                                       display_name=None)
        return {"PipelineExecutionArn": execution}

    def _to_topic(self, job: _Job) -> dict[str, Any]:
        arn = job.target["Arn"]
        parts = arn.split(":")
        sns = self.context.client("sns", parts[4], parts[3])
        return {"MessageId": sns.publish(TopicArn=arn, Message=self._input(job))["MessageId"]}

    def _to_bus(self, job: _Job) -> dict[str, Any]:
        """Another bus gets the event unchanged if its policy admits the rule's account; its rules then match it."""
        from moto.events.models import events_backends

        arn = job.target["Arn"]
        parts = arn.split(":")
        account, region, bus_name = parts[4], parts[3], arn.split(":event-bus/", 1)[1]
        if job.event.get("account") != job.rule.account:
            return self._record(job.rule, job.target, job.event, "skipped",
                                result="not forwarded: the event already crossed accounts")
        try:
            bus = events_backends[account][region].describe_event_bus(bus_name)
        except Exception as error:  # noqa: BLE001 - moto's not-found error
            return self._failed(job, DeliveryError("ResourceNotFoundException", f"{arn}: {error}"))
        if account != job.rule.account and not policy_admits(bus.policy, job.rule.account, job.event):
            return self._failed(job, DeliveryError(
                "AccessDeniedException", f"the policy of {arn} does not allow account {job.rule.account} to put "
                                         "this event"))
        record = self._record(job.rule, job.target, job.event, "delivered")
        for rule in list(bus.rules.values()):
            rule.send_to_targets(copy.deepcopy(job.event))
        return record

    # -- failures and records ---------------------------------------------------------------------------------------
    def _failed(self, job: _Job, error: DeliveryError) -> dict[str, Any]:
        """A failed delivery: to the target's dead-letter queue with EventBridge's attributes, else to the log."""
        queue_arn = (job.target.get("DeadLetterConfig") or {}).get("Arn")
        dead_letter = None
        if queue_arn:
            parts = queue_arn.split(":")
            try:
                sqs = self.context.client("sqs", parts[4], parts[3])
                url = sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
                attributes = {"RULE_ARN": job.rule.arn, "TARGET_ARN": job.target["Arn"], "ERROR_CODE": error.code,
                              "ERROR_MESSAGE": error.message[:1000], "RETRY_ATTEMPTS": "0",
                              "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts"}
                sqs.send_message(QueueUrl=url, MessageBody=json.dumps(job.event), MessageAttributes={
                    name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()})
                dead_letter = queue_arn
            except Exception as failure:  # noqa: BLE001 - logged below with the delivery
                log.warning("dead-letter queue %s unreachable: %s", queue_arn, failure)
        if dead_letter is None:
            log.warning("rule %s: delivery to %s failed: %s: %s", job.rule.arn, job.target["Arn"], error.code,
                        error.message)
        return self._record(job.rule, job.target, job.event, "failed",
                            error={"code": error.code, "message": error.message}, dead_letter_queue=dead_letter)

    def _record(self, rule: RuleRef, target: dict[str, Any], event: dict[str, Any], outcome: str,
                **details: Any) -> dict[str, Any]:
        record = {"time": _iso(datetime.now(timezone.utc)), "event_id": event.get("id"),
                  "source": event.get("source"), "detail_type": event.get("detail-type"), "account": rule.account,
                  "region": rule.region, "bus": rule.bus, "rule": rule.name, "rule_arn": rule.arn,
                  "target_id": target.get("Id"), "target_arn": target.get("Arn"), "outcome": outcome,
                  **{k: v for k, v in details.items() if v is not None}}
        path = self.context.folder("events") / DELIVERIES_FILE
        with self._log_lock, path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, default=str) + "\n")
        return record

    def deliveries(self, *, since: str | None = None, detail_type: str | None = None, event_id: str | None = None,
                   wait: float = 0.0) -> list[dict[str, Any]]:
        """The recorded deliveries, oldest first; ``wait`` seconds at most for an event's queued ones to finish."""
        if event_id and wait > 0:
            with self._settled:
                self._settled.wait_for(lambda: self._pending.get(event_id, 0) <= 0, timeout=wait)
        path = self.context.folder("events") / DELIVERIES_FILE
        if not path.is_file():
            return []
        with self._log_lock:
            lines = path.read_text(encoding="utf-8").splitlines()
        found = []
        for line in lines:
            record = json.loads(line)
            if since and record["time"] < _iso(datetime.fromisoformat(since.replace("Z", "+00:00"))):
                continue
            if detail_type and record.get("detail_type") != detail_type:
                continue
            if event_id and record.get("event_id") != event_id:
                continue
            found.append(record)
        return found

    # -- schedules --------------------------------------------------------------------------------------------------
    def _scheduled_rules(self) -> list[Any]:
        from moto.events.models import events_backends

        rules = []
        for account in list(events_backends.keys()):
            for backend in list(dict.values(events_backends[account])):
                for bus in list(backend.event_buses.values()):
                    rules.extend(r for r in list(bus.rules.values()) if r.scheduled_expression)
        return rules

    def tick(self, now: datetime | None = None) -> None:
        """Fire the scheduled rules that are due (a rule seen first is due one period after)."""
        now = now or datetime.now(timezone.utc)
        seen = set()
        for rule in self._scheduled_rules():
            seen.add(rule.arn)
            if rule.state not in _ENABLED:
                self._next_fire.pop(rule.arn, None)
                continue
            expression = rule.scheduled_expression
            planned = self._next_fire.get(rule.arn)
            try:
                if planned is None or planned[0] != expression:
                    self._next_fire[rule.arn] = (expression, Schedule(expression).next_after(now))
                    continue
                if now >= planned[1]:
                    self._next_fire[rule.arn] = (expression, Schedule(expression).next_after(now))
                    self.fire(rule, now)
            except ScheduleError as error:
                log.warning("rule %s: schedule %r does not parse: %s", rule.arn, expression, error)
                self._next_fire[rule.arn] = (expression, datetime.max.replace(tzinfo=timezone.utc))
        for arn in set(self._next_fire) - seen:
            del self._next_fire[arn]

    def fire(self, rule: Any, now: datetime | None = None, wait: bool = False) -> tuple[str, list[dict[str, Any]]]:
        """Send the rule's scheduled event to its targets: its id and (with ``wait``) the deliveries."""
        now = now or datetime.now(timezone.utc)
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": rule.account_id, "time": _iso(now), "region": rule.region_name, "resources": [rule.arn],
                 "detail": {}}
        return event["id"], self.deliver(rule, event, wait=wait)

    def find_rule(self, account: str, region: str, name: str, bus: str = "default") -> Any:
        from moto.events.models import events_backends

        backend = events_backends[account][region]
        rule = backend.event_buses[bus].rules.get(name) if bus in backend.event_buses else None
        if rule is None:
            raise KeyError(f"no rule {name} on bus {bus} of account {account} in {region}")
        return rule


ROUTER = EventRouter()
