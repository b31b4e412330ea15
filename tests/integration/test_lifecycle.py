"""The whole lifecycle as a newcomer meets it: `make demo`'s script, then the quickstart notebook and the promotion
examples on the local mode the demo leaves running. One demo run for the module (it is the expensive part)."""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from local_cli import ROOT, cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

USE_CASES = ("pump-health", "energy-forecast")


@pytest.fixture(scope="module")
def demo(cli_env):
    """``bash scripts/demo.sh`` as ``make demo`` runs it (after installation), with its own records; its output and
    wall time. Local mode stays up for the other tests, then goes down."""
    env = cli_env
    started = time.monotonic()
    finished = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=1200)
    seconds = time.monotonic() - started
    print(f"\ndemo wall time: {seconds:.0f} s")
    yield {"env": env, "stdout": finished.stdout, "stderr": finished.stderr, "code": finished.returncode,
           "seconds": seconds}
    run_cli("local", "down", env=env, check=False)


@pytest.fixture
def in_process(demo):
    """This process's library on the demo's local mode, as a notebook kernel started there would be."""
    from modelwerk import local, platform

    saved = dict(os.environ)  # activate() sets AWS_* itself: all of it goes when the test ends
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]
    os.environ["MODELWERK_STATE_DIR"] = demo["env"]["MODELWERK_STATE_DIR"]
    platform._resolve_cached.cache_clear()
    local.activate(local.read_state())
    yield demo
    os.environ.clear()
    os.environ.update(saved)
    platform._resolve_cached.cache_clear()


def test_the_demo_runs_the_whole_lifecycle_for_both_use_cases(demo):
    assert demo["code"] == 0, demo["stderr"][-3000:] + demo["stdout"][-3000:]
    out = demo["stdout"]
    for use_case in USE_CASES:
        assert f"{use_case}: promote: staging, quality gate" in out
        assert re.search(rf"{use_case} version 1 -> prod: Succeeded", out), out
    assert out.count("quality-gate    Succeeded") == 2
    assert out.count("deploy-prod     Succeeded") == 2
    assert out.count("retraining Succeeded") == 2
    assert "rows_quarantined" in out
    summary = out[out.index("summary and the lifecycle report"):]
    for use_case in USE_CASES:
        assert re.search(rf"{use_case}\s+prod serves v1 \(InService\); versions: v1 Approved .*, v2 "
                         r"PendingManualApproval", summary), summary
    assert re.search(r"demo finished in \d+ s", out)


def test_drift_paged_on_call_and_retraining_registered_a_version_for_each_use_case(demo):
    env = demo["env"]
    for use_case in USE_CASES:
        versions = cli_json("models", "list", "--use-case", use_case, env=env)
        assert [v["version"] for v in versions] == [2, 1]
        drift = [line for line in demo["stdout"].splitlines() if line.startswith("rows ") and "drifted:" in line]
        assert len(drift) == 2 and all("data-drift ALARM" in line and "needs-retraining ALARM" in line
                                       for line in drift), drift


def test_the_lifecycle_report_has_versions_endpoints_and_drift_plots(demo):
    path = Path(re.search(r"report: (\S+\.html)", demo["stdout"]).group(1))
    if not path.is_absolute():
        path = ROOT / path
    page = path.read_text(encoding="utf-8")
    assert Path(demo["env"]["MODELWERK_STATE_DIR"], "reports") == path.parent
    for use_case in USE_CASES:
        assert f"<h2>{use_case}</h2>" in page
        assert f"Drift of {use_case} in prod" in page
    assert page.count("<svg") > 10  # a PSI bar per feature and a plot per drifted feature
    assert "PendingManualApproval" in page and "serving or served" in page


def test_the_promotion_examples_run_on_the_demos_state(in_process):
    import modelwerk
    from modelwerk import promotion

    results = doctest.testmod(promotion, globs={"modelwerk": modelwerk}, optionflags=doctest.ELLIPSIS)
    assert results.attempted >= 5 and results.failed == 0


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
