"""Lake Formation governs the catalog: data lake settings, registered zone locations and grants per persona.

New databases and tables get no ``IAMAllowedPrincipals`` permission, so only explicit grants open a table. The
CloudFormation execution role is a data lake administrator, otherwise it could not create the grants below.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import DefaultStackSynthesizer, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lakeformation as lf
from constructs import Construct

from cdk_constructs.data_catalog import DataCatalog
from cdk_constructs.data_lake_zones import DataLakeZones
from cdk_constructs.ids import pascal
from cdk_constructs.permissions import S3_DELETE, S3_READ, S3_WRITE, allow_key, allow_list, allow_objects
from cdk_constructs.personas import ENGINEER_ZONES, PIPELINE_ZONES, SCIENTIST_ZONES, Personas
from modelwerk import naming

READ = ("SELECT", "DESCRIBE")
WRITE = ("SELECT", "INSERT", "DELETE", "DESCRIBE", "ALTER")
MANAGE_DATABASE = ("CREATE_TABLE", "ALTER", "DESCRIBE")


def deployment_role_arn(
    *, account: str, region: str, qualifier: str = DefaultStackSynthesizer.DEFAULT_QUALIFIER
) -> str:
    """The CloudFormation execution role ``cdk bootstrap`` creates (``cdk-<qualifier>-cfn-exec-role-<account>-<region>``)."""
    return f"arn:aws:iam::{account}:role/cdk-{qualifier}-cfn-exec-role-{account}-{region}"


class LakeFormationGrants(Construct):
    """Settings (``admin_arns`` are the administrators), the raw/curated/analytics locations registered with a data
    access role, and the persona grants:

    - data engineer: create/alter tables, read/write data and data location access in raw and curated;
    - data scientist: SELECT/DESCRIBE on curated and analytics tables;
    - pipeline: SELECT/DESCRIBE on curated tables.

    ``grant_table`` adds a grant for another principal (the preparation jobs).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        admin_arns: Sequence[str],
        zones: DataLakeZones,
        catalog: DataCatalog,
        personas: Personas,
    ) -> None:
        super().__init__(scope, construct_id)
        self._catalog = catalog
        self._account = Stack.of(self).account

        self.settings = lf.CfnDataLakeSettings(
            self,
            "Settings",
            admins=[
                lf.CfnDataLakeSettings.DataLakePrincipalProperty(data_lake_principal_identifier=a) for a in admin_arns
            ],
            create_database_default_permissions=[],
            create_table_default_permissions=[],
        )

        self.data_access_role = iam.Role(
            self,
            "DataAccessRole",
            assumed_by=iam.ServicePrincipal("lakeformation.amazonaws.com"),
            description="Lake Formation reads and writes the registered zone locations on behalf of granted principals",
        )
        registered = [zones.buckets[z] for z in naming.CATALOG_ZONES]
        allow_list(self.data_access_role, *registered)
        for bucket in registered:
            allow_objects(
                self.data_access_role,
                bucket,
                prefixes=[""],
                actions=(*S3_READ, *S3_WRITE, *S3_DELETE),
                reason="Lake Formation vends access to any table location in a registered zone bucket.",
            )
        allow_key(self.data_access_role, zones.key, encrypt=True)

        self.locations: dict[str, lf.CfnResource] = {}
        for zone in naming.CATALOG_ZONES:
            location = lf.CfnResource(
                self,
                f"{pascal(zone)}Location",
                resource_arn=zones.buckets[zone].bucket_arn,
                use_service_linked_role=False,
                role_arn=self.data_access_role.role_arn,
            )
            location.add_resource_dependency(self.settings)
            self.locations[zone] = location

        engineer = personas.data_engineer
        for zone in ENGINEER_ZONES:
            self.grant_database(
                f"DataEngineer{pascal(zone)}Database", role=engineer, zone=zone, permissions=MANAGE_DATABASE
            )
            self.grant_table(f"DataEngineer{pascal(zone)}Tables", role=engineer, zone=zone, permissions=WRITE)
            self.grant_location(f"DataEngineer{pascal(zone)}Location", role=engineer, zone=zone, zones=zones)
        for zone in SCIENTIST_ZONES:
            self.grant_database(f"DataScientist{pascal(zone)}Database", role=personas.data_scientist, zone=zone)
            self.grant_table(
                f"DataScientist{pascal(zone)}Tables", role=personas.data_scientist, zone=zone, permissions=READ
            )
        for zone in PIPELINE_ZONES:
            self.grant_database(f"Pipeline{pascal(zone)}Database", role=personas.pipeline, zone=zone)
            self.grant_table(f"Pipeline{pascal(zone)}Tables", role=personas.pipeline, zone=zone, permissions=READ)

    def grant_table(
        self,
        construct_id: str,
        *,
        role: iam.IRole,
        zone: str,
        permissions: Sequence[str],
        use_case: str | None = None,
    ) -> lf.CfnPrincipalPermissions:
        """``permissions`` on one use case's table of ``zone``, or on every table of it (``use_case=None``)."""
        table = lf.CfnPrincipalPermissions.TableResourceProperty(
            catalog_id=self._account,
            database_name=self._catalog.database_names[zone],
            name=naming.table_name(use_case) if use_case else None,
            table_wildcard=None if use_case else {},
        )
        grant = self._grant(construct_id, role, lf.CfnPrincipalPermissions.ResourceProperty(table=table), permissions)
        grant.add_resource_dependency(self._catalog.databases[zone])
        if use_case:
            grant.add_resource_dependency(self._catalog.tables[(zone, use_case)])
        return grant

    def grant_database(
        self, construct_id: str, *, role: iam.IRole, zone: str, permissions: Sequence[str] = ("DESCRIBE",)
    ) -> lf.CfnPrincipalPermissions:
        database = lf.CfnPrincipalPermissions.DatabaseResourceProperty(
            catalog_id=self._account, name=self._catalog.database_names[zone]
        )
        grant = self._grant(
            construct_id, role, lf.CfnPrincipalPermissions.ResourceProperty(database=database), permissions
        )
        grant.add_resource_dependency(self._catalog.databases[zone])
        return grant

    def grant_location(
        self, construct_id: str, *, role: iam.IRole, zone: str, zones: DataLakeZones
    ) -> lf.CfnPrincipalPermissions:
        """DATA_LOCATION_ACCESS: create tables pointing into the zone's registered bucket."""
        location = lf.CfnPrincipalPermissions.DataLocationResourceProperty(
            catalog_id=self._account, resource_arn=zones.buckets[zone].bucket_arn
        )
        grant = self._grant(
            construct_id,
            role,
            lf.CfnPrincipalPermissions.ResourceProperty(data_location=location),
            ("DATA_LOCATION_ACCESS",),
        )
        grant.add_resource_dependency(self.locations[zone])
        return grant

    def _grant(
        self,
        construct_id: str,
        role: iam.IRole,
        resource: lf.CfnPrincipalPermissions.ResourceProperty,
        permissions: Sequence[str],
    ) -> lf.CfnPrincipalPermissions:
        grant = lf.CfnPrincipalPermissions(
            self,
            construct_id,
            catalog=self._account,
            principal=lf.CfnPrincipalPermissions.DataLakePrincipalProperty(
                data_lake_principal_identifier=role.role_arn
            ),
            resource=resource,
            permissions=list(permissions),
            permissions_with_grant_option=[],
        )
        grant.add_resource_dependency(self.settings)
        return grant
