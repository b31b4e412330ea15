"""CodeBuild builds: the project moto stores, its buildspec run on this machine, with CodeBuild's phases, logs,
exported variables and records.

A build is a ``Build`` (botocore's shape) kept as JSON under the server's ``codebuild/builds/`` folder, so it
outlives the thread that ran it and the server. It runs as CodeBuild runs one: PROVISIONING (the build's Python and
credentials: the project's service role, assumed in the embedded STS), DOWNLOAD_SOURCE (the S3 zip or folder of the
project or of StartBuild's overrides, into a fresh folder; the buildspec read from it or given inline), then the
buildspec's phases in one bash process (:mod:`.shell`) under CodeBuild's rules: a failed install or pre_build ends
the build, a failed build still runs post_build, ``on-failure: CONTINUE`` goes on, ``finally`` always runs. Its
output goes to the project's CloudWatch Logs group (``/aws/codebuild/<project>`` unless the project names one), one
stream per build named by the build id's uuid. The project's timeout ends it TIMED_OUT, StopBuild STOPPED.

Not run here: sources other than S3 and NO_SOURCE, build artifacts (a buildspec with an ``artifacts`` section in a
project with artifacts fails saying so), batch builds, reports, caches, VPC settings, images (the build runs with
this machine's tools: :mod:`.toolchain`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelwerk.local.services._context import ensure_log_stream
from modelwerk.local.services.codebuild import buildspec, exceptions, toolchain
from modelwerk.local.services.codebuild.shell import BuildShell, Interrupted, ShellEnded

log = logging.getLogger("modelwerk.local.codebuild")

#: CodeBuild's default build timeout when the project sets none, and the range StartBuild accepts.
DEFAULT_TIMEOUT_MINUTES = 60
TIMEOUT_RANGE = (5, 2160)
DEFAULT_QUEUED_TIMEOUT_MINUTES = 480
#: Seconds of one minute of a build's timeout (a test shortens it to see a build time out).
MINUTE_SECONDS = 60.0
#: A build's phases, in order.
PHASE_ORDER = ("SUBMITTED", "QUEUED", "PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD", "BUILD",
               "POST_BUILD", "UPLOAD_ARTIFACTS", "FINALIZING", "COMPLETED")
_SOURCE_TYPES = ("S3", "NO_SOURCE")
_SHIP_SECONDS = 2.0
_TIMESTAMPS = ("startTime", "endTime")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _container(message: str) -> str:
    """A line of CodeBuild's own in a build's log."""
    return f"[Container] {datetime.now(timezone.utc):%Y/%m/%d %H:%M:%S} {message}"


def _seconds_between(start: str, end: str) -> int:
    return int(round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()))


class BuildFailure(Exception):
    """A phase before the buildspec's commands failed: CodeBuild's status code and message."""

    def __init__(self, status_code: str, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class _Log:
    """The build's output, shipped to its CloudWatch Logs stream every few seconds (nothing when logs are off)."""

    def __init__(self, client: Any, group: str | None, stream: str):
        self.client, self.group, self.stream = client, group, stream
        self.pending: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.created = False
        self.thread = threading.Thread(target=self._loop, name=f"codebuild-logs-{stream}", daemon=True)
        self.thread.start()

    def container(self, message: str) -> None:
        self.line(_container(message))

    def line(self, text: str) -> None:
        if self.group is None:
            return
        with self.lock:
            self.pending.append({"timestamp": int(time.time() * 1000), "message": text or " "})

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=10)
        self._ship()

    def _loop(self) -> None:
        while not self.done.wait(_SHIP_SECONDS):
            self._ship()

    def _ship(self) -> None:
        with self.lock:
            events, self.pending = self.pending, []
        if not events or self.group is None:
            return
        try:
            if not self.created:
                ensure_log_stream(self.client, self.group, self.stream)
                self.created = True
            for start in range(0, len(events), 1000):
                self.client.put_log_events(logGroupName=self.group, logStreamName=self.stream,
                                           logEvents=events[start:start + 1000])
        except Exception as error:  # noqa: BLE001 - as on CodeBuild, a lost log line never fails the build
            log.warning("log lines of build %s not shipped: %s", self.stream, error)


