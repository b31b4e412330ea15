"""The local alarm evaluator: CloudWatch's alarm evaluation for the embedded AWS, which stores alarms but never
evaluates them.

Metric alarms are read from the embedded CloudWatch as the stacks deployed them and judged against the metrics stored
there, as CloudWatch judges them: Statistic or ExtendedStatistic (``pNN``), Period, EvaluationPeriods,
DatapointsToAlarm (M out of N), ComparisonOperator, Threshold, TreatMissingData, EvaluateLowSampleCountPercentile,
and metric math (arithmetic, ``ABS``/``CEIL``/``FLOOR``/``FILL``/``SUM``/``AVG``/``MIN``/``MAX``). The state goes
back into the embedded CloudWatch (``SetAlarmState``) with a CloudWatch-style reason. Composite alarms, which the
embedded CloudWatch cannot store, are read from the local deployment records and keep their state in
``<records>/local/alarms/<account>/``. On a state change the alarm's actions run: SNS topics get CloudWatch's
notification JSON, Lambda functions the alarm payload, and the ``CloudWatch Alarm State Change`` event goes through
the local event router. What cannot be evaluated locally (anomaly detection, Metrics Insights, other functions) stays in
INSUFFICIENT_DATA with a reason that says so.

How the data points are chosen, after CloudWatch's documented behaviour: periods are aligned to the clock; the
evaluation range is the N most recent periods plus :data:`EXTRA_PERIODS` older ones, ending with the period in
progress when it already has data. With N or more real data points the N most recent decide; with fewer,
TreatMissingData fills the gap (``missing`` goes to INSUFFICIENT_DATA only when no data point is left, and otherwise
keeps the state until the real points decide, except that a breaching point at least M periods old with only
breaching or missing points after it raises the alarm, as CloudWatch does). Percentiles are nearest-rank over the
latency samples the local runtime published (:mod:`modelwerk.local.endpoint_metrics`), for the periods where the
embedded CloudWatch holds samples.

Example
-------
>>> evaluator = AlarmEvaluator(boto3.Session())
>>> evaluator.evaluate()
[AlarmTransition(name='pump-health-5xx', previous_state='OK', state='ALARM', ...)]
>>> evaluator.watch(["pump-health-5xx", "pump-health-latency"], until=time.monotonic() + 60, interval=5)
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import json
import logging
import math
import operator
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3

from modelwerk.errors import LocalModeError, NotFoundError, ValidationError
from modelwerk.local.endpoint_metrics import SampleLog, default_records_dir, samples_dir

log = logging.getLogger(__name__)

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
#: What the embedded CloudWatch says of an alarm nobody evaluated yet (it stores them as OK; CloudWatch would not).
INITIAL_REASON = "Unchecked: Initial alarm creation"
#: Periods fetched beyond EvaluationPeriods (CloudWatch's documented 3-of-3 example uses a range of 5).
EXTRA_PERIODS = 2
STANDARD_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
ALARMS_DIR = Path("local") / "alarms"
COMPOSITE_STATES_FILE = "composite-states.json"
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")
_SUPPORTED_HINT = "it stays INSUFFICIENT_DATA locally and is evaluated on AWS only"


class Unsupported(Exception):
    """An alarm uses something the local evaluator does not evaluate; its message becomes the state reason."""


@dataclass(frozen=True)
class AlarmTransition:
    """One alarm's change of state, as CloudWatch records it in the alarm history."""

    name: str
    previous_state: str
    state: str
    reason: str
    timestamp: datetime
    actions_run: list[str] = field(default_factory=list)


@dataclass
class _Point:
    timestamp: int  # start of the period, epoch seconds
    value: float
    sample_count: float | None = None


@dataclass
class _Outcome:
    state: str | None  # None: the alarm keeps its state
    reason: str = ""
    reason_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Alarm:
    """A metric alarm as described by the embedded CloudWatch, or a composite alarm from the local records."""

    name: str
    arn: str
    kind: str  # metric | composite
    state: str
    reason: str
    reason_data: str
    updated: datetime
    config: dict[str, Any]


@dataclass
class _Pending:
    alarm: _Alarm
    previous: _Alarm
    transition: AlarmTransition
    reason_data: str


