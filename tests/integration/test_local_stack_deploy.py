"""The CloudFormation deploy action's engine: an endpoint stack created and updated in a target account of the
embedded AWS, as CodePipeline's CREATE_UPDATE action does it.

The registry (the default account) holds a model package group with two versions whose models answer a constant (7
and 9), so a prediction says which version serves. The target account (staging) holds what the endpoint template
reads: its network SSM parameters, the bootstrap version and the rollback alarms. The template has the synthesized
endpoint template's shape (stacks/endpoint_stack.py). The tests run in order: a refused ARN, the creation, no
changes, the blue/green update, the rolled-back update.
"""

from __future__ import annotations

import threading
import time

import boto3
import numpy as np
import pytest
from serving_helpers import runtime_url, write_artifact
from sklearn.dummy import DummyClassifier

from modelwerk.local.stack_deploy import StackDeployFailed, deploy_stack_template, stack_record

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-stack-deploy")]

REGION = "eu-central-1"
REGISTRY, STAGING = "123456789012", "222222222222"
GROUP, ENDPOINT, STACK = "modelwerk-energy-forecast", "energy-forecast", "staging-endpoints-EnergyForecast"
ALARMS = [f"{ENDPOINT}-invocation-5xx", f"{ENDPOINT}-model-latency"]
SUBNETS = "/modelwerk/staging/network/subnet-ids"
SECURITY_GROUP = "/modelwerk/staging/network/security-group-id"
TEMPLATE_TAGS = [{"Key": "environment", "Value": "staging"}]
ROW = b"1.0,2.0,3.0\n"


def _template() -> dict:
    """The synthesized endpoint template's shape, with short blue/green waits."""
    subnets, group = "SsmParameterValueSubnetIds", "SsmParameterValueSecurityGroupId"
    return {
        "Parameters": {
            "ModelPackageArn": {
                "Type": "String",
                "AllowedPattern": rf"^arn:aws[a-z-]*:sagemaker:{REGION}:{REGISTRY}:model-package/{GROUP}/[0-9]+$",
                "ConstraintDescription": "a version of the registry's energy-forecast model package group"},
            subnets: {"Type": "AWS::SSM::Parameter::Value<List<String>>", "Default": SUBNETS},
            group: {"Type": "AWS::SSM::Parameter::Value<String>", "Default": SECURITY_GROUP},
            "BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>",
                                 "Default": "/cdk-bootstrap/hnb659fds/version"}},
        "Resources": {
            "EndpointModel0F230181": {"Type": "AWS::SageMaker::Model", "Properties": {
                "Containers": [{"ModelPackageName": {"Ref": "ModelPackageArn"}}],
                "EnableNetworkIsolation": True,
                "ExecutionRoleArn": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                                       f":iam::{STAGING}:role/modelwerk-staging-endpoint"]]},
                "Tags": TEMPLATE_TAGS,
                "VpcConfig": {"SecurityGroupIds": [{"Ref": group}], "Subnets": {"Ref": subnets}}}},
            "EndpointConfig24AD0A28": {"Type": "AWS::SageMaker::EndpointConfig", "Properties": {
                "ProductionVariants": [{"InitialInstanceCount": 1, "InitialVariantWeight": 1,
                                        "InstanceType": "ml.m5.large", "VariantName": "AllTraffic",
                                        "ModelName": {"Fn::GetAtt": ["EndpointModel0F230181", "ModelName"]}}],
                "Tags": TEMPLATE_TAGS}},
            "Endpoint8024A810": {"Type": "AWS::SageMaker::Endpoint", "Properties": {
                "DeploymentConfig": {
                    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in ALARMS]},
                    "BlueGreenUpdatePolicy": {"TerminationWaitInSeconds": 0, "TrafficRoutingConfiguration": {
                        "Type": "CANARY", "WaitIntervalInSeconds": 3,
                        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}}},
                "EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig24AD0A28", "EndpointConfigName"]},
                "EndpointName": ENDPOINT,
                "Tags": TEMPLATE_TAGS}},
            "EndpointScalableTarget3226CE36": {"Type": "AWS::ApplicationAutoScaling::ScalableTarget",
                                               "DependsOn": ["Endpoint8024A810"], "Properties": {
                "MaxCapacity": 2, "MinCapacity": 1, "ResourceId": f"endpoint/{ENDPOINT}/variant/AllTraffic",
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "ServiceNamespace": "sagemaker",
                "Tags": TEMPLATE_TAGS}},
            "EndpointInvocationsPerInstanceB44CB8B7": {"Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
                                                       "Properties": {
                "PolicyName": f"{ENDPOINT}-invocations-per-instance", "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": {"Ref": "EndpointScalableTarget3226CE36"},
                "TargetTrackingScalingPolicyConfiguration": {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                    "ScaleInCooldown": 300, "ScaleOutCooldown": 60, "TargetValue": 1000}}}},
        "Outputs": {"EndpointName": {"Value": {"Fn::GetAtt": ["Endpoint8024A810", "EndpointName"]}}},
    }


