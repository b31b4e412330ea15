"""CloudWatch's alarm evaluation, run by the embedded AWS itself (moto stores alarms but never evaluates them).

Metric alarms are judged against the data points moto's CloudWatch holds, as CloudWatch judges them: Statistic or
ExtendedStatistic (``pNN``, computed from the raw values published with ``Value`` or ``Values``/``Counts``), Period,
EvaluationPeriods, DatapointsToAlarm (M out of N), ComparisonOperator, Threshold, TreatMissingData,
EvaluateLowSampleCountPercentile, and metric math. Composite alarms follow their children's states. What cannot be
evaluated here (anomaly detection, Metrics Insights, other functions) goes to INSUFFICIENT_DATA with a reason that
says so.

How the data points are chosen, after CloudWatch's documented behaviour: periods are aligned to the clock; the
evaluation range is the N most recent periods plus :data:`EXTRA_PERIODS` older ones, ending with the period in
progress when it already has data. With N or more real data points the N most recent decide; with fewer,
TreatMissingData fills the gap (``missing`` goes to INSUFFICIENT_DATA only when no data point is left, and otherwise
keeps the state until the real points decide, except that a breaching point at least M periods old with only
breaching or missing points after it raises the alarm, as CloudWatch does).

Each metric alarm is evaluated once per period (once a minute for periods of a minute or more), at the boundary;
composite alarms whenever a child may have changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import operator
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from modelwerk.local.services.cloudwatch.metric_math import MetricMath, percentile
from modelwerk.local.services.cloudwatch.models import (COMPOSITE_ALARM, METRIC_ALARM, CloudWatchAlarms,
                                                        RegionAlarms, aware, not_found)
from modelwerk.local.services.cloudwatch.rules import (ALARM, INSUFFICIENT_DATA, OK, SUPPORTED_HINT, RuleError,
                                                       Unsupported, parse_rule, rule_children, rule_value)

log = logging.getLogger("modelwerk.local")

#: Periods fetched beyond EvaluationPeriods (CloudWatch's documented 3-of-3 example uses a range of 5).
EXTRA_PERIODS = 2
STANDARD_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")
_SUPPORTED_HINT = SUPPORTED_HINT


@dataclass
class AlarmTransition:
    """One alarm's change of state, as the alarm history records it, with the actions it ran."""

    account: str
    region: str
    name: str
    kind: str  # MetricAlarm | CompositeAlarm
    previous_state: str
    state: str
    reason: str
    timestamp: datetime
    actions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account, "region": self.region, "alarmName": self.name, "alarmType": self.kind,
                "oldState": self.previous_state, "newState": self.state, "reason": self.reason,
                "timestamp": self.timestamp.isoformat(), "actions": list(self.actions)}


@dataclass
class _Point:
    timestamp: int  # start of the period, epoch seconds
    value: float
    sample_count: float | None = None


@dataclass
class _Outcome:
    state: str | None  # None: the alarm keeps its state
    reason: str = ""
    reason_data: dict[str, Any] | None = None


@dataclass
class _Alarm:
    """An alarm as DescribeAlarms describes it (``config``), with its state pulled out."""

    name: str
    arn: str
    kind: str
    state: str
    reason: str
    reason_data: str | None
    updated: datetime
    config: dict[str, Any]

    @classmethod
    def of(cls, config: dict[str, Any], kind: str) -> "_Alarm":
        return cls(config["AlarmName"], config["AlarmArn"], kind, config["StateValue"], config.get("StateReason", ""),
                   config.get("StateReasonData"), config["StateUpdatedTimestamp"], config)


@dataclass
class Pending:
    """A transition whose actions are still to run: the alarm before and after."""

    alarm: _Alarm
    previous: _Alarm
    transition: AlarmTransition
    suppressed: bool = False


@dataclass
class _Query:
    """One MetricStat of an alarm."""

    id: str
    namespace: str
    metric: str
    dimensions: list[dict[str, str]]
    period: int
    stat: str
    unit: str | None

    @property
    def percentile(self) -> float | None:
        match = _PERCENTILE.match(self.stat)
        return float(match.group(1)) if match else None


