"""The promotion record Lambda (lambdas/promotion_record): the pipeline's last action marks the version prod now
serves in the registry (moto's SageMaker) and always answers its job. moto has no CodePipeline job results, so that
client is a botocore Stubber that checks each answer."""

from __future__ import annotations

import copy
import importlib
import json
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import ANY, Stubber

from modelwerk.core import promotion_marks
from modelwerk.local.lambdas import LambdaContext
from moto_fresh import fresh_mock_aws


ROOT = Path(__file__).resolve().parents[2]
JOB = json.loads((ROOT / "tests" / "events" / "codepipeline_record_job.json").read_text())
JOB_ID = JOB["CodePipeline.job"]["id"]
GROUP = "modelwerk-pump-health"
ENVIRONMENT = {"AWS_DEFAULT_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "MOTO_ACCOUNT_ID": "111111111111", "MODEL_PACKAGE_GROUP": GROUP}


FakeContext = partial(LambdaContext, "modelwerk-pump-health-promotion-record", 256, 30,
                      "0e3a5d0c-0000-4000-8000-000000000003", "eu-central-1", "111111111111")


def package_arn(version: int, group: str = GROUP) -> str:
    return f"arn:aws:sagemaker:eu-central-1:111111111111:model-package/{group}/{version}"


def job(**parameters) -> dict:
    event = copy.deepcopy(JOB)
    configuration = event["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]
    if parameters:
        configuration["UserParameters"] = parameters.pop("raw", None) or json.dumps(parameters)
    return event


@pytest.fixture
def aws(monkeypatch):
    """moto's registry with versions 1..3 of the group (3 approved, described as approved by a person), and a
    stubbed CodePipeline client; every UpdateModelPackage request is recorded."""
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    handler_module = importlib.import_module("lambdas.promotion_record.handler")
    with fresh_mock_aws():
        sagemaker = boto3.client("sagemaker")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        for _ in range(3):
            sagemaker.create_model_package(
                ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved",
                CustomerMetadataProperties={"metrics_uri": "s3://registry/metrics.json"},
                InferenceSpecification={"Containers": [{"Image": "serving:1"}], "SupportedContentTypes": ["text/csv"],
                                        "SupportedResponseMIMETypes": ["application/json"]})
        updates: list[dict] = []
        sagemaker.meta.events.register("provide-client-params.sagemaker.UpdateModelPackage",
                                       lambda params, **_: updates.append(copy.deepcopy(params)))
        pipelines = boto3.client("codepipeline")
        monkeypatch.setattr(handler_module, "boto3", SimpleNamespace(
            client=lambda service, **kw: {"codepipeline": pipelines, "sagemaker": sagemaker}[service]))
        with Stubber(pipelines) as stubber:
            yield SimpleNamespace(handler=handler_module, sagemaker=sagemaker, stubber=stubber, updates=updates)
            stubber.assert_no_pending_responses()


def expect_failure(aws) -> list[str]:
    """Stub the failure answer; the message the function sent lands in the returned list."""
    sent: list[str] = []
    aws.stubber.add_response("put_job_failure_result", {}, {
        "jobId": JOB_ID, "failureDetails": {"type": "JobFailed", "message": ANY}})
    aws.stubber.client.meta.events.register(
        "provide-client-params.codepipeline.PutJobFailureResult",
        lambda params, **_: sent.append(params["failureDetails"]["message"]))
    return sent


def test_the_version_prod_now_serves_is_marked_and_the_job_succeeds(aws):
    aws.stubber.add_response("put_job_success_result", {}, {"jobId": JOB_ID, "outputVariables": ANY})
    result = aws.handler.handler(job(), FakeContext())
    assert result["status"] == "recorded" and result["model_package_version"] == 3
    metadata = aws.sagemaker.describe_model_package(ModelPackageName=package_arn(3))["CustomerMetadataProperties"]
    assert metadata["promoted_to_prod_at"] == result["promoted_to_prod_at"]
    assert metadata["metrics_uri"] == "s3://registry/metrics.json"  # the version's other metadata stays
    assert promotion_marks.in_prod(metadata)
    (update,) = aws.updates  # the approval is not sent: on AWS that could announce the version approved again
    assert set(update) == {"ModelPackageArn", "CustomerMetadataProperties"}


@pytest.mark.parametrize("parameters,reason", [
    pytest.param({"model_package_arn": ""}, "lack model_package_arn", id="no-arn"),
    pytest.param({"raw": "not json"}, "not JSON", id="not-json"),
    pytest.param({"model_package_arn": package_arn(3, "modelwerk-energy-forecast")},
                 "records versions of 'modelwerk-pump-health' only", id="another-group"),
    pytest.param({"model_package_arn": "arn:aws:sagemaker:eu-central-1:111111111111:model-package-group/x"},
                 "not a versioned model package ARN", id="not-a-version"),
    pytest.param({"model_package_arn": package_arn(9)}, "the registry refused the mark", id="unknown-version"),
])
def test_a_job_it_cannot_record_fails_with_the_reason_and_marks_nothing(aws, parameters, reason):
    sent = expect_failure(aws)
    result = aws.handler.handler(job(**parameters), FakeContext())
    assert result["status"] == "failed" and reason in result["reason"]
    assert sent == [result["reason"]]
    assert aws.updates == []


def test_a_function_without_its_group_fails_the_job_instead_of_leaving_it_waiting(aws, monkeypatch):
    monkeypatch.delenv("MODEL_PACKAGE_GROUP")
    sent = expect_failure(aws)
    assert aws.handler.handler(job(), FakeContext())["status"] == "failed"
    assert "lacks MODEL_PACKAGE_GROUP" in sent[0]
