"""Promotion: an approved model version through staging and its quality gate, a person's approval, then prod.

The stages are the promotion pipeline's — the registry account's CodePipeline, started on AWS by the version's
approval — and :func:`promote` runs the same stages through the environments' APIs, each environment reached
through its profile (:mod:`modelwerk.platform`):

``source``
    the version, which must be approved in the registry;
``deploy-staging``
    the use case's staging endpoint serves it (blue/green when one runs already);
``quality-gate``
    expected predictions on the use case's ``gate_cases.csv``, the latency budget (the threshold of the staging
    endpoint's deployed latency alarm, else its ``max_latency_ms``) and the response schema, checked by
    :mod:`modelwerk.core.gate` — the code the pipeline's CodeBuild action runs;
``approval``
    a person says yes (``approve=True``, or answers ``approve(question)``);
``deploy-prod``
    prod's endpoint moves to the version blue/green, rolling back by itself if its alarms fire.

A stage that fails stops the promotion; what follows is ``Skipped``. The registry keeps when a version went into prod
and when a rollback took it out, so :func:`rollback` knows the version before, and a version prod serves cannot be
rejected.

Example
-------
After ``make demo``, prod serves energy-forecast's first version and retraining registered a second:

>>> modelwerk.models.approve("energy-forecast", 2, reason="retrained on the newest snapshot").approval_status
'Approved'
>>> result = modelwerk.promote("energy-forecast", 2, to="prod", approve=True)
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
from modelwerk.errors import ConfigurationError, ModelwerkError, NotFoundError, ValidationError

log = logging.getLogger("modelwerk")

STAGES = ("source", "deploy-staging", "quality-gate", "approval", "deploy-prod")
TARGETS = ("staging", "prod")
SUCCEEDED, FAILED, SKIPPED, REJECTED = "Succeeded", "Failed", "Skipped", "Rejected"
#: A promotion's outcome: every stage passed; one failed; the approval was withheld (nothing reached prod).
STOPPED = "Stopped"
GATE_CASES = "gate_cases.csv"

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


def promote(use_case: str, version: int | str = "latest", *, to: str = "prod", approve: bool | Approve = False,
            progress: Callable[[str], None] | None = None) -> Promotion:
    """Promote an approved ``version`` of ``use_case`` to staging (``to="staging"``: up to the gate) or to prod.

    ``approve`` is the person's approval before prod: ``True``, or a function asked the question that answers yes or
    no; ``False`` stops the promotion there (status ``Stopped``). An unapproved or rejected version is refused with a
    :class:`~modelwerk.errors.ValidationError` before anything is deployed.

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
    if mv.approval_status != models.APPROVED:
        raise ValidationError(
            f"{use_case} version {mv.version} is {mv.approval_status}; only approved versions are promoted: approve "
            f"it first ('modelwerk models approve --use-case {use_case} {mv.version}')")
    stages = [Stage("source", SUCCEEDED, f"version {mv.version} approved"
                    + (f" ({mv.approval_description})" if mv.approval_description else "") + f": {mv.arn}")]
    previous = models.prod_version(use_case)
    gate_report: dict[str, Any] | None = None

    def finish(status: str) -> Promotion:
        wanted = STAGES if to == "prod" else STAGES[:3]
        done = {stage.name for stage in stages}
        skipped = [Stage(name, SKIPPED, "an earlier stage did not succeed") for name in wanted if name not in done]
        return Promotion(use_case=use_case, version=mv.version, to=to, status=status, stages=(*stages, *skipped),
                         gate=gate_report, seconds=time.monotonic() - started,
                         previous_version=previous.version if previous else None)

    staging = _deploy(use_case, mv, "staging", say)
    stages.append(staging)
    if staging.status != SUCCEEDED:
        return finish(FAILED)

    say(f"quality gate of {use_case} version {mv.version} against staging")
    gate_stage, gate_report = _gate(use_case, mv)
    stages.append(gate_stage)
    if gate_stage.status != SUCCEEDED:
        return finish(FAILED)
    if to == "staging":
        return finish(SUCCEEDED)

    question = (f"Promote {use_case} version {mv.version} to prod"
                + (f" (replacing version {previous.version})" if previous else "") + "?")
    approved = approve(question) if callable(approve) else bool(approve)
    if not approved:
        stages.append(Stage("approval", REJECTED, "not approved for prod: nothing changed there (pass approve=True, "
                                                  "or --approve on the command line)"))
        return finish(STOPPED)
    stages.append(Stage("approval", SUCCEEDED, "approved for prod" + (" at the prompt" if callable(approve) else "")))

    prod = _deploy(use_case, mv, "prod", say)
    stages.append(prod)
    if prod.status != SUCCEEDED:
        return finish(FAILED)
    models.record_promotion(use_case, mv.version, promoted_to_prod_at=_now())
    return finish(SUCCEEDED)


