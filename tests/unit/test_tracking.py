"""Experiment tracking against a real MLflow store in a temporary records folder: one run per execution, found again
by its ARN, compared with ``runs()``, listed by the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from modelwerk import settings, tracking
from modelwerk.errors import ConfigurationError, NotFoundError, ValidationError

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "arn:aws:sagemaker:eu-central-1:123456789012:pipeline/modelwerk-pump-health"


def execution(execution_id: str, **changes) -> dict:
    """An execution record as the pipeline executors write it."""
    record = {
        "use_case": "pump-health",
        "execution_arn": f"{PIPELINE}/execution/{execution_id}",
        "execution_id": execution_id,
        "status": "Succeeded",
        "started_at": "2026-11-02T09:00:00+00:00",
        "ended_at": "2026-11-02T09:04:10+00:00",
        "parameters": {"MaxDepth": 6, "MinF1": 0.7, "InstanceType": "ml.m5.large"},
        "steps": [{"name": "Preprocess", "status": "Succeeded", "seconds": 12.5},
                  {"name": "Train", "status": "Succeeded", "seconds": 61.0},
                  {"name": "Evaluate", "status": "Succeeded", "seconds": 8.25}],
        "metrics": {"f1": 0.83, "roc_auc": 0.91},
        "model_package_arn": "arn:aws:sagemaker:eu-central-1:111111111111:model-package/modelwerk-pump-health/3",
        "git_commit": "846008f0c0ffee",
        "snapshot_id": "20261102T085500Z",
        "failure_reason": None,
    }
    record.update(changes)
    return record


SUCCEEDED = execution("a1b2c3d4e5f6")
FAILED = execution(
    "f6e5d4c3b2a1",
    status="Failed",
    started_at="2026-11-03T10:00:00+00:00",
    ended_at="2026-11-03T10:01:30+00:00",
    steps=[{"name": "Preprocess", "status": "Succeeded", "seconds": 11.0},
           {"name": "Train", "status": "Failed", "seconds": 79.0}],
    metrics={"f1": None, "roc_auc": None},
    model_package_arn=None,
    failure_reason="Step Train failed: AlgorithmError: the label column is constant",
)


def isolate(monkeypatch: pytest.MonkeyPatch, state_dir: Path) -> None:
    """Records in ``state_dir``, no tracking server, no local mode, no AWS account within reach."""
    monkeypatch.setenv("MODELWERK_STATE_DIR", str(state_dir))
    monkeypatch.setenv("MODELWERK_LOCAL", "0")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    kept = ("AWS_EC2_METADATA_DISABLED", "AWS_CA_BUNDLE")
    aws = [k for k in os.environ if k.startswith("AWS_") and k not in kept]
    for name in ("MLFLOW_TRACKING_URI", "MODELWERK_ENV", *aws):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(state_dir / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(state_dir / "no-aws-credentials"))


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating one costs a second or so): both executions logged, with artifacts."""
    state_dir = tmp_path_factory.mktemp("records")
    outputs = tmp_path_factory.mktemp("outputs")
    (outputs / "evaluation").mkdir()
    (outputs / "evaluation" / "evaluation.json").write_text(json.dumps(
        {"metrics": {"f1": {"value": 0.83}, "roc_auc": {"value": 0.91}}, "task": "classification",
         "label": "failure_within_7d", "rows": 1200}))
    (outputs / "evaluation" / "plots").mkdir()
    (outputs / "evaluation" / "plots" / "roc.csv").write_text("fpr,tpr\n0,0\n1,1\n")
    (outputs / "baseline.json").write_text("{}")
    with pytest.MonkeyPatch.context() as patch:
        isolate(patch, state_dir)
        run_ids = {
            "succeeded": tracking.log_execution(SUCCEEDED, artifacts={"evaluation": outputs / "evaluation",
                                                                      "drift/baseline": outputs / "baseline.json"}),
            "failed": tracking.log_execution(FAILED),
        }
        uri = tracking.tracking_uri()
    return {"state_dir": state_dir, "uri": uri, "run_ids": run_ids}


# -- where runs go ----------------------------------------------------------------------------------------------------
def test_local_store_is_sqlite_in_the_records_folder_outside_what_local_down_wipes(tmp_path):
    from modelwerk.local import DEPENDENT_RECORDS

    uri = tracking.tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    assert tracking.local_store() == tmp_path / "mlflow"
    assert not any(record.split("/")[0] == "mlflow" for record in DEPENDENT_RECORDS)


def test_mlflow_tracking_uri_wins(monkeypatch):
    arn = "arn:aws:sagemaker:eu-central-1:111111111111:mlflow-tracking-server/modelwerk-experiments"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", arn)
    assert tracking.tracking_uri() == arn


