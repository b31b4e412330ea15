"""PromotionStack: the registry account's promotion pipelines, one per use case served in staging and prod.

An approved version (SageMaker's state change event, emitted here where the groups live) is deployed to staging,
gated, approved by a person and deployed to prod, through the roles each target account's ``PromotionAccessStack``
holds: named, so this stack refers to them by ARN and never through a cross-stack reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk_constructs.ids import pascal
from cdk_constructs.promotion_artifacts import PromotionArtifacts, PromotionArtifactsProps
from cdk_constructs.promotion_notifications import PromotionNotifications, PromotionNotificationsProps
from cdk_constructs.promotion_operators import PromotionOperators, PromotionOperatorsProps
from cdk_constructs.promotion_pipeline import PromotionPipeline, PromotionPipelineProps, PromotionTarget, QualityGate
from modelwerk import naming
from modelwerk.settings import EndpointSettings, EnvironmentConfig, PlatformConfig
from stacks.endpoint_stack import MODEL_PACKAGE_PARAMETER

#: What the gate's build installs besides the standard library, at the checkout's pins.
GATE_REQUIREMENTS = ("boto3",)


@dataclass(frozen=True)
class EndpointTemplate:
    """An endpoint stack as its endpoints stage synthesized it: CloudFormation name, template, stack tags."""

    stack_name: str
    template: Mapping[str, Any]
    tags: Mapping[str, str]


def pinned(requirements: Path, package: str) -> str:
    """``package==<version>`` as ``requirements`` pins it; the build installs exactly what the checkout runs."""
    pattern = re.compile(rf"^\s*{re.escape(package)}\s*==\s*([^\s;#]+)", re.IGNORECASE)
    text = requirements.read_text(encoding="utf-8") if requirements.is_file() else ""
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            return f"{package}=={match.group(1)}"
    raise ValueError(f"{requirements} pins no {package} (package==version): the gate's build installs that pin")


class PromotionStack(Stack):
    """Attributes: ``artifacts``, ``notifications``, ``operators``, ``pipelines`` (use case ->
    ``PromotionPipeline``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentConfig,
        path: Sequence[EnvironmentConfig],
        endpoints: Mapping[str, Mapping[str, EndpointSettings]],
        templates: Mapping[str, Mapping[str, EndpointTemplate]],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        project = config.project
        staging, prod = path
        readers: dict[str, list[str]] = {}
        for target in path:
            readers.setdefault(target.account, []).append(
                naming.role_arn(target.account, naming.promotion_action_role_name(project, target.name)))
        self.artifacts = PromotionArtifacts(
            self,
            "Artifacts",
            props=PromotionArtifactsProps(project=project, env_name=environment.name, account=environment.account,
                                          region=environment.region, reader_roles=readers,
                                          destroy_on_removal=environment.destroy_on_removal),
        )
        self.notifications = PromotionNotifications(
            self,
            "Notifications",
            props=PromotionNotificationsProps(
                project=project, env_name=environment.name,
                pipeline_names=[naming.promotion_pipeline_name(project, u) for u in endpoints],
                destroy_on_removal=environment.destroy_on_removal),
        )
        requirements = [pinned(config.root / "requirements.txt", name) for name in GATE_REQUIREMENTS]

        def target(env: EnvironmentConfig, use_case: str) -> PromotionTarget:
            synthesized = templates[use_case][env.name]
            return PromotionTarget(
                env_name=env.name, account=env.account, region=env.region, stack_name=synthesized.stack_name,
                template=synthesized.template, tags=synthesized.tags,
                action_role_arn=naming.role_arn(env.account, naming.promotion_action_role_name(project, env.name)),
                deploy_role_arn=naming.role_arn(env.account, naming.promotion_deploy_role_name(project, env.name)))

        self.pipelines: dict[str, PromotionPipeline] = {}
        for use_case, served in endpoints.items():
            gated = served[staging.name]
            self.pipelines[use_case] = PromotionPipeline(
                self,
                pascal(use_case),
                props=PromotionPipelineProps(
                    project=project,
                    use_case=use_case,
                    group_name=naming.model_package_group_name(project, use_case),
                    source_root=config.root,
                    gate_cases=config.use_case(use_case).folder / "gate_cases.csv",
                    staging=target(staging, use_case),
                    prod=target(prod, use_case),
                    gate=QualityGate(
                        endpoint_name=gated.name,
                        budget_ms=gated.max_latency_ms,
                        role_arn=naming.role_arn(staging.account,
                                                 naming.promotion_gate_role_name(project, staging.name)),
                        region=staging.region,
                        requirements=requirements,
                    ),
                    model_package_parameter=MODEL_PACKAGE_PARAMETER,
                    destroy_on_removal=environment.destroy_on_removal,
                ),
                artifact_bucket=self.artifacts.bucket,
                artifact_key=self.artifacts.key,
                approval_topic=self.notifications.approvals,
                key=self.notifications.key,
            )
        self.operators = PromotionOperators(
            self,
            "Operators",
            props=PromotionOperatorsProps(project=project, use_cases=sorted(endpoints),
                                          operators=environment.promotion_operators),
            artifact_bucket=self.artifacts.bucket,
            artifact_key=self.artifacts.key,
        )
