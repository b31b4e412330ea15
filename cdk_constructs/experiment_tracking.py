"""Experiment tracking in the registry account: one SageMaker managed MLflow tracking server.

The server stores its artifacts in the model artifact bucket under one prefix, encrypted with the artifact key; its
service role may read and write that prefix and use that key, nothing else. A tracking server has no resource policy,
so an account that logs to it needs credentials in the registry account: the construct creates a logging role that
only the configured accounts may assume (dev, where the pipelines run), allowed the MLflow calls that log and compare
runs on this one server and the artifact prefix. Without logging accounts there is no cross-account access at all.

The server bills around the clock, so the registry stack adds this construct only when cdk.json turns it on
(``modelwerk:mlflow`` → ``managed_tracking_server``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from cdk_constructs.permissions import S3_READ, S3_WRITE, allow, allow_key, allow_objects

#: The MLflow API calls a logging principal makes: create the experiment, log and end a run, find and read runs.
LOGGING_ACTIONS = tuple(
    f"sagemaker-mlflow:{action}"
    for action in (
        "CreateExperiment",
        "GetExperiment",
        "GetExperimentByName",
        "SearchExperiments",
        "CreateRun",
        "GetRun",
        "UpdateRun",
        "SearchRuns",
        "LogBatch",
        "SetTag",
        "DeleteTag",
        "GetMetricHistory",
        "ListArtifacts",
    )
)
ARTIFACT_REASON = (
    "MLflow writes one object per artifact under the tracking server's prefix; the prefix is the narrowest resource"
)


@dataclass(frozen=True)
class ExperimentTrackingProps:
    """tracking_server_name: the server's name (its ARN ends in ``mlflow-tracking-server/<name>``).
    artifact_bucket, artifact_key: the registry's model artifact bucket and the key that encrypts it.
    logging_accounts: accounts whose principals may assume the logging role: where pipelines run (default none: no
        cross-account access).
    artifact_prefix: where in the bucket the artifacts go (default ``mlflow/``).
    tracking_server_size: ``Small``, ``Medium`` or ``Large`` (default ``Small``).
    weekly_maintenance_window_start: ``Sun:02:00``-style UTC start of the weekly maintenance (default ``Sun:02:00``).
    """

    tracking_server_name: str
    artifact_bucket: s3.IBucket
    artifact_key: kms.IKey
    logging_accounts: Sequence[str] = ()
    artifact_prefix: str = "mlflow/"
    tracking_server_size: str = "Small"
    weekly_maintenance_window_start: str = "Sun:02:00"


class ExperimentTracking(Construct):
    """Attributes: ``server`` (``CfnMlflowTrackingServer``), ``service_role``, ``logging_role`` (None without
    logging accounts), ``artifact_store_uri``, ``tracking_server_arn``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ExperimentTrackingProps) -> None:
        super().__init__(scope, construct_id)
        prefix = props.artifact_prefix
        if not prefix.endswith("/") or prefix.startswith("/") or "*" in prefix:
            raise ValueError(f"artifact_prefix must be a folder like 'mlflow/', got {prefix!r}")
        bucket, key = props.artifact_bucket, props.artifact_key
        self.artifact_store_uri = f"s3://{bucket.bucket_name}/{prefix.rstrip('/')}"

        self.service_role = iam.Role(
            self,
            "ServiceRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="MLflow tracking server: reads and writes its artifact prefix, nothing else",
        )
        self._allow_artifacts(self.service_role, bucket, key, prefix)

        self.server = sagemaker.CfnMlflowTrackingServer(
            self,
            "Server",
            tracking_server_name=props.tracking_server_name,
            artifact_store_uri=self.artifact_store_uri,
            role_arn=self.service_role.role_arn,
            tracking_server_size=props.tracking_server_size,
            automatic_model_registration=False,  # versions are registered by the pipeline, with their lineage
            weekly_maintenance_window_start=props.weekly_maintenance_window_start,
        )
        # The server validates its role when it is created: the role's policy must exist by then.
        self.server.node.add_dependency(self.service_role)
        self.tracking_server_arn = self.server.attr_tracking_server_arn

        self.logging_role: iam.Role | None = None
        accounts = list(dict.fromkeys(props.logging_accounts))
        if accounts:
            self.logging_role = iam.Role(
                self,
                "LoggingRole",
                assumed_by=iam.CompositePrincipal(*(iam.AccountPrincipal(a) for a in accounts)),
                description="Assumed from the pipeline accounts to log and compare runs on the MLflow tracking server",
            )
            allow(self.logging_role, actions=LOGGING_ACTIONS, resources=[self.tracking_server_arn])
            self._allow_artifacts(self.logging_role, bucket, key, prefix)

    @staticmethod
    def _allow_artifacts(role: iam.Role, bucket: s3.IBucket, key: kms.IKey, prefix: str) -> None:
        """Read and write objects under ``prefix``, list only that prefix, and use the key for SSE-KMS."""
        allow_objects(role, bucket, prefixes=[prefix], actions=[*S3_READ, *S3_WRITE], reason=ARTIFACT_REASON)
        allow(role, actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
              conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}})
        allow(role, actions=["s3:GetBucketLocation"], resources=[bucket.bucket_arn])
        allow_key(role, key, encrypt=True)