def test_a_tracking_server_arn_is_served_by_the_sagemaker_plugin_and_the_global_uri_is_put_back(monkeypatch):
    """The plugin signs for MLflow's global tracking URI, so it is the server's ARN during a call, and only then."""
    import mlflow

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    arn = "arn:aws:sagemaker:eu-central-1:111111111111:mlflow-tracking-server/modelwerk-experiments"
    before = mlflow.get_tracking_uri()
    with tracking._client(arn) as client:  # builds the store; no request is sent
        assert type(client._tracking_client.store).__name__ == "MlflowSageMakerStore"
        assert mlflow.get_tracking_uri() == arn
    assert mlflow.get_tracking_uri() == before
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_without_state_dir_the_store_is_in_the_checkout(monkeypatch):
    monkeypatch.delenv("MODELWERK_STATE_DIR")
    assert tracking.local_store(ROOT) == ROOT / ".modelwerk" / "mlflow"


# -- logging ----------------------------------------------------------------------------------------------------------
def test_runs_compares_both_executions_newest_first(store):
    frame = tracking.runs("pump-health", tracking_uri=store["uri"])
    assert list(frame.columns[:len(tracking.COLUMNS)]) == list(tracking.COLUMNS)
    assert list(frame["execution_id"]) == ["f6e5d4c3b2a1", "a1b2c3d4e5f6"]
    assert list(frame["run_id"]) == [store["run_ids"]["failed"], store["run_ids"]["succeeded"]]
    failed, succeeded = frame.iloc[0], frame.iloc[1]
    assert (failed["status"], succeeded["status"]) == ("Failed", "Succeeded")
    assert str(succeeded["started_at"]) == "2026-11-02 09:00:00+00:00"
    assert succeeded["execution_arn"] == SUCCEEDED["execution_arn"]
    assert succeeded["snapshot_id"] == "20261102T085500Z" and succeeded["git_commit"] == "846008f0c0ffee"
    assert succeeded["model_package_arn"] == SUCCEEDED["model_package_arn"]
    assert pd.isna(failed["model_package_arn"])
    assert failed["failure_reason"].startswith("Step Train failed")
    assert succeeded["params.MaxDepth"] == "6" and succeeded["params.InstanceType"] == "ml.m5.large"
    assert succeeded["metrics.f1"] == pytest.approx(0.83)
    assert math.isnan(failed["metrics.f1"]), "a null metric is not logged"
    assert succeeded["metrics.step_seconds.Train"] == pytest.approx(61.0)
    assert failed["metrics.step_seconds.Train"] == pytest.approx(79.0)
    assert math.isnan(failed["metrics.step_seconds.Evaluate"])


def test_mlflow_sees_the_run_status_times_and_name(store):
    from mlflow.tracking import MlflowClient

    run = MlflowClient(store["uri"]).get_run(store["run_ids"]["failed"])
    assert run.info.run_name == "f6e5d4c3b2a1"
    assert run.info.status == "FAILED"
    assert run.info.end_time - run.info.start_time == 90_000
    assert "f1" not in run.data.metrics


def test_logging_an_execution_again_updates_its_run(store):
    again = tracking.log_execution({**SUCCEEDED, "model_package_arn": None}, tracking_uri=store["uri"])
    assert again == store["run_ids"]["succeeded"]
    frame = tracking.runs("pump-health", tracking_uri=store["uri"])
    assert len(frame) == 2
    assert pd.isna(frame.set_index("run_id").loc[again, "model_package_arn"])
    tracking.log_execution(SUCCEEDED, tracking_uri=store["uri"])  # as it was, for the other tests


def test_other_parameters_for_a_logged_execution_are_refused(store):
    changed = {**SUCCEEDED, "parameters": {**SUCCEEDED["parameters"], "MaxDepth": 8}}
    with pytest.raises(ValidationError, match=r"other values of \['MaxDepth'\]"):
        tracking.log_execution(changed, tracking_uri=store["uri"])


def test_artifacts_and_the_record_are_on_disk(store):
    run_folder = store["state_dir"] / "mlflow" / "artifacts" / "pump-health" / store["run_ids"]["succeeded"]
    artifacts = run_folder / "artifacts"
    assert json.loads((artifacts / "execution.json").read_text())["execution_arn"] == SUCCEEDED["execution_arn"]
    assert json.loads((artifacts / "evaluation" / "evaluation.json").read_text())["rows"] == 1200
    assert (artifacts / "evaluation" / "plots" / "roc.csv").is_file()
    assert (artifacts / "drift" / "baseline" / "baseline.json").is_file()
    failed = store["state_dir"] / "mlflow" / "artifacts" / "pump-health" / store["run_ids"]["failed"] / "artifacts"
    assert sorted(p.name for p in failed.iterdir()) == ["execution.json"]


