"""A use case's training pipeline: the SageMaker Pipeline, its execution role, and the schedule that retrains.

The definition is the JSON ``sagemaker_pipelines/pipeline.py`` builds at synth, offline. Deploy-time locations (the
code archive and contract assets) are ``${...}`` placeholders in it, filled by ``Fn::Sub``; everything else is
literal, so the template holds the very definition the local executor runs. The role may read the code and contract
assets, the use case's snapshots in the curated zone, write the executions' outputs under
``pipelines/<use-case>/`` of the registry's model-artifact bucket, run the pipeline's jobs, and create versions in
the use case's model package group in the registry account: nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.nag import acknowledge, acknowledge_checkov
from cdk_constructs.package_mirror import PackageMirror
from cdk_constructs.permissions import (SAGEMAKER_NETWORK_INTERFACES, SAGEMAKER_VPC_DESCRIBE, S3_READ, allow,
                                        allow_network_interfaces, allow_objects, allow_sagemaker_jobs)
from cdk_constructs.queues import DEAD_LETTER_QUEUE, SQS_MANAGED_REASON
from modelwerk import naming
from modelwerk.core.layout import curated_prefix, snapshot_prefix

#: The placeholders the definition is built with, filled by Fn::Sub.
ASSET_BUCKET, CODE_KEY, CONTRACT_KEY = "AssetBucket", "CodeKey", "ContractKey"
SUBNET, SECURITY_GROUP = "Subnet", "SecurityGroup"
PACKAGE_REPOSITORY = "PackageRepository"
JOB_ACTIONS = ("sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
               "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
               "sagemaker:AddTags")
REGISTER_ACTIONS = ("sagemaker:CreateModelPackage", "sagemaker:AddTags")
IMAGE_PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
KMS_WRITE = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")
DEAD_LETTER_RETENTION = Duration.days(14)


@dataclass(frozen=True)
class TrainingPipelineProps:
    """project, env_name, use_case: name the pipeline, its role and group (``modelwerk.naming``).
    contract_file: the use case's contract.json (deployed as an asset; the preprocess step reads it).
    code_archive: the step code asset (``sagemaker_pipelines.code_archive``), shared by the use cases.
    curated_bucket_name, data_key_alias: where the snapshots are, and the alias of the key encrypting them.
    artifact_bucket_name, artifact_key_alias, registry_account: the registry's model-artifact store and account.
    image_uri: the scikit-learn framework image the jobs run; serving_image_uri: the registered versions' inference
        image (an ECR image; the role may pull it), default ``image_uri``.
    quality_metric, quality_threshold, hyperparameters: the gate and the training settings.
    git_commit: the commit the code archive was built from (recorded on every version).
    retraining_schedule: an EventBridge schedule expression starting the pipeline with ``SnapshotId=latest``.
    subnet_ids, security_group_id: the private subnets and security group every job runs in.
    package_mirror: where jobs install the model frameworks' pins from (the subnets have no internet route); the
        role may read it. None: PyPI, for jobs that can reach it.
    """

    project: str
    env_name: str
    use_case: str
    contract_file: str
    code_archive: s3_assets.Asset
    curated_bucket_name: str
    data_key_alias: str
    artifact_bucket_name: str
    artifact_key_alias: str
    registry_account: str
    image_uri: str
    quality_metric: str
    quality_threshold: float
    git_commit: str
    serving_image_uri: str | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    processing_instance_type: str = "ml.m5.large"
    training_instance_type: str = "ml.m5.large"
    retraining_schedule: str | None = None
    subnet_ids: Sequence[str] = ()
    security_group_id: str | None = None
    package_mirror: PackageMirror | None = None


class TrainingPipeline(Construct):
    """Attributes: ``pipeline`` (``CfnPipeline``), ``pipeline_name``, ``pipeline_arn``, ``role``, ``definition``
    (the JSON with its placeholders), ``contract`` (asset), ``group_arn``, ``schedule`` and ``dead_letter_queue``
    (when a retraining schedule is set)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: TrainingPipelineProps) -> None:
        super().__init__(scope, construct_id)
        from sagemaker_pipelines.pipeline import build_definition

        stack = Stack.of(self)
        self.pipeline_name = naming.training_pipeline_name(props.project, props.env_name, props.use_case)
        role_name = naming.pipeline_role_name(props.project, props.env_name, props.use_case)
        role_arn = f"arn:aws:iam::{stack.account}:role/{role_name}"
        self.group_arn = naming.model_package_group_arn(props.project, props.use_case, props.registry_account,
                                                        stack.region)
        self.contract = s3_assets.Asset(self, "Contract", path=props.contract_file)
        if not props.subnet_ids or not props.security_group_id:
            raise ValueError("a training pipeline's jobs run in the VPC: give subnet_ids and security_group_id")
        network = {f"{SUBNET}{i}": subnet for i, subnet in enumerate(props.subnet_ids)}
        network[SECURITY_GROUP] = props.security_group_id
        if props.package_mirror is not None:
            network[PACKAGE_REPOSITORY] = props.package_mirror.repository_arn
        self.definition = build_definition(
            use_case=props.use_case,
            role_arn=role_arn,
            region=stack.region,
            artifact_bucket=props.artifact_bucket_name,
            code_uri=f"s3://${{{ASSET_BUCKET}}}/${{{CODE_KEY}}}",
            contract_uri=f"s3://${{{ASSET_BUCKET}}}/${{{CONTRACT_KEY}}}",
            image_uri=props.image_uri,
            serving_image_uri=props.serving_image_uri,
            model_package_group_arn=self.group_arn,
            quality_metric=props.quality_metric,
            quality_threshold=props.quality_threshold,
            git_commit=props.git_commit,
            processing_instance_type=props.processing_instance_type,
            training_instance_type=props.training_instance_type,
            curated_bucket=props.curated_bucket_name,
            hyperparameters=props.hyperparameters,
            subnet_ids=[f"${{{SUBNET}{i}}}" for i in range(len(props.subnet_ids))],
            security_group_ids=[f"${{{SECURITY_GROUP}}}"],
            package_repository_arn=f"${{{PACKAGE_REPOSITORY}}}" if props.package_mirror is not None else None,
        )

        self.role = iam.Role(
            self,
            "Role",
            role_name=role_name,
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"{props.use_case} training pipeline and its jobs",
        )
        self._permissions(props, stack)
        if props.package_mirror is not None:
            props.package_mirror.grant_read(self.role)

        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=self.pipeline_name,
            pipeline_display_name=self.pipeline_name,
            pipeline_description=f"Trains, evaluates and registers the {props.use_case} model (commit "
            f"{props.git_commit[:12]})",
            role_arn=self.role.role_arn,
            pipeline_definition={
                "PipelineDefinitionBody": Fn.sub(self.definition, {
                    ASSET_BUCKET: props.code_archive.s3_bucket_name,
                    CODE_KEY: props.code_archive.s3_object_key,
                    CONTRACT_KEY: self.contract.s3_object_key,
                    **network,
                })
            },
        )
        self.pipeline.node.add_dependency(self.role)
        self.pipeline_arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:pipeline/{self.pipeline_name}"

        self.schedule: events.CfnRule | None = None
        self.dead_letter_queue: sqs.Queue | None = None
        if props.retraining_schedule:
            self._retraining_schedule(props.retraining_schedule)

    def _permissions(self, props: TrainingPipelineProps, stack: Stack) -> None:
        role = self.role
        assets = s3.Bucket.from_bucket_name(self, "AssetBucket", props.code_archive.s3_bucket_name)
        for asset in (props.code_archive, self.contract):
            allow_objects(role, assets, prefixes=[asset.s3_object_key], actions=S3_READ,
                          reason="one asset object, named exactly")
        allow(role, actions=["s3:ListBucket"], resources=[assets.bucket_arn], conditions={
            "StringEquals": {"s3:prefix": [props.code_archive.s3_object_key, self.contract.s3_object_key]}})

        curated = s3.Bucket.from_bucket_name(self, "CuratedBucket", props.curated_bucket_name)
        table_prefix = curated_prefix(props.use_case)
        allow_objects(role, curated, prefixes=[snapshot_prefix(props.use_case), table_prefix], actions=S3_READ,
                      reason="Preprocess reads the use case's snapshot manifests and the curated objects they pin "
                             "(at their versions); both sit under the use case's own prefixes.")
        allow(role, actions=["s3:ListBucket"], resources=[curated.bucket_arn],
              conditions={"StringLike": {"s3:prefix": [f"{snapshot_prefix(props.use_case)}*"]}})

        artifacts = s3.Bucket.from_bucket_name(self, "ArtifactBucket", props.artifact_bucket_name)
        output = naming.pipeline_output_prefix(props.use_case)
        allow_objects(role, artifacts, prefixes=[output], actions=(*S3_READ, "s3:PutObject",
                                                                    "s3:AbortMultipartUpload"),
                      reason="Executions write and read their step outputs under pipelines/<use-case>/, one folder "
                             "per execution id that SageMaker assigns at run time.")
        allow(role, actions=["s3:ListBucket"], resources=[artifacts.bucket_arn],
              conditions={"StringLike": {"s3:prefix": [f"{output}*"]}})

        keys = {
            props.data_key_alias: (stack.account, ("kms:Decrypt", "kms:DescribeKey")),
            props.artifact_key_alias: (props.registry_account, KMS_WRITE),
        }
        for alias, (account, actions) in keys.items():
            allow(role, actions=actions, resources=[f"arn:{stack.partition}:kms:{stack.region}:{account}:key/*"],
                  conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": [alias]}},
                  wildcard_reason="A key's id is not known to this stack (another stack or account owns it); the "
                                  "condition admits only the key behind the named alias.")

        jobs = [f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:{kind}/pipelines-*"
                for kind in ("processing-job", "training-job")]
        allow(role, actions=JOB_ACTIONS, resources=jobs,
              wildcard_reason="SageMaker Pipelines names each step's job at run time (pipelines-<execution>-...).")
        group_name = naming.model_package_group_name(props.project, props.use_case)
        registry = f"arn:{stack.partition}:sagemaker:{stack.region}:{props.registry_account}"
        allow(role, actions=REGISTER_ACTIONS,
              resources=[self.group_arn, f"{registry}:model-package/{group_name}/*"],
              wildcard_reason="A version's ARN ends in the number the registry assigns; only this use case's group.")
        allow_sagemaker_jobs(role, log_groups=("ProcessingJobs", "TrainingJobs"))
        # The jobs' image, and the serving image the registered versions name (registering validates access to it).
        images = [props.image_uri] + ([props.serving_image_uri] if props.serving_image_uri else [])
        repositories = dict.fromkeys(
            f"arn:{stack.partition}:ecr:{region}:{account}:repository/{repository}"
            for account, region, repository in map(_image_repository, images))
        allow(role, actions=IMAGE_PULL, resources=list(repositories))
        allow(role, actions=["ecr:GetAuthorizationToken"], resources=["*"],
              wildcard_reason="ecr:GetAuthorizationToken has no resource to scope to.")
        allow_network_interfaces(role, actions=SAGEMAKER_NETWORK_INTERFACES, describe=SAGEMAKER_VPC_DESCRIBE)

    def _retraining_schedule(self, expression: str) -> None:
        self.dead_letter_queue = sqs.Queue(
            self,
            "ScheduleDeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
            redrive_allow_policy=DEAD_LETTER_QUEUE,
        )
        acknowledge_checkov(self.dead_letter_queue, "CKV_AWS_27", SQS_MANAGED_REASON)
        acknowledge(self.dead_letter_queue, "AwsSolutions-SQS3",
                    "This queue is the dead-letter queue of the retraining schedule's target; it needs no DLQ.")
        starter = iam.Role(self, "ScheduleRole", assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                           description="Starts the training pipeline on its retraining schedule")
        allow(starter, actions=["sagemaker:StartPipelineExecution"], resources=[self.pipeline_arn])
        self.schedule = events.CfnRule(
            self,
            "RetrainingSchedule",
            description=f"Retrain on the latest snapshot: start {self.pipeline_name}",
            schedule_expression=expression,
            state="ENABLED",
            targets=[events.CfnRule.TargetProperty(
                id="TrainingPipeline",
                arn=self.pipeline_arn,
                role_arn=starter.role_arn,
                sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[events.CfnRule.SageMakerPipelineParameterProperty(
                        name="SnapshotId", value="latest")]),
                dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
                retry_policy=events.CfnRule.RetryPolicyProperty(maximum_event_age_in_seconds=6 * 3600,
                                                                maximum_retry_attempts=8),
            )],
        )
        self.schedule.add_resource_dependency(self.pipeline)
        self.dead_letter_queue.add_to_resource_policy(iam.PolicyStatement(
            sid="ScheduleDeliversUndeliverableEvents",
            actions=["sqs:SendMessage"],
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            resources=[self.dead_letter_queue.queue_arn],
            conditions={"ArnEquals": {"aws:SourceArn": self.schedule.attr_arn}},
        ))


def _image_repository(image_uri: str) -> tuple[str, str, str]:
    """(account, region, repository) of an ECR image URI (``<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>``)."""
    host, _, path = image_uri.partition("/")
    parts = host.split(".")
    if len(parts) < 6 or parts[1:3] != ["dkr", "ecr"] or not path:
        raise ValueError(f"image_uri {image_uri!r} is not an ECR image URI")
    return parts[0], parts[3], path.split("@")[0].split(":")[0]


def placeholders(definition: str) -> Sequence[str]:
    """The ``${...}`` names a definition holds (each must be given to Fn::Sub)."""
    import re

    return sorted(set(re.findall(r"\$\{([^}]+)\}", definition)))
