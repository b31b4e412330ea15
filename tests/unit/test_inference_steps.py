"""The inference pipeline: its definition JSON (built offline, wired step to step as AWS documents the shapes) and its
step scripts (resolve the version, export a snapshot to CSV records, write the predictions), on files and moto."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto_fresh import fresh_mock_aws

from modelwerk.core import snapshot
from modelwerk.core.contract import Contract

ROOT = Path(__file__).resolve().parents[2]
STEPS = ROOT / "sagemaker_pipelines" / "steps"
REGION = "eu-central-1"
ACCOUNT = "123456789012"
SERVING = f"modelwerk-dev-serving-{ACCOUNT}-{REGION}"
CURATED = f"modelwerk-dev-curated-{ACCOUNT}-{REGION}"
ANALYTICS = f"modelwerk-dev-analytics-{ACCOUNT}-{REGION}"
ARTIFACTS = f"modelwerk-registry-model-artifacts-{ACCOUNT}-{REGION}"
CONTRACT = Contract.load(ROOT / "sagemaker_pipelines" / "pump_health" / "contract.json")
INPUTS = [{"name": n, "type": CONTRACT.column(n).type, "required": CONTRACT.column(n).required}
          for n in CONTRACT.input_schema]


def _load(name: str, folder: Path = STEPS):
    """A step module by path, registered under the name the scripts import it by."""
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sc = _load("step_common")
bc = _load("batch_common")
resolve_version = _load("resolve_version")
export_batch = _load("export_batch")
write_predictions = _load("write_predictions")
ip = importlib.util.module_from_spec(spec := importlib.util.spec_from_file_location(
    "inference_definition_builder", ROOT / "sagemaker_pipelines" / "inference_pipeline.py"))
spec.loader.exec_module(ip)


# -- the definition ------------------------------------------------------------------------------------------------

ARGUMENTS = dict(
    use_case="pump-health", role_arn=f"arn:aws:iam::{ACCOUNT}:role/modelwerk-dev-pump-health-inference",
    region=REGION, code_uri="s3://${AssetBucket}/${CodeKey}", contract_uri="s3://${AssetBucket}/${ContractKey}",
    image_uri=f"492215442770.dkr.ecr.{REGION}.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3",
    serving_bucket=SERVING, serving_key_arn="${ServingKey}", curated_bucket=CURATED, analytics_bucket=ANALYTICS,
    analytics_database="modelwerk_dev_analytics", endpoint_name="pump-health", instance_type="ml.c5.xlarge",
    instance_count=2, max_payload_mb=4, max_concurrent_transforms=3, subnet_ids=["${Subnet0}"],
    security_group_ids=["${SecurityGroup}"])


@pytest.fixture(scope="module")
def definition() -> dict:
    return json.loads(ip.build_inference_definition(**ARGUMENTS))


def steps_of(definition: dict) -> dict:
    return {s["Name"]: s for s in definition["Steps"]}


def gets(node) -> list[str]:
    if isinstance(node, dict):
        return ([node["Get"]] if "Get" in node else []) + [g for v in node.values() for g in gets(v)]
    if isinstance(node, list):
        return [g for v in node for g in gets(v)]
    return []


def test_the_steps_run_resolve_model_export_transform_write_in_that_order(definition):
    steps = steps_of(definition)
    assert [(s["Name"], s["Type"]) for s in definition["Steps"]] == [
        ("ResolveVersion", "Processing"), ("CreateModel", "Model"), ("Export", "Processing"),
        ("Transform", "Transform"), ("WritePredictions", "Processing")]
    referenced = {name: {g.split(".")[1] for g in gets(step["Arguments"]) if g.startswith("Steps.")}
                  for name, step in steps.items()}
    assert referenced["Export"] == {"ResolveVersion"}
    assert referenced["Transform"] == {"CreateModel", "Export"}
    assert referenced["WritePredictions"] == {"ResolveVersion", "Export", "Transform"}
    assert {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]} == {
        "ModelPackageArn": "", "SnapshotId": "latest", "InputS3Uri": "", "TriggeredBy": "person"}


def test_the_model_is_created_from_the_resolved_version_network_isolated_in_the_vpc(definition):
    model = steps_of(definition)["CreateModel"]["Arguments"]
    assert model["Containers"] == [{"ModelPackageName": {"Std:JsonGet": {
        "PropertyFile": {"Get": "Steps.ResolveVersion.PropertyFiles.VersionReport"}, "Path": "model_package_arn"}}}]
    assert model["EnableNetworkIsolation"] is True
    assert model["VpcConfig"] == {"Subnets": ["${Subnet0}"], "SecurityGroupIds": ["${SecurityGroup}"]}
    assert model["ExecutionRoleArn"] == ARGUMENTS["role_arn"]


def test_the_transform_splits_lines_drops_the_key_and_joins_it_back_with_capture(definition):
    transform = steps_of(definition)["Transform"]["Arguments"]
    assert transform["ModelName"] == {"Get": "Steps.CreateModel.ModelName"}
    assert transform["TransformInput"]["SplitType"] == "Line"
    assert transform["TransformInput"]["ContentType"] == "text/csv"
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == {
        "Get": "Steps.Export.ProcessingOutputConfig.Outputs['records'].S3Output.S3Uri"}
    assert transform["BatchStrategy"] == "MultiRecord" and transform["TransformOutput"]["AssembleWith"] == "Line"
    assert transform["DataProcessing"] == {"InputFilter": "$[1:]", "OutputFilter": "$[0,-1]", "JoinSource": "Input"}
    assert transform["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 2,
                                               "VolumeKmsKeyId": "${ServingKey}"}
    assert (transform["MaxPayloadInMB"], transform["MaxConcurrentTransforms"]) == (4, 3)
    capture = transform["DataCaptureConfig"]
    assert capture["KmsKeyId"] == "${ServingKey}" and "GenerateInferenceId" not in capture
    assert capture["DestinationS3Uri"]["Std:Join"]["Values"] == [
        f"s3://{SERVING}/capture-batch/pump-health", {"Get": "Execution.PipelineExecutionId"}]


def test_property_files_carry_the_counts_batch_run_reports(definition):
    steps = steps_of(definition)
    files = {name: [(f["PropertyFileName"], f["OutputName"], f["FilePath"]) for f in s.get("PropertyFiles", [])]
             for name, s in steps.items()}
    assert files["ResolveVersion"] == [("VersionReport", "version", "version.json")]
    assert files["Export"] == [("ExportReport", "export", "export.json")]
    assert files["WritePredictions"] == [("PredictionsReport", "report", "predictions.json")]
    write = steps["WritePredictions"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert write[write.index("--table") + 1] == "pump_health_predictions"
    assert write[write.index("--table-prefix") + 1] == "predictions/pump-health/"
    text = json.dumps(definition)
    assert set(__import__("re").findall(r"\$\{([^}]+)\}", text)) == {
        "AssetBucket", "CodeKey", "ContractKey", "ServingKey", "Subnet0", "SecurityGroup"}


def test_wrong_arguments_fail_before_the_sdk_is_touched():
    with pytest.raises(ValueError, match="instance_type 'c5'.*max_payload_mb 101"):
        ip.build_inference_definition(**{**ARGUMENTS, "max_payload_mb": 101, "instance_type": "c5"})


# -- resolve_version.py ----------------------------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch):
    for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with fresh_mock_aws():
        s3 = boto3.client("s3")
        for bucket in (SERVING, CURATED, ANALYTICS, ARTIFACTS):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=CURATED, VersioningConfiguration={"Status": "Enabled"})
        yield s3, boto3.client("sagemaker")


def _register(s3, sagemaker, status: str = "Approved", use_case: str = "pump-health") -> str:
    lineage = f"s3://{ARTIFACTS}/pipelines/pump-health/exec-1/preprocess/lineage/lineage.json"
    s3.put_object(Bucket=ARTIFACTS, Key=lineage.split("/", 3)[3], Body=json.dumps(
        {"input_schema": INPUTS, "label": "failure", "task": "classification", "snapshot_id": "abc"}).encode())
    sagemaker.create_model_package_group(ModelPackageGroupName="modelwerk-pump-health")
    return sagemaker.create_model_package(
        ModelPackageGroupName="modelwerk-pump-health", ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "serving:1", "ModelDataUrl": f"s3://{ARTIFACTS}/m.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        CustomerMetadataProperties={"use_case": use_case, "lineage_uri": lineage})["ModelPackageArn"]


def _serve(sagemaker, package: str) -> None:
    sagemaker.create_model(ModelName="pump-health-1", ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/endpoint",
                           Containers=[{"ModelPackageName": package}])
    sagemaker.create_endpoint_config(EndpointConfigName="pump-health-1", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "pump-health-1", "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}])
    sagemaker.create_endpoint(EndpointName="pump-health", EndpointConfigName="pump-health-1")


def test_an_empty_arn_resolves_to_the_version_the_endpoint_serves_with_its_inputs(aws, tmp_path):
    s3, sagemaker = aws
    package = _register(s3, sagemaker)
    _serve(sagemaker, package)
    resolve_version.main(["--model-package-arn", "", "--endpoint", "pump-health", "--use-case", "pump-health",
                          "--triggered-by", "schedule", "--version", str(tmp_path)])
    version = json.loads((tmp_path / "version.json").read_text())
    assert version["model_package_arn"] == package and version["model_version"] == 1
    assert [f["name"] for f in version["input_schema"]] == CONTRACT.input_schema
    assert (version["endpoint"], version["triggered_by"]) == ("pump-health", "schedule")


def test_nothing_served_an_unapproved_or_foreign_version_fails_with_a_message(aws):
    s3, sagemaker = aws
    with pytest.raises(sc.StepError, match="nothing is served.*'pump-health'.*pass ModelPackageArn"):
        resolve_version.resolve(sagemaker, s3, model_package_arn="", endpoint="pump-health", use_case="pump-health")
    pending = _register(s3, sagemaker, status="PendingManualApproval")
    with pytest.raises(sc.StepError, match="PendingManualApproval, not Approved"):
        resolve_version.resolve(sagemaker, s3, model_package_arn=pending, endpoint="", use_case="pump-health")
    with pytest.raises(sc.StepError, match="not of 'energy-forecast'"):
        resolve_version.resolve(sagemaker, s3, model_package_arn=pending, endpoint="", use_case="energy-forecast")


# -- export_batch.py -------------------------------------------------------------------------------------------------


def _rows() -> pd.DataFrame:
    return pd.DataFrame({
        "pump_id": ["P-001", "P-002", "P-003", "P-004"],
        "site": ["plant-north", "plant-south", "plant-mars", "plant-east"],
        "timestamp": pd.to_datetime(["2026-03-01T00:00Z"] * 4, utc=True),
        "vibration_rms": [1.5, None, 2.0, 3.25],
        "bearing_temp_c": [60.0, 61.0, 62.0, 300.0],
        "flow_m3h": [100.0] * 4, "pressure_bar": [5.0] * 4, "speed_rpm": [1500.0] * 4, "power_kw": [30.0] * 4,
        "failure": [0, 0, 0, 1]})


def _publish(s3, frame: pd.DataFrame) -> str:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    key = "pump-health/dt=2026-03-01/part-00000.parquet"
    version_id = s3.put_object(Bucket=CURATED, Key=key, Body=buffer.getvalue())["VersionId"]
    manifest = snapshot.build_manifest("pump-health", CURATED,
                                       [snapshot.manifest_entry(key, version_id, buffer.getvalue())])
    manifest_key = snapshot.manifest_key("_snapshots/pump-health/", manifest["snapshot_id"])
    s3.put_object(Bucket=CURATED, Key=manifest_key, Body=snapshot.dumps(manifest))
    s3.put_object(Bucket=CURATED, Key="_snapshots/pump-health/latest.json",
                  Body=snapshot.dumps(snapshot.latest_pointer(manifest, manifest_key)))
    return manifest["snapshot_id"]


def _version(folder: Path) -> Path:
    sc.write_json(folder / "version.json", {"model_package_arn": "arn:aws:sagemaker:eu-central-1:1:model-package/"
                                            "modelwerk-pump-health/3", "model_version": 3, "input_schema": INPUTS})
    return folder


def test_export_writes_key_first_records_in_input_order_and_failures_with_reasons(aws, tmp_path):
    s3, _ = aws
    snapshot_id = _publish(s3, _rows())
    (tmp_path / "contract.json").write_text(CONTRACT.to_json())
    out = {name: tmp_path / name for name in ("records", "keys", "failures", "export")}
    export_batch.main(["--contract", str(tmp_path / "contract.json"), "--version", str(_version(tmp_path / "v")),
                       "--snapshot-id", "latest", "--snapshot-bucket", CURATED,
                       *[a for name, path in out.items() for a in (f"--{name}", str(path))]])
    report = json.loads((out["export"] / "export.json").read_text())
    assert report["objects"] == 1 and (report["rows_in"], report["rows_exported"],
                                                 report["rows_failed"]) == (4, 1, 3)
    assert report["snapshot_id"] == snapshot_id
    lines = (out["records"] / "part-00000.csv").read_text().splitlines()
    assert lines == ["0,plant-north,1.5,60.0,100.0,5.0,1500.0,30.0"]  # row id, then site, vibration... in input order
    failures = [json.loads(line) for line in (out["failures"] / "failures.jsonl").read_text().splitlines()]
    assert {f["pump_id"]: f["reason"] for f in failures} == {
        "P-002": "'vibration_rms' is required and missing",
        "P-003": "'site' is not one of the contract's allowed values",
        "P-004": "'bearing_temp_c' is above the contract's max 200"}
    keys = pq.read_table(out["keys"] / "keys.parquet").to_pandas()
    assert keys.columns.tolist() == ["row_id", "pump_id", "timestamp"] and keys["row_id"].tolist() == [0]


def test_a_text_the_csv_cannot_carry_fails_its_row_not_the_job():
    frame = _rows().iloc[:1].copy()
    frame["site"] = ["plant-north, annex"]
    frame.insert(0, "row_id", [0])
    reasons = bc.check_rows(frame, CONTRACT, INPUTS)
    assert "comma, quote or line break" in reasons.iloc[0]


# -- write_predictions.py --------------------------------------------------------------------------------------------


def test_every_exported_row_is_scored_or_counted_and_lands_in_the_partition(aws, tmp_path):
    s3, _ = aws
    keys = pd.DataFrame({"row_id": [0, 1, 2], "pump_id": ["P-001", "P-002", "P-003"],
                         "timestamp": pd.to_datetime(["2026-03-01T00:00Z"] * 3, utc=True)})
    (tmp_path / "keys").mkdir()
    pq.write_table(pa.Table.from_pandas(keys, preserve_index=False), tmp_path / "keys" / "keys.parquet")
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "part-00000.csv.out").write_text("0,1\n2,maybe\n")  # row 1 never came back
    sc.write_json(tmp_path / "export" / "export.json", {"rows_in": 5, "rows_failed": 2, "snapshot_id": "abc"})
    (tmp_path / "contract.json").write_text(CONTRACT.to_json())
    write_predictions.main([
        "--contract", str(tmp_path / "contract.json"), "--version", str(_version(tmp_path / "v")),
        "--export", str(tmp_path / "export"), "--keys", str(tmp_path / "keys"),
        "--predictions", str(tmp_path / "predictions"), "--report", str(tmp_path / "report"),
        "--failures", str(tmp_path / "failures"), "--execution-id", "exec-9", "--analytics-bucket", ANALYTICS,
        "--table-prefix", "predictions/pump-health/", "--database", "modelwerk_dev_analytics",
        "--table", "pump_health_predictions"])
    report = json.loads((tmp_path / "report" / "predictions.json").read_text())
    assert (report["rows_in"], report["rows_scored"], report["rows_failed"]) == (5, 1, 4)
    assert report["output_table"] == "modelwerk_dev_analytics.pump_health_predictions"
    failures = {json.loads(line)["row_id"]: json.loads(line)["reason"]
                for line in (tmp_path / "failures" / "failures.jsonl").read_text().splitlines()}
    assert failures == {1: "no prediction came back for this row", 2: "the model's answer is not a integer prediction"}
    bucket, _, key = report["output_uri"].removeprefix("s3://").partition("/")
    assert bucket == ANALYTICS and key.startswith("predictions/pump-health/dt=") and key.endswith("/exec-9.parquet")
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert table.column_names == ["pump_id", "timestamp", "prediction", "model_package_arn", "model_version",
                                  "snapshot_id", "execution_id", "scored_at"]
    row = table.to_pylist()[0]
    assert (row["pump_id"], row["prediction"], row["model_version"], row["snapshot_id"]) == ("P-001", 1, 3, "abc")
