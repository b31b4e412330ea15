"""The registry account's model artifact store: a bucket and KMS key that only the workload accounts may read.

Models are trained in dev, registered once, and deployed unchanged to staging and prod. Each workload account can
read the artifacts and decrypt them; the training accounts' pipelines may also write their executions' outputs under
``pipelines/`` (never delete); nobody else, and never over plain HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.encryption import platform_key
from cdk_constructs.buckets import access_log_bucket, secure_bucket
from modelwerk import naming

ARTIFACT_READ = ("s3:GetObject", "s3:GetObjectVersion")
BUCKET_READ = ("s3:ListBucket", "s3:GetBucketLocation")
#: Where training pipelines write (``naming.pipeline_output_prefix``, one folder per use case).
PIPELINE_OUTPUTS = "pipelines/"


@dataclass(frozen=True)
class ModelArtifactStoreProps:
    """project, env_name, account, region: name the buckets (``naming.bucket_name``).
    reader_accounts: workload account ids allowed to read and decrypt (dev, staging, prod).
    writer_accounts: accounts whose training pipelines write under ``pipelines/`` (must also be readers).
    noncurrent_expiry_days: overwritten artifact versions are kept this long (default 90).
    destroy_on_removal: delete bucket, objects and key with the stack (default False).
    """

    project: str
    env_name: str
    account: str
    region: str
    reader_accounts: Sequence[str]
    writer_accounts: Sequence[str] = ()
    noncurrent_expiry_days: int = 90
    destroy_on_removal: bool = False


class ModelArtifactStore(Construct):
    """Attributes: ``key``, ``bucket`` (model artifacts), ``access_logs``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ModelArtifactStoreProps) -> None:
        super().__init__(scope, construct_id)
        if not props.reader_accounts:
            raise ValueError("ModelArtifactStore needs at least one reader account (the workload environments)")
        unknown = set(props.writer_accounts) - set(props.reader_accounts)
        if unknown:
            raise ValueError(f"writer accounts {sorted(unknown)} must also be reader accounts")
        destroy = props.destroy_on_removal
        readers = [iam.AccountPrincipal(a) for a in dict.fromkeys(props.reader_accounts)]
        writers = [iam.AccountPrincipal(a) for a in dict.fromkeys(props.writer_accounts)]

        self.key = platform_key(self, "Key", alias=f"alias/{props.project}/{props.env_name}/model-artifacts",
                                description="Model artifacts of the registry; workload accounts may decrypt",
                                destroy_on_removal=destroy)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="WorkloadAccountsDecrypt",
                actions=["kms:Decrypt", "kms:DescribeKey"],
                principals=readers,
                resources=["*"],
            )
        )
        if writers:
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="TrainingAccountsEncrypt",
                    actions=["kms:Encrypt", "kms:GenerateDataKey"],
                    principals=writers,
                    resources=["*"],
                )
            )

        def name(zone: str) -> str:
            return naming.bucket_name(props.project, props.env_name, zone, props.account, props.region)

        self.access_logs = access_log_bucket(
            self, "AccessLogs", bucket_name=name("access-logs"), destroy_on_removal=destroy
        )
        self.bucket = secure_bucket(
            self,
            "Bucket",
            bucket_name=name("model-artifacts"),
            encryption_key=self.key,
            access_logs=self.access_logs,
            destroy_on_removal=destroy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(props.noncurrent_expiry_days),
                )
            ],
        )
        tls_only = {"Bool": {"aws:SecureTransport": "true"}}
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="WorkloadAccountsReadArtifacts",
                actions=list(ARTIFACT_READ),
                principals=readers,
                resources=[self.bucket.arn_for_objects("*")],
                conditions=tls_only,
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="WorkloadAccountsListArtifacts",
                actions=list(BUCKET_READ),
                principals=readers,
                resources=[self.bucket.bucket_arn],
                conditions=tls_only,
            )
        )
        if writers:
            self.bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="TrainingAccountsWritePipelineOutputs",
                    actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                    principals=writers,
                    resources=[self.bucket.arn_for_objects(f"{PIPELINE_OUTPUTS}*")],
                    conditions=tls_only,
                )
            )
