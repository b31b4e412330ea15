"""cloudwatch: alarms evaluated at their period boundaries, their history and actions."""

from modelwerk.local.services._routing import Service

SERVICE = Service(name="cloudwatch", handlers={})
