"""Local mode: the whole platform on one machine, no AWS account, no Docker.

``up`` starts the embedded AWS in the background (like ``localstack start``), synthesizes the CDK app if
``cdk.out`` is stale and deploys every environment's stage into its own account, as ``cdk deploy`` would; ``down``
stops it and keeps its state (``down --discard`` forgets it); ``status`` reports. The state survives a stop and a
crash (:mod:`modelwerk.local.state`): the next ``up`` brings back the lake, the catalog, the registry and the endpoints
as they were, and stops what a crashed instance left running. In a notebook, :func:`start` does the same inside the
kernel. Clients find the embedded AWS through the AWS profiles ``up`` writes (one per environment, differing from
AWS's only in the endpoint URL; docs/adr/0007-one-code-path.md), so the code that runs against it is the code that
runs on AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from modelwerk import naming
from modelwerk.errors import LocalModeError
from modelwerk.local import state as local_state

#: Records under .modelwerk/ that point into the embedded AWS (its services' records): kept with its state, cleared
#: when it starts without one (the first ``up``, after ``down --discard``).
DEPENDENT_RECORDS = ("local/deployments", "local/metrics", "runs", "endpoints", "cloudwatch", "athena", "glue",
                     "events", "lambda", "codepipeline", "codebuild", "cloudformation")
LOCAL_ROLE_NAME = "modelwerk-local-deployment"
#: moto's default account, and the credentials that reach it.
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_CREDENTIALS = {"AccessKeyId": "testing", "SecretAccessKey": "testing"}
#: What every verb says when the embedded AWS of this checkout is gone.
NOT_RUNNING = "local mode is not running; `modelwerk local up` starts it"
KEPT = " (your data is kept)"


@dataclass(frozen=True)
class LocalState:
    endpoint_url: str
    region: str
    accounts: dict[str, str]
    pid: int | None
    root: str
    #: Credentials of the dev account: the embedded AWS's default account, or a role assumed into dev's account.
    credentials: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CREDENTIALS))
    #: The SageMaker Runtime the embedded AWS runs for every account's endpoints (routed by the caller's account).
    runtime_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "region": self.region, "accounts": self.accounts,
                "runtime_endpoint_url": self.runtime_url, "aws_config_file": str(profiles_file(self.root))}


def _records_dir(root: Path) -> Path:
    """Local records: ``.modelwerk/`` in the checkout, or ``MODELWERK_STATE_DIR`` (tests keep theirs apart)."""
    from modelwerk import settings as settings_module

    return settings_module.state_dir(root)


def _state_dir(root: Path) -> Path:
    return _records_dir(root) / "local"


def _state_file(root: Path) -> Path:
    return _state_dir(root) / "server.json"


def _root(root: Path | str | None) -> Path:
    from modelwerk import settings as settings_module

    if root:
        return Path(root).resolve()
    found = settings_module.find_checkout()
    if found is None:
        raise LocalModeError("local mode runs from a checkout of the platform: cd into it (where cdk.json is) and try again")
    return found


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this machine still runs (the embedded AWS, the runtime, an endpoint's fleet)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def read_state(root: Path | str | None = None) -> LocalState | None:
    """The running embedded AWS of this checkout, or None."""
    from modelwerk.local.server import is_healthy

    try:
        path = _state_file(_root(root))
    except LocalModeError:
        return None
    if not path.is_file():
        return None
    state = _load_state(path)
    if state.pid is not None and not pid_alive(state.pid):
        return None
    return state if is_healthy(state.endpoint_url) else None


def profiles_file(root: Path | str) -> Path:
    """The AWS configuration ``local up`` writes: a profile per local environment (``docs/adr/0007``)."""
    return _state_dir(Path(root)) / "aws-config"


#: The profile that holds the embedded AWS's default credentials; the environments' profiles assume roles from it.
SOURCE_PROFILE = "modelwerk-local"


def write_profiles(state: LocalState) -> Path:
    """One AWS profile per environment of cdk.json, as a user keeps them for AWS (``role_arn`` + ``source_profile``),
    pointing at the embedded AWS: the only difference from AWS is the endpoint URL. Any client reads them:
    ``AWS_CONFIG_FILE=<this file> AWS_PROFILE=modelwerk-prod aws s3 ls``."""
    from modelwerk import settings as settings_module

    config = settings_module.load(state.root)
    services = "modelwerk-local-services"
    lines = [f"[profile {SOURCE_PROFILE}]", f"region = {state.region}", f"endpoint_url = {state.endpoint_url}",
             f"services = {services}", f"aws_access_key_id = {DEFAULT_CREDENTIALS['AccessKeyId']}",
             f"aws_secret_access_key = {DEFAULT_CREDENTIALS['SecretAccessKey']}", ""]
    for name, environment in config.environments.items():
        lines += [f"[profile {environment.profile_name}]", f"region = {state.region}",
                  f"endpoint_url = {state.endpoint_url}", f"services = {services}"]
        if environment.account == DEFAULT_ACCOUNT:
            lines += [f"aws_access_key_id = {DEFAULT_CREDENTIALS['AccessKeyId']}",
                      f"aws_secret_access_key = {DEFAULT_CREDENTIALS['SecretAccessKey']}"]
        else:
            # the registry's profile takes the role people promote with there, as it does on AWS
            role = (naming.promotion_operator_role_name(config.project) if environment.kind == "registry"
                    else LOCAL_ROLE_NAME)
            lines += [f"role_arn = arn:aws:iam::{environment.account}:role/{role}",
                      f"source_profile = {SOURCE_PROFILE}",
                      # the AWS CLI caches assumed-role keys by role and session name: one name per embedded AWS
                      f"role_session_name = modelwerk-local-{name}-{state.endpoint_url.rsplit(':', 1)[-1]}"]
        lines.append("")
    lines.append(f"[services {services}]")
    if state.runtime_url:
        lines += ["sagemaker_runtime =", f"  endpoint_url = {state.runtime_url}"]
    path = profiles_file(state.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def environment_variables(state: LocalState, env: str = "dev") -> dict[str, str]:
    """What a shell exports to reach ``env``'s account of the embedded AWS (``modelwerk local env``)."""
    from modelwerk import settings as settings_module

    config = settings_module.load(state.root)
    return {"AWS_CONFIG_FILE": str(profiles_file(state.root)),
            "AWS_PROFILE": config.environment(env).profile_name, "AWS_REGION": state.region,
            "AWS_DEFAULT_REGION": state.region}


