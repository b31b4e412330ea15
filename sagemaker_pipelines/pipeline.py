"""The training pipeline's definition: SageMaker Pipelines JSON for any use case, built offline with the SDK v3.

One builder serves every use case (a new one needs only its contract): the CDK app calls :func:`build_definition` at
synth time and deploys the JSON as ``AWS::SageMaker::Pipeline``; tests read it; the local executor runs the same JSON.

Steps (decision records 0002 and 0003)::

    Preprocess --> Train --> Evaluate --> QualityGate --(metric passes)--> Register (PendingManualApproval)
        |                                   ^        \\--(otherwise)-----> QualityGateFailed
        +--------> Baseline ----------------+ (the gate waits for it: Register names the baseline)

Offline
    Building makes no AWS call and needs no credentials: the SDK gets a pipeline session whose default bucket is the
    artifact bucket (no S3 lookup), whose configuration is given (no config files, telemetry off) and whose boto
    session refuses every API call (:class:`OfflineCallError`). The SDK reads a region from the environment while it
    imports and builds, and validates roles against IAM unless told not to: both are set for the duration of a
    build and restored afterwards (builds are serialized by a lock). Role and model package group must be literal
    ARNs (given a bare name or a CloudFormation token, the SDK would look the role up in IAM).
    The session, the environment and the processing job shape are shared with the inference pipeline
    (:mod:`sagemaker_pipelines.offline`).

Code
    Nothing local is uploaded: the step code is one archive at ``code_uri`` (the CDK file asset of
    :mod:`sagemaker_pipelines.code_archive`: ``steps/``, ``modelwerk/core/``, the contracts). Training runs it in
    script mode (``sagemaker_submit_directory`` = the archive, ``sagemaker_program`` = ``steps/train.py``), which the
    training toolkit downloads and unpacks into ``/opt/ml/code``, installing its ``requirements.txt`` (the pins of
    ``frameworks.txt``); a processing step gets the archive as its ``code`` input and unpacks it into the same folder
    before it runs ``python3 /opt/ml/code/steps/<script>.py`` (the way the SDK's own framework processors run a source
    archive), the steps that load models installing the same requirements first. Decision record 0003.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from modelwerk.core.layout import snapshot_prefix
from sagemaker_pipelines.offline import BUCKET as _BUCKET
from sagemaker_pipelines.offline import BUILD_LOCK as _BUILD_LOCK
from sagemaker_pipelines.offline import CODE, CODE_DIR
from sagemaker_pipelines.offline import REGION as _REGION
from sagemaker_pipelines.offline import ROLE_ARN as _ROLE_ARN
from sagemaker_pipelines.offline import USE_CASE as _USE_CASE
from sagemaker_pipelines.offline import OfflineCallError
from sagemaker_pipelines.offline import import_sdk as _import_sdk
from sagemaker_pipelines.offline import matches as _matches
from sagemaker_pipelines.offline import offline_environment as _offline_environment
from sagemaker_pipelines.offline import offline_session as _offline_session
from sagemaker_pipelines.offline import processing_input as _processing_input
from sagemaker_pipelines.offline import processing_output as _processing_output
from sagemaker_pipelines.offline import quiet as _quiet
from sagemaker_pipelines.offline import s3_object as _s3_object
from sagemaker_pipelines.offline import telemetry_off as _telemetry_off
from sagemaker_pipelines.offline import unpack_and_run as _unpack_and_run

__all__ = [
    "BASELINE",
    "EVALUATE",
    "EVALUATION_PROPERTY_FILE",
    "LINEAGE_PROPERTY_FILE",
    "METRIC_DIRECTIONS",
    "OfflineCallError",
    "PREPROCESS",
    "QUALITY_GATE",
    "QUALITY_GATE_FAILED",
    "REGISTER",
    "TRAIN",
    "build_definition",
    "framework_image_uri",
    "output_prefix",
]

# -- names in the definition (the local executor and the tests use the same constants) ------------------------------
PREPROCESS = "Preprocess"
TRAIN = "Train"
EVALUATE = "Evaluate"
BASELINE = "Baseline"
QUALITY_GATE = "QualityGate"
REGISTER = "Register"
QUALITY_GATE_FAILED = "QualityGateFailed"

SNAPSHOT_ID = "SnapshotId"
PROCESSING_INSTANCE_TYPE = "ProcessingInstanceType"
TRAINING_INSTANCE_TYPE = "TrainingInstanceType"
QUALITY_THRESHOLD = "QualityThreshold"

EVALUATION_PROPERTY_FILE = "EvaluationReport"
LINEAGE_PROPERTY_FILE = "LineageReport"

#: Metrics ``evaluation.json`` holds (decision record 0002) and the direction that passes the gate by default.
METRIC_DIRECTIONS: dict[str, str] = {
    "accuracy": ">=",
    "precision": ">=",
    "recall": ">=",
    "f1": ">=",
    "roc_auc": ">=",
    "r2": ">=",
    "rmse": "<=",
    "mae": "<=",
}

APPROVAL_STATUS = "PendingManualApproval"
TRAINING_PROGRAM = "steps/train.py"
#: The job environment naming the package mirror: the SageMaker training toolkit's own name for it.
PACKAGE_REPOSITORY_VARIABLE = "CA_REPOSITORY_ARN"
#: Processing steps that load models, and so install the pinned frameworks first.
MODEL_LOADING_STEPS = ("evaluate.py", "baseline.py")
TRAINING_MAX_RUNTIME_SECONDS = 3600
#: How long a cached step's result may be reused (ISO 8601 duration, as CacheConfig takes it).
CACHE_EXPIRY = "P30D"
#: The preprocess step's outputs, in the order the step declares them.
SPLIT_OUTPUTS = ("train", "validation", "test")

_GROUP_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package-group/[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$"
)

def framework_image_uri(region: str, framework_version: str) -> str:
    """SageMaker's scikit-learn framework image for training in ``region``, from the SDK's own catalogue (offline)."""
    with _BUILD_LOCK, _offline_environment(region), _quiet():
        _import_sdk()
        from sagemaker.core import image_uris

        return image_uris.retrieve("sklearn", region, version=framework_version, image_scope="training",
                                   instance_type="ml.m5.large")


def output_prefix(artifact_bucket: str, use_case: str) -> str:
    """Where one use case's pipeline executions write: ``<prefix>/<execution id>/<step>/<output>``."""
    return f"s3://{artifact_bucket}/pipelines/{use_case}"


