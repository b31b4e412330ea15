"""PromotionAccessStack: in staging and prod, the roles the registry's promotion pipelines deploy (and, in staging,
gate) the endpoint stacks through. Deployed with the environment, before the first promotion reaches it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk_constructs.promotion_access import PromotionAccess, PromotionAccessProps
from modelwerk import naming
from modelwerk.settings import EndpointSettings, EnvironmentConfig, PlatformConfig


class PromotionAccessStack(Stack):
    """Attribute: ``access`` (``PromotionAccess``: action, deploy and, where ``gated``, gate role)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentConfig,
        endpoints: Mapping[str, EndpointSettings],
        stack_names: Mapping[str, str],
        gated: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        project, env, registry = config.project, environment.name, config.registry
        use_cases = sorted(endpoints)
        self.access = PromotionAccess(
            self,
            "Roles",
            props=PromotionAccessProps(
                project=project,
                env_name=env,
                registry_account=registry.account,
                registry_region=registry.region,
                pipeline_role_names=[naming.promotion_pipeline_role_name(project, u) for u in use_cases],
                gate_build_role_names=[naming.promotion_gate_build_role_name(project, u) for u in use_cases]
                if gated else [],
                stack_names=[stack_names[u] for u in use_cases],
                endpoint_names=[endpoints[u].name for u in use_cases],
                model_package_groups=[naming.model_package_group_name(project, u) for u in use_cases],
                promotion_bucket_name=naming.bucket_name(project, registry.name, naming.PROMOTION_ZONE,
                                                         registry.account, registry.region),
                promotion_key_alias=naming.promotion_key_alias(project, registry.name),
                endpoint_role_name=naming.endpoint_role_name(project, env),
                serving_key_alias=naming.serving_key_alias(project, env),
            ),
        )
