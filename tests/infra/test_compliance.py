"""Cross-cutting checks over every synthesized template: cdk-nag, cfn-lint, and no wildcard principal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_s3 as s3
from cfnlint import api as cfnlint

from stacks.stages import PROMOTION_PATH

pytestmark = pytest.mark.slow

#: cfn-lint warnings accepted on purpose, with the reason.
ACCEPTED_LINT_WARNINGS = {
    "W3010": "availability zones are explicit in cdk.json, so synthesis needs no lookup",
    "W3005": "CDK adds DependsOn from a function to its role's default policy; harmless",
}


def policy_statements(node: Any) -> Iterator[dict]:
    """Every IAM statement anywhere in a template (policies, key policies, bucket/queue policies, trust policies)."""
    if isinstance(node, dict):
        statement = node.get("Statement")
        if isinstance(statement, list):
            yield from (s for s in statement if isinstance(s, dict))
        for value in node.values():
            yield from policy_statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from policy_statements(value)


def is_wildcard_principal(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        values = [v for value in principal.values() for v in (value if isinstance(value, list) else [value])]
        return any(v == "*" for v in values)
    return False


def test_no_template_allows_a_wildcard_principal(synthesized):
    offenders = []
    for name, template in synthesized.templates_json().items():
        for statement in policy_statements(template):
            if statement.get("Effect") == "Allow" and is_wildcard_principal(statement.get("Principal")):
                offenders.append((name, statement))
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::Lambda::Permission" and resource["Properties"].get("Principal") == "*":
                offenders.append((name, logical_id))
    assert not offenders, offenders


def test_wildcard_principals_appear_only_in_tls_deny_statements(synthesized):
    """The one legitimate ``*``: a Deny of any request without TLS (``enforce_ssl``)."""
    for template in synthesized.templates_json().values():
        for statement in policy_statements(template):
            if is_wildcard_principal(statement.get("Principal")):
                assert statement["Effect"] == "Deny"
                assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_cdk_nag_reports_no_unacknowledged_findings(synthesized):
    """Synth already failed on a finding (the fixture); the report on disk must be clean too."""
    report_file = synthesized.outdir / "validation-report.json"
    if not report_file.exists():
        return  # written only when a plugin has something to say
    report = json.loads(report_file.read_text(encoding="utf-8"))
    failing = [
        (plugin["pluginName"], [v["ruleName"] for v in plugin.get("violations", [])])
        for plugin in report["pluginReports"]
        if plugin["conclusion"] != "success" or plugin.get("violations")
    ]
    assert not failing, failing


def test_every_acknowledgment_has_a_reason(synthesized):
    acknowledgments = {}
    for metadata_file in synthesized.outdir.glob("assembly-*/*.metadata.json"):
        for path, entries in json.loads(metadata_file.read_text(encoding="utf-8")).items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    for rule, reason in entry["data"].items():
                        acknowledgments[(path, rule)] = reason
    ours = {k: v for k, v in acknowledgments.items() if k[1].startswith("AwsSolutions::")}
    assert ours, "expected the platform's cdk-nag acknowledgments in the assembly metadata"
    assert all(len(reason) > 20 for reason in ours.values())


def test_cdk_nag_is_wired_into_the_app(tmp_path, monkeypatch):
    """A non-compliant bucket added to the app must fail synthesis: the clean report above is not vacuous."""
    from app import ROOT, build_app

    monkeypatch.setenv("CDK_VALIDATION", "false")  # only cdk-nag matters here; keeps this second synth short
    app = build_app(ROOT, outdir=str(tmp_path))
    canary = Stack(app.node.find_child("Registry"), "Canary")
    s3.Bucket(canary, "Unlogged")
    with pytest.raises(RuntimeError, match=r"AwsSolutions-S1"):
        app.synth()


def lint(template: Path) -> list[Any]:
    return cfnlint.lint_file(template, config=cfnlint.ManualArgs(regions=["eu-central-1"]))


def test_cfn_lint_finds_no_errors_in_any_template(synthesized, config):
    templates = synthesized.template_files()
    # Network, DataLake, Serving and Monitoring per workload environment, ModelRegistry, the training environments'
    # Training, one stack per configured endpoint in the endpoints stages, and the promotion: its pipelines in the
    # registry and the roles they use in each environment they promote through.
    endpoints = sum(len(w.endpoints) for w in config.workloads)
    assert endpoints == 7
    promotion = 1 + len(PROMOTION_PATH)
    assert len(templates) == 4 * len(config.workloads) + 1 + len(config.training_environments) + endpoints + promotion
    errors, unexpected_warnings = [], []
    for template in templates:
        for match in lint(template):
            rule_id = match.rule.id
            if rule_id.startswith("E"):
                errors.append((template.name, str(match)))
            elif rule_id.startswith("W") and rule_id not in ACCEPTED_LINT_WARNINGS:
                unexpected_warnings.append((template.name, str(match)))
    assert not errors, errors
    assert not unexpected_warnings, unexpected_warnings
