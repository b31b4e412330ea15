"""Synthetic data for a use case: clean rows, realistic defects, and files in every landing format.

``modelwerk data generate`` calls :func:`generate_file`; notebooks and tests call :func:`generate`.

Where the rows come from
    A use case folder may hold a ``synthetic.py`` with ``generate(rows, rng, drift) -> pandas.DataFrame``: the use
    case's own, realistic generator (a pump fleet with failures, plants with weather). It is loaded by file path, so
    the library never imports ``sagemaker_pipelines``. A folder without one gets rows generated from its contract
    (:func:`generate_from_contract`): valid values, but no structure to learn.

Determinism
    ``seed`` feeds a ``numpy.random.SeedSequence`` that spawns one stream for the clean rows and one for the
    defects. The same arguments give the same frame and byte-identical files; ``bad_rows`` changes which rows are
    damaged, never the clean rows underneath.

Defects
    :func:`inject_bad_rows` damages whole rows, one defect each, named like the ingestion's quarantine reasons
    (``docs/adr/0001-data-lake-layout.md``): ``type:<col>``, ``out_of_range:<col>``, ``not_allowed:<col>``,
    ``pattern:<col>``, ``missing_required:<col>`` and ``duplicate_key``. :func:`write` can also cut the last line of a
    CSV file (``malformed_row``), as an interrupted upload would.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import re
import re._parser as _sre
import string
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from modelwerk.core.contract import Column, Contract
from modelwerk.errors import ValidationError
from modelwerk.settings import UseCaseConfig

logger = logging.getLogger(__name__)

#: Defects :func:`inject_bad_rows` can put into a row, in the order summaries list them.
DEFECT_KINDS: tuple[str, ...] = ("type", "out_of_range", "not_allowed", "pattern", "missing_required", "duplicate_key")
#: The defect :func:`write` adds when it cuts the last line of a CSV file.
MALFORMED_ROW = "malformed_row"
#: File formats by extension.
FORMATS: dict[str, str] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
#: File name of a use case's own generator, inside its folder.
GENERATOR_FILE = "synthetic.py"

#: Text that is not a number, as spreadsheets and loggers write it. None of it is a pandas default NA string, so a
#: reader that keeps NA detection on still sees text, not a missing value.
_NOT_A_NUMBER = ("#VALUE!", "ERR", "--", "12,5", "sensor fault", "?")
_NOT_A_TIMESTAMP = ("not a date", "2025-13-01T00:00:00Z", "25:61", "#VALUE!")
_NOT_A_BOOLEAN = ("maybe", "yes please", "#VALUE!")

_GENERIC_START = np.datetime64("2025-01-01T00:00:00", "us")
_GENERIC_ROWS_PER_ASSET = 1000
_FIRST_NAMES = ("anna", "ben", "clara", "david", "emma", "felix", "greta", "hannah", "jonas", "lea", "max", "nora")
_LAST_NAMES = ("bauer", "fischer", "koch", "meyer", "richter", "schmidt", "schulz", "wagner", "weber", "wolf")


# --------------------------------------------------------------------------------------------------------------------
# Generating



# -- building blocks for the use cases' generators ------------------------------------------------------------------
def smooth_noise(rng: np.random.Generator, steps: int, width: int, every: int) -> np.ndarray:
    """Unit-variance noise of shape (steps, width) that changes smoothly over about ``every`` steps."""
    knots = rng.standard_normal((steps // every + 2, width))
    position = np.arange(steps) / every
    index = position.astype(np.int64)
    weight = ((1.0 - np.cos(np.pi * (position - index))) / 2.0)[:, None]
    mixed = knots[index] * (1.0 - weight) + knots[index + 1] * weight
    return mixed / np.sqrt((1.0 - weight) ** 2 + weight**2)


def reported(values: np.ndarray, decimals: int) -> np.ndarray:
    """Rounded as a sensor or station reports, without negative zeros."""
    return np.round(values, decimals) + 0.0


def generate(
    use_case: UseCaseConfig,
    rows: int,
    seed: int = 0,
    drift: float = 0.0,
    bad_rows: float = 0.0,
) -> pd.DataFrame:
    """Synthetic rows of a use case: its contract's columns, in order.

    Parameters
    ----------
    use_case : UseCaseConfig
        The use case (its folder and contract), e.g. ``modelwerk.settings.load().use_case("pump-health")``.
    rows : int
        Number of rows.
    seed : int
        Seed of every random choice; the same arguments give the same frame.
    drift : float
        0 = the reference distribution; 1 = several input features clearly shifted (what shifts is the use case's
        choice, see its ``synthetic.py``); values in between scale the shift.
    bad_rows : float
        Fraction of rows, in [0, 1], that :func:`inject_bad_rows` damages. ``frame.attrs["bad_rows"]`` counts them by
        kind.

    Returns
    -------
    pandas.DataFrame
        Clean rows have typed columns (timestamps ``datetime64[us, UTC]``); a column that received text where a
        number or timestamp belongs holds Python objects.

    Example
    -------
    >>> from modelwerk import settings
    >>> pumps = generate(settings.load().use_case("pump-health"), rows=1_000, seed=7)
    >>> pumps.columns[:3].tolist(), len(pumps)
    (['pump_id', 'site', 'timestamp'], 1000)
    """
    frame, reasons = _generate(use_case, rows, seed, drift, bad_rows)
    frame.attrs["bad_rows"] = _count(reasons)
    return frame


def generate_file(
    use_case: UseCaseConfig,
    path: str | Path,
    *,
    rows: int,
    seed: int = 0,
    drift: float = 0.0,
    bad_rows: float = 0.0,
    truncate_last_line: bool | None = None,
) -> dict[str, Any]:
    """Generate rows (see :func:`generate`) and write them to ``path`` (see :func:`write`).

    ``truncate_last_line`` defaults to: a CSV file with ``bad_rows`` > 0 (and at least one row) gets its last line cut,
    so a damaged CSV file exercises every row-level quarantine reason, ``malformed_row`` included. Pass ``False`` to
    keep the last line whole, ``True`` to cut it even without other defects.

    Returns
    -------
    dict
        What the command line prints: ``use_case``, ``path``, ``format``, ``rows`` (written, the cut one included),
        ``bytes``, ``seed``, ``drift``, ``generator`` (``synthetic.py`` or ``contract``), ``bad_rows`` (damaged rows)
        and ``defects`` (damaged rows by kind), ``truncated_last_line``.

    Example
    -------
    >>> import tempfile
    >>> from modelwerk import settings
    >>> energy = settings.load().use_case("energy-forecast")
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     summary = generate_file(energy, f"{folder}/e.csv", rows=500, bad_rows=0.1)
    >>> summary["rows"], summary["bad_rows"], summary["defects"]["malformed_row"]
    (500, 51, 1)
    """
    path = Path(path)
    file_format = _format_of(path)
    truncate = (file_format == "csv" and bad_rows > 0) if truncate_last_line is None else truncate_last_line
    truncate = truncate and rows > 0
    frame, reasons = _generate(use_case, rows, seed, drift, bad_rows)
    written = write(frame, path, truncate_last_line=truncate)
    if written["truncated_last_line"]:
        last = frame.index[-1]
        reasons = pd.concat([reasons.drop(last, errors="ignore"), pd.Series([MALFORMED_ROW], index=[last])])
    defects = _count(reasons)
    return {
        "use_case": use_case.name,
        "path": str(path),
        "format": file_format,
        "rows": written["rows"],
        "bytes": written["bytes"],
        "seed": seed,
        "drift": drift,
        "generator": GENERATOR_FILE if _generator_file(use_case.folder).is_file() else "contract",
        "bad_rows": sum(defects.values()),
        "defects": defects,
        "truncated_last_line": written["truncated_last_line"],
    }


def _generate(
    use_case: UseCaseConfig, rows: int, seed: int, drift: float, bad_rows: float
) -> tuple[pd.DataFrame, pd.Series]:
    _check_arguments(rows, seed, drift, bad_rows)
    clean_rng, defect_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    contract = use_case.contract
    generator = load_generator(use_case.folder)
    if generator is None or rows == 0:
        if generator is None:
            logger.info(
                "%s: no %s in %s; generating rows from the contract", use_case.name, GENERATOR_FILE, use_case.folder
            )
        frame = generate_from_contract(contract, rows, clean_rng, drift)
    else:
        frame = generator(rows, clean_rng, drift)
        _check_generated(frame, contract, rows, _generator_file(use_case.folder))
    return inject_bad_rows(frame, contract, bad_rows, defect_rng)


def _check_arguments(rows: int, seed: int, drift: float, bad_rows: float) -> None:
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0:
        raise ValidationError(f"rows must be a whole number >= 0, got {rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValidationError(f"seed must be a whole number >= 0, got {seed!r}")
    if not (isinstance(drift, (int, float)) and math.isfinite(drift) and drift >= 0):
        raise ValidationError(f"drift must be a number >= 0 (0 = reference, 1 = clearly shifted), got {drift!r}")
    _check_fraction(bad_rows)


def _check_fraction(fraction: float) -> None:
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0):
        raise ValidationError(f"the fraction of bad rows must be between 0 and 1, got {fraction!r}")


def _generator_file(folder: Path) -> Path:
    return Path(folder) / GENERATOR_FILE


def load_generator(folder: str | Path) -> Callable[[int, np.random.Generator, float], pd.DataFrame] | None:
    """The ``generate`` function of ``<folder>/synthetic.py``, or None when the folder has no such file.

    The file is loaded by path under a module name unique to it, so two use cases' generators never collide and
    ``sagemaker_pipelines`` is never imported as a package.
    """
    path = _generator_file(Path(folder)).resolve()
    if not path.is_file():
        return None
    name = "_modelwerk_synthetic_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValidationError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(name, None)
        raise
    function = getattr(module, "generate", None)
    if not callable(function):
        raise ValidationError(f"{path} must define generate(rows, rng, drift) -> pandas.DataFrame")
    return function


def _check_generated(frame: Any, contract: Contract, rows: int, source: Path) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"{source}: generate() returned {type(frame).__name__}, not a pandas.DataFrame")
    if list(frame.columns) != contract.column_names:
        raise ValidationError(
            f"{source}: generate() returned columns {list(frame.columns)}; "
            f"the contract declares {contract.column_names} (same names, same order)"
        )
    if len(frame) != rows:
        raise ValidationError(f"{source}: generate() returned {len(frame)} rows, {rows} were asked for")


# --------------------------------------------------------------------------------------------------------------------
# Rows from the contract alone


def generate_from_contract(contract: Contract, rows: int, rng: np.random.Generator, drift: float = 0.0) -> pd.DataFrame:
    """Valid rows built from the contract's rules only: what a use case without a ``synthetic.py`` gets.

    Assets (from the asset column's pattern, allowed values or range) report hourly from 2025-01-01 00:00 UTC, about
    1,000 readings each, rows ordered by time then asset, so (asset, timestamp) is unique. Numbers are uniform within
    min/max (0 to 100 where the contract sets no bound); ``drift`` moves every numeric input (not the label) up by a
    quarter of its range per unit, clipped to the range. Strings take an allowed value, a value matching the pattern,
    a fake e-mail address or name when personal, else ``<column>-<number>`` (the row number for key columns).
    """
    asset_column = contract.column(contract.asset)
    pool = _distinct_values(asset_column, max(1, -(-rows // _GENERIC_ROWS_PER_ASSET)), rng) if rows else []
    assets = max(1, len(pool))
    steps = -(-rows // assets)
    step = np.repeat(np.arange(steps, dtype=np.int64), assets)[:rows]
    asset = np.tile(np.arange(assets, dtype=np.int64), steps)[:rows]
    stamps = _GENERIC_START + step * np.timedelta64(1, "h")
    columns: dict[str, Any] = {}
    for column in contract.columns:
        if column.name == contract.asset and pool:
            columns[column.name] = np.array(pool, dtype=object)[asset]
        elif column.name == contract.timestamp:
            columns[column.name] = pd.DatetimeIndex(stamps).tz_localize("UTC")
        else:
            shift = drift if column.name != contract.label else 0.0
            unique = column.name in contract.key
            columns[column.name] = _column_values(column, rows, rng, shift, stamps, unique)
    return pd.DataFrame(columns, columns=contract.column_names)


def _bounds(column: Column) -> tuple[float, float]:
    low, high = column.min, column.max
    if low is None and high is None:
        return 0.0, 100.0
    if low is None:
        return high - 100.0, high
    if high is None:
        return low, low + 100.0
    return low, high


def _column_values(
    column: Column, rows: int, rng: np.random.Generator, drift: float, stamps: np.ndarray, unique: bool
) -> Any:
    if column.type == "timestamp":
        offset = rng.integers(0, 3600, rows) * np.timedelta64(1, "s")
        return pd.DatetimeIndex(stamps + offset).tz_localize("UTC")
    if column.type == "boolean":
        return rng.random(rows) < 0.5
    if column.type in ("integer", "double"):
        low, high = _bounds(column)
        span = high - low
        if column.type == "integer":
            low_int, high_int = math.ceil(low), math.floor(high)
            values = rng.integers(low_int, high_int + 1, rows)
            return np.clip(values + round(0.25 * drift * span), low_int, high_int)
        values = rng.uniform(low, high, rows) + 0.25 * drift * span
        return np.clip(np.round(values, 3), low, high) + 0.0  # no negative zeros
    # string
    if column.allowed:
        return np.array(column.allowed, dtype=object)[rng.integers(0, len(column.allowed), rows)]
    if column.pattern:
        pool = _distinct_values(column, min(max(rows, 1), 200), rng)
        return np.array(pool, dtype=object)[rng.integers(0, len(pool), rows)]
    if unique:
        return np.char.add(f"{column.name}-", np.char.zfill(np.arange(rows).astype(str), 7)).astype(object)
    if column.personal:
        first = np.array(_FIRST_NAMES, dtype=object)[rng.integers(0, len(_FIRST_NAMES), rows)]
        last = np.array(_LAST_NAMES, dtype=object)[rng.integers(0, len(_LAST_NAMES), rows)]
        if "mail" in column.name.lower():
            return first + "." + last + "@example.com"
        return np.char.title((first + " " + last).astype(str)).astype(object)
    return np.char.add(f"{column.name}-", rng.integers(0, 1000, rows).astype(str)).astype(object)


def _distinct_values(column: Column, count: int, rng: np.random.Generator) -> list[Any]:
    """Up to ``count`` distinct valid values of a column (fewer when the column has fewer)."""
    if column.type == "string" and column.allowed:
        return list(column.allowed[:count])
    if column.type == "string" and column.pattern:
        found: dict[str, None] = {}
        for _ in range(20 * count):
            found.setdefault(_sample_pattern(column.pattern, rng), None)
            if len(found) == count:
                break
        return sorted(found)
    if column.type == "string":
        width = max(3, len(str(count)))
        return [f"{column.name}-{n:0{width}d}" for n in range(1, count + 1)]
    if column.type == "integer":
        low, high = _bounds(column)
        first = math.ceil(low)
        return list(range(first, min(first + count, math.floor(high) + 1)))
    return []  # doubles, booleans, timestamps as assets: no distinct pool; values come from the column's rules


# Regular-expression sampling walks the standard library's own parse tree (``re._parser``), the one parser that reads
# patterns exactly as ``re`` does.

_ALPHABET = string.ascii_letters + string.digits + "-_.:/@ "
_CATEGORIES: dict[Any, Callable[[str], bool]] = {
    _sre.CATEGORY_DIGIT: str.isdigit,
    _sre.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    _sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    _sre.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
    _sre.CATEGORY_SPACE: str.isspace,
    _sre.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
}


def _sample_pattern(pattern: str, rng: np.random.Generator) -> str:
    """A string that ``re.fullmatch(pattern, ...)`` accepts, for the everyday subset of regular expressions."""
    value = _sample_nodes(_sre.parse(pattern), rng, pattern)
    if not re.fullmatch(pattern, value):
        raise _unsupported(pattern)
    return value


def _unsupported(pattern: str, detail: str = "") -> ValidationError:
    return ValidationError(
        f"cannot generate values for the pattern {pattern!r}{detail}; add a {GENERATOR_FILE} to the use case folder"
    )


def _sample_nodes(nodes: Any, rng: np.random.Generator, pattern: str) -> str:
    out = []
    for op, argument in nodes:
        if op == _sre.LITERAL:
            out.append(chr(argument))
        elif op == _sre.ANY:
            out.append(_ALPHABET[rng.integers(0, 62)])
        elif op in (_sre.IN, _sre.NOT_LITERAL):
            items = argument if op == _sre.IN else [(_sre.NEGATE, None), (_sre.LITERAL, argument)]
            choices = [c for c in _class_alphabet(items) if _in_class(items, c)]
            if not choices:
                raise _unsupported(pattern)
            out.append(choices[rng.integers(0, len(choices))])
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            low, high, sub = argument
            high = low + 3 if high == _sre.MAXREPEAT else min(high, low + 3)
            out.extend(_sample_nodes(sub, rng, pattern) for _ in range(rng.integers(low, high + 1)))
        elif op == _sre.SUBPATTERN:
            out.append(_sample_nodes(argument[-1], rng, pattern))
        elif op == _sre.BRANCH:
            branches = argument[1]
            out.append(_sample_nodes(branches[rng.integers(0, len(branches))], rng, pattern))
        elif op == _sre.AT:
            continue
        else:
            raise _unsupported(pattern, f" ({op})")
    return "".join(out)


def _class_alphabet(items: Any) -> list[str]:
    extra = []
    for op, argument in items:
        if op == _sre.LITERAL:
            extra.append(chr(argument))
        elif op == _sre.RANGE:
            extra.extend(chr(c) for c in range(argument[0], min(argument[1], argument[0] + 64) + 1))
    return sorted(set(_ALPHABET) | set(extra))


def _in_class(items: Any, char: str) -> bool:
    negate = bool(items) and items[0][0] == _sre.NEGATE
    hit = False
    for op, argument in items:
        if op == _sre.LITERAL:
            hit |= char == chr(argument)
        elif op == _sre.RANGE:
            hit |= argument[0] <= ord(char) <= argument[1]
        elif op == _sre.CATEGORY:
            hit |= _CATEGORIES.get(argument, lambda c: False)(char)
    return hit != negate


# --------------------------------------------------------------------------------------------------------------------
# Defects


def inject_bad_rows(
    frame: pd.DataFrame, contract: Contract, fraction: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.Series]:
    """Damage ``round(fraction * len(frame))`` distinct rows, one defect each, the way real files go wrong.

    The kind of each defect is drawn uniformly among those the contract makes possible, then a column among those it
    applies to:

    - ``type``: text where a number, timestamp or boolean belongs (``#VALUE!``, ``12,5``, ``2025-13-01T00:00:00Z``);
    - ``out_of_range``: a number beyond ``min``/``max`` (by at least 1, or a whole number for integers);
    - ``not_allowed``: a category outside ``allowed`` (upper-cased, cut short, ``UNKNOWN``);
    - ``pattern``: an id that breaks the pattern (lower-cased, dash dropped, a character appended);
    - ``missing_required``: an empty required value;
    - ``duplicate_key``: the key of an earlier, undamaged row (the rest of the row is its own).

    Parameters
    ----------
    frame : pandas.DataFrame
        Clean rows with the contract's columns; not modified.
    contract : Contract
        The rules the defects break.
    fraction : float
        Share of rows to damage, in [0, 1].
    rng : numpy.random.Generator
        Source of every choice.

    Returns
    -------
    (pandas.DataFrame, pandas.Series)
        The damaged copy, and per damaged row (by index label, in row order) the quarantine reason the ingestion is
        expected to give it (``type:vibration_rms``, ``duplicate_key``, ...). A column that received text holds Python
        objects, a timestamp column that did holds ISO strings; an integer or boolean column with an empty value
        becomes nullable (``Int64``, ``boolean``).
    """
    _check_fraction(fraction)
    rows = len(frame)
    count = int(fraction * rows + 0.5)
    targets = _defect_targets(contract, frame)
    if count == 0 or not targets:
        return frame.copy(), pd.Series([], index=frame.index[:0], dtype=object, name="_reason")
    kinds = list(targets)
    positions = np.sort(rng.choice(rows, count, replace=False))
    kind = np.array(kinds, dtype=object)[rng.integers(0, len(kinds), count)]

    # A duplicate copies the key of an undamaged row before it; a row with none before it gets another kind.
    donors = np.zeros(count, dtype=np.int64)
    duplicate = kind == "duplicate_key"
    if duplicate.any():
        undamaged = np.setdiff1d(np.arange(rows), positions, assume_unique=True)
        earlier = np.searchsorted(undamaged, positions[duplicate])
        pick = np.minimum((rng.random(len(earlier)) * earlier).astype(np.int64), max(len(undamaged) - 1, 0))
        donors[duplicate] = np.where(earlier > 0, undamaged[pick] if len(undamaged) else 0, 0)
        orphans = np.flatnonzero(duplicate)[earlier == 0]
        others = [k for k in kinds if k != "duplicate_key"]  # missing_required at least: key columns are required
        kind[orphans] = np.array(others, dtype=object)[rng.integers(0, len(others), len(orphans))]
        duplicate = kind == "duplicate_key"

    columns = {name: _Editable(frame[name]) for name in frame.columns}
    reasons = np.empty(count, dtype=object)
    for name in kinds:
        chosen = np.flatnonzero(kind == name)
        if name == "duplicate_key" or len(chosen) == 0:
            continue
        candidates = targets[name]
        picked = np.array(candidates, dtype=object)[rng.integers(0, len(candidates), len(chosen))]
        for column_name in candidates:
            where = chosen[picked == column_name]
            if len(where):
                _damage(name, contract.column(column_name), columns[column_name], positions[where], rng)
                reasons[where] = f"{name}:{column_name}"
    if duplicate.any():
        for key in contract.key:
            columns[key].copy_rows(donors[duplicate], positions[duplicate])
        reasons[duplicate] = "duplicate_key"

    damaged = pd.DataFrame(
        {name: column.series(frame.index) for name, column in columns.items()}, columns=frame.columns
    )
    damaged.attrs = dict(frame.attrs)
    return damaged, pd.Series(reasons, index=frame.index[positions], dtype=object, name="_reason")


def _defect_targets(contract: Contract, frame: pd.DataFrame) -> dict[str, list[str]]:
    """Columns each kind of defect can hit under this contract (kinds with no column left out)."""
    targets: dict[str, list[str]] = {
        "type": [c.name for c in contract.columns if c.type != "string"],
        "out_of_range": [
            c.name for c in contract.columns
            if c.type in ("integer", "double") and (c.min is not None or c.max is not None)
        ],
        "not_allowed": [c.name for c in contract.columns if c.type == "string" and c.allowed],
        "pattern": [
            c.name for c in contract.columns
            if c.type == "string" and c.pattern and not c.allowed and _breakable(c.pattern)
        ],
        "missing_required": list(contract.required_columns),
        "duplicate_key": list(contract.key) if len(frame) > 1 else [],
    }
    return {kind: columns for kind, columns in targets.items() if columns}


_PATTERN_PROBES = ("?", "#", "", " x ", "\u00e4\u00e4\u00e4")


def _breakable(pattern: str) -> bool:
    return any(not re.fullmatch(pattern, probe) for probe in _PATTERN_PROBES if probe)


class _Editable:
    """One column while defects go in: values, a missing mask, and whether it has turned into Python objects."""

    def __init__(self, series: pd.Series) -> None:
        self.original = series
        self.dtype = series.dtype
        self.is_timestamp = pd.api.types.is_datetime64_any_dtype(series.dtype)
        self.values: np.ndarray | None = None
        self.missing: np.ndarray | None = None
        self.objects = False  # values are Python objects
        self.converted = False  # ... because text went into a typed column

    def _load(self) -> np.ndarray:
        if self.values is None:
            series = self.original
            if self.is_timestamp:
                self.values = series.to_numpy(dtype="datetime64[us]", copy=True)
            elif isinstance(series.dtype, np.dtype) and series.dtype.kind in "biuf":
                self.values = series.to_numpy(copy=True)
            else:
                self.values = series.to_numpy(dtype=object, copy=True)
                self.objects = True
            self.missing = np.zeros(len(series), dtype=bool)
        return self.values

    def current(self, positions: np.ndarray) -> np.ndarray:
        return self._load()[positions]

    def as_objects(self) -> None:
        """Let the column take text: timestamps become ISO strings, numbers Python numbers."""
        values = self._load()
        if self.objects:
            return
        if self.is_timestamp:
            self.values = _iso(values)
        else:
            self.values = values.astype(object)
            self.values[self.missing] = None
        self.objects = self.converted = True

    def set(self, positions: np.ndarray, values: Any) -> None:
        self._load()[positions] = values
        self.missing[positions] = False

    def clear(self, positions: np.ndarray) -> None:
        values = self._load()
        if self.objects:
            values[positions] = None
        elif self.is_timestamp:
            values[positions] = np.datetime64("NaT")
        elif values.dtype.kind == "f":
            values[positions] = np.nan
        self.missing[positions] = True

    def copy_rows(self, source: np.ndarray, target: np.ndarray) -> None:
        values = self._load()
        values[target] = values[source]
        self.missing[target] = self.missing[source]

    def series(self, index: pd.Index) -> pd.Series:
        if self.values is None:
            return self.original
        values, missing = self.values, self.missing
        if self.objects:
            return pd.Series(values, index=index, dtype=object if self.converted else None, name=self.original.name)
        if self.is_timestamp:
            stamps = pd.DatetimeIndex(values)
            tz = getattr(self.dtype, "tz", None)
            return pd.Series(stamps.tz_localize(tz) if tz else stamps, index=index, name=self.original.name)
        if missing.any() and values.dtype.kind in "iub":
            nullable = pd.arrays.BooleanArray if values.dtype.kind == "b" else pd.arrays.IntegerArray
            return pd.Series(nullable(values, missing), index=index, name=self.original.name)
        return pd.Series(values, index=index, name=self.original.name)


def _damage(kind: str, column: Column, editable: _Editable, positions: np.ndarray, rng: np.random.Generator) -> None:
    n = len(positions)
    if kind == "type":
        editable.as_objects()
        words = {"timestamp": _NOT_A_TIMESTAMP, "boolean": _NOT_A_BOOLEAN}.get(column.type, _NOT_A_NUMBER)
        editable.set(positions, np.array(words, dtype=object)[rng.integers(0, len(words), n)])
    elif kind == "out_of_range":
        low, high = column.min, column.max
        below = rng.random(n) < 0.5 if low is not None and high is not None else np.full(n, high is None)
        if column.type == "integer":
            step = rng.integers(1, 10, n)
            values = np.where(below, math.ceil(low or 0) - step, math.floor(high or 0) + step).astype(np.int64)
        else:
            span = (high - low) if low is not None and high is not None else 100.0
            step = np.maximum(np.round(span * rng.uniform(0.05, 1.0, n), 2), 1.0)
            values = np.where(below, (low or 0.0) - step, (high or 0.0) + step)
        editable.set(positions, values.astype(object) if editable.objects else values)
    elif kind == "not_allowed":
        allowed = set(column.allowed or ())
        editable.set(positions, _pick(editable.current(positions), rng, lambda v: v not in allowed, _category_typos))
    elif kind == "pattern":
        pattern = re.compile(column.pattern or "")
        editable.set(positions, _pick(editable.current(positions), rng, lambda v: not pattern.fullmatch(v), _id_typos))
    elif kind == "missing_required":
        editable.clear(positions)


def _category_typos(value: str) -> list[str]:
    return [value.upper(), value[:-1], value.replace("-", "_"), "UNKNOWN", "n.a."]


def _id_typos(value: str) -> list[str]:
    return [value.lower(), value.replace("-", ""), value + "X", "#" + value, value[:-1]]


def _pick(
    current: np.ndarray, rng: np.random.Generator, wrong: Callable[[str], bool], typos: Callable[[str], list[str]]
) -> np.ndarray:
    """Per value, a random one of its typos that breaks the rule, else of the probes (damaged rows only)."""
    out = np.empty(len(current), dtype=object)
    for i, value in enumerate(current):
        text = value if isinstance(value, str) and value else "x"
        choices = [t for t in dict.fromkeys(typos(text)) if t and wrong(t)]
        choices = choices or [t for t in _PATTERN_PROBES if t and wrong(t)]
        out[i] = choices[rng.integers(0, len(choices))]
    return out


def _count(reasons: pd.Series) -> dict[str, int]:
    kinds = reasons.astype(str).str.split(":", n=1).str[0].value_counts()
    order = [*DEFECT_KINDS, MALFORMED_ROW]
    return {kind: int(kinds[kind]) for kind in order if kind in kinds}


# --------------------------------------------------------------------------------------------------------------------
# Files


def write(frame: pd.DataFrame, path: str | Path, *, truncate_last_line: bool = False) -> dict[str, Any]:
    """Write rows in the format the extension names, as a landing upload would look.

    ``.csv``: a header, no index, comma-separated, ``\\n`` line ends, timestamps ``2025-01-06T00:10:00Z``, empty fields
    for missing values. ``.jsonl`` / ``.ndjson``: one JSON object per line, same timestamps, ``null`` for missing.
    ``.parquet``: typed columns (timestamps ``timestamp[us, UTC]``); a column holding text among numbers is written as
    strings.

    ``truncate_last_line`` cuts the last record of a CSV file about halfway, at least one separator short, and drops
    the final line end: an upload interrupted mid-file. The ingestion quarantines that one row as ``malformed_row``
    and keeps the others. JSON Lines and Parquet files, and a CSV file without data rows, are written whole (the
    summary says so), so a caller can pass ``truncate_last_line=bad_rows > 0`` whatever the format.

    Returns
    -------
    dict
        ``path``, ``format``, ``rows`` (rows written, a cut one included), ``bytes``, ``truncated_last_line``.
    """
    path = Path(path)
    file_format = _format_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "csv":
        _text_frame(frame).to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
    elif file_format == "jsonl":
        _text_frame(frame).to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        _parquet_frame(frame).to_parquet(path, index=False, engine="pyarrow")
    truncated = bool(truncate_last_line and file_format == "csv" and len(frame) and _truncate_last_line(path))
    return {
        "path": str(path),
        "format": file_format,
        "rows": len(frame),
        "bytes": path.stat().st_size,
        "truncated_last_line": truncated,
    }


def _format_of(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValidationError(f"{path.name}: choose a file ending in one of {sorted(FORMATS)}") from None


def _iso(values: np.ndarray) -> np.ndarray:
    """Timestamps (datetime64, UTC) as ISO strings ending in Z, None where missing; seconds unless finer is needed."""
    stamps = values.astype("datetime64[us]")
    missing = np.isnat(stamps)
    whole = (stamps[~missing].astype(np.int64) % 1_000_000 == 0).all()
    text = np.char.add(np.datetime_as_string(stamps, unit="s" if whole else "us"), "Z").astype(object)
    text[missing] = None
    return text


def _text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as ISO strings; everything else as is (text writers format numbers themselves)."""
    converted = {
        name: _iso(frame[name].to_numpy(dtype="datetime64[us]"))
        for name in frame.columns
        if pd.api.types.is_datetime64_any_dtype(frame[name].dtype)
    }
    return frame.assign(**converted) if converted else frame


def _parquet_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix text with numbers become string columns, the way a typed export would hold them."""
    converted = {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype == object:
            present = series.notna()
            if not series[present].map(type).eq(str).all():
                converted[name] = series.astype(str).where(present, None)
    return frame.assign(**converted) if converted else frame


def _truncate_last_line(path: Path) -> bool:
    with path.open("r+b") as handle:
        size = handle.seek(0, 2)
        tail_start = max(0, size - (1 << 16))
        handle.seek(tail_start)
        tail = handle.read()
        body = tail.rstrip(b"\n")
        start = body.rfind(b"\n") + 1
        if start == 0 and tail_start == 0:
            return False  # the header is the only line
        line = body[start:]
        cut = len(line) // 2
        if b"," in line and b"," not in line[cut:]:
            cut = line.rfind(b",")
        handle.truncate(tail_start + start + cut)
    return True
