"""CloudWatch's alarm operations the embedded AWS answers itself (parameters in, outputs in botocore's shapes out).

Metric alarms stay moto's (PutMetricAlarm is forwarded to it); these handlers add what moto lacks: composite alarms,
the alarm history, states that change by evaluation or SetAlarmState with their actions, and AWS's semantics where
moto's differ (a new alarm is INSUFFICIENT_DATA; updating an alarm keeps its state).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelwerk.local.services._routing import AwsError, Call, Reply
from modelwerk.local.services.cloudwatch.evaluation import AlarmEvaluator
from modelwerk.local.services.cloudwatch.models import (COMPOSITE_ALARM, INITIAL_REASON, METRIC_ALARM,
                                                        CloudWatchAlarms, CompositeAlarm, RegionAlarms, aware,
                                                        describe_metric_alarm, utcnow)
from modelwerk.local.services.cloudwatch.rules import (INSUFFICIENT_DATA, RuleError, Unsupported, parse_rule,
                                                       rule_children)

#: DescribeAlarms' and DescribeAlarmHistory's page sizes when MaxRecords is not given.
DESCRIBE_PAGE, HISTORY_PAGE = 50, 100
_STATE_KEYS = {"StateValue", "StateReason", "StateReasonData", "StateUpdatedTimestamp", "StateTransitionedTimestamp",
               "ActionsSuppressedBy", "ActionsSuppressedReason"}


@dataclass
class Running:
    alarms: CloudWatchAlarms
    evaluator: AlarmEvaluator


_running: list[Running] = []


def attach(running: Running | None) -> None:
    """The alarms and evaluator of the server that runs (None when it stops)."""
    _running.clear()
    if running is not None:
        _running.append(running)


def _current() -> Running:
    if not _running:
        raise AwsError("ServiceUnavailable", "the embedded CloudWatch's alarm service is not running", 503)
    return _running[0]


def _store(call: Call) -> tuple[Running, RegionAlarms]:
    running = _current()
    return running, running.alarms.region(call.account, call.region)


# -- configuration --------------------------------------------------------------------------------------------------
def put_metric_alarm(call: Call) -> Any:
    """Forwarded to moto, which stores the alarm; then AWS's state rules and the ConfigurationUpdate history."""
    running, store = _store(call)
    name = call.params["AlarmName"]
    if name in store.composites:
        raise AwsError("InvalidParameterValue", f"The alarm {name} already exists as a composite alarm.")
    with running.alarms.lock:
        before = store.metric_alarms().get(name)
        old = describe_metric_alarm(before) if before is not None else None
        status, headers, body = call.forward()
        if status >= 300:
            return Reply(status, body, headers)
        alarm = store.metric_alarms()[name]
        if before is not None:  # an update keeps the alarm's state
            for key in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp",
                        "state_transitioned_timestamp"):
                setattr(alarm, key, getattr(before, key, None))
        else:
            alarm.state_value, alarm.state_reason, alarm.state_reason_data = INSUFFICIENT_DATA, INITIAL_REASON, None
        _record_configuration(store, name, METRIC_ALARM, old, describe_metric_alarm(alarm))
    return {}


def put_composite_alarm(call: Call) -> dict[str, Any]:
    running, store = _store(call)
    p = call.params
    name, rule = p["AlarmName"], p["AlarmRule"]
    try:
        parse_rule(rule)
    except RuleError as error:
        raise AwsError("ValidationError", f"Error in alarm rule: {error}") from None
    except Unsupported:
        pass  # stored; its evaluation says why it stays INSUFFICIENT_DATA
    if name in store.metric_alarms():
        raise AwsError("InvalidParameterValue", f"The alarm {name} already exists as a metric alarm.")
    with running.alarms.lock:
        existing = store.composites.get(name)
        composite = CompositeAlarm(
            name=name, arn=store.arn(name), rule=rule, description=p.get("AlarmDescription"),
            actions_enabled=p.get("ActionsEnabled", True), alarm_actions=list(p.get("AlarmActions", [])),
            ok_actions=list(p.get("OKActions", [])),
            insufficient_data_actions=list(p.get("InsufficientDataActions", [])),
            actions_suppressor=p.get("ActionsSuppressor"),
            actions_suppressor_wait_period=p.get("ActionsSuppressorWaitPeriod"),
            actions_suppressor_extension_period=p.get("ActionsSuppressorExtensionPeriod"))
        if existing is not None:  # an update keeps the alarm's state
            for key in ("state_value", "state_reason", "state_reason_data", "state_updated", "state_transitioned"):
                setattr(composite, key, getattr(existing, key))
        store.composites[name] = composite
        store.save()
        _record_configuration(store, name, COMPOSITE_ALARM, existing.describe() if existing else None,
                              composite.describe())
        if p.get("Tags"):
            store.backend.tagger.tag_resource(composite.arn, p["Tags"])
    running.evaluator.composites(call.account, call.region)
    return {}


