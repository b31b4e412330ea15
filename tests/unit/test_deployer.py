"""The local deployer: moto's CloudFormation where it knows the type, the ordinary APIs where not, in waves."""

import json

import boto3
import pytest
from moto_fresh import fresh_mock_aws

from modelwerk.errors import LocalModeError
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
    with fresh_mock_aws():
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


ALARMS = {
    "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "serving-alarms"}},
        "Errors": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmName": "churn-invocation-5xx", "AlarmDescription": "5xx errors",
            "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors", "Statistic": "Sum",
            "Dimensions": [{"Name": "EndpointName", "Value": "churn"}, {"Name": "VariantName", "Value": "AllTraffic"}],
            "Period": 60, "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 5,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": "Topic"}]}},
        "Latency": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "Namespace": "AWS/SageMaker", "MetricName": "ModelLatency", "ExtendedStatistic": "p99",
            "Period": 60, "EvaluationPeriods": 1, "Threshold": 500000, "ComparisonOperator": "GreaterThanThreshold"}},
        "ErrorRate": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmName": "churn-error-rate", "EvaluationPeriods": 2, "Threshold": 5,
            "ComparisonOperator": "GreaterThanThreshold",
            "Metrics": [{"Id": "rate", "Expression": "100 * errors / calls", "ReturnData": True},
                        {"Id": "errors", "ReturnData": False, "MetricStat": {"Period": 60, "Stat": "Sum", "Metric": {
                            "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors"}}},
                        {"Id": "calls", "ReturnData": False, "MetricStat": {"Period": 60, "Stat": "Sum", "Metric": {
                            "Namespace": "AWS/SageMaker", "MetricName": "Invocations"}}}]}},
        "Rollback": {"Type": "AWS::CloudWatch::CompositeAlarm", "Properties": {
            "AlarmName": "churn-rollback",
            "AlarmRule": {"Fn::Join": ["", ["ALARM(\"", {"Fn::GetAtt": ["Errors", "Arn"]}, "\") OR ALARM(\"",
                                            {"Fn::GetAtt": ["Latency", "Arn"]}, "\")"]]},
            "AlarmActions": [{"Ref": "Topic"}]}},
    },
}


@pytest.fixture
def alarm_stack(tmp_path):
    def write(template):
        path = tmp_path / "Dev-Serving.template.json"
        path.write_text(json.dumps(template))
        return StackArtifact(name="Dev-Serving", template_file=path, assets_file=None, account="123456789012",
                             region="eu-central-1", dependencies=())
    return write


@pytest.fixture(scope="module")
def served(embedded_aws):
    """A session against the embedded AWS, whose CloudWatch stores composite alarms (moto's in-process mock does not)."""
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-central-1")


