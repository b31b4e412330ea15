"""Monitoring: how far an endpoint's traffic has drifted from its version's baseline, how good its predictions are
against ground truth, and whether that needs retraining.

``run`` invokes the environment's drift monitor function (``lambda:Invoke``) with the scheduled event its schedule
sends, then reports the endpoint's monitoring alarms as CloudWatch holds them. CloudWatch judges those alarms at
their period's end: one that goes to ALARM notifies the environment's on-call topic and, through the retraining
rule, starts the use case's pipeline: in the environment itself when it trains, else in the training environment
its alarms are forwarded to (prod's alarm starts dev's pipeline). The embedded AWS does the same.
``feedback`` uploads ground truth keyed by the inference ids callers gave (``InferenceId``).

Example
-------
>>> import modelwerk
>>> result = modelwerk.monitoring.run("pump-health")
>>> result.rows, result.alarms[0]
(1200, {'name': 'pump-health-data-drift', 'state': 'ALARM'})
>>> modelwerk.drift_report(result)          # a table in a notebook, one bar per feature's PSI
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from modelwerk import naming
from modelwerk.errors import ConfigurationError, NotFoundError, ValidationError

#: The columns a ground-truth file carries (``row`` optional: the row of a many-row request, from 0).
GROUND_TRUTH_COLUMNS = ("inference_id", "label")


@dataclass(frozen=True)
class MonitorResult:
    """One monitor run of an endpoint: the window, what was read, drift per feature, the alarms after it."""

    endpoint: str
    window: dict[str, str]
    rows: int
    bad_lines: int
    features: dict[str, dict[str, float | None]]
    worst: dict[str, Any]
    quality: dict[str, Any] | None
    report_uri: str | None
    alarms: list[dict[str, str]] = field(default_factory=list)
    retraining_execution_arn: str | None = None
    #: Per feature, what its PSI compared (``labels``, ``baseline`` and ``current`` proportions), for plots.
    distributions: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "window": self.window, "rows": self.rows, "bad_lines": self.bad_lines,
                "features": self.features, "worst": self.worst, "quality": self.quality,
                "report_uri": self.report_uri, "alarms": self.alarms,
                "retraining_execution_arn": self.retraining_execution_arn}

    def drifted(self, threshold: float = 0.2) -> list[str]:
        return [n for n, f in self.features.items() if f.get("psi") is not None and f["psi"] >= threshold]

    def _repr_html_(self) -> str:
        return drift_report(self)._repr_html_()


def _endpoint_config(platform: Any, endpoint: str) -> tuple[str, Any]:
    """(use case, its MonitoringConfig) of a configured single-model endpoint."""
    from modelwerk import settings

    config = settings.load()
    configured = config.environment(platform.env).endpoints.get(endpoint)
    if configured is None:
        raise NotFoundError(f"endpoint {endpoint!r} is not configured in the {platform.env} environment; monitored "
                            f"are {sorted(config.environment(platform.env).endpoints)}")
    if configured.multi_model:
        raise ValidationError(f"{endpoint} is a multi-model endpoint: its versions each have their own baseline; "
                              "monitor a single-model endpoint")
    if not configured.captures:
        raise ValidationError(f"{endpoint} captures no requests (serverless, or capture_sampling_percent 0), so it "
                              "has no drift monitor; monitor an endpoint that captures")
    return configured.use_case, config.use_case(configured.use_case).monitoring


def alarm_names(endpoint: str, quality: dict[str, float]) -> list[str]:
    """The endpoint's monitoring alarms, as the monitoring stack names them (the composite last)."""
    from modelwerk.settings import QUALITY_ALARMS

    names = [naming.monitoring_alarm_name(endpoint, kind) for kind in ("drift", "no-data")]
    names += [f"{naming.monitoring_alarm_name(endpoint, 'quality')}-{QUALITY_ALARMS[k].lower()}" for k in sorted(quality)]
    return [*names, naming.monitoring_alarm_name(endpoint, "composite")]


