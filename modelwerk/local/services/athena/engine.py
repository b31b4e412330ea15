"""DuckDB over one account's Glue catalog: the tables a query names become views over pyarrow datasets on the
embedded S3 (DuckDB's own S3 extension is a download that cannot be had offline), and results take Athena's types
and text forms.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from modelwerk.local.services.athena.sql import TableName

#: Athena's one catalog; DuckDB attaches its database under this name so ``awsdatacatalog.db.table`` resolves.
CATALOG = "awsdatacatalog"

#: Trino functions DuckDB names differently, defined as macros in every query's connection.
TRINO_MACROS = (
    "approx_percentile(x, p) AS approx_quantile(x, p)",
    "approx_distinct(x) AS approx_count_distinct(x)",
    "regexp_like(s, p) AS regexp_matches(s, p)",
    "to_unixtime(t) AS epoch(t)",
    "from_unixtime(x) AS make_timestamp(CAST(x * 1000000 AS BIGINT))",
    "from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)",
    "from_iso8601_date(s) AS CAST(s AS DATE)",
    "to_iso8601(t) AS strftime(t, '%Y-%m-%dT%H:%M:%S.%g')",
    "json_extract_scalar(j, p) AS json_extract_string(j, p)",
    "array_join(a, sep) AS array_to_string(a, sep)",
    "day_of_week(d) AS isodow(d)",
    "day_of_year(d) AS dayofyear(d)",
    "is_nan(x) AS isnan(x)",
    "nan() AS CAST('NaN' AS DOUBLE)",
    "infinity() AS CAST('Infinity' AS DOUBLE)",
    "truncate(x) AS trunc(x)",
    "rand() AS random()",
    "levenshtein_distance(a, b) AS levenshtein(a, b)",
    "codepoint(c) AS unicode(c)",
    "map_agg(k, v) AS map(list(k), list(v))",
    "every(x) AS bool_and(x)",
    "last_day_of_month(d) AS last_day(d)",
    "to_utf8(s) AS encode(s)",
    "from_utf8(b) AS decode(b)",
)

#: Trino's MySQL-style ``date_format`` specifiers in strftime's terms (``%i`` is minutes, ``%M`` the
#: month name); applied in this order.
_MYSQL_FORMAT = (("%M", "%B"), ("%i", "%M"), ("%s", "%S"), ("%T", "%H:%M:%S"), ("%r", "%I:%M:%S %p"), ("%W", "%A"),
                 ("%e", "%-d"), ("%c", "%-m"), ("%k", "%-H"), ("%l", "%-I"), ("%h", "%I"))


def _strftime_format(argument: str) -> str:
    expression = argument
    for mysql, strftime in _MYSQL_FORMAT:
        expression = f"replace({expression}, '{mysql}', '{strftime}')"
    return expression


TRINO_MACROS += (f"date_format(t, f) AS strftime(t, {_strftime_format('f')})",)

_HIVE_TO_ARROW = {"string": "string", "varchar": "string", "char": "string", "bigint": "int64", "int": "int32",
                  "integer": "int32", "smallint": "int16", "tinyint": "int8", "double": "float64",
                  "float": "float32", "real": "float32", "boolean": "bool", "date": "date32", "binary": "binary"}

_PARQUET_MARKERS = ("parquet",)
_CSV_MARKERS = ("lazysimpleserde", "opencsvserde", "csv", "textinputformat")


class EngineError(Exception):
    """A query Athena would fail, with Athena's message (``TABLE_NOT_FOUND: ...``) and error type."""

    def __init__(self, message: str, error_type: int = 1000):
        super().__init__(message)
        self.message = message
        self.error_type = error_type


