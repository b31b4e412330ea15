"""The promotion pipelines' artifact store in the registry account: a versioned, KMS-encrypted bucket and its key.

Each approval writes a new version of a use case's source object here and the pipeline keeps its artifacts here.
Staging's and prod's deploy actions run as roles in those accounts and read the artifacts across accounts: the bucket
and key policies name those accounts only, and only their named action roles within them (an account principal with
an ``aws:PrincipalArn`` condition, so neither policy needs the roles to exist when it is written). Nobody else outside
the registry account, never a wildcard principal, never over plain HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.buckets import access_log_bucket, secure_bucket
from cdk_constructs.encryption import platform_key
from cdk_constructs.permissions import KMS_DECRYPT, S3_READ
from modelwerk import naming



@dataclass(frozen=True)
class PromotionArtifactsProps:
    """project, env_name, account, region: name the buckets (``naming.bucket_name``) and the key alias.
    reader_roles: target account -> the ARNs of its roles that read artifacts (the deploy actions' roles).
    noncurrent_expiry_days: older versions of source objects and artifacts are kept this long (default 90: the
        versions an execution of the last three months deployed stay readable).
    destroy_on_removal: delete the buckets, their objects and the key with the stack (default False).
    """

    project: str
    env_name: str
    account: str
    region: str
    reader_roles: Mapping[str, Sequence[str]]
    noncurrent_expiry_days: int = 90
    destroy_on_removal: bool = False


class PromotionArtifacts(Construct):
    """Attributes: ``key``, ``bucket``, ``access_logs``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PromotionArtifactsProps) -> None:
        super().__init__(scope, construct_id)
        if not props.reader_roles:
            raise ValueError("PromotionArtifacts needs the target accounts' reader roles")
        empty = sorted(account for account, roles in props.reader_roles.items() if not roles)
        if empty:
            raise ValueError(f"accounts {empty} are given without a reader role")
        if props.account in props.reader_roles:
            raise ValueError("the registry account's own roles need no cross-account grant; give target accounts only")
        destroy = props.destroy_on_removal
        accounts = sorted(props.reader_roles)
        readers = [iam.AccountPrincipal(a) for a in accounts]
        reader_roles = {"ArnEquals": {"aws:PrincipalArn": sorted({arn for a in accounts
                                                                  for arn in props.reader_roles[a]})}}

        self.key = platform_key(self, "Key", alias=naming.promotion_key_alias(props.project, props.env_name),
                                description="Promotion artifacts; the target accounts' deploy action roles may decrypt",
                                destroy_on_removal=destroy)
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="TargetAccountsDecrypt",
            actions=list(KMS_DECRYPT),
            principals=readers,
            resources=["*"],
            conditions=reader_roles,
        ))

        def name(zone: str) -> str:
            return naming.bucket_name(props.project, props.env_name, zone, props.account, props.region)

        self.access_logs = access_log_bucket(self, "AccessLogs", bucket_name=name(naming.PROMOTION_LOG_ZONE),
                                             destroy_on_removal=destroy)
        self.bucket = secure_bucket(
            self,
            "Bucket",
            bucket_name=name(naming.PROMOTION_ZONE),
            encryption_key=self.key,
            access_logs=self.access_logs,
            destroy_on_removal=destroy,
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-noncurrent-versions",
                noncurrent_version_expiration=Duration.days(props.noncurrent_expiry_days),
            )],
        )
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="TargetAccountsReadArtifacts",
            actions=list(S3_READ),
            principals=readers,
            resources=[self.bucket.arn_for_objects("*")],
            conditions={**reader_roles, "Bool": {"aws:SecureTransport": "true"}},
        ))
