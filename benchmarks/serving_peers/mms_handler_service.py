"""The handler service multi-model-server runs: the toolkit's default handler service over its transformer.

Named in the server's ``default_service_handler`` setting, so it serves every model directory registered with
``POST /models`` as well as the one given at start.
"""

from __future__ import annotations

from mms_inference_handler import JoblibInferenceHandler
from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.transformer import Transformer


class HandlerService(DefaultHandlerService):
    def __init__(self):
        super().__init__(transformer=Transformer(default_inference_handler=JoblibInferenceHandler()))
