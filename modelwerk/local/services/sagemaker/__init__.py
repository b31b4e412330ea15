"""sagemaker: pipeline executions, endpoints, transform jobs, and the registry events SageMaker emits."""

from modelwerk.local.services._routing import Service
from modelwerk.local.services.sagemaker import endpoints, pipelines, registry, transform_jobs


def _start(context):
    for part in (pipelines, endpoints, transform_jobs, registry):
        part.start(context)


def _stop():
    for part in (registry, transform_jobs, endpoints, pipelines):
        part.stop()


SERVICE = Service(name="sagemaker", handlers={**pipelines.HANDLERS, **endpoints.HANDLERS, **transform_jobs.HANDLERS,
                                              **registry.HANDLERS},
                  controls={**pipelines.CONTROLS, **endpoints.CONTROLS, **transform_jobs.CONTROLS,
                            **registry.CONTROLS},
                  start=_start, stop=_stop)
