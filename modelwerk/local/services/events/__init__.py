"""events: rule targets moto does not run (Lambda, SageMaker pipelines, SNS), schedules."""

from modelwerk.local.services._routing import Service

SERVICE = Service(name="events", handlers={})
