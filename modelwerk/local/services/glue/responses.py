"""Glue's job-run operations: parameters in, outputs in botocore's shapes out (the runs live in :mod:`.models`).

Everything else of Glue (jobs, triggers, the Data Catalog) is moto's.
"""

from __future__ import annotations

from typing import Any

from modelwerk.local.services._routing import Call
from modelwerk.local.services.glue import exceptions
from modelwerk.local.services.glue.models import job_runs

#: GetJobRuns' page size when the caller names none, and the most it may ask for (botocore's OrchestrationPageSize200).
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 200


def start_job_run(call: Call) -> dict[str, Any]:
    return {"JobRunId": job_runs.start_job_run(call.account, call.region, call.params)}


def get_job_run(call: Call) -> dict[str, Any]:
    return {"JobRun": job_runs.get_job_run(call.account, call.region, call.params["JobName"], call.params["RunId"])}


def get_job_runs(call: Call) -> dict[str, Any]:
    """Newest first; ``NextToken`` is the id of the first run of the next page."""
    runs = job_runs.get_job_runs(call.account, call.region, call.params["JobName"])
    size = int(call.params.get("MaxResults") or DEFAULT_PAGE_SIZE)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise exceptions.invalid_input(f"MaxResults must be between 1 and {MAX_PAGE_SIZE}")
    start = 0
    token = call.params.get("NextToken")
    if token:
        ids = [run["Id"] for run in runs]
        if token not in ids:
            raise exceptions.invalid_input("NextToken is not a token of this job's runs")
        start = ids.index(token)
    page = runs[start:start + size]
    answer: dict[str, Any] = {"JobRuns": page}
    if start + size < len(runs):
        answer["NextToken"] = runs[start + size]["Id"]
    return answer


def batch_stop_job_run(call: Call) -> dict[str, Any]:
    stopped, errors = job_runs.batch_stop_job_run(call.account, call.region, call.params["JobName"],
                                                  call.params["JobRunIds"])
    return {"SuccessfulSubmissions": stopped, "Errors": errors}


HANDLERS = {
    "StartJobRun": start_job_run,
    "GetJobRun": get_job_run,
    "GetJobRuns": get_job_runs,
    "BatchStopJobRun": batch_stop_job_run,
}
