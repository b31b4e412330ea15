"""One use case's promotion: an approved version goes to staging, through the quality gate, past a person, to prod.

SageMaker emits "Model Package State Change" in the registry account, where the groups live. A rule on the use
case's group and ``ModelApprovalStatus`` Approved invokes the source function (``lambdas/promotion_source``), which
writes the pipeline's source object (``package.json`` plus the bundle below) as a new object version and starts the
pipeline on exactly that version. The CodePipeline (V2, executions queued, so every approved version is deployed,
gated and decided on in turn) then runs:

1. Source: the S3 object version the execution was started on (never polled, never triggered by a write).
2. DeployStaging: CloudFormation creates or updates the use case's endpoint stack (the stack ``cdk deploy
   '<env>-endpoints/*'`` deploys, same name, same template) in the staging account, ``ModelPackageArn`` read from
   ``package.json``, through staging's action role and CloudFormation execution role.
3. QualityGate: CodeBuild runs ``python -m modelwerk.core.gate`` against the staging endpoint through staging's gate
   role, writes the report to the promotion bucket and exports a one-line summary and the report's link.
4. ManualApproval: the approvals topic gets the summary and the link; a person approves or rejects.
5. DeployProd: the same stack into prod, whose blue/green deployment policy shifts traffic and rolls back on alarms;
   then the record function (``lambdas/promotion_record``) marks the version as promoted to prod in the registry,
   from the pipeline variable ``ModelPackageArn`` the source function set when it started the execution.

The bundle travels in the source function's code asset, assembled at synth: the staging and prod endpoint templates
(synthesized by the caller) with the stack tags ``cdk deploy`` would give them (template configuration files),
``modelwerk/core/gate.py``, the use case's ``gate_cases.csv`` and the gate's buildspec. A CloudFormation action
cannot publish CDK assets, so the endpoint templates must be asset-free; the caller checks that.

The pipeline sees its artifact bucket and key through references: CDK's own cross-account grants would write the
target roles' ARNs into the bucket and key policies (which then need those roles to exist first); ``PromotionArtifacts``
grants the same reads to the target accounts, conditioned on the role names. Every role here is written out by
hand (``cdk_constructs.permissions``), CDK's wildcard grants stay off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as cpactions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.bundling import Copy, LocalBundle
from cdk_constructs.lambda_layers import PYTHON_RUNTIME, powertools_arn
from cdk_constructs.nag import acknowledge, acknowledge_checkov, acknowledge_function
from cdk_constructs.permissions import KMS_ENCRYPT_DECRYPT, LOG_WRITE, S3_READ, allow, allow_objects
from cdk_constructs.queues import DEAD_LETTER_QUEUE
from modelwerk import naming

STATE_CHANGE = "SageMaker Model Package State Change"
HANDLER = "handler.handler"
#: The pipeline variable that carries the promoted version's ARN (set by the source function at start).
ARN_VARIABLE = naming.PROMOTION_ARN_VARIABLE
RECORD_ACTION = "RecordInRegistry"
#: Stage names, in order, and the source action the function pins each execution's object version on.
STAGES = naming.PROMOTION_STAGES
SOURCE_ACTION = "PackageVersion"
GATE_NAMESPACE = "Gate"
#: Files of the bundle (paths inside the source object).
PACKAGE_FILE = "package.json"
BUILDSPEC_FILE = "buildspec.json"
GATE_FOLDER = "gate"
GATE_CASES_FILE = f"{GATE_FOLDER}/gate_cases.csv"
GATE_REPORT_FILE = "gate.json"
DEAD_LETTER_RETENTION = Duration.days(14)
#: The gate report's one-line summary (read from gate.json), for the approval's information.
GATE_SUMMARY_COMMAND = (
    "python -c \"import json; r = json.load(open('gate.json')); p95 = r['latency_ms']['p95']; "
    "print(('passed' if r['passed'] else 'FAILED') + ': ' + str(len(r['cases'])) + ' cases, p95 ' "
    "+ ('n/a' if p95 is None else format(p95, 'g')) + ' ms of ' + format(r['budget_ms'], 'g') + ' ms'"
    " + ''.join('; ' + f for f in r['failures'][:1]))\""
)


def template_path(env_name: str) -> str:
    """The endpoint stack template of a target environment inside the source object."""
    return f"templates/{env_name}.template.json"


def configuration_path(env_name: str) -> str:
    """Its template configuration (the stack tags) inside the source object."""
    return f"templates/{env_name}.configuration.json"


@dataclass(frozen=True)
class PromotionTarget:
    """One environment a version is deployed to.

    env_name, account, region: where (the region must be the pipeline's: no cross-region replication).
    stack_name: the endpoint stack's CloudFormation name, the one ``cdk deploy '<env>-endpoints/*'`` uses.
    template: the endpoint stack's synthesized template (a JSON document without CDK assets).
    tags: the stack-level tags ``cdk deploy`` gives the stack (the pipeline gives the same, so neither removes them).
    action_role_arn: the role in that account the pipeline assumes for the deploy action.
    deploy_role_arn: the CloudFormation execution role in that account.
    """

    env_name: str
    account: str
    region: str
    stack_name: str
    template: Mapping[str, Any]
    tags: Mapping[str, str]
    action_role_arn: str
    deploy_role_arn: str


@dataclass(frozen=True)
class QualityGate:
    """The gate on the staging endpoint.

    endpoint_name: the staging endpoint the gate invokes.
    budget_ms: the p95 latency budget (the endpoint's ``max_latency_ms``).
    role_arn: the gate role in the staging account (invoke and describe that environment's endpoints).
    region: the endpoint's region.
    requirements: what the build installs first (``boto3==<pin>``; the gate itself is standard library only).
    timeout: the build is stopped after this long (default 20 minutes).
    """

    endpoint_name: str
    budget_ms: int
    role_arn: str
    region: str
    requirements: Sequence[str]
    timeout: Duration = Duration.minutes(20)


@dataclass(frozen=True)
class PromotionPipelineProps:
    """project, use_case: name the pipeline, its roles, project and function (``naming.promotion_*``).
    group_name: the registry's model package group whose approvals start the pipeline.
    source_root: the checkout (the function's folder and ``modelwerk/core/gate.py``).
    gate_cases: the use case's ``gate_cases.csv``.
    staging, prod: the deploy targets, in that order.
    gate: the quality gate on the staging endpoint.
    model_package_parameter: the endpoint stack's parameter naming the version (default ``ModelPackageArn``).
    log_retention: the function's and the gate's logs (default one year: the record of what was promoted).
    destroy_on_removal: delete the log groups and the dead-letter queue with the stack (default False).
    source_timeout: the source function's timeout (default one minute: a zip of a few templates and two API calls).
    """

    project: str
    use_case: str
    group_name: str
    source_root: Path
    gate_cases: Path
    staging: PromotionTarget
    prod: PromotionTarget
    gate: QualityGate
    model_package_parameter: str = "ModelPackageArn"
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR
    destroy_on_removal: bool = False
    source_timeout: Duration = field(default_factory=lambda: Duration.minutes(2))
    record_timeout: Duration = field(default_factory=lambda: Duration.seconds(30))


def gate_buildspec(requirements: Sequence[str]) -> dict[str, Any]:
    """Run the gate on the staging endpoint; whatever its verdict, keep the report and export its summary and link.

    The report's key carries the pipeline execution id, so every execution keeps its own report.
    """
    budget = f'"${naming.GATE_BUDGET_VARIABLE}"'
    gate = ('PYTHONPATH="$CODEBUILD_SRC_DIR/' + GATE_FOLDER + '" python -m modelwerk.core.gate '
            '--endpoint "$ENDPOINT" --cases ' + GATE_CASES_FILE + ' --budget-ms ' + budget + ' '
            '--role-arn "$GATE_ROLE_ARN" --region "$ENDPOINT_REGION" --report ' + GATE_REPORT_FILE)
    report = (
        'if [ -f ' + GATE_REPORT_FILE + ' ]; then '
        'aws s3 cp ' + GATE_REPORT_FILE + ' "s3://$REPORT_BUCKET/$REPORT_KEY" && '
        'export GATE_SUMMARY="$(' + GATE_SUMMARY_COMMAND + ')"; '
        'else export GATE_SUMMARY="no report: the gate stopped before judging the endpoint"; fi'
    )
    return {
        "version": "0.2",
        "env": {"shell": "bash", "exported-variables": ["GATE_SUMMARY", "GATE_REPORT_URL"]},
        "phases": {
            "install": {
                "runtime-versions": {"python": "3.12"},
                "commands": ["python -m pip install --quiet --disable-pip-version-check "
                             + " ".join(f"'{r}'" for r in requirements)],
            },
            "build": {"commands": [gate]},
            "post_build": {"commands": [
                'export REPORT_KEY="${REPORT_PREFIX}${EXECUTION_ID}/' + GATE_REPORT_FILE + '"',
                'export GATE_REPORT_URL="https://console.aws.amazon.com/s3/object/${REPORT_BUCKET}'
                '?region=${AWS_REGION}&prefix=${REPORT_KEY}"',
                report,
            ]},
        },
    }


class PromotionPipeline(Construct):
    """Attributes: ``pipeline``, ``pipeline_role``, ``source_function``, ``source_role``, ``source_log_group``,
    ``record_function``, ``record_role``, ``record_log_group``, ``approval_rule``, ``dead_letter_queue``,
    ``gate_project``, ``gate_role``, ``gate_log_group``, ``artifact_store`` (the bucket as the pipeline sees it).

    artifact_bucket, artifact_key: the promotion artifact store (``PromotionArtifacts``). approval_topic: where the
    approval action asks. key: encrypts the log groups and the dead-letter queue, and the topic's messages.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: PromotionPipelineProps,
                 artifact_bucket: s3.IBucket, artifact_key: kms.IKey, approval_topic: sns.ITopic,
                 key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        _check(props, stack.region)
        removal = RemovalPolicy.DESTROY if props.destroy_on_removal else RemovalPolicy.RETAIN
        project, use_case = props.project, props.use_case
        pipeline_name = naming.promotion_pipeline_name(project, use_case)
        source_key = naming.promotion_source_key(use_case)
        self.artifact_store = s3.Bucket.from_bucket_attributes(
            self, "ArtifactStore", bucket_arn=artifact_bucket.bucket_arn, bucket_name=artifact_bucket.bucket_name,
            encryption_key=kms.Key.from_key_arn(self, "ArtifactKey", artifact_key.key_arn))

        # -- the gate's build ---------------------------------------------------------------------------------
        self.gate_role = iam.Role(self, "GateBuildRole",
                                  role_name=naming.promotion_gate_build_role_name(project, use_case),
                                  assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
                                  description=f"Runs {use_case}'s quality gate on the staging endpoint")
        self.gate_log_group = logs.LogGroup(self, "GateLogs", encryption_key=key, retention=props.log_retention,
                                            removal_policy=removal)
        self.gate_project = codebuild.PipelineProject(
            self,
            "Gate",
            project_name=naming.promotion_gate_project_name(project, use_case),
            description=f"Quality gate of {use_case}: expected predictions and latency on the staging endpoint",
            # The role is complete as written below: CDK's own grants (wildcard S3 and KMS actions) stay off.
            role=self.gate_role.without_policy_updates(),
            encryption_key=artifact_key,
            environment=codebuild.BuildEnvironment(build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                                                   compute_type=codebuild.ComputeType.SMALL),
            build_spec=codebuild.BuildSpec.from_source_filename(BUILDSPEC_FILE),
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(
                log_group=self.gate_log_group)),
            timeout=props.gate.timeout,
        )
        self.gate_project.node.add_dependency(self.gate_role)
        self._gate_permissions(props)

        # -- the record function (the pipeline's last action) -------------------------------------------------
        self._record_function(props, key, removal)

        # -- the pipeline -------------------------------------------------------------------------------------
        package_arn = codepipeline.Variable(variable_name=ARN_VARIABLE,
                                            description="The promoted version's model package ARN (set at start)")
        self.pipeline_role = iam.Role(self, "PipelineRole",
                                      role_name=naming.promotion_pipeline_role_name(project, use_case),
                                      assumed_by=iam.ServicePrincipal("codepipeline.amazonaws.com"),
                                      description=f"Promotes approved {use_case} versions to staging, then prod")
        package = codepipeline.Artifact("Package")
        gate_action = cpactions.CodeBuildAction(
            action_name="Gate",
            project=self.gate_project,
            input=package,
            variables_namespace=GATE_NAMESPACE,
            environment_variables={name: codebuild.BuildEnvironmentVariable(value=value) for name, value in {
                "ENDPOINT": props.gate.endpoint_name,
                naming.GATE_BUDGET_VARIABLE: str(props.gate.budget_ms),
                "GATE_ROLE_ARN": props.gate.role_arn,
                "ENDPOINT_REGION": props.gate.region,
                "REPORT_BUCKET": artifact_bucket.bucket_name,
                "REPORT_PREFIX": naming.promotion_report_prefix(use_case),
                "EXECUTION_ID": "#{codepipeline.PipelineExecutionId}",
            }.items()},
        )
        self.pipeline = codepipeline.Pipeline(
            self,
            "Pipeline",
            pipeline_name=pipeline_name,
            pipeline_type=codepipeline.PipelineType.V2,
            execution_mode=codepipeline.ExecutionMode.QUEUED,
            artifact_bucket=self.artifact_store,
            role=self.pipeline_role.without_policy_updates(),
            use_pipeline_role_for_actions=True,
            restart_execution_on_update=False,
            variables=[package_arn],
            stages=[
                codepipeline.StageProps(stage_name=STAGES[0], actions=[cpactions.S3SourceAction(
                    action_name=SOURCE_ACTION, bucket=self.artifact_store, bucket_key=source_key,
                    trigger=cpactions.S3Trigger.NONE, output=package)]),
                codepipeline.StageProps(stage_name=STAGES[1], actions=[self._deploy(props.staging, package, props)]),
                codepipeline.StageProps(stage_name=STAGES[2], actions=[gate_action]),
                codepipeline.StageProps(stage_name=STAGES[3], actions=[cpactions.ManualApprovalAction(
                    action_name=naming.PROMOTION_APPROVAL_ACTION,
                    notification_topic=approval_topic,
                    additional_information=(f"Promote {use_case} to {props.prod.env_name}? Gate on "
                                            f"{props.staging.env_name}: {gate_action.variable('GATE_SUMMARY')}"),
                    external_entity_link=gate_action.variable("GATE_REPORT_URL"))]),
                codepipeline.StageProps(stage_name=STAGES[4], actions=[
                    self._deploy(props.prod, package, props),
                    cpactions.LambdaInvokeAction(action_name=RECORD_ACTION, lambda_=self.record_function,
                                                 user_parameters={"model_package_arn": package_arn.reference()},
                                                 run_order=2)]),
            ],
        )
        self.pipeline.node.add_dependency(self.pipeline_role)
        self._pipeline_permissions(props, artifact_bucket, artifact_key, approval_topic, key)

        # -- the source function and its rule ---------------------------------------------------------------
        function_name = naming.promotion_source_function_name(project, use_case)
        self.dead_letter_queue = sqs.Queue(self, "DeadLetterQueue", encryption=sqs.QueueEncryption.KMS,
                                           encryption_master_key=key, enforce_ssl=True,
                                           retention_period=DEAD_LETTER_RETENTION, removal_policy=removal,
                                           redrive_allow_policy=DEAD_LETTER_QUEUE)
        acknowledge(self.dead_letter_queue, "AwsSolutions-SQS3",
                    "This queue is itself the dead-letter queue of the approval rule and the source function.")
        self.source_role = iam.Role(self, "SourceRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                                    description=f"Writes {use_case}'s promotion source object, starts the pipeline")
        self.source_function, self.source_log_group = self._function(
            "Source", props=props, key=key, removal=removal, function_name=function_name,
            description=f"An approved {use_case} version in, the promotion pipeline's source object and execution out",
            bundle=_bundle(props), role=self.source_role, timeout=props.source_timeout,
            dead_letter_queue=self.dead_letter_queue, retry_attempts=2,
            environment={
                "SOURCE_BUCKET": artifact_bucket.bucket_name,
                "SOURCE_KEY": source_key,
                "PIPELINE_NAME": self.pipeline.pipeline_name,
                "SOURCE_ACTION": SOURCE_ACTION,
                "USE_CASE": use_case,
                "MODEL_PACKAGE_GROUP": props.group_name,
            })
        self.approval_rule = events.Rule(
            self,
            "ApprovalRule",
            description=f"An approved {use_case} version starts its promotion",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[STATE_CHANGE],
                detail={"ModelPackageGroupName": [props.group_name], "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[targets.LambdaFunction(self.source_function, dead_letter_queue=self.dead_letter_queue,
                                            retry_attempts=4, max_event_age=Duration.hours(6))],
        )
        self._source_permissions(artifact_bucket, artifact_key, key, source_key, props.group_name)

    def _function(self, construct_id: str, *, props: PromotionPipelineProps, key: kms.IKey, removal: RemovalPolicy,
                  function_name: str, description: str, bundle: LocalBundle, role: iam.IRole, timeout: Duration,
                  environment: Mapping[str, str], **options: Any) -> tuple[lambda_.Function, logs.LogGroup]:
        """A function of this pipeline on the Powertools layer, with its encrypted log group; its code is the
        ``bundle`` (whose first copy is its ``lambdas/`` folder) and its Powertools service the function's purpose."""
        log_group = logs.LogGroup(self, f"{construct_id}Logs", log_group_name=f"/aws/lambda/{function_name}",
                                  encryption_key=key, retention=props.log_retention, removal_policy=removal)
        function = lambda_.Function(
            self,
            construct_id,
            function_name=function_name,
            description=description,
            runtime=PYTHON_RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(bundle.copies[0].source), bundling=bundle.options()),
            layers=[lambda_.LayerVersion.from_layer_version_arn(self, f"{construct_id}PowertoolsLayer",
                                                                powertools_arn(Stack.of(self).region))],
            memory_size=256,
            timeout=timeout,
            role=role,
            log_group=log_group,
            environment={**environment, "POWERTOOLS_SERVICE_NAME": bundle.copies[0].source.name.replace("_", "-")},
            **options,
        )
        acknowledge(function, "AwsSolutions-L1",
                    "Pinned to python3.12: the Powertools layer it runs on is published for it; the runtime moves "
                    "together with that layer (cdk_constructs/lambda_layers.py).")
        acknowledge_function(function, in_vpc=False,
                             bounded_by="It runs once per approval or promotion of one use case.")
        return function, log_group

    def _deploy(self, target: PromotionTarget, package: codepipeline.Artifact,
                props: PromotionPipelineProps) -> cpactions.CloudFormationCreateUpdateStackAction:
        """Create or update the endpoint stack in the target account, as the target's own roles."""
        env = target.env_name
        return cpactions.CloudFormationCreateUpdateStackAction(
            action_name="Deploy",
            stack_name=target.stack_name,
            admin_permissions=False,
            template_path=package.at_path(template_path(env)),
            template_configuration=package.at_path(configuration_path(env)),
            parameter_overrides={props.model_package_parameter: package.get_param(PACKAGE_FILE, "model_package_arn")},
            account=target.account,
            role=iam.Role.from_role_arn(self, f"{env.title()}ActionRole", target.action_role_arn, mutable=False),
            deployment_role=iam.Role.from_role_arn(self, f"{env.title()}DeployRole", target.deploy_role_arn,
                                                   mutable=False),
        )

    def _gate_permissions(self, props: PromotionPipelineProps) -> None:
        role = self.gate_role
        allow(role, actions=LOG_WRITE, resources=[self.gate_log_group.log_group_arn],
              wildcard_reason="CodeBuild writes one log stream per build into the project's own log group.")
        allow_objects(role, self.artifact_store, prefixes=[""], actions=S3_READ,
                      reason="The build reads its input artifact, which CodePipeline keys by pipeline, artifact and "
                             "a random id in the promotion bucket (no other data lives there).")
        allow_objects(role, self.artifact_store, prefixes=[naming.promotion_report_prefix(props.use_case)],
                      actions=["s3:PutObject"],
                      reason="One report per pipeline execution, keyed by the execution id, under the use case's "
                             "report prefix.")
        allow(role, actions=KMS_ENCRYPT_DECRYPT, resources=[self.artifact_store.encryption_key.key_arn])
        allow(role, actions=["sts:AssumeRole"], resources=[props.gate.role_arn])

    def _pipeline_permissions(self, props: PromotionPipelineProps, bucket: s3.IBucket, artifact_key: kms.IKey,
                              topic: sns.ITopic, key: kms.IKey) -> None:
        role = self.pipeline_role
        allow_objects(role, bucket, prefixes=[""], actions=[*S3_READ, "s3:PutObject"],
                      reason="CodePipeline reads the source object and keys the artifacts it writes by a truncated "
                             "pipeline name, the artifact and a random id; the bucket holds only promotion data.")
        allow(role, actions=["s3:GetBucketVersioning", "s3:GetBucketLocation"], resources=[bucket.bucket_arn])
        allow(role, actions=KMS_ENCRYPT_DECRYPT, resources=[artifact_key.key_arn])
        allow(role, actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild"],
              resources=[self.gate_project.project_arn])
        allow(role, actions=["sns:Publish"], resources=[topic.topic_arn])
        allow(role, actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn])
        allow(role, actions=["sts:AssumeRole"],
              resources=sorted({props.staging.action_role_arn, props.prod.action_role_arn}))
        allow(role, actions=["lambda:InvokeFunction"], resources=[self.record_function.function_arn])

    def _record_function(self, props: PromotionPipelineProps, key: kms.IKey, removal: RemovalPolicy) -> None:
        """The function that marks the version prod now serves, on the use case's group only."""
        function_name = naming.promotion_record_function_name(props.project, props.use_case)
        self.record_role = iam.Role(self, "RecordRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                                    description=f"Marks the {props.use_case} version prod serves in the registry")
        self.record_function, self.record_log_group = self._function(
            "Record", props=props, key=key, removal=removal, function_name=function_name,
            description=f"Marks the {props.use_case} version the promotion deployed to prod in the registry",
            bundle=_with_marks(props, "promotion_record"), timeout=props.record_timeout,
            # The role is complete as written below: the invoke action's own grant (job results on "*") stays off.
            role=self.record_role.without_policy_updates(),
            environment={"MODEL_PACKAGE_GROUP": props.group_name})
        self.record_function.node.add_dependency(self.record_role)
        acknowledge_checkov(self.record_function, "CKV_AWS_116",
                            "CodePipeline invokes it as an action and waits for the result it reports; a failed "
                            "invocation fails the action, where it is seen and retried, so no event is left to keep.",
                            resource_type="AWS::Lambda::Function")
        role = self.record_role
        allow(role, actions=LOG_WRITE, resources=[self.record_log_group.log_group_arn],
              wildcard_reason="Lambda writes one log stream per execution environment into the function's log group.")
        allow(role, actions=["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
              resources=[_group_packages(self, props.group_name)],
              wildcard_reason="Any version of the use case's own group: the pipeline promotes each in turn.")
        allow(role, actions=["codepipeline:PutJobSuccessResult", "codepipeline:PutJobFailureResult"], resources=["*"],
              wildcard_reason="CodePipeline's job result actions support no resource-level permission; the job id "
                              "the function answers comes with the invocation.")

    def _source_permissions(self, bucket: s3.IBucket, artifact_key: kms.IKey, key: kms.IKey, source_key: str,
                            group_name: str) -> None:
        role = self.source_role
        allow(role, actions=LOG_WRITE, resources=[self.source_log_group.log_group_arn],
              wildcard_reason="Lambda writes one log stream per execution environment into the function's log group.")
        allow(role, actions=["s3:PutObject"], resources=[bucket.arn_for_objects(source_key)])
        allow(role, actions=["kms:GenerateDataKey"], resources=[artifact_key.key_arn])
        allow(role, actions=["codepipeline:StartPipelineExecution"], resources=[self.pipeline.pipeline_arn])
        allow(role, actions=["sagemaker:DescribeModelPackage"], resources=[_group_packages(self, group_name)],
              wildcard_reason="Any version of the use case's own group: the function reads which approved version "
                              "prod serves, so it does not promote that one again.")
        allow(role, actions=["sagemaker:ListModelPackages"], resources=["*"],
              wildcard_reason="ListModelPackages supports no resource-level permission; the function lists its own "
                              "group's versions (the group is its configuration).")
        # sqs:SendMessage on the dead-letter queue comes with the function's dead_letter_queue; the queue's key:
        allow(role, actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn])


def _check(props: PromotionPipelineProps, region: str) -> None:
    problems = []
    for target in (props.staging, props.prod):
        if target.region != region:
            problems.append(f"{target.env_name} is in {target.region}, the pipeline in {region}: a cross-region "
                            "deploy needs artifact replication, which the promotion does not set up")
        if props.model_package_parameter not in target.template.get("Parameters", {}):
            problems.append(f"{target.stack_name}'s template has no {props.model_package_parameter} parameter")
    if props.gate.budget_ms <= 0:
        problems.append("the gate's latency budget must be positive")
    if not props.gate_cases.is_file():
        problems.append(f"no gate cases at {props.gate_cases}: every promoted use case needs its gate_cases.csv")
    if problems:
        raise ValueError(f"promotion of {props.use_case}: " + "; ".join(problems))


def _group_packages(scope: Construct, group_name: str) -> str:
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:model-package/{group_name}/*"


def _with_marks(props: PromotionPipelineProps, function: str) -> LocalBundle:
    """A function's folder plus the registry marks it shares with the library (``modelwerk/core/promotion_marks``)."""
    core = props.source_root / "modelwerk" / "core"
    return LocalBundle(copies=[Copy(props.source_root / "lambdas" / function),
                               Copy(core / "__init__.py", "modelwerk/core/__init__.py"),
                               Copy(core / "promotion_marks.py", "modelwerk/core/promotion_marks.py")])


def _bundle(props: PromotionPipelineProps) -> LocalBundle:
    """The function's asset: its handler, and under ``bundle/`` what the pipeline's stages read from the source."""
    core = props.source_root / "modelwerk" / "core"
    files = {f"bundle/{BUILDSPEC_FILE}": json.dumps(gate_buildspec(props.gate.requirements), indent=1) + "\n"}
    for target in (props.staging, props.prod):
        files[f"bundle/{template_path(target.env_name)}"] = json.dumps(target.template, indent=1) + "\n"
        files[f"bundle/{configuration_path(target.env_name)}"] = json.dumps({"Tags": dict(target.tags)},
                                                                            indent=1) + "\n"
    return LocalBundle(
        copies=[
            *_with_marks(props, "promotion_source").copies,
            Copy(core / "__init__.py", f"bundle/{GATE_FOLDER}/modelwerk/core/__init__.py"),
            Copy(core / "gate.py", f"bundle/{GATE_FOLDER}/modelwerk/core/gate.py"),
            Copy(props.gate_cases, f"bundle/{GATE_CASES_FILE}"),
        ],
        files=files,
    )
