"""SageMaker the model registry: state change events, and what moto's registry lacks.

- ``CreateModelPackage`` and ``UpdateModelPackage`` go to moto; then SageMaker's "SageMaker Model Package State
  Change" is emitted in the registry's account when a versioned package is created and when its approval status
  changes (the deployed promotion rule listens to it).
- ``UpdateModelPackage`` changes only what it is given, as on AWS: moto resets the approval, its description and the
  CustomerMetadataProperties it is not sent, so the request moto gets carries the stored ones (less
  CustomerMetadataPropertiesToRemove, plus the new ones).
- ``Put/Get/DeleteModelPackageGroupPolicy`` (moto has none): one resource policy per group, kept while the server
  runs, like the groups moto keeps.
- Another account's group and versions by ARN, as on AWS: moto keeps each account apart, so ``DescribeModelPackage``,
  ``UpdateModelPackage`` (a version's ARN), ``DescribeModelPackageGroup``, ``ListModelPackages`` and
  ``CreateModelPackage`` (a group's ARN) naming a resource of another account are answered by that account's registry
  when its group's resource policy admits the caller's account for the action (:mod:`.registry_policy`); otherwise
  ``AccessDeniedException``. By name, or by ARN in the caller's account, moto answers (a group's ARN is given to moto
  as the name, which is all its DescribeModelPackageGroup and CreateModelPackage read).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import Any

from modelwerk.local.services._routing import AwsError, Call, Handler, Reply, validation_error
from modelwerk.local.services.sagemaker import registry_policy

STATE_CHANGE = "SageMaker Model Package State Change"
#: What the event's ``detail`` carries of a package (DescribeModelPackage's members, as AWS documents the event).
DETAIL_FIELDS = (
    "ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn", "ModelPackageName", "ModelPackageDescription",
    "CreationTime", "InferenceSpecification", "ModelPackageStatus", "ModelPackageStatusDetails",
    "CertifyForMarketplace", "ModelApprovalStatus", "ApprovalDescription", "MetadataProperties", "ModelMetrics",
    "CustomerMetadataProperties", "DriftCheckBaselines", "LastModifiedTime",
)
#: Members of UpdateModelPackage that moto's registry does not apply: refused rather than dropped.
_NOT_UPDATED = ("InferenceSpecification", "SourceUri", "ModelCard", "ModelLifeCycle", "ModelPackageRegistrationType")

_context: Any = None
_policies: dict[tuple[str, str, str], str] = {}  # (account, region, group name) -> policy document
_lock = threading.Lock()


def _plain(value: Any) -> Any:
    """A DescribeModelPackage answer as the event carries it: timestamps as ISO 8601 UTC text."""
    if isinstance(value, datetime):
        moment = value.astimezone(timezone.utc) if value.tzinfo else value
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def state_change_detail(package: dict[str, Any]) -> dict[str, Any]:
    """The ``detail`` of "SageMaker Model Package State Change" for a DescribeModelPackage answer."""
    detail = {name: _plain(package[name]) for name in DETAIL_FIELDS if package.get(name) is not None}
    detail.setdefault("ModelPackageName", package.get("ModelPackageGroupName"))
    detail["Tags"] = {}
    return detail


def _sagemaker(call: Call) -> Any:
    if _context is None:
        raise AwsError("ServiceUnavailable", "the embedded SageMaker's registry has not started", 503)
    return _context.client("sagemaker", call.account, call.region)


def _emit(call: Call, package: dict[str, Any]) -> None:
    arn = package["ModelPackageArn"]
    _, _, _, region, account, _ = arn.split(":", 5)
    _context.emit_event(account, region, source="aws.sagemaker", detail_type=STATE_CHANGE,
                        detail=state_change_detail(package), resources=[arn])


def _create_model_package(call: Call) -> dict[str, Any]:
    group = call.params.get("ModelPackageGroupName")
    if _is_arn(group):  # this account's group by ARN: moto finds groups by name only
        answer = _forward(call, {**call.params, "ModelPackageGroupName": _name_of(group)})
    else:
        answer = call.forward_json()
    if group:  # a version of a group (an unversioned package has no state events)
        _emit(call, _sagemaker(call).describe_model_package(ModelPackageName=answer["ModelPackageArn"]))
    return answer


def _update_model_package(call: Call) -> dict[str, Any]:
    params = dict(call.params)
    given = sorted(member for member in _NOT_UPDATED if params.get(member) is not None)
    if given:
        raise validation_error(f"the embedded SageMaker does not update {', '.join(given)} of a model package")
    sagemaker = _sagemaker(call)
    try:
        before = sagemaker.describe_model_package(ModelPackageName=params["ModelPackageArn"])
    except sagemaker.exceptions.ClientError as error:
        raise AwsError(error.response["Error"]["Code"], error.response["Error"].get("Message", "")) from None
    properties = dict(before.get("CustomerMetadataProperties") or {})
    for name in params.pop("CustomerMetadataPropertiesToRemove", None) or []:
        properties.pop(name, None)
    properties.update(params.get("CustomerMetadataProperties") or {})
    params["CustomerMetadataProperties"] = properties
    for member in ("ModelApprovalStatus", "ApprovalDescription"):
        if params.get(member) is None and before.get(member) is not None:
            params[member] = before[member]
    answer = _forward(call, params)
    if params.get("ModelApprovalStatus") != before.get("ModelApprovalStatus"):
        _emit(call, sagemaker.describe_model_package(ModelPackageName=answer["ModelPackageArn"]))
    return answer


def _forward(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """moto's answer to this JSON request with ``params`` as its body."""
    body = json.dumps(params, default=str).encode()
    environ = {**call.environ, "CONTENT_LENGTH": str(len(body))}
    rewritten = Call(service=call.service, operation=call.operation, params=params, account=call.account,
                     region=call.region, access_key=call.access_key, environ=environ, body=body, _moto=call._moto)
    return rewritten.forward_json()


