"""A benchmark peer's own virtual environment, made from its pinned requirements file and reused while the pins
are unchanged, so a peer never installs into the project's environment and every run measures the same peer."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path


class PeerInstallError(RuntimeError):
    """A peer's virtual environment could not be made."""


def peer_python(requirements: Path, folder: Path, log: Path) -> Path:
    """The Python of the virtual environment in ``folder`` holding ``requirements``, made when missing or when the
    requirements changed since it was made (their sha256 is kept beside it)."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    python = folder / "bin" / "python"
    marker = folder / ".requirements-sha256"
    if python.exists() and marker.is_file() and marker.read_text().strip() == digest:
        return python
    print(f"  installing {requirements.stem} into {folder} (once; reused while {requirements.name} is unchanged) ...",
          flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        for command in (
            [sys.executable, "-m", "venv", str(folder)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(requirements)],
        ):
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise PeerInstallError(f"installing {requirements.stem} failed: see {log}")
    marker.write_text(digest + "\n")
    return python
