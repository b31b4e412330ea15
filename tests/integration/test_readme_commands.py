"""The README's "Using it" commands, read from the README itself, on the demo's state, the ways a user runs them: the
CLI pointing itself at the running local mode; a shell that exported what ``modelwerk local env`` prints; a shell that
exported only ``AWS_ENDPOINT_URL`` and the keys ``testing`` (dev is the embedded AWS's default account; the region is
the environment's in cdk.json). And the README's AWS CLI line, with the AWS CLI's own botocore.

``local up``/``local down`` are the session's. The minutes of ``data prepare``, ``pipeline run`` and ``promote``
(Spark, training, blue/green deployments) are left to the modules that test them (data lake, training, promotion);
every other verb runs once, the first README command of it, as the CLI points itself at local mode, and smaller samples
run the other ways. The README's version ``1`` is the version prod serves (the demo's first), ``2`` the newest other
one; file names go to a temporary folder.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from local_cli import ROOT, cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode-reads")]

USE_CASE = "pump-health"
FILES = ("pumps.csv", "requests.csv", "drifted.csv", "labels.csv")
#: Not run by this module: the session owns local mode.
SESSION_OWNED = ("local up", "local down")
#: Not run by this module: minutes of Spark, training, batch transforms and blue/green deployments that other modules
#: test.
LONG = ("data prepare", "pipeline run", "promote", "batch")
#: Verbs that stopped with NoRegionError given only AWS_ENDPOINT_URL and keys (``runs list`` warned and left
#: SageMaker's executions out), before sessions took the region of the environment in cdk.json.
NO_REGION_BEFORE = ("data query", "pipeline list", "runs list", "endpoints list", "predict", "monitor run", "report")
#: The sample of a shell that exported ``local env``: a command in dev's account, one in the registry's, one in prod's.
LOCAL_ENV_SAMPLE = (("data query", False), ("models list", False), ("predict", True))


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"## Using it\s+```bash\n(.*?)```", text, re.S).group(1)


def readme_commands() -> list[list[str]]:
    """Every ``modelwerk ...`` command of the README's "Using it" block, as arguments (comments dropped; the commands
    a line chains with ``&&`` one by one)."""
    commands = []
    for line in _readme_block().splitlines():
        if not line.startswith("modelwerk "):
            continue
        command: list[str] = []
        for token in [*shlex.split(line, comments=True), "&&"]:
            if token != "&&":
                command.append(token)
                continue
            if command[0] == "modelwerk" and " ".join(command[1:3]) not in SESSION_OWNED:
                commands.append(command[1:])
            command = []
    return commands


def _verb(args: list[str]) -> str:
    return " ".join(args[:2]) if args[0] in ("data", "pipeline", "runs", "models", "endpoints", "monitor",
                                             "local") else args[0]


def _kind(args: list[str]) -> tuple[str, bool]:
    """A command's verb, and whether it acts in another environment's account (``--env``)."""
    return _verb(args), "--env" in args


def _out(args: list[str]) -> str | None:
    return args[args.index("--out") + 1] if "--out" in args else None


def _sample(commands: list[list[str]], kinds: set[tuple[str, bool]]) -> list[list[str]]:
    """The first README command of each kind asked for, in the README's order, with the ``data generate`` commands
    that write the files they read."""
    chosen: dict[tuple[str, bool], int] = {}
    for index, args in enumerate(commands):
        if _kind(args) in kinds:
            chosen.setdefault(_kind(args), index)
    read = {token for index in chosen.values() for token in commands[index]}
    if "labels.csv" in read:  # written from requests.csv's labels
        read.add("requests.csv")
    return [args for index, args in enumerate(commands)
            if index in chosen.values() or (_verb(args) == "data generate" and _out(args) in read)]


class Readme:
    """The README's commands with this session's versions and files put in, and what they printed."""

    def __init__(self, folder: Path, versions: dict[str, int]):
        self.folder = folder
        self.versions = versions
        self.printed: dict[tuple[str, bool], str] = {}

    def concrete(self, args: list[str]) -> list[str]:
        out = []
        for index, token in enumerate(args):
            previous = args[index - 1] if index else ""
            if token in self.versions and not previous.startswith("--") and index > 1:
                token = str(self.versions[token])
            elif token in FILES:
                token = str(self.folder / token)
            elif token.startswith(f"{USE_CASE}/v") and token.endswith(".tar.gz"):
                token = f"{USE_CASE}/v{self.versions[token[len(USE_CASE) + 2:-7]]}.tar.gz"
            out.append(token)
        return out

    def after(self, args: list[str], stdout: str) -> None:
        """What a later command needs from an earlier one: ground truth (``labels.csv``) for the scored rows."""
        self.printed[_kind(args)] = stdout
        if _verb(args) == "data generate" and args[-1].endswith("requests.csv"):
            frame = pd.read_csv(args[-1], usecols=["failure"])
            labels = pd.DataFrame({"inference_id": "batch-1", "label": frame["failure"], "row": range(len(frame))})
            labels.dropna().to_csv(self.folder / "labels.csv", index=False)


@pytest.fixture(scope="module")
def versions(demo_ok, cli_env) -> dict[str, int]:
    """The README's ``1``: the version prod serves; ``2``: the newest other version not rejected."""
    prod = cli_json("endpoints", "describe", USE_CASE, "--env", "prod", env=cli_env)["version"]
    listed = cli_json("models", "list", "--use-case", USE_CASE, env=cli_env)
    others = [v["version"] for v in listed if v["version"] != prod and v["approval_status"] != "Rejected"]
    assert others, listed
    return {"1": prod, "2": max(others)}


