"""CloudWatch's alarms as the embedded AWS keeps them: moto's metric alarms (their configuration and state stay in
moto's backend), and beside them what moto cannot keep: composite alarms and the alarm history, per account and
region, written to ``<state>/cloudwatch/<account>/<region>.json`` on every change so they outlive the process."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelwerk.local.services._routing import AwsError
from modelwerk.local.services.cloudwatch.rules import INSUFFICIENT_DATA

log = logging.getLogger("modelwerk.local")

#: What CloudWatch says of an alarm nobody evaluated yet.
INITIAL_REASON = "Unchecked: Initial alarm creation"
#: History items kept per account and region (CloudWatch keeps 30 days; a local run never needs more than this).
HISTORY_LIMIT = 20_000
METRIC_ALARM, COMPOSITE_ALARM = "MetricAlarm", "CompositeAlarm"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(value: datetime | str | None) -> datetime | None:
    """A UTC datetime from moto's naive ones, ours, or an ISO string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def not_found(name: str) -> AwsError:
    return AwsError("ResourceNotFound", f"Alarm {name} not found", 404)


@dataclass
class CompositeAlarm:
    """A composite alarm: its configuration (PutCompositeAlarm's parameters) and its state."""

    name: str
    arn: str
    rule: str
    description: str | None = None
    actions_enabled: bool = True
    alarm_actions: list[str] = field(default_factory=list)
    ok_actions: list[str] = field(default_factory=list)
    insufficient_data_actions: list[str] = field(default_factory=list)
    actions_suppressor: str | None = None
    actions_suppressor_wait_period: int | None = None
    actions_suppressor_extension_period: int | None = None
    configuration_updated: str = field(default_factory=lambda: utcnow().isoformat())
    state_value: str = INSUFFICIENT_DATA
    state_reason: str = INITIAL_REASON
    state_reason_data: str | None = None
    state_updated: str = field(default_factory=lambda: utcnow().isoformat())
    state_transitioned: str | None = None
    actions_suppressed_by: str | None = None
    actions_suppressed_reason: str | None = None

    def describe(self) -> dict[str, Any]:
        """The alarm in the shape of DescribeAlarms' ``CompositeAlarm``."""
        described = {
            "AlarmName": self.name, "AlarmArn": self.arn, "AlarmRule": self.rule,
            "AlarmDescription": self.description, "ActionsEnabled": self.actions_enabled,
            "AlarmActions": list(self.alarm_actions), "OKActions": list(self.ok_actions),
            "InsufficientDataActions": list(self.insufficient_data_actions),
            "AlarmConfigurationUpdatedTimestamp": aware(self.configuration_updated),
            "StateValue": self.state_value, "StateReason": self.state_reason,
            "StateReasonData": self.state_reason_data, "StateUpdatedTimestamp": aware(self.state_updated),
            "StateTransitionedTimestamp": aware(self.state_transitioned or self.state_updated),
            "ActionsSuppressor": self.actions_suppressor,
            "ActionsSuppressorWaitPeriod": self.actions_suppressor_wait_period,
            "ActionsSuppressorExtensionPeriod": self.actions_suppressor_extension_period,
            "ActionsSuppressedBy": self.actions_suppressed_by,
            "ActionsSuppressedReason": self.actions_suppressed_reason,
        }
        return {k: v for k, v in described.items() if v is not None}


def describe_metric_alarm(alarm: Any) -> dict[str, Any]:
    """One of moto's metric alarms in the shape of DescribeAlarms' ``MetricAlarm``."""
    metrics = []
    for query in alarm.metric_data_queries or []:
        described: dict[str, Any] = {"Id": query.id, "ReturnData": _bool(query.return_data, True)}
        for key, value in (("Label", query.label), ("Expression", query.expression),
                           ("Period", int(query.period) if query.period else None)):
            if value is not None:
                described[key] = value
        if query.metric_stat is not None:
            stat = query.metric_stat
            described["MetricStat"] = {k: v for k, v in {
                "Metric": {"Namespace": stat.metric.namespace, "MetricName": stat.metric.metric_name,
                           "Dimensions": [{"Name": d.name, "Value": d.value} for d in stat.metric.dimensions]},
                "Period": int(stat.period), "Stat": stat.stat, "Unit": stat.unit}.items() if v is not None}
        metrics.append(described)
    updated = aware(alarm.state_updated_timestamp)
    described = {
        "AlarmName": alarm.name, "AlarmArn": alarm.alarm_arn, "AlarmDescription": alarm.description,
        "AlarmConfigurationUpdatedTimestamp": aware(alarm.configuration_updated_timestamp),
        "ActionsEnabled": _bool(alarm.actions_enabled, True), "OKActions": list(alarm.ok_actions or []),
        "AlarmActions": list(alarm.alarm_actions or []),
        "InsufficientDataActions": list(alarm.insufficient_data_actions or []),
        "StateValue": alarm.state_value, "StateReason": alarm.state_reason,
        "StateReasonData": alarm.state_reason_data, "StateUpdatedTimestamp": updated,
        "StateTransitionedTimestamp": aware(getattr(alarm, "state_transitioned_timestamp", None)) or updated,
        "MetricName": alarm.metric_name, "Namespace": alarm.namespace, "Statistic": alarm.statistic,
        "ExtendedStatistic": alarm.extended_statistic,
        "Dimensions": [{"Name": d.name, "Value": d.value} for d in alarm.dimensions] if alarm.metric_name else None,
        "Period": int(alarm.period) if alarm.period else None, "Unit": alarm.unit,
        "EvaluationPeriods": int(alarm.evaluation_periods) if alarm.evaluation_periods else None,
        "DatapointsToAlarm": int(alarm.datapoints_to_alarm) if alarm.datapoints_to_alarm else None,
        "Threshold": float(alarm.threshold) if alarm.threshold is not None else None,
        "ComparisonOperator": alarm.comparison_operator, "TreatMissingData": alarm.treat_missing_data,
        "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile,
        "Metrics": metrics or None, "ThresholdMetricId": alarm.threshold_metric_id,
    }
    return {k: v for k, v in described.items() if v is not None and v != ""}


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


