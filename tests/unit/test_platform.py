"""Configuration resolution: SSM parameters first, a checkout's cdk.json when SSM has none."""

import boto3
import pytest

from modelwerk import platform
from modelwerk.errors import ConfigurationError, NotFoundError
from moto_fresh import fresh_mock_aws


@pytest.fixture
def aws(monkeypatch, tmp_path):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "MODELWERK_ENV", "MODELWERK_LOCAL_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELWERK_LOCAL", "0")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    platform._resolve_cached.cache_clear()
    with fresh_mock_aws():
        yield
    platform._resolve_cached.cache_clear()


def test_without_ssm_parameters_names_come_from_cdk_json(aws):
    resolved = platform.resolve("staging")
    assert resolved.source == "cdk.json"
    assert resolved.bucket("raw") == "modelwerk-staging-raw-222222222222-eu-central-1"
    assert resolved.database("curated") == "modelwerk_staging_curated"
    assert resolved.contract("pump-health").label == "failure"


def test_ssm_parameters_win_over_cdk_json(aws):
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/modelwerk/dev/buckets/raw", Value="published-raw", Type="String")
    ssm.put_parameter(Name="/modelwerk/dev/use-cases/pump-health/contract", Type="String",
                      Value=platform._from_checkout("dev")[1]["pump-health"].to_json())
    resolved = platform.resolve("dev")
    assert resolved.source == "ssm"
    assert resolved.bucket("raw") == "published-raw"
    assert list(resolved.contracts) == ["pump-health"]


def test_modelwerk_env_selects_the_environment(aws, monkeypatch):
    monkeypatch.setenv("MODELWERK_ENV", "prod")
    assert platform.resolve().env == "prod"


def test_unknown_environment_and_use_case_say_what_exists(aws):
    with pytest.raises(ConfigurationError, match="unknown environment 'qa'.*dev"):
        platform.resolve("qa")
    with pytest.raises(NotFoundError, match="unknown use case 'boilers'.*pump-health"):
        platform.resolve("dev").contract("boilers")
