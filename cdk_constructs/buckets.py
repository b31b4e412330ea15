"""The one way this platform creates an S3 bucket: encrypted, versioned, private, TLS only, logged, kept.

Every bucket (the data lake zones, the model artifacts) goes through ``secure_bucket`` so the defaults cannot
drift between constructs. Deleting data with the stack is possible only when the environment says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.nag import acknowledge

#: Server access logs are kept this long (audit trail of who read the data).
ACCESS_LOG_RETENTION_DAYS = 365
#: Incomplete multipart uploads are cleaned up after this many days in every bucket.
MULTIPART_CLEANUP_DAYS = 7


def access_log_bucket(scope: Construct, construct_id: str, *, bucket_name: str, destroy_on_removal: bool) -> s3.Bucket:
    """The bucket receiving the server access logs of the others (S3-managed keys: log delivery cannot use KMS)."""
    bucket = s3.Bucket(
        scope,
        construct_id,
        bucket_name=bucket_name,
        encryption=s3.BucketEncryption.S3_MANAGED,
        versioned=True,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=RemovalPolicy.DESTROY if destroy_on_removal else RemovalPolicy.RETAIN,
        auto_delete_objects=destroy_on_removal,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="expire-access-logs",
                expiration=Duration.days(ACCESS_LOG_RETENTION_DAYS),
                noncurrent_version_expiration=Duration.days(1),
                abort_incomplete_multipart_upload_after=Duration.days(MULTIPART_CLEANUP_DAYS),
            )
        ],
    )
    acknowledge(
        bucket,
        "AwsSolutions-S1",
        "This is the server access log bucket; logging it into itself would loop, and a second log bucket "
        "would only move the question.",
    )
    return bucket


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    bucket_name: str,
    encryption_key: kms.IKey,
    access_logs: s3.IBucket,
    destroy_on_removal: bool,
    lifecycle_rules: Sequence[s3.LifecycleRule] = (),
    event_bridge_enabled: bool = False,
) -> s3.Bucket:
    """SSE-KMS with ``encryption_key`` (bucket key on), versioned, public access blocked, TLS enforced, access logged.

    ``event_bridge_enabled`` turns on S3's native EventBridge delivery on the bucket itself (CloudFormation's
    ``NotificationConfiguration``), not through the notifications custom resource ``s3.Bucket`` would add: no
    extra Lambda function and role in the stack.
    """
    bucket = s3.Bucket(
        scope,
        construct_id,
        bucket_name=bucket_name,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=encryption_key,
        bucket_key_enabled=True,
        versioned=True,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=f"{bucket_name}/",
        removal_policy=RemovalPolicy.DESTROY if destroy_on_removal else RemovalPolicy.RETAIN,
        auto_delete_objects=destroy_on_removal,
        lifecycle_rules=[
            *lifecycle_rules,
            s3.LifecycleRule(
                id="abort-incomplete-uploads",
                abort_incomplete_multipart_upload_after=Duration.days(MULTIPART_CLEANUP_DAYS),
            ),
        ],
    )
    if event_bridge_enabled:
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
        )
    return bucket
