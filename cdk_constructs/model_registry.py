"""The central model registry: one SageMaker model package group per use case, in the registry account.

Dev's pipeline registers versions into it across accounts; dev, staging and prod read from it; nobody else. The
group policy names the configured accounts only (never a wildcard principal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from cdk_constructs.ids import pascal
from modelwerk import naming

#: What a workload account may do with a group's versions: read them to deploy.
READ_ACTIONS = ("sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage",
                "sagemaker:ListModelPackages")
#: What the registering account (dev, where pipelines run) may add: new versions, and their metadata.
REGISTER_ACTIONS = ("sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage")


@dataclass(frozen=True)
class ModelRegistryProps:
    """project: names the groups (``naming.model_package_group_name``).
    use_cases: one group each.
    reader_accounts: workload accounts that may read every group (dev, staging, prod).
    registering_accounts: accounts whose pipelines may create versions (dev).
    """

    project: str
    use_cases: Sequence[str]
    reader_accounts: Sequence[str]
    registering_accounts: Sequence[str]


class ModelRegistry(Construct):
    """Attribute: ``groups`` (use case → ``CfnModelPackageGroup``)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ModelRegistryProps) -> None:
        super().__init__(scope, construct_id)
        if not props.reader_accounts:
            raise ValueError("ModelRegistry needs the workload accounts that read it")
        unknown = set(props.registering_accounts) - set(props.reader_accounts)
        if unknown:
            raise ValueError(f"registering accounts {sorted(unknown)} must also be reader accounts")
        stack = Stack.of(self)
        self.groups: dict[str, sagemaker.CfnModelPackageGroup] = {}
        for use_case in props.use_cases:
            name = naming.model_package_group_name(props.project, use_case)
            group_arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:model-package-group/{name}"
            package_arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:model-package/{name}/*"
            statements = [
                {
                    "Sid": "WorkloadAccountsRead",
                    "Effect": "Allow",
                    "Principal": {"AWS": [f"arn:{stack.partition}:iam::{a}:root" for a in props.reader_accounts]},
                    "Action": list(READ_ACTIONS),
                    "Resource": [group_arn, package_arn],
                }
            ]
            if props.registering_accounts:
                statements.append({
                    "Sid": "PipelineAccountsRegister",
                    "Effect": "Allow",
                    "Principal": {"AWS": [f"arn:{stack.partition}:iam::{a}:root" for a in props.registering_accounts]},
                    "Action": list(REGISTER_ACTIONS),
                    "Resource": [group_arn, package_arn],
                })
            self.groups[use_case] = sagemaker.CfnModelPackageGroup(
                self,
                pascal(use_case),
                model_package_group_name=name,
                model_package_group_description=f"Versions of the {use_case} model: code, data snapshot and model",
                model_package_group_policy={"Version": "2012-10-17", "Statement": statements},
            )
