"""The model registry as a data scientist uses it: list, show, approve, reject, in the registry account.

The module's embedded AWS stands in for local mode: a ``server.json`` state file points at it (accounts from cdk.json),
the dev account publishes the contracts as the stacks would, and the registry account holds the group and three
versions registered the way the pipeline's Register step registers them.
"""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from modelwerk import local, models, naming, platform, settings
from modelwerk.errors import NotFoundError, ValidationError
from modelwerk.local import events

ROOT = Path(__file__).resolve().parents[2]
USE_CASE = "pump-health"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

ARTIFACTS = "modelwerk-registry-model-artifacts-test"
#: The order a request to version 3 sends its columns in: deliberately not the contract's order.
INPUT_SCHEMA_V3 = [
    {"name": "speed_rpm", "type": "double"},
    {"name": "site", "type": "string"},
    {"name": "vibration_rms", "type": "double"},
    {"name": "bearing_temp_c", "type": "double"},
]
METRICS = {1: {"f1": 0.71, "roc_auc": 0.8}, 2: {"f1": 0.8, "roc_auc": None}, 3: {"f1": 0.83, "roc_auc": 0.91}}


def _metadata(version: int) -> dict[str, str]:
    prefix = f"s3://{ARTIFACTS}/runs/run-{version}"
    return {
        "use_case": USE_CASE,
        "git_commit": f"c0ffee{version}",
        "snapshot_id": f"snapshot-{version}",
        "pipeline_execution_arn": f"arn:aws:sagemaker:eu-central-1:123456789012:pipeline/pump-health-training/"
                                  f"execution/run{version}",
        "quality_metric": "f1",
        "evaluation_uri": f"{prefix}/evaluation/evaluation.json",
        "baseline_uri": f"{prefix}/baseline/baseline.json",
        "lineage_uri": f"{prefix}/lineage/lineage.json",
    }


def _register(sagemaker, s3, group_name: str, version: int) -> str:
    """One version, as the Register step creates it (moto wants the group's name where AWS also takes its ARN)."""
    meta = _metadata(version)
    evaluation = {"metrics": {k: {"value": v} for k, v in METRICS[version].items()}, "task": "classification",
                  "label": "failure", "rows": 600, "format": 1}
    lineage = {"format": 1, "use_case": USE_CASE, "snapshot_id": meta["snapshot_id"], "objects": [],
               "columns": ["site", "vibration_rms", "bearing_temp_c", "failure"], "label": "failure",
               "task": "classification"}
    if version == 3:
        lineage["input_schema"] = INPUT_SCHEMA_V3
    for uri, document in ((meta["evaluation_uri"], evaluation), (meta["lineage_uri"], lineage),
                          (meta["baseline_uri"], {"format": 1, "columns": {}})):
        s3.put_object(Bucket=ARTIFACTS, Key=uri.removeprefix(f"s3://{ARTIFACTS}/"), Body=json.dumps(document))
    return sagemaker.create_model_package(
        ModelPackageGroupName=group_name,
        ModelPackageDescription=f"{USE_CASE}: trained by its training pipeline",
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/modelwerk-serving:1",
                            "ModelDataUrl": f"s3://{ARTIFACTS}/runs/run-{version}/model/model.tar.gz"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": meta["evaluation_uri"]}}},
        DriftCheckBaselines={"ModelDataQuality": {"Statistics": {"ContentType": "application/json",
                                                                 "S3Uri": meta["baseline_uri"]}}},
        CustomerMetadataProperties=meta,
    )["ModelPackageArn"]


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("modelwerk-state")


@pytest.fixture(scope="module")
def local_registry(embedded_aws, state_dir):
    """Local mode pointed at the module's embedded AWS, with a registry of three pump-health versions."""
    config = settings.load(ROOT)
    dev = config.environment("dev")
    state = local.LocalState(endpoint_url=embedded_aws.endpoint_url, region=dev.region,
                             accounts={name: env.account for name, env in config.environments.items()},
                             pid=None, root=str(ROOT))
    (state_dir / "local").mkdir(parents=True, exist_ok=True)
    (state_dir / "local" / "server.json").write_text(json.dumps(asdict(state)))
    saved = dict(os.environ)  # local mode points this process's clients at the module's server: undone below
    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith("AWS_")]:
            patch.delenv(name)
        for name in ("MODELWERK_ENV", "MODELWERK_LOCAL", "MODELWERK_LOCAL_ROOT"):
            patch.delenv(name, raising=False)
        patch.setenv("MODELWERK_STATE_DIR", str(state_dir))
        platform._resolve_cached.cache_clear()
        ssm = local.session("dev", state).client("ssm", endpoint_url=state.endpoint_url)
        for name, use_case in config.use_cases.items():
            ssm.put_parameter(Name=f"{naming.ssm_prefix(config.project, 'dev')}use-cases/{name}/contract",
                              Value=use_case.contract.to_json(), Type="String")
        registry_session = local.session("registry", state)
        sagemaker = registry_session.client("sagemaker", endpoint_url=state.endpoint_url)
        s3 = registry_session.client("s3", endpoint_url=state.endpoint_url)
        group_name = naming.model_package_group_name(config.project, USE_CASE)
        sagemaker.create_model_package_group(ModelPackageGroupName=group_name)
        s3.create_bucket(Bucket=ARTIFACTS, CreateBucketConfiguration={"LocationConstraint": dev.region})
        arns = [_register(sagemaker, s3, group_name, version) for version in (1, 2, 3)]
        yield {"state": state, "arns": arns, "sagemaker": sagemaker, "group": group_name}
        platform._resolve_cached.cache_clear()
    os.environ.clear()
    os.environ.update(saved)


