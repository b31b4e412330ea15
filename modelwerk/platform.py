"""Where the platform is: the environment, its resource names and the use cases' contracts, resolved once.

Order: an explicit argument > ``MODELWERK_ENV`` > the SSM parameters the stacks publish under ``/modelwerk/<env>/``
> the nearest ``cdk.json``. In a SageMaker Studio notebook SSM answers (no checkout needed); on a laptop with local
mode running, the embedded AWS answers the same SSM calls; with neither, a checkout's cdk.json still gives the names.

Every environment is reached through its AWS profile (``modelwerk-<env>``, or the ``profile`` cdk.json names) when the
AWS configuration has one, else with the credentials at hand: on AWS a profile per account (``role_arn`` +
``source_profile``), locally the profiles ``modelwerk local up`` writes, which differ only in their ``endpoint_url``
(docs/adr/0007-one-code-path.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from modelwerk import naming
from modelwerk.core.contract import Contract
from modelwerk.errors import ConfigurationError, NotFoundError

log = logging.getLogger("modelwerk")

DEFAULT_ENV = "dev"
PROJECT = "modelwerk"


@dataclass(frozen=True)
class Platform:
    """The resolved configuration of one environment."""

    env: str
    region: str
    source: str  # "ssm" or "cdk.json"
    parameters: dict[str, str]
    contracts: dict[str, Contract]
    project: str = PROJECT
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def _parameter(self, name: str) -> str:
        try:
            return self.parameters[name]
        except KeyError:
            raise ConfigurationError(
                f"the {self.env} environment publishes no {naming.ssm_prefix(self.project, self.env)}{name}; "
                "deploy its data lake stack (or run 'modelwerk local up')"
            ) from None

    def bucket(self, zone: str) -> str:
        return self._parameter(f"buckets/{zone}")

    def database(self, zone: str) -> str:
        return self._parameter(f"databases/{zone}")

    @property
    def workgroup(self) -> str:
        return self._parameter("athena/workgroup")

    @property
    def ingest_function(self) -> str:
        return self._parameter("ingest/function-name")

    def contract(self, use_case: str) -> Contract:
        try:
            return self.contracts[use_case]
        except KeyError:
            raise NotFoundError(
                f"unknown use case {use_case!r}; the {self.env} environment has {sorted(self.contracts)}"
            ) from None

    def table(self, use_case: str) -> str:
        return self.parameters.get(f"use-cases/{use_case}/table") or naming.table_name(self.contract(use_case).use_case)

    def preparation_job(self, use_case: str) -> str:
        self.contract(use_case)
        return self._parameter(f"use-cases/{use_case}/preparation-job")

    def contract_parameter(self, use_case: str) -> str:
        return f"{naming.ssm_prefix(self.project, self.env)}use-cases/{use_case}/contract"

    def session(self) -> Any:
        """A boto3 session in this environment's account: its profile where the AWS configuration has one, else
        the credentials at hand."""
        return session(self.env)


def profile_name(env: str) -> str:
    """The AWS profile of ``env``: cdk.json's ``profile`` for it, else ``modelwerk-<env>``."""
    from modelwerk import settings

    try:
        return settings.load().environment(env).profile_name
    except ConfigurationError:
        return f"{PROJECT}-{env}"


def session(env: str) -> Any:
    """A boto3 session in the account of ``env``; see the module's notes."""
    import boto3
    import botocore.session

    name = profile_name(env)
    if os.environ.get("AWS_PROFILE") == name or name in botocore.session.Session().available_profiles:
        return boto3.Session(profile_name=name)
    found = boto3.Session()
    return found if found.region_name else boto3.Session(region_name=_checkout_region(env))


def _checkout_region(env: str) -> str | None:
    """The region cdk.json gives ``env``, for credentials that name none (``AWS_ENDPOINT_URL`` and keys alone)."""
    from modelwerk import settings

    try:
        return settings.load().environment(env).region
    except ConfigurationError:
        return None


def session_for_account(account: str) -> Any:
    """A session in ``account``: the session of the environment cdk.json gives that account (the registry, say),
    else the credentials at hand (on AWS, resource policies let them use another account's ARNs)."""
    from modelwerk import settings

    try:
        config = settings.load()
    except ConfigurationError:
        return session(os.environ.get("MODELWERK_ENV") or DEFAULT_ENV)
    env = next((name for name, e in config.environments.items() if e.account == account), None)
    return session(env or os.environ.get("MODELWERK_ENV") or DEFAULT_ENV)


def _from_ssm(env: str, project: str) -> dict[str, str] | None:
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = naming.ssm_prefix(project, env)
    try:
        ssm = session(env).client("ssm")
        values: dict[str, str] = {}
        for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=prefix, Recursive=True):
            for parameter in page["Parameters"]:
                values[parameter["Name"][len(prefix):]] = parameter["Value"]
        return values or None
    except (BotoCoreError, ClientError) as error:
        log.debug("SSM parameters under %s not available: %s", prefix, error)
        return None


def _from_checkout(env: str) -> tuple[dict[str, str], dict[str, Contract], str]:
    from modelwerk import settings

    config = settings.load()
    environment = config.environment(env)
    project = config.project
    args = (project, env)
    values = {f"buckets/{zone}": naming.bucket_name(project, env, zone, environment.account, environment.region)
              for zone in (*naming.ZONES, "athena-results", "serving")}
    values.update({f"databases/{zone}": naming.database_name(*args, zone) for zone in naming.CATALOG_ZONES})
    values["athena/workgroup"] = naming.workgroup_name(*args)
    values["ingest/function-name"] = naming.ingest_function_name(*args)
    contracts = {}
    for name, use_case in config.use_cases.items():
        contracts[name] = use_case.contract
        values[f"use-cases/{name}/table"] = use_case.contract.table_name
        values[f"use-cases/{name}/preparation-job"] = naming.preparation_job_name(project, env, name)
    return values, contracts, environment.region


def resolve(env: str | None = None, *, refresh: bool = False) -> Platform:
    """The platform of ``env`` (default: ``MODELWERK_ENV``, else dev)."""
    env = env or os.environ.get("MODELWERK_ENV") or DEFAULT_ENV
    if refresh:
        _resolve_cached.cache_clear()
    return _resolve_cached(env, _where())


def _where() -> tuple[str | None, ...]:
    """What decides which AWS answers (the cache key): the profile and endpoint settings of this process."""
    return tuple(os.environ.get(name) for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_ENDPOINT_URL",
                                                   "AWS_ACCESS_KEY_ID"))


@lru_cache(maxsize=8)
def _resolve_cached(env: str, where: tuple[str | None, ...]) -> Platform:
    project = os.environ.get("MODELWERK_PROJECT", PROJECT)
    parameters = _from_ssm(env, project)
    if parameters:
        contracts = {
            name.split("/")[1]: Contract.from_json(value)
            for name, value in parameters.items()
            if name.startswith("use-cases/") and name.endswith("/contract")
        }
        region = session(env).region_name or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
        log.debug("configuration of %s from SSM", env)
        return Platform(env=env, region=region, source="ssm", parameters=parameters, contracts=contracts,
                        project=project)
    values, contracts, region = _from_checkout(env)
    log.info("configuration of %s from cdk.json (no SSM parameters reachable)", env)
    return Platform(env=env, region=region, source="cdk.json", parameters=values, contracts=contracts,
                    project=project)
