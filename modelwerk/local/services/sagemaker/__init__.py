"""sagemaker: pipeline executions, endpoints, and the registry events SageMaker emits."""

from modelwerk.local.services._routing import Service
from modelwerk.local.services.sagemaker import endpoints, pipelines, registry


def _start(context):
    for part in (pipelines, endpoints, registry):
        part.start(context)


def _stop():
    for part in (registry, endpoints, pipelines):
        part.stop()


SERVICE = Service(name="sagemaker", handlers={**pipelines.HANDLERS, **endpoints.HANDLERS, **registry.HANDLERS},
                  controls={**pipelines.CONTROLS, **endpoints.CONTROLS, **registry.CONTROLS},
                  start=_start, stop=_stop)
