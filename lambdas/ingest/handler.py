"""Ingestion function: an S3 "Object Created" event from EventBridge in, the landed file's ledger record out.

The handler only parses the event and reports metrics; the work is ``landing.ingest_object``. The asset holds this
file, ``landing.py`` and ``modelwerk/core/``, so ``landing`` is imported as a top-level module there, and as this
package's sibling when the handler is imported from a checkout (``lambdas.ingest.handler``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

if __package__:  # imported from a checkout: lambdas.ingest.handler
    from . import landing
else:  # the Lambda asset: handler.py and landing.py side by side at its root
    import landing  # type: ignore[no-redef]

logger = Logger()
tracer = Tracer()
metrics = Metrics()

#: Report field → CloudWatch metric.
METRICS = {
    "rows_in": "RowsIn",
    "rows_accepted": "RowsAccepted",
    "rows_quarantined": "RowsQuarantined",
    "files_quarantined": "FilesQuarantined",
}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=S3EventBridgeNotificationEvent)
def handler(event: S3EventBridgeNotificationEvent, context: LambdaContext) -> dict[str, Any]:
    landed = event.detail.object
    bucket = event.detail.bucket.name
    logger.append_keys(source_key=f"s3://{bucket}/{landed.key}")
    # The event id names the claim on the file's ledger entry (a retry of this event takes it over); the claim lasts
    # as long as this invocation may run.
    remaining = getattr(context, "get_remaining_time_in_millis", lambda: landing.DEFAULT_RUN_SECONDS * 1000)()
    record = landing.ingest_object(
        bucket, landed.key, version_id=landed.get("version-id"), claim_id=event.get_id, run_seconds=remaining / 1000
    )
    if record["status"] in (landing.STATUS_INGESTED, landing.STATUS_QUARANTINED):
        metrics.add_dimension(name="UseCase", value=record["use_case"] or "unknown")
        for field, metric in METRICS.items():
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=record[field])
    return record
