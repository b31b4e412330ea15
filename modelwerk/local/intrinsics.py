"""CloudFormation intrinsic functions, resolved the way CloudFormation does, for what the embedded AWS lacks.

The local deployer creates some resources through the ordinary APIs instead of moto's CloudFormation; their
properties still hold ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``... This resolver turns them into values, given what is
already deployed.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Callable

SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")

#: ``(logical id, attribute or None for Ref) -> value``; raises KeyError when the resource is not deployed yet.
Lookup = Callable[[str, str | None], Any]


class Unresolvable(KeyError):
    """A reference names a resource that is not deployed (yet)."""


class Resolver:
    def __init__(self, *, account: str, region: str, stack_name: str, parameters: dict[str, Any], lookup: Lookup,
                 imports: Callable[[str], Any] | None = None):
        self.pseudo = {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/local",
            "AWS::NoValue": None,
        }
        self.parameters = parameters
        self.lookup = lookup
        self.imports = imports

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.lookup(name, None)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.lookup(logical, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self.resolve(parts))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Base64":
                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
            if key == "Fn::ImportValue":
                if self.imports is None:
                    raise Unresolvable("Fn::ImportValue")
                return self.imports(self.resolve(arg))
            if key == "Fn::GetAZs":
                region = self.resolve(arg) or self.pseudo["AWS::Region"]
                return [f"{region}{suffix}" for suffix in "abc"]
            if key == "Fn::If":
                raise Unresolvable("Fn::If needs template conditions, which the platform's templates do not use")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] not in self.pseudo:
                logical, attribute = name.split(".", 1)
                return str(self.lookup(logical, attribute))
            return str(self.ref(name))

        return SUB_VARIABLE.sub(replace, template)


def references(value: Any) -> set[str]:
    """Logical ids a property value refers to (Ref, GetAtt, Sub variables)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str) and not arg.startswith("AWS::"):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
            elif key == "Fn::Sub":
                template = arg if isinstance(arg, str) else arg[0]
                for name in SUB_VARIABLE.findall(template):
                    if not name.startswith("AWS::"):
                        found.add(name.split(".", 1)[0])
                if not isinstance(arg, str):
                    found |= references(arg[1])
                    found -= set(arg[1])
            else:
                found |= references(arg)
    return found


def substitute(value: Any, replace: Callable[[str, str | None], Any | None]) -> Any:
    """Copy of ``value`` with each Ref/GetAtt for which ``replace`` returns a value put as that literal."""
    if isinstance(value, list):
        return [substitute(v, replace) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref" and isinstance(arg, str):
            literal = replace(arg, None)
            if literal is not None:
                return literal
        if key == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            literal = replace(logical, attribute)
            if literal is not None:
                return literal
        if key == "Fn::Sub":
            template, variables = (arg, None) if isinstance(arg, str) else (arg[0], arg[1])

            def sub_replace(match: re.Match[str]) -> str:
                name = match.group(1)
                if variables and name in variables:
                    return match.group(0)
                logical, _, attribute = name.partition(".")
                literal = replace(logical, attribute or None)
                return str(literal) if literal is not None else match.group(0)

            template = SUB_VARIABLE.sub(sub_replace, template)
            return {"Fn::Sub": template if variables is None else [template, substitute(variables, replace)]}
    return {k: substitute(v, replace) for k, v in value.items()}
