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


def pseudonymization_secret_name(project: str, env: str) -> str:
    return f"{project}/{env}/pseudonymization-key"


# Object layout inside the zone buckets.
def raw_prefix(use_case: str) -> str:
    return f"{use_case}/"


def curated_prefix(use_case: str) -> str:
    return f"{use_case}/"


def snapshot_prefix(use_case: str) -> str:
    """Manifests live outside the table location so table readers never see them."""
    return f"_snapshots/{use_case}/"


def ledger_prefix(use_case: str) -> str:
    """Ingestion ledger (one record per landing object and content hash), outside the raw table location."""
    return f"_ledger/{use_case}/"
