"""Parameters as CloudFormation applies them to a stack: overrides, defaults, constraints, SSM-typed values."""

import pytest

from modelwerk.local.deployer import ParameterError, resolve_parameters

TEMPLATE = {"Parameters": {
    "ModelPackageArn": {"Type": "String",
                        "AllowedPattern": r"^arn:aws:sagemaker:[a-z0-9-]+:\d{12}:model-package/g/\d+$",
                        "ConstraintDescription": "a version of the registry's group"},
    "Size": {"Type": "Number", "Default": 2, "MinValue": 1, "AllowedValues": [1, 2, 3]},
    "Subnets": {"Type": "AWS::SSM::Parameter::Value<List<String>>", "Default": "/net/subnets"},
    "Group": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/net/group"},
}}
ARN = "arn:aws:sagemaker:eu-central-1:111111111111:model-package/g/3"
SSM = {"/net/subnets": "subnet-a,subnet-b", "/net/group": "sg-1"}


def _ssm(name: str) -> str:
    if name not in SSM:
        raise ParameterError(f"Unable to fetch parameters [{name}] from parameter store for this account.")
    return SSM[name]


def test_given_values_override_defaults_and_ssm_values_are_read_typed():
    values = resolve_parameters(TEMPLATE, {"ModelPackageArn": ARN, "Size": "3"}, _ssm)
    assert values == {"ModelPackageArn": ARN, "Size": "3", "Subnets": ["subnet-a", "subnet-b"], "Group": "sg-1"}


@pytest.mark.parametrize("given, message", [
    pytest.param({}, r"Parameters: \[ModelPackageArn\] must have values", id="no-value-no-default"),
    pytest.param({"ModelPackageArn": ARN.replace("/g/", "/other/")},
                 "Parameter ModelPackageArn failed to satisfy constraint: a version of the registry's group",
                 id="pattern-with-constraint-description"),
    pytest.param({"ModelPackageArn": ARN, "Size": "5"}, "Parameter 'Size' must be one of AllowedValues",
                 id="allowed-values"),
    pytest.param({"ModelPackageArn": ARN, "Size": "many"}, "Parameter 'Size' must be a number", id="number"),
    pytest.param({"ModelPackageArn": ARN, "Extra": "x"}, r"Parameters: \[Extra\] do not exist in the template",
                 id="unknown"),
    pytest.param({"ModelPackageArn": ARN, "Group": "/net/missing"},
                 r"Unable to fetch parameters \[/net/missing\] from parameter store", id="ssm-missing"),
])
def test_values_cloudformation_refuses_are_refused_with_its_message(given, message):
    with pytest.raises(ParameterError, match=message):
        resolve_parameters(TEMPLATE, given, _ssm)
