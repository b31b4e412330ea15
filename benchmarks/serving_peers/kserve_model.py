"""KServe peer: the benchmark's joblib model behind KServe's Python model server, V1 protocol.

Runs in its own virtual environment (``kserve.txt``). Written the way KServe's own scikit-learn server
(``sklearnserver``) is: a ``kserve.Model`` that loads ``model.joblib`` and predicts on the request's ``instances``
with KServe's own input and response helpers. KServe's command-line options pass through, e.g.::

    python kserve_model.py --model_dir DIR --model_name logistic --http_port 8080 --enable_grpc false
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import joblib
import kserve
from kserve.utils.utils import get_predict_input, get_predict_response


class JoblibModel(kserve.Model):
    """A fitted scikit-learn-API estimator from ``<model_dir>/model.joblib``."""

    def __init__(self, name: str, model_dir: Path):
        super().__init__(name)
        self.model_dir = model_dir
        self.estimator = None

    def load(self) -> bool:
        self.estimator = joblib.load(self.model_dir / "model.joblib")
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        return get_predict_response(payload, self.estimator.predict(get_predict_input(payload)), self.name)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", type=Path, required=True, help="folder holding model.joblib")
    parser.add_argument("--quiet", action="store_true", help="no access log line per request")
    args, _ = parser.parse_known_args()
    model = JoblibModel(args.model_name, args.model_dir)
    model.load()
    server = kserve.ModelServer()
    if args.quiet:
        # kserve configures logging when the server starts; the access logger's level is what it keeps.
        logging.getLogger("uvicorn.access").disabled = True
    server.start([model])


if __name__ == "__main__":
    main()
