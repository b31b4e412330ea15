"""The whole lifecycle as a newcomer meets it: `make demo`'s script (the session's ``demo`` fixture), then the
promotion functions' examples and the quickstart notebook on the local mode the demo leaves running."""

from __future__ import annotations

import doctest
import io
import json
import os
import re
from pathlib import Path

import pytest

from local_cli import ROOT, cli_json

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode-reads")]

USE_CASES = ("pump-health", "energy-forecast")


@pytest.fixture
def in_process(demo_ok):
    """This process's library on the demo's local mode, as a notebook kernel started there is pointed at it
    (``modelwerk.local.activate``: dev's profile and the checkout's local root); the environment comes back after."""
    from modelwerk import local, platform

    saved = dict(os.environ)
    state = local.read_state(ROOT)
    assert state is not None, "the session's local mode is not running"
    local.activate(state)
    platform._resolve_cached.cache_clear()
    yield demo_ok
    os.environ.clear()
    os.environ.update(saved)
    platform._resolve_cached.cache_clear()


def test_the_demo_runs_the_whole_lifecycle_for_both_use_cases(demo):
    assert demo["code"] == 0, demo["stderr"][-3000:] + demo["stdout"][-3000:]
    out = demo["stdout"]
    for use_case in USE_CASES:
        assert f"{use_case}: promote through the registry's promotion pipeline" in out
        assert re.search(rf"{use_case} version 1 -> prod: Succeeded \([0-9.]+ s\), promotion pipeline execution ",
                         out), out
    assert out.count("quality-gate    Succeeded") == 2
    assert out.count("deploy-prod     Succeeded") == 2
    assert out.count("retraining Succeeded") == 2
    assert "rows_quarantined" in out
    summary = out[out.index("summary and the lifecycle report"):]
    for use_case in USE_CASES:
        assert re.search(rf"{use_case}\s+prod serves v1 \(InService\); versions: v1 Approved .*, v2 "
                         r"PendingManualApproval", summary), summary
    assert re.search(r"demo finished in \d+ s", out)


def test_drift_paged_on_call_and_retraining_registered_a_version_for_each_use_case(demo_ok):
    env = demo_ok["env"]
    out = demo_ok["stdout"]
    drift = [line for line in out.splitlines() if line.startswith("rows ") and "drifted:" in line]
    assert len(drift) == 2 and all("data-drift ALARM" in line and "needs-retraining ALARM" in line
                                   for line in drift), drift
    retrainings = re.findall(r"retraining started: (\S+)", out)
    assert len(retrainings) == 2

    from modelwerk import naming, platform

    cloudwatch = platform.session("prod").client("cloudwatch")
    for use_case, execution in zip(USE_CASES, retrainings):
        paged = cloudwatch.describe_alarm_history(AlarmName=naming.monitoring_alarm_name(use_case, "composite"),
                                                  AlarmTypes=["CompositeAlarm"],
                                                  HistoryItemType="Action")["AlarmHistoryItems"]
        actions = [json.loads(item["HistoryData"]) for item in paged]
        assert any(a["actionState"] == "Succeeded" and a["notificationResource"].startswith("arn:aws:sns:")
                   for a in actions), paged

        described = cli_json("pipeline", "describe", "--use-case", use_case, execution, env=env)
        assert described["status"] == "Succeeded", described
        registered = cli_json("models", "show", "--use-case", use_case, described["model_package_arn"], env=env)
        prod = cli_json("endpoints", "describe", use_case, "--env", "prod", env=env)
        assert registered["version"] > prod["version"]
        assert registered["lineage"]["pipeline_execution_arn"] == described["execution_arn"]


def test_the_lifecycle_report_has_versions_endpoints_and_drift_plots(demo_ok):
    path = Path(re.search(r"report: (\S+\.html)", demo_ok["stdout"]).group(1))
    if not path.is_absolute():
        path = ROOT / path
    page = path.read_text(encoding="utf-8")
    assert Path(demo_ok["env"]["MODELWERK_STATE_DIR"], "reports") == path.parent
    for use_case in USE_CASES:
        assert f"<h2>{use_case}</h2>" in page
        assert f"Drift of {use_case} in prod" in page
    assert page.count("<svg") > 10  # a PSI bar per feature and a plot per drifted feature
    assert "PendingManualApproval" in page and "serving or served" in page


def test_the_promotion_functions_examples_run_on_the_demos_state(in_process):
    """The examples of modelwerk/promotion.py's functions, as written. The module's own example (a promotion to prod
    and its rollback) runs in test_local_promotion's story, where staging and prod serve its version already."""
    import modelwerk
    from modelwerk import promotion

    examples = [test for test in doctest.DocTestFinder().find(promotion, extraglobs={"modelwerk": modelwerk})
                if test.examples and test.name != promotion.__name__]
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for example in examples:
        runner.run(example, out=report.write)
    assert runner.tries >= 1 and runner.failures == 0, report.getvalue()


def test_the_quickstart_notebook_runs(in_process):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = {index: cell.get("outputs", []) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    html_shown = [o for cell in outputs.values() for o in cell if "text/html" in o.get("data", {})]
    assert len(html_shown) >= 5  # the readings, runs, a version, the endpoint, the drift report, the promotion
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for cell in outputs.values()
                   for o in cell)
    assert "there is no version 999" in text
    assert "Succeeded" in text
