"""sagemaker: pipeline executions (and endpoints)."""

from modelwerk.local.services._routing import Service

SERVICE = Service(name="sagemaker", handlers={})
