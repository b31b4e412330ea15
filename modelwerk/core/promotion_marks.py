"""When a version went into prod, and when a rollback took it out: kept with the version in the model registry.

The marks are customer metadata of the version's model package, so every account and every tool reads one answer.
The promotion pipeline's last action (``lambdas/promotion_record``) writes them, on AWS and in local mode alike;
``modelwerk.models.record_promotion`` writes them by hand. ``modelwerk.models.prod_version``, the guard of ``models reject`` and the
promotion source function (which ignores state changes of a version prod already serves) read them.

Standard library only: the Lambda functions carry this file without the rest of the library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

PROMOTED_TO_PROD_AT = "promoted_to_prod_at"
ROLLED_BACK_FROM_PROD_AT = "rolled_back_from_prod_at"
MARKS = (PROMOTED_TO_PROD_AT, ROLLED_BACK_FROM_PROD_AT)
#: How many versions are described at once.
_READ_WORKERS = 8


class MarkError(ValueError):
    """A mark this module does not keep, or a moment that is not a text."""


def now() -> str:
    """A mark's moment: ISO 8601 UTC with milliseconds, so marks compare as text in the order they were made."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def in_prod(metadata: Mapping[str, Any] | None) -> bool:
    """Promoted to prod and not rolled back since: prod serves the version, or did until a newer one replaced it
    (and serves it again after a rollback of the newer one)."""
    metadata = metadata or {}
    promoted_at = metadata.get(PROMOTED_TO_PROD_AT)
    return bool(promoted_at) and str(metadata.get(ROLLED_BACK_FROM_PROD_AT) or "") < str(promoted_at)


def serving(packages: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of a group's ``packages`` (DescribeModelPackage answers), the one prod serves: promoted last and not rolled
    back since; None before the first promotion."""
    promoted = [p for p in packages if in_prod(p.get("CustomerMetadataProperties"))]
    if not promoted:
        return None
    return max(promoted, key=lambda p: str(p["CustomerMetadataProperties"][PROMOTED_TO_PROD_AT]))


def group_packages(sagemaker: Any, group: str) -> list[dict[str, Any]]:
    """Every version of the model package ``group`` (name or ARN) as DescribeModelPackage answers it now: the
    summaries carry no customer metadata, so the marks need a describe each."""
    pages = sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
    arns = [summary["ModelPackageArn"] for page in pages for summary in page["ModelPackageSummaryList"]]
    with ThreadPoolExecutor(max_workers=_READ_WORKERS) as pool:
        return list(pool.map(lambda arn: sagemaker.describe_model_package(ModelPackageName=arn), arns))


def record(sagemaker: Any, arn: str, **marks: str) -> dict[str, Any]:
    """Keep ``marks`` with the model package ``arn``; return the package as DescribeModelPackage answers after.

    The version's other metadata stays. UpdateModelPackage changes only what it is given, so the approval is not sent
    (sending it could emit another approval event).
    """
    unknown = sorted(set(marks) - set(MARKS))
    if unknown:
        raise MarkError(f"the registry keeps the marks {list(MARKS)}, not {unknown}")
    not_text = sorted(name for name, moment in marks.items() if not isinstance(moment, str) or not moment)
    if not_text:
        raise MarkError(f"marks {not_text} need a moment as ISO 8601 text")
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    update: dict[str, Any] = {"ModelPackageArn": arn,
                              "CustomerMetadataProperties": {**(package.get("CustomerMetadataProperties") or {}),
                                                             **marks}}
    sagemaker.update_model_package(**update)
    return sagemaker.describe_model_package(ModelPackageName=arn)
