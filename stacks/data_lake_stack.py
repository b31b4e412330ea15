"""DataLakeStack: zones, catalog, governance, ingestion, preparation and the parameters the library reads."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from cdk_constructs.data_catalog import DataCatalog
from cdk_constructs.data_lake_zones import BUCKET_ZONES, DataLakeZones, DataLakeZonesProps
from cdk_constructs.ids import pascal
from cdk_constructs.ingestion import IngestionFunction, IngestionFunctionProps
from cdk_constructs.lake_formation import READ, WRITE, LakeFormationGrants, deployment_role_arn
from cdk_constructs.parameters import PlatformParameters
from cdk_constructs.personas import Personas
from cdk_constructs.preparation import PreparationJob, PreparationJobProps
from modelwerk import naming
from modelwerk.settings import EnvironmentConfig, PlatformConfig


class DataLakeStack(Stack):
    """The data lake of one workload environment (ADR 0001)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentConfig,
        vpc: ec2.IVpc,
        workload_security_group: ec2.ISecurityGroup,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        project, env = config.project, environment.name
        prefix = naming.ssm_prefix(project, env)
        use_cases = list(config.use_cases.values())

        def contract_parameter(use_case: str) -> str:
            return f"{prefix}use-cases/{use_case}/contract"

        self.zones = DataLakeZones(
            self,
            "Zones",
            props=DataLakeZonesProps(
                project=project,
                env_name=env,
                account=environment.account,
                region=environment.region,
                landing_expiry_days=environment.landing_expiry_days,
                quarantine_expiry_days=environment.quarantine_expiry_days,
                destroy_on_removal=environment.destroy_on_removal,
            ),
        )
        self.catalog = DataCatalog(
            self,
            "Catalog",
            project=project,
            env_name=env,
            bucket_names={zone: self.zones.bucket_name(zone) for zone in naming.CATALOG_ZONES},
            contracts=[u.contract for u in use_cases],
            results_bucket=self.zones.athena_results,
            key=self.zones.key,
        )
        self.personas = Personas(self, "Personas", zones=self.zones, catalog=self.catalog)
        self.lake_formation = LakeFormationGrants(
            self,
            "LakeFormation",
            admin_arns=[deployment_role_arn(account=environment.account, region=environment.region)],
            zones=self.zones,
            catalog=self.catalog,
            personas=self.personas,
        )

        self.ingestion = IngestionFunction(
            self,
            "Ingestion",
            props=IngestionFunctionProps(
                function_name=naming.ingest_function_name(project, env),
                source_root=config.root,
                use_cases=[u.name for u in use_cases],
                contract_parameter_prefix=f"{prefix}use-cases/",
                contract_parameter_names=[contract_parameter(u.name) for u in use_cases],
                secret_name=naming.pseudonymization_secret_name(project, env),
                destroy_on_removal=environment.destroy_on_removal,
            ),
            landing=self.zones.landing,
            raw=self.zones.raw,
            quarantine=self.zones.quarantine,
            key=self.zones.key,
            vpc=vpc,
            security_group=workload_security_group,
        )

        self.preparation: dict[str, PreparationJob] = {}
        for use_case in use_cases:
            job = PreparationJob(
                self,
                f"Prepare{pascal(use_case.name)}",
                props=PreparationJobProps(
                    job_name=naming.preparation_job_name(project, env, use_case.name),
                    use_case=use_case.name,
                    source_root=config.root,
                    contract_parameter_name=contract_parameter(use_case.name),
                    schedule=environment.preparation_schedule,
                ),
                raw=self.zones.raw,
                curated=self.zones.curated,
                key=self.zones.key,
                catalog=self.catalog,
            )
            self.lake_formation.grant_table(
                f"Prepare{pascal(use_case.name)}Raw",
                role=job.role,
                zone="raw",
                use_case=use_case.name,
                permissions=READ,
            )
            self.lake_formation.grant_table(
                f"Prepare{pascal(use_case.name)}Curated",
                role=job.role,
                zone="curated",
                use_case=use_case.name,
                permissions=WRITE,
            )
            self.preparation[use_case.name] = job

        self.parameters = PlatformParameters(
            self,
            "Parameters",
            prefix=prefix,
            values={
                **{f"buckets/{zone}": self.zones.bucket_name(zone) for zone in BUCKET_ZONES},
                **{f"databases/{zone}": self.catalog.database_names[zone] for zone in naming.CATALOG_ZONES},
                "athena/workgroup": self.catalog.workgroup_name,
                "kms/data-key-arn": self.zones.key.key_arn,
                "ingest/function-name": naming.ingest_function_name(project, env),
                **{
                    key: value
                    for u in use_cases
                    for key, value in {
                        f"use-cases/{u.name}/contract": u.contract.to_json(),
                        f"use-cases/{u.name}/table": u.contract.table_name,
                        f"use-cases/{u.name}/preparation-job": naming.preparation_job_name(project, env, u.name),
                    }.items()
                },
            },
        )
