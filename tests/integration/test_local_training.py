"""Training as a user drives it locally: `pipeline run` on the deployed definition, `runs list`, `models ...`.

One embedded AWS for the module, brought up through the CLI; data generated, ingested and prepared first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest

from local_cli import ROOT, cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]


@pytest.fixture(scope="module")
def snapshots(local_mode, cli_env, tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    found = {}
    for use_case, rows in (("pump-health", 40000), ("energy-forecast", 6000)):
        path = folder / f"{use_case}.csv"
        cli_json("data", "generate", "--use-case", use_case, "--rows", str(rows), "--seed", "3", "--out", str(path),
                 env=cli_env)
        cli_json("data", "ingest", "--use-case", use_case, str(path), env=cli_env)
        found[use_case] = cli_json("data", "prepare", "--use-case", use_case, env=cli_env)["snapshot_id"]
    return found


@pytest.fixture(scope="module")
def pump_run(snapshots, cli_env):
    return cli_json("pipeline", "run", "--use-case", "pump-health", "--wait", env=cli_env)


def test_pipeline_run_prints_the_execution_with_exactly_its_keys(pump_run):
    assert set(pump_run) == {"execution_arn", "status", "steps", "model_package_arn"}
    assert pump_run["status"] == "Succeeded"
    assert [s["name"] for s in pump_run["steps"]] == ["Preprocess", "Train", "Evaluate", "Baseline", "QualityGate",
                                                      "Register", "QualityGateFailed"]
    assert all(set(s) == {"name", "status", "seconds"} for s in pump_run["steps"])
    assert pump_run["model_package_arn"].startswith("arn:aws:sagemaker:eu-central-1:111111111111:model-package/"
                                                    "modelwerk-pump-health/")


def cli_env_account(cli_env) -> str:
    return cli_json("local", "status", env=cli_env)["accounts"]["dev"]


def test_the_executed_definition_is_the_one_the_dev_stage_deploys(pump_run, cli_env):
    """Same steps, parameters, conditions and code assets: the template's Fn::Sub body with its asset locations."""
    template_file = next((ROOT / "cdk.out" / "assembly-Dev").glob("DevTraining*.template.json"))
    template = json.loads(template_file.read_text())["Resources"]
    pipeline = next(r for r in template.values() if r["Type"] == "AWS::SageMaker::Pipeline"
                    and r["Properties"]["PipelineName"].endswith("pump-health-training"))
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    exports = {e["Name"]: e["Value"] for e in boto3.client("cloudformation").list_exports()["Exports"]}
    (domain,) = [r["Properties"]["DomainName"] for r in template.values() if r["Type"] == "AWS::CodeArtifact::Domain"]
    for name, value in variables.items():
        if isinstance(value, dict) and "Fn::ImportValue" in value:  # the network's ids
            value = exports[value["Fn::ImportValue"]]
        elif isinstance(value, dict):  # the package mirror's repository, its ARN as CodeArtifact forms it
            repository = template[value["Fn::GetAtt"][0]]["Properties"]["RepositoryName"]
            value = f"arn:aws:codeartifact:eu-central-1:{cli_env_account(cli_env)}:repository/{domain}/{repository}"
        body = body.replace("${" + name + "}", value)
    deployed = json.loads(body)

    execution_id = pump_run["execution_arn"].rsplit("/", 1)[-1]
    record = Path(cli_env["MODELWERK_STATE_DIR"]) / "runs" / "modelwerk-dev-pump-health-training" / execution_id
    executed = json.loads((record / "definition.json").read_text())
    assert executed == deployed
    described = boto3.client("sagemaker").describe_pipeline(PipelineName="modelwerk-dev-pump-health-training")
    assert json.loads(described["PipelineDefinition"]) == deployed
    code = deployed["Steps"][1]["Arguments"]["HyperParameters"]["sagemaker_submit_directory"]
    bucket, _, key = code[5:].partition("/")
    assert boto3.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 1000  # the published asset