@pytest.fixture
def served_client(embedded_aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", embedded_aws.endpoint_url)
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_metric_and_composite_alarms_are_put_through_the_api_with_their_names(served, served_client, alarm_stack):
    deployment = deploy_stack(served, alarm_stack(ALARMS))
    assert {lid: (r.via, r.physical_id) for lid, r in deployment.resources.items() if lid != "Topic"} == {
        "Errors": ("api", "churn-invocation-5xx"), "Latency": ("api", "Dev-Serving-Latency"),
        "ErrorRate": ("api", "churn-error-rate"), "Rollback": ("api", "churn-rollback")}
    cloudwatch = served.client("cloudwatch")
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    errors = alarms["churn-invocation-5xx"]
    assert errors == {**errors, "Statistic": "Sum", "Threshold": 5.0, "TreatMissingData": "notBreaching",
                      "AlarmActions": ["arn:aws:sns:eu-central-1:123456789012:serving-alarms"],
                      "AlarmDescription": "5xx errors"}
    assert alarms["Dev-Serving-Latency"]["ExtendedStatistic"] == "p99"
    assert [m["Id"] for m in alarms["churn-error-rate"]["Metrics"]] == ["rate", "errors", "calls"]
    (composite,) = cloudwatch.describe_alarms(AlarmNames=["churn-rollback"],
                                              AlarmTypes=["CompositeAlarm"])["CompositeAlarms"]
    assert composite["AlarmRule"] == (
        'ALARM("arn:aws:cloudwatch:eu-central-1:123456789012:alarm:churn-invocation-5xx") '
        'OR ALARM("arn:aws:cloudwatch:eu-central-1:123456789012:alarm:Dev-Serving-Latency")')
    assert composite["AlarmActions"] == ["arn:aws:sns:eu-central-1:123456789012:serving-alarms"]
    assert deployment.resources["Rollback"].attributes["Arn"] == composite["AlarmArn"]


def test_a_composite_alarm_rule_that_does_not_parse_fails_the_deployment(served, served_client, alarm_stack):
    broken = {"Resources": {"Rollback": {"Type": "AWS::CloudWatch::CompositeAlarm", "Properties": {
        "AlarmName": "broken", "AlarmRule": "ALARM(\"a\") AND"}}}}
    with pytest.raises(LocalModeError, match=r"Dev-Serving/Rollback: the composite alarm was refused"):
        deploy_stack(served, alarm_stack(broken))


IMAGE_BUILD = {
    "Resources": {
        "BuildRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "codebuild.amazonaws.com"}}]}}},
        "Build": {"Type": "AWS::CodeBuild::Project", "Properties": {
            "Name": "modelwerk-serving-image", "Description": "Builds the serving image",
            "Artifacts": {"Type": "NO_ARTIFACTS"}, "Cache": {"Type": "NO_CACHE"},
            "Source": {"Type": "S3", "Location": "assets/context.zip", "BuildSpec": "{\"version\": \"0.2\"}"},
            "Environment": {"Type": "LINUX_CONTAINER", "ComputeType": "BUILD_GENERAL1_SMALL", "PrivilegedMode": True,
                            "Image": "aws/codebuild/standard:7.0",
                            "EnvironmentVariables": [{"Name": "IMAGE_TAG", "Type": "PLAINTEXT", "Value": "src-1"}]},
            "ServiceRole": {"Fn::GetAtt": ["BuildRole", "Arn"]}, "TimeoutInMinutes": 60}},
        "Repository": {"Type": "AWS::ECR::Repository", "Properties": {
            "RepositoryName": "modelwerk/serving", "ImageTagMutability": "IMMUTABLE",
            "LifecyclePolicy": {"LifecyclePolicyText": json.dumps({"rules": [{
                "rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                                 "countNumber": 50}, "action": {"type": "expire"}}]})},
            "RepositoryPolicyText": {"Version": "2012-10-17", "Statement": [{
                "Sid": "WorkloadAccountsPull", "Effect": "Allow", "Action": ["ecr:BatchGetImage"],
                "Principal": {"AWS": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                                         ":iam::222222222222:root"]]}]}}]}}},
        "StartBuild": {"Type": "Custom::AWS", "Properties": {
            "ServiceToken": "arn:aws:lambda:eu-central-1:123456789012:function:provider",
            "Create": {"Fn::Join": ["", ["{\"service\":\"CodeBuild\",\"action\":\"startBuild\",\"parameters\":"
                                         "{\"projectName\":\"", {"Ref": "Build"}, "\"}}"]]}}},
    },
}


def test_a_codebuild_project_is_created_through_the_api_and_its_build_trigger_explained(aws, alarm_stack):
    deployment = deploy_stack(aws, alarm_stack(IMAGE_BUILD))
    build, start = deployment.resources["Build"], deployment.resources["StartBuild"]
    assert (build.via, build.physical_id) == ("api", "modelwerk-serving-image")
    [project] = aws.client("codebuild").batch_get_projects(names=["modelwerk-serving-image"])["projects"]
    assert project["environment"]["environmentVariables"] == [{"name": "IMAGE_TAG", "type": "PLAINTEXT",
                                                               "value": "src-1"}]
    assert project["source"]["buildspec"] == "{\"version\": \"0.2\"}"
    assert project["serviceRole"].startswith("arn:aws:iam::123456789012:role/")
    assert start.via == "not-emulated"
    assert start.note.startswith("calls CodeBuild:startBuild on deploy; not called locally")


def test_a_repositorys_policy_and_lifecycle_are_applied_where_moto_ignores_them(aws, alarm_stack):
    deployment = deploy_stack(aws, alarm_stack(IMAGE_BUILD))
    assert (deployment.resources["Repository"].via, deployment.resources["Repository"].physical_id) == (
        "cloudformation", "modelwerk/serving")
    ecr = aws.client("ecr")
    policy = json.loads(ecr.get_repository_policy(repositoryName="modelwerk/serving")["policyText"])
    assert policy["Statement"][0]["Principal"] == {"AWS": ["arn:aws:iam::222222222222:root"]}
    lifecycle = json.loads(ecr.get_lifecycle_policy(repositoryName="modelwerk/serving")["lifecyclePolicyText"])
    assert lifecycle["rules"][0]["selection"]["countNumber"] == 50


PROMOTION = {
    "Resources": {
        "SourceRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}}},
        "Source": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": "modelwerk-pump-health-promotion-source", "Runtime": "python3.12",
            "Handler": "handler.handler", "Code": {"ZipFile": "def handler(event, context):\n    return event\n"},
            "Role": {"Fn::GetAtt": ["SourceRole", "Arn"]},
            "Environment": {"Variables": {"PIPELINE_NAME": {"Ref": "Pipeline"}}}}},
        "Gate": {"Type": "AWS::CodeBuild::Project", "Properties": {
            "Name": "modelwerk-pump-health-promotion-gate", "Artifacts": {"Type": "CODEPIPELINE"},
            "Source": {"Type": "CODEPIPELINE", "BuildSpec": "buildspec.json"},
            "Environment": {"Type": "LINUX_CONTAINER", "ComputeType": "BUILD_GENERAL1_SMALL",
                            "Image": "aws/codebuild/standard:7.0"},
            "ServiceRole": {"Fn::GetAtt": ["SourceRole", "Arn"]}}},
        "Artifacts": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "promotion-artifacts"}},
        "Pipeline": {"Type": "AWS::CodePipeline::Pipeline", "Properties": {
            "Name": "modelwerk-pump-health-promotion", "RoleArn": {"Fn::GetAtt": ["PipelineRole", "Arn"]},
            "PipelineType": "V2", "ExecutionMode": "QUEUED", "RestartExecutionOnUpdate": False,
            "ArtifactStore": {"Type": "S3", "Location": {"Ref": "Artifacts"}},
            "Variables": [{"Name": "ModelPackageArn", "Description": "set at start"}],
            "Tags": [{"Key": "project", "Value": "modelwerk"}],
            "Stages": [
                {"Name": "Source", "Actions": [{
                    "Name": "PackageVersion", "RunOrder": 1, "OutputArtifacts": [{"Name": "Package"}],
                    "ActionTypeId": {"Category": "Source", "Owner": "AWS", "Provider": "S3", "Version": "1"},
                    "Configuration": {"S3Bucket": {"Ref": "Artifacts"}, "S3ObjectKey": "source.zip",
                                      "PollForSourceChanges": False}}]},
                {"Name": "QualityGate", "Actions": [{
                    "Name": "Gate", "RunOrder": 1, "InputArtifacts": [{"Name": "Package"}], "Namespace": "Gate",
                    "ActionTypeId": {"Category": "Build", "Owner": "AWS", "Provider": "CodeBuild", "Version": "1"},
                    "Configuration": {"ProjectName": {"Ref": "Gate"}}}]}]}},
        "PipelineRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "codepipeline.amazonaws.com"}}]}}},
        "ApprovalRule": {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
                             "detail": {"ModelApprovalStatus": ["Approved"]}}, "State": "ENABLED",
            "Targets": [{"Id": "Target0", "Arn": {"Fn::GetAtt": ["Source", "Arn"]}}]}},
        "Failures": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "modelwerk-promotion-failures"}},
        "FailureRule": {"Type": "AWS::Events::Rule", "Properties": {
            "Name": "promotion-failures",
            "EventPattern": {"source": ["aws.codepipeline"], "detail": {"state": ["FAILED"]}}, "State": "ENABLED",
            "Targets": [{"Id": "FailuresTopic", "Arn": {"Ref": "Failures"}}]}},
    },
}


