"""The inference pipeline's definition: Batch Transform of a snapshot with a registered version, built offline.

One builder serves every use case: the CDK app calls :func:`build_inference_definition` at synth time and deploys the
JSON as ``AWS::SageMaker::Pipeline`` in each environment that serves the use case; the local executor runs the same
JSON. It shares the training pipeline's offline machinery (:mod:`sagemaker_pipelines.offline`, decision record 0003).

Steps::

    ResolveVersion --> CreateModel --> Export --> Transform --> WritePredictions

ResolveVersion (processing, ``steps/resolve_version.py``)
    ``ModelPackageArn``, or when it is empty the version the environment's endpoint serves (DescribeEndpoint ->
    endpoint config -> model -> ModelPackageName), checked (approved, of this use case); writes ``version.json`` with
    the version's input schema (property file ``VersionReport``). Nothing served: the step fails and says so.
CreateModel (``CreateModel`` with ``Containers=[{ModelPackageName}]``: the serving image contract, as the endpoint
    stacks create theirs), in the environment's subnets, network isolated.
Export (processing, ``steps/export_batch.py``)
    ``SnapshotId`` (``latest`` follows the pointer) or ``InputS3Uri`` -> headerless CSV records (``row_id``, then the
    version's inputs in input order), ``keys.parquet``, the rows that fail the contract in ``failures.jsonl``; property
    file ``ExportReport`` (rows_in, rows_exported, rows_failed).
Transform (``CreateTransformJob``)
    ``SplitType=Line``, ``BatchStrategy=MultiRecord``, ``AssembleWith=Line``, ``text/csv``, ``InputFilter $[1:]``
    (the model never sees the row id), ``JoinSource=Input``, ``OutputFilter $[0,-1]`` (row id and prediction);
    ``DataCaptureConfig`` under the serving bucket's batch capture prefix, one folder per execution, so the drift
    monitor judges the batch's inputs.
WritePredictions (processing, ``steps/write_predictions.py``)
    ``.out`` objects -> ``s3://<analytics>/predictions/<use-case>/dt=<day>/<execution id>.parquet`` with lineage
    columns, queried through the Glue table the CDK app declares; property file ``PredictionsReport`` (rows_in,
    rows_scored, rows_failed, output_table, output_uri): what ``modelwerk batch run`` reports.

Intermediate files live under ``s3://<serving>/batch/<use-case>/<execution id>/<step>/<output>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelwerk import naming
from sagemaker_pipelines.offline import (BUCKET, BUILD_LOCK, CODE, CODE_DIR, REGION, ROLE_ARN, USE_CASE, import_sdk,
                                         matches, offline_environment, offline_session, processing_input,
                                         processing_output, quiet, s3_object, unpack_and_run)

__all__ = [
    "CREATE_MODEL",
    "EXPORT",
    "EXPORT_PROPERTY_FILE",
    "INPUT_S3_URI",
    "MODEL_PACKAGE_ARN",
    "PREDICTIONS_PROPERTY_FILE",
    "RESOLVE",
    "SNAPSHOT_ID",
    "TRANSFORM",
    "TRIGGERED_BY",
    "VERSION_PROPERTY_FILE",
    "WRITE_PREDICTIONS",
    "build_inference_definition",
    "work_prefix",
]

# -- names in the definition (the CLI, the local executor and the tests use the same constants) ----------------------
RESOLVE = "ResolveVersion"
CREATE_MODEL = "CreateModel"
EXPORT = "Export"
TRANSFORM = "Transform"
WRITE_PREDICTIONS = "WritePredictions"

MODEL_PACKAGE_ARN = "ModelPackageArn"
SNAPSHOT_ID = "SnapshotId"
INPUT_S3_URI = "InputS3Uri"
TRIGGERED_BY = "TriggeredBy"

VERSION_PROPERTY_FILE = "VersionReport"
EXPORT_PROPERTY_FILE = "ExportReport"
PREDICTIONS_PROPERTY_FILE = "PredictionsReport"

CONTENT_TYPE = "text/csv"
#: The transform sends the model a record without its first field (the row id) and keeps row id and prediction.
INPUT_FILTER = "$[1:]"
OUTPUT_FILTER = "$[0,-1]"
#: Who may start an execution (``TriggeredBy``): a person, the schedule, or a new snapshot.
TRIGGERS = ("person", "schedule", "new-snapshot")


def work_prefix(serving_bucket: str, use_case: str) -> str:
    """Where one use case's inference executions keep their files: ``<prefix>/<execution id>/<step>/<output>``."""
    return f"s3://{serving_bucket}/{naming.batch_prefix(use_case)}".rstrip("/")


