"""Serving infrastructure: the serving image (registry account) and each environment's serving stack.

The image: an ECR repository only the workload accounts may pull from, built by CodeBuild from exactly the build
context's files, tagged with their content hash, which the training stack and the multi-model endpoints name too.
The serving stack: a secure serving bucket and key published the way the library resolves them, the endpoints'
least-privilege execution role, and the rollback alarms of every configured endpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest
from aws_cdk.assertions import Match
from moto import mock_aws

from cdk_constructs import serving_context
from cdk_constructs.serving_context import context_files, serving_image_tag
from cdk_constructs.serving_image import PULL_ACTIONS, PUSH_ACTIONS
from cdk_constructs.permissions import SAGEMAKER_VPC_DESCRIBE
from modelwerk import naming

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_IN_ARN = re.compile(r":iam::(\d{12}):root")


def resources(template, resource_type: str) -> dict:
    return template.find_resources(resource_type)


def one(template, resource_type: str) -> dict:
    (resource,) = resources(template, resource_type).values()
    return resource


def statements_of(template, role_prefix: str) -> list[dict]:
    (policy,) = [p for lid, p in resources(template, "AWS::IAM::Policy").items()
                 if lid.startswith(f"{role_prefix}DefaultPolicy")]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def actions(statement: dict) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


def flat(value) -> str:
    return json.dumps(value, sort_keys=True)


def built_tag(registry) -> str:
    """The tag the registry's build pushes; the other stacks must name the same one."""
    project = one(registry, "AWS::CodeBuild::Project")["Properties"]
    return next(v["Value"] for v in project["Environment"]["EnvironmentVariables"] if v["Name"] == "IMAGE_TAG")


# -- the serving image ------------------------------------------------------------------------------------------------


