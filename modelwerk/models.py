"""Model versions in the central registry: list them, look at one, approve or reject it.

Every use case has one SageMaker model package group in the registry account (``modelwerk-<use case>``). The training
pipeline's Register step adds a version to it, waiting for a person's approval, with what that person needs to decide:
its metrics (``evaluation.json``), its drift baseline, and where code and data came from (git commit, curated snapshot,
pipeline execution). Approving a version is what starts its promotion: SageMaker emits a "SageMaker Model Package
State Change" event, which the promotion pipeline listens to.

Where the registry is
    In the registry account, reached through the registry environment's profile where the AWS configuration has one
    (locally, the one ``modelwerk local up`` writes), else with the credentials at hand: on AWS the group's resource
    policy lets dev read and update versions across accounts by the group's ARN. SageMaker emits the state change
    event itself (so does the embedded AWS).

Example
-------
>>> import modelwerk
>>> [v.version for v in modelwerk.models.versions("pump-health")]
[3, 2, 1]
>>> modelwerk.models.approve("pump-health", 3, reason="f1 0.83 on the March snapshot").approval_status
'Approved'
"""

from __future__ import annotations

import html
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from modelwerk import naming
from modelwerk.core import promotion_marks
from modelwerk.errors import ConfigurationError, NotFoundError, ValidationError

log = logging.getLogger("modelwerk")

APPROVED = "Approved"
REJECTED = "Rejected"
PENDING = "PendingManualApproval"
#: Keys of a version's CustomerMetadataProperties that record its way through prod.
PROMOTED_TO_PROD_AT = promotion_marks.PROMOTED_TO_PROD_AT
ROLLED_BACK_FROM_PROD_AT = promotion_marks.ROLLED_BACK_FROM_PROD_AT
#: The EventBridge detail-type SageMaker gives a model package's state change.
STATE_CHANGE = "SageMaker Model Package State Change"
#: How many versions are read at once (each is a describe call and up to two small S3 reads).
_READ_WORKERS = 8
_PACKAGE_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:([a-z0-9-]+):(\d{12}):model-package/([^/]+)/(\d+)$")


@dataclass(frozen=True)
class ModelVersion:
    """One version of a use case's model, as the registry holds it.

    ``metrics`` come from the version's ``evaluation.json`` (name → value, None when undefined); ``lineage`` names the
    three versioned artifacts' origins (``code_commit``, ``data_snapshot_id``, ``pipeline_execution_arn``,
    ``baseline_uri``); ``input_schema`` is what a request to the model carries, in CSV column order.
    ``promoted_to_prod_at`` and ``rolled_back_from_prod_at`` are when a promotion put the version into prod and when a
    rollback took it out (ISO 8601 UTC, kept in the registry with the version).
    """

    use_case: str
    version: int
    arn: str
    approval_status: str
    metrics: dict[str, float | None]
    created_at: datetime | None
    lineage: dict[str, str | None]
    input_schema: list[dict[str, str | None]]
    model_data_url: str | None
    image: str | None
    approval_description: str | None = None
    promoted_to_prod_at: str | None = None
    rolled_back_from_prod_at: str | None = None

    @property
    def in_prod_history(self) -> bool:
        """Promoted to prod and not rolled back since: prod serves it, or did until a newer version replaced it."""
        return promotion_marks.in_prod({PROMOTED_TO_PROD_AT: self.promoted_to_prod_at,
                                        ROLLED_BACK_FROM_PROD_AT: self.rolled_back_from_prod_at})

    def to_dict(self, detail: bool = False) -> dict[str, Any]:
        """The CLI's JSON of this version: version, arn, approval_status, metrics; with ``detail`` also lineage and
        input_schema."""
        document: dict[str, Any] = {"version": self.version, "arn": self.arn, "approval_status": self.approval_status,
                                    "metrics": dict(self.metrics)}
        if detail:
            document["lineage"] = dict(self.lineage)
            document["input_schema"] = [dict(column) for column in self.input_schema]
        return document

    def _repr_html_(self) -> str:
        rows: list[tuple[str, Any]] = [
            ("use case", self.use_case), ("version", self.version), ("approval", self.approval_status),
            ("approval description", self.approval_description), ("created", self.created_at),
            *[(f"metric {name}", value) for name, value in self.metrics.items()],
            ("code commit", self.lineage.get("code_commit")), ("data snapshot", self.lineage.get("data_snapshot_id")),
            ("pipeline execution", self.lineage.get("pipeline_execution_arn")),
            ("drift baseline", self.lineage.get("baseline_uri")), ("model data", self.model_data_url),
            ("image", self.image),
            ("inputs", ", ".join(f"{c.get('name')} ({c.get('type')})" for c in self.input_schema)),
        ]
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
                        f"<td style='text-align:left'>{html.escape('' if value is None else str(value))}</td></tr>"
                        for name, value in rows)
        return f"<table>{cells}</table>"


