#!/usr/bin/env python3
"""CDK entry point: one Stage per environment declared in cdk.json, and one more per workload environment with
endpoints (``<env>-endpoints``, deployed apart), with tags, and cdk-nag and the Control Tower proactive controls
over the whole app (``cdk_constructs.nag``).

The configuration is read once here and passed down; constructs never read context. Synthesis needs no
credentials, network or Docker: accounts, regions and availability zones all come from cdk.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aws_cdk import App

from cdk_constructs.ids import pascal
from cdk_constructs.nag import add_guardrails
from modelwerk import settings
from stacks.stages import EndpointsStage, RegistryStage, WorkloadStage, endpoints_stage_id, tag_stage

ROOT = Path(__file__).resolve().parent


def build_app(root: Path | str = ROOT, *, outdir: str | None = None) -> App:
    """The CDK app of the checkout at ``root``; ``outdir`` defaults to the CLI's, else ``<root>/cdk.out``.

    cdk.json's context (feature flags included) is passed in explicitly, so ``python app.py`` and a test synthesize
    the same templates as ``cdk synth``.
    """
    root = Path(root)
    config = settings.load(root)
    context = json.loads((root / "cdk.json").read_text(encoding="utf-8")).get("context", {})
    if outdir is None and "CDK_OUTDIR" not in os.environ:
        outdir = str(root / "cdk.out")
    app = App(context=context, outdir=outdir) if outdir else App(context=context)
    for environment in config.environments.values():
        stage_type = RegistryStage if environment.kind == "registry" else WorkloadStage
        stages = [stage_type(app, pascal(environment.name), config=config, environment=environment)]
        if environment.endpoints:
            stages.append(EndpointsStage(app, endpoints_stage_id(environment.name), config=config,
                                         environment=environment))
        for stage in stages:
            tag_stage(stage, config, environment)
    add_guardrails(app)
    return app


if __name__ == "__main__":
    build_app().synth()
