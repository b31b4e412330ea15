"""The data lake's storage: one bucket per zone under one KMS key, named as ADR 0001 says."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.buckets import access_log_bucket, secure_bucket
from cdk_constructs.encryption import allow_eventbridge_dead_letters, allow_log_group_encryption, platform_key
from modelwerk import naming

#: Every bucket of a workload environment, in the order of the data flow (then the support buckets).
BUCKET_ZONES = (*naming.ZONES, "athena-results", "access-logs")


@dataclass(frozen=True)
class DataLakeZonesProps:
    """Where and how long the zones keep data.

    project, env_name, account, region: go into every bucket name (``naming.bucket_name``).
    landing_expiry_days: landing objects are deleted this long after arrival (they are in raw by then).
    quarantine_expiry_days: rejected rows and files are kept this long for inspection.
    noncurrent_expiry_days: overwritten versions in landing, raw, analytics and quarantine are kept this long
        (default 30). Curated keeps every version: snapshots pin object versions.
    athena_results_expiry_days: query results are scratch data (default 30).
    destroy_on_removal: delete the buckets, their objects and the key with the stack (default False: keep them).
    """

    project: str
    env_name: str
    account: str
    region: str
    landing_expiry_days: int
    quarantine_expiry_days: int
    noncurrent_expiry_days: int = 30
    athena_results_expiry_days: int = 30
    destroy_on_removal: bool = False

    def bucket_name(self, zone: str) -> str:
        return naming.bucket_name(self.project, self.env_name, zone, self.account, self.region)


class DataLakeZones(Construct):
    """Buckets landing, raw, curated, analytics, quarantine, athena-results (SSE-KMS with ``key``) and access-logs.

    Landing sends its events to EventBridge (the ingestion trigger). ``buckets`` maps every zone name (and
    ``athena-results``, ``access-logs``) to its bucket; each is also an attribute.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: DataLakeZonesProps) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        destroy = props.destroy_on_removal

        self.key = platform_key(self, "Key", alias=f"alias/{props.project}/{props.env_name}/data-lake",
                                description=f"Data lake of {props.project} {props.env_name}: buckets, catalog results, queues, "
                                            "logs",
                                destroy_on_removal=destroy)
        allow_log_group_encryption(self.key)
        allow_eventbridge_dead_letters(self.key)

        self.access_logs = access_log_bucket(
            self, "AccessLogs", bucket_name=props.bucket_name("access-logs"), destroy_on_removal=destroy
        )
        noncurrent = Duration.days(props.noncurrent_expiry_days)

        def zone(construct_id: str, name: str, *rules: s3.LifecycleRule, events: bool = False) -> s3.Bucket:
            return secure_bucket(
                self,
                construct_id,
                bucket_name=props.bucket_name(name),
                encryption_key=self.key,
                access_logs=self.access_logs,
                destroy_on_removal=destroy,
                lifecycle_rules=rules,
                event_bridge_enabled=events,
            )

        expire_noncurrent = s3.LifecycleRule(id="expire-noncurrent-versions", noncurrent_version_expiration=noncurrent)
        self.landing = zone(
            "Landing",
            "landing",
            s3.LifecycleRule(
                id="expire-landed-files",
                expiration=Duration.days(props.landing_expiry_days),
                noncurrent_version_expiration=noncurrent,
            ),
            events=True,
        )
        self.raw = zone("Raw", "raw", expire_noncurrent)
        # No noncurrent expiry: a snapshot manifest pins object versions, which must stay readable.
        self.curated = zone("Curated", "curated")
        self.analytics = zone("Analytics", "analytics", expire_noncurrent)
        self.quarantine = zone(
            "Quarantine",
            "quarantine",
            s3.LifecycleRule(
                id="expire-quarantined",
                expiration=Duration.days(props.quarantine_expiry_days),
                noncurrent_version_expiration=noncurrent,
            ),
        )
        self.athena_results = zone(
            "AthenaResults",
            "athena-results",
            s3.LifecycleRule(
                id="expire-query-results",
                expiration=Duration.days(props.athena_results_expiry_days),
                noncurrent_version_expiration=Duration.days(1),
            ),
        )
        self.buckets: dict[str, s3.Bucket] = {
            "landing": self.landing,
            "raw": self.raw,
            "curated": self.curated,
            "analytics": self.analytics,
            "quarantine": self.quarantine,
            "athena-results": self.athena_results,
            "access-logs": self.access_logs,
        }

    def bucket_name(self, zone: str) -> str:
        """The bucket's physical name as a plain string (known at synth, no token)."""
        return self.props.bucket_name(zone)
