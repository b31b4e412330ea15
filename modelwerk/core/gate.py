"""The promotion quality gate: expected predictions on well-known data points, a latency budget and the response
schema, checked against a live endpoint.

One implementation: the promotion pipeline's CodeBuild action runs it (``python -m modelwerk.core.gate``) against
the staging endpoint, and ``modelwerk promote`` runs it against the local staging endpoint. Standard library only
(and boto3 for the command line), so the build needs nothing else installed.

The data points live with each use case in ``gate_cases.csv``: a header, then one row per point. ``case`` names the
point; the model's inputs follow, in request order; then ``expected`` (the label, compared as text, so ``1``,
``1.0`` and ``true`` are one class, or a number) and ``tolerance`` (for a regression: ``|prediction - expected| <=
tolerance``; empty for a classification)::

    case,site,vibration_rms,bearing_temp_c,...,expected,tolerance
    healthy-north,north,2.1,48.0,...,0,
    bearing-failing,south,9.5,86.0,...,1,

Each point is sent as a one-row CSV request (``text/csv``, no header) ``repeats`` times after a warm-up request;
the gate passes when every point's prediction is as expected, the response is a readable CSV or JSON answer with
one prediction per request, and the p95 of the latencies is within the budget.

Example
-------
>>> cases = parse_cases("case,x,expected,tolerance\\nlow,1,2.0,0.5\\nhigh,10,20,1\\n")
>>> result = run(cases, lambda body, content_type: (str(float(body) * 2).encode(), "text/csv"), budget_ms=1000)
>>> result.passed, [c.predicted for c in result.cases]
(True, ['2.0', '20.0'])
>>> run(cases, lambda body, content_type: (b"3", "text/csv"), budget_ms=1000).failures[0]
'case low: predicted 3, expected 2.0 ± 0.5'
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import numbers
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GateCase", "GateCases", "GateError", "GateResult", "label_text", "parse_cases", "read_cases",
           "run"]

#: Requests per data point that count towards the latency percentile (after one warm-up request).
REPEATS = 5
#: Columns of gate_cases.csv that are not model inputs.
CASE, EXPECTED, TOLERANCE = "case", "expected", "tolerance"

#: Sends one request body with its content type; answers (response body, response content type).
Invoke = Callable[[bytes, str], tuple[bytes, str]]


class GateError(ValueError):
    """A gate_cases.csv that cannot be used (no header, no expected column, a row of the wrong width)."""


@dataclass(frozen=True)
class GateCase:
    name: str
    values: tuple[str, ...]
    expected: str
    tolerance: float | None

    def body(self) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(self.values)
        return buffer.getvalue().encode("utf-8")


@dataclass(frozen=True)
class GateCases:
    columns: tuple[str, ...]
    cases: tuple[GateCase, ...]


@dataclass
class CaseOutcome:
    case: str
    expected: str
    tolerance: float | None
    predicted: str | None
    passed: bool
    reason: str | None = None


@dataclass
class GateResult:
    """Whether the gate passed, each point's outcome, the latencies and every failure in one sentence each."""

    passed: bool
    cases: list[CaseOutcome]
    latency_ms: dict[str, float | None]
    budget_ms: float
    requests: int
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failures": self.failures, "latency_ms": self.latency_ms,
                "budget_ms": self.budget_ms, "requests": self.requests,
                "cases": [asdict(outcome) for outcome in self.cases]}