class Registry(NamedTuple):
    """How to reach a use case's group: SageMaker and S3 clients, and the group's ARN.

    ``contract`` is the use case's contract (it types the inputs an older lineage file lists).
    """

    sagemaker: Any
    s3: Any
    group: str
    contract: Any = None


def registry(use_case: str, *, env: str | None = None) -> Registry:
    """The clients and group identifier every verb of this module uses for ``use_case``.

    The group's ARN comes from the ``use-cases/<use case>/model-package-group-arn`` parameter the dev training stack
    publishes, else from the registry account the checkout's cdk.json names.
    """
    from modelwerk.platform import resolve, session_for_account

    platform = resolve(env)
    contract = platform.contract(use_case)  # an unknown use case fails here, naming the known ones
    published = platform.parameters.get(f"use-cases/{use_case}/model-package-group-arn")
    group = published or _group_arn_from_checkout(platform.env, use_case)
    session = session_for_account(group.split(":")[4])
    return Registry(session.client("sagemaker", region_name=group.split(":")[3]), session.client("s3"), group,
                    contract)


def _group_arn_from_checkout(env: str, use_case: str) -> str:
    from modelwerk import settings

    try:
        config = settings.load()
    except ConfigurationError:
        raise ConfigurationError(
            f"the {env} environment publishes no use-cases/{use_case}/model-package-group-arn parameter and there is "
            "no cdk.json here to find the registry account in; deploy the dev training stack or run from a checkout"
        ) from None
    return naming.model_package_group_arn(config.project, use_case, config.registry.account, config.registry.region)


# -- reading ----------------------------------------------------------------------------------------------------------
def _summaries(reg: Registry) -> list[dict[str, Any]]:
    pages = reg.sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=reg.group, SortBy="CreationTime", SortOrder="Descending")
    summaries = [s for page in pages for s in page["ModelPackageSummaryList"] if s.get("ModelPackageVersion")]
    return sorted(summaries, key=lambda s: s["ModelPackageVersion"], reverse=True)


def _read_json(reg: Registry, uri: str | None, what: str) -> dict[str, Any] | None:
    """An artifact's JSON document (``s3://bucket/key``), or None (logged) when it cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not uri or not uri.startswith("s3://"):
        return None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        return json.loads(reg.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (BotoCoreError, ClientError, ValueError) as error:
        log.warning("cannot read the %s of a model version at %s: %s", what, uri, error)
        return None


def _metrics(evaluation: dict[str, Any] | None) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for name, entry in ((evaluation or {}).get("metrics") or {}).items():
        value = entry.get("value") if isinstance(entry, dict) else entry
        metrics[name] = None if value is None else float(value)
    return metrics


def _input_schema(contract: Any, lineage: dict[str, Any] | None) -> list[dict[str, str | None]]:
    """The model's inputs from ``lineage.json``; an older file lists ``columns`` only: those minus the label, typed by
    the use case's contract."""
    if not lineage:
        return []
    if lineage.get("input_schema"):
        return [{"name": f["name"], "type": f.get("type")} for f in lineage["input_schema"]]
    schema: list[dict[str, str | None]] = []
    for name in lineage.get("columns") or []:
        if name == lineage.get("label", contract.label):
            continue
        try:
            type_ = contract.column(name).type
        except KeyError:
            type_ = None
        schema.append({"name": name, "type": type_})
    return schema


