"""The CLI as a user runs it in local mode: a subprocess per command, its own state folder, no AWS_* leaking in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str], check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``modelwerk ARGS`` in ``cwd``: the checkout whose cdk.json the CLI reads (default: this one)."""
    result = subprocess.run([sys.executable, "-m", "modelwerk.cli", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"modelwerk {' '.join(args)} failed: {result.stderr}")
    return result


def cli_json(*args: str, env: dict[str, str], cwd: Path = ROOT) -> dict:
    return json.loads(run_cli(*args, "--json", env=env, cwd=cwd).stdout)


def cli_environment(state_dir: Path) -> dict[str, str]:
    """This process's environment without AWS_* variables, with its own local-mode records."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(MODELWERK_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT))
    return env
