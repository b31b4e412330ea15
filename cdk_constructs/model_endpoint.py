"""A SageMaker endpoint: model, endpoint configuration with data capture, the endpoint with a blue/green deployment
policy that rolls back on alarms, and target-tracking auto scaling.

Single-model endpoints serve one registered version: the model names the model package (in the registry account),
so the image and artifact are the ones the version was registered with. Multi-model endpoints serve every
``model.tar.gz`` under an S3 prefix with the serving image; a model is added by copying it there, without a deployment.

A new version (a new model package, or a changed setting) replaces the model and the endpoint configuration and
updates the endpoint in place: SageMaker provisions a new fleet, shifts traffic to it (canary, linear or all at once),
watches the rollback alarms while it waits and bakes, and returns every request to the old fleet if one fires.
The endpoint's name is fixed; the model's and configuration's are left to CloudFormation, which must replace them.

A serverless endpoint (``serverless_memory_mb``) runs on SageMaker Serverless Inference: one variant with a
``ServerlessConfig`` and no instances, so no auto scaling; and, as SageMaker supports none of them there, no data
capture, no VPC placement and no network isolation. Its deployments stay blue/green with the same rollback alarms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from cdk_constructs.nag import SERVERLESS_INFERENCE, acknowledge_checkov
from modelwerk import naming

#: SageMaker's names for the traffic routings of ``modelwerk.settings.TRAFFIC_ROUTINGS``.
TRAFFIC_ROUTING_TYPES = {"canary": "CANARY", "linear": "LINEAR", "all_at_once": "ALL_AT_ONCE"}
#: Time a deployment may take to provision and start the new fleet, on top of its waits and bake.
PROVISIONING_SECONDS = 1800
#: BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds bounds.
MIN_EXECUTION_SECONDS, MAX_EXECUTION_SECONDS = 600, 28800
#: Content types whose captured bodies are stored as text (the rest as base64), as the serving container accepts.
CSV_CONTENT_TYPES = ("text/csv",)
JSON_CONTENT_TYPES = ("application/json", "application/jsonlines")
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
#: Scale out fast, scale in slowly (SageMaker's recommendation against flapping).
SCALE_OUT_COOLDOWN_SECONDS, SCALE_IN_COOLDOWN_SECONDS = 60, 300
#: The serving container's switch to multi-model mode.
MULTI_MODEL_ENVIRONMENT = {"SAGEMAKER_MULTI_MODEL": "true"}


@dataclass(frozen=True)
class ModelEndpointProps:
    """endpoint_name: the endpoint's name in SageMaker (fixed: clients and alarms name it).
    model_package_arn: single-model: the registered version to serve (a CloudFormation parameter, usually).
    image_uri, model_data_url: multi-model: the serving image and the S3 prefix (ending in ``/``) of the models.
    subnet_ids, security_group_ids: the private subnets and security groups the instances attach to.
    capture_uri: ``s3://<serving bucket>/capture``; data capture writes input and output there.
    rollback_alarm_names: the alarms a deployment rolls back on (deployed with the environment).
    instance_type, initial_instance_count, min_instances, max_instances: the fleet and its auto-scaling bounds.
    invocations_per_instance: target of the target-tracking policy (invocations per instance per minute).
    capture_sampling_percent: share of requests captured (0: capture off).
    traffic_routing, canary_percent, wait_seconds, bake_seconds: the blue/green deployment
        (``modelwerk.settings.EndpointSettings`` documents each).
    network_isolation: the container may make no network call (default True: SageMaker itself downloads the model
        artifacts and writes the capture; the serving container needs no network). Ignored on a serverless endpoint.
    serverless_memory_mb, serverless_max_concurrency: serve on Serverless Inference with this memory and concurrency
        (default None: on instances). Then the instance, auto-scaling, capture and network settings do not apply.
    """

    endpoint_name: str
    subnet_ids: Sequence[str]
    security_group_ids: Sequence[str]
    capture_uri: str
    rollback_alarm_names: Sequence[str]
    model_package_arn: str | None = None
    image_uri: str | None = None
    model_data_url: str | None = None
    instance_type: str = "ml.m5.large"
    initial_instance_count: int = 1
    min_instances: int = 1
    max_instances: int = 2
    invocations_per_instance: int = 1000
    capture_sampling_percent: int = 100
    traffic_routing: str = "canary"
    canary_percent: int = 10
    wait_seconds: int = 300
    bake_seconds: int = 600
    network_isolation: bool = True
    serverless_memory_mb: int | None = None
    serverless_max_concurrency: int | None = None

    @property
    def multi_model(self) -> bool:
        return self.model_package_arn is None

    @property
    def serverless(self) -> bool:
        return self.serverless_memory_mb is not None


def maximum_execution_seconds(traffic_routing: str, canary_percent: int, wait_seconds: int, bake_seconds: int) -> int:
    """How long a blue/green deployment may run: provisioning, one wait per traffic shift, the final bake."""
    shifts = math.ceil(100 / canary_percent) if traffic_routing == "linear" else 1
    return max(MIN_EXECUTION_SECONDS, PROVISIONING_SECONDS + shifts * wait_seconds + bake_seconds)


def _check(props: ModelEndpointProps) -> None:
    problems = []
    if (props.model_package_arn is None) == (props.image_uri is None):
        problems.append("give model_package_arn (single-model) or image_uri and model_data_url (multi-model), "
                        "not both and not neither")
    if props.image_uri is not None and not (props.model_data_url or "").endswith("/"):
        problems.append("a multi-model endpoint needs model_data_url, an S3 prefix ending in '/'")
    if props.traffic_routing not in TRAFFIC_ROUTING_TYPES:
        problems.append(f"traffic_routing must be one of {sorted(TRAFFIC_ROUTING_TYPES)}")
    elif maximum_execution_seconds(props.traffic_routing, props.canary_percent, props.wait_seconds,
                                   props.bake_seconds) > MAX_EXECUTION_SECONDS:
        problems.append(f"a {props.traffic_routing} deployment with {props.wait_seconds} s waits and a "
                        f"{props.bake_seconds} s bake would run past SageMaker's {MAX_EXECUTION_SECONDS} s limit")
    if not props.rollback_alarm_names:
        problems.append("a blue/green deployment needs the alarms it rolls back on")
    if not props.min_instances <= props.initial_instance_count <= props.max_instances:
        problems.append("initial_instance_count must be within min_instances..max_instances")
    if (props.serverless_memory_mb is None) != (props.serverless_max_concurrency is None):
        problems.append("a serverless endpoint needs both serverless_memory_mb and serverless_max_concurrency")
    if props.serverless and props.multi_model:
        problems.append("a serverless endpoint serves one model: it cannot be multi-model")
    if problems:
        raise ValueError(f"endpoint {props.endpoint_name}: " + "; ".join(problems))


class ModelEndpoint(Construct):
    """Attributes: ``model``, ``endpoint_config``, ``endpoint`` (L1 resources), ``scalable_target``,
    ``scaling_policy`` (None on a serverless endpoint), ``endpoint_name``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ModelEndpointProps, role: iam.IRole,
                 key: kms.IAlias) -> None:
        super().__init__(scope, construct_id)
        _check(props)
        self.endpoint_name = props.endpoint_name
        variant = naming.ENDPOINT_VARIANT

        if props.multi_model:
            container = sagemaker.CfnModel.ContainerDefinitionProperty(
                image=props.image_uri, mode="MultiModel", model_data_url=props.model_data_url,
                environment=dict(MULTI_MODEL_ENVIRONMENT))
        else:
            container = sagemaker.CfnModel.ContainerDefinitionProperty(model_package_name=props.model_package_arn)
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role.role_arn,
            containers=[container],
            enable_network_isolation=None if props.serverless else props.network_isolation,
            vpc_config=None if props.serverless else sagemaker.CfnModel.VpcConfigProperty(
                subnets=list(props.subnet_ids), security_group_ids=list(props.security_group_ids)),
        )

        capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
            enable_capture=props.capture_sampling_percent > 0,
            initial_sampling_percentage=props.capture_sampling_percent,
            destination_s3_uri=props.capture_uri,
            kms_key_id=key.alias_name,
            capture_options=[sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode=mode)
                             for mode in ("Input", "Output")],
            capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                csv_content_types=list(CSV_CONTENT_TYPES), json_content_types=list(JSON_CONTENT_TYPES)),
        )
        if props.serverless:
            production_variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=variant,
                model_name=self.model.attr_model_name,
                initial_variant_weight=1.0,
                serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                    memory_size_in_mb=props.serverless_memory_mb, max_concurrency=props.serverless_max_concurrency),
            )
        else:
            production_variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=variant,
                model_name=self.model.attr_model_name,
                instance_type=props.instance_type,
                initial_instance_count=props.initial_instance_count,
                initial_variant_weight=1.0,
            )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            kms_key_id=key.alias_name,
            production_variants=[production_variant],
            data_capture_config=None if props.serverless else capture,
        )

        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=props.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=_traffic_routing(props),
                    termination_wait_in_seconds=props.bake_seconds,
                    maximum_execution_timeout_in_seconds=maximum_execution_seconds(
                        props.traffic_routing, props.canary_percent, props.wait_seconds, props.bake_seconds),
                ),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=name)
                            for name in props.rollback_alarm_names]),
            ),
        )

        self.scalable_target: autoscaling.CfnScalableTarget | None = None
        self.scaling_policy: autoscaling.CfnScalingPolicy | None = None
        if props.serverless:  # SageMaker scales serverless capacity itself, up to MaxConcurrency
            acknowledge_checkov(self.model, "CKV_AWS_370", SERVERLESS_INFERENCE,
                                resource_type="AWS::SageMaker::Model")
            return
        # Application Auto Scaling acts through its service-linked role for SageMaker: no role of ours is needed.
        self.scalable_target = autoscaling.CfnScalableTarget(
            self,
            "ScalableTarget",
            service_namespace="sagemaker",
            resource_id=f"endpoint/{props.endpoint_name}/variant/{variant}",
            scalable_dimension=SCALABLE_DIMENSION,
            min_capacity=props.min_instances,
            max_capacity=props.max_instances,
        )
        self.scalable_target.add_resource_dependency(self.endpoint)
        self.scaling_policy = autoscaling.CfnScalingPolicy(
            self,
            "InvocationsPerInstance",
            policy_name=f"{props.endpoint_name}-invocations-per-instance",
            policy_type="TargetTrackingScaling",
            scaling_target_id=self.scalable_target.ref,
            target_tracking_scaling_policy_configuration=(
                autoscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                    target_value=props.invocations_per_instance,
                    predefined_metric_specification=autoscaling.CfnScalingPolicy.PredefinedMetricSpecificationProperty(
                        predefined_metric_type="SageMakerVariantInvocationsPerInstance"),
                    scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
                    scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
                )),
        )


def _traffic_routing(props: ModelEndpointProps) -> sagemaker.CfnEndpoint.TrafficRoutingConfigProperty:
    size = sagemaker.CfnEndpoint.CapacitySizeProperty(type="CAPACITY_PERCENT", value=props.canary_percent)
    routing = props.traffic_routing
    return sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
        type=TRAFFIC_ROUTING_TYPES[routing],
        wait_interval_in_seconds=props.wait_seconds,
        canary_size=size if routing == "canary" else None,
        linear_step_size=size if routing == "linear" else None,
    )
