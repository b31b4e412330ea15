"""DataLakeStack: zone buckets, catalog, Athena, Lake Formation, ingestion, preparation and SSM parameters."""

from __future__ import annotations

import re

import pytest
from aws_cdk.assertions import Match

from cdk_constructs.data_lake_zones import BUCKET_ZONES
from modelwerk import naming, settings

pytestmark = pytest.mark.slow

CONFIG = settings.load()
WORKLOADS = [e.name for e in CONFIG.workloads]
USE_CASES = list(CONFIG.use_cases)
KMS_ZONES = [z for z in BUCKET_ZONES if z != "access-logs"]
PUBLIC_ACCESS_BLOCKED = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}


def bucket_name(env: str, zone: str) -> str:
    environment = CONFIG.environment(env)
    return naming.bucket_name(CONFIG.project, env, zone, environment.account, environment.region)


def bucket_properties(template, env: str, zone: str) -> dict:
    found = template.find_resources("AWS::S3::Bucket", {"Properties": {"BucketName": bucket_name(env, zone)}})
    assert len(found) == 1, f"expected one bucket named {bucket_name(env, zone)}"
    return next(iter(found.values()))


def lifecycle_rules(template, env: str, zone: str) -> list[dict]:
    return bucket_properties(template, env, zone)["Properties"]["LifecycleConfiguration"]["Rules"]


# --- buckets and key ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", WORKLOADS)
@pytest.mark.parametrize("zone", KMS_ZONES)
def test_zone_bucket_is_kms_encrypted_versioned_private_and_logged(synthesized, env, zone):
    template = synthesized.template(env, "DataLake")
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": bucket_name(env, zone),
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "ServerSideEncryptionByDefault": {
                                    "SSEAlgorithm": "aws:kms",
                                    "KMSMasterKeyID": Match.any_value(),
                                }
                            }
                        )
                    ]
                )
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": PUBLIC_ACCESS_BLOCKED,
            "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": Match.any_value()},
        },
    )


def test_access_log_bucket_uses_s3_managed_encryption(dev_data_lake):
    dev_data_lake.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": bucket_name("dev", "access-logs"),
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    Match.object_like({"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}})
                ]
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": PUBLIC_ACCESS_BLOCKED,
        },
    )


@pytest.mark.parametrize("env", WORKLOADS)
def test_buckets_are_retained_with_the_stack(synthesized, config, env):
    assert not config.environment(env).destroy_on_removal, "this test reads cdk.json as committed"
    buckets = synthesized.template(env, "DataLake").find_resources("AWS::S3::Bucket")
    assert len(buckets) == len(BUCKET_ZONES)
    assert {b["DeletionPolicy"] for b in buckets.values()} == {"Retain"}


@pytest.mark.parametrize("env", WORKLOADS)
def test_every_bucket_policy_denies_requests_without_tls(synthesized, env):
    template = synthesized.template(env, "DataLake")
    template.resource_count_is("AWS::S3::BucketPolicy", len(BUCKET_ZONES))
    tls_deny = Match.object_like(
        {"Effect": "Deny", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    )
    assert len(template.find_resources("AWS::S3::BucketPolicy")) == len(
        template.find_resources(
            "AWS::S3::BucketPolicy", {"Properties": {"PolicyDocument": {"Statement": Match.array_with([tls_deny])}}}
        )
    )


def test_data_key_rotates_and_has_an_alias(dev_data_lake):
    dev_data_lake.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    dev_data_lake.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/modelwerk/dev/data-lake"})


def test_landing_sends_events_to_eventbridge(dev_data_lake):
    dev_data_lake.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": bucket_name("dev", "landing"),
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        },
    )


@pytest.mark.parametrize(
    ("zone", "days_setting"),
    [
        pytest.param("landing", "landing_expiry_days", id="landing"),
        pytest.param("quarantine", "quarantine_expiry_days", id="quarantine"),
    ],
)
def test_landing_and_quarantine_expire_after_the_configured_days(dev_data_lake, config, zone, days_setting):
    days = getattr(config.environment("dev"), days_setting)
    rules = lifecycle_rules(dev_data_lake, "dev", zone)
    assert any(r.get("ExpirationInDays") == days and r["Status"] == "Enabled" for r in rules)


