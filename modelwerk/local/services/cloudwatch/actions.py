"""What CloudWatch does when an alarm changes state: the "CloudWatch Alarm State Change" event on the account's
default bus (always), and, when the alarm's actions are enabled, its actions for the new state: SNS topics get
CloudWatch's notification JSON, Lambda functions the alarm payload (asynchronously, through the Lambda API). Each
action leaves an ``Action`` item in the alarm history, succeeded or failed; actions of other services are recorded
as failed, since the embedded AWS does not run them."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import datetime
from typing import Any

from modelwerk.local.services.cloudwatch.evaluation import Pending, iso
from modelwerk.local.services.cloudwatch.models import COMPOSITE_ALARM, RegionAlarms, aware
from modelwerk.local.services.cloudwatch.rules import ALARM, INSUFFICIENT_DATA, OK

log = logging.getLogger("modelwerk.local")

STATE_CHANGE = "CloudWatch Alarm State Change"
_ACTIONS_KEY = {ALARM: "AlarmActions", OK: "OKActions", INSUFFICIENT_DATA: "InsufficientDataActions"}


class AlarmActions:
    """Runs a transition's event and actions with clients of the alarm's account (``context``: the server's)."""

    def __init__(self, context: Any, lock: Any):
        self.context = context
        self.lock = lock  # the alarms' lock: history is written under it
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, store: RegionAlarms, item: Pending) -> list[str]:
        now = item.transition.timestamp
        detail = event_detail(item)
        self.context.emit_event(store.account, store.region, source="aws.cloudwatch", detail_type=STATE_CHANGE,
                                detail=detail, resources=[item.alarm.arn])
        done = [f"events:{STATE_CHANGE}"]
        config = item.alarm.config
        if not config.get("ActionsEnabled", True) or item.suppressed:
            return done
        for arn in config.get(_ACTIONS_KEY[item.transition.state]) or []:
            outcome, message, error = self._run(store, arn, item, detail, now)
            done.append(outcome)
            data: dict[str, Any] = {"actionState": "Failed" if error else "Succeeded",
                                    "stateUpdateTimestamp": int(now.timestamp() * 1000),
                                    "notificationResource": arn}
            if message is not None:
                data["publishedMessage"] = message
            if error:
                data["error"] = error
            summary = f"Failed to execute action {arn}" if error else f"Successfully executed action {arn}"
            with self.lock:
                store.record(item.alarm.name, item.alarm.kind, "Action", summary, data, now)
        return done

    def _run(self, store: RegionAlarms, arn: str, item: Pending, detail: dict[str, Any],
             now: datetime) -> tuple[str, str | None, str | None]:
        """(what was done, the message sent, the error) of one action."""
        parts = arn.split(":")
        service = parts[2] if len(parts) > 5 else ""
        try:
            if service == "sns":
                subject = f'{item.transition.state}: "{item.alarm.name}" in {region_name(store.region)}'
                if len(subject) > 100:
                    subject = subject[:97] + "..."
                message = json.dumps(notification(item, store.region, now))
                self._client("sns", parts[4], parts[3]).publish(TopicArn=arn, Subject=subject, Message=message)
                return f"sns:{arn}", message, None
            if service == "lambda" and parts[5] == "function":
                payload = json.dumps({"source": "aws.cloudwatch", "alarmArn": item.alarm.arn,
                                      "accountId": store.account, "time": iso(now), "region": store.region,
                                      "alarmData": detail})
                self._client("lambda", parts[4], parts[3]).invoke(FunctionName=arn, InvocationType="Event",
                                                                  Payload=payload.encode())
                return f"lambda:{arn}", payload, None
        except Exception as error:  # noqa: BLE001 - CloudWatch, too, records a failed action and carries on
            log.warning("alarm %s: action %s failed: %s", item.alarm.name, arn, error)
            return f"{service}:{arn} failed: {error}", None, str(error)
        reason = f"the embedded AWS does not run {service or 'this'} alarm actions"
        log.info("alarm %s: action %s not run: %s", item.alarm.name, arn, reason)
        return f"{service or 'unknown'}:{arn} not run", None, reason

    def _client(self, service: str, account: str, region: str) -> Any:
        with self._lock:
            key = (service, account, region)
            if key not in self._clients:
                self._clients[key] = self.context.client(service, account, region)
            return self._clients[key]