def _load_state(path: Path) -> LocalState:
    known = set(LocalState.__dataclass_fields__)
    return LocalState(**{k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k in known})


def activate(state: LocalState) -> None:
    """Point every AWS client of this process (and its subprocesses) at the embedded AWS, through dev's profile."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"):
        os.environ.pop(name, None)
    if not profiles_file(state.root).is_file():
        write_profiles(state)
    os.environ.update(environment_variables(state))
    os.environ["MODELWERK_LOCAL_ROOT"] = state.root


def activate_if_running(root: Path | str | None = None) -> LocalState | None:
    """Use the embedded AWS when it runs for this checkout and nothing else was chosen (``AWS_PROFILE``,
    ``AWS_ENDPOINT_URL``)."""
    if os.environ.get("MODELWERK_LOCAL", "1") == "0":
        return None
    if (os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_PROFILE")) and not os.environ.get(
            "MODELWERK_LOCAL_ROOT"):
        return None
    state = read_state(root)
    if state is not None:
        activate(state)
    return state


def session(env: str, state: LocalState | None = None):
    """A boto3 session in the account of ``env``: dev is the embedded AWS's default account, others are assumed."""
    import boto3

    state = state or read_state()
    if state is None:
        raise not_running()
    if env not in state.accounts:
        raise LocalModeError(f"cdk.json has no environment {env!r}; it has {sorted(state.accounts)}")
    credentials = state.credentials if env == "dev" else _assume(state, state.accounts[env], env)
    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                         aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials.get("SessionToken"), region_name=state.region)


