"""Synthesizes the whole CDK app once per session (all stages, cdk-nag and the Control Tower controls included);
infra tests read that assembly."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aws_cdk import App, Stack  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402
from aws_cdk.cx_api import CloudAssembly  # noqa: E402

from modelwerk import settings  # noqa: E402
from modelwerk.settings import PlatformConfig  # noqa: E402

WORKLOADS = ("dev", "staging", "prod")
STAGE_IDS = {"dev": "Dev", "staging": "Staging", "prod": "Prod", "registry": "Registry"}


@dataclass
class Synthesized:
    """The synthesized app: stacks by (environment, stack id), their templates, and the files on disk."""

    app: App
    assembly: CloudAssembly
    outdir: Path
    config: PlatformConfig
    _templates: dict[tuple[str, str], Template] = field(default_factory=dict)

    def stack(self, env: str, stack_id: str) -> Stack:
        """A stack of an environment's stage, or of its endpoints stage when ``env`` is ``<env>-endpoints``."""
        stage = self.app.node.find_child(STAGE_IDS.get(env, env))
        return stage.node.find_child(stack_id)  # type: ignore[return-value]

    def template(self, env: str, stack_id: str) -> Template:
        key = (env, stack_id)
        if key not in self._templates:
            self._templates[key] = Template.from_stack(self.stack(env, stack_id))
        return self._templates[key]

    def endpoint_template(self, env: str, endpoint: str) -> Template:
        """The stack of one configured endpoint (stage ``<env>-endpoints``, stack id the endpoint's PascalCase)."""
        from cdk_constructs.ids import pascal

        return self.template(f"{env}-endpoints", pascal(endpoint))

    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("assembly-*/*.template.json"))

    def templates_json(self) -> dict[str, dict[str, Any]]:
        return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in self.template_files()}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The infra tests share one xdist worker (``--dist loadgroup``), so a run synthesizes the app, with its
    guardrails, once."""
    infra = Path(__file__).parent
    for item in items:
        if infra in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("infra-synth"))


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk-out")
    app = build_app(ROOT, outdir=str(outdir))
    try:
        assembly = app.synth()
    except RuntimeError as error:  # cdk-nag findings or validation errors fail the synth
        pytest.fail(f"synth failed:\n{error}", pytrace=False)
    return Synthesized(app=app, assembly=assembly, outdir=outdir, config=settings.load(ROOT))


@pytest.fixture(scope="session")
def config(synthesized: Synthesized) -> PlatformConfig:
    return synthesized.config


@pytest.fixture(scope="session")
def dev_data_lake(synthesized: Synthesized) -> Template:
    return synthesized.template("dev", "DataLake")


@pytest.fixture(scope="session")
def dev_network(synthesized: Synthesized) -> Template:
    return synthesized.template("dev", "Network")


@pytest.fixture(scope="session")
def registry(synthesized: Synthesized) -> Template:
    return synthesized.template("registry", "ModelRegistry")