def arrow_type(glue_type: str) -> Any:
    """The Arrow type of a Glue (Hive) column type; None where the files' own type must do (nested types)."""
    import pyarrow as pa

    name = glue_type.strip().lower()
    base = re.sub(r"\(.*\)$", "", name)
    if base == "decimal":
        match = re.match(r"decimal\((\d+)\s*,\s*(\d+)\)", name)
        return pa.decimal128(int(match.group(1)), int(match.group(2))) if match else pa.decimal128(10, 0)
    if base == "timestamp":
        return pa.timestamp("ns")  # Athena's timestamp carries no zone; nanoseconds keep pandas' precision
    if base in _HIVE_TO_ARROW:
        return pa.type_for_alias(_HIVE_TO_ARROW[base])
    return None


def table_format(table: dict[str, Any]) -> str:
    descriptor = table.get("StorageDescriptor") or {}
    serde = (descriptor.get("SerdeInfo") or {}).get("SerializationLibrary", "")
    marks = " ".join([serde, descriptor.get("InputFormat", ""),
                      (table.get("Parameters") or {}).get("classification", "")]).lower()
    if any(m in marks for m in _PARQUET_MARKERS):
        return "parquet"
    if any(m in marks for m in _CSV_MARKERS):
        return "csv"
    raise EngineError(f"HIVE_UNSUPPORTED_FORMAT: table {table.get('DatabaseName')}.{table['Name']} is stored as "
                      f"{serde or descriptor.get('InputFormat') or 'an unknown format'}; the embedded Athena reads "
                      f"Parquet and CSV tables", 1100)


def _data_files(filesystem: Any, location: str) -> list[Any]:
    """The objects under a table location Athena reads: not folders, not names starting with ``_`` or ``.``."""
    from pyarrow.fs import FileSelector

    listing = filesystem.get_file_info(FileSelector(location, recursive=True, allow_not_found=True))
    files = []
    for info in listing:
        relative = info.path[len(location):].strip("/")
        if info.is_file and info.size and not any(p.startswith(("_", ".")) for p in relative.split("/")) \
                and not relative.endswith("$folder$"):
            files.append(info)
    return files


def table_dataset(filesystem: Any, table: dict[str, Any]) -> tuple[Any, int]:
    """A pyarrow dataset over one Glue table's location with the catalog's schema and partition columns (Hive
    layout), and the bytes of its files."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    descriptor = table["StorageDescriptor"]
    location = descriptor["Location"].removeprefix("s3://").removeprefix("s3a://").rstrip("/")
    file_format = table_format(table)
    files = _data_files(filesystem, location)
    physical = None
    if files and file_format == "parquet":
        physical = ds.dataset([files[0].path], filesystem=filesystem, format="parquet").schema
    fields = []
    for column in descriptor.get("Columns", []):
        wanted = arrow_type(column["Type"])
        if wanted is None:
            index = physical.get_field_index(column["Name"]) if physical is not None else -1
            wanted = physical.field(index).type if index >= 0 else pa.string()
        fields.append(pa.field(column["Name"].lower(), wanted))
    partitions = [pa.field(c["Name"].lower(), arrow_type(c["Type"]) or pa.string())
                  for c in table.get("PartitionKeys", [])]
    schema = pa.schema(fields + partitions)
    if not files:
        return ds.dataset(schema.empty_table()), 0
    if file_format == "csv":
        serde = (descriptor.get("SerdeInfo") or {}).get("Parameters") or {}
        delimiter = serde.get("field.delim") or serde.get("separatorChar") or ","
        skip = int((table.get("Parameters") or {}).get("skip.header.line.count", "0"))
        file_format_obj = ds.CsvFileFormat(
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            read_options=pacsv.ReadOptions(column_names=[f.name for f in fields], skip_rows=skip),
            convert_options=pacsv.ConvertOptions(column_types={f.name: f.type for f in fields}))
    else:
        file_format_obj = ds.ParquetFileFormat()
    dataset = ds.dataset([f.path for f in files], schema=schema, filesystem=filesystem, format=file_format_obj,
                         partitioning=ds.partitioning(pa.schema(partitions), flavor="hive") if partitions else None,
                         partition_base_dir=location)
    return dataset, sum(f.size for f in files)


# -- connections ----------------------------------------------------------------------------------------------------
@dataclass
class Session:
    """One query's DuckDB connection over the catalog, and the bytes of the tables it names."""

    connection: Any
    scanned_bytes: int = 0
    registered: set[tuple[str, str]] = field(default_factory=set)


