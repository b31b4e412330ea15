"""A serverless endpoint (dev's ``energy-forecast-serverless``): a ServerlessConfig variant without instances, auto
scaling, data capture, VPC or network isolation; its serving alarms stay, and it has no drift monitor and no
monitoring alarms. The other endpoints are as they were."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from modelwerk import naming

pytestmark = pytest.mark.slow

SERVERLESS = "energy-forecast-serverless"


def _one(template, resource_type: str) -> dict:
    (resource,) = template.find_resources(resource_type).values()
    return resource["Properties"]


@pytest.fixture(scope="module")
def serverless(synthesized):
    return synthesized.endpoint_template("dev", SERVERLESS)


def test_the_variant_has_a_serverless_config_and_no_instances_or_capture(serverless, config):
    settings = config.environment("dev").endpoints[SERVERLESS].serverless
    endpoint_config = _one(serverless, "AWS::SageMaker::EndpointConfig")
    (variant,) = endpoint_config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": settings.memory_mb,
                                           "MaxConcurrency": settings.max_concurrency} == {"MemorySizeInMB": 2048,
                                                                                            "MaxConcurrency": 5}
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    assert "DataCaptureConfig" not in endpoint_config and "KmsKeyId" in endpoint_config
    model = _one(serverless, "AWS::SageMaker::Model")
    assert "VpcConfig" not in model and not model.get("EnableNetworkIsolation", False)
    assert [s["id"] for s in model_metadata(serverless)["checkov"]["skip"]] == ["CKV_AWS_370"]


def model_metadata(template) -> dict:
    (resource,) = template.find_resources("AWS::SageMaker::Model").values()
    return resource["Metadata"]


def test_it_has_no_auto_scaling_and_deploys_blue_green_on_its_serving_alarms(serverless):
    serverless.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)
    serverless.resource_count_is("AWS::ApplicationAutoScaling::ScalingPolicy", 0)
    serverless.has_resource_properties("AWS::SageMaker::Endpoint", {
        "EndpointName": SERVERLESS,
        "DeploymentConfig": {"AutoRollbackConfiguration": {"Alarms": [
            {"AlarmName": naming.endpoint_alarm_name(SERVERLESS, "5xx")},
            {"AlarmName": naming.endpoint_alarm_name(SERVERLESS, "latency")}]},
            "BlueGreenUpdatePolicy": Match.any_value()}})
    assert "SsmParameterValue" not in json.dumps(serverless.to_json().get("Parameters", {}))


def test_its_serving_alarms_stay_and_it_has_no_drift_monitor_or_monitoring_alarms(synthesized):
    serving = synthesized.template("dev", "Serving")
    names = {a["Properties"]["AlarmName"] for a in serving.find_resources("AWS::CloudWatch::Alarm").values()}
    assert {naming.endpoint_alarm_name(SERVERLESS, k) for k in ("5xx", "latency")} <= names
    monitoring = json.dumps(synthesized.template("dev", "Monitoring").to_json())
    assert SERVERLESS not in monitoring
    assert naming.monitoring_alarm_name("energy-forecast", "no-data") in monitoring


def test_the_other_endpoints_keep_instances_capture_scaling_and_vpc(synthesized, config):
    for name, endpoint in config.environment("dev").endpoints.items():
        if name == SERVERLESS:
            continue
        template = synthesized.endpoint_template("dev", name)
        (variant,) = _one(template, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
        assert variant["InstanceType"] == endpoint.instance_type and "ServerlessConfig" not in variant
        assert _one(template, "AWS::SageMaker::EndpointConfig")["DataCaptureConfig"]["EnableCapture"] is True
        model = _one(template, "AWS::SageMaker::Model")
        assert "VpcConfig" in model and model["EnableNetworkIsolation"] is True
        template.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 1)