def delete_alarms(call: Call) -> dict[str, Any]:
    """Both kinds; an unknown name deletes nothing, as on AWS."""
    running, store = _store(call)
    names = call.params["AlarmNames"]
    with running.alarms.lock:
        metric = store.metric_alarms()
        missing = [n for n in names if n not in metric and n not in store.composites]
        if missing:
            raise AwsError("ResourceNotFound", f"{len(missing)} of the alarms specified in the request was not "
                                               f"found: {', '.join(missing)}", 404)
        for name in names:
            kind = store.kind_of(name)
            old = store.describe(name)
            if kind == COMPOSITE_ALARM:
                del store.composites[name]
                store.save()
            else:
                store.backend.delete_alarms([name])
            store.record(name, kind, "ConfigurationUpdate", f'Alarm "{name}" deleted',
                         {"type": "Delete", "version": "1.0", "deletedAlarm": _history_config(old)}, utcnow())
    return {}


def enable_alarm_actions(call: Call) -> dict[str, Any]:
    return _alarm_actions(call, True)


def disable_alarm_actions(call: Call) -> dict[str, Any]:
    return _alarm_actions(call, False)


def _alarm_actions(call: Call, enabled: bool) -> dict[str, Any]:
    running, store = _store(call)
    with running.alarms.lock:
        names = call.params["AlarmNames"]
        for name in names:
            if name in store.composites:
                store.composites[name].actions_enabled = enabled
        store.save()
        if enabled:
            store.backend.enable_alarm_actions(names)
        else:
            store.backend.disable_alarm_actions(names)
    return {}


def _record_configuration(store: RegionAlarms, name: str, kind: str, old: dict[str, Any] | None,
                          new: dict[str, Any]) -> None:
    if old is None:
        store.record(name, kind, "ConfigurationUpdate", f'Alarm "{name}" created',
                     {"type": "Create", "version": "1.0", "createdAlarm": _history_config(new)}, utcnow())
    else:
        store.record(name, kind, "ConfigurationUpdate", f'Alarm "{name}" updated',
                     {"type": "Update", "version": "1.0", "oldData": _history_config(old),
                      "updatedAlarm": _history_config(new)}, utcnow())


def _history_config(described: dict[str, Any]) -> dict[str, Any]:
    """An alarm's configuration as HistoryData writes it: camelCase, no state."""
    out = {}
    for key, value in described.items():
        if key in _STATE_KEYS:
            continue
        key = {"AlarmConfigurationUpdatedTimestamp": "timestamp", "OKActions": "okActions"}.get(key, key)
        out[key[0].lower() + key[1:]] = value.isoformat() if isinstance(value, datetime) else value
    return out


# -- state ----------------------------------------------------------------------------------------------------------
def set_alarm_state(call: Call) -> dict[str, Any]:
    running, store = _store(call)
    p = call.params
    data = p.get("StateReasonData")
    if data:
        try:
            json.loads(data)
        except ValueError:
            raise AwsError("InvalidFormat", "StateReasonData is not valid JSON") from None
    running.evaluator.set_state(call.account, call.region, p["AlarmName"], p["StateValue"], p["StateReason"], data)
    return {}


