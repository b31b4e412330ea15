"""Metric math for alarms: arithmetic over aligned series and the functions ``ABS``, ``CEIL``, ``FLOOR``, ``FILL``
(with a number), ``SUM``, ``AVG``, ``MIN``, ``MAX``; and the percentile CloudWatch computes from raw samples."""

from __future__ import annotations

import ast
import math
import operator
from typing import Callable

from modelwerk.local.services.cloudwatch.rules import SUPPORTED_HINT, Unsupported

Series = dict[int, float]


class MetricMath:
    """Metric math over aligned series (period start -> value): arithmetic and a few functions, nothing else."""

    def __init__(self, series: dict[str, Series], bins: list[int]):
        self.series = series
        self.bins = bins

    def evaluate(self, expression: str) -> Series | float:
        if expression.lstrip().upper().startswith("SELECT"):
            raise Unsupported(f"Metrics Insights queries are not supported by the embedded CloudWatch; "
                              f"{SUPPORTED_HINT}")
        try:
            tree = ast.parse(expression.replace("^", "**"), mode="eval")
        except SyntaxError:
            raise Unsupported(f"the metric math expression {expression!r} is not understood by the local alarm "
                              f"evaluator; {SUPPORTED_HINT}") from None
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
        raise Unsupported(f"metric math {ast.unparse(node)!r} is not supported by the embedded CloudWatch; "
                          f"{SUPPORTED_HINT}")

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
        raise Unsupported(f"the metric math function {name} is not supported by the embedded CloudWatch; "
                          f"{SUPPORTED_HINT}")


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}


def percentile(values: list[float], counts: list[float], p: float) -> float:
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

