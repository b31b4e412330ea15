"""The AWS services the embedded AWS runs itself, in front of moto: one package per service, laid out like moto's.

Each package exposes ``SERVICE`` (a :class:`Service`): its operations' handlers (``models``: state and behaviour;
``responses``: parameters in, outputs out; ``urls``: REST routes; errors as :class:`AwsError`), and the background
work it runs while the server does.
"""

from __future__ import annotations

import importlib

from modelwerk.local.services._context import ServiceContext
from modelwerk.local.services._routing import AwsError, Call, LocalServices, Reply, Route, Service

#: The packages of this folder that run a service, in the order they start.
SERVICE_PACKAGES = ("events", "awslambda", "glue", "athena", "sagemaker", "sagemaker_runtime", "cloudwatch",
                    "codebuild", "codepipeline")

__all__ = ["AwsError", "Call", "LocalServices", "Reply", "Route", "Service", "ServiceContext", "load"]


def load() -> list[Service]:
    """Every service of this folder."""
    return [importlib.import_module(f"{__name__}.{name}").SERVICE for name in SERVICE_PACKAGES]
