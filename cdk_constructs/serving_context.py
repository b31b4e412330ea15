"""The serving image's build context: which files of the checkout it is built from, and the tag they give it.

The image is built from the repository root (``containers/serving/Dockerfile`` copies from there) but needs only::

    containers/serving/**    the Dockerfile, the server package, its pinned requirements
    modelwerk/core/**        the leaf package the server shares with the library (the capture format)
    frameworks.txt           the model frameworks' pins, the same ones training installs

The tag is a content hash of exactly those files (``src-<sha256[:12]>``): equal sources give the same tag on every
machine, so the registry stack builds a new image only when they change, and the training stack names the image a
model version is registered with without a deployment output. Plain Python (no CDK): the stacks of two accounts and
the tests compute the same tag.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

#: Folders (recursively) and files of the checkout that make the build context.
CONTEXT_FOLDERS = ("containers/serving", "modelwerk/core")
CONTEXT_FILES = ("frameworks.txt",)
DOCKERFILE = "containers/serving/Dockerfile"
TAG_PREFIX = "src-"
#: Byte-code and caches never reach the image.
_SKIPPED_FOLDERS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for folder in CONTEXT_FOLDERS:
        base = root / folder
        if not base.is_dir():
            raise FileNotFoundError(f"{base} not found: the serving image is built from it")
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not _SKIPPED_FOLDERS & set(relative.parts) and path.suffix not in _SKIPPED_SUFFIXES:
                yield relative.as_posix(), path
    for name in CONTEXT_FILES:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the serving image is built from it")
        yield name, path


def context_files(root: Path | str) -> list[tuple[str, Path]]:
    """(path relative to the checkout, file) of every file in the build context, sorted by path.

    Raises ``FileNotFoundError`` when the Dockerfile or a required part is missing: an image cannot be built then.
    """
    root = Path(root)
    if not (root / DOCKERFILE).is_file():
        raise FileNotFoundError(f"{root / DOCKERFILE} not found: the serving image cannot be built without it")
    return sorted(_files(root))


def serving_image_tag(root: Path | str) -> str:
    """The image tag of the checkout's build context: ``src-`` and the first 12 hex digits of a SHA-256 over every
    file's path and content (length-prefixed, so no two contexts collide by concatenation)."""
    digest = hashlib.sha256()
    for relative, path in context_files(root):
        content = path.read_bytes()
        name = relative.encode("utf-8")
        digest.update(len(name).to_bytes(8, "big") + name + len(content).to_bytes(8, "big") + content)
    return f"{TAG_PREFIX}{digest.hexdigest()[:12]}"


def stage(root: Path | str, target: Path | str) -> Path:
    """Copy the build context into ``target`` (an empty folder) with the checkout's layout; returns ``target``."""
    target = Path(target)
    for relative, path in context_files(root):
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return target
