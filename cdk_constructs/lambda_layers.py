"""The public Lambda layers the functions run on, pinned in one place.

Runtime dependencies (numpy, pandas, pyarrow; Powertools) come from AWS-published layers referenced by ARN, so
synth needs neither Docker nor a download. Bump a version here and every function moves with it.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

#: The runtime both layers below are published for.
PYTHON_RUNTIME = lambda_.Runtime.PYTHON_3_12
PYTHON_TAG = "python312"

#: AWS SDK for pandas (awswrangler 3.x: numpy, pandas, pyarrow) managed layer, account 336392948345.
#: Its version number differs per region: https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html
SDK_FOR_PANDAS_ACCOUNT = "336392948345"
SDK_FOR_PANDAS_VERSIONS: dict[str, int] = {
    "eu-central-1": 27,
}

#: Powertools for AWS Lambda (Python) v3, account 017000801446; one version number in every region.
POWERTOOLS_ACCOUNT = "017000801446"
POWERTOOLS_VERSION = 27


def sdk_for_pandas_arn(region: str) -> str:
    try:
        version = SDK_FOR_PANDAS_VERSIONS[region]
    except KeyError:
        raise ValueError(
            f"no AWS SDK for pandas layer version pinned for region {region!r}; add it to SDK_FOR_PANDAS_VERSIONS "
            "from https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html"
        ) from None
    return f"arn:aws:lambda:{region}:{SDK_FOR_PANDAS_ACCOUNT}:layer:AWSSDKPandas-Python312:{version}"


def powertools_arn(region: str) -> str:
    return (
        f"arn:aws:lambda:{region}:{POWERTOOLS_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-{PYTHON_TAG}-x86_64:{POWERTOOLS_VERSION}"
    )


def data_layers(scope: Construct) -> list[lambda_.ILayerVersion]:
    """AWS SDK for pandas and Powertools for the region of ``scope``'s stack (which must name its region)."""
    region = Stack.of(scope).region
    return [
        lambda_.LayerVersion.from_layer_version_arn(scope, "SdkForPandasLayer", sdk_for_pandas_arn(region)),
        lambda_.LayerVersion.from_layer_version_arn(scope, "PowertoolsLayer", powertools_arn(region)),
    ]
