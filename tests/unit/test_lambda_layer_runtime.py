"""The drift monitor's core and handler on the runtime they are deployed with: the AWS SDK for pandas layer's numpy,
pandas and pyarrow (and Powertools v3) on Python 3.12, in the virtual environment ``make install`` makes from
``tests/lambda_layer/requirements.txt``. The project's own environment has newer versions of all three."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER_PYTHON = ROOT / ".venv-layer" / "bin" / "python"
REQUIREMENTS = ROOT / "tests" / "lambda_layer" / "requirements.txt"
#: The tests of what the function's asset holds (lambdas/drift_monitor, modelwerk/core) and of what it reads.
TESTS = ["tests/unit/test_drift.py", "tests/unit/test_drift_properties.py", "tests/unit/test_capture.py",
         "tests/unit/test_monitor.py", "tests/unit/test_drift_monitor_handler.py"]

pytestmark = pytest.mark.slow


def _pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        if version:
            pins[name.lower().replace("_", "-")] = version
    return pins


def _environment() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTEST_", "MODELWERK_"))}
    return {**keep, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


def test_the_layer_environment_has_the_layers_versions():
    assert LAYER_PYTHON.exists(), "the layer's test environment is missing: run `make install`"
    probe = ("import json, sys, numpy, pandas, pyarrow, aws_lambda_powertools as p; print(json.dumps({'python': "
             "'%d.%d' % sys.version_info[:2], 'numpy': numpy.__version__, 'pandas': pandas.__version__, "
             "'pyarrow': pyarrow.__version__}))")
    found = json.loads(subprocess.run([str(LAYER_PYTHON), "-c", probe], capture_output=True, text=True,
                                      check=True, env=_environment()).stdout)
    pins = _pins()
    assert {name: found[name] for name in ("numpy", "pandas", "pyarrow")} == {
        name: pins[name] for name in ("numpy", "pandas", "pyarrow")}
    assert found["numpy"].startswith("1.26.") and found["pandas"].startswith("2.2.")


def test_the_monitor_and_the_handler_pass_their_tests_on_the_layers_versions():
    assert LAYER_PYTHON.exists(), "the layer's test environment is missing: run `make install`"
    run = subprocess.run([str(LAYER_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT,
                         capture_output=True, text=True, env=_environment(), timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1] and "skipped" not in run.stdout.splitlines()[-1]
