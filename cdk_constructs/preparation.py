"""Preparation: a scheduled Glue Spark job per use case turns new raw partitions into the curated table.

The script and its library (the job's modules plus ``modelwerk/core/``) are assets assembled at synth, so the job
runs exactly the code of the checkout that was deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from cdk_constructs.bundling import Copy, LocalBundle
from cdk_constructs.data_catalog import DataCatalog
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
from modelwerk import naming

JOB_FOLDER = Path("glue_jobs") / "prepare_curated"
SCRIPT = JOB_FOLDER / "job.py"
#: An empty package marker: zip assets carry no directory entries, so ``modelwerk`` could not be a namespace package
#: inside the job's --extra-py-files archive. Only the leaf modules below travel with the job.
PACKAGE_MARKER = '"""Only the modules the preparation job needs: modelwerk.core and modelwerk.naming."""\n'


@dataclass(frozen=True)
class PreparationJobProps:
    """Settings of one use case's preparation job.

    job_name: Glue job name (``naming.preparation_job_name``); also names its security configuration.
    use_case: the use case it prepares.
    source_root: the checkout holding ``glue_jobs/prepare_curated/`` and ``modelwerk/``.
    contract_parameter_name: SSM parameter with the use case's contract.
    schedule: Glue cron expression of the trigger (``cron(15 * * * ? *)``).
    worker_type, number_of_workers: Spark capacity (default G.1X x 2: hourly increments are small).
    timeout_minutes: a run is stopped after this long (default 60).
    """

    job_name: str
    use_case: str
    source_root: Path
    contract_parameter_name: str
    schedule: str
    worker_type: str = "G.1X"
    number_of_workers: int = 2
    timeout_minutes: int = 60


class PreparationJob(Construct):
    """Glue 5.0 job (bookmarks off: the job keeps its own state object), KMS security configuration, scheduled trigger.

    Attributes: ``job``, ``role``, ``security_configuration``, ``trigger``, ``script``, ``library``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: PreparationJobProps,
        raw: s3.IBucket,
        curated: s3.IBucket,
        key: kms.IKey,
        catalog: DataCatalog,
    ) -> None:
        super().__init__(scope, construct_id)
        root = props.source_root
        self.script = s3_assets.Asset(self, "Script", path=str(root / SCRIPT))
        library = LocalBundle(
            copies=[
                Copy(root / JOB_FOLDER),
                Copy(root / "modelwerk" / "core", "modelwerk/core"),
                Copy(root / "modelwerk" / "naming.py", "modelwerk/naming.py"),
            ],
            files={"modelwerk/__init__.py": PACKAGE_MARKER},
        )
        self.library = s3_assets.Asset(self, "Library", path=str(root / JOB_FOLDER), bundling=library.options())

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Preparation job of {props.use_case}: read raw, write curated",
        )
        self.security_configuration = glue.CfnSecurityConfiguration(
            self,
            "SecurityConfiguration",
            name=props.job_name,
            encryption_configuration=glue.CfnSecurityConfiguration.EncryptionConfigurationProperty(
                s3_encryptions=[
                    glue.CfnSecurityConfiguration.S3EncryptionProperty(
                        s3_encryption_mode="SSE-KMS", kms_key_arn=key.key_arn
                    )
                ],
                cloud_watch_encryption=glue.CfnSecurityConfiguration.CloudWatchEncryptionProperty(
                    cloud_watch_encryption_mode="SSE-KMS", kms_key_arn=key.key_arn
                ),
                job_bookmarks_encryption=glue.CfnSecurityConfiguration.JobBookmarksEncryptionProperty(
                    job_bookmarks_encryption_mode="CSE-KMS", kms_key_arn=key.key_arn
                ),
            ),
        )
        self.job = glue.CfnJob(
            self,
            "Job",
            name=props.job_name,
            description=f"Prepares the curated table of {props.use_case} from its raw table",
            role=self.role.role_arn,
            glue_version="5.0",
            command=glue.CfnJob.JobCommandProperty(
                name="glueetl", python_version="3", script_location=self.script.s3_object_url
            ),
            worker_type=props.worker_type,
            number_of_workers=props.number_of_workers,
            timeout=props.timeout_minutes,
            max_retries=0,
            execution_property=glue.CfnJob.ExecutionPropertyProperty(max_concurrent_runs=1),
            security_configuration=props.job_name,
            default_arguments={
                "--job-language": "python",
                "--extra-py-files": self.library.s3_object_url,
                "--job-bookmark-option": "job-bookmark-disable",
                "--enable-metrics": "true",
                "--enable-continuous-cloudwatch-log": "true",
                "--enable-glue-datacatalog": "true",
                "--use_case": props.use_case,
                "--raw_bucket": raw.bucket_name,
                "--curated_bucket": curated.bucket_name,
                "--contract_parameter": props.contract_parameter_name,
                "--partitions": "auto",
            },
        )
        self.job.add_resource_dependency(self.security_configuration)
        self.trigger = glue.CfnTrigger(
            self,
            "Schedule",
            description=f"Prepares {props.use_case} on a schedule",
            type="SCHEDULED",
            schedule=props.schedule,
            start_on_creation=True,
            actions=[glue.CfnTrigger.ActionProperty(job_name=props.job_name)],
        )
        self.trigger.add_resource_dependency(self.job)

        self._permissions(props, raw=raw, curated=curated, key=key, catalog=catalog)

    def _permissions(
        self, props: PreparationJobProps, *, raw: s3.IBucket, curated: s3.IBucket, key: kms.IKey, catalog: DataCatalog
    ) -> None:
        role, use_case = self.role, props.use_case
        stack = Stack.of(self)
        allow(
            role,
            actions=["s3:GetObject"],
            resources=[a.bucket.arn_for_objects(a.s3_object_key) for a in (self.script, self.library)],
        )
        allow_list(role, raw)
        allow_objects(
            role,
            raw,
            prefixes=[naming.raw_prefix(use_case)],
            actions=S3_READ,
            reason="The job reads every raw partition of its use case folder.",
        )
        allow_list(role, curated, versions=True)
        allow_objects(
            role,
            curated,
            prefixes=[
                naming.curated_prefix(use_case),
                f"{use_case}_$folder$",
                naming.snapshot_prefix(use_case),
                f"_runs/{use_case}/",
                f"_state/{use_case}.json",
            ],
            actions=(*S3_READ, *S3_WRITE, *S3_DELETE),
            reason="The job rewrites the partitions of its use case folder and writes snapshot manifests and run "
            "reports (keyed by id and time) in its own folders.",
        )
        allow_key(role, key, encrypt=True)
        allow(
            role,
            actions=["ssm:GetParameter"],
            resources=[
                stack.format_arn(
                    service="ssm", resource="parameter", resource_name=props.contract_parameter_name.lstrip("/")
                )
            ],
        )
        allow(
            role,
            actions=GLUE_READ,
            resources=[
                catalog.catalog_arn,
                catalog.database_arn("raw"),
                catalog.database_arn("curated"),
                catalog.table_arn("raw", use_case),
                catalog.table_arn("curated", use_case),
            ],
        )
        allow(
            role,
            actions=["lakeformation:GetDataAccess"],
            resources=["*"],
            wildcard_reason="lakeformation:GetDataAccess has no resource-level permissions; the job's Lake "
            "Formation grants limit it to its raw and curated tables.",
        )
        glue_logs = stack.format_arn(
            service="logs", resource="log-group", resource_name="/aws-glue/*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        allow(
            role,
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"],
            resources=[glue_logs],
            wildcard_reason="Glue names the job's log groups under /aws-glue/ after the security configuration and "
            "role at run time.",
        )
        allow(
            role,
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": "Glue"}},
            wildcard_reason="cloudwatch:PutMetricData has no resource-level permissions; limited to the Glue "
            "namespace by condition.",
        )
