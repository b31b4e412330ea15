"""CodePipeline's variables in action configurations: ``#{namespace.name}`` resolved as an action starts.

Namespaces are ``codepipeline`` (``PipelineExecutionId``), ``variables`` (the pipeline-level variables of the
execution) and each action's ``Namespace`` (its output variables: a CodeBuild action's exported variables, a
Lambda's ``outputVariables``, a source action's revision). A reference to a variable that is not there fails the
action, as CodePipeline fails it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_REFERENCE = re.compile(r"#\{([A-Za-z0-9@\-_]+)\.([A-Za-z0-9@\-_.]+)\}")


class UnresolvedVariable(ValueError):
    """A ``#{...}`` that names no variable of the execution."""


def resolve(text: str, namespaces: Mapping[str, Mapping[str, str]]) -> str:
    """``text`` with every ``#{namespace.name}`` replaced by its value."""

    def value(match: re.Match[str]) -> str:
        namespace, name = match.group(1), match.group(2)
        found = namespaces.get(namespace, {}).get(name)
        if found is None:
            raise UnresolvedVariable(f"Unable to resolve variable '#{{{namespace}.{name}}}': no such variable in "
                                     "this execution (check the action's namespace and the variable's name)")
        return found

    return _REFERENCE.sub(value, text)


def resolve_configuration(configuration: Mapping[str, Any],
                          namespaces: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Every value of an action's configuration map, resolved (the map's values are strings, as the API keeps them)."""
    return {key: resolve(value if isinstance(value, str) else str(value), namespaces)
            for key, value in configuration.items()}