def _raw(local_registry, version: int) -> dict:
    return local_registry["sagemaker"].describe_model_package(ModelPackageName=local_registry["arns"][version - 1])


def _pending(local_registry, version: int) -> None:
    """Back to waiting for a decision, so a test's approval is a change whatever ran before it."""
    local_registry["sagemaker"].update_model_package(
        ModelPackageArn=local_registry["arns"][version - 1], ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties=_metadata(version))


def test_docstring_examples_run(local_registry):
    import modelwerk

    assert doctest.testmod(models, globs={"modelwerk": modelwerk}).failed == 0


def test_versions_are_listed_newest_first_with_their_metrics(local_registry):
    listed = models.versions(USE_CASE)
    assert [v.version for v in listed] == [3, 2, 1]
    assert listed[0].arn == local_registry["arns"][2]
    assert listed[1].metrics == {"f1": 0.8, "roc_auc": None}
    assert set(listed[2].to_dict()) == {"version", "arn", "approval_status", "metrics"}


def test_show_carries_lineage_and_the_input_schema_in_request_order(local_registry):
    shown = models.version(USE_CASE, "3")
    assert shown.lineage == {
        "code_commit": "c0ffee3",
        "data_snapshot_id": "snapshot-3",
        "pipeline_execution_arn": _metadata(3)["pipeline_execution_arn"],
        "baseline_uri": _metadata(3)["baseline_uri"],
    }
    assert shown.input_schema == INPUT_SCHEMA_V3
    assert shown.model_data_url.endswith("run-3/model/model.tar.gz")
    assert set(shown.to_dict(detail=True)) == {"version", "arn", "approval_status", "metrics", "lineage",
                                               "input_schema"}


def test_a_lineage_without_input_schema_falls_back_to_its_columns_typed_by_the_contract(local_registry):
    assert models.version(USE_CASE, 1).input_schema == [
        {"name": "site", "type": "string"},
        {"name": "vibration_rms", "type": "double"},
        {"name": "bearing_temp_c", "type": "double"},
    ]


@pytest.mark.parametrize("spec", [
    pytest.param(2, id="number"),
    pytest.param("2", id="text"),
    pytest.param("arn", id="package-arn"),
])
def test_a_version_is_found_by_number_text_or_arn(local_registry, spec):
    spec = local_registry["arns"][1] if spec == "arn" else spec
    assert models.version(USE_CASE, spec).version == 2


def test_latest_is_the_newest_version(local_registry):
    assert models.version(USE_CASE, "latest").version == 3


def test_approve_sets_the_status_and_dispatches_the_state_change_event(local_registry):
    _pending(local_registry, 3)
    received = []
    callback = events.subscribe(models.STATE_CHANGE, received.append)
    try:
        approved = models.approve(USE_CASE, 3, reason="f1 0.83 beats version 2")
    finally:
        events.unsubscribe(models.STATE_CHANGE, callback)
    assert approved.approval_status == "Approved"
    assert approved.approval_description == "f1 0.83 beats version 2"
    assert models.version(USE_CASE, 3).approval_status == "Approved"
    [event] = received
    assert event["source"] == "aws.sagemaker"
    assert event["account"] == local_registry["state"].accounts["registry"]
    assert event["resources"] == [approved.arn]
    assert event["detail-type"] == "SageMaker Model Package State Change"
    assert event["detail"]["ModelPackageGroupName"] == local_registry["group"]
    assert event["detail"]["ModelPackageVersion"] == 3
    assert event["detail"]["ModelPackageArn"] == approved.arn
    assert event["detail"]["ModelApprovalStatus"] == "Approved"
    assert [d.rule for d in approved.deliveries] == ["local-subscriber"]
    logged = [json.loads(line) for line in events.events_file().read_text().splitlines()]
    assert event["id"] in [e["id"] for e in logged]


def test_approve_keeps_the_versions_customer_metadata(local_registry):
    _pending(local_registry, 3)
    models.approve(USE_CASE, 3)
    assert _raw(local_registry, 3)["CustomerMetadataProperties"] == _metadata(3)


def test_approving_an_approved_version_changes_nothing(local_registry):
    models.approve(USE_CASE, 3)
    received = []
    callback = events.subscribe(models.STATE_CHANGE, received.append)
    try:
        again = models.approve(USE_CASE, 3)
    finally:
        events.unsubscribe(models.STATE_CHANGE, callback)
    assert again.approval_status == "Approved" and again.version == 3
    assert received == [] and again.deliveries == ()


