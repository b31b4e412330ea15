"""The lifecycle report: one HTML page per run of the platform — metrics and lineage per version, what each
environment's endpoints serve, and the latest drift report of each endpoint with a plot per drifted feature.

It reads only what the platform keeps (the registry, the endpoints, the drift monitor's reports in each environment's
serving bucket), so it can be written at any time, and again; ``modelwerk report`` writes it under
``.modelwerk/reports/``.

Example
-------
>>> path = modelwerk.report.write(["pump-health"])
>>> path.name
'lifecycle-20261123-101500.html'
"""

from __future__ import annotations

import html
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelwerk import naming
from modelwerk.settings import WORKLOAD_ENVIRONMENTS
from modelwerk.errors import ModelwerkError

log = logging.getLogger("modelwerk")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1f2328} h1{font-size:22px} h2{font-size:18px;margin-top:32px}
h3{font-size:15px} table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #d0d7de;padding:3px 8px;
font-size:13px;text-align:right} th{background:#f6f8fa} td.text{text-align:left} .note{color:#57606a;font-size:13px}
"""


def write(use_cases: list[str] | None = None, *, out: Path | str | None = None) -> Path:
    """Write the report of ``use_cases`` (default: every use case) to ``out`` (default: a new file under the local
    records' ``reports/``); the path written."""
    from modelwerk.platform import resolve

    platform = resolve()
    chosen = use_cases or sorted(platform.contracts)
    for use_case in chosen:
        platform.contract(use_case)  # an unknown use case fails here, naming the known ones
    moment = datetime.now(timezone.utc)
    deployed = _endpoints()
    sections = [_use_case_section(use_case, [(env, e) for env, e in deployed if e.use_case == use_case])
                for use_case in chosen]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Modelwerk lifecycle report</title>"
            f"<style>{_STYLE}</style></head><body><h1>Modelwerk lifecycle report</h1>"
            f"<p class='note'>{moment:%Y-%m-%d %H:%M:%S} UTC · use cases: {html.escape(', '.join(chosen))}</p>"
            + "".join(sections) + "</body></html>")
    path = Path(out) if out else reports_dir() / f"lifecycle-{moment:%Y%m%d-%H%M%S}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def reports_dir() -> Path:
    """``reports/`` of the local records (``.modelwerk/`` of the checkout, or ``MODELWERK_STATE_DIR``)."""
    from modelwerk import settings

    return settings.state_dir() / "reports"


def _use_case_section(use_case: str, endpoints: list[tuple[str, Any]]) -> str:
    from modelwerk import models

    versions = models.versions(use_case)
    parts = [f"<h2>{html.escape(use_case)}</h2>", "<h3>Versions</h3>", _versions_table(versions)]
    parts += ["<h3>Endpoints</h3>", _endpoints_table(endpoints)]
    for env, endpoint in endpoints:
        parts += [f"<h3>Cost of {html.escape(endpoint.name)} in {env}</h3>", _cost_table(env, endpoint.name)]
    for env, endpoint in endpoints:
        drift = _latest_drift(env, endpoint.name)
        if drift is not None:
            parts += [f"<h3>Drift of {html.escape(endpoint.name)} in {env}</h3>", drift._repr_html_()]
    return "".join(parts)


def _versions_table(versions: list[Any]) -> str:
    if not versions:
        return "<p class='note'>no registered versions</p>"
    metrics = sorted({name for v in versions for name in v.metrics})
    header = ["version", "approval", "created", *metrics, "prod", "code commit", "data snapshot",
              "pipeline execution"]
    rows = []
    for v in versions:
        prod = ("serving or served" if v.in_prod_history else
                "rolled back" if v.rolled_back_from_prod_at else "")
        cells = [str(v.version), v.approval_status, f"{v.created_at:%Y-%m-%d %H:%M}" if v.created_at else "",
                 *("" if v.metrics.get(m) is None else f"{v.metrics[m]:.4g}" for m in metrics), prod,
                 (v.lineage.get("code_commit") or "")[:10], v.lineage.get("data_snapshot_id") or "",
                 (v.lineage.get("pipeline_execution_arn") or "").rsplit("/", 1)[-1]]
        rows.append(cells)
    return _table(header, rows, text_columns={1, len(header) - 4, len(header) - 3, len(header) - 2,
                                              len(header) - 1})


def _endpoints() -> list[tuple[str, Any]]:
    """Every environment's endpoints, once for the whole report."""
    from modelwerk import endpoints

    found = []
    for env in WORKLOAD_ENVIRONMENTS:
        try:
            listed = endpoints.list_endpoints(env=env)
        except ModelwerkError as error:  # an environment not deployed (locally: not promoted to yet)
            log.debug("no endpoints of %s in the report: %s", env, error)
            continue
        found += [(env, e) for e in listed]
    return found


def _endpoints_table(endpoints: list[tuple[str, Any]]) -> str:
    if not endpoints:
        return "<p class='note'>not deployed</p>"
    rows = [[env, e.name, e.status, "" if e.version is None else str(e.version),
             (e.deployment or {}).get("outcome", "")] for env, e in endpoints]
    return _table(["environment", "endpoint", "status", "version", "last deployment"], rows,
                  text_columns={0, 1, 2, 4})


def _cost_table(env: str, endpoint: str) -> str:
    """What the endpoint's observed traffic costs a month on each serving path, and the cheapest; a note instead when
    it cannot be priced (the report never fails for it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from modelwerk import cost

    try:
        priced = cost.endpoint_cost(endpoint, env=env)
    except (ModelwerkError, BotoCoreError, ClientError) as error:
        log.debug("no cost of %s in %s: %s", endpoint, env, error)
        return f"<p class='note'>not priced: {html.escape(str(error))}</p>"
    rows = [[name + (" (cheapest)" if name == priced.cheapest else ""), cost.money(path.monthly_usd), path.basis]
            for name, path in priced.paths.items()]
    note = (f"<p class='note'>{priced.invocations} requests in the last {priced.window_hours:g} h, "
            f"{priced.requests_per_month:,} a month; list prices of {html.escape(priced.region)} as of "
            f"{html.escape(priced.prices_as_of or '-')}</p>")
    return note + _table(["path", "a month", "basis"], rows, text_columns={0, 2})


def _latest_drift(env: str, endpoint: str) -> Any:
    """The drift monitor's newest report of ``endpoint`` in ``env``'s serving bucket, as a MonitorResult."""
    from botocore.exceptions import BotoCoreError, ClientError

    from modelwerk.monitoring import MonitorResult
    from modelwerk.platform import resolve

    try:
        platform = resolve(env)
        bucket = platform.bucket("serving")
        s3 = platform.session().client("s3")
        prefix = f"{naming.MONITORING_REPORT_PREFIX}/{endpoint}/"
        keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", []) if item["Key"].endswith(".json")]
        if not keys:
            return None
        stored = json.loads(s3.get_object(Bucket=bucket, Key=max(keys))["Body"].read())
    except (ModelwerkError, BotoCoreError, ClientError, ValueError) as error:
        log.debug("no drift report of %s in %s: %s", endpoint, env, error)
        return None
    details = stored.get("details") or {}
    return MonitorResult(endpoint=endpoint, window=stored.get("window") or {}, rows=stored.get("rows", 0),
                         bad_lines=stored.get("bad_lines", 0), features=stored.get("features") or {},
                         worst=stored.get("worst"), quality=stored.get("quality"),
                         report_uri=f"s3://{bucket}/{max(keys)}", alarms=[], retraining_execution_arn=None,
                         distributions={name: d["distribution"] for name, d in details.items()
                                        if isinstance(d, dict) and d.get("distribution")})


def _table(header: list[str], rows: list[list[str]], *, text_columns: set[int]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td{' class=text' if i in text_columns else ''}>{html.escape(str(c))}</td>" for i, c in enumerate(row))
        + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
