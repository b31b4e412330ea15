"""The promotion's result shape and its refusals that need no embedded AWS (the stages themselves run in
tests/integration/test_local_promotion.py and the lifecycle test)."""

from __future__ import annotations


import pytest

from modelwerk import cli, promotion
from modelwerk.errors import ValidationError


def _result(status="Failed"):
    return promotion.Promotion(
        use_case="pump-health", version=3, to="prod", status=status,
        stages=(promotion.Stage("source", "Succeeded", "version 3 approved"),
                promotion.Stage("deploy-staging", "Succeeded", "pump-health in staging serves version 3"),
                promotion.Stage("quality-gate", "Failed", "case <bearing>: predicted 0, expected 1"),
                promotion.Stage("approval", "Skipped", "an earlier stage did not succeed"),
                promotion.Stage("deploy-prod", "Skipped", "an earlier stage did not succeed")),
        gate={"passed": False}, seconds=12.34, previous_version=2)


def test_the_json_leads_with_status_and_stages_named_as_scripts_expect():
    document = _result().to_dict()
    assert list(document)[:2] == ["status", "stages"]
    assert [set(stage) for stage in document["stages"]] == [{"name", "status", "detail"}] * 5
    assert [stage["name"] for stage in document["stages"]] == list(promotion.STAGES)
    assert document["seconds"] == 12.3 and document["previous_version"] == 2


def test_detail_is_the_last_stage_that_ran():
    assert _result().detail == "case <bearing>: predicted 0, expected 1"


def test_the_notebook_view_escapes_what_it_shows():
    page = _result()._repr_html_()
    assert "case &lt;bearing&gt;" in page and "<bearing>" not in page
    assert page.count("<tr>") == 6


def test_only_staging_and_prod_are_targets():
    with pytest.raises(ValidationError, match="'staging' or 'prod', not 'qa'"):
        promotion.promote("pump-health", 1, to="qa")
    with pytest.raises(ValidationError, match="only prod is rolled back"):
        promotion.rollback("pump-health", to="staging")


def test_rollback_with_a_version_is_one_sentence_on_the_command_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELWERK_STATE_DIR", str(tmp_path))  # no local mode to point at: the environment stays
    assert cli.main(["promote", "--use-case", "pump-health", "3", "--to", "prod", "--rollback", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == ("modelwerk: --rollback puts the previous prod version back; give no VERSION "
                                    "with it")
