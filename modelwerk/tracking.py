"""Experiment tracking: every pipeline execution is one MLflow run, and :func:`runs` compares them in a notebook.

One experiment per use case (``modelwerk/<use case>``), one run per pipeline execution, named after the execution
id: the pipeline parameters as params, the evaluation metrics and each step's duration (``step_seconds.<step>``)
as metrics, status, execution ARN, git commit, data snapshot and model package as tags, and the execution record
itself as ``execution.json`` next to the artifacts the caller hands over. Logging the same execution again updates
its run (found by the execution ARN tag); it never adds a second one.

Where the runs go (:func:`tracking_uri`), first match wins:

1. the ``tracking_uri`` argument of a call;
2. ``MLFLOW_TRACKING_URI``, MLflow's own variable: on AWS, the registry's tracking server ARN (cdk.json
   ``modelwerk:mlflow`` → ``managed_tracking_server``; the registry stack publishes it as
   ``/modelwerk/registry/mlflow/tracking-server-arn``). The ``sagemaker-mlflow`` plugin signs the calls with the
   current AWS credentials, which must be in the registry account: a tracking server has no resource policy, so a
   principal of a training account (dev) assumes the registry's logging role
   (``/modelwerk/registry/mlflow/logging-role-arn``), for example through an AWS profile with ``role_arn``. The
   library reads no parameter from the registry account itself (a workload account cannot read the registry's
   SSM); the Studio lifecycle configuration or the user sets the variable once;
3. a local MLflow store in the records folder (``MODELWERK_STATE_DIR``, else ``.modelwerk/`` of the checkout, else
   ``~/.modelwerk``): ``<records>/mlflow/mlflow.db`` (SQLite) with artifacts in ``<records>/mlflow/artifacts/``. It is
   outside ``local/`` and ``runs/``, so ``modelwerk local down`` keeps the experiment history. MLflow 3 refuses the
   file store (``./mlruns``) unless ``MLFLOW_ALLOW_FILE_STORE`` opts back in; SQLite is its successor. Measured: a
   process pays about 1.2 s to import MLflow and 0.7 s to open the store (its migrations add about a second, once,
   when the store is created); logging an execution then takes about 50 ms, ``runs()`` about 80 ms.

MLflow is imported on first use, not with this module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelwerk.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    import pandas

log = logging.getLogger("modelwerk")

EXPERIMENT_PREFIX = "modelwerk/"
STORE_FOLDER = "mlflow"
#: Tags the runs carry (``modelwerk.<name>``); a column each in :func:`runs`.
TAG_PREFIX = "modelwerk."
TAGGED = ("execution_id", "execution_arn", "status", "started_at", "ended_at", "snapshot_id", "git_commit",
          "model_package_arn", "failure_reason", "use_case")
#: The columns :func:`runs` always has, in this order; ``params.*`` and ``metrics.*`` follow.
COLUMNS = ("run_id", "execution_id", "execution_arn", "status", "started_at", "ended_at", "snapshot_id",
           "git_commit", "model_package_arn", "failure_reason")
#: Pipeline execution status -> MLflow run status; anything else is still running.
RUN_STATUS = {"Succeeded": "FINISHED", "Failed": "FAILED", "Stopped": "KILLED"}
#: An execution's statuses that end it, as a run's ``status`` records them.
FINISHED_STATUSES = tuple(RUN_STATUS)
STEP_METRIC_PREFIX = "step_seconds."
_NAME = re.compile(r"[^A-Za-z0-9_\-. /:]")
_USE_CASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: MLflow's limits on a param and a tag value (characters).
_MAX_PARAM = 6000
_MAX_TAG = 8000


def experiment_name(use_case: str) -> str:
    """The MLflow experiment of a use case: ``modelwerk/<use case>``."""
    return f"{EXPERIMENT_PREFIX}{use_case}"


def tracking_uri(root: Path | str | None = None) -> str:
    """Where runs are logged: ``MLFLOW_TRACKING_URI`` if set, else the local store of the checkout at ``root``.

    Parameters
    ----------
    root : checkout whose records folder holds the local store (default: the nearest one, else ``~``);
        ``MODELWERK_STATE_DIR`` takes precedence, as everywhere in local mode.

    Example
    -------
    >>> modelwerk.tracking.tracking_uri()
    'sqlite:////home/me/modelwerk/.modelwerk/mlflow/mlflow.db'
    """
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{local_store(root).resolve().as_posix()}/mlflow.db"


def _uri(explicit: str | None) -> str:
    return explicit or tracking_uri()


def local_store(root: Path | str | None = None) -> Path:
    """The folder of the local MLflow store: ``<records>/mlflow`` (records: see :func:`tracking_uri`)."""
    from modelwerk import settings

    return settings.state_dir(root) / STORE_FOLDER


# -- the execution record ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Execution:
    """A pipeline execution record, checked and reduced to what MLflow takes."""

    use_case: str
    execution_arn: str
    execution_id: str
    status: str
    started_ms: int | None
    ended_ms: int | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str | None]
    document: dict[str, Any] = field(repr=False)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "_Execution":
        if not isinstance(record, Mapping):
            raise ValidationError(f"an execution record is a mapping, not {type(record).__name__}")
        use_case = record.get("use_case")
        if not isinstance(use_case, str) or not _USE_CASE.match(use_case):
            raise ValidationError(f"the execution record needs a use_case name like 'pump-health', got {use_case!r}")
        arn = record.get("execution_arn")
        if not isinstance(arn, str) or not arn or "'" in arn:
            raise ValidationError(f"the execution record needs its execution_arn, got {arn!r}")
        status = record.get("status")
        if not isinstance(status, str) or not status:
            raise ValidationError(f"the execution record needs a status ('Succeeded' or 'Failed'), got {status!r}")
        execution_id = str(record.get("execution_id") or arn.rsplit("/", 1)[-1])
        started_ms, ended_ms = _millis(record, "started_at"), _millis(record, "ended_at")

        parameters = record.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise ValidationError("the execution record's parameters are a mapping of name to value")
        params = {_name(k): _param_value(v) for k, v in parameters.items() if v is not None}

        metrics: dict[str, float] = {}
        for name, value in (record.get("metrics") or {}).items():
            if isinstance(value, Mapping):  # evaluation.json's shape: {"f1": {"value": 0.83}}
                value = value.get("value")
            if value is None:
                continue
            metrics[_name(name)] = _number(f"metric {name!r}", value)
        for step in record.get("steps") or []:
            if not isinstance(step, Mapping) or not step.get("name"):
                raise ValidationError(f"each step of the execution record has a name, got {step!r}")
            if step.get("seconds") is not None:
                metrics[f"{STEP_METRIC_PREFIX}{_name(step['name'])}"] = _number(
                    f"seconds of step {step['name']!r}", step["seconds"])

        tags: dict[str, str | None] = {}
        for name in TAGGED:
            value = execution_id if name == "execution_id" else record.get(name)
            tags[f"{TAG_PREFIX}{name}"] = None if value in (None, "") else str(value)[:_MAX_TAG]
        return cls(use_case=use_case, execution_arn=arn, execution_id=execution_id, status=status,
                   started_ms=started_ms, ended_ms=ended_ms, params=params, metrics=metrics, tags=tags,
                   document=dict(record))


def _name(name: Any) -> str:
    """A param or metric name MLflow accepts (letters, digits, ``_-. /:``)."""
    return _NAME.sub("_", str(name)).strip() or "_"


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MAX_PARAM]


def _number(what: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValidationError(f"{what} must be a number, not {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{what} must be a number, not {value!r}") from None


def _millis(record: Mapping[str, Any], key: str) -> int | None:
    value = record.get(key)
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"the execution record's {key} must be an ISO-8601 time, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _artifact_paths(artifacts: Mapping[str, str | Path] | None) -> dict[str, Path]:
    """Artifact path (``model``, ``reports/evaluation``) -> an existing local file or folder, checked before logging."""
    paths: dict[str, Path] = {}
    for key, value in (artifacts or {}).items():
        parts = [p for p in str(key).replace("\\", "/").split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValidationError(f"artifact name {key!r} must be a relative path like 'model' or 'reports/evaluation'")
        path = Path(value)
        if not path.exists():
            raise ValidationError(f"artifact {key!r}: {path} does not exist")
        paths["/".join(parts)] = path
    return paths


# -- the MLflow store -------------------------------------------------------------------------------------------------
@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's and alembic's INFO chatter and warnings off for the duration; errors still reach the logs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import mlflow  # noqa: F401  (sets its logger's level when first imported: quiet it after that)
        except ImportError:
            raise ConfigurationError("experiment tracking needs MLflow: pip install mlflow sagemaker-mlflow") from None

        loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


@contextmanager
def _client(uri: str) -> Iterator[Any]:
    """An ``MlflowClient`` of ``uri``, quiet; MLflow's refusals become one-sentence ConfigurationErrors."""
    with _quiet():
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            with _global_uri_for_signing(uri):
                yield MlflowClient(tracking_uri=uri)
        except MlflowException as error:
            message = str(error.message if hasattr(error, "message") else error).strip().splitlines()[0]
            raise ConfigurationError(f"MLflow at {_display(uri)} refused the call: {message}") from error