def build_definition(
    *,
    use_case: str,
    role_arn: str,
    region: str,
    artifact_bucket: str,
    code_uri: str,
    image_uri: str,
    model_package_group_arn: str,
    quality_metric: str,
    quality_threshold: float,
    git_commit: str,
    processing_instance_type: str = "ml.m5.large",
    training_instance_type: str = "ml.m5.large",
    curated_bucket: str,
    contract_uri: str,
    quality_direction: str | None = None,
    hyperparameters: Mapping[str, str | int | float] | None = None,
    serving_image_uri: str | None = None,
    subnet_ids: Sequence[str] = (),
    security_group_ids: Sequence[str] = (),
    package_repository_arn: str | None = None,
) -> str:
    """The pipeline definition JSON of one use case (``Pipeline(...).definition()``); equal inputs give equal JSON.

    use_case: the contract's ``use_case`` (``pump-health``).
    role_arn: execution role of the jobs, a full IAM role ARN.
    region: region of the pipeline (the SDK needs one; no call is made).
    artifact_bucket: bucket the executions write to (:func:`output_prefix`).
    code_uri: S3 URI of the code archive (a ``.tar.gz`` holding ``steps/`` and ``modelwerk/core/``).
    image_uri: the step image (Python 3.11+, pandas, pyarrow, scikit-learn, joblib, boto3; for training also the
        SageMaker training toolkit, which runs script mode).
    model_package_group_arn: the registry's group (an ARN, so a group in another account works).
    quality_metric: a metric of ``evaluation.json`` (:data:`METRIC_DIRECTIONS`).
    quality_threshold: default of the ``QualityThreshold`` parameter.
    git_commit: recorded on the model package.
    processing_instance_type, training_instance_type: defaults of the instance type parameters.
    curated_bucket: bucket holding the snapshot manifests (``_snapshots/<use-case>/<id>.json`` and ``latest.json``).
    contract_uri: S3 URI of the use case's ``contract.json``.
    quality_direction: ``">="`` (higher is better) or ``"<="`` (lower is better, e.g. rmse); default by metric.
    hyperparameters: training hyperparameters (names of ``step_common.HYPERPARAMETERS``); unset ones keep the
        script's defaults.
    serving_image_uri: image of the registered model's inference container (the Modelwerk serving image in the
        registry account's ECR); default ``image_uri``.
    subnet_ids, security_group_ids: run every job in these private subnets with these security groups (literal ids
        or Fn::Sub placeholders); none: SageMaker's own network.
    package_repository_arn: the CodeArtifact repository jobs install the model frameworks' pins from (set as
        ``CA_REPOSITORY_ARN``, which the training toolkit and the processing entry point read); none: PyPI.
    """
    code_archive = _s3_object("code_uri", code_uri)
    contract = contract_uri
    direction = quality_direction if quality_direction is not None else METRIC_DIRECTIONS.get(quality_metric, "")
    problems = [
        *_check_names(use_case, role_arn, region, model_package_group_arn, artifact_bucket, curated_bucket),
        *_check_gate(quality_metric, direction, quality_threshold),
        *_check_job_settings(
            contract, image_uri, serving_image_uri, git_commit, processing_instance_type, training_instance_type,
            hyperparameters or {},
        ),
    ]
    if bool(subnet_ids) != bool(security_group_ids):
        problems.append("subnet_ids and security_group_ids go together: give both, or neither")
    if problems:
        raise ValueError("cannot build the pipeline definition: " + "; ".join(problems))
    with _BUILD_LOCK, _offline_environment(region), _quiet():
        return _build(
            use_case=use_case,
            role_arn=role_arn,
            region=region,
            artifact_bucket=artifact_bucket,
            code_archive=code_archive,
            image_uri=image_uri,
            model_package_group_arn=model_package_group_arn,
            quality_metric=quality_metric,
            quality_threshold=float(quality_threshold),
            direction=direction,
            git_commit=git_commit,
            processing_instance_type=processing_instance_type,
            training_instance_type=training_instance_type,
            curated_bucket=curated_bucket,
            contract_uri=contract,
            hyperparameters={str(k): _text(v) for k, v in (hyperparameters or {}).items()},
            serving_image_uri=serving_image_uri or image_uri,
            subnet_ids=list(subnet_ids),
            security_group_ids=list(security_group_ids),
            package_repository_arn=package_repository_arn,
        )