def scheduled_event(endpoint: str, window_minutes: int, at: _dt.datetime, account: str, region: str,
                    rule_arn: str) -> dict[str, Any]:
    """The event an endpoint's monitoring schedule sends: EventBridge's scheduled event, the endpoint in detail."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": account, "time": at.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region, "resources": [rule_arn],
            "detail": {"endpoint": endpoint, "window_minutes": window_minutes}}


def run(endpoint: str, *, env: str | None = None, at: _dt.datetime | None = None,
        window_minutes: int | None = None) -> MonitorResult:
    """Monitor ``endpoint`` over the window ending at ``at`` (default now); see the module's notes."""
    from modelwerk.platform import resolve

    platform = resolve(env)
    use_case, settings = _endpoint_config(platform, endpoint)
    at = at or _dt.datetime.now(_dt.timezone.utc)
    minutes = window_minutes or settings.window_minutes
    function = naming.drift_monitor_function_name(platform.project, platform.env)
    session = platform.session()
    account = session.client("sts").get_caller_identity()["Account"]
    region = session.region_name or platform.region
    event = scheduled_event(endpoint, minutes, at, account, region, f"arn:aws:events:{region}:{account}:rule/{function}")
    answer = session.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())
    report = json.loads(answer["Payload"].read())
    if answer.get("FunctionError"):
        raise ValidationError(f"the drift monitor failed: {report.get('errorMessage', report)}")
    described = session.client("cloudwatch").describe_alarms(
        AlarmNames=alarm_names(endpoint, settings.quality), AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    alarms = [{"name": a["AlarmName"], "state": a["StateValue"]}
              for a in [*described["MetricAlarms"], *described["CompositeAlarms"]]]
    retraining = None  # CloudWatch judges the alarms and EventBridge starts the retraining, asynchronously
    return MonitorResult(endpoint=endpoint, window=report["window"], rows=report["rows"],
                         bad_lines=report["bad_lines"], features=report["features"], worst=report["worst"],
                         quality=report.get("quality"), report_uri=report.get("report_uri"), alarms=alarms,
                         retraining_execution_arn=retraining, distributions=report.get("distributions") or {})


# -- ground truth ------------------------------------------------------------------------------------------------------


def feedback(endpoint: str, path: str | Path, *, env: str | None = None) -> dict[str, Any]:
    """Upload ground truth for ``endpoint``: a CSV with ``inference_id`` and ``label`` (and ``row`` for a many-row
    request). The monitor joins it to the captured predictions with those inference ids; the file goes to the
    serving bucket of ``env``'s account."""
    from modelwerk.platform import resolve

    file = Path(path)
    if not file.is_file():
        raise ValidationError(f"{file} not found: give a CSV file with the columns inference_id and label")
    try:
        frame = pd.read_csv(file, dtype={"inference_id": str})
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{file} is not a readable CSV file ({exc}); give inference_id,label rows") from None
    missing = [c for c in GROUND_TRUTH_COLUMNS if c not in frame.columns]
    if missing:
        raise ValidationError(f"{file} lacks the column(s) {missing}; ground truth is inference_id,label[,row]")
    blank = int(frame["inference_id"].isna().sum() + frame["label"].isna().sum())
    if frame.empty or blank == 2 * len(frame):
        raise ValidationError(f"{file} holds no labelled rows")
    platform = resolve(env)
    _endpoint_config(platform, endpoint)
    body = file.read_bytes()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    key = f"{naming.ground_truth_prefix(endpoint)}{stamp}-{hashlib.sha256(body).hexdigest()[:12]}.csv"
    bucket = platform.bucket("serving")
    platform.session().client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/csv")
    return {"endpoint": endpoint, "rows": int(len(frame)), "rows_without_label_or_id": blank,
            "uri": f"s3://{bucket}/{key}"}


# -- notebooks ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftReportView:
    """A monitor run as a notebook shows it: a table of the features, worst first, with a PSI bar each, then a plot
    per drifted feature of its baseline and current proportions per bin (or category)."""

    result: MonitorResult
    threshold: float = 0.2

    def frame(self) -> pd.DataFrame:
        rows = [{"feature": name, **stats} for name, stats in self.result.features.items()]
        frame = pd.DataFrame(rows, columns=["feature", "psi", "ks", "js", "missing_rate"])
        return frame.sort_values("psi", ascending=False, na_position="last").reset_index(drop=True)

    def _repr_html_(self) -> str:
        frame = self.frame()
        top = max([v for v in frame["psi"] if v is not None and v == v] + [self.threshold])
        cells = []
        for row in frame.itertuples():
            psi = row.psi if row.psi is not None and row.psi == row.psi else None
            width = 0 if psi is None else int(200 * psi / top)
            colour = "#c0392b" if psi is not None and psi >= self.threshold else "#2e86c1"
            bar = f'<svg width="204" height="12"><rect width="{width}" height="12" fill="{colour}"/></svg>'
            figures = "".join(f"<td>{'' if v is None or v != v else f'{v:.3f}'}</td>"
                              for v in (row.psi, row.ks, row.js, row.missing_rate))
            cells.append(f"<tr><td>{html.escape(str(row.feature))}</td>{figures}<td>{bar}</td></tr>")
        alarms = ", ".join(f"{html.escape(a['name'])}: {a['state']}" for a in self.result.alarms) or "none"
        return (f"<div><b>{html.escape(self.result.endpoint)}</b> — {self.result.rows} rows, "
                f"{self.result.bad_lines} bad lines, window {html.escape(self.result.window.get('start', ''))} to "
                f"{html.escape(self.result.window.get('end', ''))}; alarms: {alarms}"
                "<table><tr><th>feature</th><th>PSI</th><th>KS</th><th>JS</th><th>missing</th><th></th></tr>"
                + "".join(cells) + "</table>" + self.plots() + "</div>")

    def plots(self) -> str:
        """An SVG plot per drifted feature (PSI at or above the threshold), worst first."""
        from modelwerk.charts import distribution_svg

        drifted = [name for name in self.frame()["feature"] if name in self.result.drifted(self.threshold)]
        charts = []
        for name in drifted:
            shape = self.result.distributions.get(name)
            if shape:
                psi = self.result.features[name]["psi"]
                charts.append(distribution_svg(f"{name} (PSI {psi:.2f})", shape["labels"], shape["baseline"],
                                               shape["current"]))
        return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{"".join(charts)}</div>' if charts else ""


def drift_report(result: MonitorResult | str, *, env: str | None = None, threshold: float = 0.2) -> DriftReportView:
    """A monitor run (or, given an endpoint's name, a new one) as a table for a notebook."""
    if isinstance(result, str):
        result = run(result, env=env)
    if not isinstance(result, MonitorResult):
        raise ConfigurationError("drift_report takes a MonitorResult or an endpoint name")
    return DriftReportView(result, threshold)
