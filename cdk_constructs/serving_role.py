"""The execution role of an environment's SageMaker endpoints: what SageMaker does on their behalf, and nothing else.

It reads registered model artifacts (``pipelines/*`` of the registry's model-artifact bucket, decrypted with the
registry's key, across accounts), reads and writes multi-model endpoints' models under ``models/`` and writes data
capture under ``capture/`` of the environment's serving bucket (encrypted with its key), pulls the serving image from
the registry account's repository, writes the endpoints' logs and metrics, and attaches the endpoints to the VPC.
The role is named (``naming.endpoint_role_name``): endpoint stacks, deployed in their own stage, name it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.permissions import (KMS_DECRYPT, S3_READ, S3_WRITE, SAGEMAKER_NETWORK_INTERFACES,
                                        SAGEMAKER_VPC_DESCRIBE, allow, allow_key, allow_network_interfaces,
                                        allow_objects)
from cdk_constructs.training_pipeline import IMAGE_PULL
from modelwerk import naming

#: Where SageMaker writes an endpoint's container logs, and the namespace of its instance metrics.
ENDPOINT_LOG_GROUPS = "/aws/sagemaker/Endpoints/"
METRIC_NAMESPACES = "/aws/sagemaker/*"
LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")
#: The model-artifact bucket's folder holding what training pipelines write (``model_artifacts.PIPELINE_OUTPUTS``).
PIPELINE_OUTPUTS = "pipelines/"


@dataclass(frozen=True)
class EndpointExecutionRoleProps:
    """project, env_name: name the role (``naming.endpoint_role_name``).
    artifact_bucket_name, artifact_key_alias, registry_account: the registry's model-artifact store, where the
        registered versions' ``model.tar.gz`` are.
    image_repository_arn: the serving image's ECR repository (in the registry account).
    """

    project: str
    env_name: str
    artifact_bucket_name: str
    artifact_key_alias: str
    registry_account: str
    image_repository_arn: str


class EndpointExecutionRole(Construct):
    """Attributes: ``role``, ``role_name``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: EndpointExecutionRoleProps,
                 serving_bucket: s3.IBucket, serving_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role_name = naming.endpoint_role_name(props.project, props.env_name)
        self.role = iam.Role(
            self,
            "Role",
            role_name=self.role_name,
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"Execution role of the {props.env_name} endpoints",
        )
        role = self.role

        artifacts = s3.Bucket.from_bucket_name(self, "ArtifactBucket", props.artifact_bucket_name)
        allow_objects(role, artifacts, prefixes=[PIPELINE_OUTPUTS], actions=S3_READ,
                      reason="A registered version's model.tar.gz sits under pipelines/<use-case>/<execution id>/, "
                             "a folder the training pipeline creates at run time.")
        allow(role, actions=KMS_DECRYPT,
              resources=[f"arn:{stack.partition}:kms:{stack.region}:{props.registry_account}:key/*"],
              conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": [props.artifact_key_alias]}},
              wildcard_reason="The registry's key id is not known to this account; the condition admits only the "
                              "key behind the model-artifact alias.")

        models, capture = naming.MULTI_MODEL_ROOT, f"{naming.capture_prefix()}/"
        allow_objects(role, serving_bucket, prefixes=[models], actions=(*S3_READ, *S3_WRITE),
                      reason="Multi-model endpoints load the models under models/<endpoint>/ by name on first call.")
        allow_objects(role, serving_bucket, prefixes=[capture], actions=S3_WRITE,
                      reason="Data capture writes one object per batch under capture/<endpoint>/<variant>/<hour>/.")
        allow_key(role, serving_key, encrypt=True)

        allow(role, actions=IMAGE_PULL, resources=[props.image_repository_arn])
        allow(role, actions=["ecr:GetAuthorizationToken"], resources=["*"],
              wildcard_reason="ecr:GetAuthorizationToken has no resource to scope to.")
        log_groups = f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:{ENDPOINT_LOG_GROUPS}*"
        allow(role, actions=LOG_ACTIONS, resources=[log_groups],
              wildcard_reason="SageMaker writes one log group per endpoint and one stream per instance and container.")
        allow(role, actions=["cloudwatch:PutMetricData"], resources=["*"],
              conditions={"StringLike": {"cloudwatch:namespace": METRIC_NAMESPACES}},
              wildcard_reason="cloudwatch:PutMetricData has no resource to scope to; the condition admits only "
                              "SageMaker's own namespaces.")
        allow_network_interfaces(role, actions=SAGEMAKER_NETWORK_INTERFACES, describe=SAGEMAKER_VPC_DESCRIBE)