@pytest.mark.parametrize("zone", ["landing", "raw", "quarantine"])
def test_noncurrent_versions_expire(dev_data_lake, zone):
    rules = lifecycle_rules(dev_data_lake, "dev", zone)
    assert any("NoncurrentVersionExpiration" in r for r in rules)


def test_curated_keeps_noncurrent_versions_for_snapshots(dev_data_lake):
    rules = lifecycle_rules(dev_data_lake, "dev", "curated")
    assert not any("NoncurrentVersionExpiration" in r or "ExpirationInDays" in r for r in rules)


# --- catalog and Athena ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", naming.CATALOG_ZONES)
def test_glue_database_per_zone(dev_data_lake, zone):
    dev_data_lake.has_resource_properties(
        "AWS::Glue::Database", {"DatabaseInput": {"Name": naming.database_name("modelwerk", "dev", zone)}}
    )


@pytest.mark.parametrize("use_case", USE_CASES)
@pytest.mark.parametrize("zone", naming.CATALOG_ZONES)
def test_parquet_table_with_contract_columns_and_projected_dt(dev_data_lake, config, zone, use_case):
    contract = config.use_case(use_case).contract
    schema = contract.raw_schema() if zone == "raw" else contract.curated_schema()
    location = f"s3://{bucket_name('dev', zone)}/{use_case}/"
    dev_data_lake.has_resource_properties(
        "AWS::Glue::Table",
        {
            "DatabaseName": naming.database_name("modelwerk", "dev", zone),
            "TableInput": {
                "Name": naming.table_name(use_case),
                "TableType": "EXTERNAL_TABLE",
                "PartitionKeys": [{"Name": "dt", "Type": "string"}],
                "Parameters": {
                    "projection.enabled": "true",
                    "projection.dt.type": "date",
                    "projection.dt.format": "yyyy-MM-dd",
                    "projection.dt.range": "2020-01-01,NOW",
                    "projection.dt.interval": "1",
                    "projection.dt.interval.unit": "DAYS",
                    "storage.location.template": f"{location}dt=${{dt}}/",
                },
                "StorageDescriptor": {
                    "Location": location,
                    "Columns": Match.exact([{"Name": n, "Type": t} for n, t in schema]),
                    "SerdeInfo": {
                        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                    },
                },
            },
        },
    )


def test_athena_workgroup_is_enforced_and_encrypts_results_with_kms(synthesized, dev_data_lake):
    stack = synthesized.stack("dev", "DataLake")
    dev_data_lake.has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "Name": naming.workgroup_name("modelwerk", "dev"),
            "WorkGroupConfiguration": {
                "EnforceWorkGroupConfiguration": True,
                "PublishCloudWatchMetricsEnabled": True,
                "BytesScannedCutoffPerQuery": Match.any_value(),
                "ResultConfiguration": {
                    "OutputLocation": stack.resolve(f"s3://{stack.zones.athena_results.bucket_name}/results/"),
                    "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": Match.any_value()},
                },
            },
        },
    )


# --- Lake Formation ----------------------------------------------------------------------------------------------


def grants_of(synthesized, env: str, role_attribute: str) -> list[dict]:
    stack = synthesized.stack(env, "DataLake")
    role = getattr(stack.personas, role_attribute)
    principal = stack.resolve(role.role_arn)
    found = synthesized.template(env, "DataLake").find_resources(
        "AWS::LakeFormation::PrincipalPermissions",
        {"Properties": {"Principal": {"DataLakePrincipalIdentifier": principal}}},
    )
    return [r["Properties"] for r in found.values()]


def granted_databases(grants: list[dict]) -> set[str]:
    names = set()
    for grant in grants:
        resource = grant["Resource"]
        if "Database" in resource:
            names.add(resource["Database"]["Name"])
        if "Table" in resource:
            names.add(resource["Table"]["DatabaseName"])
    return names


