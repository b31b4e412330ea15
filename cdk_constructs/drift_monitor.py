"""The drift monitor of an environment: one Lambda function, a schedule per monitored endpoint, dead-letter queues.

Each schedule sends EventBridge's scheduled event with the endpoint in ``detail`` (``{"endpoint": "<name>"}``); the
function (``lambdas/drift_monitor``, with ``modelwerk/core``) reads the endpoint's capture from the serving bucket,
compares it with the baseline registered with the version it serves, writes a report under ``monitoring/`` and
publishes its metrics (Powertools, embedded metric format). It runs on the AWS SDK for pandas and Powertools layers
by ARN, in the VPC. It may read the capture and ground truth, write reports, describe this account's endpoints and
read versions and baselines in the registry account: nothing else.

Batch: for each use case scored by an inference pipeline (``batch_use_cases``), a rule sends the function SageMaker's
``Transform Job State Change`` (``Completed``) of jobs writing under the serving bucket's ``batch/`` prefix; the
function reads that batch's capture (``capture-batch/<use-case>/``) and the input objects it names, and may describe
the pipeline's transform jobs and models to find the version's baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.bundling import Copy, LocalBundle
from cdk_constructs.encryption import (allow_eventbridge_dead_letters, allow_log_group_encryption,
                                      limit_grants_to_aws_services)
from cdk_constructs.ids import pascal
from cdk_constructs.lambda_layers import PYTHON_RUNTIME, data_layers
from cdk_constructs.nag import acknowledge, acknowledge_function
from cdk_constructs.permissions import (LAMBDA_NETWORK_INTERFACES, S3_READ, S3_WRITE, allow, allow_network_interfaces,
                                        allow_objects)
from cdk_constructs.queues import DEAD_LETTER_QUEUE
from modelwerk import naming

HANDLER = "handler.handler"
DEAD_LETTER_RETENTION = Duration.days(14)
DESCRIBE_ACTIONS = ("sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel")
TRANSFORM_EVENT = "SageMaker Transform Job State Change"


@dataclass(frozen=True)
class DriftMonitorProps:
    """project, env_name: name the function (``naming.drift_monitor_function_name``).
    source_root: the checkout; the asset is ``lambdas/drift_monitor/`` plus ``modelwerk/core/``.
    endpoints: monitored endpoint -> (schedule expression, window minutes); single-model endpoints only.
    batch_use_cases: use cases whose inference pipeline's batches are monitored when their transform job completes.
    serving_bucket_name, serving_key_arn: the capture's bucket and key (reports and ground truth live there too).
    registry_account, artifact_bucket_name, artifact_key_alias, group_names: where versions and their baselines are.
    memory_size: MiB (default 3008: a window of a million captured rows in pandas).
    timeout_minutes: per run (default 10).
    """

    project: str
    env_name: str
    source_root: Path
    endpoints: Mapping[str, tuple[str, int]]
    serving_bucket_name: str
    serving_key_arn: str
    registry_account: str
    artifact_bucket_name: str
    artifact_key_alias: str
    group_names: tuple[str, ...] = field(default_factory=tuple)
    batch_use_cases: tuple[str, ...] = field(default_factory=tuple)
    memory_size: int = 3008
    timeout_minutes: int = 10
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR
    destroy_on_removal: bool = False


class DriftMonitor(Construct):
    """Attributes: ``key``, ``function``, ``role``, ``log_group``, ``dead_letter_queue``, ``rule_dead_letter_queue``,
    ``schedules`` (endpoint -> ``events.Rule``), ``batch_rule`` (``events.Rule`` or None)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: DriftMonitorProps, vpc: ec2.IVpc,
                 security_group: ec2.ISecurityGroup) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.DESTROY if props.destroy_on_removal else RemovalPolicy.RETAIN
        name = naming.drift_monitor_function_name(props.project, props.env_name)
        self.key = kms.Key(self, "Key", alias=f"alias/{props.project}/{props.env_name}/monitoring",
                           description="Drift monitor: logs, dead letters, on-call topic", enable_key_rotation=True,
                           removal_policy=removal)
        limit_grants_to_aws_services(self.key)
        allow_log_group_encryption(self.key)
        allow_eventbridge_dead_letters(self.key)
        self.log_group = logs.LogGroup(self, "LogGroup", log_group_name=f"/aws/lambda/{name}", encryption_key=self.key,
                                       retention=props.log_retention, removal_policy=removal)
        self.dead_letter_queue = self._queue("DeadLetterQueue")
        self.rule_dead_letter_queue = self._queue("RuleDeadLetterQueue")
        for queue in (self.dead_letter_queue, self.rule_dead_letter_queue):
            acknowledge(queue, "AwsSolutions-SQS3", "This queue is itself a dead-letter queue.")
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description="Drift monitor: read capture and baselines, write reports")
        bundle = LocalBundle(copies=[Copy(props.source_root / "lambdas" / "drift_monitor"),
                                     Copy(props.source_root / "modelwerk" / "core", "modelwerk/core")])
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=name,
            description="Compares an endpoint's captured requests with its version's baseline; publishes drift",
            runtime=PYTHON_RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(props.source_root / "lambdas" / "drift_monitor"),
                                         bundling=bundle.options()),
            layers=data_layers(self),
            memory_size=props.memory_size,
            timeout=Duration.minutes(props.timeout_minutes),
            role=self.role,
            log_group=self.log_group,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[security_group],
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=1,
            environment={
                "SERVING_BUCKET": props.serving_bucket_name,
                "CAPTURE_PREFIX": naming.capture_prefix(),
                "REPORT_PREFIX": naming.MONITORING_REPORT_PREFIX,
                "GROUND_TRUTH_PREFIX": naming.GROUND_TRUTH_PREFIX,
                "BATCH_CAPTURE_PREFIX": naming.BATCH_CAPTURE_ROOT,
                "POWERTOOLS_METRICS_NAMESPACE": naming.MONITORING_NAMESPACE,
            },
        )
        acknowledge(self.function, "AwsSolutions-L1",
                    "Pinned to python3.12: the AWS SDK for pandas and Powertools layers it runs on are published for "
                    "it; the runtime moves together with those layers (cdk_constructs/lambda_layers.py).")
        acknowledge_function(self.function, in_vpc=True,
                             bounded_by="It runs once per monitored endpoint and window, on a schedule.")
        self.schedules: dict[str, events.Rule] = {}
        for endpoint, (schedule, window_minutes) in sorted(props.endpoints.items()):
            self.schedules[endpoint] = events.Rule(
                self,
                f"{pascal(endpoint)}Schedule",
                description=f"Monitor {endpoint}'s data drift over the last {window_minutes} minutes",
                schedule=events.Schedule.expression(schedule),
                targets=[targets.LambdaFunction(
                    self.function,
                    event=events.RuleTargetInput.from_object({
                        "version": "0", "id": events.EventField.event_id, "detail-type": "Scheduled Event",
                        "source": "aws.events", "account": events.EventField.account, "time": events.EventField.time,
                        "region": events.EventField.region, "resources": [events.EventField.from_path("$.resources[0]")],
                        "detail": {"endpoint": endpoint, "window_minutes": window_minutes}}),
                    dead_letter_queue=self.rule_dead_letter_queue,
                    retry_attempts=2,
                    max_event_age=Duration.hours(1),
                )],
            )
        self.batch_rule: events.Rule | None = None
        if props.batch_use_cases:
            self.batch_rule = events.Rule(
                self,
                "BatchRule",
                description="Monitor each inference pipeline's batch when its transform job completes",
                event_pattern=events.EventPattern(
                    source=["aws.sagemaker"], detail_type=[TRANSFORM_EVENT],
                    detail={"TransformJobStatus": ["Completed"], "TransformOutput": {"S3OutputPath": [
                        {"prefix": f"s3://{props.serving_bucket_name}/{naming.batch_prefix(u)}"}
                        for u in sorted(props.batch_use_cases)]}}),
                targets=[targets.LambdaFunction(self.function, dead_letter_queue=self.rule_dead_letter_queue,
                                                retry_attempts=2, max_event_age=Duration.hours(1))],
            )
        self._permissions(props)
        if props.batch_use_cases:
            self._batch_permissions(props)

    def _queue(self, construct_id: str) -> sqs.Queue:
        return sqs.Queue(self, construct_id, encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.key,
                         enforce_ssl=True, retention_period=DEAD_LETTER_RETENTION,
                         redrive_allow_policy=DEAD_LETTER_QUEUE)

    def _permissions(self, props: DriftMonitorProps) -> None:
        role, stack = self.role, Stack.of(self)
        allow(role, actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self.log_group.log_group_arn])
        allow_network_interfaces(role, actions=LAMBDA_NETWORK_INTERFACES, describe=["ec2:DescribeNetworkInterfaces"])
        serving = s3.Bucket.from_bucket_name(self, "ServingBucket", props.serving_bucket_name)
        self.serving_bucket = serving
        allow(role, actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[props.serving_key_arn])
        endpoints = sorted(props.endpoints)
        if endpoints:
            self._endpoint_permissions(props, serving, endpoints)
        packages = [f"arn:{stack.partition}:sagemaker:{stack.region}:{props.registry_account}:model-package/{g}/*"
                    for g in props.group_names]
        if packages:
            allow(role, actions=["sagemaker:DescribeModelPackage"], resources=packages,
                  wildcard_reason="Versions are numbered as they are registered in each use case's group.")
        artifacts = s3.Bucket.from_bucket_name(self, "ArtifactBucket", props.artifact_bucket_name)
        allow_objects(role, artifacts, prefixes=["pipelines/"], actions=S3_READ,
                      reason="Baselines are step outputs of the executions that registered each version.")
        allow(role, actions=["kms:Decrypt"], resources=[
            f"arn:{stack.partition}:kms:{stack.region}:{props.registry_account}:key/*"],
            conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": [props.artifact_key_alias]}},
            wildcard_reason="The registry's key id is not known to this stack; the condition admits only the key "
                            "behind the named alias.")

    def _endpoint_permissions(self, props: DriftMonitorProps, serving: s3.IBucket, endpoints: list[str]) -> None:
        role, stack = self.role, Stack.of(self)
        allow_objects(role, serving, prefixes=[f"{naming.capture_prefix()}/{e}/" for e in endpoints]
                      + [naming.ground_truth_prefix(e) for e in endpoints], actions=S3_READ,
                      reason="Capture objects are keyed by variant and hour, ground truth by upload, under each "
                             "monitored endpoint's own prefix.")
        allow_objects(role, serving, prefixes=[f"{naming.MONITORING_REPORT_PREFIX}/{e}/" for e in endpoints],
                      actions=S3_WRITE, reason="One report per run, keyed by its time, under each endpoint's prefix.")
        allow(role, actions=["s3:ListBucket"], resources=[serving.bucket_arn], conditions={"StringLike": {
            "s3:prefix": [f"{naming.capture_prefix()}/{e}/*" for e in endpoints]
            + [f"{naming.ground_truth_prefix(e)}*" for e in endpoints]}})
        allow(role, actions=DESCRIBE_ACTIONS, resources=[
            stack.format_arn(service="sagemaker", resource=kind, resource_name=f"{e}*")
            for kind in ("endpoint", "endpoint-config", "model") for e in endpoints],
            wildcard_reason="An endpoint's configurations and models are named at deployment (<endpoint>-<suffix>).")

    def _batch_permissions(self, props: DriftMonitorProps) -> None:
        """Read each scored use case's batch capture and the records it names; write its batch reports; describe the
        inference pipelines' transform jobs and the models they ran."""
        role, stack, serving = self.role, Stack.of(self), self.serving_bucket
        use_cases = sorted(props.batch_use_cases)
        allow_objects(role, serving, prefixes=[naming.batch_capture_prefix(u) for u in use_cases]
                      + [naming.batch_prefix(u) for u in use_cases], actions=S3_READ,
                      reason="A batch's capture manifests and the records they name live under each scored use "
                             "case's own prefixes, one folder per pipeline execution.")
        allow_objects(role, serving, prefixes=[f"{naming.MONITORING_REPORT_PREFIX}/batch/{u}/" for u in use_cases],
                      actions=S3_WRITE, reason="One report per transform job, under each use case's prefix.")
        allow(role, actions=["s3:ListBucket"], resources=[serving.bucket_arn], conditions={"StringLike": {
            "s3:prefix": [f"{naming.batch_capture_prefix(u)}*" for u in use_cases]}})
        allow(role, actions=["sagemaker:DescribeTransformJob"],
              resources=[stack.format_arn(service="sagemaker", resource="transform-job", resource_name="pipelines-*")],
              wildcard_reason="SageMaker Pipelines names each transform job at run time (pipelines-<execution>-...).")
        allow(role, actions=["sagemaker:DescribeModel"],
              resources=[stack.format_arn(service="sagemaker", resource="model", resource_name="*")],
              wildcard_reason="SageMaker Pipelines names the model a pipeline creates at run time.")