def _assume(state: LocalState, account: str, env: str) -> dict[str, str]:
    """Credentials in ``account``, issued by the embedded STS as AWS would issue them to a deployment role."""
    import boto3

    sts = boto3.client("sts", endpoint_url=state.endpoint_url, region_name=state.region,
                       aws_access_key_id=DEFAULT_CREDENTIALS["AccessKeyId"],
                       aws_secret_access_key=DEFAULT_CREDENTIALS["SecretAccessKey"])
    issued = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{LOCAL_ROLE_NAME}",
                             RoleSessionName=f"modelwerk-local-{env}")["Credentials"]
    return {k: issued[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}


def _dev_credentials(state: LocalState) -> dict[str, str]:
    dev = state.accounts["dev"]
    return dict(DEFAULT_CREDENTIALS) if dev == DEFAULT_ACCOUNT else _assume(state, dev, "dev")


def not_running(root: Path | str | None = None) -> LocalModeError:
    """The error every verb gives when this checkout's local mode is not running."""
    try:
        kept = local_state.exists(_records_dir(_root(root)))
    except LocalModeError:
        kept = False
    return LocalModeError(NOT_RUNNING + (KEPT if kept else ""))


def gone(root: Path | str | None = None) -> bool:
    """Whether this checkout used local mode and its embedded AWS is not running now (stopped, or crashed): the
    AWS errors of a verb then mean "start it", not "configure credentials"."""
    try:
        root = _root(root or os.environ.get("MODELWERK_LOCAL_ROOT"))
    except LocalModeError:
        return False
    used = local_state.exists(_records_dir(root)) or _state_file(root).is_file()
    return used and read_state(root) is None


def _clear_dependent_records(root: Path) -> None:
    for name in DEPENDENT_RECORDS:
        path = _records_dir(root) / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def deployment_record(stage: str, root: Path | str | None = None) -> dict[str, Any]:
    path = _state_dir(_root(root)) / "deployments" / f"{stage}.json"
    if not path.is_file():
        raise LocalModeError(f"the {stage} stage is not deployed locally: run 'modelwerk local up'")
    return json.loads(path.read_text(encoding="utf-8"))


def deploy(state: LocalState, root: Path, *, progress=None) -> dict[str, Any]:
    """Synthesize if stale and deploy every environment's stage into its account (the registry first: the others
    read what it shares); returns a summary per stack."""
    from modelwerk import settings as settings_module
    from modelwerk.local import assembly

    activate(state)
    outdir = assembly.synthesize(root)
    config = settings_module.load(root)
    stages = sorted(config.environments, key=lambda name: config.environments[name].kind != "registry")
    summary: dict[str, Any] = {}
    for stage in stages:
        summary.update(_deploy_stage(state, root, outdir, stage, progress))
    return summary


def _deploy_stage(state: LocalState, root: Path, outdir: Path, stage: str, progress=None) -> dict[str, Any]:
    """Deploy one stage's stacks into its account and keep the deployment record."""
    from modelwerk.local import assembly, deployer

    records_dir = _state_dir(root) / "deployments"
    records_dir.mkdir(parents=True, exist_ok=True)
    stage_session = session(stage, state)
    stacks, summary = [], {}
    for stack in assembly.stage_stacks(outdir, stage):
        if progress:
            progress(f"deploying {stack.name}")
        deployment = deployer.deploy_stack(stage_session, stack)
        stacks.append({**deployment.to_dict(), "template_file": str(stack.template_file),
                       "assets_file": str(stack.assets_file) if stack.assets_file else None})
        summary[stack.name] = deployment.summary()
    (records_dir / f"{stage}.json").write_text(json.dumps({"stage": stage, "stacks": stacks}, indent=1))
    return summary


def _write_state(root: Path, state: LocalState) -> None:
    path = _state_file(root)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(asdict(state), indent=1))
    os.replace(partial, path)
    write_profiles(state)


def _accounts(root: Path) -> tuple[str, dict[str, str]]:
    from modelwerk import settings as settings_module

    config = settings_module.load(root)
    dev = config.environment("dev")
    return dev.region, {name: env.account for name, env in config.environments.items()}


