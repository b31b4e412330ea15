"""The platform's configuration as declared in ``cdk.json`` context: environments and use cases.

``app.py`` reads it once to build the stages; the library reads the same file when it runs from a checkout. Both go
through this module, so a typo in ``cdk.json`` fails the same way in ``cdk synth`` and in a notebook.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from modelwerk.core.contract import Contract
from modelwerk.errors import ConfigurationError

ENVIRONMENTS_KEY = "modelwerk:environments"
USE_CASES_KEY = "modelwerk:use_cases"
TAGS_KEY = "modelwerk:tags"
PROJECT_KEY = "modelwerk:project"
WORKLOAD_ENVIRONMENTS = ("dev", "staging", "prod")


@dataclass(frozen=True)
class EnvironmentConfig:
    """One deployment environment (an AWS account and region).

    ``kind`` is ``workload`` (dev, staging, prod: data lake, pipelines, endpoints) or ``registry`` (the shared model
    registry account). Expiry days apply to the landing and quarantine zones; ``destroy_on_removal`` lets a
    throw-away environment delete its buckets with the stack (default: keep them).
    """

    name: str
    account: str
    region: str
    kind: str = "workload"
    availability_zones: tuple[str, ...] = ()
    vpc_cidr: str = "10.0.0.0/16"
    landing_expiry_days: int = 7
    quarantine_expiry_days: int = 30
    preparation_schedule: str = "cron(15 * * * ? *)"
    destroy_on_removal: bool = False

    @classmethod
    def from_dict(cls, name: str, doc: Mapping[str, Any]) -> "EnvironmentConfig":
        allowed = set(cls.__dataclass_fields__) - {"name"}
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise ConfigurationError(f"environment {name!r} in cdk.json has unknown setting(s) {unknown}; allowed: {sorted(allowed)}")
        for required in ("account", "region"):
            if required not in doc:
                raise ConfigurationError(f"environment {name!r} in cdk.json needs {required!r}")
        account = str(doc["account"])
        if not (len(account) == 12 and account.isdigit()):
            raise ConfigurationError(f"environment {name!r}: account {account!r} must be a 12-digit AWS account id")
        if doc.get("kind", "workload") not in ("workload", "registry"):
            raise ConfigurationError(f"environment {name!r}: kind must be 'workload' or 'registry'")
        values = dict(doc)
        values["account"] = account
        values["availability_zones"] = tuple(doc.get("availability_zones", ()))
        env = cls(name=name, **values)
        if env.kind == "workload" and len(env.availability_zones) < 2:
            raise ConfigurationError(f"environment {name!r}: list at least two availability_zones for its VPC")
        return env


@dataclass(frozen=True)
class UseCaseConfig:
    """One use case: a folder under ``sagemaker_pipelines/`` holding its contract (and, later, its pipeline)."""

    name: str
    folder: Path
    contract: Contract


@dataclass(frozen=True)
class PlatformConfig:
    """Everything ``cdk.json`` declares for the platform."""

    root: Path
    project: str
    environments: dict[str, EnvironmentConfig]
    use_cases: dict[str, UseCaseConfig]
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def registry(self) -> EnvironmentConfig:
        return next(e for e in self.environments.values() if e.kind == "registry")

    @property
    def workloads(self) -> list[EnvironmentConfig]:
        return [e for e in self.environments.values() if e.kind == "workload"]

    def environment(self, name: str) -> EnvironmentConfig:
        try:
            return self.environments[name]
        except KeyError:
            raise ConfigurationError(
                f"unknown environment {name!r}; cdk.json declares {sorted(self.environments)}"
            ) from None

    def use_case(self, name: str) -> UseCaseConfig:
        try:
            return self.use_cases[name]
        except KeyError:
            raise ConfigurationError(
                f"unknown use case {name!r}; cdk.json declares {sorted(self.use_cases)}"
            ) from None


def parse_context(context: Mapping[str, Any], root: Path) -> PlatformConfig:
    """Build the configuration from cdk.json's ``context`` object; ``root`` is the checkout the folders are relative to."""
    environments_doc = context.get(ENVIRONMENTS_KEY)
    if not environments_doc:
        raise ConfigurationError(f"cdk.json context has no {ENVIRONMENTS_KEY!r}")
    environments = {name: EnvironmentConfig.from_dict(name, doc) for name, doc in environments_doc.items()}
    registries = [e.name for e in environments.values() if e.kind == "registry"]
    if len(registries) != 1:
        raise ConfigurationError(f"cdk.json must declare exactly one registry environment, found {registries}")
    use_cases = {}
    for name, doc in (context.get(USE_CASES_KEY) or {}).items():
        unknown = sorted(set(doc) - {"folder"})
        if unknown:
            raise ConfigurationError(f"use case {name!r} in cdk.json has unknown setting(s) {unknown}")
        folder = root / doc["folder"]
        contract_file = folder / "contract.json"
        if not contract_file.is_file():
            raise ConfigurationError(f"use case {name!r}: {contract_file} not found; every use case folder holds a contract.json")
        contract = Contract.load(contract_file)
        if contract.use_case != name:
            raise ConfigurationError(f"use case {name!r}: {contract_file} declares use_case {contract.use_case!r}")
        use_cases[name] = UseCaseConfig(name=name, folder=folder, contract=contract)
    return PlatformConfig(
        root=root,
        project=str(context.get(PROJECT_KEY, "modelwerk")),
        environments=environments,
        use_cases=use_cases,
        tags=dict(context.get(TAGS_KEY) or {}),
    )


def find_checkout(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory, then this package) with a cdk.json."""
    candidates = [Path(start or os.getcwd()).resolve(), Path(__file__).resolve().parent]
    for candidate in candidates:
        for folder in (candidate, *candidate.parents):
            if (folder / "cdk.json").is_file():
                return folder
    return None


def load(root: Path | str | None = None) -> PlatformConfig:
    """Read ``cdk.json`` of the checkout at ``root`` (default: the nearest one)."""
    checkout = Path(root) if root else find_checkout()
    if checkout is None:
        raise ConfigurationError("no cdk.json found here or above; run from a checkout of the platform or set MODELWERK_ENV")
    document = json.loads((checkout / "cdk.json").read_text(encoding="utf-8"))
    return parse_context(document.get("context", {}), checkout)
