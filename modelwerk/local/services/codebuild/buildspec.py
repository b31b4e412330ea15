"""CodeBuild's buildspec (version 0.2, YAML or JSON): what a build runs, read and checked before anything runs.

Read as CodeBuild reads it: ``env`` (``shell``, ``variables``, ``parameter-store``, ``secrets-manager``,
``exported-variables``), ``phases`` (``install``, ``pre_build``, ``build``, ``post_build``, each with ``commands``,
``finally``, ``on-failure`` and, for install, ``runtime-versions``). A buildspec this module refuses fails the build
in DOWNLOAD_SOURCE with CodeBuild's ``YAML_FILE_ERROR``.

Example
-------
>>> spec = parse("version: 0.2\\nphases:\\n  build:\\n    commands:\\n      - echo hi\\n")
>>> [phase.name for phase in spec.phases], spec.phase("BUILD").commands
(['INSTALL', 'PRE_BUILD', 'BUILD', 'POST_BUILD'], ('echo hi',))
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

#: The buildspec's phases in the order they run, with the build phase each is recorded as.
PHASES = (("install", "INSTALL"), ("pre_build", "PRE_BUILD"), ("build", "BUILD"), ("post_build", "POST_BUILD"))
#: Shells of a Linux build (CodeBuild's ``env.shell``): every one runs as bash here.
LINUX_SHELLS = ("bash", "/bin/bash", "sh", "/bin/sh")
ON_FAILURE = ("ABORT", "CONTINUE")
#: Sections CodeBuild reads that a local build does without (its run is the same): noted in the build's log.
IGNORED_SECTIONS = ("reports", "cache", "run-as", "proxy")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BuildspecError(ValueError):
    """The buildspec cannot run (CodeBuild's YAML_FILE_ERROR)."""


@dataclass(frozen=True)
class Phase:
    name: str  # INSTALL, PRE_BUILD, BUILD, POST_BUILD
    commands: tuple[str, ...] = ()
    finally_commands: tuple[str, ...] = ()
    on_failure: str = "ABORT"
    runtime_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Buildspec:
    phases: tuple[Phase, ...]
    variables: dict[str, str] = field(default_factory=dict)
    parameter_store: dict[str, str] = field(default_factory=dict)
    secrets_manager: dict[str, str] = field(default_factory=dict)
    exported_variables: tuple[str, ...] = ()
    shell: str = "bash"
    artifacts: dict[str, Any] | None = None
    ignored: tuple[str, ...] = ()

    def phase(self, name: str) -> Phase:
        return next(phase for phase in self.phases if phase.name == name)


def looks_inline(text: str) -> bool:
    """Whether a project's ``buildspec`` is the buildspec itself rather than a file name in the source."""
    try:
        document = _load(text)
    except BuildspecError:
        return "\n" in text
    return isinstance(document, dict)


def parse(text: str) -> Buildspec:
    """A buildspec from its text (YAML, of which JSON is a part)."""
    document = _load(text)
    if not isinstance(document, dict):
        raise BuildspecError("the buildspec is not a mapping of sections")
    version = str(document.get("version", ""))
    if version not in ("0.2", "0.1"):
        raise BuildspecError(f"invalid buildspec version {version!r}: expected 0.2")
    if "batch" in document:
        raise BuildspecError("batch builds are not run by the embedded AWS")
    env = _mapping(document.get("env"), "env")
    shell = str(env.get("shell", "bash"))
    if shell not in LINUX_SHELLS:
        raise BuildspecError(f"env.shell {shell!r} is not a Linux shell (bash or sh)")
    exported = env.get("exported-variables") or []
    if not isinstance(exported, list) or not all(isinstance(n, str) and _NAME.match(n) for n in exported):
        raise BuildspecError("env.exported-variables must be a list of variable names")
    phases_section = _mapping(document.get("phases"), "phases")
    unknown = sorted(set(phases_section) - {key for key, _ in PHASES})
    if unknown:
        raise BuildspecError(f"unknown phase(s) {', '.join(unknown)}: phases are install, pre_build, build, "
                             "post_build")
    phases = tuple(_phase(key, name, phases_section.get(key)) for key, name in PHASES)
    artifacts = document.get("artifacts")
    return Buildspec(phases=phases, variables=_strings(env.get("variables"), "env.variables"),
                     parameter_store=_strings(env.get("parameter-store"), "env.parameter-store"),
                     secrets_manager=_strings(env.get("secrets-manager"), "env.secrets-manager"),
                     exported_variables=tuple(exported), shell=shell,
                     artifacts=artifacts if isinstance(artifacts, dict) and artifacts else None,
                     ignored=tuple(name for name in IGNORED_SECTIONS if name in document or name in env))


def _load(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        try:
            return json.loads(text)
        except ValueError:
            raise BuildspecError(f"the buildspec does not parse: {error}") from None


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BuildspecError(f"{where} must be a mapping")
    return value


def _strings(value: Any, where: str) -> dict[str, str]:
    mapping = _mapping(value, where)
    for name in mapping:
        if not isinstance(name, str) or not _NAME.match(name):
            raise BuildspecError(f"{where}: {name!r} is not a variable name")
    return {name: _scalar(item, f"{where}.{name}") for name, item in mapping.items()}


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise BuildspecError(f"{where} must be a single value")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _commands(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BuildspecError(f"{where} must be a list of commands")
    return tuple(_scalar(command, where) for command in value)


def _phase(key: str, name: str, value: Any) -> Phase:
    section = _mapping(value, f"phases.{key}")
    unknown = sorted(set(section) - {"commands", "finally", "on-failure", "runtime-versions", "run-as"})
    if unknown:
        raise BuildspecError(f"phases.{key}: unknown key(s) {', '.join(unknown)}")
    on_failure = str(section.get("on-failure", "ABORT")).upper()
    if on_failure not in ON_FAILURE:
        raise BuildspecError(f"phases.{key}.on-failure must be ABORT or CONTINUE, not {on_failure!r}")
    runtimes = section.get("runtime-versions")
    if runtimes is not None and key != "install":
        raise BuildspecError(f"runtime-versions belongs to the install phase, not {key}")
    return Phase(name=name, commands=_commands(section.get("commands"), f"phases.{key}.commands"),
                 finally_commands=_commands(section.get("finally"), f"phases.{key}.finally"), on_failure=on_failure,
                 runtime_versions=_strings(runtimes, "runtime-versions") if runtimes else {})
