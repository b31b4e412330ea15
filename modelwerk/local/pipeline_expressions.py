"""The expression language of a SageMaker Pipeline definition, evaluated the way SageMaker evaluates it.

A definition's step arguments hold expressions instead of values: ``{"Get": "Parameters.SnapshotId"}``,
``{"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}``,
``{"Get": "Execution.PipelineExecutionArn"}``, ``{"Std:Join": {"On": "/", "Values": [...]}}``,
``{"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"}, "Path": "..."}}``.
The local executor resolves them with this module before it runs a step, and evaluates condition steps with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from modelwerk.errors import ExecutionFailedError, ValidationError

_PATH_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class ExpressionError(ExecutionFailedError):
    """An expression names something the execution does not have (yet)."""


def parse_property_path(path: str) -> list[str | int]:
    """``Steps.A.Outputs['train'].S3Uri`` → ``["Steps", "A", "Outputs", "train", "S3Uri"]``."""
    tokens: list[str | int] = []
    position = 0
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if not match or match.end() == position:
            raise ExpressionError(f"cannot read the property path {path!r} at position {position}")
        name, index, quoted, double_quoted = match.groups()
        if name is not None:
            tokens.append(name)
        elif index is not None:
            tokens.append(int(index))
        else:
            tokens.append(quoted if quoted is not None else double_quoted)
        position = match.end()
    return tokens


def json_path(document: Any, path: str) -> Any:
    """The value at a JsonGet ``Path`` (dots and ``[n]`` indexes, as SageMaker's JsonGet accepts)."""
    value = document
    for token in parse_property_path(path):
        try:
            value = value[token]
        except (KeyError, IndexError, TypeError):
            raise ExpressionError(f"the property file has no value at {path!r}") from None
    return value


@dataclass
class ExecutionContext:
    """What expressions can see: parameters, execution variables, finished steps' properties and property files."""

    parameters: dict[str, Any]
    execution: dict[str, Any]
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: step name -> property file name -> parsed JSON document
    property_files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, reference: str) -> Any:
        tokens = parse_property_path(reference)
        root, rest = tokens[0], tokens[1:]
        if root == "Parameters":
            name = rest[0]
            if name not in self.parameters:
                raise ExpressionError(f"the definition refers to an undeclared parameter {name!r}")
            return self.parameters[name]
        if root == "Execution":
            name = rest[0]
            if name not in self.execution:
                raise ExpressionError(f"unknown execution variable {name!r}")
            return self.execution[name]
        if root == "Steps":
            step, rest = rest[0], rest[1:]
            if rest[:1] == ["PropertyFiles"]:
                try:
                    return self.property_files[step][rest[1]]
                except KeyError:
                    raise ExpressionError(f"step {step!r} has produced no property file {rest[1]!r}") from None
            if step not in self.steps:
                raise ExpressionError(f"step {step!r} has not run, so {reference} has no value")
            value: Any = self.steps[step]
            for token in rest:
                try:
                    value = value[token]
                except (KeyError, IndexError, TypeError):
                    raise ExpressionError(f"step {step!r} has no property {reference}") from None
            return value
        raise ExpressionError(f"cannot resolve {reference!r}: it is not a parameter, step property or execution variable")

    def evaluate(self, value: Any) -> Any:
        """``value`` with every expression in it replaced by what it evaluates to."""
        if isinstance(value, list):
            return [self.evaluate(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Get":
                return self.get(argument)
            if key == "Std:Join":
                values = self.evaluate(argument["Values"])
                return str(argument.get("On", "")).join(_text(v) for v in values)
            if key == "Std:JsonGet":
                document = self.evaluate(argument["PropertyFile"])
                return json_path(document, self.evaluate(argument["Path"]))
        return {k: self.evaluate(v) for k, v in value.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


_COMPARISONS = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


def condition_holds(condition: dict[str, Any], context: ExecutionContext) -> bool:
    """One entry of a condition step's ``Conditions`` (all entries must hold for the If branch)."""
    kind = condition["Type"]
    if kind in _COMPARISONS:
        left, right = context.evaluate(condition["LeftValue"]), context.evaluate(condition["RightValue"])
        if left is None or right is None:
            raise ExpressionError(f"{kind} compares {left!r} with {right!r}; a missing value cannot be compared")
        if isinstance(left, (int, float)) or isinstance(right, (int, float)):
            left, right = float(left), float(right)
        return bool(_COMPARISONS[kind](left, right))
    if kind == "In":
        return context.evaluate(condition["QueryValue"]) in context.evaluate(condition["Values"])
    if kind == "Not":
        return not condition_holds(condition["Condition"], context)
    if kind == "Or":
        return any(condition_holds(c, context) for c in condition["Conditions"])
    raise ValidationError(f"condition type {kind!r} is not one the local executor knows")


def references(value: Any) -> set[str]:
    """Names of the steps an argument refers to (its data dependencies)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, argument in value.items():
            if key == "Get" and isinstance(argument, str) and argument.startswith("Steps."):
                found.add(str(parse_property_path(argument)[1]))
            else:
                found |= references(argument)
    return found
