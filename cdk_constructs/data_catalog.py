"""Glue databases and tables for the raw, curated and analytics zones, and the Athena workgroup that queries them.

Table columns come from each use case's contract, so the catalog cannot disagree with what ingestion and
preparation write. Partitions are projected (``dt``, one per day): nothing has to register them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.ids import pascal
from modelwerk import naming
from modelwerk.core.contract import PARTITION_COLUMN, Contract

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
#: First day partition projection enumerates; data before it is not queryable through the table.
PROJECTION_START = "2020-01-01"
#: A query scanning more than this is cancelled (10 GiB): a guard against an accidental full scan.
BYTES_SCANNED_CUTOFF = 10 * 1024**3


def projected_partitions(location: str) -> dict[str, str]:
    """Table parameters projecting the daily ``dt`` partition under ``location`` (``s3://bucket/use-case/``)."""
    return {
        "projection.enabled": "true",
        f"projection.{PARTITION_COLUMN}.type": "date",
        f"projection.{PARTITION_COLUMN}.format": "yyyy-MM-dd",
        f"projection.{PARTITION_COLUMN}.range": f"{PROJECTION_START},NOW",
        f"projection.{PARTITION_COLUMN}.interval": "1",
        f"projection.{PARTITION_COLUMN}.interval.unit": "DAYS",
        "storage.location.template": f"{location}{PARTITION_COLUMN}=${{{PARTITION_COLUMN}}}/",
    }


def parquet_table(scope: Construct, construct_id: str, *, account: str, database_name: str, name: str,
                  description: str, columns: Sequence[tuple[str, str]], location: str) -> glue.CfnTable:
    """An external Parquet table under ``location`` with a daily ``dt`` partition that Athena projects (nothing
    registers partitions)."""
    return glue.CfnTable(
        scope,
        construct_id,
        catalog_id=account,
        database_name=database_name,
        table_input=glue.CfnTable.TableInputProperty(
            name=name,
            description=description,
            table_type="EXTERNAL_TABLE",
            parameters={"classification": "parquet", "EXTERNAL": "TRUE", **projected_partitions(location)},
            partition_keys=[glue.CfnTable.ColumnProperty(name=PARTITION_COLUMN, type="string")],
            storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in columns],
                location=location,
                input_format=PARQUET_INPUT,
                output_format=PARQUET_OUTPUT,
                serde_info=glue.CfnTable.SerdeInfoProperty(
                    serialization_library=PARQUET_SERDE, parameters={"serialization.format": "1"}
                ),
            ),
        ),
    )


def table_prefix(zone: str, use_case: str) -> str:
    """Where a use case's table lives inside its zone bucket (analytics follows the curated layout)."""
    return naming.raw_prefix(use_case) if zone == "raw" else naming.curated_prefix(use_case)


class DataCatalog(Construct):
    """One Glue database per catalog zone, one Parquet table per use case in each, and the Athena workgroup.

    ``databases[zone]`` and ``tables[(zone, use_case)]`` expose the created resources; ``database_names[zone]``
    the plain names.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        env_name: str,
        bucket_names: Mapping[str, str],
        contracts: Sequence[Contract],
        results_bucket: s3.IBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        account = Stack.of(self).account
        self.database_names = {zone: naming.database_name(project, env_name, zone) for zone in naming.CATALOG_ZONES}
        self.databases: dict[str, glue.CfnDatabase] = {}
        self.tables: dict[tuple[str, str], glue.CfnTable] = {}

        for zone in naming.CATALOG_ZONES:
            database = glue.CfnDatabase(
                self,
                f"{zone.capitalize()}Database",
                catalog_id=account,
                database_input=glue.CfnDatabase.DatabaseInputProperty(
                    name=self.database_names[zone],
                    description=f"{project} {env_name}: {zone} zone",
                ),
            )
            self.databases[zone] = database
            for contract in contracts:
                columns = contract.raw_schema() if zone == "raw" else contract.curated_schema()
                location = f"s3://{bucket_names[zone]}/{table_prefix(zone, contract.use_case)}"
                table = parquet_table(
                    self,
                    f"{zone.capitalize()}{pascal(contract.use_case)}Table",
                    account=account,
                    database_name=self.database_names[zone],
                    name=contract.table_name,
                    description=f"{contract.use_case} ({zone})",
                    columns=columns,
                    location=location,
                )
                table.add_resource_dependency(database)
                self.tables[(zone, contract.use_case)] = table

        self.workgroup_name = naming.workgroup_name(project, env_name)
        self.workgroup = athena.CfnWorkGroup(
            self,
            "Workgroup",
            name=self.workgroup_name,
            description=f"{project} {env_name}: settings enforced, results encrypted with the data lake key",
            state="ENABLED",
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=BYTES_SCANNED_CUTOFF,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{results_bucket.bucket_name}/results/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=key.key_arn
                    ),
                    expected_bucket_owner=account,
                ),
            ),
        )

    def table_arn(self, zone: str, use_case: str) -> str:
        return Stack.of(self).format_arn(
            service="glue", resource="table", resource_name=f"{self.database_names[zone]}/{naming.table_name(use_case)}"
        )

    def database_arn(self, zone: str) -> str:
        return Stack.of(self).format_arn(service="glue", resource="database", resource_name=self.database_names[zone])

    @property
    def catalog_arn(self) -> str:
        return Stack.of(self).format_arn(service="glue", resource="catalog")
