"""Athena's query operations: parameters in, outputs in the shapes of botocore's athena model out."""

from __future__ import annotations

from typing import Any

from modelwerk.local.services._routing import AwsError, Call
from modelwerk.local.services.athena.models import AthenaQueries, invalid_request

_queries: AthenaQueries | None = None


def start(context: Any) -> None:
    global _queries
    _queries = AthenaQueries(context)


def stop() -> None:
    global _queries
    if _queries is not None:
        _queries.close()
    _queries = None


def _running() -> AthenaQueries:
    if _queries is None:
        raise AwsError("InternalServerException", "the embedded Athena is not running", 500)
    return _queries


def start_query_execution(call: Call) -> dict[str, Any]:
    return {"QueryExecutionId": _running().start(call.account, call.region, call.params)}


def get_query_execution(call: Call) -> dict[str, Any]:
    execution = _running().get(call.account, call.region, call.params["QueryExecutionId"])
    return {"QueryExecution": execution.describe()}


def batch_get_query_execution(call: Call) -> dict[str, Any]:
    ids = call.params["QueryExecutionIds"]
    if not 1 <= len(ids) <= 50:
        raise invalid_request("QueryExecutionIds must hold between 1 and 50 ids")
    found, unprocessed = [], []
    for execution_id in ids:
        try:
            found.append(_running().get(call.account, call.region, execution_id).describe())
        except AwsError as error:
            unprocessed.append({"QueryExecutionId": execution_id, "ErrorCode": "INVALID_INPUT",
                                "ErrorMessage": error.message})
    return {"QueryExecutions": found, "UnprocessedQueryExecutionIds": unprocessed}


def list_query_executions(call: Call) -> dict[str, Any]:
    ids = _running().list(call.account, call.region, call.params.get("WorkGroup") or "primary")
    return _page(call.params, ids, "QueryExecutionIds", default=50)


def stop_query_execution(call: Call) -> dict[str, Any]:
    _running().stop(call.account, call.region, call.params["QueryExecutionId"])
    return {}


def get_query_results(call: Call) -> dict[str, Any]:
    """Rows a page at a time (``MaxResults`` up to 1000; the header row of a SELECT counts on the first page)."""
    queries = _running()
    execution = queries.get(call.account, call.region, call.params["QueryExecutionId"])
    columns, rows = queries.results(execution)
    page = _page(call.params, rows, "Rows", default=1000)
    result: dict[str, Any] = {
        "UpdateCount": execution.update_count,
        "ResultSet": {"Rows": [{"Data": [{} if v is None else {"VarCharValue": v} for v in row]}
                               for row in page["Rows"]],
                      "ResultSetMetadata": {"ColumnInfo": columns}},
    }
    if "NextToken" in page:
        result["NextToken"] = page["NextToken"]
    return result


def _page(params: dict[str, Any], items: list[Any], member: str, *, default: int) -> dict[str, Any]:
    size = int(params.get("MaxResults") or default)
    token = params.get("NextToken")
    try:
        offset = int(token) if token else 0
    except ValueError:
        raise invalid_request(f"The NextToken {token!r} is not valid") from None
    page: dict[str, Any] = {member: items[offset:offset + size]}
    if offset + size < len(items):
        page["NextToken"] = str(offset + size)
    return page


HANDLERS = {
    "StartQueryExecution": start_query_execution,
    "GetQueryExecution": get_query_execution,
    "BatchGetQueryExecution": batch_get_query_execution,
    "ListQueryExecutions": list_query_executions,
    "StopQueryExecution": stop_query_execution,
    "GetQueryResults": get_query_results,
}
