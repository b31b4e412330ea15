"""SageMaker transform jobs: Batch Transform run by the embedded SageMaker (requests in, AWS's answers out).

moto stores a transform job and calls it Completed at once; ``CreateTransformJob`` checks the request (a free name,
an existing model, what the embedded SageMaker can run: :mod:`.transform_models`), lets moto store it and runs it in
the background. ``DescribeTransformJob`` and ``ListTransformJobs`` answer the job's real status (InProgress ->
Completed | Failed | Stopped, with the FailureReason), ``StopTransformJob`` stops it (Stopping -> Stopped), and each
change is a "SageMaker Transform Job State Change" event on the account's default bus.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone
from typing import Any

from modelwerk.local.services._routing import AwsError, Call
from modelwerk.local.services.sagemaker.transform_models import TransformJobs, job_arn, validation

_state: dict[str, TransformJobs] = {}
_DEFAULT_PAGE = 10


def _jobs() -> TransformJobs:
    if "jobs" not in _state:
        raise AwsError("ServiceUnavailable", "the embedded SageMaker's transform jobs have not started", 503)
    return _state["jobs"]


def _not_found(call: Call, name: str) -> AwsError:
    return validation(f"Could not find transform job '{job_arn(call.account, call.region, name)}'.")


def create_transform_job(call: Call) -> dict[str, Any]:
    jobs = _jobs()
    plan = jobs.check(call.account, call.region, call.params)
    answer = call.forward_json()
    jobs.create(call.account, call.region, call.params, plan)
    return answer


def describe_transform_job(call: Call) -> dict[str, Any]:
    name = call.params["TransformJobName"]
    job = _jobs().get(call.account, call.region, name)
    if job is not None:
        return job.describe()
    stored = _stored(call, name)
    if stored is None:
        raise _not_found(call, name)
    # stored by moto without this server running it (another process, an earlier server): nothing ran it
    answer = {"TransformJobName": name, "TransformJobArn": stored.arn, "TransformJobStatus": "Failed",
              "ModelName": stored.model_name, "TransformInput": stored.transform_input,
              "TransformResources": stored.transform_resources, "CreationTime": stored.creation_time,
              "FailureReason": "the embedded AWS that ran this job stopped before it ended"}
    if stored.transform_output:
        answer["TransformOutput"] = stored.transform_output
    return answer


def stop_transform_job(call: Call) -> dict[str, Any]:
    name = call.params["TransformJobName"]
    job = _jobs().get(call.account, call.region, name)
    if job is None:
        raise _not_found(call, name)
    _jobs().stop(job)
    return {}


def list_transform_jobs(call: Call) -> dict[str, Any]:
    from moto.sagemaker.models import sagemaker_backends

    params = call.params
    summaries = []
    for name, stored in sagemaker_backends[call.account][call.region].transform_jobs.items():
        job = _jobs().get(call.account, call.region, name)
        summary = _summary(job.describe() if job is not None else describe_transform_job(_named(call, name)),
                           job.modified if job is not None else None)
        if _matches(summary, params):
            summaries.append(summary)
    key = {"Name": lambda s: s["TransformJobName"], "Status": lambda s: s["TransformJobStatus"]}.get(
        params.get("SortBy", "CreationTime"), lambda s: s["CreationTime"])
    summaries.sort(key=key, reverse=params.get("SortOrder", "Descending") == "Descending")
    size = params.get("MaxResults") or _DEFAULT_PAGE
    offset = 0
    if params.get("NextToken"):
        try:
            offset = int(base64.urlsafe_b64decode(params["NextToken"].encode()).decode())
        except (ValueError, binascii.Error):
            raise validation("Invalid pagination token") from None
    answer: dict[str, Any] = {"TransformJobSummaries": summaries[offset:offset + size]}
    if offset + size < len(summaries):
        answer["NextToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
    return answer


def _named(call: Call, name: str) -> Call:
    return Call(service=call.service, operation="DescribeTransformJob", params={"TransformJobName": name},
                account=call.account, region=call.region, access_key=call.access_key, environ=call.environ)


def _stored(call: Call, name: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[call.account][call.region].transform_jobs.get(name)


def _summary(described: dict[str, Any], modified: datetime | None) -> dict[str, Any]:
    summary = {k: described[k] for k in ("TransformJobName", "TransformJobArn", "CreationTime", "TransformJobStatus")}
    for member in ("TransformEndTime", "FailureReason"):
        if member in described:
            summary[member] = described[member]
    summary["LastModifiedTime"] = modified or described.get("TransformEndTime") or described["CreationTime"]
    return summary


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _matches(summary: dict[str, Any], params: dict[str, Any]) -> bool:
    if params.get("NameContains") and params["NameContains"] not in summary["TransformJobName"]:
        return False
    if params.get("StatusEquals") and params["StatusEquals"] != summary["TransformJobStatus"]:
        return False
    for member, moment, after in (("CreationTimeAfter", "CreationTime", True),
                                  ("CreationTimeBefore", "CreationTime", False),
                                  ("LastModifiedTimeAfter", "LastModifiedTime", True),
                                  ("LastModifiedTimeBefore", "LastModifiedTime", False)):
        if params.get(member) is None:
            continue
        value, bound = _utc(summary[moment]), _utc(params[member])
        if (after and value <= bound) or (not after and value >= bound):
            return False
    return True


HANDLERS: dict[str, Any] = {
    "CreateTransformJob": create_transform_job,
    "DescribeTransformJob": describe_transform_job,
    "ListTransformJobs": list_transform_jobs,
    "StopTransformJob": stop_transform_job,
}
CONTROLS: dict[str, Any] = {}


def start(context: Any) -> None:
    _state["jobs"] = TransformJobs(context)


def stop() -> None:
    jobs = _state.pop("jobs", None)
    if jobs is not None:
        jobs.stop_all()