# -- reading --------------------------------------------------------------------------------------------------------
def describe_alarms(call: Call) -> dict[str, Any]:
    _, store = _store(call)
    p = call.params
    types = p.get("AlarmTypes") or [METRIC_ALARM]  # as on AWS: without AlarmTypes, metric alarms only
    related = p.get("ChildrenOfAlarmName") or p.get("ParentsOfAlarmName")
    if related and any(p.get(k) for k in ("AlarmNames", "AlarmNamePrefix", "StateValue", "ActionPrefix")):
        raise AwsError("InvalidParameterCombination", "ChildrenOfAlarmName and ParentsOfAlarmName can be combined "
                                                      "only with AlarmTypes, MaxRecords and NextToken.")
    if p.get("ChildrenOfAlarmName") and p.get("ParentsOfAlarmName"):
        raise AwsError("InvalidParameterCombination", "Use ChildrenOfAlarmName or ParentsOfAlarmName, not both.")
    if p.get("AlarmNames") and p.get("AlarmNamePrefix"):
        raise AwsError("InvalidParameterCombination", "Use AlarmNames or AlarmNamePrefix, not both.")
    described = [(METRIC_ALARM, describe_metric_alarm(a)) for a in store.metric_alarms().values()]
    described += [(COMPOSITE_ALARM, c.describe()) for c in list(store.composites.values())]
    rules = {c.name: _children(c.rule) for c in list(store.composites.values())}
    if p.get("ChildrenOfAlarmName"):
        wanted = rules.get(p["ChildrenOfAlarmName"], set())
        described = [(k, d) for k, d in described if d["AlarmName"] in wanted]
    if p.get("ParentsOfAlarmName"):
        described = [(k, d) for k, d in described if p["ParentsOfAlarmName"] in rules.get(d["AlarmName"], set())]
    if p.get("AlarmNames"):
        described = [(k, d) for k, d in described if d["AlarmName"] in p["AlarmNames"]]
    if p.get("AlarmNamePrefix"):
        described = [(k, d) for k, d in described if d["AlarmName"].startswith(p["AlarmNamePrefix"])]
    if p.get("StateValue"):
        described = [(k, d) for k, d in described if d["StateValue"] == p["StateValue"]]
    if p.get("ActionPrefix"):
        described = [(k, d) for k, d in described if any(
            action.startswith(p["ActionPrefix"])
            for key in ("AlarmActions", "OKActions", "InsufficientDataActions") for action in d.get(key, []))]
    described = sorted([(k, d) for k, d in described if k in types], key=lambda kd: (kd[0], kd[1]["AlarmName"]))
    page, token = _page(described, p.get("MaxRecords") or DESCRIBE_PAGE, p.get("NextToken"))
    answer: dict[str, Any] = {"MetricAlarms": [d for k, d in page if k == METRIC_ALARM],
                              "CompositeAlarms": [d for k, d in page if k == COMPOSITE_ALARM]}
    if token:
        answer["NextToken"] = token
    return answer


def describe_alarm_history(call: Call) -> dict[str, Any]:
    _, store = _store(call)
    p = call.params
    types = p.get("AlarmTypes") or [METRIC_ALARM]
    start, end = aware(p.get("StartDate")), aware(p.get("EndDate"))
    items = []
    for item in list(store.history):
        at = aware(item["Timestamp"])
        if (item["AlarmType"] not in types or p.get("AlarmName") and item["AlarmName"] != p["AlarmName"]
                or p.get("HistoryItemType") and item["HistoryItemType"] != p["HistoryItemType"]
                or start and at < start or end and at > end):
            continue
        items.append({**item, "Timestamp": at})
    if p.get("ScanBy", "TimestampDescending") == "TimestampDescending":
        items.reverse()
    page, token = _page(items, p.get("MaxRecords") or HISTORY_PAGE, p.get("NextToken"))
    answer: dict[str, Any] = {"AlarmHistoryItems": page}
    if token:
        answer["NextToken"] = token
    return answer


def _children(rule: str) -> set[str]:
    with contextlib.suppress(RuleError, Unsupported):
        return rule_children(parse_rule(rule))
    return set()


def _page(items: list[Any], size: int, token: str | None) -> tuple[list[Any], str | None]:
    try:
        offset = int(token) if token else 0
    except ValueError:
        raise AwsError("InvalidNextToken", "The service found NextToken to be invalid.") from None
    if not 0 <= offset <= len(items):
        raise AwsError("InvalidNextToken", "The service found NextToken to be invalid.")
    end = offset + int(size)
    return items[offset:end], (str(end) if end < len(items) else None)


# -- local control ----------------------------------------------------------------------------------------------------
def evaluate_alarms(body: dict[str, Any]) -> dict[str, Any]:
    """``POST /modelwerk-api/cloudwatch/evaluate-alarms`` ``{"account", "region", "alarm_names"?, "at"?}``: evaluate
    now (or as of ``at``, an ISO time) instead of at the next period boundary; the transitions it caused."""
    from moto.core import DEFAULT_ACCOUNT_ID

    running = _current()
    at = aware(body["at"]) if body.get("at") else None
    names = body.get("alarm_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise ValueError("alarm_names must be a list of alarm names")
    region = body.get("region")
    if not region:
        raise ValueError("region is required")
    transitions = running.evaluator.evaluate(str(body.get("account") or DEFAULT_ACCOUNT_ID), region, names, now=at)
    return {"transitions": [t.to_dict() for t in transitions]}


HANDLERS = {
    "PutMetricAlarm": put_metric_alarm,
    "PutCompositeAlarm": put_composite_alarm,
    "DeleteAlarms": delete_alarms,
    "DescribeAlarms": describe_alarms,
    "DescribeAlarmHistory": describe_alarm_history,
    "SetAlarmState": set_alarm_state,
    "EnableAlarmActions": enable_alarm_actions,
    "DisableAlarmActions": disable_alarm_actions,
}
CONTROLS = {"evaluate-alarms": evaluate_alarms}
