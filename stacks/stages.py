"""One Stage per environment: what a `cdk deploy <Stage>/*` puts into one account and region."""

from __future__ import annotations

from aws_cdk import Environment, Stage
from constructs import Construct

from modelwerk.settings import EnvironmentConfig, PlatformConfig
from stacks.data_lake_stack import DataLakeStack
from stacks.network_stack import NetworkStack
from stacks.registry_stack import RegistryStack


def _env(environment: EnvironmentConfig) -> Environment:
    return Environment(account=environment.account, region=environment.region)


class WorkloadStage(Stage):
    """dev, staging or prod: network, then the data lake inside it."""

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
