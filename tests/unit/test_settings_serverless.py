"""An endpoint's ``serverless`` setting in cdk.json: SageMaker Serverless Inference's limits, and what a serverless
endpoint gives up (capture, so the drift monitor and its alarms; multi-model)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from modelwerk import settings
from modelwerk.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]


def parse(**endpoints) -> settings.PlatformConfig:
    """cdk.json's context with dev's endpoints replaced."""
    context = copy.deepcopy(CONTEXT)
    context[settings.ENVIRONMENTS_KEY]["dev"]["endpoints"] = endpoints
    return settings.parse_context(context, ROOT)


def test_cdk_json_declares_a_serverless_endpoint_in_dev_that_captures_nothing():
    endpoint = settings.parse_context(CONTEXT, ROOT).environment("dev").endpoints["energy-forecast-serverless"]
    assert endpoint.serverless == settings.ServerlessSettings(memory_mb=2048, max_concurrency=5)
    assert endpoint.use_case == "energy-forecast" and not endpoint.captures


@pytest.mark.parametrize("serverless, message", [
    pytest.param({"memory_mb": 512}, "memory_mb must be one of", id="memory-too-small"),
    pytest.param({"memory_mb": 2500}, "memory_mb must be one of", id="memory-not-a-step"),
    pytest.param({"memory_mb": 7168}, "memory_mb must be one of", id="memory-too-large"),
    pytest.param({"max_concurrency": 0}, "max_concurrency", id="concurrency-zero"),
    pytest.param({"max_concurrency": 201}, "max_concurrency", id="concurrency-too-high"),
    pytest.param({"memory": 2048}, "memory", id="unknown-key"),
])
def test_bad_serverless_settings_are_refused_with_the_reason(serverless, message):
    with pytest.raises(ConfigurationError, match=message):
        parse(e={"use_case": "pump-health", "serverless": serverless})


def test_a_serverless_endpoint_cannot_be_multi_model():
    with pytest.raises(ConfigurationError, match="cannot be multi_model"):
        parse(e={"use_case": "pump-health", "multi_model": True, "serverless": {}})


def test_a_serverless_endpoint_is_neither_monitored_nor_a_retraining_source():
    config = parse(**{"pump-health": {"use_case": "pump-health"},
                      "pump-health-serverless": {"use_case": "pump-health", "serverless": {}}})
    assert config.environment("dev").endpoints["pump-health-serverless"].captures is False
    sources = [endpoint for pairs in config.retraining_alarms("dev").values() for _, endpoint in pairs]
    assert "pump-health" in sources and "pump-health-serverless" not in sources
