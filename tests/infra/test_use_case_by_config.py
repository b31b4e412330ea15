"""A third use case is a folder and a config entry: no stack code changes, and the catalog, the job and the
parameters for it appear at the next synth."""

import json
import shutil
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from app import build_app

ROOT = Path(__file__).resolve().parents[2]

BOILER_CONTRACT = {
    "use_case": "boiler-efficiency",
    "task": "regression",
    "label": "efficiency_pct",
    "key": ["boiler_id", "timestamp"],
    "timestamp": "timestamp",
    "asset": "boiler_id",
    "columns": [
        {"name": "boiler_id", "type": "string", "required": True},
        {"name": "timestamp", "type": "timestamp", "required": True},
        {"name": "steam_t_h", "type": "double", "required": True, "min": 0, "max": 500},
        {"name": "efficiency_pct", "type": "double", "required": True, "min": 0, "max": 100},
    ],
}


@pytest.mark.slow
def test_a_use_case_added_by_config_gets_its_table_job_and_parameters(tmp_path):
    for folder in ("lambdas", "glue_jobs", "modelwerk", "sagemaker_pipelines", "containers", "frameworks.txt",
                   "requirements.txt"):
        if (ROOT / folder).exists():
            (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / "sagemaker_pipelines").unlink()
    shutil.copytree(ROOT / "sagemaker_pipelines", tmp_path / "sagemaker_pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    boiler = tmp_path / "sagemaker_pipelines" / "boiler_efficiency"
    boiler.mkdir()
    (boiler / "contract.json").write_text(json.dumps(BOILER_CONTRACT))
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    cdk_json["context"]["modelwerk:use_cases"]["boiler-efficiency"] = {"folder": "sagemaker_pipelines/boiler_efficiency"}
    (tmp_path / "cdk.json").write_text(json.dumps(cdk_json))

    app = build_app(tmp_path, outdir=str(tmp_path / "cdk.out"))
    app.synth()
    stage = next(s for s in app.node.children if getattr(s, "stage_name", None) == "Dev")
    data_lake = next(c for c in stage.node.children if c.node.id == "DataLake")
    template = Template.from_stack(data_lake)

    tables = template.find_resources("AWS::Glue::Table", {
        "Properties": {"TableInput": Match.object_like({"Name": "boiler_efficiency"})}})
    assert len(tables) == 3  # raw, curated, analytics
    template.has_resource_properties("AWS::Glue::Job", {"Name": "modelwerk-dev-prepare-boiler-efficiency"})
    template.has_resource_properties("AWS::SSM::Parameter", {
        "Name": "/modelwerk/dev/use-cases/boiler-efficiency/contract",
        "Value": Match.string_like_regexp("efficiency_pct"),
    })
