"""Promotion source function: SageMaker's "Model Package State Change" event in, the promotion pipeline's source
object and one pipeline execution out.

The registry's rule sends the events of one use case's model package group with ``ModelApprovalStatus`` Approved.
The function writes ``source.zip`` to the promotion bucket: ``package.json`` (the version's ARN, number, group, use
case and when it was approved) plus the bundle the synth put next to this file (``bundle/``: the staging and prod
endpoint templates, the gate and the use case's ``gate_cases.csv``, the gate's buildspec). It then starts the
pipeline on exactly the object version it wrote (CodePipeline V2 source revision override), so two approvals in a
row never mix: each execution deploys and gates the version its own event named; the version's ARN also goes in as
the pipeline variable ``ModelPackageArn``, which the last action (``lambdas/promotion_record``) marks in the registry.

SageMaker may send several events for one state change, and sends one for every change of a version (the record
action's mark among them). The start request's client token is the version and its last modification time, so
CodePipeline recognises a repeated event of one approval. The function reads the group's versions from the registry
first: a version no longer approved, or the one prod serves (promoted last and not rolled back,
:mod:`modelwerk.core.promotion_marks`), is not promoted again; an earlier version approved anew is (a rollback).

Environment: ``SOURCE_BUCKET``, ``SOURCE_KEY``, ``PIPELINE_NAME``, ``SOURCE_ACTION`` (the pipeline's S3 source
action), ``USE_CASE``, ``MODEL_PACKAGE_GROUP`` (the group whose events it accepts), ``BUNDLE_DIR`` (optional; default
``bundle/`` beside this file).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwerk.core import promotion_marks

logger = Logger(service="promotion-source")

APPROVED = "Approved"
PACKAGE_FILE = "package.json"
#: The pipeline variable the record action reads the version from.
ARN_VARIABLE = "ModelPackageArn"
#: What an approval event must carry to be promoted.
REQUIRED_FIELDS = ("ModelApprovalStatus", "ModelPackageArn", "ModelPackageGroupName", "ModelPackageVersion")
#: CodePipeline's clientRequestToken: letters, digits and hyphens, at most 128.
_TOKEN = re.compile(r"^[a-zA-Z0-9-]{1,128}$")
#: Zip entries carry a fixed time: the archive's bytes follow only from its content.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PromotionSourceError(ValueError):
    """An event this function cannot promote from: fields missing, another group's version, an unversioned bucket."""


@dataclass(frozen=True)
class Settings:
    bucket: str
    key: str
    pipeline: str
    source_action: str
    use_case: str
    group: str
    bundle_dir: Path

    @classmethod
    def from_environment(cls) -> "Settings":
        missing = [name for name in ("SOURCE_BUCKET", "SOURCE_KEY", "PIPELINE_NAME", "SOURCE_ACTION", "USE_CASE",
                                     "MODEL_PACKAGE_GROUP") if not os.environ.get(name)]
        if missing:
            raise PromotionSourceError(f"the function's environment lacks {missing}")
        return cls(bucket=os.environ["SOURCE_BUCKET"], key=os.environ["SOURCE_KEY"],
                   pipeline=os.environ["PIPELINE_NAME"], source_action=os.environ["SOURCE_ACTION"],
                   use_case=os.environ["USE_CASE"], group=os.environ["MODEL_PACKAGE_GROUP"],
                   bundle_dir=Path(os.environ.get("BUNDLE_DIR") or Path(__file__).resolve().parent / "bundle"))


