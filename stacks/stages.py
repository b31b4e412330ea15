"""One Stage per environment: what a `cdk deploy <Stage>/*` puts into one account and region."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Stage, Tags
from aws_cdk import cx_api
from constructs import Construct

from cdk_constructs.ids import pascal
from modelwerk.errors import ConfigurationError
from modelwerk.settings import EndpointSettings, EnvironmentConfig, PlatformConfig
from stacks.data_lake_stack import DataLakeStack
from stacks.endpoint_stack import EndpointStack
from stacks.network_stack import NetworkStack
from stacks.monitoring_stack import MonitoringStack
from stacks.promotion_access_stack import PromotionAccessStack
from stacks.promotion_stack import EndpointTemplate, PromotionStack
from stacks.registry_stack import RegistryStack
from stacks.serving_stack import ServingStack
from stacks.training_stack import TrainingStack

#: The environments an approved version is promoted through, in order: deployed and gated in the first, deployed to
#: the second once a person approves.
PROMOTION_PATH = ("staging", "prod")


def _env(environment: EnvironmentConfig) -> Environment:
    return Environment(account=environment.account, region=environment.region)


def endpoints_stage_id(env: str) -> str:
    """The stage of an environment's endpoints (``dev-endpoints``): apart from the environment's, so that deploying
    ``Dev/*`` never touches an endpoint."""
    return f"{env}-endpoints"


def endpoint_stack_name(env: str, endpoint: str) -> str:
    """The CloudFormation name of an endpoint's stack (``staging-endpoints-PumpHealth``): ``cdk deploy`` and the
    promotion pipeline update the same stack."""
    return f"{endpoints_stage_id(env)}-{pascal(endpoint)}"


def tag_stage(stage: Stage, config: PlatformConfig, environment: EnvironmentConfig) -> None:
    """The platform's tags and the environment's name on every resource of ``stage``. Tags are aspects, and aspects
    do not cross Stage boundaries: each stage is tagged, not the app."""
    for key, value in {**config.tags, "environment": environment.name}.items():
        Tags.of(stage).add(key, value)


def promoted_endpoints(config: PlatformConfig) -> dict[str, dict[str, EndpointSettings]]:
    """Use case -> {environment: the single-model endpoint serving it there} for every use case served in each
    environment of ``PROMOTION_PATH``: the use cases that get a promotion pipeline. Empty when cdk.json lacks one of
    those environments."""
    if not all(name in config.environments for name in PROMOTION_PATH):
        return {}
    promoted: dict[str, dict[str, EndpointSettings]] = {}
    for use_case in config.use_cases:
        served: dict[str, EndpointSettings] = {}
        for env in PROMOTION_PATH:
            endpoints = [e for e in config.environment(env).endpoints.values()
                         if e.use_case == use_case and not e.multi_model]
            if len(endpoints) > 1:
                raise ConfigurationError(
                    f"environment {env!r} serves use case {use_case!r} from {len(endpoints)} single-model endpoints "
                    f"({sorted(e.name for e in endpoints)}); the promotion deploys and gates one: keep one")
            if endpoints:
                served[env] = endpoints[0]
        if len(served) == len(PROMOTION_PATH):
            promoted[use_case] = served
    return promoted


def synthesize_endpoint_templates(config: PlatformConfig, environments: Sequence[EnvironmentConfig], *,
                                  context: Mapping[str, Any]) -> dict[tuple[str, str], EndpointTemplate]:
    """(environment, endpoint) -> the endpoint stack as ``cdk deploy '<env>-endpoints/*'`` would deploy it: its
    name, template and stack tags, from the same stage synthesized in an app of its own (``context``: the app's,
    feature flags included), so the promotion ships the very template the endpoints stage holds.

    A CloudFormation deploy action cannot publish CDK assets: an endpoint stack with any (a Lambda function's code,
    an image) is refused here.
    """
    with tempfile.TemporaryDirectory(prefix="modelwerk-endpoints-") as outdir:
        app = App(outdir=outdir, context=dict(context))
        stages: dict[str, EndpointsStage] = {}
        for environment in environments:
            stages[environment.name] = EndpointsStage(app, endpoints_stage_id(environment.name), config=config,
                                                      environment=environment)
            tag_stage(stages[environment.name], config, environment)
        app.synth()
        synthesized: dict[tuple[str, str], EndpointTemplate] = {}
        for env, stage in stages.items():
            assembly = stage.synth()
            for endpoint, stack in stage.endpoints.items():
                _refuse_assets(assembly, stack.artifact_id)
                artifact = assembly.get_stack_artifact(stack.artifact_id)
                synthesized[(env, endpoint)] = EndpointTemplate(stack_name=artifact.stack_name,
                                                                template=artifact.template,
                                                                tags=dict(artifact.tags or {}))
    return synthesized


def _refuse_assets(assembly: cx_api.CloudAssembly, artifact_id: str) -> None:
    """Raise when the stack has file assets besides its own template, or image assets (read from the assembly's
    manifests: the stack artifact's asset manifest is one of its dependencies)."""
    directory = Path(assembly.directory)
    artifacts = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))["artifacts"]
    stack = artifacts[artifact_id]
    template = stack["properties"]["templateFile"]
    assets: list[str] = []
    for dependency in stack.get("dependencies", []):
        artifact = artifacts.get(dependency, {})
        if artifact.get("type") != "cdk:asset-manifest":
            continue
        manifest = json.loads((directory / artifact["properties"]["file"]).read_text(encoding="utf-8"))
        assets += [a.get("displayName", name) for name, a in manifest.get("files", {}).items()
                   if a["source"].get("path") != template]
        assets += [a.get("displayName", name) for name, a in manifest.get("dockerImages", {}).items()]
    if assets:
        raise ValueError(f"{stack['properties'].get('stackName', artifact_id)} has CDK assets ({assets}), which the "
                         "promotion's CloudFormation deploy action cannot publish: keep endpoint stacks asset-free")


class WorkloadStage(Stage):
    """dev, staging or prod: network, then the data lake inside it, what the endpoints stand on (serving), then
    (where configured) training pipelines, and the monitoring of the environment's endpoints."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, environment: EnvironmentConfig
    ) -> None:
        super().__init__(scope, construct_id, env=_env(environment))
        self.network = NetworkStack(
            self,
            "Network",
            environment=environment,
            description=f"{config.project} {environment.name}: private network and VPC endpoints",
        )
        self.data_lake = DataLakeStack(
            self,
            "DataLake",
            config=config,
            environment=environment,
            vpc=self.network.vpc,
            workload_security_group=self.network.workload_security_group,
            description=f"{config.project} {environment.name}: data lake, ingestion and preparation",
        )
        self.serving = ServingStack(
            self,
            "Serving",
            config=config,
            environment=environment,
            vpc=self.network.vpc,
            workload_security_group=self.network.workload_security_group,
            description=f"{config.project} {environment.name}: serving bucket, endpoint role and rollback alarms",
        )
        # The inference pipelines' prediction tables go into the data lake's analytics database.
        self.serving.add_stack_dependency(self.data_lake)
        self.training = None
        if environment.training:
            self.training = TrainingStack(
                self,
                "Training",
                config=config,
                environment=environment,
                vpc=self.network.vpc,
                workload_security_group=self.network.workload_security_group,
                description=f"{config.project} {environment.name}: training pipelines registering into the registry",
            )
        self.monitoring = None
        # Its own single-model endpoints are monitored here; a training environment also receives the alarms of the
        # environments that retrain in it, even when it serves no single-model endpoint itself.
        if any(not e.multi_model for e in environment.endpoints.values()) or config.retraining_alarms(environment.name):
            self.monitoring = MonitoringStack(
                self,
                "Monitoring",
                config=config,
                environment=environment,
                vpc=self.network.vpc,
                workload_security_group=self.network.workload_security_group,
                serving_bucket_name=self.serving.storage.bucket_name,
                serving_key_arn=self.serving.storage.key.key_arn,
                description=f"{config.project} {environment.name}: drift monitor, monitoring alarms, on-call topic",
            )
            if self.training is not None:
                self.monitoring.add_stack_dependency(self.training)  # the retraining rules start its pipelines
        self.promotion_access = None
        promoted = promoted_endpoints(config)
        if promoted and environment.name in PROMOTION_PATH:
            self.promotion_access = PromotionAccessStack(
                self,
                "PromotionAccess",
                config=config,
                environment=environment,
                endpoints={use_case: served[environment.name] for use_case, served in promoted.items()},
                stack_names={use_case: endpoint_stack_name(environment.name, served[environment.name].name)
                             for use_case, served in promoted.items()},
                gated=environment.name == PROMOTION_PATH[0],
                description=f"{config.project} {environment.name}: roles the registry's promotion pipelines deploy "
                            "and gate endpoints through",
            )


class RegistryStage(Stage):
    """The shared services account: model artifacts for every workload environment, and the promotion pipelines
    (one per use case served in staging and prod)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, environment: EnvironmentConfig
    ) -> None:
        super().__init__(scope, construct_id, env=_env(environment))
        self.registry = RegistryStack(
            self,
            "ModelRegistry",
            config=config,
            environment=environment,
            description=f"{config.project} {environment.name}: model artifact store shared with the workload accounts",
        )
        self.promotion = None
        promoted = promoted_endpoints(config)
        if promoted:
            targets = [config.environment(env) for env in PROMOTION_PATH]
            templates = synthesize_endpoint_templates(config, targets, context=self.node.get_all_context())
            self.promotion = PromotionStack(
                self,
                "Promotion",
                config=config,
                environment=environment,
                path=targets,
                endpoints=promoted,
                templates={use_case: {env: templates[(env, endpoint.name)] for env, endpoint in served.items()}
                           for use_case, served in promoted.items()},
                description=f"{config.project} {environment.name}: promotion pipelines, approved version to "
                            f"{' then '.join(PROMOTION_PATH)}",
            )


class EndpointsStage(Stage):
    """One environment's endpoints, one stack each, deployed by the promotion pipeline (or explicitly); they find what
    the environment's serving stack deployed by name, so the environment must be deployed first."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, environment: EnvironmentConfig
    ) -> None:
        super().__init__(scope, construct_id, env=_env(environment))
        self.endpoints: dict[str, EndpointStack] = {}
        for endpoint in environment.endpoints.values():
            kind = "multi-model endpoint" if endpoint.multi_model else f"endpoint of {endpoint.use_case}"
            self.endpoints[endpoint.name] = EndpointStack(
                self,
                pascal(endpoint.name),
                stack_name=endpoint_stack_name(environment.name, endpoint.name),
                config=config,
                environment=environment,
                endpoint=endpoint,
                description=f"{config.project} {environment.name}: {endpoint.name}, {kind}",
            )
