"""The step code as one archive: what the pipeline's jobs download, built reproducibly from the checkout.

The CDK app deploys the archive as a file asset and the definition names the asset's S3 URL (never a local path the
SDK would upload). It holds the step scripts and the leaf package they import, under the paths the jobs expect::

    requirements.txt         the model frameworks' pins (``frameworks.txt`` of the checkout), installed before a step
                             runs: by the training toolkit in script mode, by the entry point of the processing steps
                             that load models; a model is trained, evaluated and served by the same versions
    steps/*.py               the step scripts (``step_common`` beside them)
    modelwerk/__init__.py    a stub, so ``modelwerk.core`` resolves here and nothing else of the library is needed
    modelwerk/core/**.py     contract checks, snapshots, drift statistics

Equal sources give byte-equal archives (sorted entries, zero timestamps and owners), so the asset hash, and with it
the deployed definition, changes only when the code does.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE_NAME = "sourcedir.tar.gz"
#: The one pin of the model frameworks, at the root of the checkout; in the archive it is ``REQUIREMENTS``.
FRAMEWORKS_FILE = "frameworks.txt"
REQUIREMENTS = "requirements.txt"
_PACKAGE_STUB = '"""Step jobs import only modelwerk.core; the library itself is not part of the code archive."""\n'
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)$")


def framework_pins(root: Path = ROOT) -> dict[str, str]:
    """The pins of ``frameworks.txt`` (distribution name -> exact version); anything but ``name==version`` lines and
    comments is refused, so every job installs exactly the versions a model is served with."""
    path = Path(root) / FRAMEWORKS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: it pins the model frameworks for training and serving")
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: {line!r} is not an exact pin (name==version)")
        pins[match.group(1).lower()] = match.group(2)
    if not pins:
        raise ValueError(f"{path} pins no framework")
    return pins


def members(root: Path = ROOT) -> list[tuple[str, bytes]]:
    """(path in the archive, content) of every file, sorted by path."""
    framework_pins(root)  # refuse a malformed pin file before it reaches a job
    found: dict[str, bytes] = {
        "modelwerk/__init__.py": _PACKAGE_STUB.encode(),
        REQUIREMENTS: (Path(root) / FRAMEWORKS_FILE).read_bytes(),
    }
    for folder, prefix in ((root / "sagemaker_pipelines" / "steps", "steps"), (root / "modelwerk" / "core", "modelwerk/core")):
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[f"{prefix}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    return sorted(found.items())


def build(target: Path, root: Path = ROOT) -> Path:
    """Write the archive to ``target`` (a file path, or a folder to hold ``sourcedir.tar.gz``); returns its path."""
    target = Path(target)
    if target.is_dir():
        target = target / ARCHIVE_NAME
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members(root):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as packed:
        packed.write(buffer.getvalue())
    return target
