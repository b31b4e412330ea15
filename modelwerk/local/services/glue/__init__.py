"""glue: StartJobRun runs the deployed job's script with Spark local."""

from modelwerk.local.services._routing import Service

SERVICE = Service(name="glue", handlers={})
