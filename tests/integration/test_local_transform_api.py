"""Batch Transform in the embedded SageMaker, driven only through boto3, as on AWS.

One embedded AWS for the module; a model whose archive is in its S3 answers a constant 7 for any row of three
numbers (and 400 for a row that is not), so a joined output line is its input line plus ",7".
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from serving_helpers import write_artifact
from sklearn.dummy import DummyClassifier

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-transform")]

BUCKET = "batch"
MODEL = "constant-seven"
COLUMNS = [("a", "double"), ("b", "double"), ("c", "double")]
INPUTS = {"in/part-1.csv": [f"k{i},{i}.0,{i}.5,-{i}" for i in range(5)],
          "in/part-2.csv": [f"k{i},{i},{i},{i}" for i in range(5, 8)]}


@pytest.fixture(scope="module")
def sagemaker(embedded_aws, tmp_path_factory):
    s3, sagemaker = embedded_aws.client("s3"), embedded_aws.client("sagemaker")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    estimator = DummyClassifier(strategy="constant", constant=7).fit(np.zeros((4, 3)), [7, 7, 9, 9])
    folder = write_artifact(tmp_path_factory.mktemp("model"), estimator, COLUMNS, archive=True)
    s3.put_object(Bucket=BUCKET, Key="model/model.tar.gz", Body=(folder / "model.tar.gz").read_bytes())
    sagemaker.create_model(ModelName=MODEL, ExecutionRoleArn="arn:aws:iam::123456789012:role/transform",
                           PrimaryContainer={"Image": "modelwerk-serving:latest",
                                             "ModelDataUrl": f"s3://{BUCKET}/model/model.tar.gz"})
    for key, lines in INPUTS.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=("\n".join(lines) + "\n").encode())
    s3.put_object(Bucket=BUCKET, Key="bad/part-1.csv", Body=b"k0,1,2,3\nk1,1,2,3\nk2,1,oops,3\nk3,1,2,3\n")
    return sagemaker


def _request(name: str, source: str, output: str, **extra) -> dict:
    return {"TransformJobName": name, "ModelName": MODEL, "BatchStrategy": "MultiRecord",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                               "S3Uri": f"s3://{BUCKET}/{source}"}},
                               "ContentType": "text/csv", "SplitType": "Line"},
            "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/{output}", "Accept": "text/csv",
                                "AssembleWith": "Line"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input"}, **extra}


def _wait(sagemaker, name: str, seconds: float = 60.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        described = sagemaker.describe_transform_job(TransformJobName=name)
        if described["TransformJobStatus"] not in ("InProgress", "Stopping"):
            return described
        time.sleep(0.2)
    raise AssertionError(f"transform job {name} did not end in {seconds} s")


def _lines(s3, key: str) -> list[str]:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()


def test_a_transform_job_joins_each_record_with_its_prediction_and_captures_manifests(sagemaker, embedded_aws):
    sagemaker.create_transform_job(**_request("joined", "in/", "out", DataCaptureConfig={
        "DestinationS3Uri": f"s3://{BUCKET}/capture"}))
    assert sagemaker.describe_transform_job(TransformJobName="joined")["TransformJobStatus"] == "InProgress"
    described = _wait(sagemaker, "joined")
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert described["TransformStartTime"] <= described["TransformEndTime"]
    assert described["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input"}
    s3 = embedded_aws.client("s3")
    for key, lines in INPUTS.items():
        assert _lines(s3, f"out/{key.removeprefix('in/')}.out") == [f"{line},7" for line in lines]
    listed = sagemaker.list_transform_jobs(NameContains="joined")["TransformJobSummaries"]
    assert [(j["TransformJobName"], j["TransformJobStatus"]) for j in listed] == [("joined", "Completed")]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="capture/")["Contents"])
    hour = described["TransformStartTime"].strftime("%Y/%m/%d/%H")
    assert keys == [f"capture/input/{hour}/joined.json", f"capture/output/{hour}/joined.json"]
    assert json.loads(_lines(s3, keys[0])[0]) == [{"prefix": f"s3://{BUCKET}/in/"}, "part-1.csv", "part-2.csv"]
    assert json.loads(_lines(s3, keys[1])[0]) == [{"prefix": f"s3://{BUCKET}/out/"}, "part-1.csv.out",
                                                  "part-2.csv.out"]


def test_a_record_the_model_refuses_fails_the_job_naming_its_object_and_line(sagemaker, embedded_aws):
    sagemaker.create_transform_job(**_request("refused", "bad/", "bad-out"))
    described = _wait(sagemaker, "refused")
    assert described["TransformJobStatus"] == "Failed"
    assert f"s3://{BUCKET}/bad/part-1.csv, line 3" in described["FailureReason"]
    listed = embedded_aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="bad-out/")
    assert "Contents" not in listed  # no output for a failed object


def test_a_filter_the_embedded_sagemaker_cannot_evaluate_is_refused_when_the_job_is_created(sagemaker):
    request = _request("unsupported", "in/", "never")
    request["DataProcessing"] = {"InputFilter": "$[0:2,4:]"}
    with pytest.raises(sagemaker.exceptions.ClientError, match="ValidationException"):
        sagemaker.create_transform_job(**request)
    with pytest.raises(sagemaker.exceptions.ClientError, match="ValidationException"):
        sagemaker.describe_transform_job(TransformJobName="unsupported")


def test_a_stopped_transform_job_ends_stopped(sagemaker):
    sagemaker.create_transform_job(**_request("stopped", "in/", "stopped-out"))
    sagemaker.stop_transform_job(TransformJobName="stopped")
    assert sagemaker.describe_transform_job(TransformJobName="stopped")["TransformJobStatus"] in ("Stopping",
                                                                                                 "Stopped")
    assert _wait(sagemaker, "stopped")["TransformJobStatus"] == "Stopped"


def test_a_pipeline_transform_step_runs_its_job_and_reports_it(sagemaker, embedded_aws):
    arguments = _request("ignored", "in/", "pipeline-out")
    del arguments["TransformJobName"]
    arguments["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = {"Get": "Parameters.InputUri"}
    definition = {"Version": "2020-12-01",
                  "Parameters": [{"Name": "InputUri", "Type": "String", "DefaultValue": f"s3://{BUCKET}/in/"}],
                  "Steps": [{"Name": "Score", "Type": "Transform", "Arguments": arguments}]}
    sagemaker.create_pipeline(PipelineName="scoring", PipelineDefinition=json.dumps(definition),
                              RoleArn="arn:aws:iam::123456789012:role/pipeline")
    arn = sagemaker.start_pipeline_execution(PipelineName="scoring")["PipelineExecutionArn"]
    deadline = time.monotonic() + 60
    while sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Executing":
        assert time.monotonic() < deadline, "the pipeline execution did not end"
        time.sleep(0.5)
    described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
    assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
    step = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"][0]
    job = step["Metadata"]["TransformJob"]["Arn"].rsplit("/", 1)[-1]
    assert sagemaker.describe_transform_job(TransformJobName=job)["TransformJobStatus"] == "Completed"
    assert _lines(embedded_aws.client("s3"), "pipeline-out/part-2.csv.out") == [f"{line},7"
                                                                               for line in INPUTS["in/part-2.csv"]]
