"""What every pipeline definition builder shares: an SDK v3 session that works offline, and the processing job shape.

The training pipeline (:mod:`sagemaker_pipelines.pipeline`) and the inference pipeline
(:mod:`sagemaker_pipelines.inference_pipeline`) are built at synth time with no credentials and no network (decision
record 0003). The SDK reads a region from the environment while it imports and builds, and validates roles against IAM
unless told not to: :func:`offline_environment` sets both for the duration of a build and restores them (builds are
serialized by :data:`BUILD_LOCK`). The session's default bucket is given (no S3 lookup), its configuration is given
(no config files, telemetry off), and its boto session refuses every API call (:class:`OfflineCallError`).

A processing step gets the code archive as its input ``code`` and runs :func:`unpack_and_run`: unpack the archive
into ``/opt/ml/code``, then ``python3 /opt/ml/code/steps/<script>.py "$@"``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = [
    "BUCKET",
    "BUILD_LOCK",
    "CODE",
    "CODE_DIR",
    "OfflineCallError",
    "PROCESSING_ARCHIVE_DIR",
    "PROCESSING_INPUT",
    "PROCESSING_OUTPUT",
    "REGION",
    "ROLE_ARN",
    "USE_CASE",
    "import_sdk",
    "matches",
    "offline_environment",
    "offline_session",
    "processing_input",
    "processing_output",
    "quiet",
    "s3_object",
    "telemetry_off",
    "unpack_and_run",
]

CODE = "code"
PROCESSING_INPUT = "/opt/ml/processing/input"
PROCESSING_OUTPUT = "/opt/ml/processing/output"
#: Where the code archive is unpacked, in training (by the toolkit) and processing (by the entry point) alike.
CODE_DIR = "/opt/ml/code"
PROCESSING_ARCHIVE_DIR = f"{PROCESSING_INPUT}/{CODE}"
#: The code archive's pin file of the model frameworks (``code_archive.REQUIREMENTS``).
REQUIREMENTS_FILE = "requirements.txt"
#: Prints the package mirror's pip index URL (``steps/package_index.py``) for the processing entry point.
PACKAGE_INDEX_PROGRAM = "steps/package_index.py"

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
USE_CASE = re.compile(r"^[a-z0-9](-?[a-z0-9])*$")

#: SDK configuration given to the build session, so that no config file of the machine takes part, with telemetry off.
#: The SDK validates a non-empty configuration against its schema at every lookup (about 0.2 s each, dozens per build),
#: so the session holds an empty one and gets this one back only around the calls that would report telemetry.
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
#: Loggers that narrate a build (fields popped from the definition, "no job is started"): quiet while building.
_CHATTY_LOGGERS = ("sagemaker", "sagemaker.config")
BUILD_LOCK = threading.Lock()


class OfflineCallError(RuntimeError):
    """Building the definition tried to call AWS; it must not (no credentials, no network at synth)."""


# -- checks (before the SDK is touched, so a wrong argument fails fast and says which) -------------------------------


def s3_object(name: str, uri: str) -> str:
    """``uri`` if it names one S3 object (the code archive) without brackets; ValueError otherwise."""
    if not isinstance(uri, str) or not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ValueError(f"{name} must be an s3:// URI, got {uri!r}")
    if "[" in uri or "]" in uri:
        raise ValueError(
            f"{name} {uri!r} holds brackets (a CDK token?), which the SDK cannot parse in a URI: pass a literal, or "
            "an Fn::Sub placeholder like ${CodeBucket} and substitute it in the template"
        )
    if uri.endswith("/") or "/" not in uri[len("s3://"):]:
        raise ValueError(f"{name} must name one object (the code archive), not a bucket or folder: {uri!r}")
    return uri


def matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.match(value) is not None


# -- offline SDK session ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def offline_environment(region: str) -> Iterator[None]:
    """The region the SDK reads from the environment (at import and in helpers that make their own boto session)
    and ``SAGEMAKER_VALIDATE_ROLE=false`` (no IAM lookups), for the duration of one build."""
    wanted = {"AWS_DEFAULT_REGION": region, "SAGEMAKER_VALIDATE_ROLE": "false"}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep the SDK's narration of a build (INFO and expected WARNINGs) out of synth output; errors still show."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*PipelineSession.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"sagemaker(\.|$)")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def import_sdk() -> None:
    """Import the SDK inside a build, not at module level: importing it needs a region (one of its modules makes a
    boto3 client at import), which :func:`offline_environment` provides. One of its modules also configures the
    root logger at import (``logging.basicConfig``); the process's logging is put back as it was."""
    if "sagemaker.mlops.workflow.pipeline" in sys.modules:
        return
    level, handlers = logging.root.level, list(logging.root.handlers)
    try:
        import sagemaker.core.transformer  # noqa: F401
        import sagemaker.mlops.workflow.pipeline  # noqa: F401 - the heavy import, done once
        import sagemaker.serve.model_builder  # noqa: F401
        import sagemaker.train  # noqa: F401
    finally:
        logging.root.setLevel(level)
        logging.root.handlers[:] = handlers