def _text(value: Any) -> str:
    """A hyperparameter as SageMaker passes it (a string); booleans the way ``train.py`` reads them."""
    return str(value).lower() if isinstance(value, bool) else str(value)


# -- checks (before the SDK is touched, so a wrong argument fails fast and says which) -------------------------------



def _check_names(
    use_case: Any, role_arn: Any, region: Any, group_arn: Any, artifact_bucket: Any, curated_bucket: Any
) -> list[str]:
    problems = []
    if not _matches(_USE_CASE, use_case):
        problems.append(f"use_case {use_case!r} must be lower-case letters, digits and single hyphens")
    if not _matches(_ROLE_ARN, role_arn):
        problems.append(
            f"role_arn {role_arn!r} must be a full IAM role ARN (arn:aws:iam::<account>:role/<name>); "
            "given a name or a token the SDK would look it up in IAM"
        )
    if not _matches(_REGION, region):
        problems.append(f"region {region!r} is not a region name like eu-central-1")
    if not _matches(_GROUP_ARN, group_arn):
        problems.append(
            f"model_package_group_arn {group_arn!r} must be a model package group ARN "
            "(arn:aws:sagemaker:<region>:<account>:model-package-group/<name>)"
        )
    for name, bucket in (("artifact_bucket", artifact_bucket), ("curated_bucket", curated_bucket)):
        if not _matches(_BUCKET, bucket):
            problems.append(f"{name} {bucket!r} is not a bucket name")
    return problems