class RegionAlarms:
    """One account's alarms in one region: moto's metric alarms and our composite alarms and history."""

    def __init__(self, account: str, region: str, path: Path | None):
        self.account = account
        self.region = region
        self.path = path
        self.composites: dict[str, CompositeAlarm] = {}
        self.history: list[dict[str, Any]] = []
        if path is not None and path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                self.composites = {c["name"]: CompositeAlarm(**c) for c in saved.get("composites", [])}
                self.history = saved.get("history", [])
            except (OSError, ValueError, TypeError) as error:
                log.warning("alarm records in %s are unreadable, starting without them: %s", path, error)

    @property
    def backend(self) -> Any:
        from moto.cloudwatch.models import cloudwatch_backends

        return cloudwatch_backends[self.account][self.region]

    def arn(self, name: str) -> str:
        return f"arn:aws:cloudwatch:{self.region}:{self.account}:alarm:{name}"

    # -- metric alarms (moto's) -------------------------------------------------------------------------------------
    def metric_alarms(self) -> dict[str, Any]:
        """moto's metric alarms by name (moto files a PutMetricAlarm with an AlarmRule among them: not ours)."""
        return {name: alarm for name, alarm in list(self.backend.alarms.items()) if alarm.rule is None}

    def kind_of(self, name: str) -> str | None:
        if name in self.composites:
            return COMPOSITE_ALARM
        if name in self.metric_alarms():
            return METRIC_ALARM
        return None

    def describe(self, name: str) -> dict[str, Any]:
        if name in self.composites:
            return self.composites[name].describe()
        alarm = self.metric_alarms().get(name)
        if alarm is None:
            raise not_found(name)
        return describe_metric_alarm(alarm)

    def set_state(self, name: str, value: str, reason: str, reason_data: str | None, at: datetime) -> None:
        """Store an alarm's state (metric alarms in moto's backend, where moto's own operations see it too)."""
        if name in self.composites:
            alarm = self.composites[name]
            if alarm.state_value != value:
                alarm.state_transitioned = at.isoformat()
            alarm.state_value, alarm.state_reason, alarm.state_reason_data = value, reason, reason_data
            alarm.state_updated = at.isoformat()
            self.save()
            return
        alarm = self.metric_alarms().get(name)
        if alarm is None:
            raise not_found(name)
        naive = at.astimezone(timezone.utc).replace(tzinfo=None)  # moto keeps naive UTC timestamps
        if alarm.state_value != value:
            alarm.state_transitioned_timestamp = naive
        alarm.state_value, alarm.state_reason = value, reason
        alarm.state_reason_data = reason_data if reason_data is not None else "{}"
        alarm.state_updated_timestamp = naive

    # -- history ----------------------------------------------------------------------------------------------------
    def record(self, name: str, kind: str, item_type: str, summary: str, data: dict[str, Any], at: datetime) -> None:
        """One item of the alarm history, as DescribeAlarmHistory answers it."""
        self.history.append({"AlarmName": name, "AlarmType": kind, "Timestamp": at.isoformat(),
                             "HistoryItemType": item_type, "HistorySummary": summary,
                             "HistoryData": json.dumps(data, separators=(",", ":"), default=str)})
        del self.history[:-HISTORY_LIMIT]
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"composites": [asdict(c) for c in self.composites.values()],
                                       "history": self.history}, indent=1), encoding="utf-8")
        os.replace(partial, self.path)


class CloudWatchAlarms:
    """Every account's and region's alarms. ``lock`` guards every read-judge-write of alarm states (request
    threads and the evaluation loop)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.lock = threading.RLock()
        self._regions: dict[tuple[str, str], RegionAlarms] = {}
        if folder is not None:
            for path in sorted(folder.glob("*/*.json")):
                self.region(path.parent.name, path.stem)

    def region(self, account: str, region: str) -> RegionAlarms:
        with self.lock:
            key = (account, region)
            if key not in self._regions:
                path = self.folder / account / f"{region}.json" if self.folder is not None else None
                self._regions[key] = RegionAlarms(account, region, path)
            return self._regions[key]

    def regions(self) -> list[RegionAlarms]:
        """Every account and region that holds alarms: moto's backends and ours."""
        from moto.cloudwatch.models import cloudwatch_backends

        keys = set(self._regions)
        for account, backends in list(cloudwatch_backends.items()):
            for region, backend in list(backends.items()):
                if backend.alarms:
                    keys.add((account, region))
        return [self.region(account, region) for account, region in sorted(keys)]