def test_reject_records_the_reason(local_registry):
    _pending(local_registry, 1)
    rejected = models.reject(USE_CASE, 1, reason="trained before the sensor recalibration")
    assert rejected.approval_status == "Rejected"
    assert _raw(local_registry, 1)["ApprovalDescription"] == "trained before the sensor recalibration"
    assert _raw(local_registry, 1)["CustomerMetadataProperties"] == _metadata(1)


def test_an_unknown_version_names_the_versions_that_exist(local_registry):
    with pytest.raises(NotFoundError, match=r"use case pump-health has versions 1\.\.3; there is no version 7"):
        models.approve(USE_CASE, 7)


def test_an_unknown_use_case_names_the_use_cases(local_registry):
    with pytest.raises(NotFoundError, match="unknown use case 'boilers'.*pump-health"):
        models.versions("boilers")


def test_a_use_case_without_versions_says_so(local_registry):
    assert models.versions("energy-forecast") == []
    with pytest.raises(NotFoundError, match="energy-forecast has no registered versions yet"):
        models.version("energy-forecast", "latest")


def test_a_malformed_version_is_refused(local_registry):
    with pytest.raises(ValidationError, match="version number, 'latest', or a model package ARN"):
        models.version(USE_CASE, "v3")


def test_versions_render_as_escaped_html(local_registry):
    table = models.version(USE_CASE, 3)._repr_html_()
    assert table.startswith("<table>") and "c0ffee3" in table and "<script" not in table


@pytest.mark.parametrize("published, expected", [
    pytest.param({"use-cases/pump-health/model-package-group-arn":
                  "arn:aws:sagemaker:eu-central-1:999999999999:model-package-group/modelwerk-pump-health"},
                 "arn:aws:sagemaker:eu-central-1:999999999999:model-package-group/modelwerk-pump-health",
                 id="published-by-the-training-stack"),
    pytest.param({}, "arn:aws:sagemaker:eu-central-1:111111111111:model-package-group/modelwerk-pump-health",
                 id="registry-account-of-cdk-json"),
])
def test_on_aws_the_group_is_addressed_across_accounts_by_its_arn(monkeypatch, published, expected):
    config = settings.load(ROOT)
    resolved = platform.Platform(env="dev", region="eu-central-1", source="ssm", parameters=published,
                                 contracts={name: uc.contract for name, uc in config.use_cases.items()})
    monkeypatch.setattr(platform, "resolve", lambda env=None, **kwargs: resolved)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    reg = models.registry(USE_CASE)
    assert reg.group == expected and reg.session is None
    assert reg.sagemaker.meta.region_name == "eu-central-1"


# -- CLI --------------------------------------------------------------------------------------------------------------
def run_cli(*args: str, state_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(MODELWERK_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT))
    env.pop("MODELWERK_LOCAL_ROOT", None)
    return subprocess.run([sys.executable, "-m", "modelwerk.cli", "models", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_list_prints_one_json_array(local_registry, state_dir):
    result = run_cli("list", "--use-case", USE_CASE, "--json", state_dir=state_dir)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [v["version"] for v in listed] == [3, 2, 1]
    assert all(set(v) == {"version", "arn", "approval_status", "metrics"} for v in listed)


def test_cli_show_prints_lineage_and_input_schema(local_registry, state_dir):
    result = run_cli("show", "--use-case", USE_CASE, "3", "--json", state_dir=state_dir)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert set(shown) == {"version", "arn", "approval_status", "metrics", "lineage", "input_schema"}
    assert set(shown["lineage"]) == {"code_commit", "data_snapshot_id", "pipeline_execution_arn", "baseline_uri"}
    assert shown["input_schema"] == INPUT_SCHEMA_V3
    assert shown["metrics"] == {"f1": 0.83, "roc_auc": 0.91}


def test_cli_approve_and_reject_print_the_changed_version(local_registry, state_dir):
    _pending(local_registry, 2)
    approved = run_cli("approve", "--use-case", USE_CASE, "2", "--reason", "ok for staging", "--json",
                       state_dir=state_dir)
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["approval_status"] == "Approved"
    rejected = run_cli("reject", "--use-case", USE_CASE, "2", "--json", state_dir=state_dir)
    assert json.loads(rejected.stdout) == {**json.loads(approved.stdout), "approval_status": "Rejected"}
    logged = [json.loads(line) for line in (state_dir / "local" / events.EVENTS_FILE).read_text().splitlines()]
    assert [e["detail"]["ModelApprovalStatus"] for e in logged if e["detail"].get("ModelPackageVersion") == 2][-2:] \
        == ["Approved", "Rejected"]


def test_cli_without_json_prints_a_table(local_registry, state_dir):
    result = run_cli("list", "--use-case", USE_CASE, state_dir=state_dir)
    assert result.returncode == 0, result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [["version", "3"], ["version", "2"],
                                                                          ["version", "1"]]


def test_cli_unknown_version_is_one_sentence(local_registry, state_dir):
    result = run_cli("approve", "--use-case", USE_CASE, "9", "--json", state_dir=state_dir)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == ("modelwerk: use case pump-health has versions 1..3; there is no version 9 "
                                     "(choose one of them, or 'latest')")
