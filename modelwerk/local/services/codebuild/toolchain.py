"""The build image's tools, for a build run on this machine: a Python of the builds' own and the AWS CLI.

CodeBuild's standard image brings Python, pip and the AWS CLI. Here one virtual environment per server state folder
stands in for the image's Python: it sees the server's packages (a ``.pth`` line names the server environment's
site-packages, after its own), so the project's pins are there without a download and ``pip install boto3==<pin>``
is a no-op of about a second, while anything a build installs goes into this environment: a build never changes
the server's. The checkout's own package is not on that path (it is installed as editable, through a ``.pth`` file
that the line does not process): a build imports only what its source brings, as on CodeBuild. ``aws`` is the AWS
CLI of the server's environment (``requirements.txt`` pins it), found before any other on the build's PATH.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import venv
from pathlib import Path

_lock = threading.Lock()
#: The file naming the server environment's site-packages inside the build environment.
_PTH = "modelwerk-server-packages.pth"


def build_python(folder: Path) -> Path:
    """The builds' virtual environment under ``folder`` (created on first use); its root."""
    marker = folder / "ready"
    with _lock:
        if not marker.exists() or marker.read_text(encoding="utf-8") != sys.version:  # made by another Python
            venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(folder)
            site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(folder),
                                                                     "platbase": str(folder)}))
            paths = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
            (site_packages / _PTH).write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
            # The image's pip commands, through the module the path above brings (shadowing the server's own).
            for name in ("pip", "pip3", f"pip{sys.version_info.major}.{sys.version_info.minor}"):
                script = folder / "bin" / name
                script.write_text(f'#!/bin/sh\nexec "{folder}/bin/python" -m pip "$@"\n', encoding="utf-8")
                script.chmod(0o755)
            marker.write_text(sys.version, encoding="utf-8")
    return folder


def path_variable(build_env: Path) -> str:
    """PATH of a build: its Python first, then the server environment's scripts (``aws``), then the machine's."""
    server_scripts = sysconfig.get_path("scripts")
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and p not in (server_scripts, str(build_env / "bin"))]
    return os.pathsep.join([str(build_env / "bin"), server_scripts, *rest])