@contextmanager
def _global_uri_for_signing(uri: str) -> Iterator[None]:
    """The sagemaker-mlflow plugin signs a request for the *global* tracking URI: set it to the server's ARN while we
    call it, then put back what was there (and ``MLFLOW_TRACKING_URI`` as it was)."""
    if not uri.startswith("arn:"):
        yield
        return
    import mlflow

    environment = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # a later MLflow: set it for good
        mlflow.set_tracking_uri(uri)
        yield
        return
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if environment is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = environment


def _display(uri: str) -> str:
    return uri.split("://", 1)[-1] if uri.startswith("sqlite:") else uri


def _artifact_location(uri: str, use_case: str) -> str | None:
    """Next to a SQLite store: ``<store>/artifacts/<use case>``; elsewhere the server decides (S3 for SageMaker)."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).parent / "artifacts" / use_case).resolve().as_uri()


def _experiment_id(client: Any, uri: str, use_case: str, *, create: bool) -> str | None:
    name = experiment_name(use_case)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if not create:
        return None
    return client.create_experiment(name, artifact_location=_artifact_location(uri, use_case),
                                    tags={f"{TAG_PREFIX}use_case": use_case})


def _find_run(client: Any, experiment_id: str, execution_arn: str) -> Any:
    found = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_PREFIX}execution_arn` = '{execution_arn}'",
                               max_results=2)
    return found[0] if found else None


# -- public API -------------------------------------------------------------------------------------------------------
def log_execution(
    record: Mapping[str, Any],
    *,
    artifacts: Mapping[str, str | Path] | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log one pipeline execution as an MLflow run (or update its run) and return the run id.

    Parameters
    ----------
    record : the execution record: ``use_case``, ``execution_arn``, ``execution_id``, ``status``, ``started_at``,
        ``ended_at`` (ISO-8601), ``parameters``, ``steps`` (``name``, ``status``, ``seconds``), ``metrics`` (name to
        number or None; None is not logged), ``model_package_arn``, ``git_commit``, ``snapshot_id``,
        ``failure_reason``. Other keys are kept in ``execution.json`` only.
    artifacts : artifact path -> local file or folder, logged under that path (``{"evaluation": "out/evaluation"}``).
    tracking_uri : default :func:`tracking_uri`.

    Example
    -------
    >>> modelwerk.tracking.log_execution(record, artifacts={"evaluation": "work/evaluation/evaluation.json"})
    'b1c0...'
    """
    execution = _Execution.from_record(record)
    files = _artifact_paths(artifacts)
    uri = _uri(tracking_uri)
    with _client(uri) as client:
        from mlflow.entities import Metric, Param, RunTag

        experiment_id = _experiment_id(client, uri, execution.use_case, create=True)
        present = {k: v for k, v in execution.tags.items() if v is not None}
        run = _find_run(client, experiment_id, execution.execution_arn)
        if run is None:
            run_id = client.create_run(experiment_id, start_time=execution.started_ms, tags=present,
                                       run_name=execution.execution_id).info.run_id
            new_params = execution.params
        else:
            run_id = run.info.run_id
            logged = run.data.params
            changed = sorted(k for k, v in execution.params.items() if k in logged and logged[k] != v)
            if changed:
                raise ValidationError(
                    f"execution {execution.execution_arn} was logged before with other values of {changed}; "
                    "an execution's parameters do not change (is the execution ARN reused?)")
            new_params = {k: v for k, v in execution.params.items() if k not in logged}
            for stale in (k for k, v in execution.tags.items() if v is None and k in run.data.tags):
                client.delete_tag(run_id, stale)
        timestamp = execution.ended_ms or execution.started_ms or 0
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, timestamp, 0) for k, v in sorted(execution.metrics.items())],
            params=[Param(k, v) for k, v in sorted(new_params.items())],
            tags=[RunTag(k, v) for k, v in sorted(present.items())],
        )
        for artifact_path, path in files.items():
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=artifact_path)
            else:
                client.log_artifact(run_id, str(path), artifact_path=artifact_path)
        with tempfile.TemporaryDirectory(prefix="modelwerk-execution-") as folder:
            document = Path(folder) / "execution.json"
            document.write_text(json.dumps(execution.document, indent=1, default=str), encoding="utf-8")
            client.log_artifact(run_id, str(document))
        status = RUN_STATUS.get(execution.status)
        if status:
            client.set_terminated(run_id, status, end_time=execution.ended_ms)
        else:
            client.update_run(run_id, status="RUNNING")
    log.debug("execution %s logged as MLflow run %s at %s", execution.execution_arn, run_id, _display(uri))
    return run_id


