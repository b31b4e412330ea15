"""Promotion as a release engineer drives it, on the demo's state: the version retraining registered is refused until
approved, stops before prod without a person's approval, then goes through staging, the gate and the approval to
prod (blue/green); it cannot be rejected while prod serves it; the promotion module's own example (its docstring)
promotes it once more and rolls it back; a second rollback is refused; and a version with wrong predictions stops at
the gate.

The demo promoted energy-forecast's version 1 to prod and retraining registered version 2, which is where the
docstring's example starts ("after make demo"); here staging and prod already serve version 2 when it runs, so its
promotion deploys nothing and its rollback is the story's. The bad version is registered as the pipeline registers
one (same inference specification, metadata and metrics as version 2), with an artifact whose model predicts no
production at all: no training, and the lake stays the demo's. Each environment changes only where the story needs a
blue/green: staging twice (version 2, the bad version), prod twice (version 2, the rollback).
"""

from __future__ import annotations

import doctest
import io
import json
import tarfile

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
    """A version registered with boto3 in the registry account as the training pipeline registers one (version 2's
    inference specification, metadata and metrics), whose artifact's model predicts a constant; pending approval."""
    from modelwerk import naming, platform

    session = platform.session("registry")
    sagemaker, s3 = session.client("sagemaker"), session.client("s3")
    group = naming.model_package_group_name("modelwerk", USE_CASE)
    [summary] = [s for s in sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
                 if s["ModelPackageVersion"] == versions[1]]
    real = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    container = real["InferenceSpecification"]["Containers"][0]
    bucket, _, key = container["ModelDataUrl"].removeprefix("s3://").partition("/")
    bad_key = f"{key.rsplit('/', 1)[0]}/test-local-promotion-constant/model.tar.gz"
    artifact = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=bad_key, Body=_constant_model(artifact))

    created = sagemaker.create_model_package(
        ModelPackageGroupName=group, ModelPackageDescription=real["ModelPackageDescription"],
        InferenceSpecification={**real["InferenceSpecification"],
                                "Containers": [{**container, "ModelDataUrl": f"s3://{bucket}/{bad_key}"}]},
        CustomerMetadataProperties={k: v for k, v in real["CustomerMetadataProperties"].items()
                                    if k not in PROD_MARKS},
        ModelMetrics=real["ModelMetrics"], DriftCheckBaselines=real["DriftCheckBaselines"],
        ModelApprovalStatus="PendingManualApproval")
    return int(created["ModelPackageArn"].rsplit("/", 1)[-1])


def _an_unapproved_version_is_refused_in_one_sentence(cli_env, prod, retrained):
    refused = _promote(cli_env, str(retrained), "--to", "prod", "--approve")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr
    assert f"version {retrained} is PendingManualApproval" in refused.stderr
    assert f"modelwerk models approve --use-case {USE_CASE} {retrained}" in refused.stderr
    assert _serves("prod") == prod


def _without_approval_nothing_reaches_prod(cli_env, prod, retrained):
    cli_json("models", "approve", "--use-case", USE_CASE, str(retrained), "--reason", "retrained after drift",
             env=cli_env)
    stopped = _promote(cli_env, str(retrained), "--to", "prod")  # no --approve, no terminal to ask at
    assert stopped.returncode == 1, stopped.stderr
    promotion = json.loads(stopped.stdout)
    assert promotion["status"] == "Stopped"
    assert [(s["name"], s["status"]) for s in promotion["stages"]] == [
        ("source", "Succeeded"), ("deploy-staging", "Succeeded"), ("quality-gate", "Succeeded"),
        ("approval", "Rejected"), ("deploy-prod", "Skipped")]
    assert "blue/green" in promotion["stages"][1]["detail"]
    assert "--approve" in promotion["stages"][3]["detail"]
    assert _serves("staging") == retrained
    assert _serves("prod") == prod


