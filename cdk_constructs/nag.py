"""Acknowledging cdk-nag findings on the narrowest construct, one finding id and one reason at a time.

cdk-nag 3 names an IAM wildcard finding after the resource as it appears in the template
(``AwsSolutions-IAM5[Resource::<RawBucket1234.Arn>/*]``). ``wildcard_findings`` derives those ids from the same
policy values the construct wrote, so an acknowledgment never goes stale when a logical id changes. The resources
must live in the policy's own stack: a cross-stack reference is rendered as an import and would not match.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one finding (``AwsSolutions-SMG4``, ``AwsSolutions-IAM5[Resource::*]``) on ``scope`` and below.

    Recorded under the pack's prefix (``AwsSolutions::...``), the id cdk-nag itself prints for an acknowledgment.
    """
    if not reason.strip():
        raise ValueError(f"acknowledging {finding} needs a reason")
    rule_id = f"{PACK}::{finding}" if finding.startswith(f"{PACK}-") else finding
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def flatten_reference(node: Any) -> str:
    """The flat string cdk-nag renders for a (resolved) CloudFormation value; mirrors its ``flattenCfnReference``."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(flatten_reference(item) for item in items)
        if "Fn::Sub" in node:
            return flatten_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_reference(resource)}.{flatten_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def wildcard_findings(scope: IConstruct, *, actions: Iterable[str], resources: Iterable[str]) -> list[str]:
    """The ``AwsSolutions-IAM5`` finding ids a statement with these actions and resources raises in ``scope``'s stack."""
    stack = Stack.of(scope)
    findings = [f"AwsSolutions-IAM5[Action::{a}]" for a in actions if "*" in a]
    for resource in resources:
        flat = flatten_reference(stack.resolve(resource))
        if "*" in flat:
            findings.append(f"AwsSolutions-IAM5[Resource::{flat}]")
    return findings
