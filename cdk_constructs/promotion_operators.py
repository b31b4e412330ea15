"""Who follows, approves and rolls back promotions: one role in the registry account.

``modelwerk promote`` (and anyone with the console) reaches the promotion pipelines through this role: it reads the
pipelines, their executions, actions and the gates' reports, answers the manual approval before prod, rolls the prod
stage back, and approves versions in the registry (which starts a promotion). It is the only principal besides
CodePipeline itself that may answer an approval: whoever may assume it may approve prod. Its trust names the
registry account (whose administrators grant ``sts:AssumeRole`` on it to their approvers) and the principals
configured as ``promotion_operators`` of the registry environment in cdk.json, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.permissions import KMS_DECRYPT, allow, allow_objects
from modelwerk import naming

#: What the role may see of a pipeline.
READ_ACTIONS = ("codepipeline:GetPipeline", "codepipeline:GetPipelineState", "codepipeline:GetPipelineExecution",
                "codepipeline:ListPipelineExecutions", "codepipeline:ListActionExecutions")


@dataclass(frozen=True)
class PromotionOperatorsProps:
    """project: names the role (``naming.promotion_operator_role_name``).
    use_cases: the use cases whose pipelines and model package groups the role works on.
    operators: principal ARNs (roles, users) or account ids besides the registry account that may assume the role.
    """

    project: str
    use_cases: Sequence[str]
    operators: Sequence[str] = ()


class PromotionOperators(Construct):
    """Attributes: ``role``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PromotionOperatorsProps,
                 artifact_bucket: s3.IBucket, artifact_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        if not props.use_cases:
            raise ValueError("PromotionOperators needs the use cases whose promotions it operates")
        trusted: list[iam.IPrincipal] = [iam.AccountPrincipal(stack.account)]
        for operator in props.operators:
            trusted.append(iam.AccountPrincipal(operator) if operator.isdigit() else iam.ArnPrincipal(operator))
        self.role = iam.Role(self, "Role", role_name=naming.promotion_operator_role_name(props.project),
                             assumed_by=iam.CompositePrincipal(*trusted),
                             description="Follows, approves and rolls back model promotions")
        pipelines = [f"arn:{stack.partition}:codepipeline:{stack.region}:{stack.account}:"
                     f"{naming.promotion_pipeline_name(props.project, u)}" for u in sorted(props.use_cases)]
        allow(self.role, actions=[*READ_ACTIONS, "codepipeline:RollbackStage"], resources=pipelines)
        approval_stage = naming.PROMOTION_STAGES[3]
        allow(self.role, actions=["codepipeline:PutApprovalResult"],
              resources=[f"{arn}/{approval_stage}/{naming.PROMOTION_APPROVAL_ACTION}" for arn in pipelines])
        allow_objects(self.role, artifact_bucket, prefixes=[naming.promotion_report_prefix(u)
                                                            for u in sorted(props.use_cases)],
                      actions=["s3:GetObject"], reason="Every gate report of the use cases, one per execution.")
        allow(self.role, actions=KMS_DECRYPT, resources=[artifact_key.key_arn])
        groups = [f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:model-package/"
                  f"{naming.model_package_group_name(props.project, u)}/*" for u in sorted(props.use_cases)]
        allow(self.role, actions=["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
              resources=groups, wildcard_reason="Any version of the use cases' groups: the role approves versions.")
        allow(self.role, actions=["sagemaker:ListModelPackages"], resources=["*"],
              wildcard_reason="ListModelPackages supports no resource-level permission.")
