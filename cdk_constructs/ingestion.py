"""Ingestion: a landed file becomes typed, pseudonymized Parquet in raw, or rows and files in quarantine.

S3 sends landing's "Object Created" events to EventBridge; a rule invokes the function asynchronously. Events the
rule cannot deliver and invocations that keep failing end in dead-letter queues, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.bundling import Copy, LocalBundle
from cdk_constructs.lambda_layers import PYTHON_RUNTIME, data_layers
from cdk_constructs.nag import acknowledge, acknowledge_function
from cdk_constructs.permissions import (
    LAMBDA_NETWORK_INTERFACES,
    S3_READ,
    S3_WRITE,
    allow,
    allow_key,
    allow_list,
    allow_network_interfaces,
    allow_objects,
)
from cdk_constructs.queues import DEAD_LETTER_QUEUE
from modelwerk import naming

HANDLER = "handler.handler"
#: Dead letters are kept for the maximum SQS allows, so a failure found after a holiday can still be replayed.
DEAD_LETTER_RETENTION = Duration.days(14)
#: The X-Ray statement that active tracing adds to the role cannot be scoped to a resource.
TRACING_REASON = "X-Ray trace upload (xray:PutTraceSegments/PutTelemetryRecords, for active tracing) takes no resource."


@dataclass(frozen=True)
class IngestionFunctionProps:
    """Settings of the ingestion function.

    function_name: physical name (``naming.ingest_function_name``).
    source_root: the checkout; the asset is ``lambdas/ingest/`` plus ``modelwerk/core/`` from here.
    use_cases: the use cases whose raw folders the function may write.
    contract_parameter_prefix: SSM prefix of the contracts (``/<project>/<env>/use-cases/``).
    contract_parameter_names: the contract parameters it may read (one per use case).
    secret_name: name of the HMAC key secret (``naming.pseudonymization_secret_name``).
    memory_size: MiB (default 2048: pandas and pyarrow on files of tens of MB).
    timeout_minutes: per invocation (default 5).
    retry_attempts: retries of a failed event, by the rule and by the async invocation (default 2).
    log_retention: function log retention (default one year, as Control Tower CT.CLOUDWATCH.PR.2 asks).
    destroy_on_removal: delete the log group and secret with the stack (default False).
    """

    function_name: str
    source_root: Path
    use_cases: Sequence[str]
    contract_parameter_prefix: str
    contract_parameter_names: Sequence[str]
    secret_name: str
    memory_size: int = 2048
    timeout_minutes: int = 5
    retry_attempts: int = 2
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR
    destroy_on_removal: bool = False


class IngestionFunction(Construct):
    """The ingestion Lambda, its EventBridge trigger, dead-letter queues, log group and pseudonymization secret.

    Attributes: ``function``, ``role``, ``rule``, ``dead_letter_queue`` (failed async invocations),
    ``rule_dead_letter_queue`` (undeliverable events), ``log_group``, ``secret``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: IngestionFunctionProps,
        landing: s3.IBucket,
        raw: s3.IBucket,
        quarantine: s3.IBucket,
        key: kms.IKey,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.DESTROY if props.destroy_on_removal else RemovalPolicy.RETAIN

        self.secret = secretsmanager.Secret(
            self,
            "PseudonymizationKey",
            secret_name=props.secret_name,
            description="HMAC key that pseudonymizes personal columns at ingestion",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
            removal_policy=removal,
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "Not rotated on purpose: pseudonyms must stay stable so rows join across time; a new key would "
            "re-identify nobody but split every person's history. Rotate by a planned re-ingestion instead.",
        )

        self.dead_letter_queue = self._dead_letter_queue("DeadLetterQueue", key)
        self.rule_dead_letter_queue = self._dead_letter_queue("RuleDeadLetterQueue", key)
        acknowledge(
            self.rule_dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is the dead-letter queue of the EventBridge rule's target; a DLQ needs no DLQ of its own.",
        )

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/lambda/{props.function_name}",
            encryption_key=key,
            retention=props.log_retention,
            removal_policy=removal,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Ingestion function: read landing, write raw and quarantine",
        )

        bundle = LocalBundle(
            copies=[
                Copy(props.source_root / "lambdas" / "ingest"),
                Copy(props.source_root / "modelwerk" / "core", "modelwerk/core"),
            ]
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=props.function_name,
            description="Checks landed files against their contract and writes raw Parquet or quarantine",
            runtime=PYTHON_RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(props.source_root / "lambdas" / "ingest"), bundling=bundle.options()),
            layers=data_layers(self),
            memory_size=props.memory_size,
            timeout=Duration.minutes(props.timeout_minutes),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[security_group],
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=props.retry_attempts,
            environment={
                "RAW_BUCKET": raw.bucket_name,
                "QUARANTINE_BUCKET": quarantine.bucket_name,
                "CONTRACT_PARAMETER_PREFIX": props.contract_parameter_prefix,
                "PSEUDONYMIZATION_SECRET_ARN": self.secret.secret_arn,
                "POWERTOOLS_SERVICE_NAME": "ingest",
                "POWERTOOLS_METRICS_NAMESPACE": "Modelwerk",
            },
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to python3.12: the AWS SDK for pandas and Powertools layers it runs on are published for it; "
            "the runtime moves together with those layers (cdk_constructs/lambda_layers.py).",
        )
        acknowledge_function(self.function, in_vpc=True,
                             bounded_by="It runs once per file landed, and a file's ingestion is idempotent.")

        self.rule = events.Rule(
            self,
            "LandedObjectRule",
            description="A file landed: ingest it",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={"bucket": {"name": [landing.bucket_name]}},
            ),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    dead_letter_queue=self.rule_dead_letter_queue,
                    retry_attempts=props.retry_attempts,
                    max_event_age=Duration.hours(6),
                )
            ],
        )

        self._permissions(props, landing=landing, raw=raw, quarantine=quarantine, key=key)

    def _dead_letter_queue(self, construct_id: str, key: kms.IKey) -> sqs.Queue:
        return sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
            redrive_allow_policy=DEAD_LETTER_QUEUE,
        )

    def _permissions(
        self,
        props: IngestionFunctionProps,
        *,
        landing: s3.IBucket,
        raw: s3.IBucket,
        quarantine: s3.IBucket,
        key: kms.IKey,
    ) -> None:
        role = self.role
        allow(role, actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self.log_group.log_group_arn])
        allow_network_interfaces(role, actions=LAMBDA_NETWORK_INTERFACES, describe=["ec2:DescribeNetworkInterfaces"])
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]", TRACING_REASON)
        allow_objects(
            role,
            landing,
            prefixes=[""],
            actions=S3_READ,
            reason="A landed file can arrive under any use case folder; the function reads whichever the event names.",
        )
        allow_list(role, raw)
        allow_objects(
            role,
            raw,
            prefixes=[naming.raw_prefix(u) for u in props.use_cases],
            actions=S3_WRITE,
            reason="Raw objects are keyed by date partition and content hash inside the use case folder.",
        )
        allow_objects(
            role,
            raw,
            prefixes=[naming.ledger_prefix(u) for u in props.use_cases],
            actions=(*S3_READ, *S3_WRITE),
            reason="One ledger record per landed object, keyed by hashes, inside the use case's ledger folder.",
        )
        allow_objects(
            role,
            quarantine,
            prefixes=[""],
            actions=S3_WRITE,
            reason="Rejected rows and files are keyed by date and content hash; a file in an unknown folder is "
            "quarantined too.",
        )
        allow_key(role, key, encrypt=True)
        stack = Stack.of(self)
        allow(
            role,
            actions=["ssm:GetParameter"],
            resources=[
                stack.format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))
                for name in props.contract_parameter_names
            ],
        )
        self.secret.grant_read(role)
