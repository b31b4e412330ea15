"""Composite alarms' AlarmRule: its grammar (ALARM/OK/INSUFFICIENT_DATA of a child by name or ARN, AND, OR, NOT,
TRUE, FALSE, parentheses) and its value over the children's states."""

from __future__ import annotations

import re
from typing import Any

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
#: What an alarm the embedded AWS cannot evaluate says, after why.
SUPPORTED_HINT = "it stays INSUFFICIENT_DATA locally and is evaluated on AWS only"


class Unsupported(Exception):
    """An alarm uses something the embedded CloudWatch does not evaluate; its message becomes the state reason."""


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
            raise Unsupported(f"AT_LEAST in a composite alarm rule is not supported by the embedded CloudWatch; "
                              f"{SUPPORTED_HINT}")
        raise RuleError(f"unexpected {text!r}")

    if not tokens:
        raise RuleError("the rule is empty")
    tree = parse_or()
    if index != len(tokens):
        raise RuleError(f"unexpected {tokens[index][1]!r} after a complete rule")
    return tree


def rule_children(tree: Any) -> set[str]:
    if tree[0] == "state":
        return {alarm_name_of(tree[2])}
    if tree[0] in ("and", "or"):
        return rule_children(tree[1]) | rule_children(tree[2])
    if tree[0] == "not":
        return rule_children(tree[1])
    return set()


def rule_value(tree: Any, states: dict[str, str]) -> bool:
    kind = tree[0]
    if kind == "const":
        return tree[1]
    if kind == "state":
        return states[alarm_name_of(tree[2])] == tree[1]
    if kind == "not":
        return not rule_value(tree[1], states)
    if kind == "and":
        return rule_value(tree[1], states) and rule_value(tree[2], states)
    return rule_value(tree[1], states) or rule_value(tree[2], states)


def alarm_name_of(reference: str) -> str:
    """An alarm named in a rule by name or by ARN (arn:aws:cloudwatch:region:account:alarm:name)."""
    if reference.startswith("arn:") and ":alarm:" in reference:
        return reference.split(":alarm:", 1)[1]
    return reference