def _check_gate(metric: Any, direction: Any, threshold: Any) -> list[str]:
    problems = []
    if metric not in METRIC_DIRECTIONS:
        problems.append(f"quality_metric {metric!r} is not one of {sorted(METRIC_DIRECTIONS)}")
    if direction not in (">=", "<="):
        problems.append(f"quality_direction {direction!r} must be '>=' (higher is better) or '<=' (lower is better)")
    number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    if not number or not math.isfinite(threshold):
        problems.append(f"quality_threshold {threshold!r} must be a finite number")
    return problems


def _check_job_settings(
    contract_uri: Any,
    image_uri: Any,
    serving_image_uri: Any,
    git_commit: Any,
    processing_instance_type: Any,
    training_instance_type: Any,
    hyperparameters: Mapping[str, Any],
) -> list[str]:
    problems = []
    if (
        not isinstance(contract_uri, str)
        or not contract_uri.startswith("s3://")
        or contract_uri.endswith("/")
        or "[" in contract_uri
        or "]" in contract_uri
    ):
        problems.append(f"contract_uri {contract_uri!r} must be the s3:// URI of the contract file (no brackets)")
    for name, image in (("image_uri", image_uri), ("serving_image_uri", serving_image_uri)):
        if (image is not None or name == "image_uri") and (not isinstance(image, str) or not image.strip()):
            problems.append(f"{name} {image!r} must be an image URI")
    if not isinstance(git_commit, str) or not git_commit.strip() or len(git_commit) > 256:
        problems.append("git_commit must be a non-empty string of at most 256 characters")
    for name, instance_type in (
        ("processing_instance_type", processing_instance_type),
        ("training_instance_type", training_instance_type),
    ):
        if not isinstance(instance_type, str) or not instance_type.startswith("ml."):
            problems.append(f"{name} {instance_type!r} must be a SageMaker instance type (ml.*)")
    reserved = sorted(str(k) for k in hyperparameters if str(k).startswith("sagemaker_"))
    if reserved:
        problems.append(f"hyperparameters {reserved} are reserved for script mode")
    return problems