def test_the_version_carries_code_data_model_metrics_and_baseline(pump_run, snapshots, cli_env):
    version = pump_run["model_package_arn"].rsplit("/", 1)[-1]
    shown = cli_json("models", "show", "--use-case", "pump-health", version, env=cli_env)
    assert set(shown) == {"version", "arn", "approval_status", "metrics", "lineage", "input_schema"}
    assert shown["approval_status"] == "PendingManualApproval"
    assert set(shown["lineage"]) == {"code_commit", "data_snapshot_id", "pipeline_execution_arn", "baseline_uri"}
    assert shown["lineage"]["data_snapshot_id"] == snapshots["pump-health"]  # "latest", resolved
    assert shown["lineage"]["pipeline_execution_arn"] == pump_run["execution_arn"]
    assert shown["lineage"]["baseline_uri"].endswith("baseline.json")
    assert [c["name"] for c in shown["input_schema"]] == ["site", "vibration_rms", "bearing_temp_c", "flow_m3h",
                                                          "pressure_bar", "speed_rpm", "power_kw"]
    assert shown["metrics"]["f1"] >= 0.3


def test_runs_list_has_the_execution_with_its_metrics(pump_run, cli_env):
    runs = cli_json("runs", "list", "--use-case", "pump-health", env=cli_env)["runs"]
    (run,) = [r for r in runs if r["execution_arn"] == pump_run["execution_arn"]]
    assert run["status"] == "Succeeded" and run["model_package_arn"] == pump_run["model_package_arn"]
    assert 0 <= run["metrics"]["f1"] <= 1


def test_approving_emits_the_state_change_event(pump_run, cli_env):
    version = pump_run["model_package_arn"].rsplit("/", 1)[-1]
    approved = cli_json("models", "approve", "--use-case", "pump-health", version, "--reason", "gate passed",
                        env=cli_env)
    assert approved["approval_status"] == "Approved"
    events = Path(cli_env["MODELWERK_STATE_DIR"]) / "local" / "events.jsonl"
    changes = [json.loads(line) for line in events.read_text().splitlines()
               if "Model Package State Change" in line]
    assert changes[-1]["detail"]["ModelApprovalStatus"] == "Approved"
    assert changes[-1]["resources"] == [pump_run["model_package_arn"]]


def test_a_metric_below_the_threshold_fails_and_registers_nothing(pump_run, cli_env):
    before = cli_json("models", "list", "--use-case", "pump-health", env=cli_env)
    result = run_cli("pipeline", "run", "--use-case", "pump-health", "--wait", "--param", "QualityThreshold=0.99",
                     "--json", env=cli_env, check=False)
    assert result.returncode == 1
    failed = json.loads(result.stdout)
    assert failed["status"] == "Failed" and failed["model_package_arn"] is None
    statuses = {s["name"]: s["status"] for s in failed["steps"]}
    assert statuses["Train"] == "Succeeded" and statuses["QualityGateFailed"] == "Failed"
    assert "fails the quality gate (>= 0.99)" in result.stderr and "Traceback" not in result.stderr
    assert cli_json("models", "list", "--use-case", "pump-health", env=cli_env) == before
    cached = cli_json("pipeline", "describe", "--use-case", "pump-health", failed["execution_arn"], env=cli_env)
    assert {s["name"] for s in cached["steps"] if s["cache_hit"]} >= {"Train", "Evaluate", "Baseline"}


@pytest.mark.parametrize(("param", "message"), [
    ("Threshold=1", "no parameter Threshold"),
    ("QualityThreshold=high", "QualityThreshold takes a float"),
    ("SnapshotId=0000000000000000", "has no snapshot '0000000000000000'"),
])
def test_bad_parameters_are_refused_before_anything_starts(pump_run, cli_env, param, message):
    before = cli_json("pipeline", "list", "--use-case", "pump-health", env=cli_env)["executions"]
    result = run_cli("pipeline", "run", "--use-case", "pump-health", "--param", param, "--json", env=cli_env,
                     check=False)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli_json("pipeline", "list", "--use-case", "pump-health", env=cli_env)["executions"] == before


def test_a_regression_use_case_runs_without_waiting_and_finishes(snapshots, cli_env):
    started = cli_json("pipeline", "run", "--use-case", "energy-forecast", env=cli_env)
    assert started["status"] == "Executing"
    deadline = time.monotonic() + 300
    described = started
    while described["status"] == "Executing" and time.monotonic() < deadline:
        time.sleep(2)
        described = cli_json("pipeline", "describe", "--use-case", "energy-forecast", started["execution_arn"],
                             env=cli_env)
    assert described["status"] in ("Succeeded", "Failed"), described
    assert described["steps"][0]["status"] == "Succeeded"
    listed = cli_json("pipeline", "list", "--use-case", "energy-forecast", env=cli_env)["executions"]
    assert listed[0]["execution_arn"] == started["execution_arn"]