def test_data_lake_settings_make_the_deployment_role_admin_and_drop_iam_defaults(dev_data_lake):
    dev_data_lake.has_resource_properties(
        "AWS::LakeFormation::DataLakeSettings",
        {
            "Admins": Match.array_with(
                [
                    {
                        "DataLakePrincipalIdentifier": Match.string_like_regexp(
                            r"role/cdk-hnb659fds-cfn-exec-role-123456789012-eu-central-1$"
                        )
                    }
                ]
            ),
            "CreateDatabaseDefaultPermissions": [],
            "CreateTableDefaultPermissions": [],
        },
    )


def test_catalog_zone_locations_are_registered(dev_data_lake):
    locations = dev_data_lake.find_resources(
        "AWS::LakeFormation::Resource", {"Properties": {"UseServiceLinkedRole": False}}
    )
    assert len(locations) == len(naming.CATALOG_ZONES)


def test_data_scientist_only_selects_and_describes_curated_and_analytics(synthesized):
    grants = grants_of(synthesized, "dev", "data_scientist")
    assert grants
    assert {p for g in grants for p in g["Permissions"]} <= {"SELECT", "DESCRIBE"}
    assert not any(g["PermissionsWithGrantOption"] for g in grants)
    assert granted_databases(grants) == {
        naming.database_name("modelwerk", "dev", "curated"),
        naming.database_name("modelwerk", "dev", "analytics"),
    }


def test_pipeline_only_reads_curated(synthesized):
    grants = grants_of(synthesized, "dev", "pipeline")
    assert {p for g in grants for p in g["Permissions"]} <= {"SELECT", "DESCRIBE"}
    assert granted_databases(grants) == {naming.database_name("modelwerk", "dev", "curated")}


def test_data_engineer_manages_raw_and_curated(synthesized):
    grants = grants_of(synthesized, "dev", "data_engineer")
    permissions = {p for g in grants for p in g["Permissions"]}
    assert {"CREATE_TABLE", "ALTER", "DATA_LOCATION_ACCESS", "SELECT", "INSERT", "DELETE"} <= permissions
    assert granted_databases(grants) == {
        naming.database_name("modelwerk", "dev", "raw"),
        naming.database_name("modelwerk", "dev", "curated"),
    }
    locations = [g for g in grants if "DataLocation" in g["Resource"]]
    assert len(locations) == 2


@pytest.mark.parametrize("use_case", USE_CASES)
def test_preparation_job_role_writes_its_curated_table(synthesized, dev_data_lake, use_case):
    stack = synthesized.stack("dev", "DataLake")
    principal = stack.resolve(stack.preparation[use_case].role.role_arn)
    dev_data_lake.has_resource_properties(
        "AWS::LakeFormation::PrincipalPermissions",
        {
            "Principal": {"DataLakePrincipalIdentifier": principal},
            "Resource": {
                "Table": {
                    "DatabaseName": naming.database_name("modelwerk", "dev", "curated"),
                    "Name": naming.table_name(use_case),
                }
            },
            "Permissions": Match.array_with(["SELECT", "INSERT", "DELETE"]),
        },
    )


# --- ingestion ---------------------------------------------------------------------------------------------------


def test_ingest_function_runtime_handler_layers_and_tracing(dev_data_lake):
    dev_data_lake.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": naming.ingest_function_name("modelwerk", "dev"),
            "Handler": "handler.handler",
            "Runtime": "python3.12",
            "TracingConfig": {"Mode": "Active"},
            "ReservedConcurrentExecutions": Match.absent(),
        },
    )
    (function,) = dev_data_lake.find_resources("AWS::Lambda::Function").values()
    layers = function["Properties"]["Layers"]
    assert len(layers) == 2
    assert any(
        re.fullmatch(r"arn:aws:lambda:eu-central-1:336392948345:layer:AWSSDKPandas-Python312:\d+", a) for a in layers
    )
    assert any(
        re.fullmatch(
            r"arn:aws:lambda:eu-central-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:\d+", a
        )
        for a in layers
    )