def list_runs(use_case: str, *, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """The runs of a use case, newest first, as plain dicts (the CLI's ``runs list --json``).

    Each has ``run_id``, ``execution_id``, ``execution_arn``, ``status``, ``started_at``, ``ended_at`` (ISO-8601),
    ``snapshot_id``, ``git_commit``, ``model_package_arn``, ``failure_reason``, ``params`` and ``metrics``.
    An unknown use case raises NotFoundError naming the known ones.

    Example
    -------
    >>> [r["metrics"].get("f1") for r in modelwerk.tracking.list_runs("pump-health")]
    """
    _check_use_case(use_case)
    uri = _uri(tracking_uri)
    records: list[dict[str, Any]] = []
    with _client(uri) as client:
        experiment_id = _experiment_id(client, uri, use_case, create=False)
        if experiment_id is None:
            return records
        token = None
        while True:
            page = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1000,
                                      page_token=token)
            records.extend(_as_record(run) for run in page)
            token = page.token
            if not token:
                break
    return records


def runs(use_case: str, *, tracking_uri: str | None = None) -> "pandas.DataFrame":
    """Compare the pipeline executions of a use case: one row per execution, newest first.

    Columns: ``run_id``, ``execution_id``, ``execution_arn``, ``status``, ``started_at``, ``ended_at`` (UTC
    timestamps), ``snapshot_id``, ``git_commit``, ``model_package_arn``, ``failure_reason``, then ``params.<name>``
    and ``metrics.<name>`` (evaluation metrics, and ``metrics.step_seconds.<step>``). No runs yet: an empty frame with
    the fixed columns.

    Example
    -------
    >>> frame = modelwerk.runs("pump-health")
    >>> frame[["execution_id", "status", "metrics.f1"]].head()
    """
    import pandas as pd

    records = list_runs(use_case, tracking_uri=tracking_uri)
    params = sorted({k for r in records for k in r["params"]})
    metrics = sorted({k for r in records for k in r["metrics"]})
    rows = [{**{c: r[c] for c in COLUMNS}, **{f"params.{k}": r["params"].get(k) for k in params},
             **{f"metrics.{k}": r["metrics"].get(k, math.nan) for k in metrics}} for r in records]
    columns = [*COLUMNS, *(f"params.{k}" for k in params), *(f"metrics.{k}" for k in metrics)]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("started_at", "ended_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


def _as_record(run: Any) -> dict[str, Any]:
    tags = run.data.tags

    def tag(name: str) -> str | None:
        return tags.get(f"{TAG_PREFIX}{name}")

    def iso(milliseconds: int | None) -> str | None:
        if milliseconds is None:
            return None
        return datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc).isoformat()

    return {
        "run_id": run.info.run_id,
        "execution_id": tag("execution_id") or run.info.run_name,
        "execution_arn": tag("execution_arn"),
        "status": tag("status") or run.info.status,
        "started_at": tag("started_at") or iso(run.info.start_time),
        "ended_at": tag("ended_at") or iso(run.info.end_time),
        "snapshot_id": tag("snapshot_id"),
        "git_commit": tag("git_commit"),
        "model_package_arn": tag("model_package_arn"),
        "failure_reason": tag("failure_reason"),
        "params": dict(sorted(run.data.params.items())),
        "metrics": dict(sorted(run.data.metrics.items())),
    }


def _check_use_case(use_case: str) -> None:
    """An unknown use case fails with the known ones; with no platform to ask, the tracking store answers alone."""
    from modelwerk import platform

    if not isinstance(use_case, str) or not _USE_CASE.match(use_case):
        raise ValidationError(f"a use case is a name like 'pump-health', not {use_case!r}")
    try:
        resolved = platform.resolve()
    except ConfigurationError as error:
        log.debug("use case %s not checked: %s", use_case, error)
        return
    resolved.contract(use_case)
