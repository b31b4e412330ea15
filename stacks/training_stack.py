"""TrainingStack: each use case's training pipeline in one environment, registering into the central registry."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from cdk_constructs.ids import pascal
from cdk_constructs.package_mirror import PackageMirror
from cdk_constructs.parameters import PlatformParameters
from cdk_constructs.serving_context import serving_image_tag
from cdk_constructs.training_pipeline import TrainingPipeline, TrainingPipelineProps
from modelwerk import naming
from modelwerk.settings import EnvironmentConfig, PlatformConfig
from sagemaker_pipelines import code_archive
from sagemaker_pipelines.pipeline import framework_image_uri

#: The scikit-learn framework image the steps run in (SageMaker's catalogue version, ``<major.minor>-<build>``): its
#: scikit-learn release must be the one ``frameworks.txt`` pins, which the steps install on top.
SKLEARN_FRAMEWORK_VERSION = "1.9-0"
GIT_COMMIT_CONTEXT = "modelwerk:git_commit"


def check_framework_version(root: Path, framework_version: str = SKLEARN_FRAMEWORK_VERSION) -> None:
    """Refuse a framework image whose scikit-learn major.minor differs from the pin in ``frameworks.txt``: pip would
    replace the image's scikit-learn in every job, or fail on the image's Python."""
    pinned = code_archive.framework_pins(root).get("scikit-learn")
    if pinned is None:
        raise ValueError(f"{root / code_archive.FRAMEWORKS_FILE} pins no scikit-learn")
    image_release = framework_version.split("-", 1)[0]
    if ".".join(pinned.split(".")[:2]) != image_release:
        raise ValueError(f"the training image is scikit-learn {framework_version} but {code_archive.FRAMEWORKS_FILE} "
                         f"pins scikit-learn {pinned}: move them together")


def git_commit(root: Path, override: str | None = None) -> str:
    """The checkout's commit (``-dirty`` when it has uncommitted changes); ``override`` (CI) wins."""
    if override:
        return override
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


class TrainingStack(Stack):
    """One pipeline per use case, its jobs in the VPC's private subnets; the step code is one archive asset they
    share; names published in SSM."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentConfig,
        vpc: ec2.IVpc,
        workload_security_group: ec2.ISecurityGroup,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        project, registry = config.project, config.registry
        with tempfile.TemporaryDirectory(prefix="modelwerk-code-") as folder:  # the asset is staged right away
            self.code = s3_assets.Asset(self, "StepCode", path=str(code_archive.build(Path(folder))))
        commit = git_commit(config.root, self.node.try_get_context(GIT_COMMIT_CONTEXT))
        check_framework_version(config.root)
        image = framework_image_uri(environment.region, SKLEARN_FRAMEWORK_VERSION)
        # The registered versions name the serving image the registry stack builds from this checkout.
        serving_image = naming.serving_image_uri(registry.account, registry.region, project,
                                                 serving_image_tag(config.root))
        # The jobs' subnets have no internet route: they install the frameworks' pins through this mirror.
        self.package_mirror = PackageMirror(self, "PackageMirror", project=project, env_name=environment.name,
                                           destroy_on_removal=environment.destroy_on_removal)
        self.pipelines: dict[str, TrainingPipeline] = {}
        for use_case in config.use_cases.values():
            self.pipelines[use_case.name] = TrainingPipeline(
                self,
                pascal(use_case.name),
                props=TrainingPipelineProps(
                    project=project,
                    env_name=environment.name,
                    use_case=use_case.name,
                    contract_file=str(use_case.folder / "contract.json"),
                    code_archive=self.code,
                    curated_bucket_name=naming.bucket_name(project, environment.name, "curated",
                                                           environment.account, environment.region),
                    data_key_alias=f"alias/{project}/{environment.name}/data-lake",
                    artifact_bucket_name=naming.bucket_name(project, registry.name, "model-artifacts",
                                                            registry.account, registry.region),
                    artifact_key_alias=f"alias/{project}/{registry.name}/model-artifacts",
                    registry_account=registry.account,
                    image_uri=image,
                    serving_image_uri=serving_image,
                    quality_metric=use_case.quality_metric,
                    quality_threshold=use_case.quality_threshold,
                    hyperparameters=use_case.hyperparameters,
                    git_commit=commit,
                    processing_instance_type=environment.processing_instance_type,
                    training_instance_type=environment.training_instance_type,
                    retraining_schedule=environment.retraining_schedule,
                    subnet_ids=[subnet.subnet_id for subnet in vpc.isolated_subnets],
                    security_group_id=workload_security_group.security_group_id,
                    package_mirror=self.package_mirror,
                ),
            )
        values: dict[str, str] = {}
        for name, pipeline in self.pipelines.items():
            values[f"use-cases/{name}/pipeline-name"] = pipeline.pipeline_name
            values[f"use-cases/{name}/model-package-group-arn"] = pipeline.group_arn
        self.parameters = PlatformParameters(
            self, "Parameters", prefix=naming.ssm_prefix(project, environment.name), values=values
        )