def test_a_promotion_pipeline_is_created_as_codepipeline_stores_it_and_its_approval_rule_deployed(aws, alarm_stack):
    """The embedded CodePipeline runs what CreatePipeline stored: the structure in the API's shape (configuration
    values as text), the approval rule in EventBridge like any rule."""
    deployment = deploy_stack(aws, alarm_stack(PROMOTION))
    rule, pipeline, gate = (deployment.resources[k] for k in ("ApprovalRule", "Pipeline", "Gate"))
    assert rule.via == "cloudformation" and pipeline.via == "api" and gate.via == "api"
    stored = aws.client("codepipeline").get_pipeline(name="modelwerk-pump-health-promotion")["pipeline"]
    assert stored["pipelineType"] == "V2" and stored["executionMode"] == "QUEUED"
    assert stored["artifactStore"] == {"type": "S3", "location": "promotion-artifacts"}
    assert stored["variables"] == [{"name": "ModelPackageArn", "description": "set at start"}]
    source, build = (stage["actions"][0] for stage in stored["stages"])
    assert source["configuration"] == {"S3Bucket": "promotion-artifacts", "S3ObjectKey": "source.zip",
                                       "PollForSourceChanges": "false"}
    assert build["actionTypeId"] == {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"}
    assert build["namespace"] == "Gate" and build["inputArtifacts"] == [{"name": "Package"}]
    rules = {r["Name"] for r in aws.client("events").list_rules()["Rules"]}
    assert "promotion-failures" in rules and len(rules) == 2
    [project] = aws.client("codebuild").batch_get_projects(names=["modelwerk-pump-health-promotion-gate"])["projects"]
    assert project["source"]["type"] == "CODEPIPELINE"


def test_a_promotion_gates_latency_budget_is_raised_locally_to_the_shared_machines_floor():
    from modelwerk.local.deployer import _raise_gate_budget_to_local_floor

    action = {"name": "Gate", "actionTypeId": {"category": "Build", "provider": "CodeBuild"}, "configuration": {
        "EnvironmentVariables": json.dumps([{"name": "ENDPOINT", "value": "pump-health"},
                                            {"name": "BUDGET_MS", "value": "500"}])}}
    notes = _raise_gate_budget_to_local_floor(action)
    assert notes == ["Gate: latency budget 500 ms raised to 2000 ms locally"]
    assert json.loads(action["configuration"]["EnvironmentVariables"]) == [
        {"name": "ENDPOINT", "value": "pump-health"}, {"name": "BUDGET_MS", "value": "2000"}]
    lenient = {**action, "configuration": {"EnvironmentVariables": json.dumps([{"name": "BUDGET_MS",
                                                                               "value": "3000"}])}}
    assert _raise_gate_budget_to_local_floor(lenient) == []


def test_model_latency_alarms_fire_locally_only_above_the_shared_machines_floor():
    from modelwerk.local.deployer import _raise_to_local_latency_floor

    strict = {"AlarmName": "pump-health-latency", "Namespace": "AWS/SageMaker", "MetricName": "ModelLatency",
              "Threshold": 500_000.0}
    _raise_to_local_latency_floor(strict)
    assert strict["Threshold"] == 2_000_000.0
    lenient = {**strict, "Threshold": 3_000_000.0}
    _raise_to_local_latency_floor(lenient)
    assert lenient["Threshold"] == 3_000_000.0
    errors = {**strict, "MetricName": "Invocation5XXErrors", "Threshold": 1.0}
    _raise_to_local_latency_floor(errors)
    assert errors["Threshold"] == 1.0
