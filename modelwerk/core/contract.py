"""Data contracts: what a use case's sensor files must look like.

A contract is declared per use case in ``sagemaker_pipelines/<folder>/contract.json`` and published by the data lake
stack as an SSM parameter, so the ingestion Lambda, the preparation job, the CDK catalog and the library all read the
same document. This module only parses and describes it; checking rows against it is ``modelwerk.core.ingest``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ColumnType = Literal["string", "integer", "double", "boolean", "timestamp"]
COLUMN_TYPES: tuple[str, ...] = ("string", "integer", "double", "boolean", "timestamp")

#: Glue/Athena type of each contract type (curated and raw tables).
GLUE_TYPES: dict[str, str] = {
    "string": "string",
    "integer": "bigint",
    "double": "double",
    "boolean": "boolean",
    "timestamp": "timestamp",
}

#: Columns the ingestion adds to every raw row (lineage), and the partition column of raw and curated tables.
INGESTED_AT = "_ingested_at"
SOURCE_KEY = "_source_key"
PARTITION_COLUMN = "dt"

_WINDOW = re.compile(r"^([1-9][0-9]*)(min|h|d)$")
_WINDOW_SECONDS = {"min": 60, "h": 3600, "d": 86400}


class ContractError(ValueError):
    """A contract document is malformed (unknown field, bad type, inconsistent key)."""


def _reject_unknown(kind: str, given: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ContractError(f"{kind} has unknown field(s) {unknown}; allowed: {sorted(allowed)}")


@dataclass(frozen=True)
class Column:
    """One column of a contract.

    ``required`` columns may not be empty; ``min``/``max`` bound numeric values (inclusive); ``allowed`` lists the
    only values a string may take; ``pattern`` is a regular expression a string must match in full; ``personal``
    columns are pseudonymized at ingestion and never reach a model.
    """

    name: str
    type: ColumnType
    required: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    personal: bool = False
    description: str = ""

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Column":
        _reject_unknown("column", doc, {f for f in cls.__dataclass_fields__})
        if "name" not in doc or "type" not in doc:
            raise ContractError(f"column needs 'name' and 'type': {doc}")
        if doc["type"] not in COLUMN_TYPES:
            raise ContractError(f"column {doc['name']!r}: type {doc['type']!r} is not one of {COLUMN_TYPES}")
        for flag in ("required", "personal"):
            if not isinstance(doc.get(flag, False), bool):
                raise ContractError(f"column {doc['name']!r}: {flag} must be true or false, not {doc[flag]!r}")
        for bound in ("min", "max"):
            value = doc.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ContractError(f"column {doc['name']!r}: {bound} must be a finite number, not {value!r}")
        if doc.get("min") is not None and doc.get("max") is not None and doc["min"] > doc["max"]:
            raise ContractError(f"column {doc['name']!r}: min {doc['min']} is above max {doc['max']}")
        allowed = doc.get("allowed")
        if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(v, str) for v in allowed)):
            raise ContractError(f"column {doc['name']!r}: allowed must be a list of strings, not {allowed!r}")
        column = cls(**{**doc, "allowed": tuple(allowed) if allowed is not None else None})
        if (column.min is not None or column.max is not None) and column.type not in ("integer", "double"):
            raise ContractError(f"column {column.name!r}: min/max apply to integer and double columns only")
        if (column.allowed or column.pattern) and column.type != "string":
            raise ContractError(f"column {column.name!r}: allowed/pattern apply to string columns only")
        if column.pattern:
            re.compile(column.pattern)
        return column

    def to_dict(self) -> dict[str, Any]:
        """Every field that differs from its default, so ``from_dict(to_dict())`` gives this column back.

        A field is left out only when it *is* its default: ``min: 0`` is a bound (``0 == False`` in Python, so a
        test of equality against the defaults would drop it), and so is ``max: 0.0``.
        """
        doc: dict[str, Any] = {"name": self.name, "type": self.type}
        for key in ("required", "min", "max", "allowed", "pattern", "personal", "description"):
            value = getattr(self, key)
            if value is None or (key in ("required", "personal") and value is False) or (key == "description"
                                                                                         and value == ""):
                continue
            doc[key] = list(value) if key == "allowed" else value
        return doc

    @property
    def glue_type(self) -> str:
        return GLUE_TYPES[self.type]


@dataclass(frozen=True)
class RollingFeatures:
    """Time-window statistics per asset that preparation adds to curated rows (e.g. 6-hour mean vibration)."""

    window: str
    columns: tuple[str, ...]
    stats: tuple[str, ...] = ("mean",)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "RollingFeatures":
        _reject_unknown("rolling", doc, {"window", "columns", "stats"})
        if not _WINDOW.match(str(doc.get("window", ""))):
            raise ContractError(f"rolling window {doc.get('window')!r} must look like '30min', '6h' or '1d'")
        stats = tuple(doc.get("stats", ("mean",)))
        if not set(stats) <= {"mean", "std", "min", "max"}:
            raise ContractError(f"rolling stats {stats} must be among mean, std, min, max")
        return cls(window=doc["window"], columns=tuple(doc["columns"]), stats=stats)

    @property
    def window_seconds(self) -> int:
        match = _WINDOW.match(self.window)
        assert match
        return int(match.group(1)) * _WINDOW_SECONDS[match.group(2)]

    def feature_name(self, column: str, stat: str) -> str:
        return f"{column}_{stat}_{self.window}"

    @property
    def feature_names(self) -> list[str]:
        return [self.feature_name(c, s) for c in self.columns for s in self.stats]


@dataclass(frozen=True)
class Contract:
    """The declared shape of one use case's data."""

    use_case: str
    task: Literal["classification", "regression"]
    label: str
    key: tuple[str, ...]
    timestamp: str
    asset: str
    columns: tuple[Column, ...]
    unknown_columns: Literal["strict", "lenient"] = "strict"
    rolling: RollingFeatures | None = None
    description: str = ""

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Contract":
        _reject_unknown("contract", doc, {f for f in cls.__dataclass_fields__})
        missing = [f for f in ("use_case", "task", "label", "key", "timestamp", "asset", "columns") if f not in doc]
        if missing:
            raise ContractError(f"contract is missing {missing}")
        columns = tuple(Column.from_dict(c) for c in doc["columns"])
        contract = cls(
            use_case=doc["use_case"],
            task=doc["task"],
            label=doc["label"],
            key=tuple(doc["key"]),
            timestamp=doc["timestamp"],
            asset=doc["asset"],
            columns=columns,
            unknown_columns=doc.get("unknown_columns", "strict"),
            rolling=RollingFeatures.from_dict(doc["rolling"]) if doc.get("rolling") else None,
            description=doc.get("description", ""),
        )
        contract._check()
        return contract

    @classmethod
    def from_json(cls, text: str) -> "Contract":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> "Contract":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def _check(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ContractError(f"{self.use_case}: duplicate column names")
        if self.task not in ("classification", "regression"):
            raise ContractError(f"{self.use_case}: task must be classification or regression")
        if self.unknown_columns not in ("strict", "lenient"):
            raise ContractError(f"{self.use_case}: unknown_columns must be strict or lenient")
        for role, name in [("label", self.label), ("timestamp", self.timestamp), ("asset", self.asset), *[("key", k) for k in self.key]]:
            if name not in names:
                raise ContractError(f"{self.use_case}: {role} column {name!r} is not a declared column")
        if self.column(self.timestamp).type != "timestamp":
            raise ContractError(f"{self.use_case}: the timestamp column must have type timestamp")
        for name in self.key:
            if not self.column(name).required:
                raise ContractError(f"{self.use_case}: key column {name!r} must be required")
        if self.rolling:
            for name in self.rolling.columns:
                if name not in names or self.column(name).type not in ("integer", "double"):
                    raise ContractError(f"{self.use_case}: rolling column {name!r} must be a numeric column")
        if any(c.personal and c.type != "string" for c in self.columns):
            raise ContractError(f"{self.use_case}: personal columns must be strings (they are pseudonymized)")

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "use_case": self.use_case,
            "task": self.task,
            "label": self.label,
            "key": list(self.key),
            "timestamp": self.timestamp,
            "asset": self.asset,
            "unknown_columns": self.unknown_columns,
            "columns": [c.to_dict() for c in self.columns],
        }
        if self.rolling:
            doc["rolling"] = {
                "window": self.rolling.window,
                "columns": list(self.rolling.columns),
                "stats": list(self.rolling.stats),
            }
        if self.description:
            doc["description"] = self.description
        return doc

    def to_json(self) -> str:
        """Compact JSON, small enough for an SSM parameter."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def personal_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.personal]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def input_schema(self) -> list[str]:
        """What a caller can send a model: the columns minus label, key/timestamp and personal data, in order."""
        excluded = {self.label, self.timestamp, *self.key, *self.personal_columns}
        return [c.name for c in self.columns if c.name not in excluded]

    @property
    def table_name(self) -> str:
        """Glue table name of this use case in every zone (Glue names allow no hyphens)."""
        return self.use_case.replace("-", "_")

    def raw_schema(self) -> list[tuple[str, str]]:
        """(name, Glue type) of raw rows: the contract's columns plus lineage, without the partition column."""
        return [(c.name, c.glue_type) for c in self.columns] + [(INGESTED_AT, "timestamp"), (SOURCE_KEY, "string")]

    def curated_schema(self) -> list[tuple[str, str]]:
        """(name, Glue type) of curated rows: raw rows plus the rolling features, without the partition column."""
        rolling = [(name, "double") for name in self.rolling.feature_names] if self.rolling else []
        return self.raw_schema() + rolling