def _epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _plural(n: int | float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def _was(n: int | float) -> str:
    return "was" if n == 1 else "were"


def iso(value: datetime) -> str:
    """CloudWatch's timestamp format in notifications and reason data: 2024-06-05T10:02:00.000+0000."""
    value = aware(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def evaluation_interval(config: dict[str, Any]) -> int:
    """How often CloudWatch evaluates a metric alarm: every period, at most once a minute."""
    period = config.get("Period")
    if not period:
        stats = [m["MetricStat"]["Period"] for m in config.get("Metrics", []) if "MetricStat" in m]
        period = stats[0] if stats else 60
    return max(1, min(int(period), 60))


class _Datums:
    """The data points moto's CloudWatch holds for one account and region, indexed by (namespace, metric name)."""

    def __init__(self, backend: Any):
        self.index: dict[tuple[str, str], list[tuple[float, Any]]] = {}
        for datum in list(backend.metric_data):
            stamp = aware(datum.timestamp).timestamp()
            self.index.setdefault((datum.namespace, datum.name), []).append((stamp, datum))

    def select(self, query: _Query, start: int, end: int) -> list[tuple[float, Any]]:
        wanted = {(d["Name"], d["Value"]) for d in query.dimensions}
        return [(stamp, datum) for stamp, datum in self.index.get((query.namespace, query.metric), [])
                if start <= stamp < end and {(d.name, d.value) for d in datum.dimensions} == wanted
                and (not query.unit or datum.unit == query.unit)]


class AlarmEvaluator:
    """Evaluates the alarms of every account and region, stores their states and history, and hands each
    transition to ``run_actions`` (called outside the lock, with the transitions in order)."""

    def __init__(self, alarms: CloudWatchAlarms, run_actions: Callable[[RegionAlarms, Pending], list[str]]):
        self.alarms = alarms
        self.run_actions = run_actions
        self._slots: dict[tuple[str, str, str], int] = {}

    # -- entry points ------------------------------------------------------------------------------------------------
    def tick(self) -> list[AlarmTransition]:
        """Evaluate the metric alarms whose period boundary passed, and the composite alarms, everywhere."""
        transitions: list[AlarmTransition] = []
        for store in self.alarms.regions():
            try:
                transitions += self.evaluate(store.account, store.region, due_only=True)
            except Exception:  # noqa: BLE001 - one account's failure must not stop the others
                log.exception("alarms of %s/%s not evaluated this time", store.account, store.region)
        return transitions

    def evaluate(self, account: str, region: str, names: list[str] | None = None, *, now: datetime | None = None,
                 due_only: bool = False) -> list[AlarmTransition]:
        """Evaluate the alarms (all, or ``names`` and the children of composite ones among them) as of ``now``;
        then every composite alarm of the region. Runs the actions of those that changed; returns the changes."""
        now = aware(now) if now is not None else datetime.now(timezone.utc)
        store = self.alarms.region(account, region)
        with self.alarms.lock:
            alarms = self._views(store)
            metric_names = [n for n in self._select(alarms, names) if alarms[n].kind == METRIC_ALARM]
            if due_only:
                metric_names = [n for n in metric_names if self._due(store, alarms[n], now)]
            pending: list[Pending] = []
            datums = _Datums(store.backend) if metric_names else None
            for name in metric_names:
                try:
                    outcome = self._judge_metric_alarm(alarms[name], now, datums)
                except Unsupported as error:
                    outcome = _Outcome(INSUFFICIENT_DATA, f"Unchecked: {error}")
                except Exception as error:  # noqa: BLE001 - one alarm's failure must not stop the others
                    log.warning("alarm %s not evaluated this time: %s", name, error)
                    continue
                changed = self._commit(store, alarms[name], outcome, now)
                if changed:
                    pending.append(changed)
                    alarms[name] = changed.alarm
            pending += self._composites(store, alarms, now)
        return self._act(store, pending)

    def set_state(self, account: str, region: str, name: str, value: str, reason: str,
                  reason_data: str | None) -> list[AlarmTransition]:
        """SetAlarmState: the state until the next evaluation; actions run when it changes; parents follow."""
        now = datetime.now(timezone.utc)
        store = self.alarms.region(account, region)
        with self.alarms.lock:
            alarms = self._views(store)
            if name not in alarms:
                raise not_found(name)
            data = json.loads(reason_data) if reason_data else None
            pending = [p for p in [self._commit(store, alarms[name], _Outcome(value, reason, data), now,
                                                forced=True)] if p]
            if pending:
                alarms[name] = pending[0].alarm
            pending += self._composites(store, alarms, now)
        return self._act(store, pending)

    def composites(self, account: str, region: str) -> list[AlarmTransition]:
        """Evaluate the composite alarms of a region now (after one was put or a child changed)."""
        store = self.alarms.region(account, region)
        with self.alarms.lock:
            pending = self._composites(store, self._views(store), datetime.now(timezone.utc))
        return self._act(store, pending)

    # -- what there is -----------------------------------------------------------------------------------------------
    @staticmethod
    def _views(store: RegionAlarms) -> dict[str, _Alarm]:
        from modelwerk.local.services.cloudwatch.models import describe_metric_alarm

        alarms = {name: _Alarm.of(describe_metric_alarm(alarm), METRIC_ALARM)
                  for name, alarm in store.metric_alarms().items()}
        for name, composite in store.composites.items():
            alarms.setdefault(name, _Alarm.of(composite.describe(), COMPOSITE_ALARM))
        return alarms

    @staticmethod
    def _select(alarms: dict[str, _Alarm], names: list[str] | None) -> list[str]:
        if names is None:
            return sorted(alarms)
        wanted: list[str] = []
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in wanted:
                continue
            if name not in alarms:
                raise not_found(name)
            wanted.append(name)
            if alarms[name].kind == COMPOSITE_ALARM:
                with contextlib.suppress(RuleError, Unsupported):
                    todo.extend(rule_children(parse_rule(alarms[name].config["AlarmRule"])) & alarms.keys())
        return sorted(wanted)

    def _due(self, store: RegionAlarms, alarm: _Alarm, now: datetime) -> bool:
        """At the first look at an alarm, its next period boundary is awaited, as on CloudWatch."""
        key = (store.account, store.region, alarm.name)
        slot = int(now.timestamp()) // evaluation_interval(alarm.config)
        previous = self._slots.get(key)
        self._slots[key] = slot
        return previous is not None and previous != slot

    # -- state changes -----------------------------------------------------------------------------------------------
    def _commit(self, store: RegionAlarms, alarm: _Alarm, outcome: _Outcome, now: datetime, *,
                forced: bool = False) -> Pending | None:
        """Store the outcome; a :class:`Pending` when the state changed (history recorded)."""
        if outcome.state is None or (outcome.state == alarm.state and not forced):
            # No transition; still say why an alarm cannot be evaluated here.
            if outcome.reason.startswith("Unchecked") and outcome.reason != alarm.reason:
                store.set_state(alarm.name, alarm.state, outcome.reason[:1023], alarm.reason_data, now)
            return None
        reason_data = (json.dumps(outcome.reason_data, separators=(",", ":"))
                       if outcome.reason_data is not None else None)
        store.set_state(alarm.name, outcome.state, outcome.reason[:1023], reason_data, now)
        if outcome.state == alarm.state:
            return None  # SetAlarmState to the same state: the reason changes, nothing happens
        updated = _Alarm.of(store.describe(alarm.name), alarm.kind)
        store.record(alarm.name, alarm.kind, "StateUpdate", f"Alarm updated from {alarm.state} to {outcome.state}",
                     {"version": "1.0", "oldState": _history_state(alarm), "newState": _history_state(updated)}, now)
        suppressed = self._suppress(store, updated, now) if alarm.kind == COMPOSITE_ALARM else False
        transition = AlarmTransition(store.account, store.region, alarm.name, alarm.kind, alarm.state, outcome.state,
                                     outcome.reason, now)
        return Pending(updated, alarm, transition, suppressed)

    def _suppress(self, store: RegionAlarms, alarm: _Alarm, now: datetime) -> bool:
        """A composite alarm's actions are suppressed while its ActionsSuppressor alarm is in ALARM."""
        composite = store.composites[alarm.name]
        suppressor = composite.actions_suppressor
        kind = store.kind_of(suppressor.rsplit(":alarm:", 1)[-1]) if suppressor else None
        if kind is None or store.describe(suppressor.rsplit(":alarm:", 1)[-1])["StateValue"] != ALARM:
            composite.actions_suppressed_by = composite.actions_suppressed_reason = None
            store.save()
            return False
        composite.actions_suppressed_by = "Alarm"
        composite.actions_suppressed_reason = f"Alarm {suppressor} is in ALARM state"
        store.save()
        return True

    def _composites(self, store: RegionAlarms, alarms: dict[str, _Alarm], now: datetime) -> list[Pending]:
        pending = []
        composites = [name for name, alarm in alarms.items() if alarm.kind == COMPOSITE_ALARM]
        for name in self._dependency_order(composites, alarms):
            changed = self._commit(store, alarms[name], self._judge_composite(alarms[name], alarms), now)
            if changed:
                pending.append(changed)
                alarms[name] = changed.alarm
        return pending

    def _act(self, store: RegionAlarms, pending: list[Pending]) -> list[AlarmTransition]:
        for item in pending:
            try:
                item.transition.actions.extend(self.run_actions(store, item))
            except Exception as error:  # noqa: BLE001 - a failed action never undoes the transition
                log.exception("actions of alarm %s failed", item.alarm.name)
                item.transition.actions.append(f"failed: {error}")
        return [item.transition for item in pending]

    def _dependency_order(self, composites: list[str], alarms: dict[str, _Alarm]) -> list[str]:
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in ordered or name in visiting:
                return  # a cycle is reported by the rule's evaluation
            visiting.add(name)
            with contextlib.suppress(RuleError, Unsupported):
                for child in sorted(rule_children(parse_rule(alarms[name].config["AlarmRule"]))):
                    if child in alarms and alarms[child].kind == COMPOSITE_ALARM and child in composites:
                        visit(child)
            visiting.discard(name)
            ordered.append(name)

        for name in composites:
            visit(name)
        return ordered

    # -- judging -------------------------------------------------------------------------------------------------
    def _judge_composite(self, alarm: _Alarm, alarms: dict[str, _Alarm]) -> _Outcome:
        try:
            tree = parse_rule(alarm.config["AlarmRule"])
        except RuleError as error:
            return _Outcome(INSUFFICIENT_DATA, f"Unchecked: the alarm rule does not parse: {error}")
        except Unsupported as error:
            return _Outcome(INSUFFICIENT_DATA, f"Unchecked: {error}")
        children = rule_children(tree)
        unknown = sorted(children - alarms.keys())
        if unknown:
            return _Outcome(INSUFFICIENT_DATA, f"Unchecked: the alarm rule names alarms that do not exist: "
                                               f"{', '.join(unknown)}")
        if alarm.name in children:
            return _Outcome(INSUFFICIENT_DATA, "Unchecked: the alarm rule refers to the alarm itself")
        value = rule_value(tree, {name: alarms[name].state for name in children})
        state = ALARM if value else OK
        if not children:
            return _Outcome(state, f"the alarm rule is constantly {'TRUE' if value else 'FALSE'}")
        # CloudWatch names the child whose change triggered the rule: the latest change, among those in ALARM when
        # the composite goes to ALARM.
        candidates = [alarms[n] for n in children if alarms[n].state == ALARM] if state == ALARM else []
        latest = max(candidates or [alarms[n] for n in children], key=lambda child: (child.updated, child.name))
        reason = (f"{latest.arn} transitioned to {latest.state} at "
                  f"{aware(latest.updated).strftime('%A %d %B, %Y %H:%M:%S UTC')}")
        triggering = [{"arn": alarms[name].arn, "state": {"value": alarms[name].state,
                                                          "timestamp": iso(alarms[name].updated)}}
                      for name in sorted(children)]
        return _Outcome(state, reason, {"triggeringAlarms": triggering})

    # -- one metric alarm ------------------------------------------------------------------------------------------
    def _judge_metric_alarm(self, alarm: _Alarm, now: datetime, datums: _Datums) -> _Outcome:
        config = alarm.config
        if config.get("ThresholdMetricId"):
            raise Unsupported(f"anomaly detection alarms are not supported by the embedded CloudWatch; "
                              f"{_SUPPORTED_HINT}")
        operator_name = config.get("ComparisonOperator")
        if operator_name not in COMPARISONS:
            raise Unsupported(f"the comparison {operator_name} is not supported by the embedded CloudWatch; "
                              f"{_SUPPORTED_HINT}")
        queries, expressions, returned = self._queries(config)
        period = int(config.get("Period") or queries[0].period)
        periods = int(config["EvaluationPeriods"])
        current = int(now.timestamp()) // period * period
        start, end = current - (periods + EXTRA_PERIODS) * period, current + period
        bins = list(range(start, end, period))
        series = self._fetch(queries, start, end, datums)
        if expressions:
            math_ = MetricMath({q.id: {t: p.value for t, p in series[q.id].items()} for q in queries}, bins)
            for query in expressions:
                result = math_.evaluate(query["Expression"])
                if not isinstance(result, dict):
                    raise Unsupported(f"the metric math {query['Expression']!r} gives a single number, not a time "
                                      "series an alarm can watch")
                math_.series[query["Id"]] = result
            points_by_time = {t: _Point(t, v) for t, v in math_.series[returned].items()}
        else:
            points_by_time = series[returned]
        last = bins[-1] if current in points_by_time else bins[-2]
        window = [t for t in bins if t <= last][-(periods + EXTRA_PERIODS):]
        points = [points_by_time[t] for t in window if t in points_by_time]
        low = self._low_sample_count(config, queries, points)
        if low:
            return _Outcome(None, low)
        return self._judge_points(alarm, points, window, period, now)

    def _queries(self, config: dict[str, Any]) -> tuple[list[_Query], list[dict[str, Any]], str]:
        metrics = config.get("Metrics") or []
        if not metrics:
            stat = config.get("Statistic") or config.get("ExtendedStatistic")
            if not stat or not config.get("MetricName"):
                raise Unsupported("the alarm names neither a metric and statistic nor metric math")
            query = _Query("m", config.get("Namespace", ""), config["MetricName"], config.get("Dimensions", []),
                           int(config["Period"]), stat, config.get("Unit"))
            return [query], [], "m"
        queries, expressions = [], []
        for metric in metrics:
            if "MetricStat" in metric:
                stat = metric["MetricStat"]
                queries.append(_Query(metric["Id"], stat["Metric"].get("Namespace", ""), stat["Metric"]["MetricName"],
                                      stat["Metric"].get("Dimensions", []), int(stat["Period"]), stat["Stat"],
                                      stat.get("Unit")))
            elif metric.get("Expression"):
                expressions.append(metric)
            else:
                raise Unsupported(f"metric query {metric.get('Id')!r} has neither MetricStat nor Expression")
        returned = [m["Id"] for m in metrics if m.get("ReturnData", True)]
        if len(returned) != 1:
            raise Unsupported(f"a metric math alarm returns exactly one query, this one {len(returned)}")
        if not queries:
            raise Unsupported("the metric math alarm has no MetricStat query")
        return queries, expressions, returned[0]

    @staticmethod
    def _low_sample_count(config: dict[str, Any], queries: list[_Query], points: list[_Point]) -> str | None:
        """With EvaluateLowSampleCountPercentile=ignore, a percentile over too few samples to mean anything (fewer
        than 1 / (1 - p)) keeps the alarm's state."""
        if config.get("EvaluateLowSampleCountPercentile") != "ignore" or config.get("Metrics"):
            return None
        p = queries[0].percentile
        if p is None:
            return None
        needed = 1 if p >= 100 else math.ceil(1 / (1 - p / 100) - 1e-9)
        recent = points[-int(config["EvaluationPeriods"]):]
        low = [point for point in recent if (point.sample_count or 0) < needed]
        if low:
            return f"{len(low)} data point(s) have fewer than {needed} samples for {queries[0].stat}"
        return None

    def _judge_points(self, alarm: _Alarm, points: list[_Point], window: list[int], period: int,
                      now: datetime) -> _Outcome:
        config = alarm.config
        n = int(config["EvaluationPeriods"])
        m = int(config.get("DatapointsToAlarm") or n)
        threshold = float(config["Threshold"])
        compare, phrase = COMPARISONS[config["ComparisonOperator"]]
        treat = config.get("TreatMissingData") or "missing"
        evaluated = points[-n:]
        missing = max(n - len(points), 0)
        breaching = [p for p in evaluated if compare(p.value, threshold)]
        fine = [p for p in evaluated if not compare(p.value, threshold)]
        filled_as = None
        if missing == 0:
            state: str | None = ALARM if len(breaching) >= m else OK
        elif treat == "breaching":
            state, filled_as = (ALARM if len(breaching) + missing >= m else OK), "Breaching"
        elif treat == "notBreaching":
            state, filled_as = (ALARM if len(breaching) >= m else OK), "NonBreaching"
        elif not points:
            state = None if treat == "ignore" else INSUFFICIENT_DATA
        elif len(breaching) >= m:
            state = ALARM
        elif len(breaching) + missing < m:
            state = OK
        elif treat == "missing" and self._breaching_since(points, window, m, compare, threshold):
            state = ALARM
        else:
            state = None  # the missing points could still go either way: keep the state
        data = {"version": "1.0", "queryDate": iso(now), "startDate": iso(_epoch(window[0])),
                "period": period, "recentDatapoints": [p.value for p in evaluated], "threshold": threshold,
                "evaluatedDatapoints": [{"timestamp": iso(_epoch(p.timestamp)),
                                         **({"sampleCount": p.sample_count} if p.sample_count is not None else {}),
                                         "value": p.value} for p in reversed(evaluated)]}
        for key in ("Statistic", "ExtendedStatistic", "Unit"):
            if config.get(key):
                data[key[0].lower() + key[1:]] = config[key]
        if state is None:
            return _Outcome(None)
        if state == INSUFFICIENT_DATA:
            return _Outcome(state, f"Insufficient Data: {_plural(n, 'datapoint')} {_was(n)} unknown.", data)
        previous = alarm.state
        if not evaluated:
            label = filled_as or "Missing"
            return _Outcome(state, f"Threshold Crossed: no datapoints were received for {_plural(n, 'period')} and "
                                   f"{_plural(n, 'missing datapoint')} {_was(n)} treated as [{label}].", data)
        shown = breaching if state == ALARM else fine
        counted = len(shown) + (missing if filled_as == ("Breaching" if state == ALARM else "NonBreaching") else 0)
        verb = phrase if state == ALARM else f"not {phrase}"
        listed = ", ".join(f"{p.value!r} ({_epoch(p.timestamp):%d/%m/%y %H:%M:%S})" for p in reversed(shown))
        needed = m if state == ALARM else n - m + 1
        if n == 1 and not missing:
            reason = f"Threshold Crossed: 1 datapoint [{listed}] was {verb} the threshold ({threshold!r})."
        else:
            reason = (f"Threshold Crossed: {counted} out of the last {n} datapoints [{listed}] {_was(counted)} "
                      f"{verb} the threshold ({threshold!r}) (minimum {_plural(needed, 'datapoint')} for "
                      f"{previous} -> {state} transition).")
        if missing and filled_as:
            reason += f" {_plural(missing, 'missing datapoint')} {_was(missing)} treated as [{filled_as}]."
        return _Outcome(state, reason, data)

    @staticmethod
    def _breaching_since(points: list[_Point], window: list[int], m: int, compare: Callable[[float, float], bool],
                         threshold: float) -> bool:
        """CloudWatch's rule against premature alarms, the other way round: the oldest breaching point is at least
        M periods old and every real point after it breaches too."""
        first = next((p for p in points if compare(p.value, threshold)), None)
        if first is None:
            return False
        age = len(window) - window.index(first.timestamp)
        later = [p for p in points if p.timestamp > first.timestamp]
        return age >= m and all(compare(p.value, threshold) for p in later)


    def _fetch(self, queries: list[_Query], start: int, end: int, datums: _Datums) -> dict[str, dict[int, _Point]]:
        """Each query's data points by period start, from the data points moto's CloudWatch holds. Percentiles come
        from raw values; a statistic set counts only when all its samples have one value (as on CloudWatch)."""
        series: dict[str, dict[int, _Point]] = {}
        for query in queries:
            p = query.percentile
            if query.stat not in STANDARD_STATISTICS and p is None:
                raise Unsupported(f"the statistic {query.stat} is not supported by the embedded CloudWatch "
                                  f"(standard statistics and pNN percentiles are); {_SUPPORTED_HINT}")
            bins: dict[int, list[Any]] = {}
            for stamp, datum in datums.select(query, start, end):
                bins.setdefault(int(stamp) // query.period * query.period, []).append(datum)
            points: dict[int, _Point] = {}
            for period_start, members in sorted(bins.items()):
                count = total = 0.0
                low, high = math.inf, -math.inf
                values: list[float] = []
                weights: list[float] = []
                for datum in members:
                    if hasattr(datum, "value"):
                        n, s, lo, hi = 1.0, float(datum.value), float(datum.value), float(datum.value)
                    else:
                        n, s, lo, hi = float(datum.sample_count), float(datum.sum), float(datum.min), float(datum.max)
                    count, total, low, high = count + n, total + s, min(low, lo), max(high, hi)
                    if lo == hi:
                        values.append(lo)
                        weights.append(n)
                if p is not None:
                    if values:
                        points[period_start] = _Point(period_start, percentile(values, weights, p), sum(weights))
                    continue
                value = {"SampleCount": count, "Sum": total, "Minimum": low, "Maximum": high,
                         "Average": total / count if count else math.nan}[query.stat]
                if math.isfinite(value):
                    points[period_start] = _Point(period_start, value, count)
            series[query.id] = points
        return series


def _history_state(alarm: _Alarm) -> dict[str, Any]:
    """An alarm's state as the history's HistoryData writes it (the reason data as JSON, not a string)."""
    state: dict[str, Any] = {"stateValue": alarm.state, "stateReason": alarm.reason}
    if alarm.reason_data and alarm.reason_data != "{}":
        with contextlib.suppress(ValueError):
            state["stateReasonData"] = json.loads(alarm.reason_data)
    return state