def _nested(document: dict[str, Any], *path: str) -> Any:
    for key in path:
        document = document.get(key) if isinstance(document, dict) else None
        if document is None:
            return None
    return document


def _from_package(use_case: str, reg: Registry, package: dict[str, Any]) -> ModelVersion:
    meta = package.get("CustomerMetadataProperties") or {}
    containers = _nested(package, "InferenceSpecification", "Containers") or [{}]
    evaluation_uri = meta.get("evaluation_uri") or _nested(package, "ModelMetrics", "ModelQuality", "Statistics",
                                                            "S3Uri")
    baseline_uri = meta.get("baseline_uri") or _nested(package, "DriftCheckBaselines", "ModelDataQuality",
                                                        "Statistics", "S3Uri")
    return ModelVersion(
        use_case=use_case,
        version=int(package["ModelPackageVersion"]),
        arn=package["ModelPackageArn"],
        approval_status=package.get("ModelApprovalStatus") or PENDING,
        metrics=_metrics(_read_json(reg, evaluation_uri, "evaluation")),
        created_at=package.get("CreationTime"),
        lineage={
            "code_commit": meta.get("git_commit"),
            "data_snapshot_id": meta.get("snapshot_id"),
            "pipeline_execution_arn": meta.get("pipeline_execution_arn")
            or _nested(package, "MetadataProperties", "GeneratedBy"),
            "baseline_uri": baseline_uri,
        },
        input_schema=_input_schema(reg.contract, _read_json(reg, meta.get("lineage_uri"), "lineage")),
        model_data_url=containers[0].get("ModelDataUrl"),
        image=containers[0].get("Image"),
        approval_description=package.get("ApprovalDescription"),
        promoted_to_prod_at=meta.get(PROMOTED_TO_PROD_AT),
        rolled_back_from_prod_at=meta.get(ROLLED_BACK_FROM_PROD_AT),
    )


def _describe(reg: Registry, arn: str) -> dict[str, Any]:
    return reg.sagemaker.describe_model_package(ModelPackageName=arn)


def _ranges(numbers: list[int]) -> str:
    numbers = sorted(numbers)
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}..{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])
    return ", ".join(map(str, numbers))


def _find_arn(use_case: str, reg: Registry, version: int | str) -> str:
    """The package ARN of ``version``: a number (``3``, ``"3"``), ``"latest"``, or the package's ARN."""
    if isinstance(version, str) and version.startswith("arn:"):
        match = _PACKAGE_ARN.match(version)
        if not match or match.group(3) != reg.group.rsplit("/", 1)[-1].lower():
            raise ValidationError(f"{version} is not a model package of use case {use_case} "
                                  f"(its group is {reg.group})")
        return version
    if isinstance(version, bool) or not (isinstance(version, int) or
                                         (isinstance(version, str) and (version.isdigit() or version == "latest"))):
        raise ValidationError(f"version {version!r}: give a version number, 'latest', or a model package ARN")
    summaries = _summaries(reg)
    if not summaries:
        raise NotFoundError(f"use case {use_case} has no registered versions yet; a training run that passes its "
                            "quality gate registers one")
    if version == "latest":
        return summaries[0]["ModelPackageArn"]
    for summary in summaries:
        if summary["ModelPackageVersion"] == int(version):
            return summary["ModelPackageArn"]
    raise NotFoundError(f"use case {use_case} has versions {_ranges([s['ModelPackageVersion'] for s in summaries])}; "
                        f"there is no version {version} (choose one of them, or 'latest')")


def versions(use_case: str, *, env: str | None = None) -> list[ModelVersion]:
    """Every version of ``use_case``'s model, newest first, with metrics, lineage and input schema.

    Example
    -------
    >>> [(v.version, v.metrics["f1"]) for v in modelwerk.models.versions("pump-health")]
    [(3, 0.83), (2, 0.8), (1, 0.71)]
    """
    reg = registry(use_case, env=env)
    arns = [s["ModelPackageArn"] for s in _summaries(reg)]
    with ThreadPoolExecutor(max_workers=_READ_WORKERS) as pool:
        return list(pool.map(lambda arn: _from_package(use_case, reg, _describe(reg, arn)), arns))


