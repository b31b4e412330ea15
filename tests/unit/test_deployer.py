"""The local deployer: moto's CloudFormation where it knows the type, the ordinary APIs where not, in waves."""

import json

import boto3
import pytest
from moto import mock_aws

from modelwerk.local.assembly import StackArtifact
from modelwerk.local.deployer import deploy_stack

TEMPLATE = {
    "Resources": {
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {}, "Tags": [{"Key": "env", "Value": "dev"}]}},
        "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {
            "Name": "modelwerk/dev/key", "KmsKeyId": {"Fn::GetAtt": ["Key", "Arn"]},
            "GenerateSecretString": {"PasswordLength": 48, "ExcludePunctuation": True}}},
        "SecretParameter": {"Type": "AWS::SSM::Parameter", "Properties": {
            "Name": "/modelwerk/dev/secret-arn", "Type": "String", "Value": {"Ref": "Secret"}, "Tags": {"env": "dev"}}},
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {
            "BucketName": "modelwerk-dev-raw-test", "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                               "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
            "LifecycleConfiguration": {"Rules": [{"Id": "expire", "Status": "Enabled", "ExpirationInDays": 7,
                                                  "NoncurrentVersionExpiration": {"NoncurrentDays": 3}}]}}},
        "BucketPolicy": {"Type": "AWS::S3::BucketPolicy", "Properties": {
            "Bucket": {"Ref": "Bucket"},
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
                 "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/*"]]},
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
                {"Effect": "Allow", "Principal": {"AWS": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:root"}},
                 "Action": "s3:GetObject", "Resource": {"Fn::Sub": "${Bucket.Arn}/*"}}]}}},
        "Database": {"Type": "AWS::Glue::Database", "Properties": {
            "CatalogId": {"Ref": "AWS::AccountId"}, "DatabaseInput": {"Name": "modelwerk_dev_raw"}}},
        "Table": {"Type": "AWS::Glue::Table", "Properties": {
            "CatalogId": {"Ref": "AWS::AccountId"}, "DatabaseName": {"Ref": "Database"},
            "TableInput": {"Name": "pump_health", "StorageDescriptor": {
                "Location": {"Fn::Sub": "s3://${Bucket}/pump-health/"}, "Columns": [{"Name": "x", "Type": "double"}]}}}},
        "Notifications": {"Type": "Custom::S3BucketNotifications", "Properties": {"BucketName": {"Ref": "Bucket"}}},
        "Unknown": {"Type": "AWS::CodeStarNotifications::NotificationRule", "Properties": {"Name": "x"}},
    },
    "Outputs": {"ExportedBucket": {"Value": {"Ref": "Bucket"}, "Export": {"Name": "dev-raw-bucket"}}},
}


@pytest.fixture
def stack(tmp_path):
    template = tmp_path / "Dev-Test.template.json"
    template.write_text(json.dumps(TEMPLATE))
    return StackArtifact(name="Dev-Test", template_file=template, assets_file=None, account="123456789012",
                         region="eu-central-1", dependencies=())


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.Session(region_name="eu-central-1")


def test_every_resource_is_routed_and_recorded(aws, stack):
    deployment = deploy_stack(aws, stack)
    via = {lid: r.via for lid, r in deployment.resources.items()}
    assert via == {"Key": "cloudformation", "SecretParameter": "cloudformation", "Bucket": "cloudformation",
                   "Secret": "api", "BucketPolicy": "api", "Database": "api", "Table": "api",
                   "Notifications": "local-runtime", "Unknown": "not-emulated"}


def test_a_cloudformation_resource_sees_the_api_resource_it_references(aws, stack):
    deploy_stack(aws, stack)
    secret_arn = aws.client("ssm").get_parameter(Name="/modelwerk/dev/secret-arn")["Parameter"]["Value"]
    described = aws.client("secretsmanager").describe_secret(SecretId=secret_arn)
    assert described["Name"] == "modelwerk/dev/key"
    assert described["KmsKeyId"].startswith("arn:aws:kms:eu-central-1:123456789012:key/")
    assert len(aws.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]) == 48


def test_api_resources_resolve_refs_getatts_and_subs(aws, stack):
    deploy_stack(aws, stack)
    table = aws.client("glue").get_table(DatabaseName="modelwerk_dev_raw", Name="pump_health")["Table"]
    assert table["StorageDescriptor"]["Location"] == "s3://modelwerk-dev-raw-test/pump-health/"
    policy = json.loads(aws.client("s3").get_bucket_policy(Bucket="modelwerk-dev-raw-test")["Policy"])
    assert [s["Effect"] for s in policy["Statement"]] == ["Allow"]  # TLS-only denial not applied over plain HTTP
    assert policy["Statement"][0]["Resource"] == "arn:aws:s3:::modelwerk-dev-raw-test/*"


def test_exports_are_published_for_other_stacks(aws, stack):
    deploy_stack(aws, stack)
    exports = {e["Name"]: e["Value"] for e in aws.client("cloudformation").list_exports()["Exports"]}
    assert exports["dev-raw-bucket"] == "modelwerk-dev-raw-test"


def test_bucket_settings_moto_ignores_are_applied(aws, stack):
    deploy_stack(aws, stack)
    s3 = aws.client("s3")
    assert s3.get_bucket_versioning(Bucket="modelwerk-dev-raw-test")["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket="modelwerk-dev-raw-test")["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    rule = s3.get_bucket_lifecycle_configuration(Bucket="modelwerk-dev-raw-test")["Rules"][0]
    assert rule["Expiration"]["Days"] == 7 and rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 3
