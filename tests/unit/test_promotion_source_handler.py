"""The promotion source Lambda (lambdas/promotion_source): SageMaker's approval event in, the pipeline's source
object in a versioned bucket (moto's S3) and an execution pinned to that object version out; the registry is moto's
SageMaker. moto's CodePipeline drops ``sourceRevisions`` and ``variables``, so the CodePipeline client alone is a
botocore Stubber that checks the request."""

from __future__ import annotations

import copy
import importlib
import io
import json
import zipfile
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import ANY, Stubber

from modelwerk.local.lambdas import LambdaContext
from moto_fresh import fresh_mock_aws


ROOT = Path(__file__).resolve().parents[2]
EVENT = json.loads((ROOT / "tests" / "events" / "model_package_approved.json").read_text())
#: Not the deployed bucket's name: an embedded AWS earlier in the process may hold that name in moto's global registry.
BUCKET = "test-promotion-source-111111111111"
KEY = "promotion/pump-health/source.zip"
PIPELINE = "modelwerk-pump-health-promotion"
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "SOURCE_BUCKET": BUCKET, "SOURCE_KEY": KEY, "PIPELINE_NAME": PIPELINE, "SOURCE_ACTION": "PackageVersion",
    "USE_CASE": "pump-health", "MODEL_PACKAGE_GROUP": "modelwerk-pump-health", "MOTO_ACCOUNT_ID": "111111111111",
}
GROUP = "modelwerk-pump-health"
BUNDLE = {"buildspec.json": '{"version": "0.2"}\n',
          "templates/staging.template.json": '{"Parameters": {"ModelPackageArn": {"Type": "String"}}}\n',
          "templates/prod.template.json": '{"Parameters": {"ModelPackageArn": {"Type": "String"}}}\n',
          "gate/gate_cases.csv": "case,x,expected,tolerance\nlow,1,0,\n",
          "gate/modelwerk/core/gate.py": "def main():\n    return 0\n"}


FakeContext = partial(LambdaContext, "modelwerk-pump-health-promotion-source", 256, 60,
                      "0e3a5d0c-0000-4000-8000-000000000002", "eu-central-1", "111111111111")


@pytest.fixture(scope="module")
def handler_module():
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENVIRONMENT.items():
            patch.setenv(name, value)
        yield importlib.import_module("lambdas.promotion_source.handler")


@pytest.fixture
def aws(handler_module, tmp_path, monkeypatch):
    """moto's S3 with the versioned promotion bucket, a stubbed CodePipeline client whose requests are recorded,
    and the bundle the synth would have put beside the handler."""
    for name, content in BUNDLE.items():
        path = tmp_path / "bundle" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BUNDLE_DIR", str(tmp_path / "bundle"))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with fresh_mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sagemaker = boto3.client("sagemaker")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        for version in range(1, 5):
            sagemaker.create_model_package(
                ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved" if version >= 3 else "Rejected",
                InferenceSpecification={"Containers": [{"Image": "serving:1"}], "SupportedContentTypes": ["text/csv"],
                                        "SupportedResponseMIMETypes": ["application/json"]})
        pipelines = boto3.client("codepipeline")
        requests: list[dict] = []
        pipelines.meta.events.register("provide-client-params.codepipeline.StartPipelineExecution",
                                       lambda params, **_: requests.append(copy.deepcopy(params)))
        real_client = boto3.client
        monkeypatch.setattr(handler_module, "boto3", SimpleNamespace(
            client=lambda service, **kw: pipelines if service == "codepipeline" else real_client(service, **kw)))
        with Stubber(pipelines) as stubber:
            yield SimpleNamespace(s3=s3, sagemaker=sagemaker, stubber=stubber, requests=requests)
            stubber.assert_no_pending_responses()


def package_arn(version: int) -> str:
    return f"arn:aws:sagemaker:eu-central-1:111111111111:model-package/{GROUP}/{version}"


