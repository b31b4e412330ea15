"""events: rule targets moto does not run (Lambda, SageMaker pipelines, SNS, other accounts' buses), schedules."""

from modelwerk.local.services._routing import Service
from modelwerk.local.services.events import responses
from modelwerk.local.services.events.models import ROUTER

SERVICE = Service(name="events", handlers={},
                  controls={"deliveries": responses.deliveries, "fire-schedule": responses.fire_schedule},
                  start=ROUTER.start, stop=ROUTER.stop)
