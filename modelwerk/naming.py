"""Physical names of the platform's resources, derived from environment and account.

The CDK constructs name what they create with these functions and the library derives the same names when it has
only a cdk.json at hand, so there is one list of names. Names are deterministic because a notebook that knows the
environment must be able to find the buckets without a deployment output.
"""

from __future__ import annotations

ZONES = ("landing", "raw", "curated", "analytics", "quarantine")
CATALOG_ZONES = ("raw", "curated", "analytics")


def bucket_name(project: str, env: str, zone: str, account: str, region: str) -> str:
    """S3 bucket of one data lake zone (or ``access-logs``, ``athena-results``)."""
    return f"{project}-{env}-{zone}-{account}-{region}"


def database_name(project: str, env: str, zone: str) -> str:
    """Glue database of one zone; Glue allows no hyphens in names Athena queries."""
    return f"{project}_{env}_{zone}".replace("-", "_")


def table_name(use_case: str) -> str:
    """Glue table of a use case, the same in every zone."""
    return use_case.replace("-", "_")


def ssm_prefix(project: str, env: str) -> str:
    """Where the stacks publish what the library needs: ``/modelwerk/<env>/``."""
    return f"/{project}/{env}/"


def workgroup_name(project: str, env: str) -> str:
    return f"{project}-{env}"


def ingest_function_name(project: str, env: str) -> str:
    return f"{project}-{env}-ingest"


def preparation_job_name(project: str, env: str, use_case: str) -> str:
    return f"{project}-{env}-prepare-{use_case}"


def model_package_group_name(project: str, use_case: str) -> str:
    """The registry's model package group of a use case (one registry serves every environment)."""
    return f"{project}-{use_case}"


def pseudonymization_secret_name(project: str, env: str) -> str:
    return f"{project}/{env}/pseudonymization-key"


# Object layout inside the zone buckets: one implementation in the leaf package the Lambda and the job carry.
from modelwerk.core.layout import curated_prefix, ledger_prefix, raw_prefix, snapshot_prefix  # noqa: E402,F401
