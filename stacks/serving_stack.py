"""ServingStack: what an environment's endpoints stand on, deployed with the environment: the serving bucket and key,
the endpoints' execution role, their rollback alarms, the parameters the endpoint stacks and the library read, and
the inference pipeline of each use case a single-model endpoint serves here (batch scoring with the served version)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk_constructs.ids import pascal
from cdk_constructs.inference_pipeline import InferencePipeline, InferencePipelineProps
from cdk_constructs.parameters import PlatformParameters
from cdk_constructs.serving_alarms import EndpointAlarms, EndpointAlarmsProps
from cdk_constructs.serving_role import EndpointExecutionRole, EndpointExecutionRoleProps
from cdk_constructs.serving_storage import SERVING_ZONE, ServingStorage, ServingStorageProps
from modelwerk import naming
from modelwerk.settings import EndpointSettings, EnvironmentConfig, PlatformConfig
from sagemaker_pipelines import code_archive
from sagemaker_pipelines.pipeline import framework_image_uri
from stacks.training_stack import SKLEARN_FRAMEWORK_VERSION

#: Parameters (under the environment's prefix) naming the network the endpoint stacks attach to: those stacks live in
#: another stage, where a CloudFormation export of this one cannot be referenced.
SUBNETS_PARAMETER = "network/subnet-ids"
SECURITY_GROUP_PARAMETER = "network/security-group-id"


def scored_endpoints(environment: EnvironmentConfig) -> dict[str, EndpointSettings]:
    """Use case -> the single-model endpoint whose version its inference pipeline scores with (the first by name when
    several serve it): the use cases that get an inference pipeline in ``environment``."""
    served: dict[str, EndpointSettings] = {}
    for endpoint in sorted(environment.endpoints.values(), key=lambda e: e.name):
        if not endpoint.multi_model and endpoint.use_case:
            served.setdefault(endpoint.use_case, endpoint)
    return served


class ServingStack(Stack):
    """Attributes: ``storage``, ``execution_role``, ``alarms`` (endpoint name -> ``EndpointAlarms``), ``parameters``,
    ``subnets_parameter``, ``inference_pipelines`` (use case -> ``InferencePipeline``)."""

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

        self.inference_pipelines = self._inference_pipelines(config, environment, vpc, workload_security_group)

        self.parameters = PlatformParameters(
            self,
            "Parameters",
            prefix=prefix,
            values={
                f"buckets/{SERVING_ZONE}": self.storage.bucket_name,
                "kms/serving-key-arn": self.storage.key.key_arn,
                "serving/endpoint-role-arn": self.execution_role.role.role_arn,
                SECURITY_GROUP_PARAMETER: workload_security_group.security_group_id,
                **{f"use-cases/{name}/inference-pipeline-name": pipeline.pipeline_name
                   for name, pipeline in self.inference_pipelines.items()},
            },
        )
        self.subnets_parameter = ssm.StringListParameter(
            self,
            "SubnetIds",
            parameter_name=f"{prefix}{SUBNETS_PARAMETER}",
            string_list_value=[subnet.subnet_id for subnet in vpc.isolated_subnets],
            description="The private subnets endpoints attach to",
        )

    def _inference_pipelines(self, config: PlatformConfig, environment: EnvironmentConfig, vpc: ec2.IVpc,
                             security_group: ec2.ISecurityGroup) -> dict[str, InferencePipeline]:
        served = scored_endpoints(environment)
        if not served:
            return {}
        project, env, registry = config.project, environment.name, config.registry
        with tempfile.TemporaryDirectory(prefix="modelwerk-code-") as folder:  # the asset is staged right away
            code = s3_assets.Asset(self, "StepCode", path=str(code_archive.build(Path(folder))))
        image = framework_image_uri(environment.region, SKLEARN_FRAMEWORK_VERSION)

        def bucket(zone: str) -> str:
            return naming.bucket_name(project, env, zone, environment.account, environment.region)

        pipelines: dict[str, InferencePipeline] = {}
        for name, endpoint in sorted(served.items()):
            use_case = config.use_case(name)
            pipelines[name] = InferencePipeline(
                self,
                f"{pascal(name)}Inference",
                props=InferencePipelineProps(
                    project=project,
                    env_name=env,
                    contract=use_case.contract,
                    contract_file=str(use_case.folder / "contract.json"),
                    code_archive=code,
                    image_uri=image,
                    serving_image_repository_arn=(f"arn:{self.partition}:ecr:{registry.region}:{registry.account}:"
                                                  f"repository/{naming.serving_repository_name(project)}"),
                    endpoint_name=endpoint.name,
                    serving_bucket_name=self.storage.bucket_name,
                    serving_key=self.storage.key,
                    curated_bucket_name=bucket("curated"),
                    analytics_bucket_name=bucket("analytics"),
                    data_key_alias=f"alias/{project}/{env}/data-lake",
                    registry_account=registry.account,
                    artifact_bucket_name=naming.bucket_name(project, registry.name, "model-artifacts",
                                                            registry.account, registry.region),
                    artifact_key_alias=f"alias/{project}/{registry.name}/model-artifacts",
                    batch=use_case.batch,
                    subnet_ids=[subnet.subnet_id for subnet in vpc.isolated_subnets],
                    security_group_id=security_group.security_group_id,
                    processing_instance_type=environment.processing_instance_type,
                ),
            )
        return pipelines
