"""Where a served endpoint's "needs retraining" alarm starts the training pipeline: the environment itself when it
trains, else the one training environment (or the one its ``retraining_environment`` names)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from modelwerk import settings
from modelwerk.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]


def _config(**changes: dict) -> settings.PlatformConfig:
    context = copy.deepcopy(CONTEXT)
    for env, values in changes.items():
        context[settings.ENVIRONMENTS_KEY].setdefault(env, {}).update(values)
    return settings.parse_context(context, ROOT)


def _sandbox() -> dict:
    """A second training environment, shaped like dev."""
    return {**copy.deepcopy(CONTEXT[settings.ENVIRONMENTS_KEY]["dev"]), "account": "444444444444",
            "vpc_cidr": "10.40.0.0/16", "endpoints": {}}


def test_serving_environments_retrain_in_the_only_training_environment():
    config = _config()
    assert config.retraining_environment("prod").name == "dev"
    assert config.retraining_environment("staging").name == "dev"
    assert config.retraining_environment("dev").name == "dev"


def test_the_training_environment_retrains_its_own_and_the_forwarded_alarms_per_use_case():
    alarms = _config().retraining_alarms("dev")
    assert sorted(alarms) == ["energy-forecast", "pump-health"]
    assert [(env.name, endpoint) for env, endpoint in alarms["pump-health"]] == [
        ("dev", "pump-health"), ("staging", "pump-health"), ("prod", "pump-health")]  # pump-fleet: multi-model
    assert _config().retraining_alarms("prod") == {}


def test_several_training_environments_need_the_serving_environment_to_name_one():
    config = _config(sandbox=_sandbox())
    with pytest.raises(ConfigurationError, match=r"'prod'.*several training environments.*retraining_environment"):
        config.retraining_environment("prod")
    chosen = _config(sandbox=_sandbox(), prod={"retraining_environment": "sandbox"},
                     staging={"retraining_environment": "dev"})
    assert chosen.retraining_environment("prod").name == "sandbox"
    assert [e.name for e, _ in chosen.retraining_alarms("sandbox")["pump-health"]] == ["prod"]
    assert [e.name for e, _ in chosen.retraining_alarms("dev")["pump-health"]] == ["dev", "staging"]


@pytest.mark.parametrize("changes", [
    pytest.param({"prod": {"retraining_environment": "staging"}}, id="names-a-serving-environment"),
    pytest.param({"prod": {"retraining_environment": "nowhere"}}, id="names-an-unknown-environment"),
    pytest.param({"dev": {"retraining_environment": "dev"}}, id="set-on-a-training-environment"),
])
def test_a_retraining_environment_that_does_not_train_is_refused(changes):
    with pytest.raises(ConfigurationError, match="retraining_environment .* must name a training environment"):
        _config(**changes)