def parse_cases(text: str, *, inputs: Sequence[str] | None = None) -> GateCases:
    """The data points of a gate_cases.csv text; ``inputs`` (the version's input order), when given, must be the
    file's input columns in that order."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise GateError("gate_cases.csv is empty: give a header and at least one data point")
    header = [name.strip() for name in rows[0]]
    if EXPECTED not in header:
        raise GateError(f"gate_cases.csv has no {EXPECTED!r} column: add the expected label or value of each point")
    columns = [name for name in header if name not in (CASE, EXPECTED, TOLERANCE)]
    if not columns:
        raise GateError("gate_cases.csv names no model input: put the inputs' columns in its header")
    if inputs is not None and list(inputs) != columns:
        raise GateError(f"gate_cases.csv has the inputs {columns}, the version takes {list(inputs)} (in this order): "
                        "fix the file's header")
    position = {name: index for index, name in enumerate(header)}
    cases = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise GateError(f"gate_cases.csv line {number} has {len(row)} values, the header {len(header)}")
        tolerance_text = row[position[TOLERANCE]].strip() if TOLERANCE in position else ""
        try:
            tolerance = float(tolerance_text) if tolerance_text else None
        except ValueError:
            raise GateError(f"gate_cases.csv line {number}: tolerance {tolerance_text!r} is not a number") from None
        if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
            raise GateError(f"gate_cases.csv line {number}: the tolerance must be a number >= 0")
        name = row[position[CASE]].strip() if CASE in position else f"line {number}"
        cases.append(GateCase(name=name or f"line {number}", values=tuple(row[position[c]] for c in columns),
                              expected=row[position[EXPECTED]].strip(), tolerance=tolerance))
    if not cases:
        raise GateError("gate_cases.csv holds no data point: add at least one row under the header")
    return GateCases(columns=tuple(columns), cases=tuple(cases))


def read_cases(path: str | Path, *, inputs: Sequence[str] | None = None) -> GateCases:
    return parse_cases(Path(path).read_text(encoding="utf-8"), inputs=inputs)


def _predictions(body: bytes, content_type: str) -> list[str]:
    """The predictions of a response: CSV lines (first value of each), ``{"predictions": [...]}``, or JSON Lines."""
    text = body.decode("utf-8").strip()
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json" or text.startswith(("{", "[")):
        document = json.loads(text)
        if isinstance(document, dict):
            document = document.get("predictions", document.get("prediction"))
        if not isinstance(document, list):
            document = [document]
        return [_text(item.get("prediction") if isinstance(item, dict) else item) for item in document]
    return [line.split(",")[0].strip() for line in text.splitlines() if line.strip()]


def _text(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return str(value)


def label_text(value: Any) -> str:
    """A label as text, so 1, 1.0, "1", True and "true" are one class (the gate and the monitor's quality use it)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return "1" if text.lower() == "true" else "0"
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


def _judge(case: GateCase, predicted: str) -> str | None:
    """None when the prediction is as expected, else why not."""
    if case.tolerance is None:
        if label_text(predicted) == label_text(case.expected):
            return None
        return f"case {case.name}: predicted {predicted}, expected {case.expected}"
    try:
        value, expected = float(predicted), float(case.expected)
    except ValueError:
        return f"case {case.name}: predicted {predicted!r}, expected a number near {case.expected}"
    if math.isfinite(value) and abs(value - expected) <= case.tolerance:
        return None
    return f"case {case.name}: predicted {predicted}, expected {case.expected} ± {case.tolerance:g}"


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run(cases: GateCases, invoke: Invoke, *, budget_ms: float, repeats: int = REPEATS) -> GateResult:
    """Send every data point to the endpoint through ``invoke`` and judge the answers (see the module's notes)."""
    outcomes, latencies, failures, requests = [], [], [], 0
    for case in cases.cases:
        body = case.body()
        predicted, reason = None, None
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            try:
                answer, content_type = invoke(body, "text/csv")
            except Exception as exc:  # noqa: BLE001 - the endpoint's error is the gate's finding
                reason = f"case {case.name}: the endpoint answered with an error: {exc}"
                break
            finally:
                requests += 1
            elapsed = (time.perf_counter() - started) * 1000
            if attempt:  # the first request warms the endpoint up
                latencies.append(elapsed)
            try:
                values = _predictions(answer, content_type)
            except (ValueError, UnicodeDecodeError, AttributeError) as exc:
                reason = f"case {case.name}: the response ({content_type}) is not a readable prediction: {exc}"
                break
            if len(values) != 1:
                reason = f"case {case.name}: {len(values)} predictions for one row"
                break
            predicted = values[0]
        if reason is None and predicted is not None:
            reason = _judge(case, predicted)
        outcomes.append(CaseOutcome(case=case.name, expected=case.expected, tolerance=case.tolerance,
                                    predicted=predicted, passed=reason is None, reason=reason))
        if reason:
            failures.append(reason)
    latency = {"p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95),
               "max": max(latencies) if latencies else None}
    if latency["p95"] is not None and latency["p95"] > budget_ms:
        failures.append(f"latency: p95 {latency['p95']:.1f} ms is over the budget of {budget_ms:g} ms")
    rounded = {key: None if value is None else round(value, 2) for key, value in latency.items()}
    return GateResult(passed=not failures, cases=outcomes, latency_ms=rounded, budget_ms=budget_ms,
                      requests=requests, failures=failures)


def sagemaker_invoke(endpoint: str, client: Any = None) -> Invoke:
    """An ``invoke`` through the SageMaker Runtime API (boto3's ``sagemaker-runtime`` client)."""
    if client is None:
        import boto3

        client = boto3.client("sagemaker-runtime")

    def invoke(body: bytes, content_type: str) -> tuple[bytes, str]:
        answer = client.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType=content_type,
                                        Accept="text/csv")
        return answer["Body"].read(), answer.get("ContentType", "")

    return invoke


def _assumed_client(role_arn: str, region: str | None) -> Any:
    import boto3

    issued = boto3.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="promotion-gate")["Credentials"]
    return boto3.client("sagemaker-runtime", region_name=region, aws_access_key_id=issued["AccessKeyId"],
                        aws_secret_access_key=issued["SecretAccessKey"], aws_session_token=issued["SessionToken"])


def main(argv: Sequence[str] | None = None) -> int:
    """The gate as the promotion pipeline's build runs it: exit 0 when it passes, 1 when it fails, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m modelwerk.core.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--cases", required=True, help="the use case's gate_cases.csv")
    parser.add_argument("--budget-ms", type=float, required=True, help="p95 latency budget in milliseconds")
    parser.add_argument("--role-arn", help="a role in the endpoint's account to invoke it through")
    parser.add_argument("--region")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--report", help="write the result as JSON to this file too")
    args = parser.parse_args(argv)
    try:
        cases = read_cases(args.cases)
    except (GateError, OSError) as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return 2
    client = _assumed_client(args.role_arn, args.region) if args.role_arn else None
    result = run(cases, sagemaker_invoke(args.endpoint, client), budget_ms=args.budget_ms, repeats=args.repeats)
    document = json.dumps(result.to_dict(), indent=1)
    if args.report:
        Path(args.report).write_text(document + "\n", encoding="utf-8")
    print(document)
    for failure in result.failures:
        print(f"gate failed: {failure}", file=sys.stderr)
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
