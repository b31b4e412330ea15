"""SQL over the catalogued tables: Athena (through awswrangler) on AWS, DuckDB in local mode.

Both see the same ``database.table`` names: locally every table of the Glue catalog becomes a DuckDB view over a
pyarrow dataset on the embedded S3 (DuckDB's own S3 extension is a download that cannot be had offline).
"""

from __future__ import annotations

import re

import pandas as pd

from modelwerk.errors import ValidationError
from modelwerk.platform import Platform, resolve

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _glue_type_to_arrow(glue_type: str):
    import pyarrow as pa

    simple = {"string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "double": pa.float64(),
              "float": pa.float32(), "boolean": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC"),
              "date": pa.date32()}
    return simple.get(glue_type.lower(), pa.string())


def _s3_filesystem(platform: Platform):
    import os

    from pyarrow import fs

    return fs.S3FileSystem(
        endpoint_override=platform.endpoint_url,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        session_token=os.environ.get("AWS_SESSION_TOKEN"),
        region=platform.region or "us-east-1",
        scheme="http" if (platform.endpoint_url or "").startswith("http://") else "https",
    )


def table_dataset(platform: Platform, table: dict):
    """A pyarrow dataset over one Glue table's location, with the catalog's schema and partition columns."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from pyarrow.fs import FileSelector

    descriptor = table["StorageDescriptor"]
    columns = [(c["Name"], _glue_type_to_arrow(c["Type"])) for c in descriptor.get("Columns", [])]
    partitions = [(c["Name"], _glue_type_to_arrow(c["Type"])) for c in table.get("PartitionKeys", [])]
    schema = pa.schema(columns + partitions)
    location = descriptor["Location"].removeprefix("s3://").rstrip("/")
    filesystem = _s3_filesystem(platform)
    listing = filesystem.get_file_info(FileSelector(location, recursive=True, allow_not_found=True))
    files = [f.path for f in listing if f.is_file and f.path.endswith(".parquet")]
    if not files:
        return ds.dataset(schema.empty_table())
    return ds.dataset(files, schema=schema, filesystem=filesystem, format="parquet",
                      partitioning=ds.partitioning(pa.schema(partitions), flavor="hive") if partitions else None,
                      partition_base_dir=location)


def _duckdb_connection(platform: Platform):
    import boto3
    import duckdb

    glue = boto3.client("glue")
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    for page in glue.get_paginator("get_databases").paginate():
        for database in page["DatabaseList"]:
            name = database["Name"]
            if not _IDENTIFIER.match(name):
                continue
            connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
            for tables in glue.get_paginator("get_tables").paginate(DatabaseName=name):
                for table in tables["TableList"]:
                    if not _IDENTIFIER.match(table["Name"]) or "StorageDescriptor" not in table:
                        continue
                    registered = f"__{name}__{table['Name']}"
                    connection.register(registered, table_dataset(platform, table))
                    connection.execute(f'CREATE VIEW "{name}"."{table["Name"]}" AS SELECT * FROM "{registered}"')
    return connection


def query(sql: str, *, env: str | None = None, platform: Platform | None = None) -> pd.DataFrame:
    """Run ``sql`` against the environment's catalog and return the result as a DataFrame.

    Example
    -------
    >>> modelwerk.data.query("SELECT pump_id, count(*) AS n FROM modelwerk_dev_curated.pump_health GROUP BY 1")
    """
    if not sql or not sql.strip():
        raise ValidationError("the query is empty: pass a SQL statement such as 'SELECT 1'")
    platform = platform or resolve(env)
    if platform.local:
        import duckdb

        connection = _duckdb_connection(platform)
        try:
            relation = connection.sql(sql)
            return relation.df() if relation is not None else pd.DataFrame()
        except duckdb.Error as error:
            raise ValidationError(f"the query failed: {str(error).splitlines()[0]}") from None
        finally:
            connection.close()
    import awswrangler as wr

    return wr.athena.read_sql_query(sql, database=platform.database("curated"), workgroup=platform.workgroup,
                                    ctas_approach=False)


def to_json_result(frame: pd.DataFrame) -> dict:
    """``{"columns": [...], "rows": [[...]]}`` with JSON-safe values (timestamps as ISO strings, NaN as null)."""
    import json

    columns = [str(c) for c in frame.columns]
    records = json.loads(frame.to_json(orient="values", date_format="iso", date_unit="us", default_handler=str))
    return {"columns": columns, "rows": records}
