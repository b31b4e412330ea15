"""lambda: Invoke runs the deployed function's code."""

from modelwerk.local.services._routing import Service

SERVICE = Service(name="lambda", handlers={})
