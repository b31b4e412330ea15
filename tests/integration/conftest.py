"""Fixtures of the tests that drive local mode, shared by the whole session (the expensive part runs once).

``local_mode``: one ``modelwerk local up`` for the session, every environment deployed into its account. ``demo``:
``scripts/demo.sh`` (what ``make demo`` runs) on that local mode — both use cases from sensor files to a promoted,
monitored, retrained model —, which the modules that look at the lifecycle (data lake, training, registry,
endpoints, monitoring, promotion, the notebook) take as their starting state instead of building their own. Session
fixtures live once per xdist worker: the modules that use them are in one of two groups, ``local-mode`` (they change
what prod serves and judge its alarms, or deploy to dev: monitoring, promotion, batch scoring) and
``local-mode-reads`` (the rest), so two workers run them side by side, each on its own local mode and demo, and no
module shares a local mode with one of the other group.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from local_cli import ROOT, cli_environment, cli_json, run_cli



@pytest.fixture(scope="session")
def cli_env(tmp_path_factory):
    return cli_environment(tmp_path_factory.mktemp("modelwerk-state"))


@pytest.fixture(scope="session")
def local_mode(cli_env):
    """`modelwerk local up` for the session; this process's clients point at it (dev's profile) until the end."""
    _synthesize_once()
    state = cli_json("local", "up", env=cli_env)
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(AWS_CONFIG_FILE=state["aws_config_file"], AWS_PROFILE="modelwerk-dev",
                      AWS_DEFAULT_REGION=state["region"], AWS_REGION=state["region"],
                      MODELWERK_STATE_DIR=cli_env["MODELWERK_STATE_DIR"])
    from modelwerk import platform

    platform._resolve_cached.cache_clear()
    _pause_scheduled_preparation(state)
    yield state
    run_cli("local", "down", env=cli_env, check=False)
    os.environ.clear()
    os.environ.update(saved)
    platform._resolve_cached.cache_clear()


def _synthesize_once() -> None:
    """The checkout's cdk.out, synthesized by one worker at a time: two local modes start side by side, and each
    would otherwise write the same assembly at once."""
    import fcntl
    import hashlib
    import tempfile

    from modelwerk.local.assembly import synthesize

    name = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    with open(os.path.join(tempfile.gettempdir(), f"modelwerk-synth-{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        synthesize(ROOT)


def _pause_scheduled_preparation(state: dict) -> None:
    """Stop the preparation jobs' hourly Glue triggers, as an operator pauses a schedule: the tests start the jobs
    when they need them, and a run at a quarter past the hour would publish snapshots the tests did not ask for."""
    from modelwerk import platform

    for env in state["accounts"]:
        glue = platform.session(env).client("glue")
        for name in glue.list_triggers().get("TriggerNames", []):
            if glue.get_trigger(Name=name)["Trigger"].get("Type") == "SCHEDULED":
                glue.stop_trigger(Name=name)


@pytest.fixture(scope="session")
def demo(local_mode, cli_env):
    """``bash scripts/demo.sh`` as ``make demo`` runs it, on the session's local mode; its output and wall time."""
    started = time.monotonic()
    finished = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=cli_env, capture_output=True, text=True,
                              timeout=1500)
    seconds = time.monotonic() - started
    print(f"\ndemo wall time: {seconds:.0f} s")
    return {"env": cli_env, "stdout": finished.stdout, "stderr": finished.stderr, "code": finished.returncode,
            "seconds": seconds, "work": os.path.join(cli_env["MODELWERK_STATE_DIR"], "demo")}


@pytest.fixture(scope="session")
def demo_ok(demo):
    """The demo's state, for tests that build on it: they fail (not error) with the demo's output if it failed."""
    if demo["code"] != 0:
        pytest.fail("the demo failed, so the lifecycle it leaves is missing:\n" + demo["stderr"][-3000:]
                    + demo["stdout"][-3000:])
    return demo
