"""Lambda's runtime pieces that code outside the embedded AWS uses: the context object handlers receive (the handler
tests use it as their fake) and the Embedded Metric Format publisher. The functions themselves run in the embedded
AWS (:mod:`modelwerk.local.services.awslambda`), through ``lambda:Invoke``.
"""

from __future__ import annotations

from modelwerk.local.services.awslambda.metrics import publish_embedded_metrics
from modelwerk.local.services.awslambda.worker import LambdaContext

__all__ = ["LambdaContext", "publish_embedded_metrics"]
