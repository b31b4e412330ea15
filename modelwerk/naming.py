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


def model_package_group_arn(project: str, use_case: str, registry_account: str, region: str) -> str:
    return f"arn:aws:sagemaker:{region}:{registry_account}:model-package-group/{model_package_group_name(project, use_case)}"


def training_pipeline_name(project: str, env: str, use_case: str) -> str:
    """The SageMaker Pipeline that trains a use case's model in one environment."""
    return f"{project}-{env}-{use_case}-training"


def pipeline_role_name(project: str, env: str, use_case: str) -> str:
    """Execution role of a use case's pipeline and its jobs (named: the definition holds its ARN literally)."""
    return f"{project}-{env}-{use_case}-pipeline"


def pipeline_output_prefix(use_case: str) -> str:
    """Where a use case's pipeline executions write in the registry's model-artifact bucket."""
    return f"pipelines/{use_case}/"


def pseudonymization_secret_name(project: str, env: str) -> str:
    return f"{project}/{env}/pseudonymization-key"


# -- serving --------------------------------------------------------------------------------------------------------

#: The production variant every endpoint serves from: blue/green swaps the fleet behind it, never its name.
ENDPOINT_VARIANT = "AllTraffic"
#: The serving bucket's folder of multi-model endpoints' models (one subfolder per endpoint).
MULTI_MODEL_ROOT = "models/"
#: ``endpoint_alarm_name`` kinds and the suffix each gets.
_ALARM_SUFFIXES = {"5xx": "invocation-5xx", "latency": "model-latency"}


def serving_repository_name(project: str) -> str:
    """The registry account's ECR repository of the serving image (every environment pulls from it)."""
    return f"{project}/serving"


def serving_image_uri(registry_account: str, region: str, project: str, tag: str) -> str:
    """The serving image at ``tag``, named without a deployment output so another account's stack can use it."""
    return f"{registry_account}.dkr.ecr.{region}.amazonaws.com/{serving_repository_name(project)}:{tag}"


def serving_build_project_name(project: str) -> str:
    """The registry account's CodeBuild project that builds the serving image."""
    return f"{project}-serving-image"


def serving_key_alias(project: str, env: str) -> str:
    """The KMS key of an environment's serving bucket, data capture and endpoint volumes."""
    return f"alias/{project}/{env}/serving"


def endpoint_role_name(project: str, env: str) -> str:
    """The execution role of an environment's endpoints (named: endpoint stacks in another stage name it)."""
    return f"{project}-{env}-endpoint"


def endpoint_alarm_name(endpoint: str, kind: str) -> str:
    """A rollback alarm of an endpoint: ``kind`` is ``5xx`` (Invocation5XXErrors) or ``latency`` (ModelLatency)."""
    try:
        return f"{endpoint}-{_ALARM_SUFFIXES[kind]}"
    except KeyError:
        raise ValueError(f"unknown alarm kind {kind!r}; one of {sorted(_ALARM_SUFFIXES)}") from None


def multi_model_prefix(endpoint: str) -> str:
    """Where a multi-model endpoint finds its models in the serving bucket (adding one needs no redeploy)."""
    return f"{MULTI_MODEL_ROOT}{endpoint}/"


def capture_prefix() -> str:
    """Where endpoints write their data capture in the serving bucket (``<prefix>/<endpoint>/<variant>/...``)."""
    return "capture"


# Object layout inside the zone buckets: one implementation in the leaf package the Lambda and the job carry.
from modelwerk.core.layout import curated_prefix, ledger_prefix, raw_prefix, snapshot_prefix  # noqa: E402,F401


# -- monitoring ---------------------------------------------------------------------------------------------------------

#: Where the drift monitor writes its reports and reads ground truth, in the serving bucket.
MONITORING_REPORT_PREFIX = "monitoring"
GROUND_TRUTH_PREFIX = "ground-truth"
#: The namespace of the drift monitor's metrics.
MONITORING_NAMESPACE = "Modelwerk/Monitoring"
_MONITOR_ALARM_SUFFIXES = {"drift": "data-drift", "quality": "model-quality", "no-data": "no-data",
                           "composite": "needs-retraining"}


def drift_monitor_function_name(project: str, env: str) -> str:
    """The environment's drift monitor function (one function; a schedule per monitored endpoint)."""
    return f"{project}-{env}-drift-monitor"


def monitoring_alarm_name(endpoint: str, kind: str) -> str:
    """A monitoring alarm of an endpoint: ``drift`` (worst PSI), ``quality`` (from ground truth), ``no-data``, and
    ``composite`` (drift or quality: it notifies on-call and starts retraining)."""
    return f"{endpoint}-{_MONITOR_ALARM_SUFFIXES[kind]}"


def ground_truth_prefix(endpoint: str) -> str:
    return f"{GROUND_TRUTH_PREFIX}/{endpoint}/"


# -- promotion ------------------------------------------------------------------------------------------------------
#: The zone name of the registry's promotion artifact bucket (``bucket_name(project, env, PROMOTION_ZONE, ...)``).
PROMOTION_ZONE = "promotion"
#: Its server access log bucket (the registry's other log bucket logs only the model artifacts).
PROMOTION_LOG_ZONE = "promotion-logs"


