"""The model registry as a data scientist uses it: list, show, approve, reject, the version prod serves and the marks
a promotion keeps, through the library's verbs and the CLI, on the registry the demo left in the registry account.

The demo leaves pump-health with the version it promoted to prod and the version retraining registered; other modules
may have added versions, so versions are identified by what the fixtures read (the prod version, the newest version
prod never served), never by their number. The version the deciding tests change is put back as it was at the end.
"""

from __future__ import annotations

import json
import re

import pytest

from local_cli import cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode-reads")]

USE_CASE = "pump-health"
GROUP = "modelwerk-pump-health"
INPUT_SCHEMA = ["site", "vibration_rms", "bearing_temp_c", "flow_m3h", "pressure_bar", "speed_rpm", "power_kw"]


def _packages(sagemaker) -> list[dict]:
    """The group's versions as the registry lists them, newest first."""
    pages = sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=GROUP)
    return sorted((p for page in pages for p in page["ModelPackageSummaryList"]),
                  key=lambda p: p["ModelPackageVersion"], reverse=True)


@pytest.fixture(scope="module")
def registry(demo_ok):
    """SageMaker, S3 and the version prod serves in the registry account (through the registry's profile)."""
    from modelwerk import models, platform

    session = platform.session("registry")
    prod = models.prod_version(USE_CASE)
    assert prod is not None, "the demo promoted no pump-health version to prod"
    return {"sagemaker": session.client("sagemaker"), "s3": session.client("s3"), "prod": prod,
            "account": session.client("sts").get_caller_identity()["Account"]}


@pytest.fixture(scope="module")
def undecided(registry):
    """The newest version prod never served (the demo's retraining registered one), waiting for a decision while the
    module runs; afterwards its status, description and metadata are what they were."""
    from modelwerk import models

    sagemaker = registry["sagemaker"]
    candidate = next(v for v in models.versions(USE_CASE) if not v.promoted_to_prod_at)
    saved = sagemaker.describe_model_package(ModelPackageName=candidate.arn)
    _set_pending(sagemaker, candidate.arn)
    yield candidate
    metadata = saved.get("CustomerMetadataProperties") or {}
    now = sagemaker.describe_model_package(ModelPackageName=candidate.arn).get("CustomerMetadataProperties") or {}
    update = {"ModelPackageArn": candidate.arn, "ModelApprovalStatus": saved["ModelApprovalStatus"],
              "CustomerMetadataProperties": metadata}
    if saved.get("ApprovalDescription"):
        update["ApprovalDescription"] = saved["ApprovalDescription"]
    if set(now) - set(metadata):
        update["CustomerMetadataPropertiesToRemove"] = sorted(set(now) - set(metadata))
    sagemaker.update_model_package(**update)


def _set_pending(sagemaker, arn: str) -> None:
    """Back to waiting for a decision, so a test's approval is a change whatever ran before it."""
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    if package["ModelApprovalStatus"] != "PendingManualApproval":
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="PendingManualApproval",
                                       CustomerMetadataProperties=package.get("CustomerMetadataProperties") or {})


# -- reading ----------------------------------------------------------------------------------------------------------
def test_versions_are_listed_newest_first_as_the_registry_holds_them(registry):
    from modelwerk import models

    listed = models.versions(USE_CASE)
    packages = _packages(registry["sagemaker"])
    assert [(v.version, v.arn) for v in listed] == [(p["ModelPackageVersion"], p["ModelPackageArn"])
                                                     for p in packages]
    assert len(listed) >= 2  # the demo's promoted version and its retraining's
    assert all(0 <= v.metrics["f1"] <= 1 for v in listed)
    assert all(set(v.to_dict()) == {"version", "arn", "approval_status", "metrics"} for v in listed)


def test_show_carries_lineage_input_schema_and_model_of_the_promoted_version(registry):
    from modelwerk import data, models, platform

    prod = registry["prod"]
    shown = models.version(USE_CASE, prod.version)
    package = registry["sagemaker"].describe_model_package(ModelPackageName=shown.arn)
    assert shown.approval_status == package["ModelApprovalStatus"] == "Approved"
    assert shown.model_data_url == package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert shown.lineage["code_commit"]
    assert data.snapshot_manifest(USE_CASE, shown.lineage["data_snapshot_id"])["snapshot_id"] == \
        shown.lineage["data_snapshot_id"]
    trained_by = platform.session("dev").client("sagemaker").describe_pipeline_execution(
        PipelineExecutionArn=shown.lineage["pipeline_execution_arn"])
    assert trained_by["PipelineExecutionStatus"] == "Succeeded"
    bucket, _, key = shown.lineage["baseline_uri"].removeprefix("s3://").partition("/")
    assert registry["s3"].head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    assert [c["name"] for c in shown.input_schema] == INPUT_SCHEMA
    assert set(shown.to_dict(detail=True)) == {"version", "arn", "approval_status", "metrics", "lineage",
                                               "input_schema"}