def version(use_case: str, version: int | str = "latest", *, env: str | None = None) -> ModelVersion:
    """One version of ``use_case``'s model: ``3``, ``"3"``, ``"latest"`` or the model package's ARN.

    Example
    -------
    >>> modelwerk.models.version("pump-health", "latest").input_schema[:2]
    [{'name': 'speed_rpm', 'type': 'double'}, {'name': 'site', 'type': 'string'}]
    """
    reg = registry(use_case, env=env)
    return _from_package(use_case, reg, _describe(reg, _find_arn(use_case, reg, version)))


# -- deciding ---------------------------------------------------------------------------------------------------------
def approve(use_case: str, version: int | str, reason: str | None = None, *, env: str | None = None) -> ModelVersion:
    """Approve a version for promotion; ``reason`` becomes its approval description. Approving an approved version
    changes nothing and returns it.

    Example
    -------
    >>> modelwerk.models.approve("pump-health", 3, reason="f1 0.83, better than version 2").approval_status
    'Approved'
    """
    return _decide(use_case, version, APPROVED, reason, env)


def reject(use_case: str, version: int | str, reason: str | None = None, *, env: str | None = None) -> ModelVersion:
    """Reject a version (it will not be promoted); ``reason`` becomes its approval description.

    Example
    -------
    >>> modelwerk.models.reject("pump-health", 2, reason="trained on a week of miscalibrated sensors").approval_status
    'Rejected'
    """
    return _decide(use_case, version, REJECTED, reason, env)


def _decide(use_case: str, version: int | str, status: str, reason: str | None, env: str | None) -> ModelVersion:
    if reason is not None and len(reason) > 1024:
        raise ValidationError(f"the reason has {len(reason)} characters; the registry keeps at most 1024")
    reg = registry(use_case, env=env)
    arn = _find_arn(use_case, reg, version)
    package = _describe(reg, arn)
    marks = package.get("CustomerMetadataProperties")
    if status == REJECTED and promotion_marks.in_prod(marks):  # only a version in prod's history may serve there
        serving = promotion_marks.serving(promotion_marks.group_packages(reg.sagemaker, reg.group))
        if serving is not None and serving["ModelPackageArn"] == arn:
            raise ValidationError(
                f"{use_case} version {package['ModelPackageVersion']} is in prod (promoted "
                f"{marks[PROMOTED_TO_PROD_AT]}); roll it back first ('modelwerk promote --use-case {use_case} --to prod "
                "--rollback'), then reject it")
    if package.get("ModelApprovalStatus") == status:
        log.info("%s version %s is already %s", use_case, package.get("ModelPackageVersion"), status)
        return _from_package(use_case, reg, package)
    update: dict[str, Any] = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    description = reason if reason is not None else package.get("ApprovalDescription")
    if description is not None:
        update["ApprovalDescription"] = description
    reg.sagemaker.update_model_package(**update)
    return _from_package(use_case, reg, _describe(reg, arn))


def prod_version(use_case: str, *, env: str | None = None) -> ModelVersion | None:
    """The version prod serves: the one promoted to prod last and not rolled back; None before the first promotion.

    Example
    -------
    >>> modelwerk.models.prod_version("pump-health") is None  # no version promoted to prod yet
    True
    """
    reg = registry(use_case, env=env)
    serving = promotion_marks.serving(promotion_marks.group_packages(reg.sagemaker, reg.group))
    return None if serving is None else _from_package(use_case, reg, dict(serving))


def record_promotion(use_case: str, version: int | str, *, env: str | None = None, **marks: str) -> ModelVersion:
    """Keep ``marks`` (``promoted_to_prod_at=...``, ``rolled_back_from_prod_at=...``) with the version in the
    registry, where every environment reads them (:mod:`modelwerk.core.promotion_marks`, which the promotion
    pipeline's last action runs on AWS)."""
    reg = registry(use_case, env=env)
    arn = _find_arn(use_case, reg, version)
    try:
        package = promotion_marks.record(reg.sagemaker, arn, **marks)
    except promotion_marks.MarkError as error:
        raise ValidationError(f"record_promotion: {error}") from None
    return _from_package(use_case, reg, package)
