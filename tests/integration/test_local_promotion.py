"""Promotion as a release engineer drives it locally: refused until approved, staging and its quality gate, the
approval, prod blue/green, rollback, and a version with wrong predictions stopped at the gate.

One embedded AWS for the module; energy-forecast trains twice on the same data (two good versions), then once on data
whose production is zeroed (a version that predicts far too little, registered with the quality threshold lifted).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from local_cli import cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

USE_CASE = "energy-forecast"
ENDPOINT = "energy-forecast"  # the staging and prod endpoints cdk.json configures for it


def _train(cli_env, *parameters: str) -> int:
    run = cli_json("pipeline", "run", "--use-case", USE_CASE, "--wait", *parameters, env=cli_env)
    assert run["status"] == "Succeeded", run
    return int(run["model_package_arn"].rsplit("/", 1)[-1])


@pytest.fixture(scope="module")
def good_versions(local_mode, cli_env, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", "5000", "--seed", "3", "--out", str(path),
             env=cli_env)
    cli_json("data", "ingest", "--use-case", USE_CASE, str(path), env=cli_env)
    cli_json("data", "prepare", "--use-case", USE_CASE, env=cli_env)
    return [_train(cli_env), _train(cli_env)]


def _promote(cli_env, *args: str):
    return run_cli("promote", "--use-case", USE_CASE, *args, "--json", env=cli_env, check=False)


def _prod_version(cli_env) -> int:
    return cli_json("endpoints", "describe", ENDPOINT, "--env", "prod", env=cli_env)["version"]


def _an_unapproved_version_is_refused_before_anything_is_deployed(good_versions, cli_env):
    refused = _promote(cli_env, str(good_versions[0]), "--to", "prod", "--approve")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert f"version {good_versions[0]} is PendingManualApproval" in refused.stderr
    assert "modelwerk models approve --use-case energy-forecast" in refused.stderr
    assert "Traceback" not in refused.stderr
    listed = run_cli("endpoints", "list", "--env", "staging", "--json", env=cli_env, check=False)
    assert listed.returncode == 2
    assert "staging environment is not deployed in it; promoting a version to it deploys it" in listed.stderr


def _an_approved_version_goes_through_staging_the_gate_and_approval_to_prod(good_versions, cli_env, tmp_path):
    first = good_versions[0]
    cli_json("models", "approve", "--use-case", USE_CASE, str(first), env=cli_env)
    result = _promote(cli_env, str(first), "--to", "prod", "--approve")
    assert result.returncode == 0, result.stderr
    promotion = json.loads(result.stdout)
    assert promotion["status"] == "Succeeded"
    assert [(s["name"], s["status"]) for s in promotion["stages"]] == [
        ("source", "Succeeded"), ("deploy-staging", "Succeeded"), ("quality-gate", "Succeeded"),
        ("approval", "Succeeded"), ("deploy-prod", "Succeeded")]
    gate = promotion["gate"]
    assert gate["passed"] and len(gate["cases"]) >= 5 and gate["failures"] == []
    assert gate["latency_ms"]["p95"] <= gate["budget_ms"]
    assert "data points as expected" in promotion["stages"][2]["detail"]

    for env in ("staging", "prod"):
        described = cli_json("endpoints", "describe", ENDPOINT, "--env", env, env=cli_env)
        assert (described["status"], described["version"]) == ("InService", first)
    requests = tmp_path / "requests.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", "5", "--seed", "8", "--out", str(requests),
             env=cli_env)
    predictions = cli_json("predict", "--endpoint", ENDPOINT, "--env", "prod", str(requests), env=cli_env)
    assert len(predictions["predictions"]) == 5
    assert all(isinstance(value, float) for value in predictions["predictions"])
    assert cli_json("models", "show", "--use-case", USE_CASE, str(first), env=cli_env)["approval_status"] == "Approved"


def _without_approval_nothing_reaches_prod(good_versions, cli_env):
    second = good_versions[1]
    cli_json("models", "approve", "--use-case", USE_CASE, str(second), env=cli_env)
    stopped = _promote(cli_env, str(second), "--to", "prod")  # no --approve, no terminal to ask at
    assert stopped.returncode == 1
    promotion = json.loads(stopped.stdout)
    assert promotion["status"] == "Stopped"
    assert [s["status"] for s in promotion["stages"]] == ["Succeeded", "Succeeded", "Succeeded", "Rejected",
                                                         "Skipped"]
    assert "--approve" in promotion["stages"][3]["detail"]
    assert _prod_version(cli_env) == good_versions[0]
    assert cli_json("endpoints", "describe", ENDPOINT, "--env", "staging", env=cli_env)["version"] == second


def _a_promoted_version_cannot_be_rejected_until_it_is_rolled_back(good_versions, cli_env):
    first, second = good_versions
    promoted = cli_json("promote", "--use-case", USE_CASE, str(second), "--to", "prod", "--approve", env=cli_env)
    assert promoted["status"] == "Succeeded" and promoted["previous_version"] == first
    assert "already serves" in promoted["stages"][1]["detail"]  # staging had it from the stopped promotion
    assert "blue/green" in promoted["stages"][4]["detail"]
    assert _prod_version(cli_env) == second

    refused = run_cli("models", "reject", "--use-case", USE_CASE, str(second), env=cli_env, check=False)
    assert refused.returncode == 2
    assert "roll it back first" in refused.stderr and "--rollback" in refused.stderr

    rolled = cli_json("promote", "--use-case", USE_CASE, "--to", "prod", "--rollback", env=cli_env)
    assert rolled["status"] == "Succeeded"
    assert rolled["version"] == first and rolled["previous_version"] == second
    assert rolled["stages"][0]["detail"] == f"prod serves version {first} again (was version {second})"
    assert _prod_version(cli_env) == first
    rejected = cli_json("models", "reject", "--use-case", USE_CASE, str(second), "--reason", "rolled back",
                        env=cli_env)
    assert rejected["approval_status"] == "Rejected"

    nothing_earlier = run_cli("promote", "--use-case", USE_CASE, "--to", "prod", "--rollback", env=cli_env,
                              check=False)
    assert nothing_earlier.returncode == 2
    assert "no earlier version to roll back to" in nothing_earlier.stderr


def _wrong_predictions_stop_at_the_gate_and_promote_nothing(good_versions, cli_env, tmp_path):
    zeroed = tmp_path / "zeroed.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", "15000", "--seed", "21", "--out", str(zeroed),
             env=cli_env)
    frame = pd.read_csv(zeroed)
    frame["production_mwh"] = 0.0
    frame.to_csv(zeroed, index=False)
    cli_json("data", "ingest", "--use-case", USE_CASE, str(zeroed), env=cli_env)
    cli_json("data", "prepare", "--use-case", USE_CASE, env=cli_env)
    bad = _train(cli_env, "--param", "QualityThreshold=-1000")
    cli_json("models", "approve", "--use-case", USE_CASE, str(bad), env=cli_env)

    failed = _promote(cli_env, str(bad), "--to", "prod", "--approve")
    assert failed.returncode == 1
    promotion = json.loads(failed.stdout)
    assert promotion["status"] == "Failed"
    assert [s["status"] for s in promotion["stages"]] == ["Succeeded", "Succeeded", "Failed", "Skipped", "Skipped"], \
        promotion["stages"]
    detail = promotion["stages"][2]["detail"]
    assert "case " in detail and "expected" in detail and "±" in detail
    assert promotion["gate"]["passed"] is False
    assert _prod_version(cli_env) == good_versions[0]
    shown = cli_json("models", "show", "--use-case", USE_CASE, str(bad), env=cli_env)
    assert shown["approval_status"] == "Approved"


def test_promotion_from_refusal_to_rollback_and_a_gate_that_stops_a_bad_version(good_versions, cli_env, tmp_path):
    """One story, in order (each step builds on the registry and endpoints the one before left)."""
    _an_unapproved_version_is_refused_before_anything_is_deployed(good_versions, cli_env)
    _an_approved_version_goes_through_staging_the_gate_and_approval_to_prod(good_versions, cli_env, tmp_path)
    _without_approval_nothing_reaches_prod(good_versions, cli_env)
    _a_promoted_version_cannot_be_rejected_until_it_is_rolled_back(good_versions, cli_env)
    _wrong_predictions_stop_at_the_gate_and_promote_nothing(good_versions, cli_env, tmp_path)