def package_document(event: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """``package.json`` of an approval event; None when the event is not an approval (nothing to promote)."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise PromotionSourceError("the event has no detail object: expected SageMaker's Model Package State Change")
    missing = [name for name in REQUIRED_FIELDS if detail.get(name) in (None, "")]
    if "ModelApprovalStatus" not in missing and detail["ModelApprovalStatus"] != APPROVED:
        return None
    if missing:
        raise PromotionSourceError(f"the state change event lacks {missing} in its detail; cannot promote it")
    if detail["ModelPackageGroupName"] != settings.group:
        raise PromotionSourceError(
            f"version of group {detail['ModelPackageGroupName']!r} sent to {settings.use_case}'s promotion, which "
            f"promotes {settings.group!r} only: check the rule's event pattern")
    try:
        version = int(detail["ModelPackageVersion"])
    except (TypeError, ValueError):
        raise PromotionSourceError(
            f"ModelPackageVersion {detail['ModelPackageVersion']!r} is not a version number") from None
    return {
        "model_package_arn": detail["ModelPackageArn"],
        "model_package_version": version,
        "model_package_group": detail["ModelPackageGroupName"],
        "use_case": settings.use_case,
        "approved_at": _moment(detail.get("LastModifiedTime")) or event.get("time"),
        "approval_description": detail.get("ApprovalDescription"),
        "event_id": event.get("id"),
    }


def _moment(value: Any) -> str | None:
    """A time of the event's detail as ISO 8601 UTC: SageMaker sends epoch milliseconds, a local dispatch text."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        moment = _dt.datetime.fromtimestamp(value / 1000, tz=_dt.timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def source_archive(package: dict[str, Any], bundle_dir: Path) -> bytes:
    """The zip the pipeline's source action reads: ``package.json`` and every file of the bundle."""
    if not bundle_dir.is_dir():
        raise PromotionSourceError(f"no bundle at {bundle_dir}: the function's asset is incomplete")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        entries = {PACKAGE_FILE: json.dumps(package, indent=1, sort_keys=True).encode("utf-8")}
        for path in sorted(bundle_dir.rglob("*")):
            if path.is_file():
                entries[path.relative_to(bundle_dir).as_posix()] = path.read_bytes()
        for name, content in sorted(entries.items()):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, content, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def client_token(event: dict[str, Any], package: dict[str, Any]) -> str | None:
    """One token per state change of a version: its number and last modification time (the event id when the
    detail has no time), so the repeated events of one approval start one execution."""
    modified = (event.get("detail") or {}).get("LastModifiedTime")
    if isinstance(modified, (int, float)) and not isinstance(modified, bool):
        return f"v{package['model_package_version']}-{int(modified)}"
    event_id = event.get("id")
    return event_id if isinstance(event_id, str) and _TOKEN.match(event_id) else None


def promote(event: dict[str, Any], settings: Settings, *, s3: Any, codepipeline: Any,
            sagemaker: Any) -> dict[str, Any]:
    """Write the source object of an approval and start the pipeline on that object version."""
    package = package_document(event, settings)
    if package is None:
        status = (event.get("detail") or {}).get("ModelApprovalStatus")
        logger.info("not an approval: nothing to promote", extra={"approval_status": status})
        return {"status": "ignored", "approval_status": status}
    logger.append_keys(model_package_arn=package["model_package_arn"])
    versions = promotion_marks.group_packages(sagemaker, settings.group)  # now, not as the event saw them
    if not any(v["ModelPackageArn"] == package["model_package_arn"] and v.get("ModelApprovalStatus") == APPROVED
               for v in versions):
        logger.info("no longer approved: nothing to promote")
        return {"status": "ignored", "approval_status": "no longer Approved"}
    serving = promotion_marks.serving(versions)
    if serving is not None and serving["ModelPackageArn"] == package["model_package_arn"]:
        logger.info("prod serves this version already: nothing to promote")
        return {"status": "ignored", "approval_status": APPROVED, "reason": "prod serves it already"}
    written = s3.put_object(Bucket=settings.bucket, Key=settings.key, Body=source_archive(package, settings.bundle_dir),
                            ContentType="application/zip")
    version_id = written.get("VersionId")
    if not version_id or version_id == "null":
        raise PromotionSourceError(f"s3://{settings.bucket} gave no object version: the promotion bucket must be "
                                   "versioned, or two approvals could deploy each other's version")
    request: dict[str, Any] = {
        "name": settings.pipeline,
        "sourceRevisions": [{"actionName": settings.source_action, "revisionType": "S3_OBJECT_VERSION_ID",
                             "revisionValue": version_id}],
        "variables": [{"name": ARN_VARIABLE, "value": package["model_package_arn"]}],
    }
    token = client_token(event, package)
    if token:
        request["clientRequestToken"] = token
    execution = codepipeline.start_pipeline_execution(**request)["pipelineExecutionId"]
    logger.info("promotion started", extra={"pipeline": settings.pipeline, "execution_id": execution,
                                            "source_version_id": version_id})
    return {"status": "started", "pipeline": settings.pipeline, "pipeline_execution_id": execution,
            "source_uri": f"s3://{settings.bucket}/{settings.key}", "source_version_id": version_id,
            "model_package_arn": package["model_package_arn"],
            "model_package_version": package["model_package_version"]}


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    return promote(event.raw_event, Settings.from_environment(), s3=boto3.client("s3"),
                   codepipeline=boto3.client("codepipeline"), sagemaker=boto3.client("sagemaker"))
