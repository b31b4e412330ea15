"""CodeBuild's build operations: parameters in, outputs in botocore's shapes out (the builds live in :mod:`.models`).

These operations are ours wholly (moto's own builds, which never run, never show); projects are moto's.
"""

from __future__ import annotations

from typing import Any

from modelwerk.local.services._routing import Call
from modelwerk.local.services.codebuild import exceptions
from modelwerk.local.services.codebuild.models import builds, caller_name, project_exists

#: Build ids per page of ListBuilds and ListBuildsForProject (CodeBuild's own page size).
PAGE_SIZE = 100


def start_build(call: Call) -> dict[str, Any]:
    initiator = caller_name(call.account, call.region, call.access_key)
    return {"build": builds.start_build(call.account, call.region, call.params, initiator)}


def batch_get_builds(call: Call) -> dict[str, Any]:
    found, missing = builds.batch_get_builds(call.account, call.region, call.params["ids"])
    return {"builds": found, "buildsNotFound": missing}


def stop_build(call: Call) -> dict[str, Any]:
    return {"build": builds.stop_build(call.account, call.region, call.params["id"])}


def list_builds_for_project(call: Call) -> dict[str, Any]:
    name = call.params["projectName"]
    ids = builds.build_ids(call.account, call.region, name, _descending(call))
    if not ids and not project_exists(call.account, call.region, name):
        raise exceptions.project_not_found(name)
    return _page(ids, call.params.get("nextToken"))


def list_builds(call: Call) -> dict[str, Any]:
    return _page(builds.build_ids(call.account, call.region, None, _descending(call)), call.params.get("nextToken"))


def _descending(call: Call) -> bool:
    order = call.params.get("sortOrder") or "DESCENDING"
    if order not in ("ASCENDING", "DESCENDING"):
        raise exceptions.invalid_input("sortOrder must be ASCENDING or DESCENDING")
    return order == "DESCENDING"


def _page(ids: list[str], token: str | None) -> dict[str, Any]:
    """A page of ids; ``nextToken`` is the position of the next page's first id."""
    start = 0
    if token:
        if not token.isdigit() or int(token) > len(ids):
            raise exceptions.invalid_input("nextToken is not a token of this listing")
        start = int(token)
    answer: dict[str, Any] = {"ids": ids[start:start + PAGE_SIZE]}
    if start + PAGE_SIZE < len(ids):
        answer["nextToken"] = str(start + PAGE_SIZE)
    return answer


HANDLERS = {
    "StartBuild": start_build,
    "BatchGetBuilds": batch_get_builds,
    "StopBuild": stop_build,
    "ListBuildsForProject": list_builds_for_project,
    "ListBuilds": list_builds,
}