@pytest.mark.parametrize("form", ["number", "text", "arn"])
def test_a_version_is_found_by_number_text_or_arn(registry, form):
    from modelwerk import models

    prod = registry["prod"]
    spec = {"number": prod.version, "text": str(prod.version), "arn": prod.arn}[form]
    assert models.version(USE_CASE, spec).arn == prod.arn


def test_latest_is_the_newest_version(registry):
    from modelwerk import models

    assert models.version(USE_CASE, "latest").arn == _packages(registry["sagemaker"])[0]["ModelPackageArn"]


def test_prod_version_is_the_one_prods_endpoint_serves(registry, cli_env):
    prod = registry["prod"]
    assert prod.approval_status == "Approved" and prod.promoted_to_prod_at and prod.in_prod_history
    served = cli_json("endpoints", "describe", USE_CASE, "--env", "prod", env=cli_env)
    assert served["version"] == prod.version


def test_versions_render_as_escaped_html(registry):
    from modelwerk import models

    table = models.version(USE_CASE, registry["prod"].version)._repr_html_()
    assert table.startswith("<table>") and registry["prod"].lineage["code_commit"] in table
    assert "<script" not in table


# -- deciding ---------------------------------------------------------------------------------------------------------
def test_approve_sets_the_status_and_reason_and_keeps_the_metadata(registry, undecided):
    from modelwerk import models

    sagemaker = registry["sagemaker"]
    _set_pending(sagemaker, undecided.arn)
    before = sagemaker.describe_model_package(ModelPackageName=undecided.arn)
    approved = models.approve(USE_CASE, undecided.version, reason="f1 beats the prod version")
    assert (approved.approval_status, approved.approval_description) == ("Approved", "f1 beats the prod version")
    after = sagemaker.describe_model_package(ModelPackageName=undecided.arn)
    assert after["ModelApprovalStatus"] == "Approved"
    assert after["CustomerMetadataProperties"] == before["CustomerMetadataProperties"]


def test_approving_an_approved_version_changes_nothing(registry, undecided):
    from modelwerk import models

    sagemaker = registry["sagemaker"]
    models.approve(USE_CASE, undecided.version)
    before = sagemaker.describe_model_package(ModelPackageName=undecided.arn)
    again = models.approve(USE_CASE, undecided.version, reason="once more")
    assert (again.approval_status, again.version) == ("Approved", undecided.version)
    after = sagemaker.describe_model_package(ModelPackageName=undecided.arn)
    assert after.get("LastModifiedTime") == before.get("LastModifiedTime")
    assert after.get("ApprovalDescription") == before.get("ApprovalDescription")


def test_reject_records_the_reason_and_keeps_the_metadata(registry, undecided):
    from modelwerk import models

    sagemaker = registry["sagemaker"]
    _set_pending(sagemaker, undecided.arn)
    before = sagemaker.describe_model_package(ModelPackageName=undecided.arn)
    rejected = models.reject(USE_CASE, undecided.version, reason="trained before the sensor recalibration")
    assert rejected.approval_status == "Rejected"
    after = sagemaker.describe_model_package(ModelPackageName=undecided.arn)
    assert after["ApprovalDescription"] == "trained before the sensor recalibration"
    assert after["CustomerMetadataProperties"] == before["CustomerMetadataProperties"]


def test_the_version_prod_serves_cannot_be_rejected(registry):
    from modelwerk import models
    from modelwerk.errors import ValidationError

    prod = registry["prod"]
    with pytest.raises(ValidationError, match=f"version {prod.version} is in prod .*roll it back first"):
        models.reject(USE_CASE, prod.version)
    assert models.version(USE_CASE, prod.version).approval_status == "Approved"


def test_promotion_marks_decide_which_version_prod_serves(registry, undecided):
    from modelwerk import models
    from modelwerk.core import promotion_marks

    promoted_at = promotion_marks.now()
    marked = models.record_promotion(USE_CASE, undecided.version, promoted_to_prod_at=promoted_at)
    assert marked.promoted_to_prod_at == promoted_at and marked.lineage == undecided.lineage
    assert models.prod_version(USE_CASE).arn == undecided.arn
    models.record_promotion(USE_CASE, undecided.version, rolled_back_from_prod_at=promotion_marks.now())
    assert models.prod_version(USE_CASE).arn == registry["prod"].arn


def test_an_unknown_mark_is_refused(registry, undecided):
    from modelwerk import models
    from modelwerk.errors import ValidationError

    with pytest.raises(ValidationError, match="record_promotion: the registry keeps the marks"):
        models.record_promotion(USE_CASE, undecided.version, shipped_at="2025-01-01T00:00:00Z")


