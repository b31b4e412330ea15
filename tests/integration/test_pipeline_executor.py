"""The local executor runs a whole pipeline definition: processes, training, condition, registration, caching."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import boto3
import pytest

from modelwerk import synthetic
from modelwerk.errors import ValidationError
from modelwerk.local.pipeline_executor import PipelineExecutor, execution_order, load_execution
from sagemaker_pipelines import code_archive

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from test_steps import BUCKET, REGION, curated_frame, parquet_objects, publish, use_case  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline-executor")]
REGISTRY = "111111111111"
CODE_BUCKET = "cdk-hnb659fds-assets-123456789012-eu-central-1"
ARTIFACTS = "modelwerk-registry-model-artifacts"
PIPELINE_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/modelwerk-pump-health-training"


def build(**overrides) -> dict:
    spec = importlib.util.spec_from_file_location("_pipeline_builder", ROOT / "sagemaker_pipelines" / "pipeline.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    arguments = dict(
        use_case="pump-health", role_arn="arn:aws:iam::123456789012:role/pipeline", region=REGION,
        artifact_bucket=ARTIFACTS, code_uri=f"s3://{CODE_BUCKET}/code.tar.gz",
        contract_uri=f"s3://{CODE_BUCKET}/pump-health.json", image_uri="local",
        model_package_group_arn=f"arn:aws:sagemaker:{REGION}:{REGISTRY}:model-package-group/modelwerk-pump-health",
        quality_metric="f1", quality_threshold=0.05, git_commit="c0ffee", curated_bucket=BUCKET,
        hyperparameters={"max_iter": 30},
    )
    return json.loads(builder.build_definition(**{**arguments, **overrides}))


@pytest.fixture(scope="module")
def world(embedded_aws, tmp_path_factory):
    """Dev's buckets and code, a published snapshot, and the registry account's group."""
    s3 = embedded_aws.client("s3")
    for bucket in (BUCKET, CODE_BUCKET, ARTIFACTS):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.upload_file(str(code_archive.build(tmp_path_factory.mktemp("code"))), CODE_BUCKET, "code.tar.gz")
    s3.upload_file(str(ROOT / "sagemaker_pipelines" / "pump_health" / "contract.json"), CODE_BUCKET,
                   "pump-health.json")
    contract = use_case("pump-health").contract
    frame = curated_frame(contract, synthetic.generate(use_case("pump-health"), rows=40000, seed=11))
    manifest = publish(s3, contract.use_case, parquet_objects(contract, frame))

    credentials = embedded_aws.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{REGISTRY}:role/registry", RoleSessionName="tests")["Credentials"]
    registry = boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                             aws_secret_access_key=credentials["SecretAccessKey"],
                             aws_session_token=credentials["SessionToken"], region_name=REGION)
    registry_sagemaker = registry.client("sagemaker", endpoint_url=embedded_aws.endpoint_url)
    registry_sagemaker.create_model_package_group(ModelPackageGroupName="modelwerk-pump-health")

    def clients(service: str, account: str | None):
        if account == REGISTRY:
            return registry.client(service, endpoint_url=embedded_aws.endpoint_url)
        return embedded_aws.client(service)

    return {"s3": s3, "clients": clients, "env": embedded_aws.env, "manifest": manifest,
            "registry": registry_sagemaker, "records": tmp_path_factory.mktemp("records")}


def executor(world, definition=None, **kwargs) -> PipelineExecutor:
    return PipelineExecutor(definition or build(), pipeline_arn=PIPELINE_ARN, records_dir=world["records"],
                            clients=world["clients"], environment=world["env"], **kwargs)


def packages(world) -> list[dict]:
    return world["registry"].list_model_packages(ModelPackageGroupName="modelwerk-pump-health")[
        "ModelPackageSummaryList"]


@pytest.fixture(scope="module")
def first_run(world):
    seen = []
    execution = executor(world, on_step=lambda r: seen.append((r.name, r.status))).run(
        {"SnapshotId": world["manifest"]["snapshot_id"]})
    return execution, seen


def test_a_run_executes_every_step_and_registers_a_pending_version(first_run, world):
    execution, seen = first_run
    assert execution.status == "Succeeded", execution.failure_reason
    statuses = {s.name: s.status for s in execution.steps}
    assert statuses == {"Preprocess": "Succeeded", "Train": "Succeeded", "Evaluate": "Succeeded",
                        "Baseline": "Succeeded", "QualityGate": "Succeeded", "Register": "Succeeded",
                        "QualityGateFailed": "Skipped"}
    assert ("Train", "Executing") in seen and ("Train", "Succeeded") in seen
    assert all(s.seconds > 0 for s in execution.steps if s.status == "Succeeded")
    package = world["registry"].describe_model_package(ModelPackageName=execution.model_package_arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    metadata = package["CustomerMetadataProperties"]
    assert metadata["snapshot_id"] == world["manifest"]["snapshot_id"]
    assert metadata["git_commit"] == "c0ffee"
    assert metadata["pipeline_execution_arn"] == execution.arn
    model_url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert model_url.startswith(f"s3://{ARTIFACTS}/pipelines/pump-health/{execution.execution_id}/train/")
    assert model_url.endswith("/output/model.tar.gz")
    bucket, _, key = metadata["evaluation_uri"][5:].partition("/")
    evaluation = json.loads(world["s3"].get_object(Bucket=bucket, Key=key)["Body"].read())
    assert 0 <= evaluation["metrics"]["f1"]["value"] <= 1


def test_the_record_and_logs_of_an_execution_are_kept(first_run):
    execution, _ = first_run
    reloaded = load_execution(Path(execution.record_dir))
    assert reloaded.to_dict() == execution.to_dict()
    train = execution.step("Train")
    assert Path(train.log_file).read_text().count("hyperparameters") >= 1
    assert train.properties["HyperParameters"]["max_iter"] == "30"


def test_an_unchanged_input_reuses_cached_steps_and_preprocess_always_runs(first_run, world):
    first, _ = first_run
    second = executor(world).run({"SnapshotId": world["manifest"]["snapshot_id"]})
    assert second.status == "Succeeded", second.failure_reason
    assert second.step("Preprocess").cache_hit is None
    for name in ("Train", "Evaluate", "Baseline"):
        assert second.step(name).cache_hit == first.arn
    changed = executor(world, build(hyperparameters={"max_iter": 31})).run(
        {"SnapshotId": world["manifest"]["snapshot_id"]})
    assert changed.step("Train").cache_hit is None
    assert changed.step("Baseline").cache_hit == first.arn  # its inputs did not change


def test_a_metric_below_the_threshold_fails_with_the_gate_message_and_registers_nothing(world):
    before = len(packages(world))
    execution = executor(world).run({"SnapshotId": world["manifest"]["snapshot_id"], "QualityThreshold": "1.5"})
    assert execution.status == "Failed"
    assert execution.step("QualityGate").properties == {"Outcome": "False"}
    assert execution.step("QualityGateFailed").status == "Failed"
    assert execution.step("Register").status == "Skipped"
    assert "pump-health: f1 " in execution.failure_reason and "fails the quality gate (>= 1.5)" in \
        execution.failure_reason
    assert execution.model_package_arn is None
    assert len(packages(world)) == before


def test_a_crashing_script_fails_the_execution_with_its_error_and_skips_the_rest(world):
    before = len(packages(world))
    execution = executor(world, build(hyperparameters={"learning_rate": -1})).run(
        {"SnapshotId": world["manifest"]["snapshot_id"]})
    assert execution.status == "Failed"
    assert execution.step("Train").status == "Failed"
    assert "learning_rate" in execution.failure_reason
    assert {s.name for s in execution.steps if s.status == "Skipped"} >= {"Evaluate", "Register"}
    assert len(packages(world)) == before


def test_an_unknown_snapshot_fails_in_preprocess(world):
    execution = executor(world).run({"SnapshotId": "does-not-exist"})
    assert execution.status == "Failed"
    assert execution.step("Preprocess").status == "Failed"
    assert "does-not-exist.json holds no objects" in execution.failure_reason


@pytest.mark.parametrize(("overrides", "message"), [
    ({"Snapshot": "x"}, "no parameter Snapshot; it takes SnapshotId"),
    ({"QualityThreshold": "high"}, "QualityThreshold takes a float"),
])
def test_bad_parameters_are_refused_before_anything_runs(world, overrides, message):
    runs_before = sorted(p.name for p in Path(world["records"]).rglob("execution.json"))
    with pytest.raises(ValidationError, match=message):
        executor(world).run(overrides)
    assert sorted(p.name for p in Path(world["records"]).rglob("execution.json")) == runs_before


def test_steps_run_after_what_they_refer_to_and_depend_on():
    order = [s["Name"] for s in execution_order(build()["Steps"])]
    assert order.index("Preprocess") < order.index("Train") < order.index("Evaluate") < order.index("QualityGate")
    assert order.index("Baseline") < order.index("QualityGate")
