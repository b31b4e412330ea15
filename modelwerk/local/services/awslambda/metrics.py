"""Embedded Metric Format: the metrics a function prints (Powertools' ``Metrics``), put into CloudWatch as CloudWatch
Logs extracts them on AWS."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any


def publish_embedded_metrics(lines: list[str], session: Any = None, *, endpoint_url: str | None = None) -> int:
    """Metrics in CloudWatch's embedded metric format (what Powertools prints) put into the embedded CloudWatch (of
    ``session``'s account, at ``endpoint_url``; default this process's), as CloudWatch Logs extracts them on AWS;
    returns how many data points were put."""
    data: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if '"_aws"' not in line:
            continue
        try:
            document = json.loads(line)
            meta = document["_aws"]
            when = datetime.fromtimestamp(int(meta["Timestamp"]) / 1000, tz=timezone.utc)
            directives = meta["CloudWatchMetrics"]
        except (ValueError, KeyError, TypeError):
            continue
        for directive in directives:
            for dimension_set in directive.get("Dimensions") or [[]]:
                dimensions = [{"Name": name, "Value": str(document[name])} for name in dimension_set
                              if name in document]
                for metric in directive.get("Metrics", []):
                    values = document.get(metric["Name"])
                    for value in values if isinstance(values, list) else [values]:
                        if isinstance(value, (int, float)):
                            data.setdefault(directive["Namespace"], []).append({
                                "MetricName": metric["Name"], "Dimensions": dimensions, "Timestamp": when,
                                "Value": float(value), "Unit": metric.get("Unit") or "None"})
    if not data:
        return 0
    if session is None:
        import boto3

        session = boto3.Session()
    cloudwatch = session.client("cloudwatch", endpoint_url=endpoint_url) if endpoint_url else session.client(
        "cloudwatch")
    for namespace, points in data.items():
        for start in range(0, len(points), 1000):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=points[start:start + 1000])
    return sum(len(points) for points in data.values())
