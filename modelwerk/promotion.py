"""Promotion: an approved model version through staging and its quality gate, a person's approval, then prod.

The stages are the registry account's promotion pipeline (a CodePipeline per use case,
``cdk_constructs/promotion_pipeline.py``), started by the version's approval — SageMaker's state change event, the
deployed rule, the source function — on AWS and in local mode alike. This module runs none of them: it approves the
version when asked, finds the pipeline execution that carries it (the pipeline variable ``ModelPackageArn``),
follows that execution action by action (``ListActionExecutions``), answers the manual approval when the caller
approves (``PutApprovalResult``), and rolls prod back with the pipeline's own stage rollback (``RollbackStage``).
The pipeline's stages, in this module's names:

``source``
    the approved version's source object (``package.json``, the endpoint templates, the gate);
``deploy-staging``
    CloudFormation deploys the use case's endpoint stack into staging (blue/green when it runs already);
``quality-gate``
    CodeBuild runs :mod:`modelwerk.core.gate` against the staging endpoint: expected predictions on the use case's
    ``gate_cases.csv``, the endpoint's latency budget, the response schema; its report stays in the promotion bucket;
``approval``
    a person approves or rejects (``approve=True`` answers it, with ``reason``);
``deploy-prod``
    the same stack into prod, then the record action marks the version in the registry as what prod serves.

Example
-------
After ``make demo``, prod serves energy-forecast's first version and retraining registered a second:

>>> result = modelwerk.promote("energy-forecast", 2, to="prod", approve=True, reason="retrained on new data")
>>> result.status, [stage.status for stage in result.stages]
('Succeeded', ['Succeeded', 'Succeeded', 'Succeeded', 'Succeeded', 'Succeeded'])
>>> modelwerk.promotion.rollback("energy-forecast").detail
'prod serves version 1 again (was version 2)'
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from modelwerk.core.promotion_marks import now as _now
from modelwerk.errors import ModelwerkError, NotFoundError, ValidationError

log = logging.getLogger("modelwerk")

STAGES = ("source", "deploy-staging", "quality-gate", "approval", "deploy-prod")
TARGETS = ("staging", "prod")
SUCCEEDED, FAILED, SKIPPED, REJECTED = "Succeeded", "Failed", "Skipped", "Rejected"
#: A promotion's outcome: every stage passed; one failed; the approval was withheld (nothing reached prod).
STOPPED = "Stopped"

Approve = Callable[[str], bool]


@dataclass(frozen=True)
class Stage:
    """One stage of a promotion: ``Succeeded``, ``Failed``, ``Rejected`` (approval withheld) or ``Skipped``."""

    name: str
    status: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Promotion:
    """What a promotion (or a rollback) did, stage by stage; ``gate`` is the quality gate's full report."""

    use_case: str
    version: int
    to: str
    status: str
    stages: tuple[Stage, ...]
    gate: dict[str, Any] | None = None
    seconds: float = 0.0
    previous_version: int | None = None
    execution_id: str | None = None
    at: str = field(default_factory=lambda: _now())

    @property
    def detail(self) -> str:
        """The last stage that ran: what happened, in a sentence."""
        ran = [stage for stage in self.stages if stage.status != SKIPPED]
        return ran[-1].detail if ran else ""

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON: ``status`` and ``stages`` (``name``, ``status``, ``detail``), then the rest."""
        return {"status": self.status, "stages": [stage.to_dict() for stage in self.stages],
                "use_case": self.use_case, "version": self.version, "to": self.to,
                "previous_version": self.previous_version, "gate": self.gate, "seconds": round(self.seconds, 1),
                "execution_id": self.execution_id,
                "at": self.at}

    def _repr_html_(self) -> str:
        colors = {SUCCEEDED: "#1a7f37", FAILED: "#cf222e", REJECTED: "#9a6700", SKIPPED: "#6e7781"}
        rows = "".join(
            f"<tr><td>{html.escape(s.name)}</td><td style='color:{colors.get(s.status, '#000')}'>"
            f"{html.escape(s.status)}</td><td style='text-align:left'>{html.escape(s.detail)}</td></tr>"
            for s in self.stages)
        return (f"<div><b>{html.escape(self.use_case)} version {self.version} → {html.escape(self.to)}: "
                f"{html.escape(self.status)}</b> ({self.seconds:.1f} s)<table><tr><th>stage</th><th>status</th>"
                f"<th>detail</th></tr>{rows}</table></div>")


#: How long the approval event takes at most to start the pipeline (rule, source function, start).
START_TIMEOUT_SECONDS = 180.0
#: How long an approved version's execution may take to appear before it is approved anew.
APPROVAL_IN_FLIGHT_SECONDS = 30.0
#: How long a promotion is followed before the caller is told where it stands.
FOLLOW_TIMEOUT_SECONDS = 3600.0
POLL_SECONDS = 1.0
_IN_PROGRESS = "InProgress"
_GATE_REPORT = "gate.json"


@dataclass(frozen=True)
class _Pipeline:
    """The registry account's promotion pipeline of one use case, as the caller reaches it."""

    use_case: str
    name: str
    client: Any
    s3: Any

    def artifact_bucket(self) -> str | None:
        store = self.client.get_pipeline(name=self.name)["pipeline"].get("artifactStore") or {}
        return store.get("location")


