"""Least-privilege IAM statements written out by hand, with their unavoidable wildcards acknowledged in one place.

CDK's ``grant_*`` helpers grant action wildcards (``s3:GetObject*``, ``s3:List*``); the roles here get the exact
actions they need. Object-level S3 access still needs ``bucket/prefix/*``: ``allow`` acknowledges each such
wildcard on the role that holds it, with the reason the caller gives, and refuses a wildcard without one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from cdk_constructs.nag import acknowledge, wildcard_findings

S3_READ = ("s3:GetObject", "s3:GetObjectVersion")
S3_WRITE = ("s3:PutObject", "s3:AbortMultipartUpload")
S3_DELETE = ("s3:DeleteObject",)
S3_LIST = ("s3:ListBucket", "s3:GetBucketLocation")
KMS_DECRYPT = ("kms:Decrypt", "kms:DescribeKey")
KMS_ENCRYPT_DECRYPT = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")
#: A service (Lambda, CodeBuild) writing its own streams into a log group it is given.
LOG_WRITE = ("logs:CreateLogStream", "logs:PutLogEvents")
#: Lambda attaching a function to the VPC with the function's role: it creates, deletes and readdresses the function's
#: network interfaces.
LAMBDA_NETWORK_INTERFACES = ("ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                             "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses")
#: SageMaker attaching jobs and endpoints to the VPC with their execution role: it creates the network interfaces and
#: lets its own account use them.
SAGEMAKER_NETWORK_INTERFACES = ("ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
                                "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission")
#: What SageMaker reads about the VPC before it attaches a job or an endpoint (Describe* takes no resource).
SAGEMAKER_VPC_DESCRIBE = ("ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions",
                          "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups")
GLUE_READ = (
    "glue:GetDatabase",
    "glue:GetDatabases",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetPartition",
    "glue:GetPartitions",
)


def allow(
    role: iam.IRole,
    *,
    actions: Sequence[str],
    resources: Sequence[str],
    wildcard_reason: str | None = None,
    conditions: Mapping[str, Any] | None = None,
) -> None:
    """Add one Allow statement to ``role``; any wildcard in it must come with ``wildcard_reason``."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=list(actions), resources=list(resources), conditions=dict(conditions) if conditions else None
        )
    )
    findings = wildcard_findings(role, actions=actions, resources=resources)
    if findings and not wildcard_reason:
        raise ValueError(f"{role.node.path}: {findings} need a wildcard_reason")
    for finding in findings:
        acknowledge(role, finding, wildcard_reason or "")


def allow_objects(
    role: iam.IRole,
    bucket: s3.IBucket,
    *,
    prefixes: Sequence[str],
    actions: Sequence[str],
    reason: str,
) -> None:
    """Object actions on ``bucket``: a prefix ending in ``/`` (or ``""``, the whole bucket) covers what is under it,
    anything else names exactly one object."""
    resources = [bucket.arn_for_objects(f"{p}*" if p == "" or p.endswith("/") else p) for p in prefixes]
    allow(role, actions=actions, resources=resources, wildcard_reason=reason)


def allow_list(role: iam.IRole, *buckets: s3.IBucket, versions: bool = False) -> None:
    """List (and locate) the buckets; listing is bucket-level, so no wildcard."""
    actions = [*S3_LIST, *(["s3:ListBucketVersions"] if versions else [])]
    allow(role, actions=actions, resources=[b.bucket_arn for b in buckets])


def allow_key(role: iam.IRole, key: kms.IKey, *, encrypt: bool) -> None:
    """Use of the data key for SSE-KMS objects: decrypt to read, generate data keys to write."""
    allow(role, actions=KMS_ENCRYPT_DECRYPT if encrypt else KMS_DECRYPT, resources=[key.key_arn])


def allow_network_interfaces(role: iam.IRole, *, actions: Sequence[str], describe: Sequence[str]) -> None:
    """A service attaching what runs with ``role`` to the VPC: ``actions`` on this account's and region's network
    interfaces, subnets and security groups (the only resources they take), ``describe`` on ``*``."""
    stack = Stack.of(role)
    allow(role, actions=actions,
          resources=[stack.format_arn(service="ec2", resource=kind, resource_name="*")
                     for kind in ("network-interface", "subnet", "security-group")],
          wildcard_reason="The service names the network interfaces it creates; the statement holds them, and the "
                          "subnets and security groups they are created in, to this account and region.")
    allow(role, actions=describe, resources=["*"],
          wildcard_reason="EC2's Describe actions take no resource: they work only on all resources.")


def allow_sagemaker_jobs(role: iam.IRole, *, log_groups: Sequence[str]) -> None:
    """What a SageMaker pipeline's role needs to run its steps' jobs as itself: passing itself to SageMaker only, and
    writing the jobs' logs into SageMaker's fixed log groups (``ProcessingJobs``, ``TrainingJobs``, ...)."""
    stack = Stack.of(role)
    allow(role, actions=["iam:PassRole"], resources=[role.role_arn],
          conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
    allow(role, actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                         "logs:DescribeLogStreams"],
          resources=[f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/{g}:*"
                     for g in log_groups],
          wildcard_reason="SageMaker writes one log stream per job into its fixed log groups.")
