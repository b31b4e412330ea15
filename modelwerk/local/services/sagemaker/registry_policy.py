"""Whether a model package group's resource policy lets another account act on the group or its versions.

IAM's evaluation of a resource policy, for what SageMaker's group policies hold: a matching ``Deny`` refuses, else a
matching ``Allow`` admits, else nothing admits. A statement matches when

- its ``Principal`` names the account: ``"*"``, ``{"AWS": "*"}``, the account id, or an ARN in the account
  (``arn:aws:iam::<account>:root``, a role or user, an assumed-role session). A role's ARN admits the whole account
  here: the embedded AWS does not tell one role of an account from another;
- its ``Action`` matches the action (``sagemaker:DescribeModelPackage``), case-insensitively, ``*`` and ``?`` as
  wildcards;
- its ``Resource`` matches one of the resource's ARNs, with the same wildcards, case-insensitively (SageMaker
  lowercases the names in a version's ARN). A statement without ``Resource`` covers the group and its versions.

Statements with a ``Condition``, ``NotPrincipal``, ``NotAction`` or ``NotResource`` neither admit nor refuse: their
terms cannot be evaluated here, and a decision refused for lack of them says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Statement elements this evaluation does not interpret.
UNEVALUATED = ("Condition", "NotPrincipal", "NotAction", "NotResource")


@dataclass(frozen=True)
class Decision:
    """``allowed``, and the statement that decided (its ``Sid`` or position), or why none did."""

    allowed: bool
    reason: str


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, text: str) -> bool:
    expression = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(expression, text, flags=re.IGNORECASE | re.DOTALL) is not None


def _names_account(principal: Any, account: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for name in _listed(principal.get("AWS", [])):
        name = str(name)
        if name == "*" or name == account:
            return True
        parts = name.split(":")
        if name.startswith("arn:") and len(parts) >= 6 and parts[2] in ("iam", "sts") and parts[4] == account:
            return True
    return False


def _applies(statement: dict[str, Any], account: str, action: str, resources: Sequence[str]) -> bool:
    if not _names_account(statement.get("Principal"), account):
        return False
    if not any(_wildcard(str(pattern), action) for pattern in _listed(statement.get("Action", []))):
        return False
    if "Resource" not in statement:
        return True
    return any(_wildcard(str(pattern), resource) for pattern in _listed(statement["Resource"])
               for resource in resources)


def decide(document: dict[str, Any], account: str, action: str, resources: Sequence[str]) -> Decision:
    """Whether ``document`` lets ``account`` perform ``action`` on any of ``resources`` (ARNs of one resource)."""
    statements = [s for s in _listed(document.get("Statement", [])) if isinstance(s, dict)]
    evaluated = [(index, s) for index, s in enumerate(statements) if not any(term in s for term in UNEVALUATED)]
    matching = [(index, s) for index, s in evaluated if _applies(s, account, action, resources)]

    def named(index: int, statement: dict[str, Any]) -> str:
        return f"statement {statement.get('Sid') or index}"

    for index, statement in matching:
        if statement.get("Effect") == "Deny":
            return Decision(False, f"{named(index, statement)} denies it explicitly")
    for index, statement in matching:
        if statement.get("Effect") == "Allow":
            return Decision(True, f"{named(index, statement)} allows it")
    skipped = len(statements) - len(evaluated)
    unevaluated = f" ({skipped} statement(s) with {'/'.join(UNEVALUATED)} not evaluated locally)" if skipped else ""
    return Decision(False, f"no statement allows it{unevaluated}")
