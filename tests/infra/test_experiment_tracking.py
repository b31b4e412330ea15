"""The managed MLflow tracking server: off by default (no template changes), and with cdk.json's flag on, one server in
the registry account whose roles reach only its artifact prefix, the artifact key and this server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template
from cfnlint import api as cfnlint

from app import build_app
from test_compliance import ACCEPTED_LINT_WARNINGS, is_wildcard_principal, policy_statements

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRACKING_SERVER = "AWS::SageMaker::MlflowTrackingServer"
ACCOUNT_IN_ARN = re.compile(r":iam::(\d{12}):root")


@pytest.fixture(scope="module")
def tracking_on(tmp_path_factory):
    """The app of a checkout whose cdk.json turns the managed tracking server on (a Medium one)."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("lambdas", "glue_jobs", "modelwerk", "sagemaker_pipelines", "containers", "frameworks.txt",
                 "requirements.txt"):
        if (ROOT / name).exists():
            (root / name).symlink_to(ROOT / name)
    cdk_json = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))
    cdk_json["context"]["modelwerk:mlflow"] = {"managed_tracking_server": True, "tracking_server_size": "Medium"}
    (root / "cdk.json").write_text(json.dumps(cdk_json), encoding="utf-8")
    outdir = root / "cdk.out"
    app = build_app(root, outdir=str(outdir))
    try:
        app.synth()  # cdk-nag findings fail the synth
    except RuntimeError as error:
        pytest.fail(f"synth with the tracking server failed:\n{error}", pytrace=False)
    stack = app.node.find_child("Registry").node.find_child("ModelRegistry")
    return stack, Template.from_stack(stack), outdir, cdk_json["context"]


def test_the_flag_is_off_by_default_and_the_registry_has_no_server(registry, config):
    assert config.mlflow.managed_tracking_server is False
    registry.resource_count_is(TRACKING_SERVER, 0)
    assert not registry.find_resources("AWS::SSM::Parameter", {
        "Properties": {"Name": Match.string_like_regexp("mlflow")}})


def test_one_server_stores_artifacts_under_the_mlflow_prefix_of_the_artifact_bucket(tracking_on):
    stack, template, _, _ = tracking_on
    template.resource_count_is(TRACKING_SERVER, 1)
    bucket = stack.resolve(stack.artifacts.bucket.bucket_name)
    template.has_resource_properties(TRACKING_SERVER, {
        "TrackingServerName": "modelwerk-experiments",
        "TrackingServerSize": "Medium",
        "AutomaticModelRegistration": False,
        "ArtifactStoreUri": {"Fn::Join": ["", ["s3://", bucket, "/mlflow"]]},
        "RoleArn": {"Fn::GetAtt": [Match.string_like_regexp("ServiceRole"), "Arn"]},
    })


def _role_policies(template: Template, stack, role) -> list[dict]:
    role_ref = stack.resolve(role.role_name)
    policies = [p for p in template.find_resources("AWS::IAM::Policy").values()
                if role_ref in p["Properties"]["Roles"]]
    assert policies
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("role_name", ["service_role", "logging_role"])
def test_roles_reach_only_the_artifact_prefix_the_key_and_the_server(tracking_on, role_name):
    stack, template, _, _ = tracking_on
    tracking = stack.experiment_tracking
    bucket_arn = stack.resolve(stack.artifacts.bucket.bucket_arn)
    key_arn = stack.resolve(stack.artifacts.key.key_arn)
    server_arn = stack.resolve(tracking.tracking_server_arn)
    prefix_objects = {"Fn::Join": ["", [bucket_arn, "/mlflow/*"]]}
    for statement in _role_policies(template, stack, getattr(tracking, role_name)):
        assert statement["Effect"] == "Allow"
        actions, resources = _as_list(statement["Action"]), _as_list(statement["Resource"])
        assert not any("*" in a for a in actions), actions
        if all(a.startswith("kms:") for a in actions):
            assert resources == [key_arn]
        elif actions == ["s3:ListBucket"]:
            assert resources == [bucket_arn]
            assert statement["Condition"] == {"StringLike": {"s3:prefix": ["mlflow/*"]}}
        elif actions == ["s3:GetBucketLocation"]:
            assert resources == [bucket_arn]
        elif all(a.startswith("s3:") for a in actions):
            assert resources == [prefix_objects]
            assert "s3:DeleteObject" not in actions
        else:
            assert role_name == "logging_role"
            assert all(a.startswith("sagemaker-mlflow:") for a in actions)
            assert resources == [server_arn]


def test_only_sagemaker_assumes_the_service_role(tracking_on):
    stack, template, _, _ = tracking_on
    role = template.find_resources("AWS::IAM::Role")[stack.get_logical_id(
        stack.experiment_tracking.service_role.node.default_child)]
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}


def test_only_the_training_accounts_assume_the_logging_role(tracking_on):
    stack, template, _, context = tracking_on
    role = template.find_resources("AWS::IAM::Role")[stack.get_logical_id(
        stack.experiment_tracking.logging_role.node.default_child)]
    statements = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    accounts = {a for s in statements for a in ACCOUNT_IN_ARN.findall(json.dumps(s["Principal"]))}
    training = {e["account"] for e in context["modelwerk:environments"].values() if e.get("training")}
    assert accounts == training == {context["modelwerk:environments"]["dev"]["account"]}
    assert not any(is_wildcard_principal(s["Principal"]) for s in statements)


@pytest.mark.parametrize("name", ["mlflow/tracking-server-arn", "mlflow/logging-role-arn"])
def test_the_registry_publishes_the_server_and_the_logging_role(tracking_on, name):
    _, template, _, _ = tracking_on
    template.has_resource_properties("AWS::SSM::Parameter", {"Name": f"/modelwerk/registry/{name}", "Type": "String"})


def test_no_wildcard_principal_and_cfn_lint_is_clean(tracking_on):
    _, _, outdir, _ = tracking_on
    (template_file,) = outdir.glob("assembly-Registry/*ModelRegistry*.template.json")
    document = json.loads(template_file.read_text(encoding="utf-8"))
    for statement in policy_statements(document):
        if statement.get("Effect") == "Allow":
            assert not is_wildcard_principal(statement.get("Principal")), statement
    findings = cfnlint.lint_file(template_file, config=cfnlint.ManualArgs(regions=["eu-central-1"]))
    problems = [str(m) for m in findings
                if m.rule.id.startswith("E") or (m.rule.id.startswith("W") and m.rule.id not in ACCEPTED_LINT_WARNINGS)]
    assert not problems, problems


def test_cdk_nag_report_is_clean(tracking_on):
    _, _, outdir, _ = tracking_on
    report_file = outdir / "validation-report.json"
    if not report_file.exists():
        return  # written only when a plugin has something to say; synth already failed on any finding
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert all(p["conclusion"] == "success" and not p.get("violations") for p in report["pluginReports"])
