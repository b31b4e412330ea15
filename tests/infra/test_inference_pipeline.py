"""The inference pipelines: one per use case a single-model endpoint serves in each workload environment, in that
environment's serving stack; their steps and parameters, their role's statements, their predictions table, and the
rules that start them (present only where ``UseCaseConfig.batch`` asks for them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk.assertions import Template

from cdk_constructs.inference_pipeline import (ASSET_BUCKET, CODE_KEY, CONTRACT_KEY, SECURITY_GROUP, SERVING_KEY,
                                               SUBNET, InferencePipeline, InferencePipelineProps)
from modelwerk import naming
from modelwerk.settings import BatchConfig
from sagemaker_pipelines import inference_pipeline as ip
from stacks.serving_stack import scored_endpoints

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "staging", "prod")


def pipelines(template: Template) -> dict:
    return {p["Properties"]["PipelineName"]: p for p in template.find_resources("AWS::SageMaker::Pipeline").values()}


def definition(pipeline: dict) -> tuple[dict, dict]:
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    return json.loads(body), variables


def role_statements(template: Template, role_name: str) -> list[dict]:
    roles = {rid for rid, r in template.find_resources("AWS::IAM::Role").items()
             if r["Properties"].get("RoleName") == role_name}
    statements = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {r.get("Ref") for r in policy["Properties"]["Roles"]} & roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions_of(statements: list[dict]) -> set[str]:
    return {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


@pytest.fixture(scope="module")
def serving(synthesized):
    return {env: synthesized.template(env, "Serving") for env in ENVIRONMENTS}


def test_each_served_use_case_gets_one_pipeline_in_its_environment(serving, config):
    for env in ENVIRONMENTS:
        served = scored_endpoints(config.environment(env))
        expected = {naming.inference_pipeline_name(config.project, env, use_case) for use_case in served}
        assert expected and set(pipelines(serving[env])) == expected
    assert "pump-fleet" not in {e.name for e in scored_endpoints(config.environment("dev")).values()}


def test_the_definition_runs_resolve_model_export_transform_write_with_its_parameters(serving, config):
    name = naming.inference_pipeline_name(config.project, "dev", "pump-health")
    document, variables = definition(pipelines(serving["dev"])[name])
    assert [(s["Name"], s["Type"]) for s in document["Steps"]] == [
        (ip.RESOLVE, "Processing"), (ip.CREATE_MODEL, "Model"), (ip.EXPORT, "Processing"),
        (ip.TRANSFORM, "Transform"), (ip.WRITE_PREDICTIONS, "Processing")]
    assert {p["Name"]: p["DefaultValue"] for p in document["Parameters"]} == {
        ip.MODEL_PACKAGE_ARN: "", ip.SNAPSHOT_ID: "latest", ip.INPUT_S3_URI: "", ip.TRIGGERED_BY: "person"}
    assert set(variables) == {ASSET_BUCKET, CODE_KEY, CONTRACT_KEY, SERVING_KEY, SECURITY_GROUP, f"{SUBNET}0",
                              f"{SUBNET}1"}
    transform = next(s for s in document["Steps"] if s["Name"] == ip.TRANSFORM)["Arguments"]
    batch = config.use_case("pump-health").batch
    assert transform["TransformResources"]["InstanceType"] == batch.instance_type
    assert transform["MaxPayloadInMB"] == batch.max_payload_mb
    assert transform["DataCaptureConfig"]["KmsKeyId"] == "${ServingKey}"
    resolve = next(s for s in document["Steps"] if s["Name"] == ip.RESOLVE)["Arguments"]
    arguments = resolve["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--endpoint") + 1] == "pump-health"


def test_the_role_reads_and_writes_only_its_use_cases_prefixes(serving, config):
    role = naming.inference_role_name(config.project, "dev", "pump-health")
    statements = role_statements(serving["dev"], role)
    actions = actions_of(statements)
    assert {"sagemaker:CreateModel", "sagemaker:CreateTransformJob", "sagemaker:CreateProcessingJob",
            "sagemaker:DescribeEndpoint", "sagemaker:DescribeModelPackage", "iam:PassRole"} <= actions
    assert not {a for a in actions if a.endswith("*")}
    assert not {"sagemaker:CreateEndpoint", "sagemaker:DeleteModel", "glue:CreateTable", "s3:DeleteObject"} & actions
    text = json.dumps(statements)
    for prefix in ("batch/pump-health/*", "capture-batch/pump-health/*", "predictions/pump-health/*",
                   "_snapshots/pump-health/*", "pipelines/pump-health/*"):
        assert prefix in text
    assert "energy-forecast" not in text
    pass_role = next(s for s in statements if s["Action"] == "iam:PassRole")
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_predictions_get_a_projected_table_in_the_analytics_database(serving, config):
    tables = [t["Properties"] for t in serving["dev"].find_resources("AWS::Glue::Table").values()]
    table = next(t for t in tables if t["TableInput"]["Name"] == "pump_health_predictions")
    assert table["DatabaseName"] == naming.database_name(config.project, "dev", "analytics")
    columns = [c["Name"] for c in table["TableInput"]["StorageDescriptor"]["Columns"]]
    assert columns == ["pump_id", "timestamp", "prediction", "model_package_arn", "model_version", "snapshot_id",
                       "execution_id", "scored_at"]
    assert table["TableInput"]["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert table["TableInput"]["Parameters"]["projection.enabled"] == "true"


def test_no_rule_starts_a_pipeline_when_the_use_case_asks_for_none(serving, config):
    assert all(u.batch.schedule is None and not u.batch.on_new_snapshot for u in config.use_cases.values())
    for env in ENVIRONMENTS:
        rules = serving[env].find_resources("AWS::Events::Rule")
        assert not [r for r in rules.values() if "pipeline/" in json.dumps(r["Properties"].get("Targets", []))]


@pytest.fixture(scope="module")
def scheduled(config):
    """One pipeline construct with a schedule and the new-snapshot rule, in a stack of its own."""
    app = App()
    stack = Stack(app, "Batch", env={"account": "123456789012", "region": "eu-central-1"})
    use_case = config.use_case("energy-forecast")
    code = s3_assets.Asset(stack, "Code", path=str(ROOT / "frameworks.txt"))
    key = kms.Key(stack, "Key")
    InferencePipeline(stack, "Inference", props=InferencePipelineProps(
        project="modelwerk", env_name="dev", contract=use_case.contract,
        contract_file=str(use_case.folder / "contract.json"), code_archive=code,
        image_uri="492215442770.dkr.ecr.eu-central-1.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3",
        serving_image_repository_arn="arn:aws:ecr:eu-central-1:111111111111:repository/modelwerk/serving",
        endpoint_name="energy-forecast", serving_bucket_name="modelwerk-dev-serving-123456789012-eu-central-1",
        serving_key=key, curated_bucket_name="modelwerk-dev-curated-123456789012-eu-central-1",
        analytics_bucket_name="modelwerk-dev-analytics-123456789012-eu-central-1",
        data_key_alias="alias/modelwerk/dev/data-lake", registry_account="111111111111",
        artifact_bucket_name="modelwerk-registry-model-artifacts-111111111111-eu-central-1",
        artifact_key_alias="alias/modelwerk/registry/model-artifacts",
        batch=BatchConfig(schedule="cron(0 2 * * ? *)", on_new_snapshot=True, instance_count=2),
        subnet_ids=["subnet-1"], security_group_id="sg-1"))
    return Template.from_stack(stack)


def test_a_schedule_and_a_new_snapshot_start_the_pipeline_with_their_trigger(scheduled):
    rules = list(scheduled.find_resources("AWS::Events::Rule").values())
    triggers = {}
    for rule in rules:
        target = rule["Properties"]["Targets"][0]
        parameters = {p["Name"]: p["Value"]
                      for p in target["SageMakerPipelineParameters"]["PipelineParameterList"]}
        assert parameters[ip.SNAPSHOT_ID] == "latest"
        assert target["DeadLetterConfig"]
        triggers[parameters[ip.TRIGGERED_BY]] = rule["Properties"]
    assert set(triggers) == {"schedule", "new-snapshot"}
    assert triggers["schedule"]["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert triggers["new-snapshot"]["EventPattern"] == {
        "source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
        "detail": {"jobName": ["modelwerk-dev-prepare-energy-forecast"], "state": ["SUCCEEDED"]}}
    pipeline = next(iter(scheduled.find_resources("AWS::SageMaker::Pipeline").values()))
    document, _ = definition(pipeline)
    transform = next(s for s in document["Steps"] if s["Name"] == ip.TRANSFORM)["Arguments"]
    assert transform["TransformResources"]["InstanceCount"] == 2
    starter = [s for p in scheduled.find_resources("AWS::IAM::Policy").values()
               for s in p["Properties"]["PolicyDocument"]["Statement"]
               if s["Action"] == "sagemaker:StartPipelineExecution"]
    assert len(starter) == 1
    assert json.dumps(starter[0]["Resource"]).endswith(':pipeline/modelwerk-dev-energy-forecast-inference"]]}')