def _session(embedded_aws, account: str) -> boto3.Session:
    issued = embedded_aws.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/deploy",
                                                    RoleSessionName="test")["Credentials"]
    return boto3.Session(aws_access_key_id=issued["AccessKeyId"], aws_secret_access_key=issued["SecretAccessKey"],
                         aws_session_token=issued["SessionToken"], region_name=REGION)


@pytest.fixture(scope="module")
def versions(embedded_aws, tmp_path_factory) -> list[str]:
    """Two versions of the registry's group, serving the constants 7 and 9."""
    s3, sagemaker = embedded_aws.client("s3"), embedded_aws.client("sagemaker")
    s3.create_bucket(Bucket="registry-models", CreateBucketConfiguration={"LocationConstraint": REGION})
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    arns = []
    for value in (7, 9):
        estimator = DummyClassifier(strategy="constant", constant=value).fit(np.zeros((4, 3)), [7, 7, 9, 9])
        folder = write_artifact(tmp_path_factory.mktemp(f"m{value}"), estimator,
                                [("a", "double"), ("b", "double"), ("c", "double")], archive=True)
        s3.put_object(Bucket="registry-models", Key=f"m{value}/model.tar.gz",
                      Body=(folder / "model.tar.gz").read_bytes())
        arns.append(sagemaker.create_model_package(
            ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "modelwerk-serving:latest",
                                                    "ModelDataUrl": f"s3://registry-models/m{value}/model.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"])
    return arns


class Target:
    """The staging account: its session, clients, the stack records and the deploy action's call."""

    def __init__(self, embedded_aws, records):
        self.url, self.records = embedded_aws.endpoint_url, records
        self.session = _session(embedded_aws, STAGING)
        self.runtime_url = runtime_url(self.url)

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.url)

    def deploy(self, arn: str, template: dict | None = None):
        return deploy_stack_template(self.session, stack_name=STACK, template=template or _template(),
                                     parameters={"ModelPackageArn": arn}, tags={"project": "modelwerk"},
                                     records=self.records, endpoint_url=self.url)

    def predict(self) -> str:
        runtime = self.session.client("sagemaker-runtime", endpoint_url=self.runtime_url)
        return runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=ROW, ContentType="text/csv")["Body"].read() \
            .decode().strip()

    def models(self) -> set[str]:
        return {m["ModelName"] for m in self.client("sagemaker").list_models()["Models"]}

    def configs(self) -> set[str]:
        return {c["EndpointConfigName"] for c in self.client("sagemaker").list_endpoint_configs()["EndpointConfigs"]}