def test_the_repository_scans_on_push_keeps_tags_immutable_is_kms_encrypted_expires_old_images_and_is_kept(
        registry, config):
    repository = one(registry, "AWS::ECR::Repository")
    properties = repository["Properties"]
    assert properties["RepositoryName"] == naming.serving_repository_name(config.project) == "modelwerk/serving"
    assert properties["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert properties["ImageTagMutability"] == "IMMUTABLE"
    assert properties["EncryptionConfiguration"]["EncryptionType"] == "KMS"
    assert "Fn::GetAtt" in properties["EncryptionConfiguration"]["KmsKey"]
    (rule,) = json.loads(properties["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 50}
    assert rule["action"] == {"type": "expire"}
    assert repository["DeletionPolicy"] == "Retain" and repository["UpdateReplacePolicy"] == "Retain"


def test_only_the_configured_workload_accounts_may_pull_and_nothing_else(registry, config):
    policy = one(registry, "AWS::ECR::Repository")["Properties"]["RepositoryPolicyText"]
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(actions(statement)) == sorted(PULL_ACTIONS)
    assert set(ACCOUNT_IN_ARN.findall(flat(statement["Principal"]))) == {w.account for w in config.workloads}
    assert len(statement["Principal"]["AWS"]) == len(config.workloads)
    assert "*" not in flat(statement["Principal"])


def test_codebuild_builds_privileged_encrypted_and_logs_to_an_encrypted_log_group(registry, config):
    project = one(registry, "AWS::CodeBuild::Project")["Properties"]
    assert project["Name"] == naming.serving_build_project_name(config.project)
    assert project["Environment"]["PrivilegedMode"] is True
    keys = resources(registry, "AWS::KMS::Key")
    key_id = project["EncryptionKey"]["Fn::GetAtt"][0]
    assert key_id in keys and keys[key_id]["Properties"]["EnableKeyRotation"] is True
    group_id = project["LogsConfig"]["CloudWatchLogs"]["GroupName"]["Ref"]
    log_group = resources(registry, "AWS::Logs::LogGroup")[group_id]["Properties"]
    assert log_group["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert project["Source"]["Type"] == "S3"
    assert built_tag(registry) == serving_image_tag(ROOT)  # the content hash of this checkout's build context
    spec = json.loads(project["Source"]["BuildSpec"])
    build = "\n".join(spec["phases"]["build"]["commands"])
    assert 'docker build --file containers/serving/Dockerfile --tag "$REPOSITORY_URI:$IMAGE_TAG" .' in build
    assert 'docker push "$REPOSITORY_URI:$IMAGE_TAG"' in build
    assert "describe-images" in build  # an existing (immutable) tag is not pushed again


def test_the_build_role_may_push_to_this_repository_only(registry):
    statements = statements_of(registry, "ServingImageBuildRole")
    repository = next(iter(resources(registry, "AWS::ECR::Repository")))
    pushes = [s for s in statements if any(a in PUSH_ACTIONS for a in actions(s))]
    assert len(pushes) == 1 and sorted(actions(pushes[0])) == sorted(PUSH_ACTIONS)
    assert pushes[0]["Resource"] == {"Fn::GetAtt": [repository, "Arn"]}
    unscoped = {a for s in statements if s["Resource"] == "*" for a in actions(s)}
    assert unscoped == {"ecr:GetAuthorizationToken"}
    reads = next(s for s in statements if "s3:GetObject" in actions(s))
    assert flat(reads["Resource"]).endswith('.zip"]]}')  # the one source object, not the asset bucket


def test_a_changed_build_context_starts_a_build_of_its_tag(registry):
    (start,) = resources(registry, "Custom::AWS").values()
    tag = built_tag(registry)
    for phase in ("Create", "Update"):
        call = json.loads("".join(p if isinstance(p, str) else "<project>" for p in start["Properties"][phase]
                                  ["Fn::Join"][1]))
        assert (call["service"], call["action"]) == ("CodeBuild", "startBuild")
        assert call["parameters"]["projectName"] == "<project>"
        assert call["parameters"]["environmentVariablesOverride"] == [
            {"name": "IMAGE_TAG", "value": tag, "type": "PLAINTEXT"}]
        assert call["physicalResourceId"] == {"id": tag}
    assert "Delete" not in start["Properties"]
    statements = [s for lid, p in resources(registry, "AWS::IAM::Policy").items() if "StartBuild" in lid
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    starts = [s for s in statements if "codebuild:StartBuild" in actions(s)]
    assert len(starts) == 1
    project_arn = ':codebuild:eu-central-1:111111111111:project/modelwerk-serving-image"]]}'
    assert flat(starts[0]["Resource"]).endswith(project_arn)


def test_the_image_uri_is_published_and_names_the_tag_of_this_checkout(registry, config):
    registry_env = config.registry
    registry.has_resource_properties("AWS::SSM::Parameter", {
        "Name": "/modelwerk/registry/serving/image-uri",
        "Value": naming.serving_image_uri(registry_env.account, registry_env.region, config.project,
                                          built_tag(registry)),
    })


def test_the_build_asset_holds_exactly_the_build_context(synthesized, registry):
    project = one(registry, "AWS::CodeBuild::Project")["Properties"]
    (asset_hash,) = re.findall(r"([0-9a-f]{64})\.zip", flat(project["Source"]["Location"]))
    staged = synthesized.outdir / f"asset.{asset_hash}"
    assert staged.is_dir(), staged
    found = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    expected = [name for name, _ in context_files(ROOT)]
    assert found == expected
    assert "containers/serving/Dockerfile" in found and "frameworks.txt" in found
    assert any(name.startswith("modelwerk/core/") for name in found)
    assert not any("__pycache__" in name for name in found)


def test_the_training_stack_registers_versions_with_the_image_the_registry_builds(synthesized, registry, config):
    registry_env = config.registry
    image = naming.serving_image_uri(registry_env.account, registry_env.region, config.project, built_tag(registry))
    training = synthesized.template("dev", "Training")
    for pipeline in resources(training, "AWS::SageMaker::Pipeline").values():
        body = json.loads(pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0])
        (gate,) = [s for s in body["Steps"] if s["Type"] == "Condition"]
        register = gate["Arguments"]["IfSteps"][0]["Arguments"]
        assert register["InferenceSpecification"]["Containers"][0]["Image"] == image


# -- the build context and its tag (no synth) -------------------------------------------------------------------------


def _checkout(root: Path, dockerfile: str = "FROM python:3.11-slim\n") -> Path:
    (root / "containers" / "serving" / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "containers" / "serving" / "Dockerfile").write_text(dockerfile)
    (root / "containers" / "serving" / "pkg" / "app.py").write_text("APP = 1\n")
    (root / "containers" / "serving" / "pkg" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (root / "modelwerk" / "core").mkdir(parents=True)
    (root / "modelwerk" / "core" / "capture.py").write_text("CAPTURE = 1\n")
    (root / "frameworks.txt").write_text("scikit-learn==1.9.1\n")
    return root


@pytest.mark.parametrize("change", [
    pytest.param(lambda r: (r / "containers/serving/pkg/app.py").write_text("APP = 2\n"), id="server-code"),
    pytest.param(lambda r: (r / "modelwerk/core/capture.py").write_text("CAPTURE = 2\n"), id="core"),
    pytest.param(lambda r: (r / "frameworks.txt").write_text("scikit-learn==1.9.2\n"), id="pins"),
    pytest.param(lambda r: (r / "containers/serving/pkg/app.py").rename(r / "containers/serving/pkg/main.py"),
                 id="renamed-file"),
])
def test_the_tag_changes_with_any_file_of_the_build_context(tmp_path, change):
    root = _checkout(tmp_path)
    before = serving_image_tag(root)
    change(root)
    assert serving_image_tag(root) != before


def test_the_tag_is_stable_and_ignores_byte_code_and_files_outside_the_context(tmp_path):
    root = _checkout(tmp_path)
    tag = serving_image_tag(root)
    assert re.fullmatch(r"src-[0-9a-f]{12}", tag)
    (root / "containers/serving/pkg/__pycache__/other.cpython-311.pyc").write_bytes(b"\1")
    (root / "modelwerk" / "settings.py").write_text("OUTSIDE = 1\n")
    (root / "README.md").write_text("outside\n")
    assert serving_image_tag(root) == tag
    staged = serving_context.stage(root, tmp_path / "staged")
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == [
        "containers/serving/Dockerfile", "containers/serving/pkg/app.py", "frameworks.txt",
        "modelwerk/core/capture.py"]


def test_a_checkout_without_the_dockerfile_or_the_pins_is_refused(tmp_path):
    root = _checkout(tmp_path)
    (root / "frameworks.txt").unlink()
    with pytest.raises(FileNotFoundError, match="frameworks.txt"):
        serving_image_tag(root)
    (root / "frameworks.txt").write_text("scikit-learn==1.9.1\n")
    (root / "containers/serving/Dockerfile").unlink()
    with pytest.raises(FileNotFoundError, match="Dockerfile"):
        serving_image_tag(root)


# -- the serving stack of every workload environment ------------------------------------------------------------------


@pytest.fixture(scope="module", params=["dev", "staging", "prod"])
def serving(request, synthesized):
    return request.param, synthesized.template(request.param, "Serving")


def test_the_serving_bucket_is_named_encrypted_versioned_private_logged_tls_only_and_kept(serving, config):
    env, template = serving
    environment = config.environment(env)
    name = naming.bucket_name(config.project, env, "serving", environment.account, environment.region)
    buckets = {b["Properties"]["BucketName"]: (lid, b) for lid, b in resources(template, "AWS::S3::Bucket").items()}
    lid, bucket = buckets[name]
    properties = bucket["Properties"]
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_id = encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0]
    assert resources(template, "AWS::KMS::Key")[key_id]["Properties"]["EnableKeyRotation"] is True
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    log_bucket = buckets[naming.bucket_name(config.project, env, "serving-logs", environment.account,
                                            environment.region)][0]
    assert properties["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": log_bucket}
    assert bucket["DeletionPolicy"] == "Retain"
    rules = {r["Id"]: r for r in properties["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-capture"]["Prefix"] == f"{naming.capture_prefix()}/"
    assert rules["expire-batch-capture"]["Prefix"] == f"{naming.BATCH_CAPTURE_ROOT}/"
    assert rules["expire-batch-work"]["Prefix"] == f"{naming.BATCH_ROOT}/"
    assert rules["expire-batch-work"]["ExpirationInDays"] == rules["expire-capture"]["ExpirationInDays"]
    policies = [p for p in resources(template, "AWS::S3::BucketPolicy").values()
                if p["Properties"]["Bucket"] == {"Ref": lid}]
    (policy,) = policies
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_serving_bucket_and_key_are_published_like_the_data_lake_buckets(serving, synthesized):
    env, template = serving
    data_lake = synthesized.template(env, "DataLake")
    lake = {p["Properties"]["Name"] for p in resources(data_lake, "AWS::SSM::Parameter").values()}
    assert f"/modelwerk/{env}/buckets/raw" in lake and f"/modelwerk/{env}/kms/data-key-arn" in lake
    published = {p["Properties"]["Name"]: p["Properties"]["Value"]
                 for p in resources(template, "AWS::SSM::Parameter").values()}
    assert f"/modelwerk/{env}/buckets/serving" in published
    assert "Fn::GetAtt" in published[f"/modelwerk/{env}/kms/serving-key-arn"]
    assert "Fn::GetAtt" in published[f"/modelwerk/{env}/serving/endpoint-role-arn"]


def test_the_library_resolves_the_published_serving_bucket(synthesized, monkeypatch):
    """What the dev serving stack publishes, read back through ``Platform`` from SSM (moto)."""
    from modelwerk import platform

    template = synthesized.template("dev", "Serving")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "MODELWERK_ENV",
                 "MODELWERK_LOCAL_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELWERK_LOCAL", "0")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-central-1"}.items():
        monkeypatch.setenv(name, value)
    platform._resolve_cached.cache_clear()
    try:
        with mock_aws():
            ssm = boto3.client("ssm")
            for parameter in resources(template, "AWS::SSM::Parameter").values():
                value = parameter["Properties"]["Value"]
                ssm.put_parameter(Name=parameter["Properties"]["Name"], Type="String",
                                  Value=value if isinstance(value, str) else "resolved-at-deploy")
            assert platform.resolve("dev").bucket("serving") == "modelwerk-dev-serving-123456789012-eu-central-1"
    finally:
        platform._resolve_cached.cache_clear()


def test_the_endpoint_role_is_assumed_by_sagemaker_only_and_named_for_the_endpoint_stacks(serving, config):
    env, template = serving
    (role,) = [r for r in resources(template, "AWS::IAM::Role").values()
               if r["Properties"].get("RoleName") == naming.endpoint_role_name(config.project, env)]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}


def test_the_endpoint_role_is_least_privilege(serving, config):
    env, template = serving
    statements = statements_of(template, "EndpointRole")
    text = flat(statements)
    assert '"s3:*"' not in text and '"sagemaker:*"' not in text and '"Action": "*"' not in text
    assert not any(a.startswith("s3:Delete") for s in statements for a in actions(s))
    unscoped = {a for s in statements if s["Resource"] == "*" for a in actions(s)}
    assert unscoped == {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", *SAGEMAKER_VPC_DESCRIBE}
    metrics = next(s for s in statements if "cloudwatch:PutMetricData" in actions(s))
    assert metrics["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}

    (artifacts,) = [s for s in statements if "model-artifacts" in flat(s["Resource"])]
    assert sorted(actions(artifacts)) == ["s3:GetObject", "s3:GetObjectVersion"]
    assert flat(artifacts["Resource"]).endswith('/pipelines/*"]]}')
    (models,) = [s for s in statements if flat(s["Resource"]).endswith('/models/*"]]}')]
    assert sorted(actions(models)) == ["s3:AbortMultipartUpload", "s3:GetObject", "s3:GetObjectVersion",
                                       "s3:PutObject"]
    (capture,) = [s for s in statements if flat(s["Resource"]).endswith('/capture/*"]]}')]
    assert sorted(actions(capture)) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    registry_key = next(s for s in statements if "kms:ResourceAliases" in flat(s.get("Condition")))
    assert registry_key["Condition"]["ForAnyValue:StringEquals"]["kms:ResourceAliases"] == [
        f"alias/{config.project}/registry/model-artifacts"]
    pulls = next(s for s in statements if "ecr:BatchGetImage" in actions(s))
    repository = f':ecr:eu-central-1:{config.registry.account}:repository/modelwerk/serving"]]}}'
    assert flat(pulls["Resource"]).endswith(repository)
    logs = next(s for s in statements if "logs:PutLogEvents" in actions(s))
    assert "/aws/sagemaker/Endpoints/*" in flat(logs["Resource"])


def test_every_configured_endpoint_has_its_rollback_alarms(serving, config):
    env, template = serving
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm")
              .values()}
    endpoints = config.environment(env).endpoints
    assert set(alarms) == {naming.endpoint_alarm_name(e, k) for e in endpoints for k in ("5xx", "latency")}
    for name, endpoint in endpoints.items():
        dimensions = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}]
        errors = alarms[f"{name}-invocation-5xx"]
        assert {k: errors[k] for k in ("Namespace", "MetricName", "Statistic", "Period", "Threshold",
                                       "ComparisonOperator", "Dimensions", "TreatMissingData")} == {
            "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors", "Statistic": "Sum", "Period": 60,
            "Threshold": endpoint.max_5xx_errors, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Dimensions": dimensions, "TreatMissingData": "notBreaching"}
        latency = alarms[f"{name}-model-latency"]
        assert {k: latency[k] for k in ("Namespace", "MetricName", "ExtendedStatistic", "Period", "Threshold",
                                        "ComparisonOperator", "Dimensions", "TreatMissingData")} == {
            "Namespace": "AWS/SageMaker", "MetricName": "ModelLatency", "ExtendedStatistic": "p99", "Period": 60,
            "Threshold": endpoint.max_latency_ms * 1000, "ComparisonOperator": "GreaterThanThreshold",
            "Dimensions": dimensions, "TreatMissingData": "notBreaching"}
        assert errors["EvaluationPeriods"] == latency["EvaluationPeriods"] == 1


def test_the_network_the_endpoints_attach_to_is_published(serving):
    env, template = serving
    template.has_resource_properties("AWS::SSM::Parameter", {
        "Name": f"/modelwerk/{env}/network/subnet-ids", "Type": "StringList",
        "Value": {"Fn::Join": [",", Match.any_value()]}})
    template.has_resource_properties("AWS::SSM::Parameter", {
        "Name": f"/modelwerk/{env}/network/security-group-id",
        "Value": {"Fn::ImportValue": Match.string_like_regexp("WorkloadSecurityGroup")}})
