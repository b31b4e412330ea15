"""multi-model-server configured the way the sagemaker-inference toolkit configures it, inside a work folder.

The toolkit's ``model_server.start_model_server`` writes its settings to /etc/sagemaker-mms.properties and serves
/opt/ml/model. This launcher builds the same settings with the toolkit's own function (its default or multi-model
properties, SAGEMAKER_* variables, the handler service) and its log4j configuration, but writes under ``--work``
and listens on 127.0.0.1. Runs in its own virtual environment (``mms.txt``); this folder must be on PYTHONPATH so
the model workers import the handler service.

    python mms_serve.py --port 8080 --work DIR --model-dir MODEL   # one model, named "model"
    python mms_serve.py --port 8080 --work DIR                     # multi-model: POST /models?url=...
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HANDLER_SERVICE = "mms_handler_service"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="inference and management API port")
    parser.add_argument("--work", type=Path, required=True, help="folder for settings, logs and temporary files")
    parser.add_argument("--model-dir", type=Path, help="the model to serve; without it, multi-model mode")
    args = parser.parse_args()

    multi_model = args.model_dir is None
    # Read by the toolkit when its modules are imported.
    os.environ["SAGEMAKER_BIND_TO_PORT"] = str(args.port)
    os.environ["SAGEMAKER_MULTI_MODEL"] = "true" if multi_model else "false"
    os.environ.setdefault("SAGEMAKER_MODEL_SERVER_WORKERS", "1")
    if multi_model:
        os.environ["SAGEMAKER_HANDLER"] = HANDLER_SERVICE  # the toolkit's multi-model properties name it so

    from sagemaker_inference import environment, model_server

    properties = model_server._generate_mms_config_properties(  # noqa: SLF001 - the toolkit's own settings
        environment.Environment(), None if multi_model else HANDLER_SERVICE
    ).replace("http://0.0.0.0:", "http://127.0.0.1:")
    work = args.work.resolve()
    for folder in ("logs", "tmp"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    config = work / "mms.properties"
    config.write_text(properties, encoding="utf-8")
    os.environ.update(
        LOG_LOCATION=str(work / "logs"),
        METRICS_LOCATION=str(work / "logs"),
        TEMP=str(work / "tmp"),  # the JVM's temporary folder
        TMPDIR=str(work / "tmp"),  # where multi-model-server keeps its pid file
    )
    command = [
        str(Path(sys.executable).parent / "multi-model-server"),
        "--start",
        "--foreground",
        "--model-store",
        "/",
        "--mms-config",
        str(config),
        "--log-config",
        model_server.DEFAULT_MMS_LOG_FILE,
    ]
    if not multi_model:
        command += ["--models", f"model={args.model_dir.resolve()}"]
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
