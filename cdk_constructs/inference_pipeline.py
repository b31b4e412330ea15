"""A use case's inference pipeline in one environment: the SageMaker Pipeline that scores a snapshot in batch with the
version the environment serves, its execution role, the predictions' Glue table, and the rules that start it.

It lives in the environment's serving stack: that stack exists in every workload environment, owns the serving
bucket and key the transform writes its output and data capture with, and deploys with the environment (the
endpoint stacks of the endpoints stage must stay free of assets, and the training stack exists only where models
are trained). The pipeline scores with the version the use case's endpoint serves, found at run time, so a promotion
never redeploys it.

The definition is the JSON ``sagemaker_pipelines/inference_pipeline.py`` builds at synth, offline; deploy-time
locations are ``${...}`` placeholders filled by ``Fn::Sub``. The role may read the code and contract assets, the use
case's snapshots and curated objects, the registry's version files of the use case; read and write its own files
under ``batch/<use-case>/`` and write the batch capture under ``capture-batch/<use-case>/`` of the serving bucket;
write predictions under ``predictions/<use-case>/`` of the analytics bucket; run the pipeline's jobs and create the
models they need; describe the endpoint it scores for: nothing else.

Starts: a person (``StartPipelineExecution``), the schedule ``UseCaseConfig.batch.schedule`` (none: no rule) and,
with ``batch.on_new_snapshot``, the preparation job's ``Glue Job State Change`` (``SUCCEEDED``): the job publishes
the use case's snapshot at the end of every successful run (a table that did not change keeps its snapshot id, and
is scored again: with an hourly preparation schedule, prefer ``batch.schedule``). The exact signal of a new snapshot
is the creation of its manifest object (``_snapshots/<use-case>/<id>.json``, written once per id), which needs the
curated bucket's EventBridge notifications; the data lake does not turn them on today.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.data_catalog import parquet_table
from cdk_constructs.nag import acknowledge, acknowledge_checkov
from cdk_constructs.permissions import (SAGEMAKER_NETWORK_INTERFACES, SAGEMAKER_VPC_DESCRIBE, S3_READ, S3_WRITE,
                                        allow, allow_network_interfaces, allow_objects, allow_sagemaker_jobs)
from cdk_constructs.queues import DEAD_LETTER_QUEUE, SQS_MANAGED_REASON
from modelwerk import naming
from modelwerk.core.contract import GLUE_TYPES, Contract
from modelwerk.core.layout import curated_prefix, snapshot_prefix
from modelwerk.settings import BatchConfig

ASSET_BUCKET, CODE_KEY, CONTRACT_KEY, SERVING_KEY = "AssetBucket", "CodeKey", "ContractKey", "ServingKey"
SUBNET, SECURITY_GROUP = "Subnet", "SecurityGroup"
JOB_KINDS = ("processing-job", "transform-job")
JOB_ACTIONS = ("sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
               "sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob", "sagemaker:StopTransformJob",
               "sagemaker:AddTags")
MODEL_ACTIONS = ("sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:AddTags")
ENDPOINT_DESCRIBE = ("sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig")
IMAGE_PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
KMS_USE = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")
DEAD_LETTER_RETENTION = Duration.days(14)
#: Lineage columns of the predictions table (``steps/batch_common.LINEAGE_COLUMNS``) with their Glue types.
LINEAGE_COLUMNS = (("model_package_arn", "string"), ("model_version", "bigint"), ("snapshot_id", "string"),
                   ("execution_id", "string"), ("scored_at", "timestamp"))


@dataclass(frozen=True)
class InferencePipelineProps:
    """project, env_name, contract: name the pipeline, its role and table (``modelwerk.naming``).
    contract_file: the use case's contract.json (an asset the export and write steps read).
    code_archive: the step code asset (``sagemaker_pipelines.code_archive``).
    image_uri: the processing steps' image (the training pipeline's framework image).
    serving_image_repository_arn: the registry's serving image repository (the model the transform runs).
    endpoint_name: the single-model endpoint whose version is scored by default.
    serving_bucket_name, serving_key: the environment's serving bucket and key (work files, output, capture).
    curated_bucket_name, analytics_bucket_name, data_key_alias: the lake's zones and their key.
    registry_account, artifact_bucket_name, artifact_key_alias: where the versions' files are.
    batch: the schedule, the new-snapshot rule and the transform's capacity.
    processing_instance_type: the processing steps' instances.
    subnet_ids, security_group_id: every job and the model run there.
    """

    project: str
    env_name: str
    contract: Contract
    contract_file: str
    code_archive: s3_assets.Asset
    image_uri: str
    serving_image_repository_arn: str
    endpoint_name: str
    serving_bucket_name: str
    serving_key: kms.IKey
    curated_bucket_name: str
    analytics_bucket_name: str
    data_key_alias: str
    registry_account: str
    artifact_bucket_name: str
    artifact_key_alias: str
    batch: BatchConfig
    subnet_ids: Sequence[str]
    security_group_id: str
    processing_instance_type: str = "ml.m5.large"


class InferencePipeline(Construct):
    """Attributes: ``pipeline`` (``CfnPipeline``), ``pipeline_name``, ``pipeline_arn``, ``role``, ``definition`` (with
    its placeholders), ``table`` (the predictions' ``CfnTable``), ``schedule`` and ``snapshot_rule`` (``CfnRule`` or
    None), ``dead_letter_queue`` (when a rule exists)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: InferencePipelineProps) -> None:
        super().__init__(scope, construct_id)
        from sagemaker_pipelines.inference_pipeline import build_inference_definition

        stack = Stack.of(self)
        use_case = props.contract.use_case
        self.pipeline_name = naming.inference_pipeline_name(props.project, props.env_name, use_case)
        role_name = naming.inference_role_name(props.project, props.env_name, use_case)
        self.contract_asset = s3_assets.Asset(self, "Contract", path=props.contract_file)
        if not props.subnet_ids:
            raise ValueError("an inference pipeline's jobs run in the VPC: give subnet_ids and security_group_id")
        network = {f"{SUBNET}{i}": subnet for i, subnet in enumerate(props.subnet_ids)}
        network[SECURITY_GROUP] = props.security_group_id
        self.analytics_database = naming.database_name(props.project, props.env_name, "analytics")
        self.definition = build_inference_definition(
            use_case=use_case,
            role_arn=f"arn:aws:iam::{stack.account}:role/{role_name}",
            region=stack.region,
            code_uri=f"s3://${{{ASSET_BUCKET}}}/${{{CODE_KEY}}}",
            contract_uri=f"s3://${{{ASSET_BUCKET}}}/${{{CONTRACT_KEY}}}",
            image_uri=props.image_uri,
            serving_bucket=props.serving_bucket_name,
            serving_key_arn=f"${{{SERVING_KEY}}}",
            curated_bucket=props.curated_bucket_name,
            analytics_bucket=props.analytics_bucket_name,
            analytics_database=self.analytics_database,
            endpoint_name=props.endpoint_name,
            instance_type=props.batch.instance_type,
            instance_count=props.batch.instance_count,
            max_payload_mb=props.batch.max_payload_mb,
            max_concurrent_transforms=props.batch.max_concurrent_transforms,
            processing_instance_type=props.processing_instance_type,
            subnet_ids=[f"${{{SUBNET}{i}}}" for i in range(len(props.subnet_ids))],
            security_group_ids=[f"${{{SECURITY_GROUP}}}"],
        )
        self.role = iam.Role(self, "Role", role_name=role_name,
                             assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description=f"{use_case} inference pipeline, its jobs and the model it creates")
        self._permissions(props, stack)
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=self.pipeline_name,
            pipeline_display_name=self.pipeline_name,
            pipeline_description=f"Scores {use_case} snapshots in batch with the version {props.endpoint_name} serves",
            role_arn=self.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": Fn.sub(self.definition, {
                ASSET_BUCKET: props.code_archive.s3_bucket_name,
                CODE_KEY: props.code_archive.s3_object_key,
                CONTRACT_KEY: self.contract_asset.s3_object_key,
                SERVING_KEY: props.serving_key.key_arn,
                **network,
            })},
        )
        self.pipeline.node.add_dependency(self.role)
        self.pipeline_arn = (f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:"
                             f"pipeline/{self.pipeline_name}")
        self.table = self._table(props, stack)

        self.schedule: events.CfnRule | None = None
        self.snapshot_rule: events.CfnRule | None = None
        self.dead_letter_queue: sqs.Queue | None = None
        if props.batch.schedule or props.batch.on_new_snapshot:
            self._starter()
        if props.batch.schedule:
            self.schedule = self._rule("Schedule", f"Score the latest {use_case} snapshot on schedule",
                                       "schedule", schedule_expression=props.batch.schedule)
        if props.batch.on_new_snapshot:
            job = naming.preparation_job_name(props.project, props.env_name, use_case)
            self.snapshot_rule = self._rule(
                "NewSnapshot", f"Score {use_case}'s snapshot when its preparation publishes one", "new-snapshot",
                event_pattern={"source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
                               "detail": {"jobName": [job], "state": ["SUCCEEDED"]}})

    def _table(self, props: InferencePipelineProps, stack: Stack) -> glue.CfnTable:
        """The predictions table: key columns, prediction (typed as the label), lineage; daily ``dt`` projected."""
        contract = props.contract
        keys = list(dict.fromkeys([*contract.key, contract.timestamp]))
        columns = [(name, GLUE_TYPES[contract.column(name).type]) for name in keys]
        columns += [("prediction", GLUE_TYPES[contract.column(contract.label).type]), *LINEAGE_COLUMNS]
        location = f"s3://{props.analytics_bucket_name}/{naming.predictions_prefix(contract.use_case)}"
        return parquet_table(
            self,
            "PredictionsTable",
            account=stack.account,
            database_name=self.analytics_database,
            name=naming.predictions_table_name(contract.use_case),
            description=f"{contract.use_case}: batch predictions with their lineage ({self.pipeline_name})",
            columns=columns,
            location=location,
        )

    def _permissions(self, props: InferencePipelineProps, stack: Stack) -> None:
        role, use_case = self.role, props.contract.use_case
        partition, region, account = stack.partition, stack.region, stack.account
        assets = s3.Bucket.from_bucket_name(self, "AssetBucket", props.code_archive.s3_bucket_name)
        for asset in (props.code_archive, self.contract_asset):
            allow_objects(role, assets, prefixes=[asset.s3_object_key], actions=S3_READ,
                          reason="one asset object, named exactly")

        curated = s3.Bucket.from_bucket_name(self, "CuratedBucket", props.curated_bucket_name)
        allow_objects(role, curated, prefixes=[snapshot_prefix(use_case), curated_prefix(use_case)], actions=S3_READ,
                      reason="Export reads the use case's snapshot manifests and the curated objects they pin (at "
                             "their versions), under the use case's own prefixes.")
        serving = s3.Bucket.from_bucket_name(self, "ServingBucket", props.serving_bucket_name)
        work, capture = naming.batch_prefix(use_case), naming.batch_capture_prefix(use_case)
        allow_objects(role, serving, prefixes=[work], actions=(*S3_READ, *S3_WRITE),
                      reason="Executions keep their files (and a person's InputS3Uri files) under batch/<use-case>/, "
                             "one folder per execution id that SageMaker assigns at run time.")
        allow_objects(role, serving, prefixes=[capture], actions=S3_WRITE,
                      reason="The transform writes its data capture under capture-batch/<use-case>/<execution id>/.")
        allow(role, actions=["s3:ListBucket"], resources=[serving.bucket_arn],
              conditions={"StringLike": {"s3:prefix": [f"{work}*", f"{capture}*"]}})
        allow(role, actions=KMS_USE, resources=[props.serving_key.key_arn])
        analytics = s3.Bucket.from_bucket_name(self, "AnalyticsBucket", props.analytics_bucket_name)
        allow_objects(role, analytics, prefixes=[naming.predictions_prefix(use_case)], actions=S3_WRITE,
                      reason="Predictions land in daily partitions of the use case's predictions table, one object "
                             "per execution.")
        artifacts = s3.Bucket.from_bucket_name(self, "ArtifactBucket", props.artifact_bucket_name)
        allow_objects(role, artifacts, prefixes=[naming.pipeline_output_prefix(use_case)], actions=S3_READ,
                      reason="A version's lineage and model artifact are outputs of the training execution that "
                             "registered it, under pipelines/<use-case>/.")
        keys = {props.data_key_alias: (account, KMS_USE),
                props.artifact_key_alias: (props.registry_account, ("kms:Decrypt", "kms:DescribeKey"))}
        for alias, (owner, actions) in keys.items():
            allow(role, actions=actions, resources=[f"arn:{partition}:kms:{region}:{owner}:key/*"],
                  conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": [alias]}},
                  wildcard_reason="A key's id is not known to this stack (another stack or account owns it); the "
                                  "condition admits only the key behind the named alias.")

        allow(role, actions=JOB_ACTIONS, resources=[f"arn:{partition}:sagemaker:{region}:{account}:{kind}/pipelines-*"
                                                    for kind in JOB_KINDS],
              wildcard_reason="SageMaker Pipelines names each step's job at run time (pipelines-<execution>-...).")
        allow(role, actions=MODEL_ACTIONS, resources=[f"arn:{partition}:sagemaker:{region}:{account}:model/*"],
              wildcard_reason="SageMaker Pipelines names the model of the CreateModel step at run time.")
        endpoint = props.endpoint_name
        allow(role, actions=ENDPOINT_DESCRIBE, resources=[
            f"arn:{partition}:sagemaker:{region}:{account}:endpoint/{endpoint}",
            f"arn:{partition}:sagemaker:{region}:{account}:endpoint-config/{endpoint}*"],
            wildcard_reason="An endpoint's configurations are named at deployment (<endpoint>-<suffix>).")
        group = naming.model_package_group_name(props.project, use_case)
        allow(role, actions=["sagemaker:DescribeModelPackage"],
              resources=[f"arn:{partition}:sagemaker:{region}:{props.registry_account}:model-package/{group}/*"],
              wildcard_reason="Versions are numbered as they are registered in the use case's group.")
        allow_sagemaker_jobs(role, log_groups=("ProcessingJobs", "TransformJobs"))
        host, _, path = props.image_uri.partition("/")
        parts = host.split(".")
        image_repository = f"arn:{partition}:ecr:{parts[3]}:{parts[0]}:repository/{path.split(':')[0]}"
        allow(role, actions=IMAGE_PULL, resources=[image_repository, props.serving_image_repository_arn])
        allow(role, actions=["ecr:GetAuthorizationToken"], resources=["*"],
              wildcard_reason="ecr:GetAuthorizationToken has no resource to scope to.")
        allow_network_interfaces(role, actions=SAGEMAKER_NETWORK_INTERFACES, describe=SAGEMAKER_VPC_DESCRIBE)

    def _starter(self) -> None:
        self.dead_letter_queue = sqs.Queue(self, "StartDeadLetterQueue", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                           enforce_ssl=True, retention_period=DEAD_LETTER_RETENTION,
                                           redrive_allow_policy=DEAD_LETTER_QUEUE)
        acknowledge_checkov(self.dead_letter_queue, "CKV_AWS_27", SQS_MANAGED_REASON)
        acknowledge(self.dead_letter_queue, "AwsSolutions-SQS3",
                    "This queue is the dead-letter queue of the rules that start the inference pipeline.")
        self.starter = iam.Role(self, "StartRole", assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                                description="Starts the inference pipeline on its schedule or a new snapshot")
        allow(self.starter, actions=["sagemaker:StartPipelineExecution"], resources=[self.pipeline_arn])

    def _rule(self, construct_id: str, description: str, trigger: str, **source: object) -> events.CfnRule:
        assert self.dead_letter_queue is not None
        rule = events.CfnRule(
            self,
            construct_id,
            description=description,
            state="ENABLED",
            targets=[events.CfnRule.TargetProperty(
                id="InferencePipeline",
                arn=self.pipeline_arn,
                role_arn=self.starter.role_arn,
                sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[
                        events.CfnRule.SageMakerPipelineParameterProperty(name="SnapshotId", value="latest"),
                        events.CfnRule.SageMakerPipelineParameterProperty(name="TriggeredBy", value=trigger)]),
                dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
                retry_policy=events.CfnRule.RetryPolicyProperty(maximum_event_age_in_seconds=6 * 3600,
                                                                maximum_retry_attempts=8),
            )],
            **source,
        )
        rule.add_resource_dependency(self.pipeline)
        self.dead_letter_queue.add_to_resource_policy(iam.PolicyStatement(
            sid=f"{construct_id}DeliversUndeliverableEvents",
            actions=["sqs:SendMessage"],
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            resources=[self.dead_letter_queue.queue_arn],
            conditions={"ArnEquals": {"aws:SourceArn": rule.attr_arn}},
        ))
        return rule
