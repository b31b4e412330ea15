"""A pipeline definition's processing step run as a local process: staged in, run, staged out, properties."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from modelwerk import synthetic
from modelwerk.errors import ExecutionFailedError
from modelwerk.local.pipeline_expressions import ExecutionContext
from modelwerk.local.processing import run_processing_job
from sagemaker_pipelines import code_archive
from test_steps import BUCKET, REGION, curated_frame, parquet_objects, publish, use_case

ROOT = Path(__file__).resolve().parents[2]
CODE_BUCKET = "modelwerk-code"
CODE_KEY = "0123abcd.tar.gz"
pytestmark = pytest.mark.slow


def definition(use_case_name: str) -> dict:
    spec = importlib.util.spec_from_file_location("_pipeline_builder", ROOT / "sagemaker_pipelines" / "pipeline.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return json.loads(builder.build_definition(
        use_case=use_case_name, role_arn="arn:aws:iam::123456789012:role/pipeline", region=REGION,
        artifact_bucket="modelwerk-artifacts", code_uri=f"s3://{CODE_BUCKET}/{CODE_KEY}",
        contract_uri=f"s3://{CODE_BUCKET}/contracts/{use_case_name}.json", image_uri="local",
        model_package_group_arn=f"arn:aws:sagemaker:{REGION}:111111111111:model-package-group/modelwerk-{use_case_name}",
        quality_metric="r2", quality_threshold=0.5, git_commit="abc123", curated_bucket=BUCKET))


@pytest.fixture(scope="module")
def s3(embedded_aws, tmp_path_factory):
    client = embedded_aws.client("s3")
    for bucket in (BUCKET, CODE_BUCKET, "modelwerk-artifacts"):
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    # The code as the CDK app deploys it: one archive (steps/, modelwerk/core/), and the contract beside it.
    archive = code_archive.build(tmp_path_factory.mktemp("code"))
    client.upload_file(str(archive), CODE_BUCKET, CODE_KEY)
    contract_file = ROOT / "sagemaker_pipelines" / "energy_forecast" / "contract.json"
    client.upload_file(str(contract_file), CODE_BUCKET, "contracts/energy-forecast.json")
    return client, embedded_aws.env


def test_preprocess_step_runs_from_the_definition_and_stages_its_outputs(s3, tmp_path):
    client, env = s3
    contract = use_case("energy-forecast").contract
    frame = curated_frame(contract, synthetic.generate(use_case("energy-forecast"), rows=600, seed=4))
    manifest = publish(client, contract.use_case, parquet_objects(contract, frame))
    step = next(s for s in definition("energy-forecast")["Steps"] if s["Name"] == "Preprocess")
    context = ExecutionContext(parameters={"SnapshotId": manifest["snapshot_id"], "ProcessingInstanceType": "local"},
                               execution={"PipelineExecutionId": "e1", "PipelineExecutionArn": "arn:e1"})

    result = run_processing_job("Preprocess", context.evaluate(step["Arguments"]), work_dir=tmp_path, s3=client,
                                environment=env)

    context.steps["Preprocess"] = result.properties
    train_uri = context.evaluate(
        {"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"})
    bucket, _, prefix = train_uri[5:].partition("/")
    keys = {o["Key"].rsplit("/", 1)[-1] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert keys == {"train.csv", "schema.json"}
    assert result.seconds > 0


def _preprocess(snapshot_id: str) -> tuple[dict, ExecutionContext]:
    step = next(s for s in definition("energy-forecast")["Steps"] if s["Name"] == "Preprocess")
    context = ExecutionContext(parameters={"SnapshotId": snapshot_id, "ProcessingInstanceType": "local"},
                               execution={"PipelineExecutionId": "e2", "PipelineExecutionArn": "arn:e2"})
    return context.evaluate(step["Arguments"]), context


def test_an_unknown_snapshot_fails_before_the_script_runs(s3, tmp_path):
    client, env = s3
    arguments, _ = _preprocess("0000000000000000")
    with pytest.raises(ExecutionFailedError, match="0000000000000000.json holds no objects"):
        run_processing_job("Preprocess", arguments, work_dir=tmp_path, s3=client, environment=env)


def test_a_failing_script_raises_with_its_error_line(s3, tmp_path):
    client, env = s3
    contract = use_case("energy-forecast").contract
    objects = parquet_objects(contract, curated_frame(contract, synthetic.generate(use_case("energy-forecast"),
                                                                                   rows=100, seed=5)))
    first, second = list(objects)[:2]
    manifest = publish(client, contract.use_case, objects, pinned={first: objects[second]})
    arguments, _ = _preprocess(manifest["snapshot_id"])
    with pytest.raises(ExecutionFailedError, match="Preprocess failed .*sha256"):
        run_processing_job("Preprocess", arguments, work_dir=tmp_path, s3=client, environment=env)
