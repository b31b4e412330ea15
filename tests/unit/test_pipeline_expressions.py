"""The local executor's reading of pipeline-definition expressions and conditions."""

import pytest

from modelwerk.local.pipeline_expressions import (
    ExecutionContext,
    ExpressionError,
    condition_holds,
    parse_property_path,
    references,
)


@pytest.fixture
def context():
    return ExecutionContext(
        parameters={"SnapshotId": "abc123", "QualityThreshold": 0.8},
        execution={"PipelineExecutionArn": "arn:aws:sagemaker:eu-central-1:1:pipeline/p/execution/e1"},
        steps={"Preprocess": {"ProcessingOutputConfig": {"Outputs": {
            "train": {"S3Output": {"S3Uri": "s3://bucket/run/train"}}}}},
            "Train": {"ModelArtifacts": {"S3ModelArtifacts": "s3://bucket/run/model.tar.gz"}}},
        property_files={"Evaluate": {"EvaluationReport": {"metrics": {"roc_auc": {"value": 0.91}},
                                                          "folds": [{"f1": 0.5}, {"f1": 0.7}]}}},
    )


@pytest.mark.parametrize(
    "path, tokens",
    [
        pytest.param("Parameters.SnapshotId", ["Parameters", "SnapshotId"], id="parameter"),
        pytest.param("Steps.P.Outputs['train'].S3Uri", ["Steps", "P", "Outputs", "train", "S3Uri"], id="quoted-key"),
        pytest.param('Steps.P.Outputs["a b"]', ["Steps", "P", "Outputs", "a b"], id="double-quoted-key"),
        pytest.param("metrics.folds[1].f1", ["metrics", "folds", 1, "f1"], id="index"),
    ],
)
def test_property_paths_are_tokenized(path, tokens):
    assert parse_property_path(path) == tokens


@pytest.mark.parametrize(
    "expression, expected",
    [
        pytest.param({"Get": "Parameters.SnapshotId"}, "abc123", id="parameter"),
        pytest.param({"Get": "Execution.PipelineExecutionArn"}, "arn:aws:sagemaker:eu-central-1:1:pipeline/p/execution/e1",
                     id="execution-variable"),
        pytest.param({"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"},
                     "s3://bucket/run/train", id="step-property"),
        pytest.param({"Std:Join": {"On": "/", "Values": ["s3://b", {"Get": "Parameters.SnapshotId"}, 1, True]}},
                     "s3://b/abc123/1/true", id="join"),
        pytest.param({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                                      "Path": "metrics.roc_auc.value"}}, 0.91, id="json-get"),
        pytest.param({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                                      "Path": "folds[1].f1"}}, 0.7, id="json-get-index"),
        pytest.param({"Args": [{"Get": "Parameters.QualityThreshold"}, "x"]}, {"Args": [0.8, "x"]}, id="nested"),
    ],
)
def test_expressions_evaluate(context, expression, expected):
    assert context.evaluate(expression) == expected


@pytest.mark.parametrize(
    "expression, message",
    [
        pytest.param({"Get": "Parameters.Nope"}, "undeclared parameter", id="unknown-parameter"),
        pytest.param({"Get": "Steps.Register.ModelPackageArn"}, "has not run", id="step-not-run"),
        pytest.param({"Get": "Steps.Train.Nope"}, "no property", id="unknown-property"),
        pytest.param({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                                      "Path": "metrics.f1.value"}}, "no value at", id="json-path-missing"),
    ],
)
def test_unresolvable_expressions_say_what_is_missing(context, expression, message):
    with pytest.raises(ExpressionError, match=message):
        context.evaluate(expression)


def _metric_at_least(threshold):
    return {"Type": "GreaterThanOrEqualTo",
            "LeftValue": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                                          "Path": "metrics.roc_auc.value"}},
            "RightValue": threshold}


@pytest.mark.parametrize(
    "condition, holds",
    [
        pytest.param(_metric_at_least({"Get": "Parameters.QualityThreshold"}), True, id="metric-above-threshold"),
        pytest.param(_metric_at_least(0.95), False, id="metric-below-threshold"),
        pytest.param({"Type": "Not", "Condition": _metric_at_least(0.95)}, True, id="not"),
        pytest.param({"Type": "Or", "Conditions": [_metric_at_least(0.95), _metric_at_least(0.5)]}, True, id="or"),
        pytest.param({"Type": "In", "QueryValue": {"Get": "Parameters.SnapshotId"}, "Values": ["x", "abc123"]}, True,
                     id="in"),
        pytest.param({"Type": "Equals", "LeftValue": "1", "RightValue": 1}, True, id="numeric-equality-across-types"),
    ],
)
def test_conditions(context, condition, holds):
    assert condition_holds(condition, context) is holds


def test_references_name_the_steps_an_argument_reads():
    arguments = {"In": [{"Get": "Steps.Preprocess.X"}, {"Std:Join": {"On": "", "Values": [{"Get": "Steps.Train.Y"}]}}],
                 "P": {"Get": "Parameters.Z"}}
    assert references(arguments) == {"Preprocess", "Train"}
