"""NetworkStack: the workload environment's private network."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk_constructs.network import PrivateNetwork
from modelwerk.settings import EnvironmentConfig


class NetworkStack(Stack):
    """An isolated VPC with endpoints; ``vpc`` and ``workload_security_group`` are what the other stacks attach to."""

    def __init__(self, scope: Construct, construct_id: str, *, environment: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.network = PrivateNetwork(
            self,
            "Private",
            cidr=environment.vpc_cidr,
            availability_zones=environment.availability_zones,
            destroy_on_removal=environment.destroy_on_removal,
        )
        self.vpc = self.network.vpc
        self.workload_security_group = self.network.workload_security_group
