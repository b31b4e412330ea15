"""Cross-cutting checks over every synthesized template: the guardrails a security team runs (cdk-nag and the AWS
Control Tower proactive controls at synth, checkov over the assembly), cfn-lint, and no wildcard principal.

The app is synthesized once (the session's ``synthesized``); checkov reads that assembly from its own virtual
environment (``scripts/checkov.sh``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
from cfnlint import api as cfnlint

from cdk_constructs.nag import CONTROL_TOWER, PACK, add_guardrails
from stacks.stages import PROMOTION_PATH

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / "scripts" / "checkov.sh"
#: The one Deny with a wildcard principal besides the TLS one: key grants only for AWS services (CT.KMS.PR.3).
GRANTS_FOR_AWS_SERVICES = {"BoolIfExists": {"kms:GrantIsForAWSResource": "false", "aws:PrincipalIsAWSService": "false"}}

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


def test_wildcard_principals_appear_only_in_deny_statements(synthesized):
    """The legitimate ``*``: a Deny of any request without TLS (``enforce_ssl``), and a key policy's Deny of grants
    that are not for AWS services."""
    for template in synthesized.templates_json().values():
        for statement in policy_statements(template):
            if is_wildcard_principal(statement.get("Principal")):
                assert statement["Effect"] == "Deny"
                assert statement["Condition"] in ({"Bool": {"aws:SecureTransport": "false"}}, GRANTS_FOR_AWS_SERVICES)


def test_every_key_allows_grants_only_for_aws_services(synthesized):
    keys = 0
    for template in synthesized.templates_json().values():
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::KMS::Key":
                keys += 1
                assert any(s["Effect"] == "Deny" and s["Action"] == "kms:CreateGrant"
                           and s["Condition"] == GRANTS_FOR_AWS_SERVICES
                           for s in resource["Properties"]["KeyPolicy"]["Statement"])
    assert keys


#: The actions an identity statement may grant on ``Resource: *``: those that take no resource (or, for
#: ``lakeformation:GetDataAccess`` and ``codepipeline:PutJob*Result``, no resource-level permission).
UNSCOPABLE_ACTIONS = {
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups", "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "sts:GetServiceBearerToken",
    "lakeformation:GetDataAccess", "sagemaker:ListModelPackages", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
    "codepipeline:PutJobSuccessResult", "codepipeline:PutJobFailureResult",
    "application-autoscaling:DescribeScalableTargets", "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScalingActivities",
}


def test_identity_statements_grant_all_resources_only_for_actions_that_take_none(synthesized):
    """``Resource: *`` in a role's policy only where the action allows no resource: network interfaces, scaling
    writes and alarm reads are scoped to their resources."""
    unscoped = set()
    for template in synthesized.templates_json().values():
        for resource in template["Resources"].values():
            if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role"):
                continue
            properties = resource["Properties"]
            documents = [properties.get("PolicyDocument"),
                         *(p["PolicyDocument"] for p in properties.get("Policies", []))]
            for statement in (s for d in documents if d for s in d["Statement"]):
                if statement["Effect"] == "Allow" and "*" in ([statement["Resource"]] if isinstance(
                        statement["Resource"], str) else statement["Resource"]):
                    action = statement["Action"]
                    unscoped.update([action] if isinstance(action, str) else action)
    assert unscoped <= UNSCOPABLE_ACTIONS, unscoped - UNSCOPABLE_ACTIONS


def validation_report(synthesized) -> dict[str, dict]:
    """The synth's policy validation report, by plugin name."""
    report = json.loads((synthesized.outdir / "validation-report.json").read_text(encoding="utf-8"))
    return {plugin["pluginName"]: plugin for plugin in report["pluginReports"]}


def test_cdk_nag_and_control_tower_report_no_unacknowledged_findings(synthesized):
    """Synth already failed on a finding (the fixture); the report on disk says both plugins ran, and ran clean."""
    plugins = validation_report(synthesized)
    assert {PACK, CONTROL_TOWER} <= set(plugins)
    failing = [(name, [v["ruleName"] for v in plugin["violations"]]) for name, plugin in plugins.items()
               if plugin["conclusion"] != "success" or plugin["violations"]]
    assert not failing, failing


def test_every_acknowledgment_has_a_reason(synthesized):
    """cdk-nag's and the Control Tower controls' acknowledgments that matched a finding, each with its reason."""
    plugins = validation_report(synthesized)
    for name in (PACK, CONTROL_TOWER):
        suppressed = plugins[name]["suppressedViolations"]
        assert suppressed, f"expected the platform's {name} acknowledgments"
        assert all(len(v["reason"]) > 20 for v in suppressed), name


def checkov(outdir: Path) -> dict[str, Any]:
    if not (ROOT / ".venv-checkov" / "bin" / "checkov").exists():
        pytest.fail("checkov's virtual environment is missing: `make install` creates .venv-checkov", pytrace=False)
    result = subprocess.run(["bash", str(CHECKOV), str(outdir), "--output", "json"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    return json.loads(result.stdout)


def test_checkov_reports_no_unacknowledged_findings(synthesized):
    """checkov over the session's assembly: nothing failed, and every skipped check carries its reason (the
    ``checkov`` metadata that ``cdk_constructs.nag.acknowledge_checkov`` writes where the resource is defined)."""
    report = checkov(synthesized.outdir)
    failed = [(f["check_id"], f["resource"], f["file_path"]) for f in report["results"]["failed_checks"]]
    assert not failed, failed
    assert report["summary"]["passed"] > 1000
    skipped = report["results"]["skipped_checks"]
    assert skipped and all(len(s["check_result"].get("suppress_comment") or "") > 20 for s in skipped)


def test_guardrails_fail_synthesis_on_a_finding(tmp_path, monkeypatch):
    """A bucket left at its defaults fails synth under both plugins: the clean reports above are not vacuous."""
    monkeypatch.setenv("CDK_VALIDATION", "false")  # only the guardrails matter here
    app = App(outdir=str(tmp_path))
    add_guardrails(app)
    s3.Bucket(Stack(app, "Canary"), "Unlogged")
    with pytest.raises(RuntimeError, match=r"AwsSolutions-S1") as failure:
        app.synth()
    assert "CT.S3.PR.2" in str(failure.value)


def lint(template: Path) -> list[Any]:
    return cfnlint.lint_file(template, config=cfnlint.ManualArgs(regions=["eu-central-1"]))


def test_cfn_lint_finds_no_errors_in_any_template(synthesized, config):
    templates = synthesized.template_files()
    # Network, DataLake, Serving and Monitoring per workload environment, ModelRegistry, the training environments'
    # Training, one stack per configured endpoint in the endpoints stages, and the promotion: its pipelines in the
    # registry and the roles they use in each environment they promote through.
    endpoints = sum(len(w.endpoints) for w in config.workloads)
    assert endpoints == 8
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