def notification(item: Pending, region: str, now: datetime) -> dict[str, Any]:
    """CloudWatch's SNS notification, field for field."""
    alarm, config = item.alarm, item.alarm.config
    updated = config.get("AlarmConfigurationUpdatedTimestamp")
    message: dict[str, Any] = {
        "AlarmName": alarm.name, "AlarmDescription": config.get("AlarmDescription"),
        "AWSAccountId": alarm.arn.split(":")[4],
        "AlarmConfigurationUpdatedTimestamp": iso(aware(updated)) if updated else iso(now),
        "NewStateValue": item.transition.state, "NewStateReason": item.transition.reason,
        "StateChangeTime": iso(now), "Region": region_name(region), "AlarmArn": alarm.arn,
        "OldStateValue": item.transition.previous_state, "OKActions": config.get("OKActions", []),
        "AlarmActions": config.get("AlarmActions", []),
        "InsufficientDataActions": config.get("InsufficientDataActions", []),
    }
    if alarm.kind == COMPOSITE_ALARM:
        message["AlarmRule"] = config["AlarmRule"]
        triggering = json.loads(alarm.reason_data or "{}").get("triggeringAlarms", [])
        message["TriggeringChildren"] = [{"Arn": t["arn"], "State": {"Value": t["state"]["value"],
                                                                     "Timestamp": t["state"]["timestamp"]}}
                                         for t in triggering]
        return message
    trigger: dict[str, Any] = {"Period": config.get("Period"), "EvaluationPeriods": config["EvaluationPeriods"],
                               "DatapointsToAlarm": config.get("DatapointsToAlarm", config["EvaluationPeriods"]),
                               "ComparisonOperator": config["ComparisonOperator"],
                               "Threshold": config.get("Threshold"),
                               "TreatMissingData": config.get("TreatMissingData", "missing"),
                               "EvaluateLowSampleCountPercentile": config.get("EvaluateLowSampleCountPercentile",
                                                                              "")}
    if config.get("Metrics"):
        trigger["Metrics"] = [_lower_dimensions(metric) for metric in config["Metrics"]]
    else:
        trigger.update({
            "MetricName": config["MetricName"], "Namespace": config.get("Namespace"),
            "StatisticType": "ExtendedStatistic" if config.get("ExtendedStatistic") else "Statistic",
            "Unit": config.get("Unit"),
            "Dimensions": [{"value": d["Value"], "name": d["Name"]} for d in config.get("Dimensions", [])]})
        if config.get("ExtendedStatistic"):
            trigger["ExtendedStatistic"] = config["ExtendedStatistic"]
        else:
            trigger["Statistic"] = config["Statistic"].upper()
    message["Trigger"] = trigger
    return message


def event_detail(item: Pending) -> dict[str, Any]:
    """The detail of EventBridge's "CloudWatch Alarm State Change" event."""
    alarm, previous, config = item.alarm, item.previous, item.alarm.config
    detail: dict[str, Any] = {
        "alarmName": alarm.name,
        "state": {"value": alarm.state, "reason": alarm.reason, "reasonData": alarm.reason_data,
                  "timestamp": iso(item.transition.timestamp)},
        "previousState": {"value": previous.state, "reason": previous.reason,
                          "reasonData": previous.reason_data, "timestamp": iso(previous.updated)},
    }
    if alarm.kind == COMPOSITE_ALARM:
        detail["configuration"] = {"alarmRule": config["AlarmRule"], "description": config.get("AlarmDescription"),
                                   "actionsSuppressor": config.get("ActionsSuppressor"),
                                   "actionsSuppressorWaitPeriod": config.get("ActionsSuppressorWaitPeriod"),
                                   "actionsSuppressorExtensionPeriod":
                                       config.get("ActionsSuppressorExtensionPeriod")}
        if item.suppressed:
            detail["state"]["actionsSuppressedBy"] = config.get("ActionsSuppressedBy")
            detail["state"]["actionsSuppressedReason"] = config.get("ActionsSuppressedReason")
        return detail
    if config.get("Metrics"):
        metrics = [_event_metric(m) for m in config["Metrics"]]
    else:
        metrics = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm.arn)), "returnData": True, "metricStat": {
            "metric": {"namespace": config.get("Namespace"), "name": config["MetricName"],
                       "dimensions": {d["Name"]: d["Value"] for d in config.get("Dimensions", [])}},
            "period": config.get("Period"),
            "stat": config.get("Statistic") or config.get("ExtendedStatistic"),
            **({"unit": config["Unit"]} if config.get("Unit") else {})}}]
    detail["configuration"] = {"description": config.get("AlarmDescription"), "metrics": metrics}
    return detail


def _lower_dimensions(metric: dict[str, Any]) -> dict[str, Any]:
    """A metric query as CloudWatch writes it into a notification's Trigger (dimensions in lower case)."""
    out = dict(metric)
    if "MetricStat" in out:
        stat = dict(out["MetricStat"])
        stat["Metric"] = {**stat["Metric"], "Dimensions": [{"value": d["Value"], "name": d["Name"]}
                                                           for d in stat["Metric"].get("Dimensions", [])]}
        out["MetricStat"] = stat
    return out


def _event_metric(metric: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": metric["Id"], "returnData": metric.get("ReturnData", True)}
    if metric.get("Label"):
        out["label"] = metric["Label"]
    if metric.get("Expression"):
        out["expression"] = metric["Expression"]
    if "MetricStat" in metric:
        stat = metric["MetricStat"]
        out["metricStat"] = {"metric": {"namespace": stat["Metric"].get("Namespace"),
                                        "name": stat["Metric"]["MetricName"],
                                        "dimensions": {d["Name"]: d["Value"]
                                                       for d in stat["Metric"].get("Dimensions", [])}},
                             "period": stat["Period"], "stat": stat["Stat"]}
    return out


_REGION_NAMES: dict[str, str] = {}


def region_name(region: str) -> str:
    """The region's long name as notifications spell it ("Europe (Frankfurt)"), from botocore's endpoint data."""
    if not _REGION_NAMES:
        import botocore.session

        for partition in botocore.session.get_session().get_data("endpoints")["partitions"]:
            for code, described in partition["regions"].items():
                _REGION_NAMES[code] = described.get("description", code)
    return _REGION_NAMES.get(region, region)
