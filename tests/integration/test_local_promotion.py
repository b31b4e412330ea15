"""Promotion as a release engineer drives it, on the demo's state, through the registry account's promotion pipeline
(the deployed CodePipeline, run by the embedded AWS): a version approved with boto3 alone reaches prod once the
pipeline's approval is answered with PutApprovalResult; an unapproved version is refused in one sentence; a version
with wrong predictions stops at the gate with its failing data points named and prod keeps its version; a rejected
approval stops a good one; the promotion module's own example (its docstring) promotes again and rolls back through
the pipeline's stage rollback; the pipeline's history lists every one of them.

The demo promoted energy-forecast's version 1 to prod and retraining registered version 2. The bad version is
registered as the pipeline registers one (version 2's inference specification, metadata and metrics) with an artifact
whose model predicts no production at all; the rejected one is version 2's artifact registered again.
"""

from __future__ import annotations

import doctest
import io
import json
import tarfile
import time

import joblib
import pandas as pd
import pytest

from local_cli import cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

USE_CASE = "energy-forecast"
ENDPOINT = "energy-forecast"  # the staging and prod endpoints cdk.json configures for it
#: What the promotion module's docstring example expects after the demo: prod serves 1, retraining registered 2.
DEMO_PROD, DEMO_RETRAINED = 1, 2
#: Marks of a version's way through prod, which a freshly registered version does not carry.
PROD_MARKS = ("promoted_to_prod_at", "rolled_back_from_prod_at")


def _promote(cli_env, *args: str):
    return run_cli("promote", "--use-case", USE_CASE, *args, "--json", env=cli_env, check=False)


def _serves(env: str) -> int:
    """The version the environment's endpoint serves (DescribeEndpoint and its model, through the library)."""
    from modelwerk import endpoints

    return endpoints.describe(ENDPOINT, env=env).version


def _approval(version: int) -> str:
    from modelwerk import models

    return models.version(USE_CASE, version).approval_status


@pytest.fixture(scope="module")
def versions(demo_ok) -> tuple[int, int]:
    """(the version prod serves, the one retraining registered after it): the demo's 1 and 2."""
    from modelwerk import models

    prod = _serves("prod")
    listed = {v.version: v.approval_status for v in models.versions(USE_CASE)}
    assert (prod, listed.get(DEMO_RETRAINED)) == (DEMO_PROD, "PendingManualApproval"), \
        f"the demo's state is not there: prod serves {prod}; versions {listed}"
    return DEMO_PROD, DEMO_RETRAINED


