"""RegistryStack: the model artifact bucket and key are readable by exactly the workload accounts."""

from __future__ import annotations

import json

import re

import pytest
from aws_cdk.assertions import Match

from modelwerk import naming

pytestmark = pytest.mark.slow

ACCOUNT_IN_ARN = re.compile(r":iam::(\d{12}):root")


def principal_accounts(principal: object) -> set[str]:
    """Account ids named in an ``{"AWS": ...}`` principal (ARN strings or ``Fn::Join`` of them)."""
    return set(ACCOUNT_IN_ARN.findall(str(principal)))


def workload_accounts(config) -> set[str]:
    return {w.account for w in config.workloads}


def test_artifact_bucket_is_named_encrypted_versioned_and_private(registry, config):
    environment = config.registry
    registry.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": naming.bucket_name(
                "modelwerk", "registry", "model-artifacts", environment.account, environment.region
            ),
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    Match.object_like(
                        {
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": Match.any_value(),
                            }
                        }
                    )
                ]
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
        },
    )


def test_artifact_key_rotates(registry):
    registry.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_bucket_policy_lets_the_workload_accounts_read_and_the_training_accounts_write_pipeline_outputs(
        synthesized, registry, config):
    stack = synthesized.stack("registry", "ModelRegistry")
    policies = registry.find_resources(
        "AWS::S3::BucketPolicy", {"Properties": {"Bucket": stack.resolve(stack.artifacts.bucket.bucket_name)}}
    )
    (policy,) = policies.values()
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    training = {e.account for e in config.training_environments}
    assert training == {config.environment("dev").account}
    reads = [s for s in allows if s["Sid"].startswith("WorkloadAccounts")]
    writes = [s for s in allows if s["Sid"] == "TrainingAccountsWritePipelineOutputs"]
    assert len(reads) == 2 and len(writes) == 1 and len(allows) == 3
    for statement in allows:
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "true"}}
    for statement in reads:
        assert principal_accounts(statement["Principal"]["AWS"]) == workload_accounts(config)
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(a.startswith(("s3:Get", "s3:List")) for a in actions), actions
    (write,) = writes
    assert principal_accounts(write["Principal"]["AWS"]) == training
    assert sorted(write["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert json.dumps(write["Resource"]).endswith('/pipelines/*"]]}')  # never the whole bucket, never delete


def test_key_policy_lets_the_workload_accounts_decrypt_and_only_the_training_accounts_encrypt(
        synthesized, registry, config):
    stack = synthesized.stack("registry", "ModelRegistry")
    key_id = stack.resolve(stack.artifacts.key.key_arn)["Fn::GetAtt"][0]
    key = registry.find_resources("AWS::KMS::Key")[key_id]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    by_sid = {s.get("Sid"): s for s in statements if principal_accounts(s["Principal"]["AWS"]) & workload_accounts(config)}
    assert set(by_sid) == {"WorkloadAccountsDecrypt", "TrainingAccountsEncrypt"}
    assert principal_accounts(by_sid["WorkloadAccountsDecrypt"]["Principal"]["AWS"]) == workload_accounts(config)
    assert sorted(by_sid["WorkloadAccountsDecrypt"]["Action"]) == ["kms:Decrypt", "kms:DescribeKey"]
    assert principal_accounts(by_sid["TrainingAccountsEncrypt"]["Principal"]["AWS"]) == {
        e.account for e in config.training_environments}
    assert sorted(by_sid["TrainingAccountsEncrypt"]["Action"]) == ["kms:Encrypt", "kms:GenerateDataKey"]


@pytest.mark.parametrize("name", ["buckets/model-artifacts", "kms/model-artifacts-key-arn"])
def test_registry_publishes_its_parameters(registry, name):
    registry.has_resource_properties("AWS::SSM::Parameter", {"Name": f"/modelwerk/registry/{name}", "Type": "String"})


def _groups(registry) -> dict:
    return registry.find_resources("AWS::SageMaker::ModelPackageGroup")


def test_one_model_package_group_per_use_case(registry, config):
    names = {g["Properties"]["ModelPackageGroupName"] for g in _groups(registry).values()}
    assert names == {naming.model_package_group_name(config.project, u) for u in config.use_cases}


def test_group_policies_name_the_configured_accounts_only(registry, config):
    dev = config.environment("dev").account
    for group in _groups(registry).values():
        statements = {s["Sid"]: s for s in group["Properties"]["ModelPackageGroupPolicy"]["Statement"]}
        read, register = statements["WorkloadAccountsRead"], statements["PipelineAccountsRegister"]
        assert principal_accounts(read["Principal"]["AWS"]) == workload_accounts(config)
        assert principal_accounts(register["Principal"]["AWS"]) == {dev}
        assert "sagemaker:CreateModelPackage" in register["Action"]
        assert not any(a.startswith("sagemaker:Create") or a.startswith("sagemaker:Delete") for a in read["Action"])
        assert "*" not in str(read["Principal"]) and "*" not in str(register["Principal"])


@pytest.mark.parametrize("use_case", ["pump-health", "energy-forecast"])
def test_registry_publishes_each_group(registry, use_case):
    registry.has_resource_properties("AWS::SSM::Parameter", {
        "Name": f"/modelwerk/registry/model-package-groups/{use_case}", "Type": "String"})