def _an_approved_version_goes_through_the_gate_to_prod(cli_env, prod, retrained, tmp_path):
    result = _promote(cli_env, str(retrained), "--to", "prod", "--approve")
    assert result.returncode == 0, result.stderr
    promotion = json.loads(result.stdout)
    assert promotion["status"] == "Succeeded" and promotion["previous_version"] == prod
    assert [(s["name"], s["status"]) for s in promotion["stages"]] == [
        ("source", "Succeeded"), ("deploy-staging", "Succeeded"), ("quality-gate", "Succeeded"),
        ("approval", "Succeeded"), ("deploy-prod", "Succeeded")]
    assert "already serves" in promotion["stages"][1]["detail"]  # staging had it from the stopped promotion
    assert "data points as expected" in promotion["stages"][2]["detail"]
    assert "blue/green" in promotion["stages"][4]["detail"]
    gate = promotion["gate"]
    assert gate["passed"] and len(gate["cases"]) >= 5 and gate["failures"] == []
    assert gate["latency_ms"]["p95"] <= gate["budget_ms"]
    assert _serves("prod") == retrained

    from modelwerk import data

    requests = tmp_path / "requests.csv"
    data.generate(USE_CASE, rows=5, seed=8, out=requests)
    predictions = cli_json("predict", "--endpoint", ENDPOINT, "--env", "prod", str(requests), env=cli_env)
    assert len(predictions["predictions"]) == 5
    assert all(isinstance(value, float) for value in predictions["predictions"])


def _a_version_prod_serves_cannot_be_rejected(cli_env, retrained):
    refused = run_cli("models", "reject", "--use-case", USE_CASE, str(retrained), env=cli_env, check=False)
    assert refused.returncode == 2
    assert "roll it back first" in refused.stderr and "--rollback" in refused.stderr
    assert _approval(retrained) == "Approved"


def _the_docstring_example_promotes_again_and_rolls_back(prod, retrained):
    """modelwerk/promotion.py's example, executed as written: staging and prod serve version 2 already (nothing is
    deployed for the promotion), and its rollback is the blue/green that puts version 1 back."""
    import modelwerk
    from modelwerk import platform, promotion

    platform._resolve_cached.cache_clear()
    [example] = [test for test in doctest.DocTestFinder().find(promotion, extraglobs={"modelwerk": modelwerk})
                 if test.name == promotion.__name__]
    assert f'"{USE_CASE}", {retrained}' in example.docstring and f"version {prod} again" in example.docstring
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(example, out=report.write)
    assert runner.failures == 0 and runner.tries >= 4, report.getvalue()
    assert _serves("prod") == prod


def _the_rolled_back_version_may_be_rejected_and_there_is_nothing_earlier(cli_env, prod, retrained):
    rejected = cli_json("models", "reject", "--use-case", USE_CASE, str(retrained), "--reason", "rolled back",
                        env=cli_env)
    assert rejected["approval_status"] == "Rejected"
    nothing_earlier = run_cli("promote", "--use-case", USE_CASE, "--to", "prod", "--rollback", env=cli_env,
                              check=False)
    assert nothing_earlier.returncode == 2
    assert "no earlier version to roll back to" in nothing_earlier.stderr
    assert _serves("prod") == prod


def _wrong_predictions_stop_at_the_gate_and_promote_nothing(cli_env, prod, bad):
    cli_json("models", "approve", "--use-case", USE_CASE, str(bad), env=cli_env)
    failed = _promote(cli_env, str(bad), "--to", "prod", "--approve")
    assert failed.returncode == 1, failed.stderr
    promotion = json.loads(failed.stdout)
    assert promotion["status"] == "Failed"
    assert [(s["name"], s["status"]) for s in promotion["stages"]] == [
        ("source", "Succeeded"), ("deploy-staging", "Succeeded"), ("quality-gate", "Failed"),
        ("approval", "Skipped"), ("deploy-prod", "Skipped")], promotion["stages"]
    detail = promotion["stages"][2]["detail"]
    assert "case " in detail and "expected" in detail and "±" in detail
    assert promotion["gate"]["passed"] is False
    assert promotion["gate"]["failures"], promotion["gate"]
    assert _serves("staging") == bad  # the gate checks what staging serves: the bad version
    assert _serves("prod") == prod
    assert _approval(bad) == "Approved"


def test_promotion_from_refusal_to_rollback_and_a_gate_that_stops_a_bad_version(versions, bad_version, cli_env,
                                                                                 tmp_path):
    """One story, in order (each step builds on the registry and endpoints the one before left)."""
    prod, retrained = versions
    _an_unapproved_version_is_refused_in_one_sentence(cli_env, prod, retrained)
    _without_approval_nothing_reaches_prod(cli_env, prod, retrained)
    _an_approved_version_goes_through_the_gate_to_prod(cli_env, prod, retrained, tmp_path)
    _a_version_prod_serves_cannot_be_rejected(cli_env, retrained)
    _the_docstring_example_promotes_again_and_rolls_back(prod, retrained)
    _the_rolled_back_version_may_be_rejected_and_there_is_nothing_earlier(cli_env, prod, retrained)
    _wrong_predictions_stop_at_the_gate_and_promote_nothing(cli_env, prod, bad_version)