def _pipeline(use_case: str) -> _Pipeline:
    from modelwerk import models, naming
    from modelwerk.platform import resolve, session_for_account

    group = models.registry(use_case).group
    region, account = group.split(":")[3], group.split(":")[4]
    session = session_for_account(account)
    return _Pipeline(use_case, naming.promotion_pipeline_name(resolve().project, use_case),
                     session.client("codepipeline", region_name=region), session.client("s3", region_name=region))


def _variable(pipeline: _Pipeline, execution_id: str, name: str) -> str | None:
    execution = pipeline.client.get_pipeline_execution(pipelineName=pipeline.name, pipelineExecutionId=execution_id)
    values = {v["name"]: v.get("resolvedValue") for v in execution["pipelineExecution"].get("variables", [])}
    return values.get(name)


def _executions_of(pipeline: _Pipeline, arn: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """The pipeline's executions that carry the version ``arn`` (newest first; the last ``limit`` looked at)."""
    from modelwerk import naming

    summaries = pipeline.client.list_pipeline_executions(pipelineName=pipeline.name, maxResults=limit)
    return [s for s in summaries["pipelineExecutionSummaries"]
            if _variable(pipeline, s["pipelineExecutionId"], naming.PROMOTION_ARN_VARIABLE) == arn]


def _find_execution(pipeline: _Pipeline, arn: str, since: set[str] | None, say: Callable[[str], None]) -> str:
    """The execution that promotes ``arn``: a new one (not in ``since``) when the version was just approved, else the
    newest that carries it."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    said = False
    while True:
        found = [s["pipelineExecutionId"] for s in _executions_of(pipeline, arn)
                 if since is None or s["pipelineExecutionId"] not in since]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise NotFoundError(
                f"no execution of {pipeline.name} promotes {arn} (none started within {START_TIMEOUT_SECONDS:.0f} s "
                "of the approval): check the promotion's source function and its dead-letter queue, or approve the "
                "version again ('modelwerk models reject' then 'approve') to start one")
        if not said:
            say(f"waiting for {pipeline.name} to start on the approval")
            said = True
        time.sleep(POLL_SECONDS)


def _actions(pipeline: _Pipeline, execution_id: str) -> list[dict[str, Any]]:
    pages = pipeline.client.get_paginator("list_action_executions").paginate(
        pipelineName=pipeline.name, filter={"pipelineExecutionId": execution_id})
    details = [d for page in pages for d in page["actionExecutionDetails"]]
    return sorted(details, key=lambda d: d["startTime"])


def _detail(action: dict[str, Any]) -> str:
    result = (action.get("output") or {}).get("executionResult") or {}
    if action["status"] == "Failed" or result.get("errorDetails"):
        return (result.get("errorDetails") or {}).get("message", "failed")
    variables = (action.get("output") or {}).get("outputVariables") or {}
    return variables.get("GATE_SUMMARY") or result.get("externalExecutionSummary") or action["status"].lower()


def _gate_report(pipeline: _Pipeline, execution_id: str) -> dict[str, Any] | None:
    """The gate's report of the execution, where its build wrote it (None when the gate did not get that far)."""
    import json

    from botocore.exceptions import ClientError

    from modelwerk import naming

    bucket = pipeline.artifact_bucket()
    if not bucket:
        return None
    key = f"{naming.promotion_report_prefix(pipeline.use_case)}{execution_id}/{_GATE_REPORT}"
    try:
        return json.loads(pipeline.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def _stages(pipeline: _Pipeline, execution_id: str, wanted: tuple[str, ...],
            report: dict[str, Any] | None) -> list[Stage]:
    """The execution's stages in this module's names: each stage's last action decides its status."""
    from modelwerk import naming

    names = dict(zip(naming.PROMOTION_STAGES, STAGES))
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for action in _actions(pipeline, execution_id):
        by_stage.setdefault(names.get(action["stageName"], action["stageName"]), []).append(action)
    stages = []
    for name in wanted:
        actions = by_stage.get(name)
        if not actions:
            stages.append(Stage(name, SKIPPED, "an earlier stage did not succeed"))
            continue
        failed = [a for a in actions if a["status"] == "Failed"]
        last = failed[0] if failed else actions[0] if all(a["status"] == "Succeeded" for a in actions) \
            else actions[-1]
        status = {"Succeeded": SUCCEEDED, "Failed": FAILED, "Abandoned": FAILED}.get(last["status"], last["status"])
        detail = _detail(last)
        if name == "approval" and failed:
            status = REJECTED
        if name == "quality-gate" and failed and report and report.get("failures"):
            detail = "; ".join(report["failures"]) + f" ({detail})"
        stages.append(Stage(name, status, detail))
    return stages


def _answer_approval(pipeline: _Pipeline, execution_id: str, summary: str) -> bool:
    """Approve the execution's manual approval if it waits now (the state view's token is this execution's: a V2
    pipeline lets one execution into a stage at a time)."""
    from modelwerk import naming

    state = pipeline.client.get_pipeline_state(name=pipeline.name)
    stage = next((s for s in state["stageStates"] if s["stageName"] == naming.PROMOTION_STAGES[3]), None)
    if not stage or (stage.get("latestExecution") or {}).get("pipelineExecutionId") != execution_id:
        return False
    for action in stage["actionStates"]:
        latest = action.get("latestExecution") or {}
        if latest.get("status") == _IN_PROGRESS and latest.get("token"):
            pipeline.client.put_approval_result(pipelineName=pipeline.name, stageName=stage["stageName"],
                                                actionName=action["actionName"], token=latest["token"],
                                                result={"status": "Approved", "summary": summary[:512]})
            return True
    return False


def _follow(pipeline: _Pipeline, execution_id: str, *, to: str, approve: bool | Approve, reason: str | None,
            say: Callable[[str], None], version: int) -> tuple[str, list[Stage], dict[str, Any] | None]:
    """Follow the execution until it ends, or until ``to`` is reached; the outcome, the stages and the gate's report."""
    wanted = STAGES if to == "prod" else STAGES[:3]
    told: set[str] = set()
    asked = False
    deadline = time.monotonic() + FOLLOW_TIMEOUT_SECONDS
    while True:
        execution = pipeline.client.get_pipeline_execution(pipelineName=pipeline.name,
                                                           pipelineExecutionId=execution_id)["pipelineExecution"]
        actions = _actions(pipeline, execution_id)
        for action in actions:
            if action["status"] != _IN_PROGRESS and action["actionExecutionId"] not in told:
                told.add(action["actionExecutionId"])
                say(f"{action['stageName']}/{action['actionName']}: {action['status']} - {_detail(action)}")
        done_stages = {a["stageName"] for a in actions if a["status"] != _IN_PROGRESS}
        running = execution["status"] == _IN_PROGRESS
        if not running or (to == "staging" and _gate_finished(actions)):
            break
        waiting = [a for a in actions if a["status"] == _IN_PROGRESS and
                   a["input"]["actionTypeId"]["category"] == "Approval"]
        if waiting and not asked:
            asked = True
            question = (f"Promote {pipeline.use_case} version {version} to prod? (the gate: "
                        f"{_detail(next((a for a in reversed(actions) if _is_gate(a)), waiting[0]))})")
            yes = approve(question) if callable(approve) else bool(approve)
            if not yes:
                stages = _stages(pipeline, execution_id, wanted, _gate_report(pipeline, execution_id))
                return STOPPED, stages, _gate_report(pipeline, execution_id)
            say(f"approving {pipeline.use_case} version {version} for prod")
            if not _answer_approval(pipeline, execution_id, reason or "approved with 'modelwerk promote'"):
                asked = False  # the approval's token is not there yet
        if time.monotonic() > deadline:
            raise ModelwerkError(f"{pipeline.name} execution {execution_id} still runs after "
                                 f"{FOLLOW_TIMEOUT_SECONDS:.0f} s; follow it in CodePipeline ({done_stages} done)")
        time.sleep(POLL_SECONDS)
    report = _gate_report(pipeline, execution_id)
    stages = _stages(pipeline, execution_id, wanted, report)
    if any(stage.status in (FAILED, REJECTED) for stage in stages):
        status = FAILED if not any(stage.status == REJECTED for stage in stages) else STOPPED
    elif execution["status"] in ("Stopped", "Stopping", "Cancelled"):
        status = STOPPED
    else:
        status = SUCCEEDED if all(stage.status == SUCCEEDED for stage in stages) else FAILED
    return status, stages, report


def _is_gate(action: dict[str, Any]) -> bool:
    return action["input"]["actionTypeId"]["category"] == "Build"


def _gate_finished(actions: list[dict[str, Any]]) -> bool:
    return any(_is_gate(a) and a["status"] != _IN_PROGRESS for a in actions) or \
        any(a["status"] == "Failed" for a in actions)


def _execution_to_wait_for(pipeline: _Pipeline, mv: Any, *, approve: bool | Approve, reason: str | None,
                            say: Callable[[str], None]) -> set[str] | None:
    """Which execution promotes ``mv``: None for the newest that carries it (one in progress, or the one its
    approval is starting), else the executions to look past once this call approved it (again), which starts one."""
    from modelwerk import models

    carrying = _executions_of(pipeline, mv.arn)
    if any(s["status"] == _IN_PROGRESS for s in carrying):
        return None
    known = {s["pipelineExecutionId"] for s in carrying}
    if mv.approval_status == models.APPROVED:  # its approval's event may be on its way to the pipeline
        deadline = time.monotonic() + APPROVAL_IN_FLIGHT_SECONDS
        while time.monotonic() < deadline:
            if any(s["pipelineExecutionId"] not in known for s in _executions_of(pipeline, mv.arn)):
                return None
            time.sleep(POLL_SECONDS)
        if approve is False:
            last = carrying[0]["status"] if carrying else "never ran"
            raise ValidationError(f"{pipeline.use_case} version {mv.version} is approved, but no promotion of it "
                                  f"runs (its last: {last}); pass --approve to approve it again, which starts one")
    since = {s["pipelineExecutionId"] for s in pipeline.client.list_pipeline_executions(
        pipelineName=pipeline.name, maxResults=50)["pipelineExecutionSummaries"]}
    say(f"approving {pipeline.use_case} version {mv.version} in the registry")
    sagemaker = models.registry(pipeline.use_case).sagemaker
    if mv.approval_status == models.APPROVED:  # approved anew: the approval changes, so SageMaker tells the rule
        sagemaker.update_model_package(ModelPackageArn=mv.arn, ModelApprovalStatus=models.PENDING)
    sagemaker.update_model_package(ModelPackageArn=mv.arn, ModelApprovalStatus=models.APPROVED,
                                   ApprovalDescription=(reason or "approved with 'modelwerk promote'")[:1024])
    return since


def promote(use_case: str, version: int | str = "latest", *, to: str = "prod", approve: bool | Approve = False,
            reason: str | None = None, progress: Callable[[str], None] | None = None) -> Promotion:
    """Promote ``version`` of ``use_case`` through the promotion pipeline, to staging (up to the gate) or to prod.

    A version waiting for approval is approved first when ``approve`` says yes (that starts the pipeline); an
    approved one is followed in the execution its approval started. ``approve`` also answers the pipeline's manual
    approval before prod: ``True``, or a function asked the question; ``False`` leaves the execution waiting there
    (status ``Stopped``: a person approves it later, in the console or with ``--approve``). ``reason`` is the
    approval's summary.

    Example
    -------
    >>> modelwerk.promote("pump-health", 99, to="staging")
    Traceback (most recent call last):
    ...
    modelwerk.errors.NotFoundError: use case pump-health has versions 1..2; there is no version 99 (choose one of them, or 'latest')
    """
    from modelwerk import models

    if to not in TARGETS:
        raise ValidationError(f"promote to 'staging' or 'prod', not {to!r}")
    say = progress or (lambda message: log.info(message))
    started = time.monotonic()
    mv = models.version(use_case, version)
    pipeline = _pipeline(use_case)
    previous = models.prod_version(use_case)
    if mv.approval_status != models.APPROVED and (mv.approval_status == models.REJECTED or approve is False):
        raise ValidationError(
            f"{use_case} version {mv.version} is {mv.approval_status}; only approved versions are promoted: "
            f"approve it first ('modelwerk models approve --use-case {use_case} {mv.version}'), or pass --approve")
    if to == "prod" and previous is not None and previous.version == mv.version:
        stages = tuple(Stage(name, SUCCEEDED if name == "deploy-prod" else SKIPPED,
                             f"prod serves version {mv.version} already" if name == "deploy-prod" else "")
                       for name in STAGES)
        return Promotion(use_case=use_case, version=mv.version, to=to, status=SUCCEEDED, stages=stages,
                         seconds=time.monotonic() - started, previous_version=previous.version)
    since = _execution_to_wait_for(pipeline, mv, approve=approve, reason=reason, say=say)
    execution_id = _find_execution(pipeline, mv.arn, since, say)
    say(f"following {pipeline.name} execution {execution_id}")
    status, stages, report = _follow(pipeline, execution_id, to=to, approve=approve, reason=reason, say=say,
                                     version=mv.version)
    return Promotion(use_case=use_case, version=mv.version, to=to, status=status, stages=tuple(stages), gate=report,
                     seconds=time.monotonic() - started, previous_version=previous.version if previous else None,
                     execution_id=execution_id)


def rollback(use_case: str, *, to: str = "prod", progress: Callable[[str], None] | None = None) -> Promotion:
    """Put the version prod served before the current one back into prod: the pipeline's ``RollbackStage`` runs the
    prod stage again with the execution that deployed that version (its template, its version, its record action)."""
    from modelwerk import models, naming

    if to != "prod":
        raise ValidationError(f"only prod is rolled back; staging takes whatever version is promoted to it next, "
                              f"not {to!r}")
    say = progress or (lambda message: log.info(message))
    started = time.monotonic()
    history = sorted((v for v in models.versions(use_case) if v.in_prod_history),
                     key=lambda v: v.promoted_to_prod_at or "", reverse=True)
    if not history:
        raise NotFoundError(f"{use_case} has never been promoted to prod; there is nothing to roll back")
    current = history[0]
    earlier = [v for v in history[1:] if v.approval_status == models.APPROVED]
    if not earlier:
        raise ValidationError(f"prod serves {use_case} version {current.version}, the first approved version "
                              "promoted there; there is no earlier version to roll back to")
    target = earlier[0]
    pipeline = _pipeline(use_case)
    prod_stage = naming.PROMOTION_STAGES[4]
    succeeded = pipeline.client.list_pipeline_executions(
        pipelineName=pipeline.name, filter={"succeededInStage": {"stageName": prod_stage}})["pipelineExecutionSummaries"]
    deployed = next((s["pipelineExecutionId"] for s in succeeded if s.get("executionType", "STANDARD") == "STANDARD"
                     and _variable(pipeline, s["pipelineExecutionId"], naming.PROMOTION_ARN_VARIABLE) == target.arn),
                    None)
    if deployed is None:
        raise NotFoundError(f"no execution of {pipeline.name} deployed {use_case} version {target.version} to prod; "
                            f"promote it again instead ('modelwerk promote --use-case {use_case} {target.version} "
                            "--to prod')")
    say(f"rolling {use_case} back from version {current.version} to version {target.version} in prod")
    execution_id = pipeline.client.rollback_stage(pipelineName=pipeline.name, stageName=prod_stage,
                                                  targetPipelineExecutionId=deployed)["pipelineExecutionId"]
    status, stages, _ = _follow(pipeline, execution_id, to="prod", approve=False, reason=None, say=say,
                                version=target.version)
    prod = [stage for stage in stages if stage.name == "deploy-prod"]
    if status != SUCCEEDED and prod and prod[0].status == SUCCEEDED:
        status = SUCCEEDED  # a rollback runs the prod stage alone
    stage = Stage("deploy-prod", prod[0].status if prod else FAILED,
                  f"prod serves version {target.version} again (was version {current.version})"
                  if prod and prod[0].status == SUCCEEDED else (prod[0].detail if prod else "the rollback did not run"))
    return Promotion(use_case=use_case, version=target.version, to="prod", status=status, stages=(stage,),
                     seconds=time.monotonic() - started, previous_version=current.version, execution_id=execution_id)