# -- the pipeline ----------------------------------------------------------------------------------------------------
def _build(
    *,
    use_case: str,
    role_arn: str,
    region: str,
    artifact_bucket: str,
    code_archive: str,
    image_uri: str,
    model_package_group_arn: str,
    quality_metric: str,
    quality_threshold: float,
    direction: str,
    git_commit: str,
    processing_instance_type: str,
    training_instance_type: str,
    curated_bucket: str,
    contract_uri: str,
    hyperparameters: Mapping[str, str],
    serving_image_uri: str,
    subnet_ids: list[str],
    security_group_ids: list[str],
    package_repository_arn: str | None,
) -> str:
    _import_sdk()
    from sagemaker.core.drift_check_baselines import DriftCheckBaselines
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import S3DataSource, Tag
    from sagemaker.core.training.configs import Compute, InputData, Networking, OutputDataConfig, StoppingCondition
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionLessThanOrEqualTo
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterString
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.fail_step import FailStep
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train import ModelTrainer

    session = _offline_session(region, artifact_bucket)
    # Steps whose inputs are addressed by an execution's outputs are cached; Preprocess never is: it reads the moving
    # ``latest`` pointer, whose URI stays the same when the data behind it changes.
    cache = CacheConfig(enable_caching=True, expire_after=CACHE_EXPIRY)
    in_vpc = bool(subnet_ids)
    network = NetworkConfig(subnets=subnet_ids, security_group_ids=security_group_ids,
                            enable_network_isolation=False) if in_vpc else None
    tags = [{"Key": "modelwerk:use-case", "Value": use_case}]
    job_environment = {"PYTHONPATH": CODE_DIR}
    if package_repository_arn:
        job_environment[PACKAGE_REPOSITORY_VARIABLE] = package_repository_arn

    snapshot_id = ParameterString(name=SNAPSHOT_ID, default_value="latest")
    processing_type = ParameterString(name=PROCESSING_INSTANCE_TYPE, default_value=processing_instance_type)
    training_type = ParameterString(name=TRAINING_INSTANCE_TYPE, default_value=training_instance_type)
    threshold = ParameterFloat(name=QUALITY_THRESHOLD, default_value=quality_threshold)

    def output_uri(step: str, output: str | None = None) -> Any:
        parts = [output_prefix(artifact_bucket, use_case), ExecutionVariables.PIPELINE_EXECUTION_ID, step]
        return Join(on="/", values=parts + ([output] if output else []))

    processing_input = _processing_input

    def processing_output(step: str, name: str) -> Any:
        return _processing_output(name, output_uri(step.lower(), name))

    def processor(script: str) -> Any:
        return Processor(
            role=role_arn,
            image_uri=image_uri,
            instance_count=1,
            instance_type=processing_type,
            entrypoint=["/bin/sh", "-c", _unpack_and_run(f"steps/{script}",
                                                           install_requirements=script in MODEL_LOADING_STEPS),
                        script],
            env=dict(job_environment),
            base_job_name=f"{use_case}-{script.removesuffix('.py')}",
            sagemaker_session=session,
            tags=tags,
            network_config=network,
        )

    def output_of(step: Any, name: str) -> Any:
        return step.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri

    code = processing_input(CODE, code_archive)

    # Preprocess: contract + the snapshot manifest (SnapshotId "latest" names the latest.json pointer) -> splits.
    manifest_uri = Join(on="", values=[f"s3://{curated_bucket}/{snapshot_prefix(use_case)}", snapshot_id, ".json"])
    lineage_file = PropertyFile(name=LINEAGE_PROPERTY_FILE, output_name="lineage", path="lineage.json")
    preprocess = ProcessingStep(
        name=PREPROCESS,
        step_args=processor("preprocess.py").run(
            inputs=[code, processing_input("contract", contract_uri), processing_input("manifest", manifest_uri)],
            outputs=[processing_output(PREPROCESS, name) for name in (*SPLIT_OUTPUTS, "lineage")],
            arguments=["--snapshot-id", snapshot_id, "--snapshot-bucket", curated_bucket],
        ),
        property_files=[lineage_file],
    )

    # Train: script mode; channels from Preprocess's outputs.
    def channel(name: str, uri: Any) -> Any:
        source = S3DataSource(s3_data_type="S3Prefix", s3_uri=uri, s3_data_distribution_type="FullyReplicated")
        return InputData(channel_name=name, data_source=source)

    trainer = ModelTrainer(
        training_image=image_uri,
        role=role_arn,
        sagemaker_session=session,
        base_job_name=f"{use_case}-train",
        compute=Compute(instance_type=training_type, instance_count=1),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=TRAINING_MAX_RUNTIME_SECONDS),
        hyperparameters={
            **hyperparameters,
            "sagemaker_program": TRAINING_PROGRAM,
            "sagemaker_submit_directory": code_archive,
        },
        environment=dict(job_environment),
        output_data_config=OutputDataConfig(s3_output_path=output_uri(TRAIN.lower())),
        input_data_config=[
            channel("train", output_of(preprocess, "train")),
            channel("validation", output_of(preprocess, "validation")),
        ],
        tags=[Tag(key=t["Key"], value=t["Value"]) for t in tags],
        networking=Networking(subnets=subnet_ids, security_group_ids=security_group_ids) if in_vpc else None,
    )
    with _telemetry_off(session):
        train_args = trainer.train()
    train = TrainingStep(name=TRAIN, step_args=train_args, cache_config=cache)
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts

    # Evaluate (the gate's property file) and Baseline (drift statistics of the train split).
    evaluation_file = PropertyFile(name=EVALUATION_PROPERTY_FILE, output_name="evaluation", path="evaluation.json")
    evaluate = ProcessingStep(
        name=EVALUATE,
        step_args=processor("evaluate.py").run(
            inputs=[
                code,
                processing_input("model", model_data),
                processing_input("test", output_of(preprocess, "test")),
            ],
            outputs=[processing_output(EVALUATE, "evaluation")],
        ),
        property_files=[evaluation_file],
        cache_config=cache,
    )
    baseline = ProcessingStep(
        name=BASELINE,
        step_args=processor("baseline.py").run(
            inputs=[code, processing_input("train", output_of(preprocess, "train"))],
            outputs=[processing_output(BASELINE, "baseline")],
        ),
        cache_config=cache,
    )

    # Register: a model package version in the registry's group, waiting for a person's approval.
    evaluation_json = Join(on="/", values=[output_of(evaluate, "evaluation"), "evaluation.json"])
    baseline_json = Join(on="/", values=[output_of(baseline, "baseline"), "baseline.json"])
    lineage_json = Join(on="/", values=[output_of(preprocess, "lineage"), "lineage.json"])
    builder = ModelBuilder(
        image_uri=serving_image_uri,
        s3_model_data_url=model_data,
        role_arn=role_arn,
        sagemaker_session=session,
        dependencies=None,  # no script-mode inference code: the serving image carries its server
        log_level=None,  # its default sets the SDK's shared logger to DEBUG for the rest of the process
    )
    with _telemetry_off(session):
        register_args = builder.register(
            model_package_group_name=model_package_group_arn,
            approval_status=APPROVAL_STATUS,
            description=f"{use_case}: trained by its training pipeline, gated on {quality_metric} {direction} "
            "QualityThreshold",
            content_types=["application/json"],
            response_types=["application/json"],
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(content_type="application/json", s3_uri=evaluation_json)
            ),
            drift_check_baselines=DriftCheckBaselines(
                model_data_statistics=MetricsSource(content_type="application/json", s3_uri=baseline_json)
            ),
            customer_metadata_properties={
                "use_case": use_case,
                "git_commit": git_commit,
                "snapshot_id": JsonGet(step_name=PREPROCESS, property_file=lineage_file, json_path="snapshot_id"),
                "pipeline_execution_arn": ExecutionVariables.PIPELINE_EXECUTION_ARN,
                "quality_metric": quality_metric,
                "evaluation_uri": evaluation_json,
                "baseline_uri": baseline_json,
                "lineage_uri": lineage_json,
            },
        )
    register = ModelStep(name=REGISTER, step_args=register_args)

    # The gate: metrics.<metric>.value against QualityThreshold, in the metric's direction.
    metric = JsonGet(step_name=EVALUATE, property_file=evaluation_file, json_path=f"metrics.{quality_metric}.value")
    comparison = ConditionGreaterThanOrEqualTo if direction == ">=" else ConditionLessThanOrEqualTo
    failed = FailStep(
        name=QUALITY_GATE_FAILED,
        error_message=Join(
            on="",
            values=[f"{use_case}: {quality_metric} ", metric, f" fails the quality gate ({direction} ", threshold, ")"],
        ),
    )
    gate = ConditionStep(
        name=QUALITY_GATE,
        conditions=[comparison(left=metric, right=threshold)],
        if_steps=[register],
        else_steps=[failed],
        depends_on=[baseline],
    )

    pipeline = Pipeline(
        name=f"{use_case}-training",
        parameters=[snapshot_id, processing_type, training_type, threshold],
        steps=[preprocess, train, evaluate, baseline, gate],
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )
    return pipeline.definition()
