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

from cdk_constructs.nag import acknowledge, acknowledge_checkov, acknowledge_control

#: Server access logs are kept this long (audit trail of who read the data).
ACCESS_LOG_RETENTION_DAYS = 365
#: Incomplete multipart uploads are cleaned up after this many days in every bucket.
MULTIPART_CLEANUP_DAYS = 7
LOG_BUCKET_UNLOGGED = ("This is the server access log bucket; logging it into itself would loop, and a second log "
                       "bucket would only move the question.")
NO_OBJECT_LOCK = ("Object Lock would refuse the expirations and deletions the platform relies on (lifecycle expiry, "
                  "noncurrent versions, data removed with its stack where the environment says so), and it cannot be "
                  "turned on for a deployed named bucket without replacing it; versioning keeps overwritten and "
                  "deleted objects recoverable, and the bucket policy and key decide who may delete.")
NO_EVENT_CONSUMER = ("Nothing reacts to object events in this bucket: its writers are the platform's own jobs and "
                     "services, whose completion is reported by their own state-change events; the access log "
                     "bucket records every request.")


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
    acknowledge(bucket, "AwsSolutions-S1", LOG_BUCKET_UNLOGGED)
    acknowledge_control(bucket, "s3_bucket_logging_enabled_check", LOG_BUCKET_UNLOGGED)
    acknowledge_checkov(bucket, "CKV_AWS_18", LOG_BUCKET_UNLOGGED, resource_type="AWS::S3::Bucket")
    acknowledge_control(bucket, "s3_bucket_default_encryption_kms_check",
                        "S3 server access log delivery writes only to a target bucket encrypted with S3-managed keys "
                        "(SSE-S3); SSE-KMS is not supported there.")
    acknowledge_control(bucket, "s3_event_notifications_enabled_check", NO_EVENT_CONSUMER.replace(
        "the access log bucket records every request.", "only S3's log delivery writes here."))
    acknowledge_control(bucket, "s3_bucket_object_lock_enabled_check", NO_OBJECT_LOCK)
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
    else:
        acknowledge_control(bucket, "s3_event_notifications_enabled_check", NO_EVENT_CONSUMER)
    acknowledge_control(bucket, "s3_bucket_object_lock_enabled_check", NO_OBJECT_LOCK)
    return bucket