# -- group policies ---------------------------------------------------------------------------------------------------


def _group(call: Call) -> tuple[tuple[str, str, str], str]:
    """(key, ARN) of the request's group (name or ARN); ValidationException if the registry has no such group.
    Only the group's own account manages its policy: another account's ARN is refused."""
    from moto.sagemaker.models import sagemaker_backends

    given = call.params["ModelPackageGroupName"]
    if _is_arn(given) and given.split(":")[4:5] != [call.account]:
        raise AwsError("AccessDeniedException", f"User: {_caller(call)} is not authorized to perform: "
                                                f"sagemaker:{call.operation} on resource: {given} because only the "
                                                "group's own account manages its resource policy")
    name = _name_of(given)
    group = sagemaker_backends[call.account][call.region].model_package_groups.get(name)
    if group is None:
        raise validation_error(f"Model Package Group {name} does not exist.")
    return (call.account, call.region, name), group.arn


def _put_policy(call: Call) -> dict[str, Any]:
    key, arn = _group(call)
    policy = call.params["ResourcePolicy"]
    try:
        document = json.loads(policy)
    except ValueError:
        raise validation_error("ResourcePolicy is not a JSON policy document") from None
    if not isinstance(document, dict) or not document.get("Statement"):
        raise validation_error("ResourcePolicy needs a Statement")
    with _lock:
        _policies[key] = policy
    return {"ModelPackageGroupArn": arn}


def _get_policy(call: Call) -> dict[str, Any]:
    key, _ = _group(call)
    with _lock:
        policy = _policies.get(key)
    if policy is None:
        raise validation_error(f"Cannot find resource policy for Model Package Group {key[2]}.")
    return {"ResourcePolicy": policy}


def _delete_policy(call: Call) -> dict[str, Any]:
    key, _ = _group(call)
    with _lock:
        if _policies.pop(key, None) is None:
            raise validation_error(f"Cannot find resource policy for Model Package Group {key[2]}.")
    return {}


# -- another account's registry, by ARN --------------------------------------------------------------------------------

#: The operations that reach another account's group or versions by ARN: the request member naming the resource, and
#: the resource type its ARN must have.
_SHARED = {
    "DescribeModelPackage": ("ModelPackageName", "model-package"),
    "UpdateModelPackage": ("ModelPackageArn", "model-package"),
    "DescribeModelPackageGroup": ("ModelPackageGroupName", "model-package-group"),
    "ListModelPackages": ("ModelPackageGroupName", "model-package-group"),
    "CreateModelPackage": ("ModelPackageGroupName", "model-package-group"),
}