def connect(glue: Any, filesystem: Any, database: str | None, sql: str) -> Session:
    """A DuckDB connection where the Glue tables ``sql`` names are views in schema ``<database>`` of catalog
    ``awsdatacatalog``, and the context database is the default schema."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("SET integer_division = true")  # Trino: 5 / 2 = 2
    connection.execute("SET threads = 2")
    connection.execute(f"ATTACH ':memory:' AS {CATALOG}")
    connection.execute(f"USE {CATALOG}")
    for macro in TRINO_MACROS:
        connection.execute(f"CREATE MACRO {macro}")
    session = Session(connection)
    if database:
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS {CATALOG}."{database}"')
        connection.execute(f'USE {CATALOG}."{database}"')
    try:
        names = connection.get_table_names(sql, qualified=True)  # after the macros: it binds function names
    except duckdb.Error:
        names = set()  # DuckDB reports the syntax error when the query runs
    for name in sorted(names):
        parts = [p.strip('"').lower() for p in re.findall(r'"(?:[^"]|"")+"|[^.]+', name)]
        if len(parts) == 3 and parts[0] != CATALOG:
            continue
        target = TableName.of(parts)
        register(session, glue, filesystem, target.database or database, target.table)
    return session


def register(session: Session, glue: Any, filesystem: Any, database: str | None, table: str) -> None:
    """Make Glue table ``database.table`` a view of the session (nothing if the catalog has no such table)."""
    if not database or (database, table) in session.registered:
        return
    try:
        found = glue.get_table(DatabaseName=database, Name=table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        return
    if "StorageDescriptor" not in found or not found["StorageDescriptor"].get("Location"):
        return
    dataset, size = table_dataset(filesystem, found)
    hidden = f"__glue__{database}__{table}"
    session.connection.register(hidden, dataset)
    session.connection.execute(f'CREATE SCHEMA IF NOT EXISTS {CATALOG}."{database}"')
    session.connection.execute(f'CREATE OR REPLACE VIEW {CATALOG}."{database}"."{table}" AS SELECT * FROM "{hidden}"')
    session.registered.add((database, table))
    session.scanned_bytes += size


def athena_names(connection: Any, sql: str, names: list[str]) -> list[str]:
    """Result column names as Athena gives them: an expression without an alias is ``_col<position>`` (DuckDB
    would name it after its text, ``count_star()``)."""
    import duckdb

    try:
        tree = json.loads(connection.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
        node = tree["statements"][0]["node"]
    except (duckdb.Error, KeyError, IndexError, ValueError):
        return names
    select = node.get("select_list") if node.get("type") == "SELECT_NODE" else None
    if not select or len(select) != len(names) or any(e.get("class") in ("STAR", "COLUMNS") for e in select):
        return names
    return [f"_col{i}" if not e.get("alias") and e.get("class") != "COLUMN_REF" else name
            for i, (e, name) in enumerate(zip(select, names))]


def engine_error(error: Exception, database: str | None) -> EngineError:
    """Athena's reason for a DuckDB error: its first line, and Trino's TABLE_NOT_FOUND for unknown tables."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    missing = re.search(r"Table with name (\S+) does not exist", first)
    if missing:
        name = missing.group(1).strip('"')
        if name.count(".") == 2:
            qualified = name
        elif "." in name:
            qualified = f"{CATALOG}.{name}"
        else:
            qualified = f"{CATALOG}.{database}.{name}" if database else name
        return EngineError(f"TABLE_NOT_FOUND: Table '{qualified}' does not exist", 1301)
    if first.startswith("Parser Error"):
        return EngineError(f"SYNTAX_ERROR: {first}", 1100)
    return EngineError(first, 1000)