def _constant_model(artifact: bytes) -> bytes:
    """``artifact`` (a model.tar.gz) with its model replaced by one that predicts 0.0 MWh whatever the weather."""
    from sklearn.dummy import DummyRegressor

    with tarfile.open(fileobj=io.BytesIO(artifact)) as tar:
        metadata = tar.extractfile("metadata.json").read()
    columns = [field["name"] for field in json.loads(metadata)["input_schema"]]
    model = DummyRegressor(strategy="constant", constant=0.0).fit(pd.DataFrame([[0.0] * len(columns)],
                                                                               columns=columns), [0.0])
    pickled = io.BytesIO()
    joblib.dump(model, pickled)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, body in (("metadata.json", metadata), ("model.joblib", pickled.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


@pytest.fixture(scope="module")
def bad_version(versions) -> int:
    """A version whose model predicts a constant, registered with boto3 in the registry account; pending approval."""
    return int(_registered_copy(versions, _constant_model).rsplit("/", 1)[-1])


def _registered_copy(versions, artifact=None) -> str:
    """A version registered with boto3 as the training pipeline registers one (version 2's inference specification,
    metadata and metrics), with ``artifact`` (a transform of version 2's model.tar.gz) or the same artifact."""
    from modelwerk import naming, platform

    session = platform.session("registry")
    sagemaker, s3 = session.client("sagemaker"), session.client("s3")
    group = naming.model_package_group_name("modelwerk", USE_CASE)
    [summary] = [s for s in sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
                 if s["ModelPackageVersion"] == versions[1]]
    real = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    container = dict(real["InferenceSpecification"]["Containers"][0])
    if artifact is not None:
        bucket, _, key = container["ModelDataUrl"].removeprefix("s3://").partition("/")
        bad_key = f"{key.rsplit('/', 1)[0]}/test-local-promotion-constant/model.tar.gz"
        s3.put_object(Bucket=bucket, Key=bad_key, Body=artifact(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        container["ModelDataUrl"] = f"s3://{bucket}/{bad_key}"
    created = sagemaker.create_model_package(
        ModelPackageGroupName=group, ModelPackageDescription=real["ModelPackageDescription"],
        InferenceSpecification={**real["InferenceSpecification"], "Containers": [container]},
        CustomerMetadataProperties={k: v for k, v in real["CustomerMetadataProperties"].items()
                                    if k not in PROD_MARKS},
        ModelMetrics=real["ModelMetrics"], DriftCheckBaselines=real["DriftCheckBaselines"],
        ModelApprovalStatus="PendingManualApproval")
    return created["ModelPackageArn"]


def _codepipeline():
    from modelwerk import naming, platform

    return platform.session("registry").client("codepipeline"), naming.promotion_pipeline_name("modelwerk", USE_CASE)


def _wait(predicate, timeout: float = 600.0, what: str = "the pipeline"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1.0)


def _execution_of(arn: str) -> str | None:
    codepipeline, name = _codepipeline()
    for summary in codepipeline.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"]:
        execution = codepipeline.get_pipeline_execution(pipelineName=name,
                                                        pipelineExecutionId=summary["pipelineExecutionId"])
        variables = {v["name"]: v["resolvedValue"] for v in execution["pipelineExecution"]["variables"]}
        if variables.get("ModelPackageArn") == arn:
            return summary["pipelineExecutionId"]
    return None


def _waiting_approval(execution: str) -> str | None:
    """The approval token when ``execution`` waits at the manual approval (as the console shows it)."""
    codepipeline, name = _codepipeline()
    stage = next(s for s in codepipeline.get_pipeline_state(name=name)["stageStates"]
                 if s["stageName"] == "ManualApproval")
    action = stage["actionStates"][0].get("latestExecution") or {}
    if (stage.get("latestExecution") or {}).get("pipelineExecutionId") == execution and \
            action.get("status") == "InProgress":
        return action.get("token")
    return None


def _finished(execution: str) -> str | None:
    codepipeline, name = _codepipeline()
    status = codepipeline.get_pipeline_execution(pipelineName=name, pipelineExecutionId=execution)[
        "pipelineExecution"]["status"]
    return None if status == "InProgress" else status


def _approval_through_boto3_alone_reaches_prod(versions):
    from modelwerk import models, platform

    prod, retrained = versions
    arn = models.version(USE_CASE, retrained).arn
    registry = platform.session("registry")
    registry.client("sagemaker").update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved",
                                                      ApprovalDescription="retrained after drift")
    execution = _wait(lambda: _execution_of(arn), 120, "the approval to start the pipeline")
    token = _wait(lambda: _waiting_approval(execution), what="the gate to pass")
    assert _serves("staging") == retrained and _serves("prod") == prod
    codepipeline, name = _codepipeline()
    codepipeline.put_approval_result(pipelineName=name, stageName="ManualApproval", actionName="Approve",
                                     token=token, result={"status": "Approved", "summary": "gate passed; go"})
    assert _wait(lambda: _finished(execution)) == "Succeeded"
    assert _serves("prod") == retrained
    runtime = platform.session("prod").client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=_a_request_row())
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200 and answer["Body"].read()
    actions = codepipeline.list_action_executions(pipelineName=name, filter={"pipelineExecutionId": execution})
    assert sorted(a["actionName"] for a in actions["actionExecutionDetails"]) == [
        "Approve", "Deploy", "Deploy", "Gate", "PackageVersion", "RecordInRegistry"]
    assert models.prod_version(USE_CASE).version == retrained
    return execution


def _a_request_row() -> str:
    """One CSV row of the version's inputs (every feature 1.0)."""
    from modelwerk import models

    return ",".join("1.0" for _ in models.version(USE_CASE, "latest").input_schema)


def _an_unapproved_version_is_refused_in_one_sentence(cli_env, bad):
    refused = _promote(cli_env, str(bad), "--to", "prod")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr
    assert f"version {bad} is PendingManualApproval" in refused.stderr
    assert f"modelwerk models approve --use-case {USE_CASE} {bad}" in refused.stderr


def _wrong_predictions_stop_at_the_gate_and_promote_nothing(cli_env, prod, bad):
    failed = _promote(cli_env, str(bad), "--to", "prod", "--approve", "--reason", "a constant model")
    assert failed.returncode == 1, failed.stderr
    promotion = json.loads(failed.stdout)
    assert promotion["status"] == "Failed"
    assert [(s["name"], s["status"]) for s in promotion["stages"]] == [
        ("source", "Succeeded"), ("deploy-staging", "Succeeded"), ("quality-gate", "Failed"),
        ("approval", "Skipped"), ("deploy-prod", "Skipped")], promotion["stages"]
    detail = promotion["stages"][2]["detail"]
    assert "case " in detail and "expected" in detail and "±" in detail
    assert promotion["gate"]["passed"] is False and promotion["gate"]["failures"]
    assert _serves("staging") == bad  # the gate checks what staging serves: the bad version
    assert _serves("prod") == prod
    return promotion["execution_id"]


def _a_rejected_approval_stops_a_good_version(cli_env, prod, arn):
    version = int(arn.rsplit("/", 1)[-1])
    cli_json("models", "approve", "--use-case", USE_CASE, str(version), env=cli_env)
    execution = _wait(lambda: _execution_of(arn), 120, "the approval to start the pipeline")
    token = _wait(lambda: _waiting_approval(execution), what="the gate to pass")
    codepipeline, name = _codepipeline()
    codepipeline.put_approval_result(pipelineName=name, stageName="ManualApproval", actionName="Approve",
                                     token=token, result={"status": "Rejected", "summary": "not this week"})
    assert _wait(lambda: _finished(execution)) == "Failed"
    summary = codepipeline.get_pipeline_execution(pipelineName=name, pipelineExecutionId=execution)[
        "pipelineExecution"]["statusSummary"]
    assert "not this week" in summary
    assert _serves("prod") == prod
    return execution


def _the_docstring_example_promotes_again_and_rolls_back(prod, retrained):
    """modelwerk/promotion.py's example, executed as written: version 2 goes to prod through the pipeline again
    (approved anew), and the rollback is the pipeline's rollback of its prod stage, which puts version 1 back."""
    import modelwerk
    from modelwerk import platform, promotion

    platform._resolve_cached.cache_clear()
    [example] = [test for test in doctest.DocTestFinder().find(promotion, extraglobs={"modelwerk": modelwerk})
                 if test.name == promotion.__name__]
    assert f'"{USE_CASE}", {retrained}' in example.docstring and f"version {prod} again" in example.docstring
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(example, out=report.write)
    assert runner.failures == 0 and runner.tries >= 3, report.getvalue()
    assert _serves("prod") == prod


def _the_history_lists_every_promotion(executions):
    codepipeline, name = _codepipeline()
    summaries = codepipeline.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"]
    by_id = {s["pipelineExecutionId"]: s for s in summaries}
    assert {by_id[e]["status"] for e in executions} == {"Succeeded", "Failed"}
    assert any(s["executionType"] == "ROLLBACK" and s["status"] == "Succeeded" for s in summaries)
    for execution in executions:
        actions = codepipeline.list_action_executions(pipelineName=name, filter={"pipelineExecutionId": execution})
        assert actions["actionExecutionDetails"], execution


def test_promotion_through_the_pipeline_from_boto3_approval_to_rollback(versions, bad_version, cli_env):
    """One story, in order (each step builds on the registry and endpoints the one before left)."""
    prod, retrained = versions
    approved = _approval_through_boto3_alone_reaches_prod(versions)
    _an_unapproved_version_is_refused_in_one_sentence(cli_env, bad_version)
    gated = _wrong_predictions_stop_at_the_gate_and_promote_nothing(cli_env, retrained, bad_version)
    rejected = _a_rejected_approval_stops_a_good_version(cli_env, retrained, _registered_copy(versions))
    rolled_back = run_cli("promote", "--use-case", USE_CASE, "--to", "prod", "--rollback", "--json", env=cli_env)
    assert json.loads(rolled_back.stdout)["status"] == "Succeeded"
    assert _serves("prod") == prod
    _the_docstring_example_promotes_again_and_rolls_back(prod, retrained)
    _the_history_lists_every_promotion([approved, gated, rejected])
