"""What a target receives: the event, or the target's Input, InputPath or InputTransformer applied to it.

EventBridge's input transformer fills ``<name>`` placeholders of ``InputTemplate`` with the values ``InputPathsMap``
selects (JSONPath) and the predefined ones (``aws.events.rule-arn``, ``aws.events.rule-name``,
``aws.events.event.ingestion-time``, ``aws.events.event.json``). Inside a JSON string a value is inserted as text;
outside one as JSON (a template that is one JSON string delivers that string, as EventBridge does).
"""

from __future__ import annotations

import json
from typing import Any


def _select(path: str, event: dict[str, Any]) -> Any:
    from jsonpath_ng.ext import parse

    matches = parse(path).find(event)
    if not matches:
        return None
    return matches[0].value


def _fill(template: str, values: dict[str, Any]) -> str:
    """Substitute ``<name>`` placeholders, each as text inside a JSON string literal and as JSON outside one."""
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "\\" and in_string:
            out.append(template[i:i + 2])
            i += 2
            continue
        if ch == '"':
            in_string = not in_string
        if ch == "<":
            end = template.find(">", i)
            name = template[i + 1:end] if end > 0 else ""
            if name in values:
                value = values[name]
                if in_string:
                    text = value if isinstance(value, str) else json.dumps(value)
                    out.append(json.dumps(text)[1:-1])
                else:
                    out.append(json.dumps(value))
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def target_input(target: dict[str, Any], event: dict[str, Any], *, rule_arn: str, rule_name: str,
                 ingestion_time: str) -> str:
    """The text the target receives (JSON, or plain text from a text template)."""
    if target.get("Input") is not None:
        return target["Input"]
    if target.get("InputPath"):
        return json.dumps(_select(target["InputPath"], event))
    transformer = target.get("InputTransformer")
    if not transformer:
        return json.dumps(event)
    values: dict[str, Any] = {name: _select(path, event)
                              for name, path in (transformer.get("InputPathsMap") or {}).items()}
    values.update({"aws.events.rule-arn": rule_arn, "aws.events.rule-name": rule_name,
                   "aws.events.event.ingestion-time": ingestion_time, "aws.events.event.json": event})
    values = {name: ("" if value is None else value) for name, value in values.items()}
    return _fill(transformer["InputTemplate"], values)
