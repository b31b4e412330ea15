"""The people and pipelines that use the data lake, as IAM roles whose policies match their Lake Formation grants.

Lake Formation decides which tables a principal may query; the IAM policies below only let each role reach the
buckets, key, catalog and workgroup of the zones its grants cover, so both layers say the same thing.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_constructs.data_catalog import DataCatalog
from cdk_constructs.data_lake_zones import DataLakeZones
from cdk_constructs.permissions import (
    GLUE_READ,
    S3_DELETE,
    S3_READ,
    S3_WRITE,
    allow,
    allow_key,
    allow_list,
    allow_objects,
)

ATHENA_QUERY = (
    "athena:StartQueryExecution",
    "athena:StopQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:GetWorkGroup",
)
GLUE_WRITE = (
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:DeleteTable",
    "glue:BatchCreatePartition",
    "glue:CreatePartition",
)
#: Zones each persona works in (their Lake Formation grants cover the same zones).
ENGINEER_ZONES = ("raw", "curated")
SCIENTIST_ZONES = ("curated", "analytics")
PIPELINE_ZONES = ("curated",)

LF_DATA_ACCESS_REASON = (
    "lakeformation:GetDataAccess has no resource-level permissions; Lake Formation grants decide what it vends."
)


class Personas(Construct):
    """``data_engineer`` (assumed from the account), ``data_scientist`` (SageMaker Studio), ``pipeline`` (SageMaker
    Pipelines) roles with the S3, KMS, Glue and Athena permissions of their zones."""

    def __init__(self, scope: Construct, construct_id: str, *, zones: DataLakeZones, catalog: DataCatalog) -> None:
        super().__init__(scope, construct_id)
        self._zones = zones
        self._catalog = catalog

        self.data_engineer = iam.Role(
            self,
            "DataEngineer",
            assumed_by=iam.AccountRootPrincipal(),
            description="Data engineers: manage raw and curated data and tables",
        )
        self.data_scientist = iam.Role(
            self,
            "DataScientist",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker Studio users: read curated and analytics data",
        )
        self.pipeline = iam.Role(
            self,
            "Pipeline",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker Pipelines: read curated data",
        )

        self._zone_access(
            self.data_engineer,
            ENGINEER_ZONES,
            actions=(*S3_READ, *S3_WRITE, *S3_DELETE),
            reason="Data engineers maintain every object of the raw and curated zones (backfills, repairs).",
        )
        self._catalog_access(self.data_engineer, ENGINEER_ZONES, actions=(*GLUE_READ, *GLUE_WRITE))
        self._query_access(self.data_engineer)

        self._zone_access(
            self.data_scientist,
            SCIENTIST_ZONES,
            actions=S3_READ,
            reason="Data scientists read every table of the curated and analytics zones; Lake Formation narrows it.",
        )
        self._catalog_access(self.data_scientist, SCIENTIST_ZONES, actions=GLUE_READ)
        self._query_access(self.data_scientist)

        self._zone_access(
            self.pipeline,
            PIPELINE_ZONES,
            actions=S3_READ,
            reason="Training pipelines read the curated objects a data snapshot names, in any use case folder.",
        )
        self._catalog_access(self.pipeline, PIPELINE_ZONES, actions=GLUE_READ)

    @property
    def roles(self) -> dict[str, iam.Role]:
        return {"data-engineer": self.data_engineer, "data-scientist": self.data_scientist, "pipeline": self.pipeline}

    def _zone_access(self, role: iam.IRole, zones: tuple[str, ...], *, actions: tuple[str, ...], reason: str) -> None:
        buckets = [self._zones.buckets[z] for z in zones]
        allow_list(role, *buckets)
        for bucket in buckets:
            allow_objects(role, bucket, prefixes=[""], actions=actions, reason=reason)
        allow_key(role, self._zones.key, encrypt=any(a in S3_WRITE for a in actions))
        allow(
            role,
            actions=["lakeformation:GetDataAccess"],
            resources=["*"],
            wildcard_reason=LF_DATA_ACCESS_REASON,
        )

    def _catalog_access(self, role: iam.IRole, zones: tuple[str, ...], *, actions: tuple[str, ...]) -> None:
        stack = Stack.of(self)
        tables = [
            stack.format_arn(service="glue", resource="table", resource_name=f"{self._catalog.database_names[z]}/*")
            for z in zones
        ]
        allow(
            role,
            actions=actions,
            resources=[self._catalog.catalog_arn, *[self._catalog.database_arn(z) for z in zones], *tables],
            wildcard_reason="Every table of the persona's zones, including use cases added later by configuration.",
        )

    def _query_access(self, role: iam.IRole) -> None:
        """Athena in the platform's workgroup, whose results (SSE-KMS) land in the athena-results bucket."""
        stack = Stack.of(self)
        workgroup = stack.format_arn(service="athena", resource="workgroup", resource_name=self._catalog.workgroup_name)
        allow(role, actions=ATHENA_QUERY, resources=[workgroup])
        results = self._zones.athena_results
        allow_list(role, results)
        allow_objects(
            role,
            results,
            prefixes=["results/"],
            actions=(*S3_READ, *S3_WRITE),
            reason="Athena writes one result object per query under results/.",
        )
        allow_key(role, self._zones.key, encrypt=True)
