"""Endpoints: their settings in cdk.json, and one stack per configured endpoint in each environment's endpoints stage.

A single-model endpoint serves the registered version its ``ModelPackageArn`` parameter names; a multi-model endpoint
serves the models under its prefix with the serving image. Both capture requests under the serving key, deploy
blue/green rolling back on the alarms the serving stack deployed, and scale on invocations per instance.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from cdk_constructs.ids import pascal
from cdk_constructs.model_endpoint import ModelEndpoint, ModelEndpointProps, maximum_execution_seconds
from modelwerk import naming, settings
from modelwerk.errors import ConfigurationError
from test_serving import built_tag

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
SINGLE = [("dev", "pump-health"), ("dev", "energy-forecast"), ("staging", "pump-health"),
          ("staging", "energy-forecast"), ("prod", "pump-health"), ("prod", "energy-forecast")]


def parse(**endpoints) -> settings.PlatformConfig:
    """cdk.json's context with dev's endpoints replaced."""
    context = copy.deepcopy(CONTEXT)
    context[settings.ENVIRONMENTS_KEY]["dev"]["endpoints"] = endpoints
    return settings.parse_context(context, ROOT)


def one(template, resource_type: str) -> dict:
    (resource,) = template.find_resources(resource_type).values()
    return resource["Properties"]


# -- settings ---------------------------------------------------------------------------------------------------------


def test_cdk_json_declares_the_endpoints_of_each_environment_with_documented_defaults():
    config = settings.parse_context(CONTEXT, ROOT)
    assert list(config.environment("dev").endpoints) == ["pump-health", "pump-fleet", "energy-forecast",
                                                          "energy-forecast-serverless"]
    assert list(config.environment("staging").endpoints) == ["pump-health", "energy-forecast"]
    assert list(config.environment("prod").endpoints) == ["pump-health", "energy-forecast"]
    assert config.registry.endpoints == {}
    fleet = config.environment("dev").endpoints["pump-fleet"]
    assert (fleet.name, fleet.use_case, fleet.multi_model) == ("pump-fleet", "pump-health", True)
    single = config.environment("prod").endpoints["pump-health"]
    assert single == settings.EndpointSettings(
        name="pump-health", use_case="pump-health", multi_model=False, instance_type="ml.m5.large",
        initial_instance_count=1, min_instances=1, max_instances=2, invocations_per_instance=1000,
        capture_sampling_percent=100, traffic_routing="canary", canary_percent=10, wait_seconds=300,
        bake_seconds=600, max_latency_ms=500, max_5xx_errors=1)


@pytest.mark.parametrize("endpoints,message", [
    pytest.param({"pump-health": {"use_case": "pump-health", "instance": "ml.m5.large"}},
                 r"unknown setting\(s\) \['instance'\]", id="unknown-key"),
    pytest.param({"pump-health": {"use_case": "boilers"}}, "use case 'boilers'.*declared", id="unknown-use-case"),
    pytest.param({"pump-health": {}}, "needs a 'use_case'", id="no-use-case"),
    pytest.param({"Pump_Health": {"use_case": "pump-health"}}, "not a SageMaker endpoint name", id="bad-name"),
    pytest.param({"p" * 64: {"use_case": "pump-health"}}, "not a SageMaker endpoint name", id="name-too-long"),
    pytest.param({"e": {"use_case": "pump-health", "traffic_routing": "blue-green"}}, "traffic_routing",
                 id="routing"),
    pytest.param({"e": {"use_case": "pump-health", "canary_percent": 60}}, "canary_percent must be between 1 and 50",
                 id="canary-too-big"),
    pytest.param({"e": {"use_case": "pump-health", "traffic_routing": "linear", "canary_percent": 5}},
                 "canary_percent must be between 10 and 50", id="linear-step-too-small"),
    pytest.param({"e": {"use_case": "pump-health", "min_instances": 3, "max_instances": 2}},
                 "max_instances must be at least 3", id="bounds"),
    pytest.param({"e": {"use_case": "pump-health", "initial_instance_count": 4}},
                 "initial_instance_count must be between 1 and 2", id="initial-outside-bounds"),
    pytest.param({"e": {"use_case": "pump-health", "capture_sampling_percent": 101}}, "capture_sampling_percent",
                 id="sampling"),
    pytest.param({"e": {"use_case": "pump-health", "wait_seconds": 3601}}, "wait_seconds", id="wait"),
    pytest.param({"e": {"use_case": "pump-health", "multi_model": "yes"}}, "multi_model must be true or false",
                 id="multi-model-type"),
    pytest.param({"e": {"use_case": "pump-health", "max_latency_ms": True}}, "max_latency_ms must be a whole number",
                 id="bool-is-not-a-number"),
    pytest.param({"e": {"use_case": "pump-health", "instance_type": "m5.large"}}, "not a SageMaker instance type",
                 id="instance-type"),
    pytest.param({"e": {"use_case": "pump-health", "instance_type": "ml.g4dn.xlarge"}}, "local NVMe storage",
                 id="instance-storage"),
    pytest.param({"e": "pump-health"}, "must be an object of settings", id="not-an-object"),
])
def test_bad_endpoint_settings_are_refused_with_the_reason(endpoints, message):
    with pytest.raises(ConfigurationError, match=message):
        parse(**endpoints)


def test_only_a_workload_environment_hosts_endpoints():
    context = copy.deepcopy(CONTEXT)
    context[settings.ENVIRONMENTS_KEY]["registry"]["endpoints"] = {"pump-health": {"use_case": "pump-health"}}
    with pytest.raises(ConfigurationError, match="only a workload environment hosts endpoints"):
        settings.parse_context(context, ROOT)


def test_an_environment_without_endpoints_has_none():
    context = copy.deepcopy(CONTEXT)
    del context[settings.ENVIRONMENTS_KEY]["staging"]["endpoints"]
    assert settings.parse_context(context, ROOT).environment("staging").endpoints == {}


# -- the construct on its own (no app, no nag) ------------------------------------------------------------------------


def endpoint_template(**overrides) -> Template:
    values = dict(endpoint_name="e", subnet_ids=["subnet-1", "subnet-2"], security_group_ids=["sg-1"],
                  capture_uri="s3://bucket/capture", rollback_alarm_names=["e-invocation-5xx", "e-model-latency"],
                  model_package_arn="arn:aws:sagemaker:eu-central-1:111111111111:model-package/g/1")
    values.update(overrides)
    stack = Stack(App(), "S")
    ModelEndpoint(stack, "Endpoint", props=ModelEndpointProps(**values),
                  role=iam.Role.from_role_name(stack, "Role", "r", mutable=False),
                  key=kms.Alias.from_alias_name(stack, "Key", "alias/k"))
    return Template.from_stack(stack)


def test_linear_routing_shifts_in_steps_and_allows_time_for_every_step():
    template = endpoint_template(traffic_routing="linear", canary_percent=25, wait_seconds=120, bake_seconds=60)
    policy = one(template, "AWS::SageMaker::Endpoint")["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR", "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25}, "WaitIntervalInSeconds": 120}
    assert policy["MaximumExecutionTimeoutInSeconds"] == 1800 + 4 * 120 + 60
    assert policy["TerminationWaitInSeconds"] == 60


def test_all_at_once_routing_has_no_step_size():
    template = endpoint_template(traffic_routing="all_at_once", wait_seconds=0, bake_seconds=0)
    policy = one(template, "AWS::SageMaker::Endpoint")["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    assert policy["MaximumExecutionTimeoutInSeconds"] == 1800


def test_capture_at_zero_percent_is_switched_off():
    template = endpoint_template(capture_sampling_percent=0)
    capture = one(template, "AWS::SageMaker::EndpointConfig")["DataCaptureConfig"]
    assert capture["EnableCapture"] is False and capture["InitialSamplingPercentage"] == 0


@pytest.mark.parametrize("overrides,message", [
    pytest.param({"traffic_routing": "linear", "canary_percent": 10, "wait_seconds": 3600}, "28800 s limit",
                 id="deployment-too-long"),
    pytest.param({"image_uri": "i", "model_data_url": "s3://b/models/e/"}, "not both", id="both-kinds"),
    pytest.param({"model_package_arn": None, "image_uri": "i", "model_data_url": "s3://b/models/e"},
                 "ending in '/'", id="prefix"),
    pytest.param({"rollback_alarm_names": []}, "alarms it rolls back on", id="no-alarms"),
])
def test_the_construct_refuses_impossible_endpoints(overrides, message):
    with pytest.raises(ValueError, match=message):
        endpoint_template(**overrides)


def test_maximum_execution_time_never_falls_below_sagemakers_minimum():
    assert maximum_execution_seconds("canary", 10, 0, 0) >= 600


# -- the synthesized endpoints stages ---------------------------------------------------------------------------------


def test_each_environment_with_endpoints_has_an_endpoints_stage_apart_from_its_own(synthesized, config):
    for environment in config.workloads:
        stage = synthesized.app.node.find_child(f"{environment.name}-endpoints")
        stacks = {child.node.id for child in stage.node.children if isinstance(child, Stack)}
        assert stacks == {pascal(name) for name in environment.endpoints}
        own = synthesized.app.node.find_child({"dev": "Dev", "staging": "Staging", "prod": "Prod"}[environment.name])
        for child in own.node.children:
            if isinstance(child, Stack):
                assert not Template.from_stack(child).find_resources("AWS::SageMaker::Endpoint"), child.node.id


@pytest.mark.parametrize("env,endpoint", SINGLE)
def test_a_single_model_endpoint_serves_the_registered_version_its_parameter_names(synthesized, config, env,
                                                                                       endpoint):
    template = synthesized.endpoint_template(env, endpoint)
    settings_ = config.environment(env).endpoints[endpoint]
    parameter = template.to_json()["Parameters"]["ModelPackageArn"]
    assert parameter["Type"] == "String" and "Default" not in parameter
    pattern = re.compile(parameter["AllowedPattern"])
    registry = config.registry.account
    group = naming.model_package_group_name(config.project, settings_.use_case)
    assert pattern.match(f"arn:aws:sagemaker:eu-central-1:{registry}:model-package/{group}/12")
    for wrong in (f"arn:aws:sagemaker:eu-central-1:999999999999:model-package/{group}/12",
                  f"arn:aws:sagemaker:us-east-1:{registry}:model-package/{group}/12",
                  f"arn:aws:sagemaker:eu-central-1:{registry}:model-package/modelwerk-other/12",
                  f"arn:aws:sagemaker:eu-central-1:{registry}:model-package-group/{group}"):
        assert not pattern.match(wrong), wrong
    model = one(template, "AWS::SageMaker::Model")
    assert model["Containers"] == [{"ModelPackageName": {"Ref": "ModelPackageArn"}}]
    assert model["EnableNetworkIsolation"] is True
    assert json.dumps(model["ExecutionRoleArn"]).endswith(
        f':iam::{config.environment(env).account}:role/{naming.endpoint_role_name(config.project, env)}"]]}}')


@pytest.mark.parametrize("env,endpoint", [*SINGLE, ("dev", "pump-fleet")])
def test_endpoints_attach_to_the_network_the_serving_stack_publishes(synthesized, env, endpoint):
    template = synthesized.endpoint_template(env, endpoint)
    parameters = template.to_json()["Parameters"]
    vpc = one(template, "AWS::SageMaker::Model")["VpcConfig"]
    subnets = parameters[vpc["Subnets"]["Ref"]]
    (group,) = vpc["SecurityGroupIds"]
    security_group = parameters[group["Ref"]]
    assert subnets["Type"] == "AWS::SSM::Parameter::Value<List<String>>"
    assert security_group["Type"] == "AWS::SSM::Parameter::Value<String>"
    published = {p["Properties"]["Name"]: p["Properties"]["Type"]
                 for p in synthesized.template(env, "Serving").find_resources("AWS::SSM::Parameter").values()}
    assert published[subnets["Default"]] == "StringList"
    assert published[security_group["Default"]] == "String"


@pytest.mark.parametrize("env,endpoint", [*SINGLE, ("dev", "pump-fleet")])
def test_data_capture_and_volumes_are_encrypted_with_the_serving_key(synthesized, config, env, endpoint):
    environment = config.environment(env)
    template = synthesized.endpoint_template(env, endpoint)
    endpoint_config = one(template, "AWS::SageMaker::EndpointConfig")
    alias = naming.serving_key_alias(config.project, env)
    bucket = naming.bucket_name(config.project, env, "serving", environment.account, environment.region)
    assert endpoint_config["KmsKeyId"] == alias
    assert endpoint_config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": environment.endpoints[endpoint].capture_sampling_percent,
        "DestinationS3Uri": f"s3://{bucket}/capture",
        "KmsKeyId": alias,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"],
                                     "JsonContentTypes": ["application/json", "application/jsonlines"]},
    }
    (variant,) = endpoint_config["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["InstanceType"] == environment.endpoints[endpoint].instance_type
    aliases = {a["Properties"]["AliasName"]
               for a in synthesized.template(env, "Serving").find_resources("AWS::KMS::Alias").values()}
    assert alias in aliases


@pytest.mark.parametrize("env,endpoint", [*SINGLE, ("dev", "pump-fleet")])
def test_deployments_are_blue_green_and_roll_back_on_the_serving_stacks_alarms(synthesized, config, env, endpoint):
    settings_ = config.environment(env).endpoints[endpoint]
    template = synthesized.endpoint_template(env, endpoint)
    resource = one(template, "AWS::SageMaker::Endpoint")
    assert resource["EndpointName"] == endpoint
    deployment = resource["DeploymentConfig"]
    policy = deployment["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": settings_.canary_percent},
        "WaitIntervalInSeconds": settings_.wait_seconds}
    assert policy["TerminationWaitInSeconds"] == settings_.bake_seconds
    assert 600 <= policy["MaximumExecutionTimeoutInSeconds"] <= 28800
    assert policy["MaximumExecutionTimeoutInSeconds"] >= settings_.wait_seconds + settings_.bake_seconds
    names = [a["AlarmName"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]]
    deployed = {a["Properties"]["AlarmName"]: a["Properties"]
                for a in synthesized.template(env, "Serving").find_resources("AWS::CloudWatch::Alarm").values()}
    assert sorted(names) == sorted([f"{endpoint}-invocation-5xx", f"{endpoint}-model-latency"])
    for name in names:
        assert {"Name": "EndpointName", "Value": endpoint} in deployed[name]["Dimensions"]


@pytest.mark.parametrize("env,endpoint", [*SINGLE, ("dev", "pump-fleet")])
def test_the_variant_scales_on_invocations_per_instance(synthesized, config, env, endpoint):
    settings_ = config.environment(env).endpoints[endpoint]
    template = synthesized.endpoint_template(env, endpoint)
    targets = template.find_resources("AWS::ApplicationAutoScaling::ScalableTarget")
    ((target_id, target),) = targets.items()
    assert {k: v for k, v in target["Properties"].items() if k != "Tags"} == {
        "ServiceNamespace": "sagemaker", "ResourceId": f"endpoint/{endpoint}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": settings_.min_instances, "MaxCapacity": settings_.max_instances}
    endpoint_id = next(iter(template.find_resources("AWS::SageMaker::Endpoint")))
    assert endpoint_id in target["DependsOn"]  # the resource id names the endpoint, which must exist first
    policy = one(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == {"Ref": target_id}
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == settings_.invocations_per_instance
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}


def test_the_multi_model_endpoint_serves_its_prefix_with_the_serving_image_and_takes_no_version(synthesized,
                                                                                                   registry, config):
    dev = config.environment("dev")
    template = synthesized.endpoint_template("dev", "pump-fleet")
    assert "ModelPackageArn" not in template.to_json().get("Parameters", {})
    model = one(template, "AWS::SageMaker::Model")
    bucket = naming.bucket_name(config.project, "dev", "serving", dev.account, dev.region)
    assert model["Containers"] == [{
        "Mode": "MultiModel",
        "Image": naming.serving_image_uri(config.registry.account, config.registry.region, config.project,
                                          built_tag(registry)),
        "ModelDataUrl": f"s3://{bucket}/{naming.multi_model_prefix('pump-fleet')}",
        "Environment": {"SAGEMAKER_MULTI_MODEL": "true"},
    }]
