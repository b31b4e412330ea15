"""The sagemaker-inference toolkit's default inference handler, given what it leaves to a framework container.

The toolkit decodes the request (``decoder.decode``: CSV to a numpy array) and encodes the response
(``encoder.encode``) itself; a framework container supplies how to load a model and how to predict, and, as
SageMaker's scikit-learn container does, makes a single decoded row a one-row matrix. Kept in its own module:
multi-model-server wants exactly one class in the handler service's module.
"""

from __future__ import annotations

import os

import joblib
from sagemaker_inference import default_inference_handler


class JoblibInferenceHandler(default_inference_handler.DefaultInferenceHandler):
    def default_model_fn(self, model_dir, context=None):
        return joblib.load(os.path.join(model_dir, "model.joblib"))

    def default_input_fn(self, input_data, content_type, context=None):
        array = super().default_input_fn(input_data, content_type, context)
        return array.reshape(1, -1) if array.ndim == 1 else array

    def default_predict_fn(self, data, model, context=None):
        return model.predict(data)
