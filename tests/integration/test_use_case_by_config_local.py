"""A use case added by config only runs the whole lifecycle locally: ingest, prepare, pipeline, approve, deploy,
predict, and the promotion gate.

The module builds a checkout of its own: this one's code (stacks, constructs, Lambdas, jobs, library, container)
symlinked, ``app.py`` copied (it finds its checkout from its own path), ``sagemaker_pipelines`` copied with one more
folder, ``sheet_break``, and ``cdk.json`` with one more use case entry and a dev endpoint for it. No stack code
differs; local mode synthesizes and deploys that checkout and the CLI runs from it, as a user would. That is a second
embedded AWS beside the session's, so it is kept small: the checkout's cdk.json declares the registry and dev only
(this lifecycle never leaves dev), which halves what ``local up`` synthesizes and deploys, and the module runs in an
xdist group of its own, on the other worker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from local_cli import ROOT, cli_environment, cli_json
from modelwerk import naming

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("use-case-by-config")]

USE_CASE = "sheet-break"
FOLDER = "sheet_break"
TABLE = "sheet_break"
ROLLING_FEATURE = "web_tension_kn_m_std_30min"

CONTRACT = {
    "use_case": USE_CASE,
    "description": "Sheet breaks on paper machines: one reading per machine and minute; label: a break follows.",
    "task": "classification",
    "label": "sheet_break",
    "key": ["machine_id", "timestamp"],
    "timestamp": "timestamp",
    "asset": "machine_id",
    "unknown_columns": "strict",
    "columns": [
        {"name": "machine_id", "type": "string", "required": True, "pattern": "^PM-[0-9]{2}$"},
        {"name": "grade", "type": "string", "required": True, "allowed": ["newsprint", "tissue", "board"]},
        {"name": "timestamp", "type": "timestamp", "required": True},
        {"name": "crew_lead", "type": "string", "personal": True},
        {"name": "speed_m_min", "type": "double", "required": True, "min": 0, "max": 2500},
        {"name": "moisture_pct", "type": "double", "required": True, "min": 0, "max": 20},
        {"name": "web_tension_kn_m", "type": "double", "required": True, "min": 0, "max": 10},
        {"name": "basis_weight_gsm", "type": "integer", "required": True, "min": 10, "max": 400},
        {"name": "steam_boost", "type": "boolean"},
        {"name": "sheet_break", "type": "integer", "required": True, "min": 0, "max": 1},
    ],
    "rolling": {"window": "30min", "columns": ["web_tension_kn_m"], "stats": ["std"]},
}
INPUTS = ["grade", "speed_m_min", "moisture_pct", "web_tension_kn_m", "basis_weight_gsm", "steam_boost"]
#: Well-known points for the promotion gate, in the model's input order: steady running, and slack, wet webs.
GATE_CASES = """\
case,grade,speed_m_min,moisture_pct,web_tension_kn_m,basis_weight_gsm,steam_boost,expected,tolerance
steady-newsprint,newsprint,1500.0,7.0,3.2,45,false,0,
steady-board,board,700.0,7.2,3.5,250,false,0,
overstretched-wet-tissue,tissue,1900.0,10.8,7.8,18,true,1,
overstretched-wet-newsprint,newsprint,1450.0,10.5,8.0,45,false,1,
"""
USE_CASE_ENTRY = {"folder": f"sagemaker_pipelines/{FOLDER}", "quality_metric": "f1", "quality_threshold": 0.5,
                  "hyperparameters": {"class_weight": "balanced"}}
ENDPOINT_ENTRY = {"use_case": USE_CASE, "max_latency_ms": 2000}
#: The environments this checkout leaves out of its cdk.json: nothing here is promoted.
NOT_DEPLOYED = ("staging", "prod")

MACHINES = ("PM-01", "PM-02", "PM-03", "PM-04", "PM-05", "PM-06")
GRADES = ("newsprint", "newsprint", "tissue", "tissue", "board", "board")
MINUTES = 500
CREW_LEADS = ("Anna Berg", "Tom Vogt", "Eva Lang")
#: One bad row per kind of defect, each with the reason the ingestion gives it.
BAD_ROWS = {
    "out_of_range:web_tension_kn_m": {"web_tension_kn_m": "42.0"},
    "not_allowed:grade": {"grade": "cardboard"},
    "pattern:machine_id": {"machine_id": "pm-1"},
    "type:moisture_pct": {"moisture_pct": "wet"},
    "missing_required:speed_m_min": {"speed_m_min": ""},
    "duplicate_key": {},
}


def readings(rng: np.random.Generator) -> pd.DataFrame:
    """Six machines, one reading a minute; a break grows likely as the web runs tight and wet."""
    rows = len(MACHINES) * MINUTES
    machine = np.tile(np.arange(len(MACHINES)), MINUTES)
    minute = np.repeat(np.arange(MINUTES), len(MACHINES))
    grade = np.array(GRADES, dtype=object)[machine]
    weight = np.array([{"newsprint": 45, "tissue": 18, "board": 250}[g] for g in GRADES])[machine]
    speed = np.array([1500.0, 1450.0, 1900.0, 1850.0, 700.0, 650.0])[machine] + rng.normal(0.0, 20.0, rows)
    moisture = np.clip(rng.normal(7.5, 1.0, rows), 0.0, 20.0)
    tension = np.clip(rng.normal(4.0, 0.9, rows), 0.0, 10.0)
    boost = rng.random(rows) < 0.3
    risk = 2.5 * (tension - 5.0) + 1.5 * (moisture - 8.5) + 0.8 * boost
    broke = rng.random(rows) < 1.0 / (1.0 + np.exp(-3.0 * risk))
    stamps = np.datetime64("2025-04-01T06:00:00") + minute * np.timedelta64(1, "m")
    return pd.DataFrame({
        "machine_id": np.array(MACHINES, dtype=object)[machine],
        "grade": grade,
        "timestamp": np.char.add(np.datetime_as_string(stamps, unit="s"), "Z"),
        "crew_lead": np.array(CREW_LEADS, dtype=object)[(minute // 240) % len(CREW_LEADS)],
        "speed_m_min": speed.round(1),
        "moisture_pct": moisture.round(2),
        "web_tension_kn_m": tension.round(3),
        "basis_weight_gsm": weight + rng.integers(-3, 4, rows),
        "steam_boost": np.where(boost, "true", "false"),
        "sheet_break": broke.astype(int),
    }, columns=[c["name"] for c in CONTRACT["columns"]])


def landing_file(path: Path, seed: int = 11) -> pd.DataFrame:
    """The clean readings, then one bad row per defect (copies of clean rows with one field spoiled, at new
    timestamps; the duplicate repeats the first row's key); returns the clean rows."""
    clean = readings(np.random.default_rng(seed))
    last = pd.Timestamp(clean["timestamp"].iloc[-1])
    bad = []
    for n, spoiled in enumerate(BAD_ROWS.values(), start=1):
        row = clean.iloc[n].astype(str).to_dict()
        row["timestamp"] = (last + pd.Timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not spoiled:
            row.update(machine_id=clean["machine_id"].iloc[0], timestamp=clean["timestamp"].iloc[0])
        bad.append({**row, **spoiled})
    pd.concat([clean.astype(str), pd.DataFrame(bad)]).to_csv(path, index=False, lineterminator="\n")
    return clean


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkout")
    for name in ("stacks", "cdk_constructs", "lambdas", "glue_jobs", "modelwerk", "containers", "frameworks.txt",
                 "requirements.txt"):
        (root / name).symlink_to(ROOT / name)
    shutil.copy2(ROOT / "app.py", root / "app.py")
    shutil.copytree(ROOT / "sagemaker_pipelines", root / "sagemaker_pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    folder = root / "sagemaker_pipelines" / FOLDER
    folder.mkdir()
    (folder / "contract.json").write_text(json.dumps(CONTRACT, indent=1))
    (folder / "gate_cases.csv").write_text(GATE_CASES)
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    context = cdk_json["context"]
    context["modelwerk:use_cases"][USE_CASE] = USE_CASE_ENTRY
    context["modelwerk:environments"]["dev"]["endpoints"][USE_CASE] = ENDPOINT_ENTRY
    for name in NOT_DEPLOYED:
        context["modelwerk:environments"].pop(name)
    (root / "cdk.json").write_text(json.dumps(cdk_json, indent=1))
    return root


class CheckoutCli:
    """``modelwerk ... --json`` run from the checkout, with records of its own."""

    def __init__(self, checkout: Path, state_dir: Path):
        self.checkout = checkout
        self.env = cli_environment(state_dir)
        self.state: dict = {}

    def __call__(self, *args: str) -> dict:
        return cli_json(*args, env=self.env, cwd=self.checkout)

    def client(self, service: str):
        """A client of the embedded AWS in the dev account (its default)."""
        return boto3.client(service, endpoint_url=self.state["endpoint_url"], region_name=self.state["region"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def cli(checkout, tmp_path_factory):
    """`local up` from the checkout for the module, `local down` after it."""
    cli = CheckoutCli(checkout, tmp_path_factory.mktemp("modelwerk-state"))
    cli.state = cli("local", "up")
    yield cli
    assert cli("local", "down") == {"stopped": True}


@pytest.fixture(scope="module")
def landed(cli, tmp_path_factory):
    path = tmp_path_factory.mktemp("landing") / "sheet-break.csv"
    clean = landing_file(path)
    return clean, cli("data", "ingest", "--use-case", USE_CASE, str(path))


@pytest.fixture(scope="module")
def prepared(cli, landed):
    return cli("data", "prepare", "--use-case", USE_CASE)


@pytest.fixture(scope="module")
def version(cli, prepared):
    run = cli("pipeline", "run", "--use-case", USE_CASE, "--wait")
    assert run["status"] == "Succeeded", run
    number = run["model_package_arn"].rsplit("/", 1)[-1]
    approved = cli("models", "approve", "--use-case", USE_CASE, number, "--reason", "by config, end to end")
    assert approved["approval_status"] == "Approved"
    return cli("models", "show", "--use-case", USE_CASE, number)


@pytest.fixture(scope="module")
def endpoint(cli, version):
    return cli("deploy", "--use-case", USE_CASE, str(version["version"]), "--endpoint", USE_CASE)


def test_the_checkout_differs_from_this_one_by_config_and_a_folder_only(checkout):
    ours = json.loads((ROOT / "cdk.json").read_text())["context"]
    theirs = json.loads((checkout / "cdk.json").read_text())["context"]
    assert USE_CASE not in ours["modelwerk:use_cases"]
    theirs["modelwerk:use_cases"].pop(USE_CASE)
    theirs["modelwerk:environments"]["dev"]["endpoints"].pop(USE_CASE)
    for name in NOT_DEPLOYED:
        ours["modelwerk:environments"].pop(name)
    assert theirs == ours
    assert (checkout / "app.py").read_bytes() == (ROOT / "app.py").read_bytes()
    assert sorted(p.name for p in (checkout / "sagemaker_pipelines" / FOLDER).iterdir()) == ["contract.json",
                                                                                             "gate_cases.csv"]


def test_local_up_deploys_the_use_cases_job_pipeline_and_endpoint_alarms(cli):
    project = "modelwerk"
    job = naming.preparation_job_name(project, "dev", USE_CASE)
    assert cli.client("glue").get_job(JobName=job)["Job"]["Name"] == job
    pipeline = naming.training_pipeline_name(project, "dev", USE_CASE)
    assert cli.client("sagemaker").describe_pipeline(PipelineName=pipeline)["PipelineName"] == pipeline
    tables = {zone: cli.client("glue").get_table(DatabaseName=naming.database_name(project, "dev", zone),
                                                  Name=TABLE)["Table"] for zone in ("raw", "curated")}
    assert ROLLING_FEATURE in [c["Name"] for c in tables["curated"]["StorageDescriptor"]["Columns"]]
    wanted = [naming.endpoint_alarm_name(USE_CASE, "5xx"), naming.endpoint_alarm_name(USE_CASE, "latency"),
              naming.monitoring_alarm_name(USE_CASE, "drift")]
    alarms = cli.client("cloudwatch").describe_alarms(AlarmNames=wanted)["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in alarms) == sorted(wanted)


def test_data_generate_without_a_generator_writes_valid_rows_from_the_contract(checkout, tmp_path):
    summary = cli_json("data", "generate", "--use-case", USE_CASE, "--rows", "200", "--seed", "4", "--out",
                       str(tmp_path / "generated.csv"), env=cli_environment(tmp_path / "records"), cwd=checkout)
    assert summary["generator"] == "contract" and summary["rows"] == 200 and summary["bad_rows"] == 0
    frame = pd.read_csv(tmp_path / "generated.csv")
    assert list(frame.columns) == [c["name"] for c in CONTRACT["columns"]]
    assert frame["machine_id"].str.fullmatch(r"PM-[0-9]{2}").all()
    assert frame["web_tension_kn_m"].between(0, 10).all()


def test_ingest_accepts_the_clean_rows_and_quarantines_each_bad_one_with_its_reason(landed):
    clean, ingested = landed
    assert ingested["rows_in"] == len(clean) + len(BAD_ROWS)
    assert ingested["rows_accepted"] == len(clean) == 3000
    assert ingested["rows_quarantined"] == len(BAD_ROWS)
    assert ingested["reasons"] == {reason: 1 for reason in BAD_ROWS}
    assert ingested["files_quarantined"] == 0


def test_prepare_curates_the_rows_with_the_contracts_rolling_feature_and_no_personal_data(cli, prepared, landed):
    clean, _ = landed
    assert prepared["rows_out"] == len(clean) and prepared["duplicates_dropped"] == 0
    assert prepared["table"] == TABLE and len(prepared["snapshot_id"]) > 0
    answer = cli("data", "query", f"SELECT count(*) AS n, count({ROLLING_FEATURE}) AS with_feature, "
                 f"count(DISTINCT crew_lead) AS leads, max(crew_lead) AS a_lead FROM {prepared['database']}.{TABLE}")
    ((rows, with_feature, leads, a_lead),) = answer["rows"]
    assert rows == len(clean) and with_feature > 0
    assert leads == len(CREW_LEADS) and a_lead not in CREW_LEADS  # pseudonymized, still distinct


def test_the_pipeline_registers_a_version_with_metrics_and_lineage(version, prepared):
    assert [c["name"] for c in version["input_schema"]] == INPUTS
    assert version["approval_status"] == "Approved"
    assert version["lineage"]["data_snapshot_id"] == prepared["snapshot_id"]
    assert version["lineage"]["baseline_uri"].endswith("baseline.json")
    assert 0.5 <= version["metrics"]["f1"] <= 1.0  # the gate of the config entry passed
    assert 0.5 < version["metrics"]["roc_auc"] <= 1.0


def test_the_endpoint_predicts_a_class_per_row(cli, endpoint, landed, tmp_path):
    clean, _ = landed
    assert endpoint["status"] == "InService" and endpoint["version"] is not None
    requests = tmp_path / "requests.csv"
    sample = clean.iloc[::10]
    sample.to_csv(requests, index=False)  # header, label and all: predict picks the model's inputs
    predictions = cli("predict", "--endpoint", USE_CASE, str(requests), "--inference-id", "by-config")["predictions"]
    assert len(predictions) == len(sample)
    assert {type(p) for p in predictions} == {int} and set(predictions) == {0, 1}
    assert f1_score(sample["sheet_break"].astype(int), predictions) >= 0.5  # the trained model, not a constant


def test_the_promotion_gate_passes_on_the_use_cases_gate_cases(cli, endpoint, checkout, tmp_path):
    """The gate the promotion pipeline's build runs, against the endpoint through SageMaker Runtime, in a shell that
    exported what ``modelwerk local env`` prints (dev's profile: the embedded AWS and its runtime)."""
    env = {**cli.env, **cli("local", "env")}
    report = tmp_path / "gate.json"
    result = subprocess.run(
        [sys.executable, "-m", "modelwerk.core.gate", "--endpoint", USE_CASE, "--budget-ms", "2000",
         "--cases", str(checkout / "sagemaker_pipelines" / FOLDER / "gate_cases.csv"), "--report", str(report)],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(report.read_text())
    assert outcome["passed"] and [c["predicted"] for c in outcome["cases"]] == ["0", "0", "1", "1"]
