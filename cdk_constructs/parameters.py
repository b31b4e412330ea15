"""Publishes what the library needs to find the platform as SSM String parameters (ADR 0001).

A notebook that knows only its environment resolves buckets, databases, the workgroup and each use case's contract
from ``/<project>/<env>/``, without a deployment output and without reading CloudFormation.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk_constructs.ids import pascal

#: SSM standard parameters hold up to 4 KB; a larger value (a big contract) needs the advanced tier.
STANDARD_TIER_LIMIT = 4096


class PlatformParameters(Construct):
    """One ``ssm.StringParameter`` per entry of ``values`` (name relative to ``prefix`` -> value).

    ``parameters`` maps each relative name (``buckets/raw``) to the created parameter.
    """

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str, values: Mapping[str, str]) -> None:
        super().__init__(scope, construct_id)
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError(f"SSM prefix must start and end with '/': {prefix!r}")
        self.prefix = prefix
        self.parameters: dict[str, ssm.StringParameter] = {}
        for name, value in values.items():
            size = len(value.encode("utf-8"))
            self.parameters[name] = ssm.StringParameter(
                self,
                pascal(name.replace("/", "-")),
                parameter_name=f"{prefix}{name}",
                string_value=value,
                tier=ssm.ParameterTier.ADVANCED if size > STANDARD_TIER_LIMIT else ssm.ParameterTier.STANDARD,
            )

    def arn(self, name: str) -> str:
        return self.parameters[name].parameter_arn
