"""CodePipeline executions: the stored pipeline structure run stage by stage, action by action.

moto keeps pipelines (Create/Get/Update/List); executions are ours from start to end. Each runs on a thread of the
server in the pipeline's account: stages in order, the actions of a stage by ``runOrder``, each action by the
runner of its type (:mod:`.actions`), with the artifacts in the pipeline's artifact store. A V2 pipeline in QUEUED
mode (the default of V2) lets one execution into a stage at a time; the others wait at the stage's entrance, in the
order they started. An action that fails fails its stage and the execution, with the action's message as the
execution's summary. CodePipeline's events ("CodePipeline Pipeline/Stage/Action Execution State Change") go to the
account's default bus as states change, where the deployed rules match them.

An execution's record (``<state>/codepipeline/<account>/<region>/<pipeline>/<execution id>.json``) is what the API
answers from; one left in progress by a server that stopped is Failed when the server starts again.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from modelwerk.local.services._routing import AwsError, validation_error
from modelwerk.local.services.codepipeline import variables as pipeline_variables

log = logging.getLogger("modelwerk.local")

SOURCE = "aws.codepipeline"
PIPELINE_STATE_CHANGE = "CodePipeline Pipeline Execution State Change"
STAGE_STATE_CHANGE = "CodePipeline Stage Execution State Change"
ACTION_STATE_CHANGE = "CodePipeline Action Execution State Change"
IN_PROGRESS, SUCCEEDED, FAILED, STOPPED, STOPPING = "InProgress", "Succeeded", "Failed", "Stopped", "Stopping"
ABANDONED = "Abandoned"
SERVER_STOPPED = "the embedded AWS stopped while the execution ran"
#: How long a manual approval waits for an answer (CodePipeline's seven days).
APPROVAL_EXPIRY = timedelta(days=7)
_EVENT_STATE = {IN_PROGRESS: "STARTED", SUCCEEDED: "SUCCEEDED", FAILED: "FAILED", STOPPED: "STOPPED",
                STOPPING: "STOPPING", ABANDONED: "ABANDONED", "Canceled": "CANCELED"}


def now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class ActionFailed(Exception):
    """An action that did not succeed: its CodePipeline error code and message (the execution's summary)."""

    def __init__(self, message: str, code: str = "JobFailed", external_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.external_id = external_id


@dataclass
class ActionOutcome:
    """What a runner reports of a successful action."""

    summary: str = ""
    external_id: str | None = None
    external_url: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {"bucket", "key"}
    revision: dict[str, str] | None = None  # a source action's revision: revisionId, revisionSummary


@dataclass
class _Run:
    """What the thread of a running execution shares with the API: its stop signal and its open waits."""

    stop: threading.Event = field(default_factory=threading.Event)
    abandon: bool = False
    answers: dict[str, threading.Event] = field(default_factory=dict)  # token or job id -> answered


def pipeline_declaration(account: str, region: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """moto's pipeline (structure and metadata), or CodePipeline's PipelineNotFoundException."""
    from moto.codepipeline.models import codepipeline_backends

    stored = codepipeline_backends[account][region].pipelines.get(name)
    if stored is None:
        raise AwsError("PipelineNotFoundException", f"Account '{account}' does not have a pipeline with name "
                                                    f"'{name}'")
    return json.loads(json.dumps(stored.pipeline)), dict(stored.metadata)


class Executions:
    """Every execution of every pipeline of the embedded CodePipeline, in any account."""

    def __init__(self, context: Any, runners: dict[tuple[str, str], Any]) -> None:
        self.context = context
        self.runners = runners
        self._runs: dict[str, _Run] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stage_holders: dict[tuple[str, str, str, str], str] = {}  # (account, region, pipeline, stage) -> id
        self._jobs: dict[str, dict[str, Any]] = {}  # job id -> {"account", "execution", "result"}
        self._tokens: dict[tuple[str, str, str, str], str] = {}  # (account, region, pipeline, request token) -> id
        self._recover()

    # -- records ------------------------------------------------------------------------------------------------
    def _folder(self, account: str, region: str, pipeline: str) -> Path:
        return self.context.folder("codepipeline", account, region, pipeline)

    def _save(self, record: dict[str, Any]) -> None:
        path = self._folder(record["account"], record["region"], record["pipelineName"]) / f"{record['id']}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
        temporary.replace(path)

    def _recover(self) -> None:
        """Load every record; an execution a stopped server left in progress has failed."""
        if self.context.state_dir is None:
            return
        root = Path(self.context.state_dir) / "codepipeline"
        for path in sorted(root.glob("*/*/*/*.json")) if root.is_dir() else []:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                log.warning("codepipeline record %s unreadable, skipped: %s", path, error)
                continue
            if record["status"] in (IN_PROGRESS, STOPPING):
                record["status"], record["statusSummary"] = FAILED, SERVER_STOPPED
                for action in record["actions"]:
                    if action["status"] == IN_PROGRESS:
                        action.update(status=FAILED, lastUpdateTime=_iso(now()),
                                      error={"code": "JobFailed", "message": SERVER_STOPPED})
                for stage in record["stages"].values():
                    if stage["status"] == IN_PROGRESS:
                        stage["status"] = FAILED
                self._save(record)
            self._records[record["id"]] = record

    def _record(self, account: str, region: str, pipeline: str, execution_id: str) -> dict[str, Any]:
        with self._lock:
            record = self._records.get(execution_id)
        if record is None or (record["account"], record["region"], record["pipelineName"]) != (account, region,
                                                                                                pipeline):
            raise AwsError("PipelineExecutionNotFoundException",
                           f"Pipeline execution {execution_id} not found in pipeline {pipeline}")
        return record

    def of_pipeline(self, account: str, region: str, pipeline: str) -> list[dict[str, Any]]:
        """The pipeline's executions, newest first."""
        with self._lock:
            found = [r for r in self._records.values()
                     if (r["account"], r["region"], r["pipelineName"]) == (account, region, pipeline)]
        return sorted(found, key=lambda r: r["startTime"], reverse=True)

    # -- start ----------------------------------------------------------------------------------------------------
    def start(self, account: str, region: str, params: dict[str, Any], caller: str, *,
              rollback_of: dict[str, Any] | None = None, stage_name: str | None = None) -> str:
        name = params["name"]
        declaration, _ = pipeline_declaration(account, region, name)
        token = params.get("clientRequestToken")
        with self._lock:
            if token and (account, region, name, token) in self._tokens:
                return self._tokens[(account, region, name, token)]
        if rollback_of is None:
            resolved = self._variables(declaration, params.get("variables") or [])
            revisions = self._source_revisions(declaration, params.get("sourceRevisions") or [])
        else:
            resolved = {v["name"]: v["resolvedValue"] for v in rollback_of.get("variables", [])}
            revisions = {}
        execution_id = str(uuid.uuid4())
        started = _iso(now())
        stages = [s for s in declaration["stages"] if stage_name is None or s["name"] == stage_name]
        record: dict[str, Any] = {
            "id": execution_id, "account": account, "region": region, "pipelineName": name,
            "pipelineVersion": declaration.get("version", 1), "declaration": declaration,
            "status": IN_PROGRESS, "statusSummary": None, "startTime": started, "lastUpdateTime": started,
            "variables": [{"name": k, "resolvedValue": v} for k, v in resolved.items()],
            "requestedRevisions": revisions, "sourceRevisions": [], "artifactRevisions": [],
            "trigger": {"triggerType": "ManualRollback" if rollback_of else "StartPipelineExecution",
                        "triggerDetail": caller},
            "executionMode": declaration.get("executionMode") or ("QUEUED" if declaration.get("pipelineType") == "V2"
                                                                   else "SUPERSEDED"),
            "executionType": "ROLLBACK" if rollback_of else "STANDARD",
            "rollbackMetadata": ({"rollbackTargetPipelineExecutionId": rollback_of["id"]} if rollback_of else None),
            "stages": {s["name"]: {"status": "Pending"} for s in stages},
            "actions": [], "namespaces": {}, "artifacts": {},
        }
        if rollback_of is not None:  # the target's artifacts and variables, as its stages left them
            record["artifacts"] = dict(rollback_of.get("artifacts", {}))
            record["namespaces"] = dict(rollback_of.get("namespaces", {}))
            record["sourceRevisions"] = list(rollback_of.get("sourceRevisions", []))
            record["artifactRevisions"] = list(rollback_of.get("artifactRevisions", []))
        with self._lock:
            self._records[execution_id] = record
            self._runs[execution_id] = _Run()
            if token:
                self._tokens[(account, region, name, token)] = execution_id
            self._save(record)
        self._emit_pipeline(record)
        self.context.spawn(f"codepipeline-{name}-{execution_id[:8]}", self._run, record)
        return execution_id

    @staticmethod
    def _variables(declaration: dict[str, Any], given: list[dict[str, str]]) -> dict[str, str]:
        declared = {v["name"]: v for v in declaration.get("variables") or []}
        values: dict[str, str] = {}
        for variable in given:
            if variable["name"] not in declared:
                raise validation_error(f"Variable '{variable['name']}' is not declared in the pipeline "
                                       f"(declared: {sorted(declared) or 'none'})")
            values[variable["name"]] = variable["value"]
        for name, variable in declared.items():
            if name not in values:
                if "defaultValue" not in variable:
                    raise validation_error(f"Variable '{name}' has no default value and was not given at start")
                values[name] = variable["defaultValue"]
        return values

    @staticmethod
    def _source_revisions(declaration: dict[str, Any], given: list[dict[str, str]]) -> dict[str, dict[str, str]]:
        sources = {a["name"]: a for s in declaration["stages"] for a in s["actions"]
                   if a["actionTypeId"]["category"] == "Source"}
        revisions = {}
        for revision in given:
            action = sources.get(revision["actionName"])
            if action is None:
                raise validation_error(f"sourceRevisions names '{revision['actionName']}', which is not a source "
                                       f"action of the pipeline (its source actions: {sorted(sources)})")
            if action["actionTypeId"]["provider"] == "S3" and revision["revisionType"] != "S3_OBJECT_VERSION_ID":
                raise validation_error(f"an S3 source action takes a revision of type S3_OBJECT_VERSION_ID, not "
                                       f"{revision['revisionType']}")
            revisions[revision["actionName"]] = revision
        return revisions

    # -- the execution's thread ------------------------------------------------------------------------------------
    def _run(self, record: dict[str, Any]) -> None:
        run = self._runs[record["id"]]
        stages = [s for s in record["declaration"]["stages"] if s["name"] in record["stages"]]
        failure: str | None = None
        for stage in stages:
            if not self._enter(record, stage["name"], run):
                break
            try:
                failure = self._run_stage(record, stage, run)
            finally:
                self._leave(record, stage["name"])
            if failure is not None or run.stop.is_set():
                break
        with self._lock:
            if run.stop.is_set():
                status, summary = STOPPED, record.get("statusSummary")
            elif failure is not None:
                status, summary = FAILED, failure
            else:
                status, summary = SUCCEEDED, None
            record.update(status=status, statusSummary=summary, lastUpdateTime=_iso(now()))
            self._save(record)
            self._runs.pop(record["id"], None)
            self._changed.notify_all()
        self._emit_pipeline(record)

    def _enter(self, record: dict[str, Any], stage: str, run: _Run) -> bool:
        """Wait at the stage's entrance until no earlier execution is inside (QUEUED mode); False if stopped."""
        key = (record["account"], record["region"], record["pipelineName"], stage)
        with self._changed:
            record["stages"][stage]["status"] = "Inbound"
            while not run.stop.is_set():
                holder = self._stage_holders.get(key)
                earlier = [r for r in self._waiting(key) if r["startTime"] < record["startTime"]]
                if holder is None and not earlier:
                    self._stage_holders[key] = record["id"]
                    record["stages"][stage] = {"status": IN_PROGRESS, "started": _iso(now())}
                    self._save(record)
                    break
                self._changed.wait(timeout=1.0)
            else:
                record["stages"][stage]["status"] = "Cancelled"
                return False
        self._emit_stage(record, stage, IN_PROGRESS)
        return True

    def _waiting(self, key: tuple[str, str, str, str]) -> list[dict[str, Any]]:
        account, region, pipeline, stage = key
        return [r for r in self._records.values()
                if (r["account"], r["region"], r["pipelineName"]) == (account, region, pipeline)
                and r["status"] == IN_PROGRESS and r["stages"].get(stage, {}).get("status") == "Inbound"]

    def _leave(self, record: dict[str, Any], stage: str) -> None:
        key = (record["account"], record["region"], record["pipelineName"], stage)
        with self._changed:
            if self._stage_holders.get(key) == record["id"]:
                del self._stage_holders[key]
            self._changed.notify_all()

    def _run_stage(self, record: dict[str, Any], stage: dict[str, Any], run: _Run) -> str | None:
        """Run the stage's actions by run order; the failure's message, or None when every action succeeded."""
        failure = None
        for order in sorted({a.get("runOrder", 1) for a in stage["actions"]}):
            for action in [a for a in stage["actions"] if a.get("runOrder", 1) == order]:
                if run.stop.is_set():
                    break
                failure = self._run_action(record, stage["name"], action, run)
                if failure is not None:
                    break
            if failure is not None or run.stop.is_set():
                break
        status = STOPPED if run.stop.is_set() else (FAILED if failure is not None else SUCCEEDED)
        with self._lock:
            record["stages"][stage["name"]]["status"] = status
            record["lastUpdateTime"] = _iso(now())
            self._save(record)
        self._emit_stage(record, stage["name"], status)
        return failure

    def _run_action(self, record: dict[str, Any], stage: str, action: dict[str, Any], run: _Run) -> str | None:
        type_id = action["actionTypeId"]
        declaration = record["declaration"]
        region = action.get("region") or record["region"]
        entry: dict[str, Any] = {
            "actionExecutionId": str(uuid.uuid4()), "pipelineExecutionId": record["id"], "stageName": stage,
            "actionName": action["name"], "pipelineVersion": record["pipelineVersion"], "status": IN_PROGRESS,
            "startTime": _iso(now()), "lastUpdateTime": _iso(now()),
            "input": {"actionTypeId": type_id, "configuration": dict(action.get("configuration") or {}),
                      "roleArn": action.get("roleArn") or declaration.get("roleArn"), "region": region,
                      "inputArtifacts": [{"name": a["name"], "s3location": record["artifacts"].get(a["name"])}
                                         for a in action.get("inputArtifacts", [])],
                      **({"namespace": action["namespace"]} if action.get("namespace") else {})},
            "output": {}, "summary": None, "token": None,
        }
        with self._lock:
            record["actions"].append(entry)
            self._save(record)
        self._emit_action(record, entry, IN_PROGRESS)
        runner = self.runners.get((type_id["category"], type_id["provider"]))
        try:
            if runner is None:
                raise ActionFailed(f"{type_id['category']}/{type_id['provider']} actions do not run in the embedded "
                                   "AWS (it runs S3 sources, CloudFormation deploys, CodeBuild builds, Lambda "
                                   "invokes and manual approvals)", code="ConfigurationError")
            namespaces = self._namespaces(record)
            try:
                configuration = pipeline_variables.resolve_configuration(action.get("configuration") or {},
                                                                         namespaces)
            except pipeline_variables.UnresolvedVariable as error:
                raise ActionFailed(str(error), code="ConfigurationError") from None
            entry["input"]["resolvedConfiguration"] = configuration
            outcome = runner(ActionRun(self, record, entry, action, configuration, run))
        except ActionFailed as error:
            self._finish_action(record, entry, FAILED if not run.stop.is_set() else ABANDONED, error=error)
            return error.message
        except Exception as error:  # noqa: BLE001 - any fault of a runner fails the action with its reason
            log.exception("action %s/%s of %s failed", stage, action["name"], record["pipelineName"])
            failed = ActionFailed(f"{type(error).__name__}: {error}", code="JobFailed")
            self._finish_action(record, entry, FAILED, error=failed)
            return failed.message
        if run.stop.is_set():
            self._finish_action(record, entry, ABANDONED, error=ActionFailed("the execution was stopped"))
            return None
        with self._lock:
            if outcome.artifacts:
                record["artifacts"].update(outcome.artifacts)
            if action.get("namespace") and outcome.variables:
                record["namespaces"][action["namespace"]] = dict(outcome.variables)
            if outcome.revision:
                record["sourceRevisions"].append({"actionName": action["name"], **outcome.revision})
                record["artifactRevisions"].extend(
                    {"name": name, "revisionId": outcome.revision.get("revisionId"), "created": _iso(now()),
                     "revisionSummary": outcome.revision.get("revisionSummary")} for name in outcome.artifacts)
        self._finish_action(record, entry, SUCCEEDED, outcome=outcome)
        return None

    def _finish_action(self, record: dict[str, Any], entry: dict[str, Any], status: str, *,
                       outcome: ActionOutcome | None = None, error: ActionFailed | None = None) -> None:
        with self._lock:
            result: dict[str, Any] = {}
            if outcome is not None:
                result = {k: v for k, v in {"externalExecutionId": outcome.external_id,
                                            "externalExecutionSummary": outcome.summary,
                                            "externalExecutionUrl": outcome.external_url}.items() if v}
                entry["output"] = {"outputArtifacts": [{"name": n, "s3location": loc}
                                                       for n, loc in outcome.artifacts.items()],
                                   "executionResult": result, "outputVariables": dict(outcome.variables)}
                entry["summary"] = outcome.summary
            if error is not None:
                result = {"errorDetails": {"code": error.code, "message": error.message[:5000]}}
                if error.external_id:
                    result["externalExecutionId"] = error.external_id
                entry["output"] = {**entry.get("output", {}), "executionResult": {
                    **entry.get("output", {}).get("executionResult", {}), **result}}
            entry.update(status=status, lastUpdateTime=_iso(now()), token=None)
            record["lastUpdateTime"] = entry["lastUpdateTime"]
            self._save(record)
        self._emit_action(record, entry, status)

    def _namespaces(self, record: dict[str, Any]) -> dict[str, dict[str, str]]:
        with self._lock:
            return {"codepipeline": {"PipelineExecutionId": record["id"]},
                    "variables": {v["name"]: v["resolvedValue"] for v in record["variables"]},
                    **{k: dict(v) for k, v in record["namespaces"].items()}}

    # -- waits the API answers (approvals, Lambda jobs) ------------------------------------------------------------
    def open_wait(self, record: dict[str, Any], entry: dict[str, Any], kind: str) -> tuple[str, threading.Event]:
        """A token (approval) or job id (Lambda) the API will answer; the event is set when it is."""
        key = str(uuid.uuid4())
        answered = threading.Event()
        with self._lock:
            run = self._runs[record["id"]]
            run.answers[key] = answered
            if kind == "approval":
                entry["token"] = key
            else:
                self._jobs[key] = {"account": record["account"], "execution": record["id"], "result": None}
            self._save(record)
        return key, answered

    def wait(self, record: dict[str, Any], answered: threading.Event, seconds: float) -> bool:
        """Wait for an answer; False when the execution was stopped or the time ran out."""
        run = self._runs[record["id"]]
        deadline = now() + timedelta(seconds=seconds)
        while not answered.is_set():
            if run.stop.is_set() or self.context.stopping.is_set() or now() >= deadline:
                return False
            answered.wait(timeout=0.5)
        return True

    def job_result(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            return (self._jobs.get(job_id) or {}).get("result")

    def put_job_result(self, account: str, job_id: str, result: dict[str, Any]) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job["account"] != account:
                raise AwsError("JobNotFoundException", f"Job {job_id} not found")
            if job["result"] is not None:
                raise AwsError("InvalidJobStateException", f"Job {job_id} has already been answered")
            job["result"] = result
            run = self._runs.get(job["execution"])
            answered = run.answers.get(job_id) if run else None
        if answered is None:
            raise AwsError("InvalidJobStateException", f"Job {job_id} is no longer in progress")
        answered.set()

    def put_approval_result(self, account: str, region: str, params: dict[str, Any], caller: str) -> datetime:
        pipeline, stage, action = params["pipelineName"], params["stageName"], params["actionName"]
        pipeline_declaration(account, region, pipeline)
        with self._lock:
            for record in self.of_pipeline(account, region, pipeline):
                for entry in record["actions"]:
                    if (entry["stageName"], entry["actionName"]) != (stage, action) or entry.get("token") is None:
                        continue
                    if entry["token"] != params["token"]:
                        raise AwsError("InvalidApprovalTokenException",
                                       f"The token {params['token']} is not the token of the approval in progress "
                                       f"of {stage}/{action}")
                    run = self._runs.get(record["id"])
                    answered = run.answers.get(entry["token"]) if run else None
                    if answered is None:
                        break
                    entry["approval"] = {"status": params["result"]["status"],
                                         "summary": params["result"]["summary"], "by": caller}
                    entry["updatedBy"] = caller
                    answered.set()
                    return now()
        raise AwsError("ApprovalAlreadyCompletedException" if self._answered(account, region, params) else
                       "ActionNotFoundException",
                       f"No approval of {pipeline}/{stage}/{action} waits for an answer with that token")

    def _answered(self, account: str, region: str, params: dict[str, Any]) -> bool:
        for record in self.of_pipeline(account, region, params["pipelineName"]):
            for entry in record["actions"]:
                if entry.get("approval") and entry["actionName"] == params["actionName"]:
                    return True
        return False

    # -- stop and rollback ---------------------------------------------------------------------------------------
    def stop(self, account: str, region: str, params: dict[str, Any]) -> str:
        record = self._record(account, region, params["pipelineName"], params["pipelineExecutionId"])
        with self._lock:
            run = self._runs.get(record["id"])
            if run is None or record["status"] != IN_PROGRESS:
                raise AwsError("PipelineExecutionNotStoppableException",
                               f"Execution {record['id']} is {record['status']}; only an execution in progress "
                               "can be stopped")
            run.abandon = bool(params.get("abandon"))
            record.update(status=STOPPING, statusSummary=params.get("reason") or "stopped by request",
                          lastUpdateTime=_iso(now()))
            run.stop.set()
            self._save(record)
            self._changed.notify_all()
        self._emit_pipeline(record)
        return record["id"]

    def rollback(self, account: str, region: str, params: dict[str, Any], caller: str) -> str:
        """RollbackStage: the stage runs again with the artifacts and variables of an earlier execution that
        succeeded in it."""
        pipeline, stage = params["pipelineName"], params["stageName"]
        target = self._record(account, region, pipeline, params["targetPipelineExecutionId"])
        if target["stages"].get(stage, {}).get("status") != SUCCEEDED:
            raise AwsError("PipelineExecutionOutdatedException" if stage in target["stages"] else
                           "StageNotFoundException",
                           f"Execution {target['id']} did not succeed in stage {stage}: only an execution that "
                           "succeeded there is a rollback target")
        return self.start(account, region, {"name": pipeline}, caller, rollback_of=target, stage_name=stage)

    # -- events -----------------------------------------------------------------------------------------------------
    def _arn(self, record: dict[str, Any]) -> str:
        return f"arn:aws:codepipeline:{record['region']}:{record['account']}:{record['pipelineName']}"

    def _emit(self, record: dict[str, Any], detail_type: str, detail: dict[str, Any]) -> None:
        self.context.emit_event(record["account"], record["region"], source=SOURCE, detail_type=detail_type,
                                detail={"pipeline": record["pipelineName"], "execution-id": record["id"],
                                        "version": record["pipelineVersion"], **detail},
                                resources=[self._arn(record)])

    def _emit_pipeline(self, record: dict[str, Any]) -> None:
        self._emit(record, PIPELINE_STATE_CHANGE, {
            "state": _EVENT_STATE.get(record["status"], record["status"].upper()),
            "execution-trigger": {"trigger-type": record["trigger"]["triggerType"],
                                  "trigger-detail": record["trigger"]["triggerDetail"]},
            **({"failure-summary": record["statusSummary"]} if record["status"] == FAILED else {})})

    def _emit_stage(self, record: dict[str, Any], stage: str, status: str) -> None:
        self._emit(record, STAGE_STATE_CHANGE, {"stage": stage, "state": _EVENT_STATE.get(status, status.upper())})

    def _emit_action(self, record: dict[str, Any], entry: dict[str, Any], status: str) -> None:
        type_id = entry["input"]["actionTypeId"]
        self._emit(record, ACTION_STATE_CHANGE, {
            "stage": entry["stageName"], "action": entry["actionName"], "region": entry["input"]["region"],
            "state": _EVENT_STATE.get(status, status.upper()),
            "type": {"owner": type_id["owner"], "category": type_id["category"], "provider": type_id["provider"],
                     "version": type_id["version"]}})


@dataclass
class ActionRun:
    """One action as its runner sees it: its execution, declaration, resolved configuration and the service."""

    executions: Executions
    record: dict[str, Any]
    entry: dict[str, Any]
    action: dict[str, Any]
    configuration: dict[str, str]
    run: _Run

    @property
    def context(self) -> Any:
        return self.executions.context

    @property
    def account(self) -> str:
        return self.record["account"]

    @property
    def region(self) -> str:
        return self.entry["input"]["region"]

    @property
    def artifact_store(self) -> dict[str, Any]:
        declaration = self.record["declaration"]
        store = declaration.get("artifactStore") or (declaration.get("artifactStores") or {}).get(self.region)
        if not store:
            raise ActionFailed("the pipeline has no artifact store for its region", code="ConfigurationError")
        return store

    def input_artifact(self, name: str) -> dict[str, str]:
        location = self.record["artifacts"].get(name)
        if location is None:
            raise ActionFailed(f"input artifact {name} was not produced by an earlier action of this execution",
                               code="ConfigurationError")
        return location

    def new_artifact_key(self, artifact: str) -> str:
        """Where CodePipeline writes an artifact: ``<pipeline name[:20]>/<artifact name[:20]>/<random id>``."""
        return f"{self.record['pipelineName'][:20]}/{artifact[:20]}/{uuid.uuid4().hex[:7]}"

    def set_external(self, external_id: str | None = None, summary: str | None = None) -> None:
        """Show progress in the state view while the action runs (a build id, a waiting approval)."""
        with self.executions._lock:
            if external_id:
                self.entry.setdefault("output", {}).setdefault("executionResult", {})["externalExecutionId"] = \
                    external_id
            if summary is not None:
                self.entry["summary"] = summary
            self.executions._save(self.record)

    @property
    def stopped(self) -> bool:
        return self.run.stop.is_set()


def role_account(arn: str | None, default: str) -> str:
    matched = re.match(r"^arn:aws[a-z-]*:iam::(\d{12}):", arn or "")
    return matched.group(1) if matched else default


def moment(text: str | None) -> datetime | None:
    return _moment(text)