# -- errors -----------------------------------------------------------------------------------------------------------
def test_an_unknown_version_names_the_versions_that_exist(registry):
    from modelwerk import models
    from modelwerk.errors import NotFoundError

    newest = _packages(registry["sagemaker"])[0]["ModelPackageVersion"]
    with pytest.raises(NotFoundError, match=rf"use case pump-health has versions 1\.\.{newest}; there is no version "
                                            r"999"):
        models.approve(USE_CASE, 999)


def test_an_unknown_use_case_names_the_use_cases(registry):
    from modelwerk import models
    from modelwerk.errors import NotFoundError

    with pytest.raises(NotFoundError, match="unknown use case 'boilers'.*pump-health"):
        models.versions("boilers")


def test_a_malformed_version_is_refused(registry):
    from modelwerk import models
    from modelwerk.errors import ValidationError

    with pytest.raises(ValidationError, match="version number, 'latest', or a model package ARN"):
        models.version(USE_CASE, "v3")


def test_a_package_of_another_group_is_refused(registry):
    from modelwerk import models
    from modelwerk.errors import ValidationError

    other = registry["prod"].arn.replace(f"/{GROUP}/", "/modelwerk-energy-forecast/")
    with pytest.raises(ValidationError, match="is not a model package of use case pump-health"):
        models.version(USE_CASE, other)


def test_the_group_is_addressed_by_the_arn_the_training_stack_publishes(registry):
    from modelwerk import models

    reg = models.registry(USE_CASE)
    assert reg.group == f"arn:aws:sagemaker:{reg.sagemaker.meta.region_name}:{registry['account']}:" \
                        f"model-package-group/{GROUP}"


# -- CLI --------------------------------------------------------------------------------------------------------------
def test_cli_list_prints_one_json_array(registry, cli_env):
    listed = cli_json("models", "list", "--use-case", USE_CASE, env=cli_env)
    assert [v["arn"] for v in listed] == [p["ModelPackageArn"] for p in _packages(registry["sagemaker"])]
    assert all(set(v) == {"version", "arn", "approval_status", "metrics"} for v in listed)


def test_cli_show_prints_lineage_and_input_schema(registry, cli_env):
    prod = registry["prod"]
    shown = cli_json("models", "show", "--use-case", USE_CASE, str(prod.version), env=cli_env)
    assert shown == json.loads(json.dumps(prod.to_dict(detail=True)))


def test_cli_approve_and_reject_print_the_changed_version(registry, undecided, cli_env):
    _set_pending(registry["sagemaker"], undecided.arn)
    version = str(undecided.version)
    approved = cli_json("models", "approve", "--use-case", USE_CASE, version, "--reason", "ok for staging",
                        env=cli_env)
    assert approved["approval_status"] == "Approved" and approved["arn"] == undecided.arn
    rejected = cli_json("models", "reject", "--use-case", USE_CASE, version, env=cli_env)
    assert rejected == {**approved, "approval_status": "Rejected"}
    package = registry["sagemaker"].describe_model_package(ModelPackageName=undecided.arn)
    assert (package["ModelApprovalStatus"], package["ApprovalDescription"]) == ("Rejected", "ok for staging")


def test_cli_without_json_prints_a_table(registry, cli_env):
    result = run_cli("models", "list", "--use-case", USE_CASE, env=cli_env)
    numbers = [p["ModelPackageVersion"] for p in _packages(registry["sagemaker"])]
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [["version", str(n)] for n in numbers]


def test_cli_unknown_version_is_one_sentence(registry, cli_env):
    newest = _packages(registry["sagemaker"])[0]["ModelPackageVersion"]
    result = run_cli("models", "approve", "--use-case", USE_CASE, "999", "--json", env=cli_env, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (f"modelwerk: use case pump-health has versions 1..{newest}; there is no version "
                                     "999 (choose one of them, or 'latest')")
    assert re.fullmatch(r"[^\n]+", result.stderr.strip())


@pytest.mark.parametrize("published, expected", [
    pytest.param({"use-cases/pump-health/model-package-group-arn":
                  "arn:aws:sagemaker:eu-central-1:999999999999:model-package-group/modelwerk-pump-health"},
                 "arn:aws:sagemaker:eu-central-1:999999999999:model-package-group/modelwerk-pump-health",
                 id="published-by-the-training-stack"),
    pytest.param({}, "arn:aws:sagemaker:eu-central-1:111111111111:model-package-group/modelwerk-pump-health",
                 id="registry-account-of-cdk-json"),
])
def test_without_local_mode_the_group_is_addressed_across_accounts_by_its_arn(monkeypatch, published, expected):
    from local_cli import ROOT
    from modelwerk import models, platform, settings

    config = settings.load(ROOT)
    resolved = platform.Platform(env="dev", region="eu-central-1", source="ssm", parameters=published,
                                 contracts={name: uc.contract for name, uc in config.use_cases.items()})
    monkeypatch.setattr(platform, "resolve", lambda env=None, **kwargs: resolved)
    reg = models.registry(USE_CASE)
    assert reg.group == expected
    assert reg.sagemaker.meta.region_name == "eu-central-1"
