"""The contract parameters the synthesized data lake publishes hold every field of each folder's contract.json, and
read back (as the ingestion function reads them) as the contract the folder declares: ``min: 0`` included."""

from __future__ import annotations

import json

import pytest

from modelwerk import settings
from modelwerk.core.contract import Contract

CONFIG = settings.load()


@pytest.mark.parametrize("env", [e.name for e in CONFIG.workloads])
@pytest.mark.parametrize("use_case", list(CONFIG.use_cases))
def test_the_published_contract_holds_every_field_the_folder_declares(synthesized, env, use_case):
    folder = CONFIG.use_case(use_case).folder
    declared = json.loads((folder / "contract.json").read_text(encoding="utf-8"))
    parameters = synthesized.template(env, "DataLake").find_resources("AWS::SSM::Parameter")
    (value,) = [p["Properties"]["Value"] for p in parameters.values()
                if p["Properties"]["Name"] == f"/modelwerk/{env}/use-cases/{use_case}/contract"]
    published = json.loads(value)

    assert Contract.from_json(value) == Contract.load(folder / "contract.json")
    for written, sent in zip(declared["columns"], published["columns"], strict=True):
        assert {k: v for k, v in sent.items() if k in written} == written