def expect_start(aws, execution: str, version: int = 3) -> None:
    """The request the handler must send: the token is the version and its last modification time, the variable
    its ARN; the version it pins is checked against S3 after the call."""
    aws.stubber.add_response("start_pipeline_execution", {"pipelineExecutionId": execution}, {
        "name": PIPELINE, "clientRequestToken": f"v{version}-{EVENT['detail']['LastModifiedTime']}",
        "sourceRevisions": [{"actionName": "PackageVersion", "revisionType": "S3_OBJECT_VERSION_ID",
                             "revisionValue": ANY}],
        "variables": [{"name": "ModelPackageArn", "value": package_arn(version)}]})


def approval(version: int = 3, **detail) -> dict:
    event = copy.deepcopy(EVENT)
    event["detail"].update(ModelPackageVersion=version, ModelPackageArn=package_arn(version), **detail)
    event["id"] = f"5d1f9b6e-0f3c-4c1e-9a55-4c2f0b3e7a{version:02d}"
    return event


def read_source(aws, version_id: str) -> tuple[set[str], dict, zipfile.ZipFile]:
    body = aws.s3.get_object(Bucket=BUCKET, Key=KEY, VersionId=version_id)["Body"].read()
    archive = zipfile.ZipFile(io.BytesIO(body))
    return set(archive.namelist()), json.loads(archive.read("package.json")), archive


def test_an_approval_writes_the_source_zip_and_starts_the_pipeline_on_that_object_version(handler_module, aws):
    expect_start(aws, "exec-1")
    result = handler_module.handler(copy.deepcopy(EVENT), FakeContext())
    (request,) = aws.requests
    version_id = aws.s3.head_object(Bucket=BUCKET, Key=KEY)["VersionId"]
    assert request["sourceRevisions"][0]["revisionValue"] == version_id == result["source_version_id"]
    assert result["status"] == "started" and result["pipeline_execution_id"] == "exec-1"
    names, package, archive = read_source(aws, version_id)
    assert names == {"package.json", *BUNDLE}
    assert all(archive.read(name).decode() == content for name, content in BUNDLE.items())
    assert package == {
        "model_package_arn": EVENT["detail"]["ModelPackageArn"], "model_package_version": 3,
        "model_package_group": "modelwerk-pump-health", "use_case": "pump-health",
        "approved_at": "2026-03-02T09:15:04Z", "approval_description": "f1 0.83, better than version 2",
        "event_id": EVENT["id"]}


def test_two_approvals_in_a_row_each_pin_their_own_version(handler_module, aws):
    expect_start(aws, "exec-3", version=3)
    expect_start(aws, "exec-4", version=4)
    handler_module.handler(approval(3), FakeContext())
    handler_module.handler(approval(4), FakeContext())
    pinned = [r["sourceRevisions"][0]["revisionValue"] for r in aws.requests]
    assert len(set(pinned)) == 2
    assert [read_source(aws, v)[1]["model_package_version"] for v in pinned] == [3, 4]


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_an_event_that_is_not_an_approval_starts_nothing(handler_module, aws, status):
    result = handler_module.handler(approval(ModelApprovalStatus=status), FakeContext())
    assert result == {"status": "ignored", "approval_status": status}
    assert aws.requests == []
    assert "Versions" not in aws.s3.list_object_versions(Bucket=BUCKET)