# -- Athena's types and text ------------------------------------------------------------------------------------------
def athena_type(duck_type: Any) -> str:
    """Athena's (Trino's) name of a DuckDB type."""
    kind = duck_type.id
    simple = {"bigint": "bigint", "integer": "integer", "smallint": "smallint", "tinyint": "tinyint",
              "ubigint": "bigint", "uinteger": "bigint", "usmallint": "integer", "utinyint": "smallint",
              "hugeint": "decimal", "uhugeint": "decimal", "double": "double", "float": "real",
              "varchar": "varchar", "boolean": "boolean", "date": "date", "timestamp": "timestamp",
              "timestamp_ms": "timestamp", "timestamp_ns": "timestamp", "timestamp_s": "timestamp",
              "timestamp with time zone": "timestamp with time zone", "time": "time", "blob": "varbinary",
              "interval": "interval day to second", "uuid": "uuid", "decimal": "decimal", "json": "json",
              "null": "unknown"}
    if kind == "list" or kind == "array":
        return f"array({athena_type(duck_type.children[0][1])})"
    if kind == "struct":
        return "row(" + ", ".join(f"{name} {athena_type(child)}" for name, child in duck_type.children) + ")"
    if kind == "map":
        return f"map({athena_type(duck_type.children[0][1])}, {athena_type(duck_type.children[1][1])})"
    return simple.get(kind, "varchar")


def hive_type(duck_type: Any) -> str:
    """The Glue (Hive) column type CTAS registers for a DuckDB type."""
    kind = duck_type.id
    if kind == "decimal":
        precision, scale = (value for _, value in duck_type.children)
        return f"decimal({precision},{scale})"
    if kind in ("list", "array"):
        return f"array<{hive_type(duck_type.children[0][1])}>"
    if kind == "struct":
        return "struct<" + ",".join(f"{name}:{hive_type(child)}" for name, child in duck_type.children) + ">"
    if kind == "map":
        return f"map<{hive_type(duck_type.children[0][1])},{hive_type(duck_type.children[1][1])}>"
    athena = athena_type(duck_type)
    return {"varchar": "string", "integer": "int", "real": "float", "varbinary": "binary",
            "timestamp with time zone": "timestamp", "decimal": "decimal(38,0)"}.get(athena, athena)


_PRECISION = {"varchar": 2147483647, "bigint": 19, "integer": 10, "smallint": 5, "tinyint": 3, "double": 17,
              "real": 7, "boolean": 0, "date": 0, "timestamp": 3, "varbinary": 1073741824}


def column_info(name: str, duck_type: Any) -> dict[str, Any]:
    """``ResultSetMetadata.ColumnInfo`` of one result column, as Athena fills it."""
    athena = athena_type(duck_type)
    info: dict[str, Any] = {"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": name, "Label": name,
                            "Type": athena, "Precision": _PRECISION.get(athena, 0), "Scale": 0,
                            "Nullable": "UNKNOWN", "CaseSensitive": athena == "varchar"}
    if duck_type.id == "decimal":
        info["Precision"], info["Scale"] = (value for _, value in duck_type.children)
    elif athena == "decimal":
        info["Precision"], info["Scale"] = 38, 0
    return info


def text(value: Any) -> str | None:
    """A value as Athena writes it in results (None stays None: a null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
        rendered = value.replace(tzinfo=None).isoformat(sep=" ", timespec=spec)
        return f"{rendered} UTC" if value.tzinfo is not None else rendered
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return " ".join(f"{b:02x}" for b in bytes(value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_nested(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):  # a map from Arrow
            return "{" + ", ".join(f"{k}={_nested(v)}" for k, v in value) + "}"
        return "[" + ", ".join(_nested(v) for v in value) + "]"
    return str(value)


def _nested(value: Any) -> str:
    rendered = text(value)
    return "null" if rendered is None else rendered


def csv_line(values: list[str | None]) -> str:
    """One line of Athena's result CSV: every field quoted, a null an empty unquoted field."""
    return ",".join("" if v is None else '"' + v.replace('"', '""') + '"' for v in values) + "\n"