#: The promotion pipeline's stages, in order (the library follows them by these names).
PROMOTION_STAGES = ("Source", "DeployStaging", "QualityGate", "ManualApproval", "DeployProd")
#: The pipeline variable that carries the promoted version's ARN (set by the source function at start).
PROMOTION_ARN_VARIABLE = "ModelPackageArn"
#: The promotion gate's build variable that carries its p95 latency budget in milliseconds.
GATE_BUDGET_VARIABLE = "BUDGET_MS"
#: The manual approval action of the approval stage.
PROMOTION_APPROVAL_ACTION = "Approve"


def promotion_operator_role_name(project: str) -> str:
    """The registry account's role that follows, approves and rolls back promotions (``modelwerk promote``)."""
    return f"{project}-promotion-operator"


def promotion_pipeline_name(project: str, use_case: str) -> str:
    """The registry account's CodePipeline that promotes a use case's approved versions to staging, then prod."""
    return f"{project}-{use_case}-promotion"


def promotion_pipeline_role_name(project: str, use_case: str) -> str:
    """The promotion pipeline's service role (named: staging's and prod's action roles trust exactly this role)."""
    return f"{project}-{use_case}-promotion-pipeline"


def promotion_gate_project_name(project: str, use_case: str) -> str:
    """The CodeBuild project that runs the quality gate against the staging endpoint."""
    return f"{project}-{use_case}-promotion-gate"


def promotion_gate_build_role_name(project: str, use_case: str) -> str:
    """The gate project's service role (named: staging's gate role trusts exactly this role)."""
    return f"{project}-{use_case}-promotion-gate-build"


def promotion_source_function_name(project: str, use_case: str) -> str:
    """The function that turns an approval event into the pipeline's source object and starts the pipeline."""
    return f"{project}-{use_case}-promotion-source"


def promotion_record_function_name(project: str, use_case: str) -> str:
    """The pipeline's last action: marks the version prod now serves in the registry."""
    return f"{project}-{use_case}-promotion-record"


def promotion_source_key(use_case: str) -> str:
    """The pipeline's source object in the promotion bucket; each approval writes a new version of it."""
    return f"promotion/{use_case}/source.zip"


def promotion_report_prefix(use_case: str) -> str:
    """Where the gate writes its reports in the promotion bucket (``<prefix><pipeline execution id>/gate.json``)."""
    return f"promotion/{use_case}/reports/"


def promotion_key_alias(project: str, env: str) -> str:
    """The KMS key of the promotion artifact bucket (staging's and prod's action roles decrypt with it)."""
    return f"alias/{project}/{env}/promotion-artifacts"


def promotion_topic_name(project: str, kind: str) -> str:
    """The registry's promotion topics: ``approvals`` (a version waits for a person) and ``failures``."""
    if kind not in ("approvals", "failures"):
        raise ValueError(f"unknown promotion topic {kind!r}; one of ['approvals', 'failures']")
    return f"{project}-promotion-{kind}"


def promotion_action_role_name(project: str, env: str) -> str:
    """The role in a target account (staging, prod) the promotion pipelines assume to deploy the endpoint stacks."""
    return f"{project}-{env}-promotion-action"


def promotion_deploy_role_name(project: str, env: str) -> str:
    """The CloudFormation execution role in a target account: what an endpoint stack needs, nothing more."""
    return f"{project}-{env}-promotion-deploy"


def promotion_gate_role_name(project: str, env: str) -> str:
    """The role in the gated account (staging) the gate build assumes to invoke the endpoints."""
    return f"{project}-{env}-promotion-gate"


def role_arn(account: str, name: str) -> str:
    """A role's ARN from its account and name: another account's stack names it without a cross-stack reference."""
    return f"arn:aws:iam::{account}:role/{name}"


# -- batch scoring (the inference pipeline) ---------------------------------------------------------------------------


def inference_pipeline_name(project: str, env: str, use_case: str) -> str:
    """The SageMaker Pipeline that scores a use case's data in batch with the version an environment serves."""
    return f"{project}-{env}-{use_case}-inference"


def inference_role_name(project: str, env: str, use_case: str) -> str:
    """Execution role of the inference pipeline, its jobs and the model it creates (named: the definition holds it)."""
    return f"{project}-{env}-{use_case}-inference"


#: The serving bucket's folder of the inference executions' working files (one subfolder per use case).
BATCH_ROOT = "batch"


def batch_prefix(use_case: str) -> str:
    """Where the inference executions of a use case keep their files in the serving bucket (one folder each)."""
    return f"{BATCH_ROOT}/{use_case}/"


#: The serving bucket's folder of batch transform capture (one subfolder per use case).
BATCH_CAPTURE_ROOT = "capture-batch"


def batch_capture_prefix(use_case: str) -> str:
    """Where the transform jobs of a use case write their data capture in the serving bucket (a folder per
    execution, holding SageMaker's ``input/`` and ``output/`` manifests)."""
    return f"{BATCH_CAPTURE_ROOT}/{use_case}/"


def predictions_table_name(use_case: str) -> str:
    """Glue table of a use case's batch predictions in the analytics database."""
    return f"{table_name(use_case)}_predictions"


def predictions_prefix(use_case: str) -> str:
    """Location of the predictions table in the analytics bucket (``dt=<day>/`` partitions under it)."""
    return f"predictions/{use_case}/"
