"""Fixtures of the modules that drive local mode through the CLI: one embedded AWS per module."""

from __future__ import annotations

import os

import pytest

from local_cli import cli_environment, cli_json, run_cli


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    return cli_environment(tmp_path_factory.mktemp("modelwerk-state"))


@pytest.fixture(scope="module")
def local_mode(cli_env):
    """`modelwerk local up` for the module; this process's clients point at it until `local down`."""
    state = cli_json("local", "up", env=cli_env)
    saved = dict(os.environ)
    os.environ.update(AWS_ENDPOINT_URL=state["endpoint_url"], AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=state["region"],
                      MODELWERK_STATE_DIR=cli_env["MODELWERK_STATE_DIR"])
    yield state
    run_cli("local", "down", env=cli_env, check=False)
    os.environ.clear()
    os.environ.update(saved)