def test_a_use_case_without_runs_gives_an_empty_frame_with_the_columns(store):
    frame = tracking.runs("energy-forecast", tracking_uri=store["uri"])
    assert frame.empty and list(frame.columns) == list(tracking.COLUMNS)


def test_evaluation_json_shaped_metrics_are_accepted(tmp_path):
    record = execution("b0b0b0b0b0b0", metrics={"f1": {"value": 0.5}, "roc_auc": {"value": None}})
    parsed = tracking._Execution.from_record(record)
    assert parsed.metrics == {"f1": 0.5, "step_seconds.Preprocess": 12.5, "step_seconds.Train": 61.0,
                              "step_seconds.Evaluate": 8.25}


@pytest.mark.parametrize(
    "changes, message",
    [
        pytest.param({"execution_arn": None}, "execution_arn", id="no-arn"),
        pytest.param({"use_case": "pump health"}, "use_case", id="bad-use-case"),
        pytest.param({"metrics": {"f1": "high"}}, "metric 'f1' must be a number", id="bad-metric"),
        pytest.param({"started_at": "yesterday"}, "ISO-8601", id="bad-time"),
    ],
)
def test_a_malformed_record_is_refused_before_anything_is_logged(changes, message, tmp_path):
    with pytest.raises(ValidationError, match=message):
        tracking.log_execution(execution("c0c0c0c0c0c0", **changes))
    assert not (tmp_path / "mlflow").exists()


def test_a_missing_artifact_is_refused_before_anything_is_logged(tmp_path):
    with pytest.raises(ValidationError, match="does not exist"):
        tracking.log_execution(SUCCEEDED, artifacts={"model": tmp_path / "model.tar.gz"})
    assert not (tmp_path / "mlflow").exists()


def test_an_unknown_use_case_names_the_known_ones():
    with pytest.raises(NotFoundError, match=r"unknown use case 'boilers'.*'pump-health'"):
        tracking.runs("boilers")


def test_runs_is_on_the_package_and_import_stays_light():
    code = ("import sys, modelwerk; runs = modelwerk.runs; "
            "print(runs.__module__, 'mlflow' in sys.modules, 'pandas' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.split() == ["modelwerk.pipelines", "False", "False"]


# -- configuration ----------------------------------------------------------------------------------------------------
def test_the_managed_server_is_off_unless_cdk_json_turns_it_on():
    assert settings.load(ROOT).mlflow == settings.MlflowConfig(managed_tracking_server=False,
                                                               tracking_server_size="Small")
    assert settings.MlflowConfig.from_dict({}).managed_tracking_server is False


@pytest.mark.parametrize(
    "doc, message",
    [
        pytest.param({"managed_tracking_server": "yes"}, "true or false", id="not-a-bool"),
        pytest.param({"tracking_server_size": "Huge"}, "Small", id="bad-size"),
        pytest.param({"managed_server": True}, "unknown setting", id="typo"),
    ],
)
def test_a_bad_mlflow_setting_fails_with_what_is_allowed(doc, message):
    with pytest.raises(ConfigurationError, match=message):
        settings.MlflowConfig.from_dict(doc)


# -- CLI --------------------------------------------------------------------------------------------------------------
def _cli(*args: str, state_dir: Path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "MODELWERK_"))}
    environment.update(MODELWERK_STATE_DIR=str(state_dir), MODELWERK_LOCAL="0", AWS_EC2_METADATA_DISABLED="true",
                       AWS_CONFIG_FILE=str(state_dir / "no-aws-config"),
                       AWS_SHARED_CREDENTIALS_FILE=str(state_dir / "no-aws-credentials"))
    return subprocess.run([sys.executable, "-m", "modelwerk.cli", *args], capture_output=True, text=True,
                          env=environment, cwd=ROOT, timeout=120)


@pytest.mark.slow
def test_cli_runs_list_prints_one_json_object(store):
    result = _cli("runs", "list", "--use-case", "pump-health", "--json", state_dir=store["state_dir"])
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"use_case", "runs"} and payload["use_case"] == "pump-health"
    failed, succeeded = payload["runs"]
    assert {"run_id", "execution_arn", "status", "started_at", "snapshot_id", "git_commit", "model_package_arn",
            "params", "metrics"} <= set(succeeded)
    assert succeeded["run_id"] == store["run_ids"]["succeeded"]
    assert succeeded["metrics"]["f1"] == pytest.approx(0.83) and "f1" not in failed["metrics"]
    assert succeeded["params"]["MinF1"] == "0.7"
    assert (failed["status"], failed["model_package_arn"]) == ("Failed", None)


@pytest.mark.slow
def test_cli_unknown_use_case_is_one_sentence(tmp_path):
    result = _cli("runs", "list", "--use-case", "boilers", "--json", state_dir=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "unknown use case 'boilers'" in line and "pump-health" in line
