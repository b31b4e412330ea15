"""athena: StartQueryExecution runs the SQL in DuckDB over the Glue catalog."""

from modelwerk.local.services._routing import Service

SERVICE = Service(name="athena", handlers={})
