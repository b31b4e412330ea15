"""One Stage per environment: what a `cdk deploy <Stage>/*` puts into one account and region."""

from __future__ import annotations

from aws_cdk import Environment, Stage
from constructs import Construct

from cdk_constructs.ids import pascal
from modelwerk.settings import EnvironmentConfig, PlatformConfig
from stacks.data_lake_stack import DataLakeStack
from stacks.endpoint_stack import EndpointStack
from stacks.network_stack import NetworkStack
from stacks.monitoring_stack import MonitoringStack
from stacks.registry_stack import RegistryStack
from stacks.serving_stack import ServingStack
from stacks.training_stack import TrainingStack


def _env(environment: EnvironmentConfig) -> Environment:
    return Environment(account=environment.account, region=environment.region)


def endpoints_stage_id(env: str) -> str:
    """The stage of an environment's endpoints (``dev-endpoints``): apart from the environment's, so that deploying
    ``Dev/*`` never touches an endpoint."""
    return f"{env}-endpoints"


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
        if any(not e.multi_model for e in environment.endpoints.values()):
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


class RegistryStage(Stage):
    """The shared services account: model artifacts for every workload environment."""

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
                config=config,
                environment=environment,
                endpoint=endpoint,
                description=f"{config.project} {environment.name}: {endpoint.name}, {kind}",
            )
