"""SQL over the catalogued tables through Athena (awswrangler), in the environment's workgroup.

Locally the embedded AWS answers Athena's API by running the SQL in DuckDB over the same Glue catalog; the
differences between DuckDB's SQL and Athena's (Trino's) are listed in docs/local-mode.md.
"""

from __future__ import annotations

import pandas as pd

from modelwerk.errors import ValidationError
from modelwerk.platform import Platform, resolve


def query(sql: str, *, env: str | None = None, platform: Platform | None = None) -> pd.DataFrame:
    """Run ``sql`` against the environment's catalog and return the result as a DataFrame.

    Example
    -------
    >>> modelwerk.data.query("SELECT pump_id, count(*) AS n FROM modelwerk_dev_curated.pump_health GROUP BY 1")
    """
    import awswrangler as wr
    from awswrangler import exceptions

    if not sql or not sql.strip():
        raise ValidationError("the query is empty: pass a SQL statement such as 'SELECT 1'")
    platform = platform or resolve(env)
    try:
        return wr.athena.read_sql_query(sql, database=platform.database("curated"), workgroup=platform.workgroup,
                                        ctas_approach=False, boto3_session=platform.session())
    except exceptions.QueryFailed as error:
        raise ValidationError(f"the query failed: {str(error).splitlines()[0]}") from None


def to_json_result(frame: pd.DataFrame) -> dict:
    """``{"columns": [...], "rows": [[...]]}`` with JSON-safe values (timestamps as ISO strings, NaN as null)."""
    import json

    columns = [str(c) for c in frame.columns]
    records = json.loads(frame.to_json(orient="values", date_format="iso", date_unit="us", default_handler=str))
    return {"columns": columns, "rows": records}
