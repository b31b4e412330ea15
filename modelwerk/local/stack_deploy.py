"""The engine of CodePipeline's CloudFormation deploy action (CREATE_UPDATE) in the embedded AWS.

A pipeline hands over a template, parameter overrides and the template configuration's tags; the stack is created, or
updated as CloudFormation updates it, by the local deployer (:class:`modelwerk.local.deployer.StackDeployer`) in the
account of the session given. Each stack keeps one record, ``<records>/<stack name>.json``: the template, the
parameters (given and resolved), the tags and every resource's physical id and resolved properties. An update
compares against it; a failed deployment leaves it as it was (the stack is as before: UPDATE_ROLLBACK_COMPLETE), and
the same template, parameters and tags again are NO_CHANGES, which CodePipeline reports as a success.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from modelwerk.errors import LocalModeError
from modelwerk.local.assembly import StackArtifact
from modelwerk.local.deployer import ParameterError, StackDeployer, StackDeployment

__all__ = ["StackDeployFailed", "StackDeployResult", "deploy_stack_template", "stack_record"]


class StackDeployFailed(LocalModeError):
    """The stack could not be created or updated; the message says why, and the stack is as it was."""


@dataclass(frozen=True)
class StackDeployResult:
    """``status``: CREATE_COMPLETE, UPDATE_COMPLETE or NO_CHANGES."""

    status: str
    stack_id: str
    summary: str
    outputs: dict[str, Any]
    deployment: StackDeployment


def stack_record(records: Path, stack_name: str) -> dict[str, Any] | None:
    """The record of the stack's last successful deployment, or None if it was never deployed."""
    path = Path(records) / f"{stack_name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def deploy_stack_template(session: Any, *, stack_name: str, template: dict[str, Any],
                          parameters: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
                          records: Path, progress: Callable[[str], None] | None = None,
                          endpoint_url: str | None = None) -> StackDeployResult:
    """Create or update ``stack_name`` from ``template`` in the session's account and region.

    ``parameters`` are the overrides (other parameters take their defaults), ``tags`` the stack's tags (propagated to
    the resources that take tags), ``records`` the folder of this account's stack records, ``endpoint_url`` the
    embedded AWS (None: the session's own configuration). Raises :class:`StackDeployFailed` when the stack could
    not be created or updated.
    """
    records = Path(records)
    region = session.region_name
    previous = stack_record(records, stack_name)
    tags = {str(k): str(v) for k, v in (tags or {}).items()}
    try:
        account = session.client("sts", region_name=region, endpoint_url=endpoint_url).get_caller_identity()[
            "Account"]
        stack = StackArtifact(name=stack_name, template_file=records / f"{stack_name}.template.json",
                              assets_file=None, account=account, region=region, dependencies=())
        deployer = StackDeployer(session, stack, template=template, parameters=parameters, tags=tags,
                                 previous=StackDeployment.from_dict(previous["deployment"]) if previous else None,
                                 endpoint_url=endpoint_url, progress=progress)
        if previous is not None and _unchanged(previous, template, deployer.parameters, tags):
            return StackDeployResult("NO_CHANGES", previous["stack_id"],
                                     f"Stack {stack_name} is up to date: no changes to deploy.",
                                     previous.get("outputs", {}), deployer.previous or deployer.deployment)
        deployment = deployer.deploy()
        outputs = deployer.outputs()
    except (LocalModeError, ClientError, BotoCoreError) as error:
        raise StackDeployFailed(_reason(stack_name, previous, error)) from error
    status = "UPDATE_COMPLETE" if previous else "CREATE_COMPLETE"
    stack_id = previous["stack_id"] if previous else \
        f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/{uuid.uuid4()}"
    _write(records / f"{stack_name}.json", {
        "stack_name": stack_name, "stack_id": stack_id, "status": status, "account": account, "region": region,
        "template": template, "parameters": deployer.given, "resolved_parameters": deployer.parameters, "tags": tags,
        "outputs": outputs, "deployment": deployment.to_dict(properties=True),
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return StackDeployResult(status, stack_id, _summary(stack_name, status, deployer), outputs, deployment)


def _unchanged(previous: dict[str, Any], template: dict[str, Any], parameters: dict[str, Any],
               tags: dict[str, str]) -> bool:
    """Same template, same parameter values (SSM parameters read again) and same tags as the last deployment."""
    def same(a: Any, b: Any) -> bool:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    return (same(previous["template"], template) and same(previous["resolved_parameters"], parameters)
            and same(previous.get("tags", {}), tags))


def _reason(stack_name: str, previous: dict[str, Any] | None, error: Exception) -> str:
    if isinstance(error, ClientError):
        detail = f"{error.response['Error'].get('Code')}: {error.response['Error'].get('Message')}"
    else:
        detail = str(error)
    detail = " ".join(detail.split())
    if isinstance(error, ParameterError):  # refused before anything was deployed, in CloudFormation's words
        return detail
    if previous is None:
        return f"{detail} (stack {stack_name} was not created: ROLLBACK_COMPLETE)"
    return f"{detail} (stack {stack_name} is as before: UPDATE_ROLLBACK_COMPLETE)"


def _summary(stack_name: str, status: str, deployer: StackDeployer) -> str:
    """One sentence: what the deployment did to the stack's resources."""
    if status == "CREATE_COMPLETE":
        return f"Stack {stack_name} created with {len(deployer.created)} resource(s)."
    kept = len(deployer.resources) - len(deployer.created)
    replaced = ", ".join(sorted(r.logical_id for r in deployer.replaced)) or "none"
    return (f"Stack {stack_name} updated: {kept} resource(s) kept or updated in place, replaced: {replaced}.")


def _write(path: Path, record: dict[str, Any]) -> None:
    """Replace the record in one step, so that a crash leaves the old one or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(partial, path)
