"""Start the server: ``python -m modelwerk_serving [serve]`` (SageMaker starts the image with ``serve``).

Exit codes: 0 after a graceful stop (SIGTERM or SIGINT: requests in flight are answered, capture is flushed), 1 when
the model cannot be loaded or the server cannot start, 2 for bad settings or arguments (one line on stderr).

The supervisor (uvicorn's ``Multiprocess``, also for one worker) binds the port, starts the workers and replaces a
worker that dies, so the endpoint survives a crashed worker: the supervisor keeps the listening socket, and a
replacement worker loads its model before it accepts a connection, so requests wait in the socket's backlog (or go to
the other workers) instead of meeting a worker that answers 503 "the model is loading".
"""

from __future__ import annotations

import logging
import logging.config
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from modelwerk_serving.settings import MODEL_DIR, Settings, SettingsError

logger = logging.getLogger("modelwerk.serving")

#: Worker exit code that uvicorn's supervisor takes for "cannot start" (it stops instead of restarting).
STARTUP_FAILURE = 3

LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        "modelwerk": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments not in ([], ["serve"]):
        print(f"error: unexpected argument(s) {' '.join(arguments)!r}; usage: python -m modelwerk_serving [serve]",
              file=sys.stderr)
        return 2
    try:
        settings = Settings.from_environ()
        if not settings.multi_model and not settings.model_dir.exists():
            raise SettingsError(f"{MODEL_DIR}={settings.model_dir} does not exist")
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(LOG_CONFIG)

    from modelwerk_serving.errors import ModelLoadError
    from modelwerk_serving.models import prepare_artifact

    model_folder, temporary = None, None
    if not settings.multi_model:
        try:
            artifact = prepare_artifact(settings.model_dir, Path(tempfile.gettempdir()))
        except ModelLoadError as exc:
            logger.error("cannot load the model from %s: %s", settings.model_dir, exc)
            return 1
        model_folder, temporary = artifact.folder, artifact.temporary
    try:
        return serve(settings, model_folder)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def serve(settings: Settings, model_folder: Path | None) -> int:
    """Run the supervisor and its workers until SIGTERM/SIGINT (0) or until a worker cannot start (1)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from modelwerk_serving.app import App

    class Supervisor(Multiprocess):
        """uvicorn's supervisor, with the workers started after the first ones marked as replacements: the App is
        pickled into a worker when it starts, so the mark reaches only the workers started from then on."""

        def init_processes(self) -> None:
            super().init_processes()
            self.config.app.replacement = True

    config = uvicorn.Config(
        App(settings, model_folder),
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        interface="asgi3",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=LOG_CONFIG,
    )
    try:
        sock = config.bind_socket()
    except SystemExit:  # uvicorn logged why (the port is taken, the host is not this machine's)
        return 1
    supervisor = Supervisor(config, sockets=[sock])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        logger.error("the server stopped: a worker could not start (see the lines above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