def test_ingest_function_environment(synthesized, dev_data_lake):
    stack = synthesized.stack("dev", "DataLake")
    dev_data_lake.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": naming.ingest_function_name("modelwerk", "dev"),
            "Environment": {
                "Variables": Match.object_equals(
                    {
                        "RAW_BUCKET": stack.resolve(stack.zones.raw.bucket_name),
                        "QUARANTINE_BUCKET": stack.resolve(stack.zones.quarantine.bucket_name),
                        "CONTRACT_PARAMETER_PREFIX": naming.ssm_prefix("modelwerk", "dev") + "use-cases/",
                        "PSEUDONYMIZATION_SECRET_ARN": stack.resolve(stack.ingestion.secret.secret_arn),
                        "POWERTOOLS_SERVICE_NAME": "ingest",
                        "POWERTOOLS_METRICS_NAMESPACE": "Modelwerk",
                    }
                )
            },
        },
    )


def test_ingest_function_runs_in_the_isolated_subnets_with_the_workload_security_group(dev_data_lake):
    dev_data_lake.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": naming.ingest_function_name("modelwerk", "dev"),
            "VpcConfig": {
                "SubnetIds": Match.array_with(
                    [{"Fn::ImportValue": Match.string_like_regexp("Dev-Network:.*IsolatedSubnet1")}]
                ),
                "SecurityGroupIds": [
                    {"Fn::ImportValue": Match.string_like_regexp("Dev-Network:.*WorkloadSecurityGroup")}
                ],
            },
        },
    )


def test_ingest_failures_end_in_kms_encrypted_dead_letter_queues(synthesized, dev_data_lake):
    stack = synthesized.stack("dev", "DataLake")
    dev_data_lake.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": naming.ingest_function_name("modelwerk", "dev"),
            "DeadLetterConfig": {"TargetArn": stack.resolve(stack.ingestion.dead_letter_queue.queue_arn)},
        },
    )
    queues = dev_data_lake.find_resources("AWS::SQS::Queue", {"Properties": {"KmsMasterKeyId": Match.any_value()}})
    assert len(queues) == 2
    dev_data_lake.has_resource_properties("AWS::Lambda::EventInvokeConfig", {"MaximumRetryAttempts": 2})


def test_ingest_log_group_is_encrypted_with_retention(dev_data_lake):
    dev_data_lake.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": "/aws/lambda/" + naming.ingest_function_name("modelwerk", "dev"),
            "KmsKeyId": Match.any_value(),
            "RetentionInDays": Match.any_value(),
        },
    )


def test_landing_object_created_events_trigger_the_function_with_retries_and_dlq(synthesized, dev_data_lake):
    stack = synthesized.stack("dev", "DataLake")
    dev_data_lake.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [stack.resolve(stack.zones.landing.bucket_name)]}},
            },
            "Targets": [
                Match.object_like(
                    {
                        "Arn": stack.resolve(stack.ingestion.function.function_arn),
                        "DeadLetterConfig": {"Arn": stack.resolve(stack.ingestion.rule_dead_letter_queue.queue_arn)},
                        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": Match.any_value()},
                    }
                )
            ],
        },
    )


def test_pseudonymization_secret_is_generated_and_kms_encrypted(dev_data_lake):
    dev_data_lake.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "Name": naming.pseudonymization_secret_name("modelwerk", "dev"),
            "KmsKeyId": Match.any_value(),
            "GenerateSecretString": Match.object_like({"PasswordLength": 64}),
        },
    )


