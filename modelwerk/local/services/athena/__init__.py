"""athena: StartQueryExecution runs the SQL in DuckDB over the Glue catalog; the results are written and read back
as Athena writes and serves them. moto keeps the workgroups, named queries and data catalogs."""

from modelwerk.local.services._routing import Service
from modelwerk.local.services.athena import responses

SERVICE = Service(name="athena", handlers=responses.HANDLERS, start=responses.start, stop=responses.stop)
