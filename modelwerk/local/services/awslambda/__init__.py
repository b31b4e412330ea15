"""lambda: Invoke runs the stored function's code in warm execution environments (child processes)."""

from modelwerk.local.services._routing import Service
from modelwerk.local.services.awslambda import responses
from modelwerk.local.services.awslambda.models import RUNTIME
from modelwerk.local.services.awslambda.urls import ROUTES

SERVICE = Service(name="lambda", handlers={"Invoke": responses.invoke}, routes=ROUTES, start=RUNTIME.start,
                  stop=RUNTIME.stop)
