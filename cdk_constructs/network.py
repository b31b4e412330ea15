"""A VPC with no route to the internet: AWS services are reached through VPC endpoints only."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_constructs.encryption import allow_log_group_encryption, limit_grants_to_aws_services

#: Interface endpoints the workloads need (SageMaker, STS, KMS, CloudWatch, ECR, Glue, Secrets Manager, SSM,
#: CodeArtifact).
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "CloudWatchMonitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "CloudWatchLogs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Glue": ec2.InterfaceVpcEndpointAwsService.GLUE,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    # The package mirror (cdk_constructs.package_mirror): its API (tokens) and its repositories (pip's index).
    "CodeArtifactApi": ec2.InterfaceVpcEndpointAwsService.CODEARTIFACT_API,
    "CodeArtifactRepositories": ec2.InterfaceVpcEndpointAwsService.CODEARTIFACT_REPOSITORIES,
}


class PrivateNetwork(Construct):
    """Private isolated subnets only (no internet gateway, no NAT), flow logs, and endpoints for every AWS service used.

    ``vpc`` and ``workload_security_group`` (for Lambdas, processing and training jobs, endpoints) are what other
    stacks attach to.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cidr: str,
        availability_zones: Sequence[str],
        flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        destroy_on_removal: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.DESTROY if destroy_on_removal else RemovalPolicy.RETAIN
        isolated = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            availability_zones=list(availability_zones),
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=20)
            ],
        )

        self.flow_log_key = kms.Key(
            self,
            "FlowLogKey",
            description="Encrypts the VPC flow log group",
            enable_key_rotation=True,
            removal_policy=removal,
        )
        limit_grants_to_aws_services(self.flow_log_key)
        allow_log_group_encryption(self.flow_log_key)
        self.flow_log_group = logs.LogGroup(
            self,
            "FlowLogGroup",
            encryption_key=self.flow_log_key,
            retention=flow_log_retention,
            removal_policy=removal,
        )
        self.flow_log = self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
            max_aggregation_interval=ec2.FlowLogMaxAggregationInterval.ONE_MINUTE,
        )

        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[isolated]
        )
        # One security group for all interface endpoints: HTTPS from the VPC's CIDR, written as the literal from
        # cdk.json (the default rule references the VPC's CidrBlock attribute, which cdk-nag cannot evaluate).
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface VPC endpoints: HTTPS from inside the VPC",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "HTTPS from the VPC")
        self.interface_endpoints = {
            name: self.vpc.add_interface_endpoint(
                f"{name}Endpoint",
                service=service,
                subnets=isolated,
                private_dns_enabled=True,
                open=False,
                security_groups=[self.endpoint_security_group],
            )
            for name, service in INTERFACE_ENDPOINTS.items()
        }

        self.workload_security_group = ec2.SecurityGroup(
            self,
            "WorkloadSecurityGroup",
            vpc=self.vpc,
            description="Workloads in the isolated subnets (Lambdas, SageMaker jobs and endpoints)",
            # Isolated subnets have no route out: outbound traffic can only reach the VPC endpoints.
            allow_all_outbound=True,
        )
