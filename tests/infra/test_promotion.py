"""The promotion: in the registry account one CodePipeline per use case served in staging and prod, started by the
approval of a version; in staging and prod the named roles it deploys (and gates) through.

Accounts, names and budgets come from cdk.json and ``modelwerk.naming``, never from literals here.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from aws_cdk import App, Environment, Stack, Stage
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns

from cdk_constructs.ids import pascal
from cdk_constructs.promotion_pipeline import (GATE_SUMMARY_COMMAND, STAGES, PromotionPipeline,
                                               PromotionPipelineProps, PromotionTarget, QualityGate)
from modelwerk import naming, settings
from modelwerk.core import gate
from modelwerk.errors import ConfigurationError
from stacks.stages import PROMOTION_PATH, _refuse_assets, promoted_endpoints
from test_assets import asset_folder
from test_compliance import is_wildcard_principal
from test_registry import principal_accounts

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
#: (category, provider) of each stage's action, in order.
ACTION_TYPES = [("Source", "S3"), ("Deploy", "CloudFormation"), ("Build", "CodeBuild"), ("Approval", "Manual"),
                ("Deploy", "CloudFormation")]


@pytest.fixture(scope="module")
def promotion(synthesized):
    return synthesized.template("registry", "Promotion")


@pytest.fixture(scope="module")
def promoted(config):
    return promoted_endpoints(config)


def resources(template, resource_type: str, **properties) -> list[dict]:
    found = template.find_resources(resource_type, {"Properties": properties} if properties else None)
    return [r["Properties"] for r in found.values()]


def pipeline(promotion, config, use_case: str) -> dict:
    (found,) = resources(promotion, "AWS::CodePipeline::Pipeline",
                         Name=naming.promotion_pipeline_name(config.project, use_case))
    return found


def stage_actions(properties: dict) -> dict[str, dict]:
    return {stage["Name"]: stage["Actions"][0] for stage in properties["Stages"]}


def logical_id(reference: dict) -> str:
    return reference["Ref"] if "Ref" in reference else reference["Fn::GetAtt"][0]


def role_arn(config, env: str, role_name: str) -> str:
    return naming.role_arn(config.environment(env).account, role_name)


# -- which use cases are promoted -----------------------------------------------------------------------------------


def parse(**environments) -> settings.PlatformConfig:
    """cdk.json's context with the given environments' endpoints replaced (None: the environment removed)."""
    context = copy.deepcopy(CONTEXT)
    for env, endpoints in environments.items():
        if endpoints is None:
            del context[settings.ENVIRONMENTS_KEY][env]
        else:
            context[settings.ENVIRONMENTS_KEY][env]["endpoints"] = endpoints
    return settings.parse_context(context, ROOT)


def test_a_use_case_is_promoted_only_where_staging_and_prod_both_serve_it_from_one_endpoint():
    config = parse(prod={"pump-health": {"use_case": "pump-health"},
                         "energy-fleet": {"use_case": "energy-forecast", "multi_model": True}})
    assert {u: {e: s.name for e, s in served.items()} for u, served in promoted_endpoints(config).items()} == {
        "pump-health": {"staging": "pump-health", "prod": "pump-health"}}
    assert promoted_endpoints(parse(prod=None)) == {}


def test_two_single_model_endpoints_of_one_use_case_in_a_promoted_environment_are_refused():
    config = parse(staging={"pump-health": {"use_case": "pump-health"}, "pump-b": {"use_case": "pump-health"}})
    with pytest.raises(ConfigurationError, match=r"'staging' serves use case 'pump-health' from 2 single-model"):
        promoted_endpoints(config)


def test_an_endpoint_stack_with_cdk_assets_cannot_be_promoted(tmp_path):
    (tmp_path / "code.py").write_text("x = 1\n")
    app = App(outdir=str(tmp_path / "out"))
    stack = Stack(Stage(app, "staging-endpoints"), "PumpHealth")
    s3_assets.Asset(stack, "Code", path=str(tmp_path / "code.py"))
    assembly = stack.node.scope.synth()
    with pytest.raises(ValueError, match=r"staging-endpoints-PumpHealth has CDK assets \(\['Code'\]\)"):
        _refuse_assets(assembly, stack.artifact_id)


def test_a_target_in_another_region_is_refused(tmp_path):
    stack = Stack(App(outdir=str(tmp_path)), "Promotion",
                  env=Environment(account="111111111111", region="eu-central-1"))
    template = {"Parameters": {"ModelPackageArn": {"Type": "String"}}}

    def target(env: str, region: str) -> PromotionTarget:
        return PromotionTarget(env_name=env, account="222222222222", region=region, stack_name=f"{env}-endpoints-E",
                               template=template, tags={}, action_role_arn="arn:aws:iam::222222222222:role/a",
                               deploy_role_arn="arn:aws:iam::222222222222:role/d")

    props = PromotionPipelineProps(
        project="modelwerk", use_case="pump-health", group_name="modelwerk-pump-health", source_root=ROOT,
        gate_cases=ROOT / "sagemaker_pipelines" / "pump_health" / "gate_cases.csv",
        staging=target("staging", "eu-central-1"), prod=target("prod", "us-east-1"),
        gate=QualityGate(endpoint_name="e", budget_ms=500, role_arn="arn:aws:iam::222222222222:role/g",
                         region="eu-central-1", requirements=["boto3==1.0"]))
    key = kms.Key(stack, "Key")
    with pytest.raises(ValueError, match="prod is in us-east-1, the pipeline in eu-central-1: a cross-region"):
        PromotionPipeline(stack, "PumpHealth", props=props, artifact_bucket=s3.Bucket(stack, "Bucket"),
                          artifact_key=key, approval_topic=sns.Topic(stack, "Topic"), key=key)


def test_every_use_case_served_in_staging_and_prod_has_one_pipeline(promotion, config, promoted):
    assert set(promoted) == {"pump-health", "energy-forecast"}
    names = {p["Name"] for p in resources(promotion, "AWS::CodePipeline::Pipeline")}
    assert names == {naming.promotion_pipeline_name(config.project, u) for u in promoted}


# -- the pipeline ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_case", ["pump-health", "energy-forecast"])
def test_stages_run_in_order_with_their_action_types(promotion, config, use_case):
    properties = pipeline(promotion, config, use_case)
    assert [s["Name"] for s in properties["Stages"]] == list(STAGES)
    assert [(a["ActionTypeId"]["Category"], a["ActionTypeId"]["Provider"]) for a in
            stage_actions(properties).values()] == ACTION_TYPES
    assert [len(stage["Actions"]) for stage in properties["Stages"]] == [1, 1, 1, 1, 2]
    assert (properties["PipelineType"], properties["ExecutionMode"]) == ("V2", "QUEUED")


@pytest.mark.parametrize("use_case", ["pump-health", "energy-forecast"])
def test_after_prods_deploy_the_record_function_marks_the_started_version_in_the_registry(
        promotion, config, use_case):
    properties = pipeline(promotion, config, use_case)
    assert [v["Name"] for v in properties["Variables"]] == ["ModelPackageArn"]
    deploy, record = sorted(properties["Stages"][-1]["Actions"], key=lambda a: a["RunOrder"])
    assert (deploy["ActionTypeId"]["Provider"], deploy["RunOrder"]) == ("CloudFormation", 1)
    assert (record["ActionTypeId"]["Category"], record["ActionTypeId"]["Provider"]) == ("Invoke", "Lambda")
    assert (record["Name"], record["RunOrder"]) == ("RecordInRegistry", 2)
    assert json.loads(record["Configuration"]["UserParameters"]) == {
        "model_package_arn": "#{variables.ModelPackageArn}"}
    function = promotion.find_resources("AWS::Lambda::Function")[logical_id(record["Configuration"]["FunctionName"])]
    group = naming.model_package_group_name(config.project, use_case)
    assert function["Properties"]["FunctionName"] == naming.promotion_record_function_name(config.project, use_case)
    assert function["Properties"]["Environment"]["Variables"]["MODEL_PACKAGE_GROUP"] == group
    statements = attached_statements(promotion, logical_id(function["Properties"]["Role"]))
    registry = config.environment("registry")
    writes = [s for s in statements if "sagemaker:UpdateModelPackage" in s["Action"]]
    assert [json.dumps(s["Resource"]) for s in writes] == [json.dumps({"Fn::Join": ["", [
        "arn:", {"Ref": "AWS::Partition"},
        f":sagemaker:{registry.region}:{registry.account}:model-package/{group}/*"]]})]
    everywhere = [s for s in statements if s["Resource"] == "*"]
    assert [sorted(s["Action"]) for s in everywhere] == [["codepipeline:PutJobFailureResult",
                                                           "codepipeline:PutJobSuccessResult"]]
    invokes = [s for s in attached_statements(promotion, logical_id(properties["RoleArn"]))
               if "lambda:InvokeFunction" in s["Action"]]
    assert [s["Resource"] for s in invokes] == [{"Fn::GetAtt": [logical_id(record["Configuration"]["FunctionName"]),
                                                                "Arn"]}]



def test_the_source_is_the_use_cases_object_never_polled(promotion, config):
    source = stage_actions(pipeline(promotion, config, "pump-health"))["Source"]
    assert source["Configuration"]["S3ObjectKey"] == naming.promotion_source_key("pump-health")
    assert source["Configuration"]["PollForSourceChanges"] is False
    assert source["Name"] == "PackageVersion"


@pytest.mark.parametrize("use_case", ["pump-health", "energy-forecast"])
@pytest.mark.parametrize("stage,env", [("DeployStaging", "staging"), ("DeployProd", "prod")])
def test_deploy_actions_update_the_endpoint_stack_through_the_target_accounts_roles(
        synthesized, promotion, config, promoted, use_case, stage, env):
    action = stage_actions(pipeline(promotion, config, use_case))[stage]
    endpoint = promoted[use_case][env]
    assert action["RoleArn"] == role_arn(config, env, naming.promotion_action_role_name(config.project, env))
    configuration = action["Configuration"]
    assert configuration["RoleArn"] == role_arn(config, env, naming.promotion_deploy_role_name(config.project, env))
    assert configuration["StackName"] == synthesized.stack(f"{env}-endpoints", pascal(endpoint.name)).stack_name
    assert configuration["ActionMode"] == "CREATE_UPDATE"
    assert configuration["TemplatePath"] == f"Package::templates/{env}.template.json"
    assert json.loads(configuration["ParameterOverrides"]) == {
        "ModelPackageArn": {"Fn::GetParam": ["Package", "package.json", "model_package_arn"]}}
    assert "Capabilities" not in configuration  # the endpoint stack creates no IAM resource


def test_the_gate_runs_against_the_staging_endpoint_within_its_latency_budget(promotion, config, promoted):
    action = stage_actions(pipeline(promotion, config, "pump-health"))["QualityGate"]
    staging = config.environment("staging")
    endpoint = promoted["pump-health"]["staging"]
    variables = json.loads("".join(p if isinstance(p, str) else "BUCKET" for p in
                                   action["Configuration"]["EnvironmentVariables"]["Fn::Join"][1]))
    assert {v["name"]: v["value"] for v in variables} == {
        "ENDPOINT": endpoint.name,
        "BUDGET_MS": str(endpoint.max_latency_ms),
        "GATE_ROLE_ARN": role_arn(config, "staging", naming.promotion_gate_role_name(config.project, "staging")),
        "ENDPOINT_REGION": staging.region,
        "REPORT_BUCKET": "BUCKET",
        "REPORT_PREFIX": naming.promotion_report_prefix("pump-health"),
        "EXECUTION_ID": "#{codepipeline.PipelineExecutionId}",
    }
    assert action["Namespace"] == "Gate"


def test_the_approval_carries_the_gate_summary_and_report_link_to_an_encrypted_topic(promotion, config):
    action = stage_actions(pipeline(promotion, config, "pump-health"))["ManualApproval"]
    configuration = action["Configuration"]
    assert "#{Gate.GATE_SUMMARY}" in configuration["CustomData"] and len(configuration["CustomData"]) <= 100
    assert configuration["ExternalEntityLink"] == "#{Gate.GATE_REPORT_URL}"
    topics = promotion.find_resources("AWS::SNS::Topic")
    topic = topics[logical_id(configuration["NotificationArn"])]["Properties"]
    assert topic["TopicName"] == naming.promotion_topic_name(config.project, "approvals")
    assert "Fn::GetAtt" in topic["KmsMasterKeyId"]


def test_the_pipeline_role_is_the_named_one_the_targets_trust(promotion, config):
    properties = pipeline(promotion, config, "pump-health")
    roles = promotion.find_resources("AWS::IAM::Role")
    role = roles[logical_id(properties["RoleArn"])]["Properties"]
    assert role["RoleName"] == naming.promotion_pipeline_role_name(config.project, "pump-health")
    policies = resources(promotion, "AWS::IAM::Policy", Roles=[{"Ref": logical_id(properties["RoleArn"])}])
    assumed = [s["Resource"] for p in policies for s in p["PolicyDocument"]["Statement"]
               if s["Action"] == "sts:AssumeRole"]
    assert assumed == [sorted(role_arn(config, env, naming.promotion_action_role_name(config.project, env))
                              for env in PROMOTION_PATH)]


# -- the approval rule, the source function and what it ships ---------------------------------------------------------


@pytest.mark.parametrize("use_case", ["pump-health", "energy-forecast"])
def test_an_approved_version_of_the_use_cases_group_invokes_its_source_function(promotion, config, use_case):
    group = naming.model_package_group_name(config.project, use_case)
    (rule,) = resources(promotion, "AWS::Events::Rule", EventPattern=Match.object_like({"source": ["aws.sagemaker"],
                        "detail": {"ModelPackageGroupName": [group], "ModelApprovalStatus": ["Approved"]}}))
    assert rule["EventPattern"]["detail-type"] == ["SageMaker Model Package State Change"]
    functions = promotion.find_resources("AWS::Lambda::Function")
    function = functions[logical_id(rule["Targets"][0]["Arn"])]["Properties"]
    assert function["FunctionName"] == naming.promotion_source_function_name(config.project, use_case)
    environment = function["Environment"]["Variables"]
    assert environment["SOURCE_KEY"] == naming.promotion_source_key(use_case)
    assert environment["MODEL_PACKAGE_GROUP"] == group
    assert environment["SOURCE_ACTION"] == "PackageVersion"
    assert "DeadLetterConfig" in rule["Targets"][0]


@pytest.fixture(scope="module")
def bundle(synthesized, promotion, config) -> Path:
    (function,) = resources(promotion, "AWS::Lambda::Function",
                            FunctionName=naming.promotion_source_function_name(config.project, "pump-health"))
    return asset_folder(synthesized, function["Code"]["S3Key"]) / "bundle"


def test_the_function_asset_holds_its_handler_and_the_bundle(synthesized, bundle):
    handler = ROOT / "lambdas" / "promotion_source" / "handler.py"
    assert (bundle.parent / "handler.py").read_bytes() == handler.read_bytes()
    assert (bundle / "gate" / "modelwerk" / "core" / "gate.py").read_bytes() == (
        ROOT / "modelwerk" / "core" / "gate.py").read_bytes()
    assert (bundle / "gate" / "gate_cases.csv").read_bytes() == (
        ROOT / "sagemaker_pipelines" / "pump_health" / "gate_cases.csv").read_bytes()
    marks = ROOT / "modelwerk" / "core" / "promotion_marks.py"
    assert (bundle.parent / "modelwerk" / "core" / "promotion_marks.py").read_bytes() == marks.read_bytes()


def test_the_record_function_carries_the_marks_the_library_writes(synthesized, promotion, config):
    (function,) = resources(promotion, "AWS::Lambda::Function",
                            FunctionName=naming.promotion_record_function_name(config.project, "pump-health"))
    asset = asset_folder(synthesized, function["Code"]["S3Key"])
    assert sorted(p.relative_to(asset).as_posix() for p in asset.rglob("*.py")) == [
        "handler.py", "modelwerk/core/__init__.py", "modelwerk/core/promotion_marks.py"]
    assert (asset / "modelwerk" / "core" / "promotion_marks.py").read_bytes() == (
        ROOT / "modelwerk" / "core" / "promotion_marks.py").read_bytes()


@pytest.mark.parametrize("env", PROMOTION_PATH)
def test_the_bundle_ships_the_endpoints_stages_own_template_and_stack_tags(synthesized, bundle, promoted, env):
    shipped = json.loads((bundle / "templates" / f"{env}.template.json").read_text())
    assert shipped == synthesized.endpoint_template(env, promoted["pump-health"][env].name).to_json()
    configuration = json.loads((bundle / "templates" / f"{env}.configuration.json").read_text())
    assert configuration == {"Tags": {**synthesized.config.tags, "environment": env}}


def test_the_buildspec_runs_the_gate_with_the_actions_variables_and_arguments_the_gate_takes(
        promotion, config, bundle, tmp_path, monkeypatch):
    action = stage_actions(pipeline(promotion, config, "pump-health"))["QualityGate"]
    joined = "".join(p for p in action["Configuration"]["EnvironmentVariables"]["Fn::Join"][1] if isinstance(p, str))
    variables = {v["name"]: v["value"] or "bucket" for v in json.loads(joined)}
    variables["CODEBUILD_SRC_DIR"] = "/codebuild/src"  # CodeBuild's own
    spec = json.loads((bundle / "buildspec.json").read_text())
    (command,) = spec["phases"]["build"]["commands"]
    words = shlex.split(re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], command))
    assert words[:4] == ["PYTHONPATH=/codebuild/src/gate", "python", "-m", "modelwerk.core.gate"]
    monkeypatch.chdir(tmp_path)  # no gate/gate_cases.csv here: the gate stops after parsing, before any AWS call
    assert gate.main(words[4:]) == 2  # argparse raises SystemExit on an argument the gate does not take
    assert words[words.index("--budget-ms") + 1] == variables["BUDGET_MS"]
    pin = re.search(r"^boto3==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert spec["phases"]["install"]["commands"][0].endswith(f"'boto3=={pin}'")
    assert spec["env"]["exported-variables"] == ["GATE_SUMMARY", "GATE_REPORT_URL"]


@pytest.mark.parametrize("answer,expected", [
    pytest.param(b"0", r"^passed: 2 cases, p95 [0-9.e-]+ ms of 500 ms$", id="passed"),
    pytest.param(b"1", r"^FAILED: 2 cases, p95 [0-9.e-]+ ms of 500 ms; case low: predicted 1, expected 0$",
                 id="failed"),
])
def test_the_gate_summary_the_approval_shows_is_one_line_from_the_report(tmp_path, answer, expected):
    cases = gate.parse_cases("case,x,expected,tolerance\nlow,1,0,\nhigh,2,0,\n")
    report = gate.run(cases, lambda body, content_type: (answer, "text/csv"), budget_ms=500, repeats=1)
    (tmp_path / "gate.json").write_text(json.dumps(report.to_dict()))
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    summary = subprocess.run(["bash", "-c", GATE_SUMMARY_COMMAND], cwd=tmp_path, env=environment,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert re.match(expected, summary), summary
    assert len(summary) < 100


# -- the artifact store ---------------------------------------------------------------------------------------------


def test_the_artifact_bucket_is_versioned_and_kms_encrypted_and_the_pipelines_store(promotion, config):
    registry = config.registry
    name = naming.bucket_name(config.project, registry.name, naming.PROMOTION_ZONE, registry.account, registry.region)
    buckets = promotion.find_resources("AWS::S3::Bucket", {"Properties": {"BucketName": name}})
    ((bucket_id, bucket),) = buckets.items()
    properties = bucket["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_id = logical_id(encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"])
    for use_case in ("pump-health", "energy-forecast"):
        store = pipeline(promotion, config, use_case)["ArtifactStore"]
        assert (logical_id(store["Location"]), logical_id(store["EncryptionKey"]["Id"])) == (bucket_id, key_id)


def test_only_the_target_accounts_action_roles_may_read_artifacts_and_decrypt(promotion, config):
    readers = {config.environment(env).account for env in PROMOTION_PATH}
    roles = sorted(role_arn(config, env, naming.promotion_action_role_name(config.project, env))
                   for env in PROMOTION_PATH)
    (key,) = [k for k in resources(promotion, "AWS::KMS::Key")
              if "TargetAccountsDecrypt" in json.dumps(k["KeyPolicy"])]
    (bucket_policy,) = [p for p in resources(promotion, "AWS::S3::BucketPolicy")
                        if "TargetAccountsReadArtifacts" in json.dumps(p)]
    for document, actions in ((key["KeyPolicy"], ["kms:Decrypt", "kms:DescribeKey"]),
                              (bucket_policy["PolicyDocument"], ["s3:GetObject", "s3:GetObjectVersion"])):
        (statement,) = [s for s in document["Statement"] if s["Effect"] == "Allow"
                        and principal_accounts(s["Principal"]) - {config.registry.account}]
        assert principal_accounts(statement["Principal"]) == readers
        assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": roles}
        assert sorted(statement["Action"]) == actions
        assert not any(":role/" in json.dumps(s["Principal"]) for s in document["Statement"]), \
            "roles are named in conditions, never as principals: the policies must not need them to exist"


# -- notifications --------------------------------------------------------------------------------------------------


def test_a_failed_execution_of_any_promotion_pipeline_is_announced_on_the_failures_topic(promotion, config, promoted):
    (rule,) = resources(promotion, "AWS::Events::Rule",
                        EventPattern=Match.object_like({"source": ["aws.codepipeline"]}))
    assert rule["EventPattern"]["detail-type"] == ["CodePipeline Pipeline Execution State Change"]
    assert rule["EventPattern"]["detail"] == {
        "pipeline": sorted(naming.promotion_pipeline_name(config.project, u) for u in promoted), "state": ["FAILED"]}
    topics = promotion.find_resources("AWS::SNS::Topic")
    (target,) = rule["Targets"]
    topic = topics[logical_id(target["Arn"])]["Properties"]
    assert topic["TopicName"] == naming.promotion_topic_name(config.project, "failures")
    assert "Fn::GetAtt" in topic["KmsMasterKeyId"]
    (policy,) = resources(promotion, "AWS::SNS::TopicPolicy", Topics=[{"Ref": logical_id(target["Arn"])}])
    (publish,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert publish["Principal"] == {"Service": "events.amazonaws.com"}
    assert "aws:SourceArn" in publish["Condition"]["ArnEquals"]


# -- the target accounts --------------------------------------------------------------------------------------------


def roles_by_name(synthesized, env: str) -> dict[str, dict]:
    template = synthesized.template(env, "PromotionAccess")
    return {r["Properties"]["RoleName"]: r for r in template.find_resources("AWS::IAM::Role").values()}


def attached_statements(template, role: str) -> list[dict]:
    """The statements of every policy attached to the role with logical id ``role``, actions as lists."""
    statements = [s for p in resources(template, "AWS::IAM::Policy", Roles=[{"Ref": role}])
                  for s in p["PolicyDocument"]["Statement"]]
    return [{**s, "Action": [s["Action"]] if isinstance(s["Action"], str) else s["Action"]} for s in statements]


def role_statements(synthesized, env: str, role_name: str) -> list[dict]:
    template = synthesized.template(env, "PromotionAccess")
    (role_id,) = [k for k, r in template.find_resources("AWS::IAM::Role").items()
                  if r["Properties"]["RoleName"] == role_name]
    return [s for p in resources(template, "AWS::IAM::Policy", Roles=[{"Ref": role_id}])
            for s in p["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("env", PROMOTION_PATH)
def test_the_action_role_trusts_only_the_registrys_pipeline_roles(synthesized, config, promoted, env):
    role = roles_by_name(synthesized, env)[naming.promotion_action_role_name(config.project, env)]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert principal_accounts(trust["Principal"]) == {config.registry.account}
    assert not is_wildcard_principal(trust["Principal"])
    assert trust["Condition"] == {"ArnEquals": {"aws:PrincipalArn": sorted(
        role_arn(config, "registry", naming.promotion_pipeline_role_name(config.project, u)) for u in promoted)}}


@pytest.mark.parametrize("env", PROMOTION_PATH)
def test_the_deploy_role_is_cloudformations_and_passes_only_the_endpoint_role(synthesized, config, env):
    role = roles_by_name(synthesized, env)[naming.promotion_deploy_role_name(config.project, env)]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    statements = role_statements(synthesized, env, naming.promotion_deploy_role_name(config.project, env))
    passes = [s for s in statements if s["Action"] == "iam:PassRole"]
    (passed,) = passes
    assert json.dumps(passed["Resource"]).endswith(f':role/{naming.endpoint_role_name(config.project, env)}"]]}}')
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert not any(a.endswith("*") for a in actions)
    assert not any(a.startswith(("iam:Create", "iam:Put", "iam:Attach", "s3:", "cloudformation:")) for a in actions
                   if a != "iam:CreateServiceLinkedRole")


@pytest.mark.parametrize("env", PROMOTION_PATH)
def test_the_deploy_role_may_name_endpoint_configurations_where_it_creates_and_updates_endpoints(synthesized, config,
                                                                                                  env):
    """IAM authorizes CreateEndpoint and UpdateEndpoint on the endpoint and on the configuration it names."""
    statements = role_statements(synthesized, env, naming.promotion_deploy_role_name(config.project, env))

    def resources_of(action: str) -> str:
        return json.dumps([s["Resource"] for s in statements if action in ([s["Action"]] if isinstance(
            s["Action"], str) else s["Action"])])

    for action in ("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"):
        granted = resources_of(action)
        assert ":endpoint/" in granted and ":endpoint-config/*" in granted, (action, granted)


@pytest.mark.parametrize("env", PROMOTION_PATH)
def test_the_deploy_role_grants_on_all_resources_only_what_takes_no_resource(synthesized, config, env):
    """Auto scaling writes go to this account's scalable targets, alarm reads to target tracking's alarms."""
    statements = role_statements(synthesized, env, naming.promotion_deploy_role_name(config.project, env))
    unscoped = {a for s in statements if s["Resource"] == "*"
                for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert unscoped == {"application-autoscaling:DescribeScalableTargets",
                        "application-autoscaling:DescribeScalingPolicies",
                        "application-autoscaling:DescribeScalingActivities"}


def test_the_gate_role_lives_in_staging_only_and_invokes_its_endpoints_only(synthesized, config, promoted):
    gate_role = naming.promotion_gate_role_name(config.project, "staging")
    role = roles_by_name(synthesized, "staging")[gate_role]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert principal_accounts(trust["Principal"]) == {config.registry.account}
    assert trust["Condition"] == {"ArnEquals": {"aws:PrincipalArn": sorted(
        role_arn(config, "registry", naming.promotion_gate_build_role_name(config.project, u)) for u in promoted)}}
    (statement,) = role_statements(synthesized, "staging", gate_role)
    assert sorted(statement["Action"]) == ["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"]
    resources_ = json.dumps(statement["Resource"])
    staging = config.environment("staging")
    assert sorted(re.findall(rf":sagemaker:{staging.region}:{staging.account}:endpoint/([a-z0-9-]+)", resources_)) \
        == sorted(served["staging"].name for served in promoted.values())
    assert naming.promotion_gate_role_name(config.project, "prod") not in roles_by_name(synthesized, "prod")


# -- who follows, approves and rolls back -----------------------------------------------------------------------------


def _operator_role(promotion, config) -> tuple[str, dict]:
    roles = promotion.find_resources("AWS::IAM::Role", {"Properties": {
        "RoleName": naming.promotion_operator_role_name(config.project)}})
    [(logical, role)] = roles.items()
    return logical, role["Properties"]


def test_only_the_registry_account_and_configured_operators_may_assume_the_operator_role(promotion, config):
    _, role = _operator_role(promotion, config)
    statements = role["AssumeRolePolicyDocument"]["Statement"]
    assert not any(is_wildcard_principal(s["Principal"]) for s in statements)
    assert principal_accounts(statements) == {config.registry.account}


def test_the_operator_role_answers_only_the_approval_actions_of_the_promotion_pipelines(promotion, config, promoted):
    logical, _ = _operator_role(promotion, config)
    policies = resources(promotion, "AWS::IAM::Policy", Roles=[{"Ref": logical}])
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    approvals = [s for s in statements if s["Action"] == "codepipeline:PutApprovalResult"]
    [approval] = approvals
    resources_ = approval["Resource"] if isinstance(approval["Resource"], list) else [approval["Resource"]]
    rendered = json.dumps(resources_)
    for use_case in promoted:
        assert (f"{naming.promotion_pipeline_name(config.project, use_case)}/{naming.PROMOTION_STAGES[3]}/"
                f"{naming.PROMOTION_APPROVAL_ACTION}") in rendered
    assert "*" not in rendered.replace(":*", "")
    reads = [s for s in statements if "codepipeline:ListActionExecutions" in s["Action"]]
    assert reads and "codepipeline:RollbackStage" in reads[0]["Action"]


def test_configured_operators_are_trusted_by_account_or_arn():
    from aws_cdk.assertions import Template

    from cdk_constructs.promotion_operators import PromotionOperators, PromotionOperatorsProps

    stack = Stack(App(), "Operators", env=Environment(account="111111111111", region="eu-central-1"))
    key = kms.Key(stack, "Key")
    bucket = s3.Bucket(stack, "Bucket", encryption_key=key)
    PromotionOperators(stack, "Operators", props=PromotionOperatorsProps(
        project="modelwerk", use_cases=["pump-health"],
        operators=["444444444444", "arn:aws:iam::555555555555:role/release-managers"]),
        artifact_bucket=bucket, artifact_key=key)
    [role] = Template.from_stack(stack).find_resources("AWS::IAM::Role").values()
    trusted = json.dumps(role["Properties"]["AssumeRolePolicyDocument"])
    assert "444444444444:root" in trusted and "arn:aws:iam::555555555555:role/release-managers" in trusted
    assert "111111111111:root" in trusted


def test_each_use_cases_source_function_ships_its_own_templates_and_gate_cases(synthesized, promotion, config,
                                                                                promoted):
    """One folder (lambdas/promotion_source) bundled per use case: every asset holds its own use case's bundle."""
    keys = set()
    for use_case in promoted:
        (function,) = resources(promotion, "AWS::Lambda::Function",
                                FunctionName=naming.promotion_source_function_name(config.project, use_case))
        keys.add(function["Code"]["S3Key"])
        folder = asset_folder(synthesized, function["Code"]["S3Key"]) / "bundle"
        group = naming.model_package_group_name(config.project, use_case)
        for env in PROMOTION_PATH:
            template = (folder / "templates" / f"{env}.template.json").read_text(encoding="utf-8")
            assert f"model-package/{group}/" in template
        assert (folder / "gate" / "gate_cases.csv").read_bytes() == (
            config.use_case(use_case).folder / "gate_cases.csv").read_bytes()
    assert len(keys) == len(promoted)
