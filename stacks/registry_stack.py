"""RegistryStack: the shared services account's model registry, model artifact store and serving image."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from cdk_constructs import serving_context
from cdk_constructs.experiment_tracking import ExperimentTracking, ExperimentTrackingProps
from cdk_constructs.model_artifacts import ModelArtifactStore, ModelArtifactStoreProps
from cdk_constructs.model_registry import ModelRegistry, ModelRegistryProps
from cdk_constructs.parameters import PlatformParameters
from cdk_constructs.serving_image import ServingImage, ServingImageProps
from modelwerk import naming
from modelwerk.settings import EnvironmentConfig, PlatformConfig


class RegistryStack(Stack):
    """Model package groups, the artifacts bucket and key, and the serving image's repository and build, readable by
    the workload accounts; names in SSM.

    With ``modelwerk:mlflow`` → ``managed_tracking_server`` on, also the MLflow tracking server (off by default).
    """

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
                writer_accounts=[e.account for e in config.training_environments],
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
                registering_accounts=[e.account for e in config.training_environments],
            ),
        )
        with tempfile.TemporaryDirectory(prefix="modelwerk-serving-") as folder:  # the asset is staged right away
            source = s3_assets.Asset(self, "ServingImageSource",
                                     path=str(serving_context.stage(config.root, Path(folder))))
        self.serving_image = ServingImage(
            self,
            "ServingImage",
            props=ServingImageProps(
                project=config.project,
                env_name=environment.name,
                source=source,
                tag=serving_context.serving_image_tag(config.root),
                puller_accounts=[w.account for w in config.workloads],
                destroy_on_removal=environment.destroy_on_removal,
            ),
        )
        self.experiment_tracking: ExperimentTracking | None = None
        tracking_parameters: dict[str, str] = {}
        if config.mlflow.managed_tracking_server:
            self.experiment_tracking = ExperimentTracking(
                self,
                "ExperimentTracking",
                props=ExperimentTrackingProps(
                    tracking_server_name=f"{config.project}-experiments",
                    artifact_bucket=self.artifacts.bucket,
                    artifact_key=self.artifacts.key,
                    logging_accounts=[e.account for e in config.training_environments],
                    tracking_server_size=config.mlflow.tracking_server_size,
                ),
            )
            tracking_parameters = {"mlflow/tracking-server-arn": self.experiment_tracking.tracking_server_arn}
            if self.experiment_tracking.logging_role is not None:
                tracking_parameters["mlflow/logging-role-arn"] = self.experiment_tracking.logging_role.role_arn
        self.parameters = PlatformParameters(
            self,
            "Parameters",
            prefix=naming.ssm_prefix(config.project, environment.name),
            values={
                "buckets/model-artifacts": self.artifacts.bucket.bucket_name,
                "kms/model-artifacts-key-arn": self.artifacts.key.key_arn,
                "serving/image-uri": self.serving_image.image_uri,
                **{f"model-package-groups/{use_case}": group.attr_model_package_group_arn
                   for use_case, group in self.registry.groups.items()},
                **tracking_parameters,
            },
        )
