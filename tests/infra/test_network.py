"""NetworkStack: isolated subnets only, flow logs, and an endpoint for every AWS service the workloads call."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from modelwerk import settings

pytestmark = pytest.mark.slow

WORKLOADS = [e.name for e in settings.load().workloads]

INTERFACE_SERVICES = (
    "sagemaker.api",
    "sagemaker.runtime",
    "sts",
    "kms",
    "monitoring",
    "logs",
    "ecr.api",
    "ecr.dkr",
    "glue",
    "secretsmanager",
    "ssm",
)


@pytest.mark.parametrize("env", WORKLOADS)
def test_vpc_has_no_route_to_the_internet(synthesized, env):
    template = synthesized.template(env, "Network")
    template.resource_count_is("AWS::EC2::InternetGateway", 0)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::EgressOnlyInternetGateway", 0)
    template.resource_count_is("AWS::EC2::Route", 0)
    assert not template.find_resources("AWS::EC2::Subnet", {"Properties": {"MapPublicIpOnLaunch": True}})


@pytest.mark.parametrize("env", WORKLOADS)
def test_vpc_uses_the_configured_cidr_and_availability_zones(synthesized, config, env):
    environment = config.environment(env)
    template = synthesized.template(env, "Network")
    template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": environment.vpc_cidr})
    subnets = template.find_resources("AWS::EC2::Subnet")
    assert sorted(s["Properties"]["AvailabilityZone"] for s in subnets.values()) == sorted(
        environment.availability_zones
    )


def test_flow_logs_go_to_a_kms_encrypted_log_group(dev_network):
    dev_network.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"},
    )
    dev_network.has_resource_properties("AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value()})
    dev_network.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_s3_is_reached_through_a_gateway_endpoint(dev_network):
    dev_network.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {"VpcEndpointType": "Gateway", "ServiceName": Match.object_like({"Fn::Join": Match.any_value()})},
    )


@pytest.mark.parametrize("service", INTERFACE_SERVICES)
def test_interface_endpoint_exists_with_private_dns(dev_network, service):
    dev_network.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "VpcEndpointType": "Interface",
            "ServiceName": f"com.amazonaws.eu-central-1.{service}",
            "PrivateDnsEnabled": True,
        },
    )


def test_endpoints_accept_https_from_the_vpc_only(dev_network, config):
    dev_network.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "SecurityGroupIngress": [
                Match.object_like(
                    {"CidrIp": config.environment("dev").vpc_cidr, "FromPort": 443, "ToPort": 443, "IpProtocol": "tcp"}
                )
            ]
        },
    )