@pytest.fixture(scope="module")
def staging(embedded_aws, versions, tmp_path_factory) -> Target:
    target = Target(embedded_aws, tmp_path_factory.mktemp("stack-records"))
    ssm = target.client("ssm")
    ssm.put_parameter(Name=SUBNETS, Value="subnet-0a,subnet-0b", Type="StringList")
    ssm.put_parameter(Name=SECURITY_GROUP, Value="sg-0c", Type="String")
    ssm.put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String")
    for name in ALARMS:
        target.client("cloudwatch").put_metric_alarm(
            AlarmName=name, Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors", Statistic="Sum", Period=60,
            EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
            TreatMissingData="notBreaching", Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}])
    return target


def test_an_arn_outside_the_registry_group_is_refused_and_nothing_is_created(staging, versions):
    foreign = versions[0].replace(GROUP, "modelwerk-pump-health")
    with pytest.raises(StackDeployFailed, match="Parameter ModelPackageArn failed to satisfy constraint: a version "
                                                "of the registry's energy-forecast model package group"):
        staging.deploy(foreign)
    assert staging.models() == set() and stack_record(staging.records, STACK) is None


def test_the_stack_is_created_and_its_endpoint_serves_the_version(staging, versions):
    result = staging.deploy(versions[0])
    assert result.status == "CREATE_COMPLETE" and result.outputs == {"EndpointName": ENDPOINT}
    sagemaker = staging.client("sagemaker")
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"
    assert staging.predict() == "7"
    (model,) = staging.models()
    assert model.startswith("EndpointModel0F230181-")
    described = sagemaker.describe_model(ModelName=model)
    assert described["Containers"][0]["ModelPackageName"] == versions[0]
    assert described["VpcConfig"]["Subnets"] == ["subnet-0a", "subnet-0b"]
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=described["ModelArn"])["Tags"]}
    assert tags == {"project": "modelwerk", "environment": "staging"}
    scaling = staging.client("application-autoscaling")
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["MaxCapacity"]) == (f"endpoint/{ENDPOINT}/variant/AllTraffic", 2)
    (policy,) = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["ResourceId"] == target["ResourceId"]


def test_the_same_template_and_parameters_again_change_nothing(staging, versions):
    before = stack_record(staging.records, STACK)
    result = staging.deploy(versions[0])
    assert result.status == "NO_CHANGES"
    assert result.stack_id == before["stack_id"] and stack_record(staging.records, STACK) == before


def test_another_version_is_deployed_blue_green_and_the_old_model_and_config_deleted(staging, versions):
    old_models, old_configs = staging.models(), staging.configs()
    result = staging.deploy(versions[1])
    assert result.status == "UPDATE_COMPLETE"
    assert staging.predict() == "9"
    described = staging.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert described["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] \
        == "CANARY"
    assert staging.models().isdisjoint(old_models) and len(staging.models()) == 1
    assert staging.configs().isdisjoint(old_configs) and staging.configs() == {described["EndpointConfigName"]}


def test_an_update_rolled_back_by_its_alarm_fails_and_leaves_the_stack_as_it_was(staging, versions):
    before, models, configs = stack_record(staging.records, STACK), staging.models(), staging.configs()
    sagemaker, cloudwatch = staging.client("sagemaker"), staging.client("cloudwatch")
    outcome: dict = {}

    def deploy() -> None:
        try:
            staging.deploy(versions[0])
        except StackDeployFailed as error:
            outcome["error"] = error

    worker = threading.Thread(target=deploy)
    worker.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pending = sagemaker.describe_endpoint(EndpointName=ENDPOINT).get("PendingDeploymentSummary")
        if pending and pending["ProductionVariants"][0].get("VariantStatus", [{}])[0].get("Status") == "Baking":
            break
        time.sleep(0.25)
    cloudwatch.set_alarm_state(AlarmName=ALARMS[1], StateValue="ALARM", StateReason="forced by the test")
    worker.join(timeout=180)
    assert "error" in outcome
    assert ALARMS[1] in str(outcome["error"]) and "UPDATE_ROLLBACK_COMPLETE" in str(outcome["error"])
    assert staging.predict() == "9"
    assert (staging.models(), staging.configs()) == (models, configs)
    assert stack_record(staging.records, STACK) == before