class _Build:
    """One build: its record, and while it runs, what was asked of it."""

    def __init__(self, account: str, region: str, record: dict[str, Any], path: Path):
        self.account = account
        self.region = region
        self.record = record
        self.path = path
        self.stop_requested = threading.Event()

    @property
    def uuid(self) -> str:
        return self.record["id"].rsplit(":", 1)[-1]

    def save(self) -> None:
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.record, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, self.path)


class Builds:
    """Every account's builds in this server: started, run, stopped, recorded."""

    def __init__(self) -> None:
        self.context: Any = None
        self._builds: dict[str, _Build] = {}
        self._lock = threading.RLock()

    # -- life of the service ----------------------------------------------------------------------------------------
    def start(self, context: Any) -> None:
        """Load the recorded builds; a build the server was running when it last stopped did not finish.

        When the server stops, a running build sees it between two checks of its shell and ends FAILED saying so.
        """
        self.context = context
        self._builds = {}
        for path in sorted(self._folder().glob("*/*/*.json")):
            build = _Build(path.parts[-3], path.parts[-2], json.loads(path.read_text(encoding="utf-8")), path)
            if not build.record.get("buildComplete"):
                phase = self._open_phase(build)
                self._close_phase(build, phase, "FAILED", "CLIENT_ERROR", "the embedded AWS stopped during this build")
                self._finish(build, "FAILED")
            self._builds[build.record["id"]] = build

    def _folder(self) -> Path:
        return self.context.folder("codebuild", "builds")

    # -- the operations ---------------------------------------------------------------------------------------------
    def start_build(self, account: str, region: str, params: dict[str, Any], initiator: str) -> dict[str, Any]:
        project = _project(account, region, params["projectName"])
        source = _source(project, params)
        timeout = int(params.get("timeoutInMinutesOverride") or project.get("timeoutInMinutes")
                      or DEFAULT_TIMEOUT_MINUTES)
        if "timeoutInMinutesOverride" in params and not TIMEOUT_RANGE[0] <= timeout <= TIMEOUT_RANGE[1]:
            raise exceptions.invalid_input(f"timeoutInMinutesOverride must be between {TIMEOUT_RANGE[0]} and "
                                           f"{TIMEOUT_RANGE[1]}")
        environment = dict(project.get("environment") or {})
        for name in ("environmentType", "image", "computeType", "privilegedMode", "certificate",
                     "imagePullCredentialsType"):
            if f"{name}Override" in params:
                environment["type" if name == "environmentType" else name] = params[f"{name}Override"]
        environment["environmentVariables"] = _merged_variables(environment.get("environmentVariables") or [],
                                                                params.get("environmentVariablesOverride") or [])
        build_uuid = str(uuid.uuid4())
        build_id = f"{project['name']}:{build_uuid}"
        now = _now()
        record: dict[str, Any] = {
            "id": build_id,
            "arn": f"arn:aws:codebuild:{region}:{account}:build/{build_id}",
            "buildNumber": 0,
            "startTime": now,
            "currentPhase": "QUEUED",
            "buildStatus": "IN_PROGRESS",
            "projectName": project["name"],
            "phases": [{"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED", "startTime": now, "endTime": now,
                        "durationInSeconds": 0},
                       {"phaseType": "QUEUED", "startTime": now}],
            "source": source,
            "secondarySources": [],
            "secondarySourceVersions": [],
            "secondaryArtifacts": [],
            "cache": project.get("cache") or {"type": "NO_CACHE"},
            "environment": environment,
            "serviceRole": params.get("serviceRoleOverride") or project.get("serviceRole"),
            "logs": _logs(project, params, account, region, build_uuid),
            "timeoutInMinutes": timeout,
            "queuedTimeoutInMinutes": int(params.get("queuedTimeoutInMinutesOverride")
                                          or project.get("queuedTimeoutInMinutes") or DEFAULT_QUEUED_TIMEOUT_MINUTES),
            "buildComplete": False,
            "initiator": initiator,
            "encryptionKey": params.get("encryptionKeyOverride") or project.get("encryptionKey"),
        }
        version = params.get("sourceVersion") or project.get("sourceVersion")
        if version:
            record["sourceVersion"] = version
        artifacts = params.get("artifactsOverride") or project.get("artifacts") or {}
        if artifacts.get("type") not in (None, "NO_ARTIFACTS"):
            record["artifacts"] = {"location": artifacts.get("location", "")} \
                if artifacts.get("type") == "S3" else {}
        folder = self._folder() / account / region
        folder.mkdir(parents=True, exist_ok=True)
        build = _Build(account, region, {k: v for k, v in record.items() if v is not None},
                       folder / f"{build_uuid}.json")
        with self._lock:
            build.record["buildNumber"] = self._next_number(account, region, project["name"])
            build.save()
            self._builds[build_id] = build
            answer = _answer(build)
        self.context.spawn(f"codebuild-{build_uuid}", self._execute, build, artifacts.get("type") or "NO_ARTIFACTS")
        return answer

    def batch_get_builds(self, account: str, region: str, ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        if not ids or len(ids) > 100:
            raise exceptions.invalid_input("ids must name between 1 and 100 builds")
        found, missing = [], []
        for build_id in ids:
            build = self._get(account, region, build_id)
            if build is None:
                missing.append(build_id)
                continue
            with self._lock:
                found.append(_answer(build))
        return found, missing

    def stop_build(self, account: str, region: str, build_id: str) -> dict[str, Any]:
        build = self._get(account, region, build_id)
        if build is None:
            raise exceptions.build_not_found(build_id)
        build.stop_requested.set()
        with self._lock:
            return _answer(build)

    def build_ids(self, account: str, region: str, project_name: str | None, descending: bool) -> list[str]:
        """Ids of the builds of the account (of one project), newest first unless ``descending`` is False."""
        with self._lock:
            builds = [b for b in self._builds.values() if (b.account, b.region) == (account, region)
                      and project_name in (None, b.record["projectName"])]
        builds.sort(key=lambda b: (b.record["startTime"], b.record["buildNumber"]), reverse=descending)
        return [b.record["id"] for b in builds]

    def _get(self, account: str, region: str, build_id: str) -> _Build | None:
        with self._lock:
            build = self._builds.get(build_id.rsplit("build/", 1)[-1])
        return build if build is not None and (build.account, build.region) == (account, region) else None

    def _next_number(self, account: str, region: str, project_name: str) -> int:
        with self._lock:
            return 1 + max((b.record["buildNumber"] for b in self._builds.values()
                            if (b.account, b.region, b.record["projectName"]) == (account, region, project_name)),
                           default=0)

    # -- phases -----------------------------------------------------------------------------------------------------
    def _set(self, build: _Build, **fields: Any) -> None:
        with self._lock:
            build.record.update(fields)
            build.save()

    def _open_phase(self, build: _Build, phase_type: str | None = None) -> dict[str, Any]:
        """Start ``phase_type`` (the phase in progress ends SUCCEEDED); without one, the phase in progress, else the
        phase after the last one (where a failure outside the buildspec's commands is recorded)."""
        with self._lock:
            phases = build.record["phases"]
            last = phases[-1]
            if phase_type is None and "phaseStatus" not in last and last["phaseType"] != "QUEUED":
                return last
            if "phaseStatus" not in last:
                self._end_phase(last, "SUCCEEDED")
            if phase_type is None:
                phase_type = PHASE_ORDER[PHASE_ORDER.index(last["phaseType"]) + 1]
            phase = {"phaseType": phase_type, "startTime": _now()}
            phases.append(phase)
            self._set(build, currentPhase=phase["phaseType"])
            return phase

    @staticmethod
    def _end_phase(phase: dict[str, Any], status: str, status_code: str = "", message: str = "") -> None:
        phase.update(phaseStatus=status, endTime=_now(), contexts=[{"statusCode": status_code, "message": message}])
        phase["durationInSeconds"] = _seconds_between(phase["startTime"], phase["endTime"])

    def _close_phase(self, build: _Build, phase: dict[str, Any], status: str, status_code: str = "",
                     message: str = "") -> None:
        with self._lock:
            self._end_phase(phase, status, status_code, message)
            build.save()

    def _finish(self, build: _Build, status: str, exported: list[dict[str, str]] | None = None) -> None:
        """FINALIZING, then COMPLETED: the build's end."""
        finalizing = self._open_phase(build, "FINALIZING")
        self._close_phase(build, finalizing, "SUCCEEDED")
        now = _now()
        with self._lock:
            build.record["phases"].append({"phaseType": "COMPLETED", "startTime": now})
            fields: dict[str, Any] = {"currentPhase": "COMPLETED", "buildStatus": status, "endTime": now,
                                      "buildComplete": True}
            if exported is not None:
                fields["exportedEnvironmentVariables"] = exported
            self._set(build, **fields)

    # -- a build ----------------------------------------------------------------------------------------------------
    def _execute(self, build: _Build, artifacts_type: str) -> None:
        """Provision, fetch the source, run the buildspec's phases; record the end, whatever happens."""
        work = self.context.folder("codebuild", "work", build.uuid)
        logs = build.record["logs"]
        sink = _Log(self.context.client("logs", build.account, build.region), logs.get("groupName"),
                    logs.get("streamName", build.uuid))
        deadline = time.monotonic() + build.record["timeoutInMinutes"] * MINUTE_SECONDS
        shell: BuildShell | None = None
        try:
            phase = self._open_phase(build, "PROVISIONING")
            sink.container(f"Running build {build.record['id']} on the embedded AWS")
            python = toolchain.build_python(self.context.folder("codebuild", "python"))
            env = self._environment(build, work / "src", python)
            self._close_phase(build, phase, "SUCCEEDED")
            phase = self._open_phase(build, "DOWNLOAD_SOURCE")
            spec = self._download_source(build, work / "src", sink)
            if spec.artifacts is not None and artifacts_type != "NO_ARTIFACTS":
                raise BuildFailure("CLIENT_ERROR", "the embedded AWS does not upload build artifacts: the buildspec's "
                                                   "artifacts section cannot run locally")
            env.update(self._buildspec_variables(build, spec))
            env.update(self._project_variables(build))
            env.update(_codebuild_variables(build, work / "src"))
            self._close_phase(build, phase, "SUCCEEDED")
            for name in spec.ignored:
                sink.container(f"{name} is not applied by the embedded AWS")
            shell = BuildShell(work / "shell", env, work / "src", sink.line,
                               lambda: self._interruption(build, deadline))
            shell.start()
            status, exported = self._run_phases(build, spec, shell, sink)
        except BuildFailure as failure:
            phase = self._open_phase(build)
            sink.container(f"Phase complete: {phase['phaseType']} State: FAILED")
            sink.container(f"Phase context status code: {failure.status_code} Message: {failure.message}")
            self._close_phase(build, phase, "FAILED", failure.status_code, failure.message)
            status, exported = "FAILED", None
        except Exception as failure:  # noqa: BLE001 - a build that breaks here ends FAILED with why, never hangs
            log.exception("build %s failed to run", build.record["id"])
            phase = self._open_phase(build)
            message = f"the embedded AWS could not run the build: {type(failure).__name__}: {failure}"
            self._close_phase(build, phase, "FAILED", "CLIENT_ERROR", message)
            status, exported = "FAILED", None
        finally:
            if shell is not None:
                shell.close()
            sink.close()
            shutil.rmtree(work, ignore_errors=True)
        self._finish(build, status, exported)

    def _interruption(self, build: _Build, deadline: float) -> str | None:
        if build.stop_requested.is_set():
            return "STOPPED"
        if self.context.stopping.is_set():
            return "SERVER_STOPPED"
        if time.monotonic() > deadline:
            return "TIMED_OUT"
        return None

    def _run_phases(self, build: _Build, spec: buildspec.Buildspec, shell: BuildShell,
                    sink: _Log) -> tuple[str, list[dict[str, str]] | None]:
        """The buildspec's phases under CodeBuild's rules; the build's status and its exported variables."""
        failed = aborted = False
        for phase_spec in spec.phases:
            phase = self._open_phase(build, phase_spec.name)
            try:
                outcome = self._run_phase(phase_spec, shell)
            except Interrupted as interruption:
                return self._interrupted(build, phase, interruption.reason, sink), None
            except ShellEnded as ended:
                message = f"the build's shell ended (exit status {ended.returncode}): later phases cannot run"
                sink.container(message)
                self._close_phase(build, phase, "FAILED", "COMMAND_EXECUTION_ERROR", message)
                return "FAILED", None
            self._close_phase(build, phase, "FAILED" if outcome else "SUCCEEDED",
                              "COMMAND_EXECUTION_ERROR" if outcome else "", outcome or "")
            failed = failed or outcome is not None
            if outcome and phase_spec.name in ("INSTALL", "PRE_BUILD") and phase_spec.on_failure == "ABORT":
                aborted = True  # CodeBuild goes on to FINALIZING
                break
        if not aborted:
            phase = self._open_phase(build, "UPLOAD_ARTIFACTS")
        exported = self._exported(spec, shell, sink)
        if not aborted:
            self._close_phase(build, phase, "SUCCEEDED")
        return ("FAILED" if failed else "SUCCEEDED"), exported

    def _run_phase(self, phase: buildspec.Phase, shell: BuildShell) -> str | None:
        """The phase's commands, then its ``finally`` commands; None, or the failure's message (CodeBuild's)."""
        shell.say(_container(f"Entering phase {phase.name}"))
        if phase.runtime_versions:
            shell.say(_container("runtime-versions recorded, not installed (the machine's tools run): "
                                 + ", ".join(f"{k} {v}" for k, v in phase.runtime_versions.items())))
        failure = None
        for block in (phase.commands, phase.finally_commands):
            for command in block:
                status = shell.run(command, title=f"Running command {command}")
                if status != 0:
                    failure = failure or f"Error while executing command: {command}. Reason: exit status {status}"
                    shell.say(_container(f"Command did not exit successfully {command} exit status {status}"))
                    break
        if failure:
            shell.run("export CODEBUILD_BUILD_SUCCEEDING=0")
        shell.say(_container(f"Phase complete: {phase.name} State: {'FAILED' if failure else 'SUCCEEDED'}"))
        if failure:
            shell.say(_container(f"Phase context status code: COMMAND_EXECUTION_ERROR Message: {failure}"))
        return failure

    def _interrupted(self, build: _Build, phase: dict[str, Any], reason: str, sink: _Log) -> str:
        if reason == "TIMED_OUT":
            message = f"Build timed out after {build.record['timeoutInMinutes']} minutes"
            self._close_phase(build, phase, "TIMED_OUT", "BUILD_TIMED_OUT", message)
            sink.container(message)
            return "TIMED_OUT"
        if reason == "STOPPED":
            self._close_phase(build, phase, "STOPPED", "BUILD_STOPPED", "Build was stopped")
            sink.container("Build was stopped")
            return "STOPPED"
        message = "the embedded AWS stopped during this build"
        self._close_phase(build, phase, "FAILED", "CLIENT_ERROR", message)
        return "FAILED"

    def _exported(self, spec: buildspec.Buildspec, shell: BuildShell, sink: _Log) -> list[dict[str, str]] | None:
        """The values of ``env.exported-variables`` as the build leaves them (empty when unset)."""
        if not spec.exported_variables:
            return []
        target = shell.folder / "exported"
        script = "".join(f"printf '%s\\0' \"${{{name}-}}\"\n" for name in spec.exported_variables)
        try:
            shell.run(f"{{\n{script}}} > '{target}'")
        except (Interrupted, ShellEnded) as error:
            sink.container(f"exported variables not read: {error}")
            return None
        values = target.read_bytes().split(b"\0")
        return [{"name": name, "value": value.decode("utf-8", "replace")}
                for name, value in zip(spec.exported_variables, values)]

    # -- provisioning and source ------------------------------------------------------------------------------------
    def _environment(self, build: _Build, src: Path, python: Path) -> dict[str, str]:
        """The build process's environment: the machine's (no AWS settings of the server's), the build's Python
        first on PATH, the service role's credentials against this server."""
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("AWS_", "PYTHON", "PIP_", "VIRTUAL_ENV", "CODEBUILD_", "MW_"))}
        env.update(self.context.credentials(build.account, build.region))
        env.update(self._role_credentials(build))
        home = src.parent / "home"
        home.mkdir(parents=True, exist_ok=True)
        env.update({"PATH": toolchain.path_variable(python), "VIRTUAL_ENV": str(python), "HOME": str(home),
                    "PYTHONUNBUFFERED": "1", "AWS_CONFIG_FILE": os.devnull,
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                    "TMPDIR": str(home)})
        return env

    def _role_credentials(self, build: _Build) -> dict[str, str]:
        """The project's service role, assumed as CodeBuild assumes it for a build."""
        role = build.record.get("serviceRole") or ""
        if not role.startswith("arn:"):
            return {}
        sts = self.context.client("sts", build.account, build.region)
        issued = sts.assume_role(RoleArn=role, RoleSessionName=f"AWSCodeBuild-{build.uuid}")["Credentials"]
        return {"AWS_ACCESS_KEY_ID": issued["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": issued["SecretAccessKey"],
                "AWS_SESSION_TOKEN": issued["SessionToken"]}

    def _download_source(self, build: _Build, src: Path, sink: _Log) -> buildspec.Buildspec:
        """The source into ``src`` and the buildspec it runs."""
        src.mkdir(parents=True, exist_ok=True)
        source = build.record["source"]
        if source["type"] == "S3":
            resolved = self._download_s3(build, source.get("location") or "", build.record.get("sourceVersion"),
                                         src)
            if resolved:
                self._set(build, resolvedSourceVersion=resolved)
            sink.container(f"Processing primary source and downloaded it to {src}")
        elif source["type"] != "NO_SOURCE":
            raise BuildFailure("CLIENT_ERROR", f"the embedded AWS runs builds of S3 and NO_SOURCE sources, not "
                                               f"{source['type']}")
        text = source.get("buildspec") or ""
        try:
            if text and buildspec.looks_inline(text):
                return buildspec.parse(text)
            if source["type"] == "NO_SOURCE":
                raise buildspec.BuildspecError("a NO_SOURCE project needs its buildspec inline")
            name = text or "buildspec.yml"
            if name.startswith("arn:aws:s3:::"):
                bucket, _, key = name[len("arn:aws:s3:::"):].partition("/")
                body = self.context.client("s3", build.account, build.region).get_object(Bucket=bucket, Key=key)
                return buildspec.parse(body["Body"].read().decode("utf-8"))
            path = (src / name).resolve()
            if not path.is_relative_to(src.resolve()) or not path.is_file():
                raise buildspec.BuildspecError(f"stat {name}: no such file or directory in the source")
            return buildspec.parse(path.read_text(encoding="utf-8"))
        except buildspec.BuildspecError as error:
            raise BuildFailure("YAML_FILE_ERROR", str(error)) from None

    def _download_s3(self, build: _Build, location: str, version: str | None, src: Path) -> str | None:
        """A zip (unpacked) or a folder of objects (``bucket/prefix/``); the object version read, if any."""
        bucket, _, key = location.removeprefix("s3://").partition("/")
        if not bucket:
            raise BuildFailure("CLIENT_ERROR", f"invalid S3 source location {location!r}: expected <bucket>/<key>")
        s3 = self.context.client("s3", build.account, build.region)
        try:
            if not key or key.endswith("/"):
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                    for item in page.get("Contents", []):
                        target = src / item["Key"][len(key):]
                        if not item["Key"].endswith("/"):
                            target.parent.mkdir(parents=True, exist_ok=True)
                            s3.download_file(bucket, item["Key"], str(target))
                return None
            extra = {"VersionId": version} if version else {}
            answer = s3.get_object(Bucket=bucket, Key=key, **extra)
            archive = src.parent / "source.zip"
            with archive.open("wb") as out:
                shutil.copyfileobj(answer["Body"], out)
        except Exception as error:  # noqa: BLE001 - botocore's ClientError; CodeBuild's CLIENT_ERROR with why
            raise BuildFailure("CLIENT_ERROR", f"error while downloading the source from s3://{bucket}/{key}: "
                                               f"{error}") from None
        if not zipfile.is_zipfile(archive):
            raise BuildFailure("CLIENT_ERROR", f"s3://{bucket}/{key} is not a zip archive: an S3 source is a zip "
                                               "or a folder")
        with zipfile.ZipFile(archive) as opened:
            for member in opened.namelist():
                if not (src / member).resolve().is_relative_to(src.resolve()):
                    raise BuildFailure("CLIENT_ERROR", f"the source zip names a path outside its folder: {member}")
            opened.extractall(src)
        archive.unlink()
        return answer.get("VersionId") or version

    def _buildspec_variables(self, build: _Build, spec: buildspec.Buildspec) -> dict[str, str]:
        """``env.variables``, ``env.parameter-store`` and ``env.secrets-manager`` of the buildspec."""
        values = dict(spec.variables)
        for name, parameter in spec.parameter_store.items():
            values[name] = self._parameter(build, parameter)
        for name, reference in spec.secrets_manager.items():
            values[name] = self._secret(build, reference)
        return values

    def _project_variables(self, build: _Build) -> dict[str, str]:
        """The project's and StartBuild's variables, Parameter Store and Secrets Manager values read."""
        values = {}
        for variable in build.record["environment"]["environmentVariables"]:
            kind, value = variable.get("type", "PLAINTEXT"), variable["value"]
            if kind == "PARAMETER_STORE":
                value = self._parameter(build, value)
            elif kind == "SECRETS_MANAGER":
                value = self._secret(build, value)
            values[variable["name"]] = value
        return values

    def _parameter(self, build: _Build, name: str) -> str:
        ssm = self.context.client("ssm", build.account, build.region)
        try:
            return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except Exception as error:  # noqa: BLE001 - CodeBuild fails the build naming the parameter
            raise BuildFailure("CLIENT_ERROR", f"Parameter Store: cannot read {name}: {error}") from None

    def _secret(self, build: _Build, reference: str) -> str:
        """``secret-id[:json-key[:version-stage[:version-id]]]`` (the secret id may be an ARN, with colons)."""
        secret_id, rest = reference, []
        if reference.startswith("arn:"):
            parts = reference.split(":")
            secret_id, rest = ":".join(parts[:7]), parts[7:]
        else:
            secret_id, *rest = reference.split(":")
        json_key, stage, version = (rest + ["", "", ""])[:3]
        client = self.context.client("secretsmanager", build.account, build.region)
        args: dict[str, str] = {"SecretId": secret_id}
        if stage:
            args["VersionStage"] = stage
        if version:
            args["VersionId"] = version
        try:
            value = client.get_secret_value(**args)["SecretString"]
            return str(json.loads(value)[json_key]) if json_key else value
        except Exception as error:  # noqa: BLE001 - CodeBuild fails the build naming the secret
            raise BuildFailure("CLIENT_ERROR", f"Secrets Manager: cannot read {reference}: {error}") from None


def _project(account: str, region: str, name: str) -> dict[str, Any]:
    """The project as moto stores it (``BatchGetProjects``' shape), by name or ARN."""
    from moto.codebuild.models import codebuild_backends

    backend = codebuild_backends[account][region]
    for project in backend.codebuild_projects.values():
        if name in (project.project_metadata["name"], project.arn):
            return project.project_metadata
    raise exceptions.project_not_found(name)


def project_exists(account: str, region: str, name: str) -> bool:
    try:
        _project(account, region, name)
    except Exception:  # noqa: BLE001 - AwsError: not there
        return False
    return True


def _source(project: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The build's source: the project's, with StartBuild's overrides."""
    source = dict(project.get("source") or {"type": "NO_SOURCE"})
    if params.get("sourceTypeOverride"):
        source = {"type": params["sourceTypeOverride"], **({"buildspec": source["buildspec"]}
                                                          if source.get("buildspec") else {})}
    if params.get("sourceLocationOverride"):
        source["location"] = params["sourceLocationOverride"]
    if params.get("buildspecOverride"):
        source["buildspec"] = params["buildspecOverride"]
    if source["type"] == "CODEPIPELINE":
        raise exceptions.invalid_input("a CODEPIPELINE source is the pipeline's input artifact: start the build "
                                       "with sourceTypeOverride S3 and sourceLocationOverride <bucket>/<key>")
    if source["type"] == "S3" and not source.get("location"):
        raise exceptions.invalid_input("an S3 source needs a location (<bucket>/<key>)")
    return source


def _merged_variables(project: list[dict[str, Any]], overrides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The project's environment variables with StartBuild's over them (by name)."""
    merged = {v["name"]: {"type": "PLAINTEXT", **v} for v in project}
    for variable in overrides:
        merged[variable["name"]] = {"type": "PLAINTEXT", **variable}
    return list(merged.values())


def _logs(project: dict[str, Any], params: dict[str, Any], account: str, region: str,
          build_uuid: str) -> dict[str, Any]:
    """The build's LogsLocation: CloudWatch Logs unless the project (or StartBuild) turns them off."""
    config = params.get("logsConfigOverride") or project.get("logsConfig") or {}
    cloudwatch = dict(config.get("cloudWatchLogs") or {"status": "ENABLED"})
    s3_logs = dict(config.get("s3Logs") or {"status": "DISABLED"})
    logs: dict[str, Any] = {"cloudWatchLogs": cloudwatch, "s3Logs": s3_logs}
    if cloudwatch.get("status", "ENABLED") != "ENABLED":
        return logs
    group = cloudwatch.get("groupName") or f"/aws/codebuild/{project['name']}"
    stream = f"{cloudwatch['streamName']}/{build_uuid}" if cloudwatch.get("streamName") else build_uuid
    logs.update(groupName=group, streamName=stream,
                deepLink=f"https://console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/"
                         f"log-group/{group.replace('/', '$252F')}/log-events/{stream.replace('/', '$252F')}",
                cloudWatchLogsArn=f"arn:aws:logs:{region}:{account}:log-group:{group}:log-stream:{stream}")
    return logs


def _codebuild_variables(build: _Build, src: Path) -> dict[str, str]:
    """CodeBuild's own variables of a build."""
    record = build.record
    source = record["source"]
    values = {
        "CODEBUILD_BUILD_ARN": record["arn"],
        "CODEBUILD_BUILD_ID": record["id"],
        "CODEBUILD_BUILD_NUMBER": str(record["buildNumber"]),
        "CODEBUILD_BUILD_IMAGE": record["environment"].get("image", ""),
        "CODEBUILD_BUILD_SUCCEEDING": "1",
        "CODEBUILD_INITIATOR": record.get("initiator", ""),
        "CODEBUILD_KMS_KEY_ID": record.get("encryptionKey", ""),
        "CODEBUILD_LOG_PATH": record["logs"].get("streamName", build.uuid),
        "CODEBUILD_PROJECT_ARN": record["arn"].split(":build/")[0] + f":project/{record['projectName']}",
        "CODEBUILD_RESOLVED_SOURCE_VERSION": record.get("resolvedSourceVersion", ""),
        "CODEBUILD_SOURCE_REPO_URL": f"s3://{source['location']}" if source["type"] == "S3" else "",
        "CODEBUILD_SOURCE_VERSION": record.get("sourceVersion", ""),
        "CODEBUILD_SRC_DIR": str(src),
        "CODEBUILD_START_TIME": str(int(datetime.fromisoformat(record["startTime"]).timestamp() * 1000)),
        "AWS_REGION": build.region,
        "AWS_DEFAULT_REGION": build.region,
    }
    return values


def _answer(build: _Build) -> dict[str, Any]:
    """The record in botocore's Build shape: timestamps as datetimes (a copy: take it under the builds' lock)."""
    record = json.loads(json.dumps(build.record))
    for item in [record, *record.get("phases", [])]:
        for name in _TIMESTAMPS:
            if name in item:
                item[name] = datetime.fromisoformat(item[name])
    return record


def caller_name(account: str, region: str, access_key: str) -> str:
    """CodeBuild's ``initiator`` of a build the caller starts: the IAM user's name, or ``<role>/<session>``."""
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    try:
        _, arn, _ = sts_backends[account][get_partition(region)].get_caller_identity(access_key, region)
    except Exception:  # noqa: BLE001 - an identity moto does not know: the account's root
        return "root"
    resource = arn.split(":", 5)[-1]
    kind, _, name = resource.partition("/")
    return name if kind in ("user", "assumed-role") else resource


#: The builds of this server (one per process, like moto's backends).
builds = Builds()
