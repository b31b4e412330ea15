"""The registry's account shares its model package groups with the accounts their resource policy names, as on AWS.

The registry creates a group, its policy and a version; other accounts reach them by ARN with their own credentials
(``sts:AssumeRole`` into each account of the embedded AWS): the reader the policy names may read, the registering
account may add and update versions, any other account is refused, and by name nobody sees another account's
versions. The last test deploys a group from a template, as ``local up`` does, and reads it across accounts.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from modelwerk.local.assembly import StackArtifact
from modelwerk.local.deployer import deploy_stack

REGISTRY, READER, REGISTERING, OUTSIDER = "111111111111", "222222222222", "123456789012", "444444444444"
GROUP = "shared-model"
CONTAINER = {"Image": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/serving:1",
             "ModelDataUrl": "s3://registry-artifacts/shared-model/model.tar.gz"}


def _policy(region: str) -> dict:
    group_arn = f"arn:aws:sagemaker:{region}:{REGISTRY}:model-package-group/{GROUP}"
    resources = [group_arn, f"arn:aws:sagemaker:{region}:{REGISTRY}:model-package/{GROUP}/*"]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadersRead", "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{READER}:root"]},
         "Action": ["sagemaker:Describe*", "sagemaker:ListModelPackages"], "Resource": resources},
        {"Sid": "PipelinesRegister", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{REGISTERING}:role/x"},
         "Action": ["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage"], "Resource": resources},
    ]}


@pytest.fixture(scope="module")
def session_of(embedded_aws):
    """A boto3 session in an account of the embedded AWS, through sts:AssumeRole as a workload would reach it."""
    sts = embedded_aws.client("sts")

    def session(account: str) -> boto3.Session:
        issued = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/x", RoleSessionName="test")["Credentials"]
        return boto3.Session(aws_access_key_id=issued["AccessKeyId"], aws_secret_access_key=issued["SecretAccessKey"],
                             aws_session_token=issued["SessionToken"], region_name=sts.meta.region_name)

    return session


@pytest.fixture(scope="module")
def sagemaker_of(embedded_aws, session_of):
    return lambda account: session_of(account).client("sagemaker", endpoint_url=embedded_aws.endpoint_url)


@pytest.fixture(scope="module")
def version(sagemaker_of) -> tuple[str, str]:
    """(group ARN, version ARN) in the registry's account, the group shared by its policy."""
    registry = sagemaker_of(REGISTRY)
    group_arn = registry.create_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
    registry.put_model_package_group_policy(ModelPackageGroupName=GROUP,
                                            ResourcePolicy=json.dumps(_policy(registry.meta.region_name)))
    package_arn = registry.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [CONTAINER], "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]},
        CustomerMetadataProperties={"baseline_uri": "s3://registry-artifacts/shared-model/baseline.json"},
    )["ModelPackageArn"]
    return group_arn, package_arn


def test_an_admitted_account_describes_a_version_of_the_registry_by_arn(sagemaker_of, version):
    _, package_arn = version
    package = sagemaker_of(READER).describe_model_package(ModelPackageName=package_arn)
    assert package["ModelPackageArn"] == package_arn
    assert package["CustomerMetadataProperties"]["baseline_uri"].endswith("/baseline.json")
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == CONTAINER["ModelDataUrl"]


def test_an_admitted_account_lists_and_describes_the_group_by_its_arn(sagemaker_of, version):
    group_arn, package_arn = version
    reader = sagemaker_of(READER)
    listed = reader.list_model_packages(ModelPackageGroupName=group_arn)["ModelPackageSummaryList"]
    assert [p["ModelPackageArn"] for p in listed] == [package_arn]
    assert reader.describe_model_package_group(ModelPackageGroupName=group_arn)["ModelPackageGroupName"] == GROUP


@pytest.mark.parametrize(("account", "operation", "by"), [
    pytest.param(OUTSIDER, "describe_model_package", "version", id="an account the policy does not name"),
    pytest.param(OUTSIDER, "list_model_packages", "group", id="listing from an account the policy does not name"),
    pytest.param(READER, "update_model_package", "version", id="an action the policy does not give the reader"),
])
def test_what_the_policy_does_not_allow_is_access_denied(sagemaker_of, version, account, operation, by):
    group_arn, package_arn = version
    member = {"describe_model_package": "ModelPackageName", "list_model_packages": "ModelPackageGroupName",
              "update_model_package": "ModelPackageArn"}[operation]
    with pytest.raises(ClientError) as raised:
        getattr(sagemaker_of(account), operation)(**{member: package_arn if by == "version" else group_arn})
    error = raised.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert f"model package group {group_arn}" in error["Message"] and f"account {account}" in error["Message"]


def test_by_name_another_accounts_version_is_not_found(sagemaker_of, version):
    with pytest.raises(ClientError, match="not found"):
        sagemaker_of(READER).describe_model_package(ModelPackageName=GROUP)


def test_the_registering_account_adds_and_updates_versions_by_arn_and_metadata_stays(sagemaker_of, version):
    group_arn, _ = version
    pipeline = sagemaker_of(REGISTERING)
    added = pipeline.create_model_package(ModelPackageGroupName=group_arn, ModelApprovalStatus="PendingManualApproval",
                                          InferenceSpecification={"Containers": [CONTAINER],
                                                                  "SupportedContentTypes": ["text/csv"],
                                                                  "SupportedResponseMIMETypes": ["text/csv"]},
                                          CustomerMetadataProperties={"git_commit": "c0ffee"})["ModelPackageArn"]
    assert added.split(":")[4] == REGISTRY
    pipeline.update_model_package(ModelPackageArn=added, ModelApprovalStatus="Approved")
    package = sagemaker_of(REGISTRY).describe_model_package(ModelPackageName=added)
    assert (package["ModelApprovalStatus"], package["CustomerMetadataProperties"]) == (
        "Approved", {"git_commit": "c0ffee"})


def test_a_deployed_groups_policy_admits_the_accounts_it_names(embedded_aws, session_of, sagemaker_of, tmp_path,
                                                              monkeypatch):
    region = embedded_aws.client("sts").meta.region_name
    partition_arn = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":iam::{READER}:root"]]}
    template = {"Resources": {"Group": {"Type": "AWS::SageMaker::ModelPackageGroup", "Properties": {
        "ModelPackageGroupName": "deployed-model",
        "ModelPackageGroupPolicy": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": [partition_arn]}, "Action": "sagemaker:DescribeModelPackageGroup",
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
                                    "model-package-group/deployed-model"}}]}}}}}
    path = tmp_path / "Registry-Test.template.json"
    path.write_text(json.dumps(template))
    monkeypatch.setenv("AWS_ENDPOINT_URL", embedded_aws.endpoint_url)
    deploy_stack(session_of(REGISTRY), StackArtifact(name="Registry-Test", template_file=path, assets_file=None,
                                                     account=REGISTRY, region=region, dependencies=()))
    group_arn = f"arn:aws:sagemaker:{region}:{REGISTRY}:model-package-group/deployed-model"
    assert sagemaker_of(READER).describe_model_package_group(ModelPackageGroupName=group_arn)["ModelPackageGroupArn"] \
        == group_arn
    with pytest.raises(ClientError, match="AccessDenied"):
        sagemaker_of(OUTSIDER).describe_model_package_group(ModelPackageGroupName=group_arn)
