"""Batch scoring as a user drives it, on the demo's local mode: the inference pipeline started by `batch run` (the
version dev's endpoint serves) and by boto3 alone, the predictions read back through Athena (the CLI and
awswrangler), every row either scored or counted as failed.

The module deploys energy-forecast's approved version to dev's energy-forecast endpoint (the one the dev inference
pipeline takes its default version from) and deletes that endpoint again at the end.
"""

from __future__ import annotations

import time

import pytest

from local_cli import cli_json, run_cli
from modelwerk import naming

# In the group whose modules change what is served (it deploys to dev), which also balances the two local modes.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

USE_CASE = ENDPOINT = "energy-forecast"
PIPELINE = "modelwerk-dev-energy-forecast-inference"
TABLE = "modelwerk_dev_analytics.energy_forecast_predictions"


@pytest.fixture(scope="module")
def served(demo_ok, cli_env):
    version = cli_json("endpoints", "describe", ENDPOINT, "--env", "prod", env=cli_env)["version"]
    deployed = cli_json("deploy", "--use-case", USE_CASE, str(version), "--endpoint", ENDPOINT, env=cli_env)
    assert deployed["status"] == "InService"
    yield version
    run_cli("endpoints", "delete", ENDPOINT, env=cli_env, check=False)


@pytest.fixture(scope="module")
def scored(served, cli_env):
    return cli_json("batch", "run", "--use-case", USE_CASE, "--wait", env=cli_env)


def test_batch_run_scores_every_row_of_the_latest_snapshot_with_the_version_dev_serves(scored, served, cli_env):
    assert scored["status"] == "Succeeded", scored
    assert set(scored) >= {"execution_arn", "status", "rows_in", "rows_scored", "rows_failed", "output_table",
                           "seconds"}
    assert scored["rows_in"] > 0 and scored["rows_scored"] + scored["rows_failed"] == scored["rows_in"]
    assert scored["output_table"] == TABLE
    execution = scored["execution_arn"].rsplit("/", 1)[-1]
    counted = cli_json("data", "query", f"SELECT count(*) AS n, min(model_version) AS v, max(model_version) AS w "
                       f"FROM {TABLE} WHERE execution_id = '{execution}'", env=cli_env)
    assert counted["rows"] == [[scored["rows_scored"], int(served), int(served)]]


def test_the_inference_pipeline_started_by_boto3_alone_runs_and_awswrangler_reads_its_predictions(scored, local_mode):
    import awswrangler as wr
    import boto3

    sagemaker = boto3.client("sagemaker")
    arn = sagemaker.start_pipeline_execution(
        PipelineName=PIPELINE, PipelineParameters=[{"Name": "TriggeredBy", "Value": "person"}])["PipelineExecutionArn"]
    deadline = time.monotonic() + 600
    while (status := sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"]) in (
            "Executing", "Stopping"):
        assert time.monotonic() < deadline
        time.sleep(1)
    assert status == "Succeeded"
    steps = {s["StepName"]: s for s in sagemaker.list_pipeline_execution_steps(
        PipelineExecutionArn=arn)["PipelineExecutionSteps"]}
    assert steps["Transform"]["Metadata"]["TransformJob"]["Arn"].startswith("arn:aws:sagemaker:")
    job = steps["Transform"]["Metadata"]["TransformJob"]["Arn"].rsplit("/", 1)[-1]
    described = sagemaker.describe_transform_job(TransformJobName=job)
    assert described["TransformJobStatus"] == "Completed"
    assert described["DataProcessing"]["JoinSource"] == "Input"

    execution = arn.rsplit("/", 1)[-1]
    frame = wr.athena.read_sql_query(f"SELECT count(*) AS n FROM {TABLE.split('.')[1]} WHERE execution_id = "
                                     f"'{execution}'", database=TABLE.split(".")[0], ctas_approach=False,
                                     workgroup=naming.workgroup_name("modelwerk", "dev"))
    assert int(frame["n"][0]) == scored["rows_scored"]
