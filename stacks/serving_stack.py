"""ServingStack: what an environment's endpoints stand on, deployed with the environment: the serving bucket and key,
the endpoints' execution role, their rollback alarms, and the parameters the endpoint stacks and the library read."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk_constructs.ids import pascal
from cdk_constructs.parameters import PlatformParameters
from cdk_constructs.serving_alarms import EndpointAlarms, EndpointAlarmsProps
from cdk_constructs.serving_role import EndpointExecutionRole, EndpointExecutionRoleProps
from cdk_constructs.serving_storage import SERVING_ZONE, ServingStorage, ServingStorageProps
from modelwerk import naming
from modelwerk.settings import EnvironmentConfig, PlatformConfig

#: Parameters (under the environment's prefix) naming the network the endpoint stacks attach to: those stacks live in
#: another stage, where a CloudFormation export of this one cannot be referenced.
SUBNETS_PARAMETER = "network/subnet-ids"
SECURITY_GROUP_PARAMETER = "network/security-group-id"


class ServingStack(Stack):
    """Attributes: ``storage``, ``execution_role``, ``alarms`` (endpoint name -> ``EndpointAlarms``), ``parameters``,
    ``subnets_parameter``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentConfig,
        vpc: ec2.IVpc,
        workload_security_group: ec2.ISecurityGroup,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        project, env, registry = config.project, environment.name, config.registry
        prefix = naming.ssm_prefix(project, env)

        self.storage = ServingStorage(
            self,
            "Storage",
            props=ServingStorageProps(project=project, env_name=env, account=environment.account,
                                      region=environment.region, destroy_on_removal=environment.destroy_on_removal),
        )
        self.execution_role = EndpointExecutionRole(
            self,
            "EndpointRole",
            props=EndpointExecutionRoleProps(
                project=project,
                env_name=env,
                artifact_bucket_name=naming.bucket_name(project, registry.name, "model-artifacts", registry.account,
                                                        registry.region),
                artifact_key_alias=f"alias/{project}/{registry.name}/model-artifacts",
                registry_account=registry.account,
                image_repository_arn=(f"arn:{self.partition}:ecr:{registry.region}:{registry.account}:repository/"
                                      f"{naming.serving_repository_name(project)}"),
            ),
            serving_bucket=self.storage.bucket,
            serving_key=self.storage.key,
        )
        self.alarms = {
            endpoint.name: EndpointAlarms(
                self,
                f"{pascal(endpoint.name)}Alarms",
                props=EndpointAlarmsProps(endpoint_name=endpoint.name, max_5xx_errors=endpoint.max_5xx_errors,
                                          max_latency_ms=endpoint.max_latency_ms),
            )
            for endpoint in environment.endpoints.values()
        }

        self.parameters = PlatformParameters(
            self,
            "Parameters",
            prefix=prefix,
            values={
                f"buckets/{SERVING_ZONE}": self.storage.bucket_name,
                "kms/serving-key-arn": self.storage.key.key_arn,
                "serving/endpoint-role-arn": self.execution_role.role.role_arn,
                SECURITY_GROUP_PARAMETER: workload_security_group.security_group_id,
            },
        )
        self.subnets_parameter = ssm.StringListParameter(
            self,
            "SubnetIds",
            parameter_name=f"{prefix}{SUBNETS_PARAMETER}",
            string_list_value=[subnet.subnet_id for subnet in vpc.isolated_subnets],
            description="The private subnets endpoints attach to",
        )
