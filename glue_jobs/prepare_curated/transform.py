"""Raw rows to curated rows: types, deduplication, rolling features per asset (plain PySpark, no I/O).

A pure function of DataFrames, so Glue, the local runtime, the tests and the benchmark run the same code. It uses
only APIs that Spark 3.5 (Glue 5) and Spark 4.x both have; SQL functions whose Python wrappers are newer than 3.5
(``try_cast``, ``unix_micros``) go through ``F.expr``.

Rules (ADR 0001):

- types: every contract column cast to its contract type (``try_cast``: a value an older file cannot convert
  becomes null instead of failing the job under ANSI mode); a column an older file lacks is null.
- ``dt``: UTC date of the contract's timestamp (``YYYY-MM-DD``), computed without the session time zone; rows
  without a timestamp belong to no partition and are left out.
- dedupe: one row per contract key; the latest ``_ingested_at`` wins, ties go to the larger ``_source_key``, and
  any remaining tie to the larger values of the other columns, so the result never depends on the input order.
- rolling features: per asset, for each rolling column and stat, the statistic over the asset's readings whose
  timestamp lies in ``(t - window, t]`` (the window ends at the row, inclusive; the same frame as pandas'
  ``rolling("6h")``). ``std`` is the sample standard deviation, null for a single reading. Nulls are skipped.
- incremental: with ``partitions`` given, rows of ``context_partitions`` (the day(s) before) take part in the
  windows but only rows of ``partitions`` are returned.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from modelwerk.core.contract import INGESTED_AT, PARTITION_COLUMN, SOURCE_KEY, Contract

_MICROS_PER_DAY = 86_400_000_000
_STATS = {"mean": F.avg, "std": F.stddev_samp, "min": F.min, "max": F.max}
_RANK = "__modelwerk_rank"
_MICROS = "__modelwerk_micros"


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def context_days(contract: Contract) -> int:
    """How many days before a touched partition the rolling windows reach into (0 without rolling features)."""
    if not contract.rolling:
        return 0
    return max(1, math.ceil(contract.rolling.window_seconds / 86_400))


def context_partitions(partitions: Iterable[str], contract: Contract) -> list[str]:
    """The partitions read as context only: the day(s) before each touched one, minus the touched ones."""
    touched = set(partitions)
    days = context_days(contract)
    context = {
        (_dt.date.fromisoformat(p) - _dt.timedelta(days=offset)).isoformat()
        for p in touched
        for offset in range(1, days + 1)
    }
    return sorted(context - touched)


def affected_partitions(touched: Iterable[str], existing: Iterable[str], contract: Contract) -> list[str]:
    """The partitions to recompute when ``touched`` changed: those, and the existing days after each whose rolling
    windows reach back into a touched day (late data for day D changes the first hours of D+1's features)."""
    touched = set(touched)
    days = context_days(contract)
    following = {
        (_dt.date.fromisoformat(p) + _dt.timedelta(days=offset)).isoformat()
        for p in touched
        for offset in range(1, days + 1)
    }
    return sorted(touched | (following & set(existing)))


def utc_date(timestamp: str) -> Column:
    """``YYYY-MM-DD`` of a timestamp column in UTC, whatever the session time zone."""
    days = f"CAST(floor(unix_micros({_quoted(timestamp)}) / {_MICROS_PER_DAY}) AS INT)"
    return F.expr(f"CAST(date_add(DATE'1970-01-01', {days}) AS STRING)")


def typed(raw: DataFrame, contract: Contract) -> DataFrame:
    """Raw rows with exactly the raw schema's columns in contract types, plus ``dt``; rows without timestamp dropped."""
    present = {field.name: field.dataType.simpleString() for field in raw.schema.fields}
    columns: list[Column] = []
    for name, type_ in contract.raw_schema():
        if name not in present:
            column = F.lit(None).cast(type_)
        elif present[name] == type_:
            column = F.col(_quoted(name))
        else:
            column = F.expr(f"try_cast({_quoted(name)} AS {type_.upper()})")
        columns.append(column.alias(name))
    rows = raw.select(*columns).filter(F.col(_quoted(contract.timestamp)).isNotNull())
    return rows.withColumn(PARTITION_COLUMN, utc_date(contract.timestamp))


def touched_rows(raw: DataFrame, contract: Contract, partitions: list[str] | None) -> DataFrame:
    """The typed raw rows of the touched partitions (all partitions when ``None``): what ``rows_in`` counts."""
    rows = typed(raw, contract)
    if partitions is None:
        return rows
    return rows.filter(F.col(PARTITION_COLUMN).isin(sorted(set(partitions))))


def _with_micros(rows: DataFrame, contract: Contract) -> DataFrame:
    """Add the timestamp as epoch microseconds: the rolling windows' order, and the dedupe key's stand-in for it."""
    if _MICROS in rows.columns:
        return rows
    return rows.withColumn(_MICROS, F.expr(f"unix_micros({_quoted(contract.timestamp)})"))


def deduplicate(rows: DataFrame, contract: Contract) -> DataFrame:
    """One row per contract key: latest ``_ingested_at``, then larger ``_source_key``, then larger other values."""
    rows = _with_micros(rows, contract)
    others = [
        n
        for n in rows.columns
        if n not in contract.key and n not in (INGESTED_AT, SOURCE_KEY, PARTITION_COLUMN, _MICROS)
    ]
    order = [F.col(_quoted(n)).desc_nulls_last() for n in (INGESTED_AT, SOURCE_KEY, *others)]
    # Key columns asset first, timestamp (as microseconds, the same grouping) second: the dedupe sort then also
    # serves the rolling window, and one shuffle by asset serves both windows when the key contains the asset.
    key = [n for n in (contract.asset, contract.timestamp) if n in contract.key]
    key += [n for n in contract.key if n not in key]
    key_columns = [F.col(_MICROS if n == contract.timestamp else _quoted(n)) for n in key]
    if contract.asset in contract.key:
        rows = rows.repartition(F.col(_quoted(contract.asset)))
    window = Window.partitionBy(*key_columns).orderBy(*order)
    ranked = rows.withColumn(_RANK, F.row_number().over(window))
    return ranked.filter(F.col(_RANK) == 1).drop(_RANK)


def add_rolling_features(rows: DataFrame, contract: Contract) -> DataFrame:
    """Append ``<col>_<stat>_<window>`` per rolling column and stat over the window ``(t - window, t]`` per asset."""
    rolling = contract.rolling
    if not rolling:
        return rows
    rows = _with_micros(rows, contract)
    window_micros = rolling.window_seconds * 1_000_000
    window = (
        Window.partitionBy(F.col(_quoted(contract.asset))).orderBy(F.col(_MICROS)).rangeBetween(-(window_micros - 1), 0)
    )
    features = [
        _STATS[stat](F.col(_quoted(column)).cast("double")).over(window).alias(rolling.feature_name(column, stat))
        for column in rolling.columns
        for stat in rolling.stats
    ]
    return rows.select("*", *features)


def transform(raw: DataFrame, contract: Contract, partitions: list[str] | None) -> DataFrame:
    """Curated rows of the touched ``partitions`` (``YYYY-MM-DD``; ``None`` = every partition in ``raw``).

    ``raw`` holds raw rows (any extra columns, such as a ``dt`` from partition discovery, are ignored) and must
    include the rows of ``context_partitions(partitions, contract)`` for the rolling windows to be complete.
    Returns the curated schema's columns plus ``dt``, one Spark partition per ``dt`` sorted by asset and
    timestamp, so a ``partitionBy("dt")`` write gives one file per curated partition with a stable row order.
    """
    rows = typed(raw, contract)
    if partitions is not None:
        wanted = sorted(set(partitions) | set(context_partitions(partitions, contract)))
        rows = rows.filter(F.col(PARTITION_COLUMN).isin(wanted))
    rows = add_rolling_features(deduplicate(rows, contract), contract)
    if partitions is not None:
        rows = rows.filter(F.col(PARTITION_COLUMN).isin(sorted(set(partitions))))
    names = [name for name, _ in contract.curated_schema()]
    order = [
        PARTITION_COLUMN,
        contract.asset,
        contract.timestamp,
        *[k for k in contract.key if k not in (contract.asset, contract.timestamp)],
    ]
    curated = rows.select(*[F.col(_quoted(n)) for n in names], F.col(PARTITION_COLUMN))
    return curated.repartition(F.col(PARTITION_COLUMN)).sortWithinPartitions(*[F.col(_quoted(n)) for n in order])
