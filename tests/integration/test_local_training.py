"""Training as a user drives it, on the demo's local mode: the deployed pipeline started by boto3 alone, followed
through SageMaker's API and the CLI (`pipeline run/list/describe`, `models show`, `runs list`), and the registry's
state change event on approval.

The module's own execution runs on the snapshot the demo's prod version was trained on, so its cached steps reuse
the demo's results (SageMaker's step caching) and only Preprocess, the quality gate and Register run again. It
registers one version in the registry account; other modules' versions may be there too.
"""

from __future__ import annotations

import json
import time

import pytest

from local_cli import ROOT, cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode-reads")]

USE_CASE = "pump-health"
PIPELINE = "modelwerk-dev-pump-health-training"
GROUP = "modelwerk-pump-health"
STATE_CHANGE = "SageMaker Model Package State Change"
#: The module's rule and queue in the registry account (removed again at the end).
WATCHER = "test-local-training-state-changes"
CACHED_STEPS = {"Train", "Evaluate", "Baseline"}
INPUT_SCHEMA = ["site", "vibration_rms", "bearing_temp_c", "flow_m3h", "pressure_bar", "speed_rpm", "power_kw"]


def _wait(sagemaker, arn: str, timeout: float = 900) -> dict:
    """DescribePipelineExecution once the execution has ended (boto3 has no waiter for executions)."""
    deadline = time.monotonic() + timeout
    while True:
        described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
        if described["PipelineExecutionStatus"] not in ("Executing", "Stopping"):
            return described
        assert time.monotonic() < deadline, f"{arn} is still {described['PipelineExecutionStatus']} after {timeout} s"
        time.sleep(1)


def _steps(sagemaker, arn: str) -> list[dict]:
    pages = sagemaker.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn)
    return [step for page in pages for step in page["PipelineExecutionSteps"]]


def _versions(registry) -> set[str]:
    pages = registry.get_paginator("list_model_packages").paginate(ModelPackageGroupName=GROUP)
    return {p["ModelPackageArn"] for page in pages for p in page["ModelPackageSummaryList"]}


@pytest.fixture(scope="module")
def sessions(demo_ok, local_mode):
    """boto3 sessions in dev's and the registry's accounts, through the profiles `local up` wrote."""
    from modelwerk import platform

    return {"dev": platform.session("dev"), "registry": platform.session("registry"),
            "accounts": local_mode["accounts"]}


@pytest.fixture(scope="module")
def snapshot(sessions) -> str:
    """The snapshot the demo's prod version was trained on (its registry metadata)."""
    from modelwerk import models

    prod = models.prod_version(USE_CASE)
    assert prod is not None, "the demo promoted no pump-health version to prod"
    return prod.lineage["data_snapshot_id"]


@pytest.fixture(scope="module")
def execution(sessions, snapshot):
    """The deployed pipeline started by boto3 alone, and what SageMaker's API says of it once it ended."""
    sagemaker, registry = sessions["dev"].client("sagemaker"), sessions["registry"].client("sagemaker")
    before = _versions(registry)
    arn = sagemaker.start_pipeline_execution(
        PipelineName=PIPELINE, PipelineExecutionDisplayName="test-local-training",
        PipelineParameters=[{"Name": "SnapshotId", "Value": snapshot}])["PipelineExecutionArn"]
    first = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
    last = _wait(sagemaker, arn)
    steps = _steps(sagemaker, arn)
    package = next((s["Metadata"]["RegisterModel"]["Arn"] for s in steps if "RegisterModel" in s.get("Metadata", {})),
                   None)
    return {"arn": arn, "first": first, "last": last, "steps": {s["StepName"]: s for s in steps},
            "order": [s["StepName"] for s in steps], "package": package, "before": before}


def test_an_execution_started_by_boto3_runs_and_succeeds(execution, sessions):
    assert execution["first"]["PipelineExecutionStatus"] == "Executing"
    assert execution["last"]["PipelineExecutionStatus"] == "Succeeded", execution["last"].get("FailureReason")
    assert execution["last"]["PipelineExecutionDisplayName"] == "test-local-training"
    pipeline = sessions["dev"].client("sagemaker").describe_pipeline(PipelineName=PIPELINE)
    assert execution["arn"].startswith(pipeline["PipelineArn"] + "/execution/")