# -- time -------------------------------------------------------------------------------------------------------------
def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _iso(value: datetime) -> str:
    """CloudWatch's timestamp format in notifications and reason data: 2024-06-05T10:02:00.000+0000."""
    value = _utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _plural(n: int | float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def _was(n: int | float) -> str:
    return "was" if n == 1 else "were"


# -- composite alarm rules --------------------------------------------------------------------------------------------
_RULE_TOKEN = re.compile(r"""\s*(?:(?P<open>\()|(?P<close>\))|(?P<comma>,)|(?P<string>"(?:[^"\\]|\\.)*")
                         |(?P<word>[A-Za-z_][A-Za-z0-9_]*))""", re.VERBOSE)
_STATE_FUNCTIONS = {"ALARM": ALARM, "OK": OK, "INSUFFICIENT_DATA": INSUFFICIENT_DATA}


class RuleError(ValueError):
    """An AlarmRule that does not parse."""


def parse_rule(rule: str) -> Any:
    """Parse a composite AlarmRule into nested tuples: ("state", STATE, name), ("not", x), ("and"|"or", a, b),
    ("const", bool). NOT binds tightest, then AND, then OR; alarms are named by name or ARN, quoted or not."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(rule):
        if rule[position:].strip() == "":
            break
        match = _RULE_TOKEN.match(rule, position)
        if match is None:
            raise RuleError(f"unexpected {rule[position:position + 20]!r} at character {position}")
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "word" and text.upper() in _STATE_FUNCTIONS and rule[match.end():].lstrip().startswith("("):
            # The alarm name inside ALARM(...) may be unquoted and hold characters other tokens cannot (':', '-').
            inner_start = rule.index("(", match.end()) + 1
            rest = rule[inner_start:].lstrip()
            if rest.startswith('"'):
                string = re.match(r'"((?:[^"\\]|\\.)*)"\s*\)', rest)
                if string is None:
                    raise RuleError(f"unterminated alarm name after {text}( at character {match.start()}")
                name = string.group(1).replace('\\"', '"')
                end = inner_start + (len(rule[inner_start:]) - len(rest)) + string.end()
            else:
                close = rule.find(")", inner_start)
                if close < 0:
                    raise RuleError(f"missing ')' after {text}( at character {match.start()}")
                name, end = rule[inner_start:close].strip(), close + 1
            if not name:
                raise RuleError(f"{text}() names no alarm")
            tokens.append(("state", f"{_STATE_FUNCTIONS[text.upper()]}\0{name}"))
            position = end
            continue
        tokens.append((kind, text))
        position = match.end()

    index = 0

    def peek() -> tuple[str, str] | None:
        return tokens[index] if index < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens):
            raise RuleError("the rule ends too early")
        index += 1
        return tokens[index - 1]

    def keyword(token: tuple[str, str] | None, word: str) -> bool:
        return token is not None and token[0] == "word" and token[1].upper() == word

    def parse_or() -> Any:
        node = parse_and()
        while keyword(peek(), "OR"):
            take()
            node = ("or", node, parse_and())
        return node

    def parse_and() -> Any:
        node = parse_not()
        while keyword(peek(), "AND"):
            take()
            node = ("and", node, parse_not())
        return node

    def parse_not() -> Any:
        if keyword(peek(), "NOT"):
            take()
            return ("not", parse_not())
        return parse_atom()

    def parse_atom() -> Any:
        kind, text = take()
        if kind == "state":
            state, name = text.split("\0", 1)
            return ("state", state, name)
        if kind == "open":
            node = parse_or()
            if take()[0] != "close":
                raise RuleError("missing ')'")
            return node
        if kind == "word" and text.upper() in ("TRUE", "FALSE"):
            return ("const", text.upper() == "TRUE")
        if kind == "word" and text.upper() == "AT_LEAST":
            raise Unsupported(f"AT_LEAST in a composite alarm rule is not supported by the local alarm evaluator; "
                              f"{_SUPPORTED_HINT}")
        raise RuleError(f"unexpected {text!r}")

    if not tokens:
        raise RuleError("the rule is empty")
    tree = parse_or()
    if index != len(tokens):
        raise RuleError(f"unexpected {tokens[index][1]!r} after a complete rule")
    return tree


def _rule_children(tree: Any) -> set[str]:
    if tree[0] == "state":
        return {_alarm_name(tree[2])}
    if tree[0] in ("and", "or"):
        return _rule_children(tree[1]) | _rule_children(tree[2])
    if tree[0] == "not":
        return _rule_children(tree[1])
    return set()


def _rule_value(tree: Any, states: dict[str, str]) -> bool:
    kind = tree[0]
    if kind == "const":
        return tree[1]
    if kind == "state":
        return states[_alarm_name(tree[2])] == tree[1]
    if kind == "not":
        return not _rule_value(tree[1], states)
    if kind == "and":
        return _rule_value(tree[1], states) and _rule_value(tree[2], states)
    return _rule_value(tree[1], states) or _rule_value(tree[2], states)


def _alarm_name(reference: str) -> str:
    """An alarm named in a rule by name or by ARN (arn:aws:cloudwatch:region:account:alarm:name)."""
    if reference.startswith("arn:") and ":alarm:" in reference:
        return reference.split(":alarm:", 1)[1]
    return reference


# -- metric math ------------------------------------------------------------------------------------------------------
Series = dict[int, float]


class _Math:
    """Metric math over aligned series (period start -> value): arithmetic and a few functions, nothing else."""

    def __init__(self, series: dict[str, Series], bins: list[int]):
        self.series = series
        self.bins = bins

    def evaluate(self, expression: str) -> Series | float:
        if expression.lstrip().upper().startswith("SELECT"):
            raise Unsupported(f"Metrics Insights queries are not supported by the local alarm evaluator; "
                              f"{_SUPPORTED_HINT}")
        try:
            tree = ast.parse(expression.replace("^", "**"), mode="eval")
        except SyntaxError:
            raise Unsupported(f"the metric math expression {expression!r} is not understood by the local alarm "
                              f"evaluator; {_SUPPORTED_HINT}") from None
        return self._node(tree.body)

    def _node(self, node: ast.AST) -> Series | float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in self.series:
                raise Unsupported(f"metric math refers to {node.id!r}, which no query of the alarm defines")
            return self.series[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
            return self._apply(lambda x: sign * x, self._node(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self._binary(_BINARY[type(node.op)], self._node(node.left), self._node(node.right))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            return self._call(node.func.id.upper(), node.args)
        raise Unsupported(f"metric math {ast.unparse(node)!r} is not supported by the local alarm evaluator; "
                          f"{_SUPPORTED_HINT}")

    @staticmethod
    def _apply(function: Callable[[float], float], value: Series | float) -> Series | float:
        if isinstance(value, dict):
            return {t: function(v) for t, v in value.items()}
        return function(value)

    @staticmethod
    def _binary(function: Callable[[float, float], float], left: Series | float, right: Series | float):
        def safe(a: float, b: float) -> float | None:
            try:
                result = function(a, b)
            except (ZeroDivisionError, OverflowError):
                return None  # CloudWatch returns no value where a division by zero happens
            return result if math.isfinite(result) else None

        if isinstance(left, dict) and isinstance(right, dict):
            pairs = {t: safe(left[t], right[t]) for t in left.keys() & right.keys()}
        elif isinstance(left, dict):
            pairs = {t: safe(v, right) for t, v in left.items()}
        elif isinstance(right, dict):
            pairs = {t: safe(left, v) for t, v in right.items()}
        else:
            result = safe(left, right)
            if result is None:
                raise Unsupported("metric math divides a constant by zero")
            return result
        return {t: v for t, v in sorted(pairs.items()) if v is not None}

    def _call(self, name: str, args: list[ast.expr]) -> Series | float:
        if name in ("ABS", "CEIL", "FLOOR") and len(args) == 1:
            function = {"ABS": abs, "CEIL": math.ceil, "FLOOR": math.floor}[name]
            return self._apply(lambda x: float(function(x)), self._node(args[0]))
        if name == "FILL" and len(args) == 2:
            series, fill = self._node(args[0]), self._node(args[1]) if not isinstance(args[1], ast.Name) else None
            if not isinstance(series, dict) or not isinstance(fill, float):
                raise Unsupported("FILL is supported locally with a time series and a number (not REPEAT or LINEAR)")
            return {t: series.get(t, fill) for t in self.bins}
        if name in ("SUM", "AVG", "MIN", "MAX") and len(args) == 1:
            reduce = {"SUM": sum, "AVG": lambda values: sum(values) / len(values), "MIN": min, "MAX": max}[name]
            if isinstance(args[0], ast.List):
                members = [self._node(element) for element in args[0].elts]
                if not all(isinstance(member, dict) for member in members):
                    raise Unsupported(f"{name}([...]) is supported locally over time series only")
                stamps = sorted(set().union(*members))
                return {t: float(reduce([m[t] for m in members if t in m])) for t in stamps}
            series = self._node(args[0])
            if not isinstance(series, dict):
                return series
            if not series:
                raise Unsupported(f"{name}() of a time series without data points")
            return float(reduce(list(series.values())))
        raise Unsupported(f"the metric math function {name} is not supported by the local alarm evaluator; "
                          f"{_SUPPORTED_HINT}")


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}


def _percentile(values: list[float], counts: list[float], p: float) -> float:
    """Nearest-rank percentile of weighted samples: the smallest value with at least p% of the samples at or below."""
    pairs = sorted(zip(values, counts))
    total = sum(c for _, c in pairs)
    rank = max(math.ceil(p / 100.0 * total), 1)
    seen = 0.0
    for value, count in pairs:
        seen += count
        if seen >= rank:
            return float(value)
    return float(pairs[-1][0])


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


class AlarmEvaluator:
    """Evaluates the alarms of one account of the embedded AWS (the account of ``session``).

    ``records_dir`` holds the local records (default: this checkout's, as local mode finds them): the deployment
    records that define composite alarms, their states, and the latency sample log. ``now`` (a datetime or a
    callable returning one) replaces the clock, for tests.
    """

    def __init__(self, session: boto3.Session | None = None, *, records_dir: Path | str | None = None,
                 now: datetime | Callable[[], datetime] | None = None):
        self.session = session or boto3.Session()
        self.cloudwatch = self.session.client("cloudwatch")
        self.region = self.cloudwatch.meta.region_name
        self.records_dir = Path(records_dir) if records_dir else default_records_dir()
        self._clock = now
        self._sample_log: SampleLog | None = None
        self._account: str | None = None
        self._memory_states: dict[str, dict[str, Any]] = {}  # composite states when there are no records
        self._thread_lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------------------------------
    def evaluate(self, names: list[str] | None = None, *, now: datetime | None = None) -> list[AlarmTransition]:
        """Evaluate the alarms (all, or ``names`` and what composite ones among them depend on) once; set their
        states and run the actions of those that changed. Returns the changes."""
        moment = self._now(now)
        with self._locked():
            pending = self._evaluate(self._select(names), moment)
        for item in pending:
            item.transition.actions_run.extend(self._run_actions(item, moment))
        return [item.transition for item in pending]

    def _samples(self) -> SampleLog:
        """The latency samples the local runtime of this evaluator's account logged."""
        if self._sample_log is None:
            self._sample_log = SampleLog(samples_dir(self.records_dir, self.account) if self.records_dir else None)
        return self._sample_log

    def state(self, name: str) -> str:
        """The current state of alarm ``name`` (metric or composite): OK, ALARM or INSUFFICIENT_DATA."""
        alarms = self._alarms()
        if name not in alarms:
            raise NotFoundError(f"no alarm named {name!r} in the embedded CloudWatch or the local composite alarm "
                                f"records; 'modelwerk local up' deploys the stacks' alarms")
        return alarms[name].state

    def states(self, prefix: str | None = None) -> dict[str, str]:
        """Every alarm's state by name, optionally only the names starting with ``prefix``."""
        return {name: alarm.state for name, alarm in sorted(self._alarms().items())
                if prefix is None or name.startswith(prefix)}

    def watch(self, names: list[str] | str, until: float | datetime, *, interval: float = 10.0) -> str | None:
        """Evaluate ``names`` every ``interval`` seconds until ``until`` (a ``time.monotonic()`` deadline or a
        datetime); return the first of them found in ALARM as soon as one is, or None when the deadline passes."""
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise ValidationError("watch needs at least one alarm name")
        if not interval > 0:
            raise ValidationError(f"interval must be a positive number of seconds, not {interval!r}")
        if isinstance(until, datetime):
            deadline = time.monotonic() + (_utc(until) - datetime.now(timezone.utc)).total_seconds()
        else:
            deadline = float(until)
        while True:
            self.evaluate(names)
            alarms = self._alarms()
            for name in names:
                if alarms[name].state == ALARM:
                    return name
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(interval, remaining))

    # -- what there is -----------------------------------------------------------------------------------------------
    def _now(self, now: datetime | None) -> datetime:
        if now is not None:
            return _utc(now)
        if callable(self._clock):
            return _utc(self._clock())
        if isinstance(self._clock, datetime):
            return _utc(self._clock)
        return datetime.now(timezone.utc)

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = self.session.client("sts").get_caller_identity()["Account"]
        return self._account

    def _alarms(self) -> dict[str, _Alarm]:
        alarms: dict[str, _Alarm] = {}
        try:
            for page in self.cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
                for described in page.get("MetricAlarms", []):
                    initial = described.get("StateReason") == INITIAL_REASON
                    alarms[described["AlarmName"]] = _Alarm(
                        described["AlarmName"], described["AlarmArn"], "metric",
                        INSUFFICIENT_DATA if initial else described["StateValue"], described.get("StateReason", ""),
                        described.get("StateReasonData", "{}"), _utc(described["StateUpdatedTimestamp"]), described)
        except Exception as error:  # noqa: BLE001 - one clear message instead of a botocore traceback
            raise LocalModeError(f"the embedded CloudWatch cannot be reached ({error}); is 'modelwerk local up' "
                                 "running?") from error
        states = self._composite_states()
        for name, definition in self._composites().items():
            if name in alarms:
                log.warning("composite alarm %s has the name of a metric alarm; the metric alarm wins", name)
                continue
            state = states.get(name, {})
            alarms[name] = _Alarm(name, definition["Arn"], "composite", state.get("value", INSUFFICIENT_DATA),
                                  state.get("reason", INITIAL_REASON), state.get("reason_data", "{}"),
                                  datetime.fromisoformat(state["timestamp"]) if state.get("timestamp")
                                  else datetime.now(timezone.utc), definition)
        return alarms

    def _select(self, names: list[str] | None) -> tuple[dict[str, _Alarm], list[str]]:
        alarms = self._alarms()
        if names is None:
            return alarms, sorted(alarms)
        if isinstance(names, str):
            names = [names]
        wanted: list[str] = []
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in wanted:
                continue
            if name not in alarms:
                raise NotFoundError(f"no alarm named {name!r} in the embedded CloudWatch or the local composite "
                                    "alarm records")
            wanted.append(name)
            if alarms[name].kind == "composite":
                with contextlib.suppress(RuleError, Unsupported):
                    todo.extend(_rule_children(parse_rule(alarms[name].config["AlarmRule"])) & alarms.keys())
        return alarms, sorted(wanted)

    def _composites(self) -> dict[str, dict[str, Any]]:
        """Composite alarms of this account and region, from the local deployment records."""
        found: dict[str, dict[str, Any]] = {}
        folder = self.records_dir / "local" / "deployments" if self.records_dir else None
        if folder is None or not folder.is_dir():
            return found
        for path in sorted(folder.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                log.warning("cannot read deployment record %s: %s", path, error)
                continue
            for stack in record.get("stacks", []):
                if stack.get("region") != self.region:
                    continue
                for resource in stack.get("resources", {}).values():
                    if resource.get("type") != "AWS::CloudWatch::CompositeAlarm":
                        continue
                    definition = (resource.get("attributes") or {}).get("Alarm")
                    if not definition or not definition.get("Arn", "").split(":")[4:5] == [self.account]:
                        continue
                    found[definition["AlarmName"]] = {**definition, "Stage": record.get("stage", "dev")}
        return found

    def _stage_of(self, account: str) -> str:
        folder = self.records_dir / "local" / "deployments" if self.records_dir else None
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                with contextlib.suppress(OSError, ValueError):
                    record = json.loads(path.read_text(encoding="utf-8"))
                    if any(stack.get("account") == account for stack in record.get("stacks", [])):
                        return record.get("stage", path.stem)
        return "dev"

    # -- composite states --------------------------------------------------------------------------------------------
    def _states_file(self) -> Path | None:
        """This account's composite states: alarm names repeat in every account (dev's and prod's
        ``pump-health-needs-retraining`` are two alarms)."""
        if not self.records_dir:
            return None
        return self.records_dir / ALARMS_DIR / self.account / COMPOSITE_STATES_FILE

    def _generation(self) -> int:
        """Changes whenever the stages are deployed again (a new embedded AWS): older composite states are void."""
        folder = self.records_dir / "local" / "deployments" if self.records_dir else None
        if folder is None or not folder.is_dir():
            return 0
        return max((path.stat().st_mtime_ns for path in folder.glob("*.json")), default=0)

    def _composite_states(self) -> dict[str, dict[str, Any]]:
        path = self._states_file()
        if path is None:
            return self._memory_states
        if not path.is_file():
            return {}
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            log.warning("composite alarm states in %s are unreadable, starting again from INSUFFICIENT_DATA: %s",
                        path, error)
            return {}
        return saved.get("states", {}) if saved.get("generation") == self._generation() else {}

    def _save_composite_states(self, states: dict[str, dict[str, Any]]) -> None:
        path = self._states_file()
        if path is None:
            self._memory_states = states
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"generation": self._generation(), "states": states}, indent=1),
                             encoding="utf-8")
        os.replace(temporary, path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One evaluation at a time per records folder, across processes, so a transition's actions run once."""
        with self._thread_lock:
            if self.records_dir is None:
                yield
                return
            folder = self.records_dir / ALARMS_DIR
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / ".lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    # -- evaluation --------------------------------------------------------------------------------------------------
    def _evaluate(self, selection: tuple[dict[str, _Alarm], list[str]], now: datetime) -> list[_Pending]:
        alarms, names = selection
        pending: list[_Pending] = []
        for name in names:
            alarm = alarms[name]
            if alarm.kind != "metric":
                continue
            try:
                outcome = self._judge_metric_alarm(alarm, now)
            except Unsupported as error:
                outcome = _Outcome(INSUFFICIENT_DATA, f"Unchecked: {error}")
            except Exception as error:  # noqa: BLE001 - one alarm's failure must not stop the others
                log.warning("alarm %s not evaluated this time: %s", name, error)
                continue
            changed = self._apply_metric(alarm, outcome, now)
            if changed:
                pending.append(changed)
                alarms[name] = changed.alarm
        composites = [name for name in names if alarms[name].kind == "composite"]
        if composites:
            states = self._composite_states()
            for name in self._dependency_order(composites, alarms):
                changed = self._apply_composite(alarms[name], self._judge_composite(alarms[name], alarms), now,
                                                states)
                if changed:
                    pending.append(changed)
                    alarms[name] = changed.alarm
            self._save_composite_states(states)
        return pending

    def _dependency_order(self, composites: list[str], alarms: dict[str, _Alarm]) -> list[str]:
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in ordered or name in visiting:
                return  # a cycle is reported by the rule's evaluation
            visiting.add(name)
            with contextlib.suppress(RuleError, Unsupported):
                for child in sorted(_rule_children(parse_rule(alarms[name].config["AlarmRule"]))):
                    if child in alarms and alarms[child].kind == "composite" and child in composites:
                        visit(child)
            visiting.discard(name)
            ordered.append(name)

        for name in composites:
            visit(name)
        return ordered

    def _apply_metric(self, alarm: _Alarm, outcome: _Outcome, now: datetime) -> _Pending | None:
        stored = alarm.config.get("StateValue")
        if outcome.state is None or outcome.state == alarm.state:
            # No transition. Still store the real initial state in place of the embedded AWS's "OK", and say why an
            # alarm cannot be evaluated locally.
            state = outcome.state or alarm.state
            unchecked = outcome.reason.startswith("Unchecked") and outcome.reason != alarm.reason
            if stored != state or unchecked:
                self.cloudwatch.set_alarm_state(AlarmName=alarm.name, StateValue=state,
                                                StateReason=(outcome.reason if unchecked else alarm.reason)[:1023])
            return None
        reason_data = json.dumps(outcome.reason_data, separators=(",", ":"))
        self.cloudwatch.set_alarm_state(AlarmName=alarm.name, StateValue=outcome.state,
                                        StateReason=outcome.reason[:1023], StateReasonData=reason_data)
        updated = _Alarm(alarm.name, alarm.arn, alarm.kind, outcome.state, outcome.reason, reason_data, now,
                         alarm.config)
        return _Pending(updated, alarm, AlarmTransition(alarm.name, alarm.state, outcome.state, outcome.reason, now),
                        reason_data)

    def _apply_composite(self, alarm: _Alarm, outcome: _Outcome, now: datetime,
                         states: dict[str, dict[str, Any]]) -> _Pending | None:
        if outcome.state is None or outcome.state == alarm.state:
            return None
        reason_data = json.dumps(outcome.reason_data, separators=(",", ":"))
        states[alarm.name] = {"value": outcome.state, "reason": outcome.reason, "reason_data": reason_data,
                              "timestamp": now.isoformat()}
        updated = _Alarm(alarm.name, alarm.arn, alarm.kind, outcome.state, outcome.reason, reason_data, now,
                         alarm.config)
        return _Pending(updated, alarm, AlarmTransition(alarm.name, alarm.state, outcome.state, outcome.reason, now),
                        reason_data)

    def _judge_composite(self, alarm: _Alarm, alarms: dict[str, _Alarm]) -> _Outcome:
        try:
            tree = parse_rule(alarm.config["AlarmRule"])
        except RuleError as error:
            return _Outcome(INSUFFICIENT_DATA, f"Unchecked: the alarm rule does not parse: {error}")
        except Unsupported as error:
            return _Outcome(INSUFFICIENT_DATA, f"Unchecked: {error}")
        children = _rule_children(tree)
        unknown = sorted(children - alarms.keys())
        if unknown:
            return _Outcome(INSUFFICIENT_DATA, f"Unchecked: the alarm rule names alarms that do not exist: "
                                               f"{', '.join(unknown)}")
        if alarm.name in children:
            return _Outcome(INSUFFICIENT_DATA, "Unchecked: the alarm rule refers to the alarm itself")
        value = _rule_value(tree, {name: alarms[name].state for name in children})
        state = ALARM if value else OK
        if not children:
            return _Outcome(state, f"the alarm rule is constantly {'TRUE' if value else 'FALSE'}")
        # CloudWatch names the child whose change triggered the rule: the latest change, among those in ALARM when
        # the composite goes to ALARM.
        candidates = [alarms[n] for n in children if alarms[n].state == ALARM] if state == ALARM else []
        latest = max(candidates or [alarms[n] for n in children], key=lambda child: (child.updated, child.name))
        reason = (f"{latest.arn} transitioned to {latest.state} at "
                  f"{_utc(latest.updated).strftime('%A %d %B, %Y %H:%M:%S UTC')}")
        triggering = [{"arn": alarms[name].arn, "state": {"value": alarms[name].state,
                                                          "timestamp": _iso(alarms[name].updated)}}
                      for name in sorted(children)]
        return _Outcome(state, reason, {"triggeringAlarms": triggering})

    # -- one metric alarm ------------------------------------------------------------------------------------------
    def _judge_metric_alarm(self, alarm: _Alarm, now: datetime) -> _Outcome:
        config = alarm.config
        if config.get("ThresholdMetricId"):
            raise Unsupported(f"anomaly detection alarms are not supported by the local alarm evaluator; "
                              f"{_SUPPORTED_HINT}")
        operator_name = config.get("ComparisonOperator")
        if operator_name not in COMPARISONS:
            raise Unsupported(f"the comparison {operator_name} is not supported by the local alarm evaluator; "
                              f"{_SUPPORTED_HINT}")
        queries, expressions, returned = self._queries(config)
        period = int(config.get("Period") or queries[0].period)
        periods = int(config["EvaluationPeriods"])
        current = int(now.timestamp()) // period * period
        start, end = current - (periods + EXTRA_PERIODS) * period, current + period
        bins = list(range(start, end, period))
        series = self._fetch(queries, start, end, now)
        if expressions:
            math_ = _Math({q.id: {t: p.value for t, p in series[q.id].items()} for q in queries}, bins)
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

    def _fetch(self, queries: list[_Query], start: int, end: int, now: datetime) -> dict[str, dict[int, _Point]]:
        """Each query's data points by period start: standard statistics from the embedded CloudWatch, percentiles
        from the sample log for the periods where the embedded CloudWatch holds samples."""
        requests = []
        for index, query in enumerate(queries):
            if query.stat not in STANDARD_STATISTICS and query.percentile is None:
                raise Unsupported(f"the statistic {query.stat} is not supported by the local alarm evaluator "
                                  f"(standard statistics and pNN percentiles are); {_SUPPORTED_HINT}")
            metric = {"Namespace": query.namespace, "MetricName": query.metric, "Dimensions": query.dimensions}
            for suffix, stat in (("v", query.stat), ("n", "SampleCount")):
                if suffix == "v" and query.percentile is not None:
                    continue
                stat_query = {"Metric": metric, "Period": query.period, "Stat": stat}
                if query.unit:
                    stat_query["Unit"] = query.unit
                requests.append({"Id": f"q{index}{suffix}", "MetricStat": stat_query, "ReturnData": True})
        results: dict[str, dict[int, float]] = {}
        arguments = {"MetricDataQueries": requests, "StartTime": _epoch(start), "EndTime": _epoch(end),
                     "ScanBy": "TimestampAscending"}
        while True:
            page = self.cloudwatch.get_metric_data(**arguments)
            for result in page.get("MetricDataResults", []):
                into = results.setdefault(result["Id"], {})
                for stamp, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                    into[int(_utc(stamp).timestamp())] = float(value)
            if not page.get("NextToken"):
                break
            arguments["NextToken"] = page["NextToken"]
        series: dict[str, dict[int, _Point]] = {}
        for index, query in enumerate(queries):
            counts = results.get(f"q{index}n", {})
            if query.percentile is None:
                series[query.id] = {t: _Point(t, v, counts.get(t)) for t, v in sorted(results.get(f"q{index}v",
                                                                                                   {}).items())}
            else:
                series[query.id] = self._percentiles(query, counts, start, end)
        return series

    def _percentiles(self, query: _Query, counts: dict[int, float], start: int, end: int) -> dict[int, _Point]:
        dimensions = {d["Name"]: d["Value"] for d in query.dimensions}
        samples = self._samples().samples(namespace=query.namespace, metric=query.metric, dimensions=dimensions,
                                        unit=query.unit, region=self.region, start=start, end=end)
        points: dict[int, _Point] = {}
        for period_start, sample_count in sorted(counts.items()):
            if not sample_count:
                continue
            values: list[float] = []
            weights: list[float] = []
            for stamp, line_values, line_counts in samples:
                if period_start <= stamp < period_start + query.period:
                    values.extend(line_values)
                    weights.extend(line_counts)
            if not values:
                raise Unsupported(
                    f"{query.metric} has samples in the embedded CloudWatch but none in the local sample log: "
                    f"percentiles are computed locally only for the metrics modelwerk.local.endpoint_metrics "
                    f"publishes; {_SUPPORTED_HINT}")
            points[period_start] = _Point(period_start, _percentile(values, weights, query.percentile), sample_count)
        return points

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
        data = {"version": "1.0", "queryDate": _iso(now), "startDate": _iso(_epoch(window[0])),
                "period": period, "recentDatapoints": [p.value for p in evaluated], "threshold": threshold,
                "evaluatedDatapoints": [{"timestamp": _iso(_epoch(p.timestamp)),
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

    # -- actions ---------------------------------------------------------------------------------------------------
    def _run_actions(self, item: _Pending, now: datetime) -> list[str]:
        alarm, transition = item.alarm, item.transition
        config = alarm.config
        account = alarm.arn.split(":")[4]
        stage = self._stage_of(account)
        done: list[str] = []
        detail = self._event_detail(item, now)
        try:
            from modelwerk.local import events

            deliveries = events.put_event({
                "version": "0", "id": str(uuid.uuid4()), "detail-type": "CloudWatch Alarm State Change",
                "source": "aws.cloudwatch", "account": account, "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region, "resources": [alarm.arn], "detail": detail}, stage=stage, session=self.session)
            done.append("events:CloudWatch Alarm State Change")
            done.extend(f"events:{d.rule} -> {d.target_arn}" for d in deliveries)
        except Exception as error:  # noqa: BLE001 - a failed delivery is reported, not raised into the evaluation
            log.warning("alarm %s: the state change event was not routed: %s", alarm.name, error)
            done.append(f"events:CloudWatch Alarm State Change failed: {error}")
        if not config.get("ActionsEnabled", True):
            return done
        key = {ALARM: "AlarmActions", OK: "OKActions", INSUFFICIENT_DATA: "InsufficientDataActions"}[transition.state]
        for arn in config.get(key) or []:
            done.append(self._run_action(arn, item, detail, account, stage, now))
        return done

    def _run_action(self, arn: str, item: _Pending, detail: dict[str, Any], account: str, stage: str,
                    now: datetime) -> str:
        parts = arn.split(":")
        service = parts[2] if len(parts) > 5 else ""
        try:
            if service == "sns":
                if parts[4] != account:
                    raise LocalModeError(f"the topic is in account {parts[4]}, the alarm in {account}")
                region_name = _region_name(parts[3])
                subject = f'{item.transition.state}: "{item.alarm.name}" in {region_name}'
                if len(subject) > 100:
                    subject = subject[:97] + "..."
                self.session.client("sns", region_name=parts[3]).publish(
                    TopicArn=arn, Subject=subject, Message=json.dumps(self._notification(item, now)))
                return f"sns:{arn}"
            if service == "lambda" and parts[5] == "function":
                from modelwerk.local import lambdas

                payload = {"source": "aws.cloudwatch", "alarmArn": item.alarm.arn, "accountId": account,
                           "time": _iso(now), "region": self.region, "alarmData": detail}
                lambdas.invoke(parts[6], payload, stage=stage)
                return f"lambda:{arn}"
        except Exception as error:  # noqa: BLE001 - CloudWatch, too, records a failed action and carries on
            log.warning("alarm %s: action %s failed: %s", item.alarm.name, arn, error)
            return f"{service}:{arn} failed: {error}"
        log.info("alarm %s: action %s is not run locally", item.alarm.name, arn)
        return f"{service or 'unknown'}:{arn} not run locally"

    def _notification(self, item: _Pending, now: datetime) -> dict[str, Any]:
        """CloudWatch's SNS notification, field for field."""
        alarm, config = item.alarm, item.alarm.config
        message: dict[str, Any] = {
            "AlarmName": alarm.name, "AlarmDescription": config.get("AlarmDescription"),
            "AWSAccountId": alarm.arn.split(":")[4],
            "AlarmConfigurationUpdatedTimestamp": _iso(_utc(config["AlarmConfigurationUpdatedTimestamp"]))
            if config.get("AlarmConfigurationUpdatedTimestamp") else _iso(now),
            "NewStateValue": item.transition.state, "NewStateReason": item.transition.reason,
            "StateChangeTime": _iso(now), "Region": _region_name(self.region), "AlarmArn": alarm.arn,
            "OldStateValue": item.transition.previous_state, "OKActions": config.get("OKActions", []),
            "AlarmActions": config.get("AlarmActions", []),
            "InsufficientDataActions": config.get("InsufficientDataActions", []),
        }
        if alarm.kind == "composite":
            message["AlarmRule"] = config["AlarmRule"]
            triggering = json.loads(item.reason_data).get("triggeringAlarms", [])
            message["TriggeringChildren"] = [{"Arn": t["arn"], "State": {"Value": t["state"]["value"],
                                                                         "Timestamp": t["state"]["timestamp"]}}
                                             for t in triggering]
            return message
        trigger: dict[str, Any] = {"Period": config.get("Period"), "EvaluationPeriods": config["EvaluationPeriods"],
                                   "DatapointsToAlarm": config.get("DatapointsToAlarm", config["EvaluationPeriods"]),
                                   "ComparisonOperator": config["ComparisonOperator"],
                                   "Threshold": config["Threshold"],
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

    def _event_detail(self, item: _Pending, now: datetime) -> dict[str, Any]:
        """The detail of EventBridge's "CloudWatch Alarm State Change" event."""
        alarm, previous, config = item.alarm, item.previous, item.alarm.config
        detail: dict[str, Any] = {
            "alarmName": alarm.name,
            "state": {"value": alarm.state, "reason": alarm.reason, "reasonData": item.reason_data,
                      "timestamp": _iso(now)},
            "previousState": {"value": previous.state, "reason": previous.reason,
                              "reasonData": previous.reason_data, "timestamp": _iso(previous.updated)},
        }
        if alarm.kind == "composite":
            detail["configuration"] = {"alarmRule": config["AlarmRule"], "description": config.get("AlarmDescription"),
                                       "actionsSuppressor": config.get("ActionsSuppressor")}
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


def _region_name(region: str) -> str:
    """The region's long name as notifications spell it ("Europe (Frankfurt)"), from botocore's endpoint data."""
    if not _REGION_NAMES:
        import botocore.session

        for partition in botocore.session.get_session().get_data("endpoints")["partitions"]:
            for code, described in partition["regions"].items():
                _REGION_NAMES[code] = described.get("description", code)
    return _REGION_NAMES.get(region, region)
