"""The package mirror of an environment: a CodeArtifact repository that proxies PyPI for jobs with no internet route.

The training and processing jobs run in isolated subnets (no NAT). Before a step runs, the model frameworks' pins
(``frameworks.txt``) are installed on top of the framework image; pip reaches PyPI through this mirror only, over
the VPC's CodeArtifact endpoints. Two repositories, as CodeArtifact recommends: ``pypi-store`` holds the external
connection to ``public:pypi`` (and caches what was fetched, so a version once used stays installable), ``python`` is
the one jobs read, with ``pypi-store`` upstream. The domain's assets are encrypted with the mirror's own key.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_codeartifact as codeartifact
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_constructs.encryption import platform_key
from cdk_constructs.permissions import allow

STORE_REPOSITORY = "pypi-store"
READ_REPOSITORY = "python"
#: What pip needs through the mirror: a token (domain), the endpoint, packages (repository); the bearer token
#: ``GetAuthorizationToken`` issues is minted by STS for CodeArtifact.
READ_ACTIONS = ("codeartifact:GetRepositoryEndpoint", "codeartifact:ReadFromRepository")


class PackageMirror(Construct):
    """Attributes: ``key``, ``domain``, ``repository`` (the one jobs read), ``repository_arn``, ``domain_name``."""

    def __init__(self, scope: Construct, construct_id: str, *, project: str, env_name: str,
                 destroy_on_removal: bool = False) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        removal = RemovalPolicy.DESTROY if destroy_on_removal else RemovalPolicy.RETAIN
        self.domain_name = f"{project}-{env_name}".lower()
        self.key = platform_key(self, "Key", alias=f"alias/{project}/{env_name}/package-mirror",
                                description="Package mirror: the CodeArtifact domain's assets",
                                destroy_on_removal=destroy_on_removal)
        self.domain = codeartifact.CfnDomain(self, "Domain", domain_name=self.domain_name,
                                             encryption_key=self.key.key_arn)
        self.domain.apply_removal_policy(removal)
        store = codeartifact.CfnRepository(
            self, "PypiStore", domain_name=self.domain.attr_name, repository_name=STORE_REPOSITORY,
            description="PyPI, fetched on demand and kept", external_connections=["public:pypi"])
        self.repository = codeartifact.CfnRepository(
            self, "Python", domain_name=self.domain.attr_name, repository_name=READ_REPOSITORY,
            description="What the platform's jobs install from (upstream: pypi-store)",
            upstreams=[store.attr_name])
        for repository in (store, self.repository):
            repository.apply_removal_policy(removal)
        self.repository_arn = self.repository.attr_arn
        self._domain_arn = self.domain.attr_arn
        self._stack = stack

    def grant_read(self, role: iam.IRole) -> None:
        """Let ``role`` install packages from the mirror, and nothing else of CodeArtifact."""
        allow(role, actions=["codeartifact:GetAuthorizationToken"], resources=[self._domain_arn])
        allow(role, actions=READ_ACTIONS, resources=[self.repository_arn])
        allow(role, actions=["sts:GetServiceBearerToken"], resources=["*"],
              conditions={"StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"}},
              wildcard_reason="sts:GetServiceBearerToken has no resource type; the condition admits CodeArtifact's "
                              "bearer token only.")
        self.key.grant_decrypt(role)