@pytest.mark.parametrize("change,message", [
    pytest.param({"drop": "ModelPackageArn"}, r"lacks \['ModelPackageArn'\]", id="no-arn"),
    pytest.param({"drop": "ModelApprovalStatus"}, r"lacks \['ModelApprovalStatus'\]", id="no-status"),
    pytest.param({"drop": "ModelPackageVersion"}, r"lacks \['ModelPackageVersion'\]", id="no-version"),
    pytest.param({"detail": None}, "has no detail object", id="no-detail"),
    pytest.param({"set": {"ModelPackageVersion": "three"}}, "'three' is not a version number", id="bad-version"),
    pytest.param({"set": {"ModelPackageGroupName": "modelwerk-energy-forecast"}},
                 "promotes 'modelwerk-pump-health' only", id="another-group"),
])
def test_an_event_without_what_the_promotion_needs_is_refused_with_the_reason(handler_module, aws, change, message):
    event = approval()
    if "drop" in change:
        del event["detail"][change["drop"]]
    if "set" in change:
        event["detail"].update(change["set"])
    if "detail" in change:
        event["detail"] = change["detail"]
    with pytest.raises(handler_module.PromotionSourceError, match=message):
        handler_module.handler(event, FakeContext())
    assert aws.requests == []


def test_repeated_events_of_one_approval_carry_one_token_and_another_change_another(handler_module, aws):
    first, again = approval(3), approval(3)
    again["id"] = "another-delivery-of-the-same-change"
    later = approval(3, LastModifiedTime=EVENT["detail"]["LastModifiedTime"] + 60_000)
    tokens = [handler_module.client_token(e, {"model_package_version": 3}) for e in (first, again, later)]
    assert tokens[0] == tokens[1] != tokens[2]
    del first["detail"]["LastModifiedTime"]
    assert handler_module.client_token(first, {"model_package_version": 3}) == first["id"]


def mark(aws, version: int, **marks: str) -> None:
    aws.sagemaker.update_model_package(ModelPackageArn=package_arn(version), ModelApprovalStatus="Approved",
                                       CustomerMetadataProperties=marks)


def test_the_version_prod_serves_is_not_promoted_again(handler_module, aws):
    """The record action's mark changes the version, and SageMaker announces that change as Approved again."""
    mark(aws, 3, promoted_to_prod_at="2026-03-03T10:00:00.000+00:00")
    result = handler_module.handler(approval(3, LastModifiedTime=1772532000000), FakeContext())
    assert result == {"status": "ignored", "approval_status": "Approved", "reason": "prod serves it already"}
    assert aws.requests == []


@pytest.mark.parametrize("marks", [
    pytest.param({3: {"promoted_to_prod_at": "2026-03-03T10:00:00.000+00:00"},
                  4: {"promoted_to_prod_at": "2026-03-05T10:00:00.000+00:00"}}, id="replaced-by-a-newer-version"),
    pytest.param({3: {"promoted_to_prod_at": "2026-03-03T10:00:00.000+00:00",
                      "rolled_back_from_prod_at": "2026-03-04T08:00:00.000+00:00"}}, id="rolled-back"),
])
def test_a_version_prod_no_longer_serves_is_promoted_when_approved_anew(handler_module, aws, marks):
    for version, version_marks in marks.items():
        mark(aws, version, **version_marks)
    expect_start(aws, "exec-3", version=3)
    assert handler_module.handler(approval(3), FakeContext())["status"] == "started"


def test_an_approval_event_of_a_version_rejected_since_starts_nothing(handler_module, aws):
    aws.sagemaker.update_model_package(ModelPackageArn=package_arn(3), ModelApprovalStatus="Rejected")
    result = handler_module.handler(approval(3), FakeContext())
    assert result == {"status": "ignored", "approval_status": "no longer Approved"}
    assert aws.requests == []


def test_an_unversioned_bucket_is_refused_before_the_pipeline_starts(handler_module, aws):
    aws.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    with pytest.raises(handler_module.PromotionSourceError, match="must be versioned"):
        handler_module.handler(approval(), FakeContext())
    assert aws.requests == []


def test_the_archive_is_the_same_bytes_for_the_same_approval(handler_module, tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "staging.template.json").write_text("{}")
    package = {"model_package_arn": "arn", "model_package_version": 1}
    assert handler_module.source_archive(package, tmp_path) == handler_module.source_archive(package, tmp_path)
