"""RegistryStack: the shared services account's model registry and model artifact store."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk_constructs.model_artifacts import ModelArtifactStore, ModelArtifactStoreProps
from cdk_constructs.model_registry import ModelRegistry, ModelRegistryProps
from cdk_constructs.parameters import PlatformParameters
from modelwerk import naming
from modelwerk.settings import EnvironmentConfig, PlatformConfig


class RegistryStack(Stack):
    """Model package groups and the artifacts bucket and key, readable by the workload accounts; names in SSM."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentConfig,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.artifacts = ModelArtifactStore(
            self,
            "ModelArtifacts",
            props=ModelArtifactStoreProps(
                project=config.project,
                env_name=environment.name,
                account=environment.account,
                region=environment.region,
                reader_accounts=[w.account for w in config.workloads],
                destroy_on_removal=environment.destroy_on_removal,
            ),
        )
        self.registry = ModelRegistry(
            self,
            "Registry",
            props=ModelRegistryProps(
                project=config.project,
                use_cases=list(config.use_cases),
                reader_accounts=[w.account for w in config.workloads],
                registering_accounts=[config.environment("dev").account],
            ),
        )
        self.parameters = PlatformParameters(
            self,
            "Parameters",
            prefix=naming.ssm_prefix(config.project, environment.name),
            values={
                "buckets/model-artifacts": self.artifacts.bucket.bucket_name,
                "kms/model-artifacts-key-arn": self.artifacts.key.key_arn,
                **{f"model-package-groups/{use_case}": group.attr_model_package_group_arn
                   for use_case, group in self.registry.groups.items()},
            },
        )
