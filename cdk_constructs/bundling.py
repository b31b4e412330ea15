"""Assets assembled from folders of the checkout at synth time, with CDK's local bundling and never Docker.

A Lambda asset or a Glue library needs its own folder plus shared code (``modelwerk/core/``) that lives elsewhere
in the repository. Copying by hand drifts; this bundler copies at every synth, so the asset always carries the
code of the checkout it was synthesized from, and the asset hash follows the assembled output.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling

#: Never pulled: local bundling always succeeds, the image only satisfies the required argument.
NO_DOCKER_IMAGE = "local-bundling-only"
IGNORED = ("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache")


@dataclass(frozen=True)
class Copy:
    """Copy ``source`` (a file or a folder) to ``target``, a path relative to the asset root (``.`` = the root)."""

    source: Path
    target: str = "."


@jsii.implements(ILocalBundling)
class LocalCopy:
    """Local bundler: copies files and folders into the asset's output folder."""

    def __init__(self, *, copies: Sequence[Copy], files: Mapping[str, str] | None = None) -> None:
        missing = [str(c.source) for c in copies if not c.source.exists()]
        if missing:
            raise FileNotFoundError(f"cannot bundle, not found: {missing}")
        self._copies = tuple(copies)
        self._files = dict(files or {})

    def try_bundle(self, output_dir: str, options: object = None) -> bool:  # noqa: ARG002 - jsii interface
        out = Path(output_dir)
        for copy in self._copies:
            if copy.source.is_dir():
                ignore = shutil.ignore_patterns(*IGNORED)
                shutil.copytree(copy.source, out / copy.target, dirs_exist_ok=True, ignore=ignore)
                continue
            target = out / copy.source.name if copy.target in (".", "") else out / copy.target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(copy.source, target)
        for relative, content in self._files.items():
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        return True


@dataclass(frozen=True)
class LocalBundle:
    """What goes into one asset: copies of checkout paths plus small generated files (path -> text)."""

    copies: Sequence[Copy]
    files: Mapping[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """What this bundle holds, as one digest: CDK reuses a bundled output for the same source folder and bundling
        options within a synth, and the local bundler itself is not part of those options, so two bundles of one
        folder with different copies or files must differ in the options."""
        digest = hashlib.sha256()
        for copy in self.copies:
            digest.update(f"copy\0{copy.source.resolve()}\0{copy.target}\0".encode())
        for relative, content in sorted(self.files.items()):
            digest.update(f"file\0{relative}\0{content}\0".encode())
        return digest.hexdigest()

    def options(self) -> BundlingOptions:
        """Bundling options for ``Code.from_asset`` / ``Asset``: local copy only, Docker never used."""
        return BundlingOptions(
            image=DockerImage.from_registry(NO_DOCKER_IMAGE),
            local=LocalCopy(copies=self.copies, files=self.files),
            environment={"MODELWERK_BUNDLE": self.fingerprint()},
        )