def _is_arn(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("arn:")


def _name_of(group: str) -> str:
    """A group's name from its name or ARN."""
    return group.split(":", 5)[5].split("/", 1)[-1] if _is_arn(group) else group


def _moto(call: Call) -> Reply:
    """moto's answer to the request as it came."""
    status, headers, body = call.forward()
    return Reply(status, body, headers)


def _describe_group(call: Call) -> Any:
    """moto finds a group by its name only."""
    group = call.params["ModelPackageGroupName"]
    return _forward(call, {**call.params, "ModelPackageGroupName": _name_of(group)}) if _is_arn(group) else _moto(call)


def _moto_group(account: str, region: str, name: str) -> Any:
    """moto's group ``name`` in the account (names compared as SageMaker does, ignoring case), or None."""
    from moto.sagemaker.models import sagemaker_backends

    groups = sagemaker_backends[account][region].model_package_groups
    return groups.get(name) or next((g for key, g in groups.items() if key.lower() == name.lower()), None)


def _caller(call: Call) -> str:
    """The caller's ARN as AWS names it in AccessDenied: the assumed role's session, else the account's root."""
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    partition = get_partition(call.region)
    role = sts_backends[call.account][partition].get_assumed_role_from_access_key(call.access_key)
    return role.arn if role is not None else f"arn:{partition}:iam::{call.account}:root"


def _admit(call: Call, key: tuple[str, str, str], group_arn: str, resources: list[str]) -> None:
    """Nothing if the group's resource policy lets the caller's account perform the operation on ``resources``."""
    action = f"sagemaker:{call.operation}"
    with _lock:
        policy = _policies.get(key)
    if policy is None:
        reason = (f"model package group {group_arn} has no resource policy, so none allows account {call.account} "
                  f"to perform {action}")
    else:
        decision = registry_policy.decide(json.loads(policy), call.account, action, resources)
        if decision.allowed:
            return
        reason = (f"the resource policy of model package group {group_arn} does not allow account {call.account}: "
                  f"{decision.reason}")
    raise AwsError("AccessDeniedException", f"User: {_caller(call)} is not authorized to perform: {action} on "
                                            f"resource: {resources[0]} because {reason}")


def _target(call: Call, arn: str) -> tuple[str, str, str, list[str]]:
    """(owning account, group name, group ARN, the ARNs the policy is checked against) of the resource ``arn``."""
    member, kind = _SHARED[call.operation]
    parts = arn.split(":", 5)
    resource_type, _, path = parts[-1].partition("/") if len(parts) == 6 else ("", "", "")
    if resource_type != kind or not path:
        raise validation_error(f"{member} {arn} is not a {kind} ARN")
    partition, region, owner = parts[1], parts[3], parts[4]
    named = path.split("/", 1)[0]  # a group's name, or the (lowercased) group of a version
    group = _moto_group(owner, call.region, named)
    if group is None:
        return owner, named, f"arn:{partition}:sagemaker:{region}:{owner}:model-package-group/{named}", [arn]
    name, resources = group.model_package_group_name, [arn]
    if call.operation == "CreateModelPackage":  # and the version it creates
        from moto.sagemaker.models import sagemaker_backends

        versions = [p for p in list(sagemaker_backends[owner][call.region].model_packages.values())
                    if p.model_package_group_name == name]
        resources.append(f"arn:{partition}:sagemaker:{region}:{owner}:model-package/{name.lower()}/{len(versions) + 1}")
    return owner, name, group.arn, resources


def _in_owner_account(call: Call, arn: str) -> dict[str, Any]:
    """The request answered by the registry of the account in ``arn``, once its group's policy admits the caller."""
    from botocore import xform_name
    from botocore.exceptions import ClientError

    owner, name, group_arn, resources = _target(call, arn)
    _admit(call, (owner, call.region, name), group_arn, resources)
    member, kind = _SHARED[call.operation]
    params = {**call.params, member: name} if kind == "model-package-group" else dict(call.params)
    client = _context.client("sagemaker", owner, call.region)
    try:
        answer = getattr(client, xform_name(call.operation))(**params)
    except ClientError as error:
        raise AwsError(error.response["Error"]["Code"], error.response["Error"].get("Message", ""),
                       error.response["ResponseMetadata"]["HTTPStatusCode"]) from None
    answer.pop("ResponseMetadata", None)
    return answer


def _shared(local: Handler) -> Handler:
    """``local`` for a request by name or in the caller's account; the owning account's answer for another's ARN."""

    def handle(call: Call) -> Any:
        value = call.params.get(_SHARED[call.operation][0])
        if _is_arn(value) and value.split(":")[4:5] != [call.account]:
            if _context is None:
                raise AwsError("ServiceUnavailable", "the embedded SageMaker's registry has not started", 503)
            return _in_owner_account(call, value)
        return local(call)

    return handle


HANDLERS: dict[str, Any] = {
    "CreateModelPackage": _shared(_create_model_package),
    "UpdateModelPackage": _shared(_update_model_package),
    "DescribeModelPackage": _shared(_moto),
    "DescribeModelPackageGroup": _shared(_describe_group),
    "ListModelPackages": _shared(_moto),
    "PutModelPackageGroupPolicy": _put_policy,
    "GetModelPackageGroupPolicy": _get_policy,
    "DeleteModelPackageGroupPolicy": _delete_policy,
}
CONTROLS: dict[str, Any] = {}


def start(context: Any) -> None:
    """Clients of this server in the registry's accounts, and a new server's empty policies (its groups are new)."""
    global _context
    _context = context
    with _lock:
        _policies.clear()


def stop() -> None:
    """Nothing runs in the background."""
