"""The synthesized cloud assembly (``cdk.out``): which stacks a stage holds, their templates and assets.

Local mode deploys exactly what ``cdk deploy`` would. It synthesizes by running the CDK app as a subprocess (the
library never imports ``aws_cdk``) when any source the app reads is newer than the assembly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelwerk.errors import LocalModeError

#: What the CDK app reads: a change here makes the assembly stale.
SOURCES = ("app.py", "cdk.json", "stacks", "cdk_constructs", "lambdas", "glue_jobs", "modelwerk/core",
           "modelwerk/settings.py", "modelwerk/naming.py", "sagemaker_pipelines", "containers",
           "frameworks.txt", "requirements.txt")


@dataclass(frozen=True)
class StackArtifact:
    """One stack of a stage, as ``cdk deploy`` sees it."""

    name: str  # CloudFormation stack name
    template_file: Path
    assets_file: Path | None
    account: str
    region: str
    dependencies: tuple[str, ...]

    @property
    def template(self) -> dict[str, Any]:
        return json.loads(self.template_file.read_text(encoding="utf-8"))

    @property
    def assets(self) -> dict[str, Any]:
        if self.assets_file is None or not self.assets_file.is_file():
            return {"files": {}, "dockerImages": {}}
        return json.loads(self.assets_file.read_text(encoding="utf-8"))


def _newest_source(root: Path) -> float:
    newest = 0.0
    for name in SOURCES:
        path = root / name
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for file in path.rglob("*"):
                if file.is_file() and "__pycache__" not in file.parts:
                    newest = max(newest, file.stat().st_mtime)
    return newest


def is_stale(root: Path, outdir: Path) -> bool:
    manifest = outdir / "manifest.json"
    return not manifest.is_file() or manifest.stat().st_mtime < _newest_source(root)


def synthesize(root: Path, outdir: Path | None = None, *, force: bool = False) -> Path:
    """Run the CDK app (``python app.py``) into ``outdir`` unless the assembly there is up to date."""
    outdir = outdir or root / "cdk.out"
    if not force and not is_stale(root, outdir):
        return outdir
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1",
           "CDK_DISABLE_CLI_TELEMETRY": "true"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(root / "app.py")], cwd=root, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise LocalModeError(f"the CDK app failed to synthesize (fix it, then run 'modelwerk local up' again):\n{tail}")
    (outdir / "manifest.json").touch()
    _ = time.monotonic() - started
    return outdir


def _artifacts(manifest_dir: Path) -> dict[str, Any]:
    return json.loads((manifest_dir / "manifest.json").read_text(encoding="utf-8"))["artifacts"]


def stage_stacks(outdir: Path, stage: str) -> list[StackArtifact]:
    """The stacks of one stage in deployment order (dependencies first)."""
    top = _artifacts(outdir)
    nested = next((a for name, a in top.items() if a.get("type") == "cdk:cloud-assembly"
                   and a.get("properties", {}).get("directoryName", "").lower() == f"assembly-{stage}".lower()), None)
    if nested is None:
        stages = sorted(a["properties"]["directoryName"].removeprefix("assembly-").lower() for a in top.values()
                        if a.get("type") == "cdk:cloud-assembly")
        raise LocalModeError(f"the cloud assembly has no stage {stage!r} (it has {stages}); check cdk.json")
    stage_dir = outdir / nested["properties"]["directoryName"]
    artifacts = _artifacts(stage_dir)
    stacks: dict[str, StackArtifact] = {}
    asset_files = {name: a for name, a in artifacts.items() if a.get("type") == "cdk:asset-manifest"}
    for artifact_id, artifact in artifacts.items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        props = artifact["properties"]
        environment = artifact["environment"].removeprefix("aws://")
        account, region = environment.split("/")
        assets = next((stage_dir / a["properties"]["file"] for name, a in asset_files.items()
                       if name in artifact.get("dependencies", [])), None)
        stacks[artifact_id] = StackArtifact(
            name=props.get("stackName", artifact_id),
            template_file=stage_dir / props["templateFile"],
            assets_file=assets,
            account=account,
            region=region,
            dependencies=tuple(d for d in artifact.get("dependencies", []) if d in artifacts
                               and artifacts[d].get("type") == "aws:cloudformation:stack"),
        )
    ordered: list[StackArtifact] = []
    done: set[str] = set()

    def visit(artifact_id: str) -> None:
        if artifact_id in done:
            return
        done.add(artifact_id)
        for dependency in stacks[artifact_id].dependencies:
            visit(dependency)
        ordered.append(stacks[artifact_id])

    for artifact_id in sorted(stacks):
        visit(artifact_id)
    return ordered
