"""EndpointStack: one configured endpoint of one environment, in the environment's endpoints stage.

It stands on what the environment's serving stack deployed (role, bucket, key, alarms, network parameters), named
through ``modelwerk.naming`` and SSM, never through a cross-stack reference: the endpoints stage deploys on its own
(``cdk deploy '<env>-endpoints/*'``, or the promotion pipeline), so a deployment of the environment never touches an
endpoint and never reverts a promoted version.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnParameter, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk_constructs.model_endpoint import ModelEndpoint, ModelEndpointProps
from cdk_constructs.serving_context import serving_image_tag
from cdk_constructs.serving_storage import SERVING_ZONE
from modelwerk import naming
from modelwerk.settings import EndpointSettings, EnvironmentConfig, PlatformConfig
from stacks.serving_stack import SECURITY_GROUP_PARAMETER, SUBNETS_PARAMETER

MODEL_PACKAGE_PARAMETER = "ModelPackageArn"


def model_package_pattern(project: str, use_case: str, registry_account: str, region: str) -> str:
    """The versions an endpoint may serve: a numbered model package of its use case's group in the registry."""
    group = naming.model_package_group_name(project, use_case)
    return rf"^arn:aws[a-z-]*:sagemaker:{region}:{registry_account}:model-package/{group}/[0-9]+$"


class EndpointStack(Stack):
    """Attributes: ``endpoint`` (``ModelEndpoint``), ``model_package_arn`` (the parameter; single-model only)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentConfig,
        endpoint: EndpointSettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        project, env, registry = config.project, environment.name, config.registry
        prefix = naming.ssm_prefix(project, env)
        bucket = naming.bucket_name(project, env, SERVING_ZONE, environment.account, environment.region)

        self.model_package_arn: CfnParameter | None = None
        model: dict[str, str] = {}
        if endpoint.multi_model:
            model["image_uri"] = naming.serving_image_uri(registry.account, registry.region, project,
                                                          serving_image_tag(config.root))
            model["model_data_url"] = f"s3://{bucket}/{naming.multi_model_prefix(endpoint.name)}"
        else:
            self.model_package_arn = CfnParameter(
                self,
                MODEL_PACKAGE_PARAMETER,
                type="String",
                description=f"The registered {endpoint.use_case} version (model package ARN) {endpoint.name} serves",
                allowed_pattern=model_package_pattern(project, endpoint.use_case, registry.account, registry.region),
                constraint_description=f"a version of the registry's {endpoint.use_case} model package group",
            )
            model["model_package_arn"] = self.model_package_arn.value_as_string

        # Where it runs: serverless (SageMaker Serverless Inference, in no VPC) or instances in the private subnets.
        placement: dict[str, Any] = {"subnet_ids": (), "security_group_ids": ()}
        if endpoint.serverless is not None:
            placement.update(serverless_memory_mb=endpoint.serverless.memory_mb,
                           serverless_max_concurrency=endpoint.serverless.max_concurrency)
        else:
            placement.update(
                subnet_ids=ssm.StringListParameter.value_for_typed_list_parameter(self, f"{prefix}{SUBNETS_PARAMETER}"),
                security_group_ids=[ssm.StringParameter.value_for_string_parameter(
                    self, f"{prefix}{SECURITY_GROUP_PARAMETER}")])

        self.endpoint = ModelEndpoint(
            self,
            "Endpoint",
            props=ModelEndpointProps(
                endpoint_name=endpoint.name,
                capture_uri=f"s3://{bucket}/{naming.capture_prefix()}",
                rollback_alarm_names=[naming.endpoint_alarm_name(endpoint.name, kind) for kind in ("5xx", "latency")],
                instance_type=endpoint.instance_type,
                initial_instance_count=endpoint.initial_instance_count,
                min_instances=endpoint.min_instances,
                max_instances=endpoint.max_instances,
                invocations_per_instance=endpoint.invocations_per_instance,
                capture_sampling_percent=endpoint.capture_sampling_percent,
                traffic_routing=endpoint.traffic_routing,
                canary_percent=endpoint.canary_percent,
                wait_seconds=endpoint.wait_seconds,
                bake_seconds=endpoint.bake_seconds,
                **placement,
                **model,
            ),
            role=iam.Role.from_role_name(self, "ExecutionRole", naming.endpoint_role_name(project, env),
                                         mutable=False),
            key=kms.Alias.from_alias_name(self, "ServingKey", naming.serving_key_alias(project, env)),
        )
