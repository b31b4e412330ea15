"""Processing step: the version to score with, and its input schema.

Arguments: ``--model-package-arn`` (the pipeline's ``ModelPackageArn``; empty: the version this environment serves,
read from ``--endpoint``: DescribeEndpoint -> endpoint config -> model -> ModelPackageName), ``--use-case``.
Output (``/opt/ml/processing/output/version``, or ``--version PATH``): ``version.json`` with ``model_package_arn``,
``model_version``, ``use_case``, ``input_schema`` (from the ``lineage.json`` the training pipeline registered with the
version), ``label``, ``task``, ``endpoint``. It fails with one line when nothing is served, when the version belongs to
another use case, or when it is not approved (SageMaker creates models only from approved versions).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import batch_common as bc
import step_common as sc

APPROVED = "Approved"


def served_package(sagemaker: Any, endpoint: str) -> str:
    """The model package ARN ``endpoint`` serves in this account."""
    if not endpoint:
        raise sc.StepError("no ModelPackageArn was given and this environment names no endpoint serving the use case")
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
    except Exception as exc:  # botocore's ClientError, without importing botocore for it
        raise sc.StepError(f"nothing is served: no ModelPackageArn was given and endpoint {endpoint!r} cannot be "
                           f"described in this account ({sc._one_line(exc)}); deploy it or pass ModelPackageArn"
                           ) from exc
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    containers = model.get("Containers") or [model.get("PrimaryContainer") or {}]
    arn = containers[0].get("ModelPackageName")
    if not arn:
        raise sc.StepError(f"nothing is served: endpoint {endpoint!r} serves no registered version; pass "
                           "ModelPackageArn")
    return arn


def read_s3_json(s3: Any, uri: str, what: str) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the same failure for the step
        raise sc.StepError(f"cannot read the version's {what} at {uri}: {sc._one_line(exc)}") from exc


def resolve(sagemaker: Any, s3: Any, *, model_package_arn: str, endpoint: str, use_case: str) -> dict[str, Any]:
    """``version.json``'s document (see the module's docstring)."""
    arn = model_package_arn.strip() or served_package(sagemaker, endpoint)
    try:
        package = sagemaker.describe_model_package(ModelPackageName=arn)
    except Exception as exc:  # noqa: BLE001
        raise sc.StepError(f"cannot describe model package {arn}: {sc._one_line(exc)}") from exc
    meta = package.get("CustomerMetadataProperties") or {}
    if meta.get("use_case") and meta["use_case"] != use_case:
        raise sc.StepError(f"{arn} is a version of {meta['use_case']!r}, not of {use_case!r}")
    status = package.get("ModelApprovalStatus")
    if status != APPROVED:
        raise sc.StepError(f"{arn} is {status}, not {APPROVED}: SageMaker creates models only from approved versions")
    if not meta.get("lineage_uri"):
        raise sc.StepError(f"{arn} names no lineage_uri, so its input schema is unknown")
    lineage = read_s3_json(s3, meta["lineage_uri"], "lineage")
    schema = lineage.get("input_schema")
    if not schema:
        raise sc.StepError(f"the lineage of {arn} ({meta['lineage_uri']}) has no input_schema")
    return {
        "format": sc.FORMAT,
        "use_case": use_case,
        "model_package_arn": arn,
        "model_version": int(package.get("ModelPackageVersion") or arn.rsplit("/", 1)[-1]),
        "input_schema": [{"name": f["name"], "type": f.get("type"), "required": bool(f.get("required", False))}
                         for f in schema],
        "label": lineage.get("label"),
        "task": lineage.get("task"),
        "trained_on_snapshot": meta.get("snapshot_id") or lineage.get("snapshot_id"),
        "endpoint": None if model_package_arn.strip() else endpoint,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="resolve_version.py", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("--model-package-arn", default="")
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--use-case", required=True)
    parser.add_argument("--triggered-by", default="person", help="recorded: person, schedule or new-snapshot")
    parser.add_argument("--version", default=sc.processing_output("version"))
    args = parser.parse_args(argv)

    import boto3

    document = resolve(boto3.client("sagemaker"), boto3.client("s3"), model_package_arn=args.model_package_arn,
                       endpoint=args.endpoint, use_case=args.use_case)
    document["triggered_by"] = args.triggered_by
    sc.logger.info("scoring with %s (version %s), started by %s", document["model_package_arn"],
                   document["model_version"], args.triggered_by)
    sc.write_json(sc.output_folder(args.version) / bc.VERSION_FILE, document)


if __name__ == "__main__":
    sys.exit(sc.run(main, failure_file=sc.PROCESSING_MESSAGE_FILE))