def up(root: Path | str | None = None, *, port: int | None = None, progress=None) -> LocalState:
    """Start the embedded AWS in the background (or reuse the running one) and deploy the local stages."""
    from modelwerk.local.server import free_port, wait_healthy

    root = _root(root)
    running = read_state(root)
    if running is not None:
        activate(running)
        if not (_state_dir(root) / "deployments" / "dev.json").is_file():
            deploy(running, root, progress=progress)
        return running
    region, accounts = _accounts(root)
    records = _records_dir(root)
    left = local_state.stop_leftovers(records)  # what a crashed instance left running
    if left and progress:
        progress(f"stopped {len(left)} processes a stopped embedded AWS left running")
    restoring = local_state.exists(records)
    if not restoring:
        _clear_dependent_records(root)
    state_dir = _state_dir(root)
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or int(os.environ.get("MODELWERK_LOCAL_PORT", 0)) or _previous_port(root) or free_port()
    log = open(state_dir / "server.log", "ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env[local_state.MARKER] = str(records.resolve())
    process = subprocess.Popen(
        [sys.executable, "-m", "modelwerk.local.server", "--port", str(port), "--root", str(root),
         "--state-dir", str(records), "--region", region, "--persist"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        cwd=root,
    )
    state = LocalState(endpoint_url=f"http://127.0.0.1:{port}", region=region, accounts=accounts,
                       pid=process.pid, root=str(root))
    if progress:
        progress(f"{'restoring' if restoring else 'starting'} the embedded AWS on {state.endpoint_url}")
    if not wait_healthy(state.endpoint_url, 60):
        process.terminate()
        raise LocalModeError(f"the embedded AWS did not start; see {state_dir / 'server.log'}")
    state = replace(state, credentials=_dev_credentials(state), runtime_url=_runtime_url(state.endpoint_url))
    _write_state(root, state)
    if not (state_dir / "deployments" / "dev.json").is_file():  # a restored deployment stays as it was
        try:
            deploy(state, root, progress=progress)
        except Exception:
            down(root)
            raise
    return state


def _previous_port(root: Path) -> int | None:
    """The port of the last embedded AWS of this checkout, if free: profiles and notebooks keep pointing at it."""
    import socket

    path = _state_file(root)
    if not path.is_file():
        return None
    try:
        port = int(_load_state(path).endpoint_url.rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
        return port
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return None


def _runtime_url(endpoint_url: str) -> str:
    """The SageMaker Runtime's URL, as the embedded AWS publishes it (its ``sagemaker/runtime`` control)."""
    return _post_control(endpoint_url, "sagemaker/runtime", {})["url"]


def _post_control(endpoint_url: str, name: str, body: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{endpoint_url}/modelwerk-api/{name}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        message = json.loads(error.read() or b"{}").get("message", str(error))
        raise LocalModeError(f"the embedded AWS refused {name}: {message}") from None


def control(name: str, body: dict[str, Any] | None = None, *, env: str = "dev",
            root: Path | str | None = None) -> dict[str, Any]:
    """Ask the running embedded AWS to act now instead of at its time (docs/local-mode.md, "Controls"):
    ``cloudwatch/evaluate-alarms`` judges the alarms of ``env``'s account, ``events/fire-schedule`` fires one of its
    scheduled rules (``{"rule": NAME}``), ``events/deliveries`` lists what the event buses delivered. ``account`` and
    ``region`` default to ``env``'s."""
    state = read_state(root)
    if state is None:
        raise not_running()
    if env not in state.accounts:
        raise LocalModeError(f"cdk.json has no environment {env!r}; it has {sorted(state.accounts)}")
    return _post_control(state.endpoint_url, name,
                         {"account": state.accounts[env], "region": state.region, **(body or {})})


#: How long ``down`` lets the embedded AWS stop its fleets and write its last snapshot before it is killed.
STOP_SECONDS = 60


def down(root: Path | str | None = None, *, discard: bool = False) -> bool:
    """Stop the background embedded AWS and every process it started; its state is kept for the next ``up``
    (``discard``: forgotten). True if one was running."""
    root = _root(root)
    path = _state_file(root)
    records = _records_dir(root)
    state = _load_state(path) if path.is_file() else None
    if state is not None and state.pid == os.getpid():
        stop(root)
        if discard:
            _discard(root)
        return True
    was_running = state is not None and pid_alive(state.pid)
    if was_running and state is not None and state.pid:
        try:
            os.killpg(os.getpgid(state.pid), signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + STOP_SECONDS
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
            try:
                os.waitpid(state.pid, os.WNOHANG)
            except ChildProcessError:
                pass
    local_state.stop_leftovers(records)  # what it did not stop (or a crashed one left)
    path.unlink(missing_ok=True)
    _deactivate(state, root, keep_profiles=not discard)
    if discard:
        _discard(root)
    return was_running


def _discard(root: Path) -> None:
    local_state.discard(_records_dir(root))
    _clear_dependent_records(root)


def _deactivate(state: LocalState | None, root: Path | None = None, *, keep_profiles: bool = False) -> None:
    """Forget the embedded AWS in this process's environment, if :func:`activate` pointed at it. The profiles stay
    with kept state (the next ``up`` takes the same port when it can, so a shell that exported them reaches it again;
    meanwhile its clients are refused, which the CLI reports as "not running")."""
    config = str(profiles_file(state.root if state else root))
    if os.environ.get("AWS_CONFIG_FILE") == config or (state and os.environ.get("AWS_ENDPOINT_URL") == state.endpoint_url):
        for name in ("AWS_CONFIG_FILE", "AWS_PROFILE", "AWS_ENDPOINT_URL", "MODELWERK_LOCAL_ROOT",
                     "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"):
            os.environ.pop(name, None)
    if not keep_profiles:
        Path(config).unlink(missing_ok=True)


def status(root: Path | str | None = None) -> dict[str, Any]:
    root = _root(root)
    state = read_state(root)
    kept = {"state_kept": True} if local_state.exists(_records_dir(root)) else {}
    if state is None:
        return {"running": False, **kept}
    stacks = {}
    for path in sorted((_state_dir(root) / "deployments").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        for stack in record["stacks"]:
            counts: dict[str, int] = {}
            for resource in stack["resources"].values():
                counts[resource["via"]] = counts.get(resource["via"], 0) + 1
            stacks[stack["stack_name"]] = counts
    return {"running": True, **kept, **state.to_json(), "pid": state.pid, "stacks": stacks}


_in_process: Any = None


def start(root: Path | str | None = None) -> LocalState:
    """Local mode inside this Python process (a notebook): embedded AWS on a thread, stages deployed, clients pointed."""
    global _in_process
    from modelwerk.local.server import EmbeddedAWS, free_port

    root = _root(root)
    running = read_state(root)
    if running is not None:
        activate(running)
        return running
    region, accounts = _accounts(root)
    records = _records_dir(root)
    local_state.stop_leftovers(records)
    restoring = local_state.exists(records)
    if not restoring:
        _clear_dependent_records(root)
    _in_process = EmbeddedAWS(port=free_port(), root=root, state_dir=records, region=region, persist=True).start()
    state = LocalState(endpoint_url=_in_process.endpoint_url, region=region, accounts=accounts, pid=os.getpid(),
                       root=str(root))
    state = replace(state, credentials=_dev_credentials(state), runtime_url=_runtime_url(state.endpoint_url))
    _state_dir(root).mkdir(parents=True, exist_ok=True)
    _write_state(root, state)
    activate(state)
    if not (_state_dir(root) / "deployments" / "dev.json").is_file():
        deploy(state, root)
    return state


def stop(root: Path | str | None = None) -> None:
    """End in-process local mode started with :func:`start` (its state is kept for the next start or ``up``); one
    that :func:`start` found running (``local up``) is left running, and only this process stops pointing at it."""
    global _in_process
    root = _root(root)
    if _in_process is None:
        for name in ("AWS_CONFIG_FILE", "AWS_PROFILE", "MODELWERK_LOCAL_ROOT"):
            os.environ.pop(name, None)
        return
    _in_process.stop()
    _in_process = None
    _state_file(root).unlink(missing_ok=True)
    _deactivate(None, root, keep_profiles=True)