def capture_uri(serving_bucket: str, use_case: str) -> str:
    """The batch capture folder of a use case (one subfolder per execution)."""
    return f"s3://{serving_bucket}/{naming.batch_capture_prefix(use_case)}".rstrip("/")


def build_inference_definition(
    *,
    use_case: str,
    role_arn: str,
    region: str,
    code_uri: str,
    contract_uri: str,
    image_uri: str,
    serving_bucket: str,
    serving_key_arn: str,
    curated_bucket: str,
    analytics_bucket: str,
    analytics_database: str,
    endpoint_name: str = "",
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    max_payload_mb: int = 6,
    max_concurrent_transforms: int = 1,
    processing_instance_type: str = "ml.m5.large",
    subnet_ids: Sequence[str] = (),
    security_group_ids: Sequence[str] = (),
) -> str:
    """The inference pipeline definition JSON of one use case; equal inputs give equal JSON.

    use_case: the contract's ``use_case``.
    role_arn: execution role of the pipeline, its jobs and the model it creates (a full IAM role ARN).
    region: region of the pipeline (the SDK needs one; no call is made).
    code_uri, contract_uri: S3 URIs of the code archive and the use case's ``contract.json``.
    image_uri: the processing steps' image (pandas, pyarrow, boto3: the training pipeline's framework image).
    serving_bucket, serving_key_arn: the environment's serving bucket and its key: the executions' files, the
        transform's output and its data capture.
    curated_bucket: where the snapshots are; analytics_bucket, analytics_database: where predictions land.
    endpoint_name: the endpoint whose version is scored when ``ModelPackageArn`` is empty ("" : none).
    instance_type, instance_count, max_payload_mb, max_concurrent_transforms: the transform job's capacity
        (``UseCaseConfig.batch``).
    processing_instance_type: the processing steps' instances.
    subnet_ids, security_group_ids: every job and the model run in these subnets (literal ids or Fn::Sub
        placeholders); none: SageMaker's own network.
    """
    problems = []
    if not matches(USE_CASE, use_case):
        problems.append(f"use_case {use_case!r} must be lower-case letters, digits and single hyphens")
    if not matches(ROLE_ARN, role_arn):
        problems.append(f"role_arn {role_arn!r} must be a full IAM role ARN")
    if not matches(REGION, region):
        problems.append(f"region {region!r} is not a region name like eu-central-1")
    for name, bucket in (("serving_bucket", serving_bucket), ("curated_bucket", curated_bucket),
                         ("analytics_bucket", analytics_bucket)):
        if not matches(BUCKET, bucket):
            problems.append(f"{name} {bucket!r} is not a bucket name")
    for name, value in (("instance_type", instance_type), ("processing_instance_type", processing_instance_type)):
        if not isinstance(value, str) or not value.startswith("ml."):
            problems.append(f"{name} {value!r} must be a SageMaker instance type (ml.*)")
    limits = (("instance_count", instance_count, 1, None), ("max_payload_mb", max_payload_mb, 1, 100),
              ("max_concurrent_transforms", max_concurrent_transforms, 1, None))
    for name, value, low, high in limits:
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            problems.append(f"{name} {value!r} must be an integer from {low}" + (f" to {high}" if high else ""))
    if not isinstance(image_uri, str) or not image_uri.strip():
        problems.append(f"image_uri {image_uri!r} must be an image URI")
    if not isinstance(analytics_database, str) or not analytics_database:
        problems.append("analytics_database must name the Glue database of the analytics zone")
    if bool(subnet_ids) != bool(security_group_ids):
        problems.append("subnet_ids and security_group_ids go together: give both, or neither")
    try:
        s3_object("code_uri", code_uri)
        s3_object("contract_uri", contract_uri)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError("cannot build the inference pipeline definition: " + "; ".join(problems))
    with BUILD_LOCK, offline_environment(region), quiet():
        return _build(use_case=use_case, role_arn=role_arn, region=region, code_uri=code_uri,
                      contract_uri=contract_uri, image_uri=image_uri, serving_bucket=serving_bucket,
                      serving_key_arn=serving_key_arn, curated_bucket=curated_bucket,
                      analytics_bucket=analytics_bucket, analytics_database=analytics_database,
                      endpoint_name=endpoint_name, instance_type=instance_type, instance_count=instance_count,
                      max_payload_mb=max_payload_mb, max_concurrent_transforms=max_concurrent_transforms,
                      processing_instance_type=processing_instance_type, subnet_ids=list(subnet_ids),
                      security_group_ids=list(security_group_ids))