def rollback(use_case: str, *, to: str = "prod", progress: Callable[[str], None] | None = None) -> Promotion:
    """Put the version prod served before the current one back into prod, blue/green.

    The rolled-back version is marked as such in the registry (and may then be rejected); a second rollback goes one
    version further back.
    """
    from modelwerk import models

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
    say(f"rolling {use_case} back from version {current.version} to version {target.version} in prod")
    stage = _deploy(use_case, target, "prod", say)
    if stage.status == SUCCEEDED:
        moment = _now()
        models.record_promotion(use_case, current.version, rolled_back_from_prod_at=moment)
        models.record_promotion(use_case, target.version, promoted_to_prod_at=moment)
        stage = Stage("deploy-prod", SUCCEEDED,
                      f"prod serves version {target.version} again (was version {current.version})")
    return Promotion(use_case=use_case, version=target.version, to="prod",
                     status=SUCCEEDED if stage.status == SUCCEEDED else FAILED, stages=(stage,),
                     seconds=time.monotonic() - started, previous_version=current.version)


# -- stages -----------------------------------------------------------------------------------------------------------


def endpoint_settings(use_case: str, env: str) -> Any:
    """The single-model endpoint ``env`` configures for ``use_case`` in cdk.json (``endpoints`` of the environment)."""
    from modelwerk import settings

    environment = settings.load().environment(env)
    found = [e for e in environment.endpoints.values() if e.use_case == use_case and not e.multi_model]
    if not found:
        raise ConfigurationError(f"cdk.json configures no single-model endpoint of {use_case} in {env}; add one under "
                                 f"the {env} environment's 'endpoints' to promote to it")
    return found[0]


def _deploy(use_case: str, mv: Any, env: str, say: Callable[[str], None]) -> Stage:
    """The ``deploy-<env>`` stage: the environment's endpoint serves ``mv`` (blue/green when it runs already)."""
    from modelwerk import endpoints

    name = f"deploy-{env}"
    settings = endpoint_settings(use_case, env)
    try:
        serving = endpoints.describe(settings.name, env=env)
    except NotFoundError:
        serving = None
    if serving is not None and serving.version == mv.version and serving.status == "InService":
        return Stage(name, SUCCEEDED, f"{settings.name} in {env} already serves version {mv.version}")
    say(f"deploying {use_case} version {mv.version} to {settings.name} in {env}")
    started = time.monotonic()
    try:
        endpoint = endpoints.deploy(use_case, mv.version, endpoint=settings.name, env=env, progress=say)
    except ModelwerkError as error:
        return Stage(name, FAILED, f"{settings.name} in {env}: {error}")
    seconds = time.monotonic() - started
    if endpoint.status == "RolledBack":
        return Stage(name, FAILED, f"{settings.name} in {env} rolled back to version {endpoint.version}: "
                                   f"{endpoint.deployment.get('reason')}")
    how = "blue/green" if serving is not None else "created"
    return Stage(name, SUCCEEDED, f"{settings.name} in {env} serves version {mv.version} ({how}, {seconds:.0f} s)")


def _gate(use_case: str, mv: Any) -> tuple[Stage, dict[str, Any] | None]:
    from modelwerk import endpoints, settings
    from modelwerk.core import gate
    from modelwerk.platform import resolve

    endpoint = endpoint_settings(use_case, "staging")
    cases_file = settings.load().use_cases[use_case].folder / GATE_CASES
    if not cases_file.is_file():
        return Stage("quality-gate", FAILED, f"{use_case} has no {GATE_CASES} next to its contract "
                                             f"({cases_file.parent}); add data points with expected predictions"), None
    try:
        cases = gate.read_cases(cases_file, inputs=[column["name"] for column in mv.input_schema])
    except gate.GateError as error:
        return Stage("quality-gate", FAILED, f"{cases_file}: {error}"), None
    platform = resolve("staging")
    budget = _latency_budget(platform, endpoint)
    client = endpoints.runtime_client(platform)
    result = gate.run(cases, gate.sagemaker_invoke(endpoint.name, client), budget_ms=budget)
    report = result.to_dict()
    p95 = result.latency_ms.get("p95")
    latency = f"p95 {p95:.1f} ms of {budget} ms" if p95 is not None else "no latency measured"
    if result.passed:
        return Stage("quality-gate", SUCCEEDED, f"{len(result.cases)} data points as expected, {latency}"), report
    return Stage("quality-gate", FAILED, "; ".join(result.failures) + f" ({latency})"), report


def _latency_budget(platform: Any, endpoint: Any) -> int:
    """The gate's latency budget: what the endpoint's deployed latency alarm tolerates (its threshold, in ms), so
    the gate and the alarm that would roll the endpoint back agree; the setting where no alarm is deployed."""
    from modelwerk import naming

    alarms = platform.session().client("cloudwatch").describe_alarms(
        AlarmNames=[naming.endpoint_alarm_name(endpoint.name, "latency")])["MetricAlarms"]
    if not alarms or alarms[0].get("Threshold") is None:
        return int(endpoint.max_latency_ms)
    return int(float(alarms[0]["Threshold"]) / 1000)  # ModelLatency is in microseconds