# --- preparation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_case", USE_CASES)
def test_preparation_job_is_glue_5_with_its_arguments(synthesized, dev_data_lake, use_case):
    stack = synthesized.stack("dev", "DataLake")
    dev_data_lake.has_resource_properties(
        "AWS::Glue::Job",
        {
            "Name": naming.preparation_job_name("modelwerk", "dev", use_case),
            "GlueVersion": "5.0",
            "WorkerType": "G.1X",
            "NumberOfWorkers": 2,
            "Command": {
                "Name": "glueetl",
                "PythonVersion": "3",
                "ScriptLocation": Match.string_like_regexp(r"^s3://.+\.py$"),
            },
            "SecurityConfiguration": naming.preparation_job_name("modelwerk", "dev", use_case),
            "DefaultArguments": {
                "--use_case": use_case,
                "--raw_bucket": stack.resolve(stack.zones.raw.bucket_name),
                "--curated_bucket": stack.resolve(stack.zones.curated.bucket_name),
                "--contract_parameter": f"/modelwerk/dev/use-cases/{use_case}/contract",
                "--partitions": "auto",
                "--extra-py-files": Match.string_like_regexp(r"^s3://.+\.zip$"),
                "--job-bookmark-option": "job-bookmark-disable",
                "--enable-metrics": "true",
                "--enable-continuous-cloudwatch-log": "true",
                "--enable-glue-datacatalog": "true",
            },
        },
    )


def test_preparation_security_configuration_encrypts_s3_logs_and_bookmarks(dev_data_lake):
    dev_data_lake.has_resource_properties(
        "AWS::Glue::SecurityConfiguration",
        {
            "EncryptionConfiguration": {
                "S3Encryptions": [Match.object_like({"S3EncryptionMode": "SSE-KMS"})],
                "CloudWatchEncryption": Match.object_like({"CloudWatchEncryptionMode": "SSE-KMS"}),
                "JobBookmarksEncryption": Match.object_like({"JobBookmarksEncryptionMode": "CSE-KMS"}),
            }
        },
    )


@pytest.mark.parametrize("use_case", USE_CASES)
def test_preparation_runs_on_the_configured_schedule(dev_data_lake, config, use_case):
    dev_data_lake.has_resource_properties(
        "AWS::Glue::Trigger",
        {
            "Type": "SCHEDULED",
            "Schedule": config.environment("dev").preparation_schedule,
            "StartOnCreation": True,
            "Actions": [{"JobName": naming.preparation_job_name("modelwerk", "dev", use_case)}],
        },
    )


# --- SSM parameters ----------------------------------------------------------------------------------------------


def adr_parameter_names(env: str) -> list[str]:
    prefix = naming.ssm_prefix("modelwerk", env)
    names = [f"buckets/{zone}" for zone in BUCKET_ZONES]
    names += [f"databases/{zone}" for zone in naming.CATALOG_ZONES]
    names += ["athena/workgroup", "kms/data-key-arn", "ingest/function-name"]
    names += [f"use-cases/{u}/{leaf}" for u in USE_CASES for leaf in ("contract", "table", "preparation-job")]
    return [prefix + n for n in names]


@pytest.mark.parametrize("env", WORKLOADS)
def test_publishes_exactly_the_adr_parameters(synthesized, env):
    parameters = synthesized.template(env, "DataLake").find_resources("AWS::SSM::Parameter")
    names = sorted(p["Properties"]["Name"] for p in parameters.values())
    assert names == sorted(adr_parameter_names(env))
    assert {p["Properties"]["Type"] for p in parameters.values()} == {"String"}


@pytest.mark.parametrize("use_case", USE_CASES)
def test_contract_parameter_holds_the_contract_json(dev_data_lake, config, use_case):
    dev_data_lake.has_resource_properties(
        "AWS::SSM::Parameter",
        {
            "Name": f"/modelwerk/dev/use-cases/{use_case}/contract",
            "Value": config.use_case(use_case).contract.to_json(),
        },
    )


@pytest.mark.parametrize("zone", BUCKET_ZONES)
def test_bucket_parameter_holds_the_bucket_name(dev_data_lake, zone):
    dev_data_lake.has_resource_properties(
        "AWS::SSM::Parameter", {"Name": f"/modelwerk/dev/buckets/{zone}", "Value": bucket_name("dev", zone)}
    )
