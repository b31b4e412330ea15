"""The training stack: one SageMaker Pipeline per use case, its role, its retraining schedule, its names in SSM."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cdk_constructs.permissions import SAGEMAKER_VPC_DESCRIBE
from cdk_constructs.training_pipeline import (
    ASSET_BUCKET,
    CODE_KEY,
    CONTRACT_KEY,
    PACKAGE_REPOSITORY,
    SECURITY_GROUP,
    SUBNET,
    placeholders,
)
from modelwerk import naming
from sagemaker_pipelines.code_archive import framework_pins
from stacks.training_stack import SKLEARN_FRAMEWORK_VERSION, check_framework_version

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def training(synthesized):
    return synthesized.template("dev", "Training")


def pipelines(template) -> dict:
    return {p["Properties"]["PipelineName"]: p for p in template.find_resources("AWS::SageMaker::Pipeline").values()}


def definition_of(pipeline) -> tuple[str, dict]:
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    return body, variables


def test_only_the_training_environments_get_a_training_stack(synthesized, config):
    stacks = {path.name.split(".")[0] for path in synthesized.template_files()}
    assert [e.name for e in config.training_environments] == ["dev"]
    assert any(name.startswith("DevTraining") for name in stacks)
    assert not any(name.startswith(("StagingTraining", "ProdTraining")) for name in stacks)


def test_one_pipeline_per_use_case_named_by_convention(training, config):
    assert set(pipelines(training)) == {naming.training_pipeline_name(config.project, "dev", u) for u in config.use_cases}


def test_the_definition_is_deployed_with_only_its_asset_locations_and_network_substituted(training, config):
    subnets = {f"{SUBNET}{i}" for i in range(len(config.environment("dev").availability_zones))}
    for name, pipeline in pipelines(training).items():
        body, variables = definition_of(pipeline)
        assert set(placeholders(body)) == {ASSET_BUCKET, CODE_KEY, CONTRACT_KEY, SECURITY_GROUP, PACKAGE_REPOSITORY,
                                           *subnets} == set(variables)
        for network in (SECURITY_GROUP, *subnets):
            assert "Fn::ImportValue" in variables[network]  # the network stack's private subnets and group
        assert variables[ASSET_BUCKET] == f"cdk-hnb659fds-assets-{config.environment('dev').account}-eu-central-1"
        assert variables[CODE_KEY].endswith(".gz") and variables[CONTRACT_KEY].endswith(".json")
        doc = json.loads(body)
        assert [s["Name"] for s in doc["Steps"]] == ["Preprocess", "Train", "Evaluate", "Baseline", "QualityGate"]
        assert {p["Name"] for p in doc["Parameters"]} == {"SnapshotId", "ProcessingInstanceType",
                                                          "TrainingInstanceType", "QualityThreshold"}


@pytest.mark.parametrize("use_case", ["pump-health", "energy-forecast"])
def test_the_gate_and_the_registry_group_come_from_config(training, config, use_case):
    pipeline = pipelines(training)[naming.training_pipeline_name(config.project, "dev", use_case)]
    doc = json.loads(definition_of(pipeline)[0])
    settings = config.use_case(use_case)
    threshold = next(p for p in doc["Parameters"] if p["Name"] == "QualityThreshold")
    assert threshold["DefaultValue"] == settings.quality_threshold
    gate = next(s for s in doc["Steps"] if s["Name"] == "QualityGate")
    register = gate["Arguments"]["IfSteps"][0]
    assert register["Arguments"]["ModelPackageGroupName"] == naming.model_package_group_arn(
        config.project, use_case, config.registry.account, "eu-central-1")
    assert register["Arguments"]["ModelApprovalStatus"] == "PendingManualApproval"
    commit = register["Arguments"]["CustomerMetadataProperties"]["git_commit"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", commit)


def _statements(template, role_logical_prefix: str) -> list[dict]:
    policies = template.find_resources("AWS::IAM::Policy")
    (policy,) = [p for lid, p in policies.items() if lid.startswith(role_logical_prefix + "RoleDefaultPolicy")]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def test_every_job_runs_in_the_vpc(training):
    for pipeline in pipelines(training).values():
        doc = json.loads(definition_of(pipeline)[0])
        jobs = [s for s in doc["Steps"] if s["Type"] in ("Processing", "Training")]
        assert len(jobs) == 4
        for step in jobs:
            arguments = step["Arguments"]
            vpc = arguments["NetworkConfig"]["VpcConfig"] if step["Type"] == "Processing" else arguments["VpcConfig"]
            assert vpc["SecurityGroupIds"] == ["${SecurityGroup}"]
            assert vpc["Subnets"] == ["${Subnet0}", "${Subnet1}"]


def test_the_execution_role_is_least_privilege(training, config):
    statements = _statements(training, "PumpHealth")
    flat = json.dumps(statements)
    assert '"Action": "*"' not in flat and '"s3:*"' not in flat and '"sagemaker:*"' not in flat
    unscoped = [s for s in statements if s["Resource"] == "*"]
    actions = {a for s in unscoped for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"ecr:GetAuthorizationToken", "sts:GetServiceBearerToken", *SAGEMAKER_VPC_DESCRIBE}  # no more
    bearer = next(s for s in unscoped if s["Action"] == "sts:GetServiceBearerToken")
    assert bearer["Condition"] == {"StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"}}
    register = next(s for s in statements if "sagemaker:CreateModelPackage" in s["Action"])
    assert json.dumps(register["Resource"]).count(config.registry.account) == 2
    assert "modelwerk-pump-health" in json.dumps(register["Resource"])
    writes = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert len(writes) == 1 and "model-artifacts" in json.dumps(writes[0]["Resource"])
    assert "/pipelines/pump-health/*" in json.dumps(writes[0]["Resource"])
    assert not any("s3:DeleteObject" in s["Action"] for s in statements)
    passes = next(s for s in statements if s["Action"] == "iam:PassRole")
    assert passes["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    keys = [s for s in statements if any(a.startswith("kms:") for a in _actions(s))]
    mirror_key = [s for s in keys if "PackageMirrorKey" in json.dumps(s["Resource"])]
    assert len(mirror_key) == 1 and _actions(mirror_key[0]) == ["kms:Decrypt"]
    assert all("kms:ResourceAliases" in json.dumps(s["Condition"]) for s in keys if s not in mirror_key)


def test_the_role_can_be_assumed_by_sagemaker_only(training):
    for role in training.find_resources("AWS::IAM::Role").values():
        principals = [s["Principal"] for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]]
        assert principals in ([{"Service": "sagemaker.amazonaws.com"}], [{"Service": "events.amazonaws.com"}])


def test_a_schedule_retrains_on_the_latest_snapshot_with_a_dead_letter_queue(training, config):
    rules = training.find_resources("AWS::Events::Rule")
    assert len(rules) == len(config.use_cases)
    for rule in rules.values():
        assert rule["Properties"]["ScheduleExpression"] == config.environment("dev").retraining_schedule
        (target,) = rule["Properties"]["Targets"]
        assert target["SageMakerPipelineParameters"] == {
            "PipelineParameterList": [{"Name": "SnapshotId", "Value": "latest"}]}
        assert "DeadLetterConfig" in target and "RoleArn" in target
    for queue in training.find_resources("AWS::SQS::Queue").values():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True


def test_the_pipeline_names_and_groups_are_published_for_the_library(training, config):
    for use_case in config.use_cases:
        training.has_resource_properties("AWS::SSM::Parameter", {
            "Name": f"/modelwerk/dev/use-cases/{use_case}/pipeline-name",
            "Value": naming.training_pipeline_name(config.project, "dev", use_case)})
        training.has_resource_properties("AWS::SSM::Parameter", {
            "Name": f"/modelwerk/dev/use-cases/{use_case}/model-package-group-arn"})


def test_the_training_image_is_the_scikit_learn_release_frameworks_txt_pins():
    """Training installs frameworks.txt on top of the framework image: both must be the same scikit-learn release."""
    pinned = framework_pins(ROOT)["scikit-learn"]
    assert SKLEARN_FRAMEWORK_VERSION.split("-")[0] == ".".join(pinned.split(".")[:2])


def test_a_framework_image_of_another_release_is_refused(tmp_path):
    (tmp_path / "frameworks.txt").write_text("scikit-learn==1.9.1\nxgboost-cpu==3.2.0\n")
    check_framework_version(tmp_path, "1.9-0")
    with pytest.raises(ValueError, match="pins scikit-learn 1.9.1"):
        check_framework_version(tmp_path, "1.4-2")


def test_the_steps_run_in_the_framework_image_of_the_pinned_release(training):
    for pipeline in pipelines(training).values():
        doc = json.loads(definition_of(pipeline)[0])
        train = next(s for s in doc["Steps"] if s["Name"] == "Train")
        assert train["Arguments"]["AlgorithmSpecification"]["TrainingImage"].endswith(
            "/sagemaker-scikit-learn:1.9-0-cpu-py3")


def test_the_role_may_pull_the_serving_image_its_versions_are_registered_with(training, config):
    statements = _statements(training, "PumpHealth")
    pulls = next(s for s in statements if "ecr:BatchGetImage" in s["Action"])
    repositories = json.dumps(pulls["Resource"])
    assert f":ecr:eu-central-1:{config.registry.account}:repository/{naming.serving_repository_name('modelwerk')}" \
        in repositories
    assert "repository/sagemaker-scikit-learn" in repositories


def test_jobs_install_the_frameworks_pins_through_the_environments_package_mirror(training, config):
    (domain,) = training.find_resources("AWS::CodeArtifact::Domain").values()
    assert domain["Properties"]["DomainName"] == f"{config.project}-dev"
    assert "EncryptionKey" in domain["Properties"]  # the mirror's own key, rotated
    (key,) = [k for lid, k in training.find_resources("AWS::KMS::Key").items() if lid.startswith("PackageMirror")]
    assert key["Properties"]["EnableKeyRotation"] is True
    repositories = {r["Properties"]["RepositoryName"]: r["Properties"]
                    for r in training.find_resources("AWS::CodeArtifact::Repository").values()}
    assert repositories["pypi-store"]["ExternalConnections"] == ["public:pypi"]
    assert "ExternalConnections" not in repositories["python"] and len(repositories["python"]["Upstreams"]) == 1
    for pipeline in pipelines(training).values():
        body, variables = definition_of(pipeline)
        assert variables[PACKAGE_REPOSITORY] == {"Fn::GetAtt": [next(
            lid for lid, r in training.find_resources("AWS::CodeArtifact::Repository").items()
            if r["Properties"]["RepositoryName"] == "python"), "Arn"]}
        jobs = [s for s in json.loads(body)["Steps"] if s["Type"] in ("Processing", "Training")]
        for step in jobs:
            assert step["Arguments"]["Environment"]["CA_REPOSITORY_ARN"] == f"${{{PACKAGE_REPOSITORY}}}"
    statements = _statements(training, "PumpHealth")
    reads = next(s for s in statements if "codeartifact:ReadFromRepository" in s["Action"])
    assert "Fn::GetAtt" in json.dumps(reads["Resource"]) and "*" not in json.dumps(reads["Resource"])


def test_the_vpc_reaches_the_package_mirror_through_its_endpoints(synthesized):
    network = synthesized.template("dev", "Network")
    services = json.dumps([e["Properties"]["ServiceName"]
                           for e in network.find_resources("AWS::EC2::VPCEndpoint").values()])
    assert "codeartifact.api" in services and "codeartifact.repositories" in services
