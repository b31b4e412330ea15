"""What the registry's promotion pipelines may do in a target account (staging, prod): three named roles.

- the action role: the pipelines' service roles (in the registry account, named) assume it to run the CloudFormation
  deploy action: create or update the promoted endpoint stacks, pass them the deploy role, read the templates from
  the registry's promotion bucket;
- the deploy role: CloudFormation's execution role for those stacks, holding only what an endpoint stack creates
  (SageMaker model, endpoint configuration and endpoint; the endpoint role passed to SageMaker; a grant on the
  serving key; auto scaling of the endpoint's variant) and reads (its SSM parameters, the registry's versions);
- the gate role (where the gate runs, staging): the gate builds (registry account, named) assume it to invoke and
  describe this environment's endpoints, nothing else.

Trust goes to the registry account with an ``aws:PrincipalArn`` condition on the named roles, never a wildcard. All
names come from ``modelwerk.naming``, so the registry's stacks name these roles by ARN without a cross-stack
reference, and these roles name the registry's the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import DefaultStackSynthesizer, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_constructs.permissions import S3_READ, allow
from modelwerk import naming

#: What CloudFormation's deploy action does with an endpoint stack (CDK's CREATE_UPDATE grant, stack by stack).
STACK_ACTIONS = ("cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:DescribeStacks",
                 "cloudformation:DescribeStackEvents", "cloudformation:DescribeStackResources",
                 "cloudformation:GetTemplate", "cloudformation:GetTemplateSummary",
                 "cloudformation:GetStackPolicy", "cloudformation:SetStackPolicy", "cloudformation:TagResource",
                 "cloudformation:UntagResource")
ENDPOINT_ACTIONS = ("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint",
                    "sagemaker:DeleteEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities")
#: The endpoint actions that name an endpoint configuration: IAM authorizes them on the configuration too.
CONFIGURING_ACTIONS = ("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint")
GENERATED_NAMES_REASON = ("CloudFormation names an endpoint's models and configurations at deployment (the endpoint "
                          "stack replaces both with every version), so only the type can be named.")
SCALING_REASON = ("Application Auto Scaling names a scalable target (scalable-target/<id>) itself; the statement "
                  "holds it to this account and region, the conditions to SageMaker variants' instance counts.")
SCALING_DESCRIBE_REASON = "Application Auto Scaling's Describe calls take no resource."
SCALING_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@dataclass(frozen=True)
class PromotionAccessProps:
    """project, env_name: name the roles (``naming.promotion_*_role_name``).
    registry_account, registry_region: where the pipelines, the promotion bucket and key, and the model registry are.
    pipeline_role_names: the registry's promotion pipeline roles allowed to assume the action role.
    gate_build_role_names: the registry's gate build roles allowed to assume the gate role (empty: no gate role here).
    stack_names: the endpoint stacks the pipelines deploy here.
    endpoint_names: those stacks' endpoints (the deploy role manages them, the gate role invokes them).
    model_package_groups: the registry groups whose versions the endpoints serve.
    promotion_bucket_name, promotion_key_alias: the registry's promotion artifact store.
    endpoint_role_name, serving_key_alias: what the environment's serving stack deployed for its endpoints.
    """

    project: str
    env_name: str
    registry_account: str
    registry_region: str
    pipeline_role_names: Sequence[str]
    gate_build_role_names: Sequence[str]
    stack_names: Sequence[str]
    endpoint_names: Sequence[str]
    model_package_groups: Sequence[str]
    promotion_bucket_name: str
    promotion_key_alias: str
    endpoint_role_name: str
    serving_key_alias: str


class PromotionAccess(Construct):
    """Attributes: ``action_role``, ``deploy_role``, ``gate_role`` (None where no gate runs)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PromotionAccessProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        if stack.account == props.registry_account:
            raise ValueError("PromotionAccess is for the target accounts; the registry's own roles need no trust")
        if not (props.pipeline_role_names and props.stack_names and props.endpoint_names):
            raise ValueError(f"PromotionAccess in {props.env_name} needs the pipelines, stacks and endpoints it serves")
        project, env = props.project, props.env_name

        def trusted(role_names: Sequence[str]) -> iam.IPrincipal:
            arns = sorted(naming.role_arn(props.registry_account, name) for name in role_names)
            return iam.AccountPrincipal(props.registry_account).with_conditions(
                {"ArnEquals": {"aws:PrincipalArn": arns}})

        self.deploy_role = iam.Role(
            self, "DeployRole", role_name=naming.promotion_deploy_role_name(project, env),
            assumed_by=iam.ServicePrincipal("cloudformation.amazonaws.com"),
            description="CloudFormation execution role of the promoted endpoint stacks")
        self.action_role = iam.Role(
            self, "ActionRole", role_name=naming.promotion_action_role_name(project, env),
            assumed_by=trusted(props.pipeline_role_names),
            description="Assumed by the registry's promotion pipelines to deploy the endpoint stacks")
        self.gate_role: iam.Role | None = None
        if props.gate_build_role_names:
            self.gate_role = iam.Role(
                self, "GateRole", role_name=naming.promotion_gate_role_name(project, env),
                assumed_by=trusted(props.gate_build_role_names),
                description="Assumed by the registry's gate builds to invoke this environment's endpoints")
            allow(self.gate_role, actions=["sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint"],
                  resources=self._endpoints(props))
        self._action_permissions(props)
        self._deploy_permissions(props)

    def _endpoints(self, props: PromotionAccessProps) -> list[str]:
        return sorted(self._arn("sagemaker", "endpoint/", name) for name in props.endpoint_names)

    def _arn(self, service: str, resource: str, name: str, *, account: str | None = None,
             region: str | None = None) -> str:
        stack = Stack.of(self)
        return (f"arn:{stack.partition}:{service}:{stack.region if region is None else region}:"
                f"{stack.account if account is None else account}:{resource}{name}")

    def _registry_read(self, role: iam.IRole, props: PromotionAccessProps) -> None:
        stack = Stack.of(self)
        allow(role, actions=S3_READ, resources=[f"arn:{stack.partition}:s3:::{props.promotion_bucket_name}/*"],
              wildcard_reason="CodePipeline keys its artifacts in the registry's promotion bucket by pipeline, "
                              "artifact and a random id; that bucket holds only promotion data.")
        allow(role, actions=["kms:Decrypt", "kms:DescribeKey"],
              resources=[self._arn("kms", "key/", "*", account=props.registry_account, region=props.registry_region)],
              conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": [props.promotion_key_alias]}},
              wildcard_reason="The registry's key id is not known to this stack; the condition admits only the key "
                              "behind the named alias.")

    def _parameters(self, role: iam.IRole, props: PromotionAccessProps) -> None:
        """The endpoint stacks' SSM-typed parameters (network ids, the CDK bootstrap version) are read at deploy."""
        qualifier = DefaultStackSynthesizer.DEFAULT_QUALIFIER
        allow(role, actions=["ssm:GetParameters"], resources=[
            self._arn("ssm", "parameter", naming.ssm_prefix(props.project, props.env_name) + "*"),
            self._arn("ssm", "parameter", f"/cdk-bootstrap/{qualifier}/version")],
            wildcard_reason="The environment's published parameters under its prefix (the serving stack's network "
                            "ids among them) may be named by an endpoint stack.")

    def _action_permissions(self, props: PromotionAccessProps) -> None:
        role = self.action_role
        allow(role, actions=STACK_ACTIONS,
              resources=sorted(self._arn("cloudformation", "stack/", f"{name}/*") for name in props.stack_names),
              wildcard_reason="A stack's ARN ends in the id CloudFormation gives it when it is created.")
        allow(role, actions=["iam:PassRole"], resources=[self.deploy_role.role_arn],
              conditions={"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}})
        self._registry_read(role, props)
        self._parameters(role, props)

    def _deploy_permissions(self, props: PromotionAccessProps) -> None:
        role = self.deploy_role
        endpoints = self._endpoints(props)
        models = self._arn("sagemaker", "model/", "*")
        configs = self._arn("sagemaker", "endpoint-config/", "*")
        allow(role, actions=["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel"],
              resources=[models], wildcard_reason=GENERATED_NAMES_REASON)
        allow(role, actions=["sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
                             "sagemaker:DeleteEndpointConfig"], resources=[configs],
              wildcard_reason=GENERATED_NAMES_REASON)
        allow(role, actions=ENDPOINT_ACTIONS, resources=endpoints)
        allow(role, actions=CONFIGURING_ACTIONS, resources=[configs], wildcard_reason=GENERATED_NAMES_REASON)
        allow(role, actions=["sagemaker:AddTags", "sagemaker:DeleteTags", "sagemaker:ListTags"],
              resources=[models, configs, *endpoints], wildcard_reason=GENERATED_NAMES_REASON)
        allow(role, actions=["sagemaker:DescribeModelPackage"],
              resources=sorted(self._arn("sagemaker", "model-package/", f"{group}/*", account=props.registry_account,
                                         region=props.registry_region) for group in props.model_package_groups),
              wildcard_reason="Versions are numbered as they are registered in each use case's group.")
        allow(role, actions=["iam:PassRole"],
              resources=[self._arn("iam", "role/", props.endpoint_role_name, region="")],
              conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
        key = self._arn("kms", "key/", "*")
        aliased = {"ForAnyValue:StringEquals": {"kms:ResourceAliases": [props.serving_key_alias]}}
        allow(role, actions=["kms:CreateGrant"], resources=[key],
              conditions={**aliased, "Bool": {"kms:GrantIsForAWSResource": "true"}},
              wildcard_reason="The serving key's id is not known to this stack; the conditions admit only the key "
                              "behind the serving alias, and only grants to AWS services (SageMaker's volumes).")
        allow(role, actions=["kms:DescribeKey"], resources=[key], conditions=aliased,
              wildcard_reason="The serving key's id is not known to this stack; the condition admits only the key "
                              "behind the serving alias.")
        scaling = {"StringEquals": {"application-autoscaling:service-namespace": "sagemaker",
                                    "application-autoscaling:scalable-dimension": SCALING_DIMENSION}}
        allow(role, actions=["application-autoscaling:RegisterScalableTarget",
                             "application-autoscaling:DeregisterScalableTarget",
                             "application-autoscaling:PutScalingPolicy",
                             "application-autoscaling:DeleteScalingPolicy"],
              resources=[self._arn("application-autoscaling", "scalable-target/", "*")], conditions=scaling,
              wildcard_reason=SCALING_REASON)
        allow(role, actions=["application-autoscaling:DescribeScalableTargets",
                             "application-autoscaling:DescribeScalingPolicies",
                             "application-autoscaling:DescribeScalingActivities"],
              resources=["*"], wildcard_reason=SCALING_DESCRIBE_REASON)
        allow(role, actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"],
              resources=sorted(self._arn("cloudwatch", "alarm:", f"TargetTracking-endpoint/{name}/*")
                               for name in props.endpoint_names),
              wildcard_reason="Target tracking names its alarms TargetTracking-<resource id>-<suffix> itself.")
        allow(role, actions=["iam:CreateServiceLinkedRole"],
              resources=[self._arn("iam", "role/aws-service-role/", "sagemaker.application-autoscaling.amazonaws.com/"
                                   "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint", region="")],
              conditions={"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}})
        self._parameters(role, props)