def test_the_registered_version_is_in_the_registry_account_with_its_lineage(execution, sessions, snapshot):
    package_arn = execution["package"]
    assert package_arn and package_arn.split(":")[4] == sessions["accounts"]["registry"]
    registry = sessions["registry"].client("sagemaker")
    assert package_arn in _versions(registry) - execution["before"]
    package = registry.describe_model_package(ModelPackageName=package_arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["CustomerMetadataProperties"]["pipeline_execution_arn"] == execution["arn"]
    assert package["CustomerMetadataProperties"]["snapshot_id"] == snapshot


def test_the_steps_are_listed_with_their_jobs_and_the_conditions_outcome(execution):
    steps = execution["steps"]
    assert set(steps) == {"Preprocess", "Train", "Evaluate", "Baseline", "QualityGate", "Register"}
    assert all(s["StepStatus"] == "Succeeded" for s in steps.values())
    assert execution["order"][0] == "Register" and execution["order"][-1] == "Preprocess"  # latest started first
    assert steps["Preprocess"]["Metadata"]["ProcessingJob"]["Arn"].split(":")[5].startswith("processing-job/")
    assert steps["QualityGate"]["Metadata"] == {"Condition": {"Outcome": "True"}}


def test_steps_whose_inputs_did_not_change_reuse_an_earlier_executions_result(execution, sessions):
    steps = execution["steps"]
    assert "CacheHitResult" not in steps["Preprocess"]  # no cache config: it runs every time
    sources = {steps[name]["CacheHitResult"]["SourcePipelineExecutionArn"] for name in CACHED_STEPS}
    sagemaker = sessions["dev"].client("sagemaker")
    for source in sources:
        assert source != execution["arn"]
        assert sagemaker.describe_pipeline_execution(PipelineExecutionArn=source)["PipelineExecutionStatus"] == \
            "Succeeded"


def test_the_executed_definition_is_the_one_the_dev_stage_deploys(execution, sessions):
    """Same steps, parameters, conditions and code assets: the template's Fn::Sub body with its asset locations."""
    template_file = next((ROOT / "cdk.out" / "assembly-Dev").glob("DevTraining*.template.json"))
    template = json.loads(template_file.read_text())["Resources"]
    pipeline = next(r for r in template.values() if r["Type"] == "AWS::SageMaker::Pipeline"
                    and r["Properties"]["PipelineName"] == PIPELINE)
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    dev = sessions["dev"]
    exports = {e["Name"]: e["Value"] for page in dev.client("cloudformation").get_paginator("list_exports").paginate()
               for e in page["Exports"]}
    (domain,) = [r["Properties"]["DomainName"] for r in template.values() if r["Type"] == "AWS::CodeArtifact::Domain"]
    for name, value in variables.items():
        if isinstance(value, dict) and "Fn::ImportValue" in value:  # the network's ids
            value = exports[value["Fn::ImportValue"]]
        elif isinstance(value, dict):  # the package mirror's repository, its ARN as CodeArtifact forms it
            repository = template[value["Fn::GetAtt"][0]]["Properties"]["RepositoryName"]
            value = f"arn:aws:codeartifact:{dev.region_name}:{sessions['accounts']['dev']}:repository/{domain}/" \
                    f"{repository}"
        body = body.replace("${" + name + "}", value)
    deployed = json.loads(body)
    sagemaker = dev.client("sagemaker")
    executed = sagemaker.describe_pipeline_definition_for_execution(PipelineExecutionArn=execution["arn"])
    assert json.loads(executed["PipelineDefinition"]) == deployed
    code = deployed["Steps"][1]["Arguments"]["HyperParameters"]["sagemaker_submit_directory"]
    bucket, _, key = code.strip('"')[5:].partition("/")
    assert dev.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 1000  # the published asset


def test_the_cli_describes_and_lists_the_execution_boto3_started(execution, snapshot, cli_env):
    described = cli_json("pipeline", "describe", "--use-case", USE_CASE, execution["arn"].rsplit("/", 1)[-1],
                         env=cli_env)
    assert (described["execution_arn"], described["status"], described["model_package_arn"]) == (
        execution["arn"], "Succeeded", execution["package"])
    assert described["parameters"]["SnapshotId"] == snapshot
    assert {s["name"] for s in described["steps"] if s["cache_hit"]} == CACHED_STEPS
    listed = cli_json("pipeline", "list", "--use-case", USE_CASE, env=cli_env)["executions"]
    (entry,) = [e for e in listed if e["execution_arn"] == execution["arn"]]
    assert (entry["status"], entry["model_package_arn"]) == ("Succeeded", execution["package"])


def test_models_show_carries_code_data_model_metrics_and_baseline(execution, snapshot, cli_env):
    version = execution["package"].rsplit("/", 1)[-1]
    shown = cli_json("models", "show", "--use-case", USE_CASE, version, env=cli_env)
    assert set(shown) == {"version", "arn", "approval_status", "metrics", "lineage", "input_schema"}
    assert shown["arn"] == execution["package"]
    assert set(shown["lineage"]) == {"code_commit", "data_snapshot_id", "pipeline_execution_arn", "baseline_uri"}
    assert shown["lineage"]["data_snapshot_id"] == snapshot
    assert shown["lineage"]["pipeline_execution_arn"] == execution["arn"]
    assert shown["lineage"]["baseline_uri"].endswith("baseline.json")
    assert [c["name"] for c in shown["input_schema"]] == INPUT_SCHEMA
    assert shown["metrics"]["f1"] >= 0.3


def test_runs_list_has_the_demos_tracked_execution_with_its_metrics(sessions, cli_env):
    from modelwerk import models

    trained_by = models.prod_version(USE_CASE).lineage["pipeline_execution_arn"]
    runs = cli_json("runs", "list", "--use-case", USE_CASE, env=cli_env)["runs"]
    (run,) = [r for r in runs if r["execution_arn"] == trained_by]
    assert run["status"] == "Succeeded"
    assert 0 <= run["metrics"]["f1"] <= 1


def test_a_cli_run_below_the_quality_threshold_fails_and_registers_nothing(execution, sessions, snapshot, cli_env):
    registry = sessions["registry"].client("sagemaker")
    before = _versions(registry)
    result = run_cli("pipeline", "run", "--use-case", USE_CASE, "--wait", "--param", f"SnapshotId={snapshot}",
                     "--param", "QualityThreshold=0.99", "--json", env=cli_env, check=False)
    assert result.returncode == 1, result.stderr
    failed = json.loads(result.stdout)
    assert set(failed) == {"execution_arn", "status", "steps", "model_package_arn"}
    assert failed["status"] == "Failed" and failed["model_package_arn"] is None
    statuses = {s["name"]: s["status"] for s in failed["steps"]}
    assert statuses["Train"] == "Succeeded" and statuses["QualityGateFailed"] == "Failed"
    assert "Register" not in statuses
    assert "fails the quality gate (>= 0.99)" in result.stderr and "Traceback" not in result.stderr
    assert _versions(registry) == before


@pytest.mark.parametrize(("param", "message"), [
    pytest.param("Threshold=1", "no parameter", id="unknown-parameter"),
    pytest.param("QualityThreshold=high", "QualityThreshold takes a float", id="bad-value"),
    pytest.param("SnapshotId=0000000000000000", "has no snapshot '0000000000000000'", id="unknown-snapshot"),
])
def test_bad_parameters_are_refused_in_one_sentence_before_anything_starts(sessions, cli_env, param, message):
    sagemaker = sessions["dev"].client("sagemaker")
    before = sagemaker.list_pipeline_executions(PipelineName=PIPELINE, MaxResults=100)["PipelineExecutionSummaries"]
    result = run_cli("pipeline", "run", "--use-case", USE_CASE, "--param", param, "--json", env=cli_env, check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    after = sagemaker.list_pipeline_executions(PipelineName=PIPELINE, MaxResults=100)["PipelineExecutionSummaries"]
    assert after == before


@pytest.fixture
def state_changes(sessions):
    """An EventBridge rule on the registry account's default bus that sends the group's state changes to SQS."""
    sqs, events = sessions["registry"].client("sqs"), sessions["registry"].client("events")
    url = sqs.create_queue(QueueName=WATCHER)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=WATCHER, EventPattern=json.dumps({
        "source": ["aws.sagemaker"], "detail-type": [STATE_CHANGE], "detail": {"ModelPackageGroupName": [GROUP]}}))
    events.put_targets(Rule=WATCHER, Targets=[{"Id": "queue", "Arn": arn}])
    yield sqs, url
    events.remove_targets(Rule=WATCHER, Ids=["queue"])
    events.delete_rule(Name=WATCHER)
    sqs.delete_queue(QueueUrl=url)


def _received(sqs, url: str, package_arn: str, timeout: float = 30) -> list[dict]:
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while not found and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get(
                "Messages", []):
            event = json.loads(message["Body"])
            if event["resources"] == [package_arn]:
                found.append(event)
    return found


def test_approving_the_version_emits_the_registrys_state_change_event(execution, sessions, state_changes, cli_env):
    version = execution["package"].rsplit("/", 1)[-1]
    approved = cli_json("models", "approve", "--use-case", USE_CASE, version, "--reason", "gate passed", env=cli_env)
    assert approved["approval_status"] == "Approved"
    (event,) = _received(*state_changes, execution["package"])
    assert (event["source"], event["detail-type"]) == ("aws.sagemaker", STATE_CHANGE)
    assert event["detail"]["ModelApprovalStatus"] == "Approved"
    assert event["detail"]["ModelPackageGroupName"] == GROUP
    assert event["detail"]["ModelPackageVersion"] == int(version)