def _refuse_call(model: Any = None, **_: Any) -> None:
    operation = f"{model.service_model.service_name}.{model.name}" if model is not None else "an AWS API"
    raise OfflineCallError(f"building the pipeline definition tried to call {operation}; it must work offline")


def offline_session(region: str, bucket: str) -> Any:
    """A ``PipelineSession`` needing no credentials and making no call (its default bucket is given, not looked up)."""
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    class OfflinePipelineSession(PipelineSession):
        def default_bucket(self) -> str:  # the SDK's would check (and create) the bucket in S3
            return bucket

    boto_session = boto3.Session(region_name=region)
    boto_session.events.register("before-call", _refuse_call)
    session = OfflinePipelineSession(boto_session=boto_session, default_bucket=bucket, sagemaker_config=SDK_CONFIG)
    session.sagemaker_config = {}
    return session


@contextlib.contextmanager
def telemetry_off(session: Any) -> Iterator[None]:
    """Around ``ModelTrainer.train`` and ``ModelBuilder.register``: their telemetry decorator reads the opt-out from
    the session's configuration and would otherwise send a request (to S3, plus an STS call) from a thread."""
    session.sagemaker_config = SDK_CONFIG
    try:
        yield
    finally:
        session.sagemaker_config = {}


# -- processing jobs -------------------------------------------------------------------------------------------------


def unpack_and_run(program: str, *, install_requirements: bool = False) -> str:
    """The shell command a processing step runs: unpack the code archive input, then the script with the job's
    arguments (``"$@"``; ``$0`` is the script's name). A step that loads models first installs the archive's
    ``requirements.txt`` (the model frameworks' pins), as the training toolkit does for training: pip changes
    nothing, and needs no index, when the image already holds those versions."""
    # In subnets without internet access the index is the platform's package mirror (CA_REPOSITORY_ARN, the training
    # toolkit's own convention); POSIX sh and no brace expansions: the definition passes through Fn::Sub.
    mirror = (f'if [ -n "$CA_REPOSITORY_ARN" ]; then PIP_INDEX_URL="$(python3 "{CODE_DIR}/{PACKAGE_INDEX_PROGRAM}")"; '
              'export PIP_INDEX_URL; fi; ')
    install = (f'{mirror}python3 -m pip install --no-input --disable-pip-version-check --quiet '
               f'-r "{CODE_DIR}/{REQUIREMENTS_FILE}"; ') if install_requirements else ""
    return (
        f'set -e; mkdir -p "{CODE_DIR}"; '
        f'for archive in "{PROCESSING_ARCHIVE_DIR}"/*; do tar -xzf "$archive" -C "{CODE_DIR}"; done; '
        f'{install}exec python3 "{CODE_DIR}/{program}" "$@"'
    )


def processing_input(name: str, uri: Any) -> Any:
    """A processing input copied whole (``S3Prefix``, ``File`` mode) to ``/opt/ml/processing/input/<name>``."""
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=uri,
            local_path=f"{PROCESSING_INPUT}/{name}",
            s3_data_type="S3Prefix",
            s3_input_mode="File",
            s3_data_distribution_type="FullyReplicated",
        ),
    )


def processing_output(name: str, uri: Any) -> Any:
    """A processing output uploaded at the end of the job from ``/opt/ml/processing/output/<name>`` to ``uri``."""
    from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(s3_uri=uri, local_path=f"{PROCESSING_OUTPUT}/{name}", s3_upload_mode="EndOfJob"),
    )
