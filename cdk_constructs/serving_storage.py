"""An environment's serving bucket: endpoints' data capture and multi-model endpoints' models, under one KMS key.

Layout (``modelwerk.naming``)::

    capture/<endpoint>/<variant>/yyyy/mm/dd/hh/...jsonl   what the endpoints capture (input and output), read by the
                                                          drift monitor; expires after ``capture_expiry_days``
    models/<endpoint>/<model>.tar.gz                      a multi-model endpoint's models, loaded on first call

Secure like every platform bucket (``cdk_constructs.buckets``): SSE-KMS, versioned, TLS only, public access
blocked, server access logs into the environment's serving log bucket, kept when the stack goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.encryption import platform_key
from cdk_constructs.buckets import access_log_bucket, secure_bucket
from modelwerk import naming

#: The zone names of the two buckets (``naming.bucket_name``): ``serving`` is what ``Platform.bucket`` resolves.
SERVING_ZONE = "serving"
LOG_ZONE = "serving-logs"


@dataclass(frozen=True)
class ServingStorageProps:
    """project, env_name, account, region: name the buckets (``naming.bucket_name``) and the key alias
    (``naming.serving_key_alias``).
    capture_expiry_days: captured requests are deleted this long after they were written (default 365: a year of
        drift history).
    noncurrent_expiry_days: overwritten or deleted objects (a replaced model) are kept this long (default 30).
    destroy_on_removal: delete the buckets, their objects and the key with the stack (default False).
    """

    project: str
    env_name: str
    account: str
    region: str
    capture_expiry_days: int = 365
    noncurrent_expiry_days: int = 30
    destroy_on_removal: bool = False

    def bucket_name(self, zone: str) -> str:
        return naming.bucket_name(self.project, self.env_name, zone, self.account, self.region)


class ServingStorage(Construct):
    """Attributes: ``key``, ``bucket`` (serving), ``access_logs``, ``bucket_name`` (a plain string)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ServingStorageProps) -> None:
        super().__init__(scope, construct_id)
        if props.capture_expiry_days < 1 or props.noncurrent_expiry_days < 1:
            raise ValueError("capture_expiry_days and noncurrent_expiry_days must be at least 1")
        destroy = props.destroy_on_removal
        self.bucket_name = props.bucket_name(SERVING_ZONE)
        self.key = platform_key(self, "Key", alias=naming.serving_key_alias(props.project, props.env_name),
                                description=f"Serving of {props.project} {props.env_name}: data capture, multi-model artifacts, "
                                            "volumes",
                                destroy_on_removal=destroy)
        self.access_logs = access_log_bucket(
            self, "AccessLogs", bucket_name=props.bucket_name(LOG_ZONE), destroy_on_removal=destroy
        )
        self.bucket = secure_bucket(
            self,
            "Bucket",
            bucket_name=self.bucket_name,
            encryption_key=self.key,
            access_logs=self.access_logs,
            destroy_on_removal=destroy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-capture",
                    prefix=f"{naming.capture_prefix()}/",
                    expiration=Duration.days(props.capture_expiry_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                # A batch execution's capture and working files (exports, transform output) age like capture: the
                # predictions themselves are kept in the analytics zone.
                s3.LifecycleRule(
                    id="expire-batch-capture",
                    prefix=f"{naming.BATCH_CAPTURE_ROOT}/",
                    expiration=Duration.days(props.capture_expiry_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-batch-work",
                    prefix=f"{naming.BATCH_ROOT}/",
                    expiration=Duration.days(props.capture_expiry_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(props.noncurrent_expiry_days),
                ),
            ],
        )