class _ModelHolder:
    """What the SDK's model step arguments hold of a model: its pipeline session (the request is built by hand)."""

    def __init__(self, session: Any) -> None:
        self.sagemaker_session = session


def _build(*, use_case: str, role_arn: str, region: str, code_uri: str, contract_uri: str, image_uri: str,
           serving_bucket: str, serving_key_arn: str, curated_bucket: str, analytics_bucket: str,
           analytics_database: str, endpoint_name: str, instance_type: str, instance_count: int,
           max_payload_mb: int, max_concurrent_transforms: int, processing_instance_type: str,
           subnet_ids: list[str], security_group_ids: list[str]) -> str:
    import_sdk()
    from sagemaker.core.inputs import BatchDataCaptureConfig
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.processing import Processor
    from sagemaker.core.transformer import Transformer
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterString
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import ProcessingStep, TransformStep

    session = offline_session(region, serving_bucket)
    in_vpc = bool(subnet_ids)
    network = NetworkConfig(subnets=subnet_ids, security_group_ids=security_group_ids,
                            enable_network_isolation=False) if in_vpc else None
    tags = [{"Key": "modelwerk:use-case", "Value": use_case}, {"Key": "modelwerk:pipeline", "Value": "inference"}]

    package_arn = ParameterString(name=MODEL_PACKAGE_ARN, default_value="")
    snapshot_id = ParameterString(name=SNAPSHOT_ID, default_value="latest")
    input_uri = ParameterString(name=INPUT_S3_URI, default_value="")
    triggered_by = ParameterString(name=TRIGGERED_BY, default_value="person", enum_values=list(TRIGGERS))
    execution_id = ExecutionVariables.PIPELINE_EXECUTION_ID

    def output_uri(step: str, output: str | None = None) -> Any:
        parts = [work_prefix(serving_bucket, use_case), execution_id, step.lower()]
        return Join(on="/", values=parts + ([output] if output else []))

    def processor(script: str) -> Any:
        return Processor(
            role=role_arn,
            image_uri=image_uri,
            instance_count=1,
            instance_type=processing_instance_type,
            entrypoint=["/bin/sh", "-c", unpack_and_run(f"steps/{script}"), script],
            env={"PYTHONPATH": CODE_DIR},
            base_job_name=f"{use_case}-{script.removesuffix('.py').replace('_', '-')}",
            sagemaker_session=session,
            tags=tags,
            network_config=network,
        )

    def outputs(step: str, *names: str) -> list[Any]:
        return [processing_output(name, output_uri(step, name)) for name in names]

    def output_of(step: Any, name: str) -> Any:
        return step.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri

    code = processing_input(CODE, code_uri)
    contract = processing_input("contract", contract_uri)

    version_file = PropertyFile(name=VERSION_PROPERTY_FILE, output_name="version", path="version.json")
    resolve = ProcessingStep(
        name=RESOLVE,
        step_args=processor("resolve_version.py").run(
            inputs=[code],
            outputs=outputs(RESOLVE, "version"),
            arguments=["--model-package-arn", package_arn, "--endpoint", endpoint_name, "--use-case", use_case,
                       "--triggered-by", triggered_by],
        ),
        property_files=[version_file],
    )

    # CreateModel from the version, as the endpoint stacks create theirs: the package names image and model data.
    session.init_model_step_arguments(_ModelHolder(session))
    session.create_model(
        name=None,
        role=role_arn,
        container_defs={"ModelPackageName": JsonGet(step_name=RESOLVE, property_file=version_file,
                                                    json_path="model_package_arn")},
        vpc_config={"Subnets": subnet_ids, "SecurityGroupIds": security_group_ids} if in_vpc else None,
        enable_network_isolation=True,
        tags=tags,
    )
    model_args, session.context = session.context, None
    model = ModelStep(name=CREATE_MODEL, step_args=model_args, depends_on=[resolve])

    export_file = PropertyFile(name=EXPORT_PROPERTY_FILE, output_name="export", path="export.json")
    export = ProcessingStep(
        name=EXPORT,
        step_args=processor("export_batch.py").run(
            inputs=[code, contract, processing_input("version", output_of(resolve, "version"))],
            outputs=outputs(EXPORT, "records", "keys", "failures", "export"),
            arguments=["--snapshot-id", snapshot_id, "--snapshot-bucket", curated_bucket, "--input-uri", input_uri],
        ),
        property_files=[export_file],
    )

    transformer = Transformer(
        model_name=model.properties.ModelName,
        instance_count=instance_count,
        instance_type=instance_type,
        strategy="MultiRecord",
        assemble_with="Line",
        output_path=output_uri(TRANSFORM, "predictions"),
        output_kms_key=serving_key_arn,
        accept=CONTENT_TYPE,
        max_concurrent_transforms=max_concurrent_transforms,
        max_payload=max_payload_mb,
        tags=tags,
        base_transform_job_name=f"{use_case}-batch",
        sagemaker_session=session,
        volume_kms_key=serving_key_arn,
    )
    transform = TransformStep(
        name=TRANSFORM,
        step_args=transformer.transform(
            data=output_of(export, "records"),
            data_type="S3Prefix",
            content_type=CONTENT_TYPE,
            split_type="Line",
            input_filter=INPUT_FILTER,
            output_filter=OUTPUT_FILTER,
            join_source="Input",
            batch_data_capture_config=BatchDataCaptureConfig(
                destination_s3_uri=Join(on="/", values=[capture_uri(serving_bucket, use_case), execution_id]),
                kms_key_id=serving_key_arn,
            ),
        ),
    )

    predictions_file = PropertyFile(name=PREDICTIONS_PROPERTY_FILE, output_name="report", path="predictions.json")
    write = ProcessingStep(
        name=WRITE_PREDICTIONS,
        step_args=processor("write_predictions.py").run(
            inputs=[
                code,
                contract,
                processing_input("version", output_of(resolve, "version")),
                processing_input("export", output_of(export, "export")),
                processing_input("keys", output_of(export, "keys")),
                processing_input("predictions", transform.properties.TransformOutput.S3OutputPath),
            ],
            outputs=outputs(WRITE_PREDICTIONS, "report", "failures"),
            arguments=["--execution-id", execution_id, "--analytics-bucket", analytics_bucket,
                       "--table-prefix", naming.predictions_prefix(use_case), "--database", analytics_database,
                       "--table", naming.predictions_table_name(use_case)],
        ),
        property_files=[predictions_file],
    )

    pipeline = Pipeline(
        name=f"{use_case}-inference",
        parameters=[package_arn, snapshot_id, input_uri, triggered_by],
        steps=[resolve, model, export, transform, write],
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )
    return pipeline.definition()