@pytest.fixture(scope="module")
def readme(versions, tmp_path_factory) -> Readme:
    return Readme(tmp_path_factory.mktemp("readme"), versions)


def _run(readme: Readme, commands: list[list[str]], env: dict[str, str], prefix: str = "") -> list[str]:
    """Run the commands in order; every failure in a sentence (command and error), so one run lists them all."""
    failures = []
    for args in commands:
        concrete = readme.concrete(args)
        line = f"modelwerk {shlex.join(concrete)}"
        started = time.monotonic()
        if prefix:
            result = subprocess.run(["bash", "-c", f"{prefix}\nexec {shlex.quote(sys.executable)} -m modelwerk.cli "
                                                   f"{shlex.join(concrete)}"],
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        else:
            result = run_cli(*concrete, env=env, check=False)
        print(f"{time.monotonic() - started:5.1f} s  {line}")
        if result.returncode != 0:
            failures.append(f"{line}: exit {result.returncode}: {result.stderr.strip()[-600:]}")
            continue
        if "must specify a region" in result.stderr or "NoRegionError" in result.stderr:
            failures.append(f"{line}: {result.stderr.strip()[-600:]}")
            continue
        if "--json" in concrete:
            try:
                json.loads(result.stdout)
            except json.JSONDecodeError:
                failures.append(f"{line}: --json printed no JSON document: {result.stdout[:300]}")
                continue
        readme.after(concrete, result.stdout)
    return failures


def test_every_readme_verb_works_as_the_cli_points_itself_at_local_mode(readme, cli_env):
    commands = readme_commands()
    assert {_verb(c) for c in commands} >= {*LONG, "deploy", "predict", "feedback", "monitor quality", "report"}
    kinds = {_kind(c) for c in commands if _verb(c) not in LONG}
    sample = _sample(commands, kinds)
    assert {_verb(c) for c in sample} == {_verb(c) for c in commands} - set(LONG)

    failures = _run(readme, sample, cli_env)
    assert not failures, "\n".join(failures)
    scored = json.loads(readme.printed[("predict", False)])
    assert len(scored["predictions"]) == len(pd.read_csv(readme.folder / "requests.csv"))
    quality = json.loads(readme.printed[("monitor quality", False)])
    # The monitor's window ends at the last full minute: whether this minute's predictions are matched yet depends on
    # the clock, so the answer's shape is what is checked here (test_local_monitoring checks the figures).
    assert {"matched", "unmatched_labels", "accuracy", "f1"} <= set(quality), quality


def test_readme_commands_work_in_a_shell_that_exported_local_env(readme, cli_env):
    exports = run_cli("local", "env", env=cli_env).stdout
    assert "export AWS_CONFIG_FILE=" in exports and "export AWS_PROFILE=" in exports
    sample = _sample(readme_commands(), set(LOCAL_ENV_SAMPLE))
    assert {_kind(c) for c in sample} >= set(LOCAL_ENV_SAMPLE)
    failures = _run(readme, sample, cli_env, prefix=exports)
    assert not failures, "\n".join(failures)


def test_the_verbs_that_lacked_a_region_work_with_only_aws_endpoint_url_exported(readme, cli_env, local_mode):
    """No region anywhere (no profile, no AWS_REGION): sessions take dev's from cdk.json, so these verbs answer
    instead of stopping with NoRegionError (and ``runs list`` reads SageMaker's executions instead of warning)."""
    env = {**cli_env, "AWS_ENDPOINT_URL": local_mode["endpoint_url"], "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}
    assert not any(name in env for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"))
    sample = _sample(readme_commands(), {(verb, False) for verb in NO_REGION_BEFORE})
    assert {_verb(c) for c in sample} >= set(NO_REGION_BEFORE)
    failures = _run(readme, sample, env)
    assert not failures, "\n".join(failures)


def _aws(env: dict[str, str], *args: str) -> dict:
    result = subprocess.run(["aws", *args, "--output", "json"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"aws {' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip() else {}


def test_the_aws_cli_reaches_prod_and_dev_through_the_profiles_local_up_wrote(demo_ok, cli_env, tmp_path):
    """The README's ``eval "$(modelwerk local env --env prod)"; aws s3 ls`` as written; then, with dev's exports, the
    pipeline executions and an Athena query (which the embedded AWS runs).

    The AWS CLI runs with a home of its own, as on a machine with one local mode: it keeps assumed roles' keys in
    ``~/.aws/cli/cache`` by role and session name only, so keys another local mode issued (an earlier one, or another
    session's on this machine) would be sent here, and moto takes keys it never issued for its default account, dev's.
    """
    from modelwerk import naming, settings

    env = {k: v for k, v in cli_env.items() if k != "PYTHONPATH"}  # the AWS CLI with its own botocore
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # where `modelwerk` is installed
    env["HOME"] = str(tmp_path)
    [line] = [line for line in _readme_block().splitlines() if "aws s3 ls" in line]
    listed = subprocess.run(["bash", "-c", line.split("#")[0]], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    buckets = [row.split()[-1] for row in listed.stdout.splitlines() if row.strip()]
    prod_account = settings.load().environment("prod").account
    assert buckets and all(prod_account in bucket for bucket in buckets), listed.stdout

    env.update(cli_json("local", "env", env=cli_env))
    pipeline = naming.training_pipeline_name("modelwerk", "dev", USE_CASE)
    executions = _aws(env, "sagemaker", "list-pipeline-executions", "--pipeline-name", pipeline)
    assert any(e["PipelineExecutionStatus"] == "Succeeded" for e in executions["PipelineExecutionSummaries"])

    started = _aws(env, "athena", "start-query-execution", "--work-group", naming.workgroup_name("modelwerk", "dev"),
                   "--query-string", "SELECT count(*) AS n FROM modelwerk_dev_curated.pump_health")
    query = started["QueryExecutionId"]
    deadline = time.monotonic() + 60
    while True:
        state = _aws(env, "athena", "get-query-execution", "--query-execution-id", query)
        status = state["QueryExecution"]["Status"]
        if status["State"] not in ("QUEUED", "RUNNING") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["State"] == "SUCCEEDED", status
    rows = _aws(env, "athena", "get-query-results", "--query-execution-id", query)["ResultSet"]["Rows"]
    assert rows[0]["Data"][0]["VarCharValue"] == "n" and int(rows[1]["Data"][0]["VarCharValue"]) > 0
