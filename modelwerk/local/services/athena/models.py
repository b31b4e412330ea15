"""Athena query executions: the workgroup's settings applied as Athena applies them, the statement run in DuckDB
over the caller's Glue catalog on a background thread, the results written where Athena writes them.

moto keeps the workgroups (``athena_backends``), which are read here; the executions are ours, one record per
query, kept in the server's state folder when final so that results stay readable after a restart.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelwerk.local.services._routing import AwsError
from modelwerk.local.services.athena import engine, sql
from modelwerk.local.services.athena.sql import SqlError, Statement

log = logging.getLogger("modelwerk.local.athena")

FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
ENGINE_VERSION = "Athena engine version 3"
_ROWS_KEPT = 16  # result sets held in memory; older ones are read back from their CSV
_NO_OUTPUT = ("No output location provided. An output location is required either through the Workgroup result "
              "configuration setting or as an API input.")


def invalid_request(message: str) -> AwsError:
    return AwsError("InvalidRequestException", message)


@dataclass
class Execution:
    """One query execution, in the members of Athena's ``QueryExecution``."""

    id: str
    account: str
    region: str
    query: str
    workgroup: str
    context: dict[str, str]
    result_configuration: dict[str, Any]
    engine_version: dict[str, str]
    parameters: list[str] | None
    token: str | None
    statement_type: str = "DML"
    substatement_type: str = "SELECT"
    state: str = "QUEUED"
    reason: str | None = None
    error: dict[str, Any] | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    completed: float | None = None
    scanned_bytes: int = 0
    output_location: str = ""
    manifest_location: str | None = None
    columns: list[dict[str, Any]] | None = None  # ColumnInfo; None: no result set (DDL, CTAS, UNLOAD)
    header: bool = True
    update_count: int = 0

    def describe(self) -> dict[str, Any]:
        """Athena's ``QueryExecution``."""
        status: dict[str, Any] = {"State": self.state, "SubmissionDateTime": _datetime(self.submitted)}
        if self.completed is not None:
            status["CompletionDateTime"] = _datetime(self.completed)
        if self.reason:
            status["StateChangeReason"] = self.reason
        if self.error:
            status["AthenaError"] = self.error
        now = self.completed if self.completed is not None else time.time()
        queued_until = self.started if self.started is not None else now
        statistics: dict[str, Any] = {
            "EngineExecutionTimeInMillis": int((now - queued_until) * 1000),
            "DataScannedInBytes": self.scanned_bytes,
            "TotalExecutionTimeInMillis": int((now - self.submitted) * 1000),
            "QueryQueueTimeInMillis": int((queued_until - self.submitted) * 1000),
            "ServicePreProcessingTimeInMillis": 0,
            "QueryPlanningTimeInMillis": 0,
            "ServiceProcessingTimeInMillis": 0,
            "ResultReuseInformation": {"ReusedPreviousResult": False},
        }
        if self.manifest_location:
            statistics["DataManifestLocation"] = self.manifest_location
        result_configuration = {k: v for k, v in self.result_configuration.items() if k != "OutputLocation"}
        if self.output_location:
            result_configuration["OutputLocation"] = self.output_location
        described: dict[str, Any] = {
            "QueryExecutionId": self.id, "Query": self.query, "StatementType": self.statement_type,
            "SubstatementType": self.substatement_type, "ResultConfiguration": result_configuration,
            "QueryExecutionContext": self.context, "Status": status, "Statistics": statistics,
            "WorkGroup": self.workgroup, "EngineVersion": self.engine_version,
            "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": False}},
        }
        if self.parameters:
            described["ExecutionParameters"] = self.parameters
        return described


def _datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _split_s3(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise SqlError(f"INVALID_INPUT: {url!r} is not an s3:// location")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


class AthenaQueries:
    """Every account's query executions, and the work of running them."""

    def __init__(self, context: Any):
        self.context = context
        self.executions: dict[str, Execution] = {}
        self.rows: OrderedDict[str, list[list[str | None]]] = OrderedDict()  # the latest results, kept at hand
        self.tokens: dict[tuple[str, str, str], str] = {}
        self.sessions: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.records = context.folder("athena", "executions")
        self._load()

    # -- records ------------------------------------------------------------------------------------------------
    def _load(self) -> None:
        for path in sorted(self.records.glob("*.json")):
            try:
                record = Execution(**json.loads(path.read_text()))
            except (ValueError, TypeError) as error:
                log.warning("query record %s unreadable: %s", path, error)
                continue
            self.executions[record.id] = record
            if record.token:
                self.tokens[(record.account, record.region, record.token)] = record.id

    def _save(self, execution: Execution) -> None:
        path = self.records / f"{execution.id}.json"
        path.write_text(json.dumps(asdict(execution), default=str))

    # -- start --------------------------------------------------------------------------------------------------
    def start(self, account: str, region: str, params: dict[str, Any]) -> str:
        """``StartQueryExecution``: the execution is QUEUED and runs on a background thread."""
        token = params.get("ClientRequestToken")
        with self.lock:
            if token and (account, region, token) in self.tokens:
                return self.tokens[(account, region, token)]
        query = params["QueryString"]
        if not query.strip():
            raise invalid_request("Query string cannot be empty")
        name = params.get("WorkGroup") or "primary"
        workgroup = self._workgroup(account, region, name)
        configuration = workgroup.configuration or {}
        result_configuration = _result_configuration(configuration, params.get("ResultConfiguration") or {})
        if not result_configuration.get("OutputLocation"):
            raise invalid_request(_NO_OUTPUT)
        if not result_configuration["OutputLocation"].startswith("s3://"):
            raise invalid_request(f"The output location {result_configuration['OutputLocation']} is not an S3 "
                                  "location (s3://bucket/prefix/)")
        selected = (configuration.get("EngineVersion") or {}).get("SelectedEngineVersion") or "AUTO"
        context = {k: v for k, v in (params.get("QueryExecutionContext") or {}).items() if v}
        execution = Execution(
            id=str(uuid.uuid4()), account=account, region=region, query=query, workgroup=name,
            context=context, result_configuration=result_configuration,
            engine_version={"SelectedEngineVersion": selected, "EffectiveEngineVersion": ENGINE_VERSION},
            parameters=params.get("ExecutionParameters") or None, token=token)
        try:
            statement = sql.parse(sql.bind(query, execution.parameters))
            execution.statement_type, execution.substatement_type = statement.kind, statement.substatement
        except SqlError:
            statement = None  # the run reports it as Athena does: a FAILED execution
        with self.lock:
            self.executions[execution.id] = execution
            if token:
                self.tokens[(account, region, token)] = execution.id
        self.context.spawn(f"athena-query-{execution.id}", self._run, execution, statement)
        return execution.id

    @staticmethod
    def _workgroup(account: str, region: str, name: str) -> Any:
        from moto.athena.models import athena_backends

        workgroup = athena_backends[account][region].work_groups.get(name)
        if workgroup is None:
            raise invalid_request(f"WorkGroup {name} is not found.")
        if getattr(workgroup, "state", "ENABLED") == "DISABLED":
            raise invalid_request(f"WorkGroup {name} is disabled.")
        return workgroup

    # -- read ---------------------------------------------------------------------------------------------------
    def get(self, account: str, region: str, execution_id: str) -> Execution:
        execution = self.executions.get(execution_id)
        if execution is None or (execution.account, execution.region) != (account, region):
            raise invalid_request(f"QueryExecution {execution_id} was not found")
        return execution

    def list(self, account: str, region: str, workgroup: str) -> list[str]:
        with self.lock:
            mine = [e for e in self.executions.values()
                    if (e.account, e.region, e.workgroup) == (account, region, workgroup)]
        return [e.id for e in sorted(mine, key=lambda e: e.submitted, reverse=True)]

    def stop(self, account: str, region: str, execution_id: str) -> None:
        """``StopQueryExecution``: a query not yet final is CANCELLED and its DuckDB work interrupted."""
        execution = self.get(account, region, execution_id)
        with self.lock:
            if execution.state in FINAL_STATES:
                return
            execution.state, execution.completed = "CANCELLED", time.time()
            execution.reason = "Query cancelled by user"
        self.context.spawn(f"athena-stop-{execution_id}", self._interrupt, execution_id)
        self._save(execution)

    def _interrupt(self, execution_id: str) -> None:
        """DuckDB's interrupt reaches only a running statement: repeat it until the run lets go of its connection."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.lock:
                session = self.sessions.get(execution_id)
            if session is None:
                return
            session.connection.interrupt()
            time.sleep(0.05)

    def close(self) -> None:
        """The server stops: interrupt every running statement so that its thread ends."""
        with self.lock:
            sessions = list(self.sessions.values())
        for session in sessions:
            session.connection.interrupt()

    def results(self, execution: Execution) -> tuple[list[dict[str, Any]], list[list[str | None]]]:
        """(ColumnInfo, rows with the header first where Athena gives one) of a SUCCEEDED execution."""
        if execution.state != "SUCCEEDED":
            if execution.state in FINAL_STATES:
                raise invalid_request(f"Query did not finish successfully. Final query state: {execution.state}")
            raise invalid_request(f"Query has not yet finished. Current state: {execution.state}")
        columns = execution.columns or []
        rows = self.rows.get(execution.id)
        if rows is None:
            rows = self._read_back(execution) if execution.columns is not None else []
            self._keep_rows(execution.id, rows)
        if execution.header and execution.columns is not None:
            return columns, [[c["Name"] for c in columns], *rows]
        return columns, rows

    def _keep_rows(self, execution_id: str, rows: list[list[str | None]]) -> None:
        with self.lock:
            self.rows[execution_id] = rows
            while len(self.rows) > _ROWS_KEPT:
                self.rows.popitem(last=False)

    def _read_back(self, execution: Execution) -> list[list[str | None]]:
        """Rows of a result file of an older query (the CSV keeps nulls apart: they are unquoted)."""
        from botocore.exceptions import ClientError

        bucket, key = _split_s3(execution.output_location)
        try:
            body = self._s3(execution).get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except ClientError as error:
            raise invalid_request(f"The query results at {execution.output_location} cannot be read: "
                                  f"{error.response['Error'].get('Message', error)}") from None
        lines = body.splitlines()[1:] if execution.header else body.splitlines()
        return [_parse_csv_line(line) for line in lines]

    # -- run ----------------------------------------------------------------------------------------------------
    def _s3(self, execution: Execution) -> Any:
        return self.context.client("s3", execution.account, execution.region)

    def _glue(self, execution: Execution) -> Any:
        return self.context.client("glue", execution.account, execution.region)

    def _filesystem(self, execution: Execution) -> Any:
        from pyarrow import fs

        credentials = self.context.credentials(execution.account, execution.region)
        return fs.S3FileSystem(endpoint_override=self.context.endpoint_url, scheme="http",
                               access_key=credentials["AWS_ACCESS_KEY_ID"],
                               secret_key=credentials["AWS_SECRET_ACCESS_KEY"],
                               session_token=credentials.get("AWS_SESSION_TOKEN"), region=execution.region)

    def _run(self, execution: Execution, statement: Statement | None) -> None:
        with self.lock:
            if execution.state != "QUEUED":
                return
            execution.state, execution.started = "RUNNING", time.time()
        try:
            if statement is None:
                statement = sql.parse(sql.bind(execution.query, execution.parameters))
            rows = self._execute(execution, statement)
        except (SqlError, engine.EngineError) as error:
            message = error.message if isinstance(error, engine.EngineError) else str(error)
            error_type = error.error_type if isinstance(error, engine.EngineError) else 1100
            self._finish(execution, "FAILED", reason=message,
                         error={"ErrorCategory": 2, "ErrorType": error_type, "Retryable": False,
                                "ErrorMessage": message})
            return
        except Exception as error:  # noqa: BLE001 - a failure of the local engine is Athena's internal error
            log.exception("query %s failed", execution.id)
            first = str(error).splitlines()[0] if str(error) else ""
            message = f"INTERNAL_ERROR_QUERY_ENGINE: {type(error).__name__}: {first}"
            self._finish(execution, "FAILED", reason=message,
                         error={"ErrorCategory": 1, "ErrorType": 200, "Retryable": False, "ErrorMessage": message})
            return
        finally:
            session = self.sessions.pop(execution.id, None)
            if session is not None:
                session.connection.close()
        self._keep_rows(execution.id, rows)
        self._finish(execution, "SUCCEEDED")

    def _finish(self, execution: Execution, state: str, *, reason: str | None = None,
                error: dict[str, Any] | None = None) -> None:
        with self.lock:
            if execution.state == "CANCELLED":
                return
            execution.state, execution.reason, execution.error = state, reason, error
            execution.completed = time.time()
        self._save(execution)

    def _execute(self, execution: Execution, statement: Statement) -> list[list[str | None]]:
        catalog = execution.context.get("Catalog")
        if catalog and catalog.lower() != engine.CATALOG:
            raise SqlError(f"CATALOG_NOT_FOUND: Catalog '{catalog}' does not exist; the embedded Athena queries the "
                           "Glue catalog of the account (AwsDataCatalog)")
        kind = statement.substatement
        if kind == "SELECT":
            return self._select(execution, statement)
        if kind == "CREATE_TABLE_AS_SELECT":
            return self._ctas(execution, statement)
        if kind == "UNLOAD":
            return self._unload(execution, statement)
        if kind == "INSERT":
            return self._insert(execution, statement)
        if kind == "DROP_TABLE":
            return self._drop_table(execution, statement)
        if kind in ("CREATE_DATABASE", "DROP_DATABASE"):
            return self._database(execution, statement)
        if kind in ("SHOW_TABLES", "SHOW_DATABASES"):
            return self._show(execution, statement)
        raise SqlError(f"NOT_SUPPORTED: the embedded Athena runs SELECT, CREATE TABLE AS, INSERT INTO, UNLOAD, "
                       f"DROP TABLE, CREATE/DROP DATABASE and SHOW TABLES/DATABASES; {kind} statements are not run "
                       "locally (create tables through the Glue API, e.g. awswrangler's "
                       "wr.s3.to_parquet(dataset=True))")

    def _query(self, execution: Execution, query: str) -> tuple[list[Any], Any]:
        """Run ``query`` in DuckDB: (description, Arrow table)."""
        import duckdb

        database = execution.context.get("Database")
        session = engine.connect(self._glue(execution), self._filesystem(execution), database, query)
        with self.lock:
            if execution.state == "CANCELLED" or self.context.stopping.is_set():
                session.connection.close()
                raise SqlError("Query cancelled by user")
            self.sessions[execution.id] = session
        try:
            relation = session.connection.sql(query)
            if relation is None:
                raise SqlError("NOT_SUPPORTED: the statement returns no rows; the embedded Athena runs queries here")
            names = engine.athena_names(session.connection, query, list(relation.columns))
            description = list(zip(names, relation.types))
            table = relation.to_arrow_table()
        except duckdb.Error as error:
            if execution.state == "CANCELLED":
                raise SqlError("Query cancelled by user") from None
            raise engine.engine_error(error, database) from None
        if execution.state == "CANCELLED":  # nothing is written for a query stopped while it ran
            raise SqlError("Query cancelled by user")
        execution.scanned_bytes = session.scanned_bytes
        return description, table

    def _output_prefix(self, execution: Execution) -> str:
        return execution.result_configuration["OutputLocation"].rstrip("/")

    def _put(self, execution: Execution, url: str, body: bytes, content_type: str = "") -> None:
        """Write one object as Athena writes results: encrypted as the result configuration says."""
        bucket, key = _split_s3(url)
        args: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body}
        if content_type:
            args["ContentType"] = content_type
        encryption = execution.result_configuration.get("EncryptionConfiguration") or {}
        option = encryption.get("EncryptionOption")
        if option == "SSE_S3":
            args["ServerSideEncryption"] = "AES256"
        elif option == "SSE_KMS":
            args["ServerSideEncryption"] = "aws:kms"
            if encryption.get("KmsKey"):
                args["SSEKMSKeyId"] = encryption["KmsKey"]
        elif option == "CSE_KMS":
            raise SqlError("NOT_SUPPORTED: CSE_KMS (client-side) result encryption is not available in the embedded "
                           "Athena; configure SSE_KMS or SSE_S3")
        owner = execution.result_configuration.get("ExpectedBucketOwner")
        if owner:
            args["ExpectedBucketOwner"] = owner
        try:
            self._s3(execution).put_object(**args)
        except Exception as error:  # noqa: BLE001 - Athena's own words for a result it cannot write
            raise engine.EngineError(f"Unable to write the query results to {url}: {error}", 401) from None

    def _select(self, execution: Execution, statement: Statement) -> list[list[str | None]]:
        description, table = self._query(execution, statement.query)
        names = [d[0] for d in description]
        columns = [engine.column_info(name, d[1]) for name, d in zip(names, description)]
        data = [column.to_pylist() for column in table.columns]
        rows = [[engine.text(values[i]) for values in data] for i in range(table.num_rows)]
        body = engine.csv_line(names) + "".join(engine.csv_line(row) for row in rows)
        location = f"{self._output_prefix(execution)}/{execution.id}.csv"
        self._put(execution, location, body.encode("utf-8"), "text/csv")
        self._put(execution, f"{location}.metadata", json.dumps({"ColumnInfo": columns}).encode("utf-8"))
        execution.output_location, execution.columns, execution.header = location, columns, True
        return rows

    def _text_result(self, execution: Execution, lines: list[str]) -> None:
        location = f"{self._output_prefix(execution)}/{execution.id}.txt"
        self._put(execution, location, "".join(f"{line}\n" for line in lines).encode("utf-8"), "text/plain")
        execution.output_location = location

    def _show(self, execution: Execution, statement: Statement) -> list[list[str | None]]:
        glue = self._glue(execution)
        if statement.substatement == "SHOW_DATABASES":
            names = [d["Name"] for page in glue.get_paginator("get_databases").paginate() for d in page["DatabaseList"]]
            column = "database_name"
        else:
            database = (statement.table.database if statement.table else None) or execution.context.get("Database")
            if not database:
                raise SqlError("SCHEMA_NOT_FOUND: no database given: SHOW TABLES IN <database>, or a "
                               "QueryExecutionContext Database")
            try:
                names = [t["Name"] for page in glue.get_paginator("get_tables").paginate(DatabaseName=database)
                         for t in page["TableList"]]
            except glue.exceptions.EntityNotFoundException:
                raise SqlError(f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist") from None
            column = "tab_name"
        names = sorted(names)
        self._text_result(execution, names)
        execution.columns = [{"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": column,
                              "Label": column, "Type": "string", "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN",
                              "CaseSensitive": False}]
        execution.header = False
        return [[name] for name in names]

    def _drop_table(self, execution: Execution, statement: Statement) -> list[list[str | None]]:
        """DROP TABLE removes the catalog entry; the data stays, as for Athena's external tables."""
        glue = self._glue(execution)
        table = statement.table
        database = table.database or execution.context.get("Database")
        try:
            glue.delete_table(DatabaseName=database, Name=table.table)
        except glue.exceptions.EntityNotFoundException:
            if not statement.if_exists:
                raise SqlError(f"TABLE_NOT_FOUND: Table '{engine.CATALOG}.{database}.{table.table}' does not "
                               "exist") from None
        self._text_result(execution, [])
        return []

    def _database(self, execution: Execution, statement: Statement) -> list[list[str | None]]:
        glue = self._glue(execution)
        name = statement.table.database
        if statement.substatement == "CREATE_DATABASE":
            try:
                glue.create_database(DatabaseInput={"Name": name})
            except glue.exceptions.AlreadyExistsException:
                if not statement.if_exists:
                    raise SqlError(f"Database {name} already exists") from None
        else:
            try:
                glue.delete_database(Name=name)
            except glue.exceptions.EntityNotFoundException:
                if not statement.if_exists:
                    raise SqlError(f"SCHEMA_NOT_FOUND: Schema '{name}' does not exist") from None
        self._text_result(execution, [])
        return []

    # -- writing tables -----------------------------------------------------------------------------------------
    def _write_parquet(self, execution: Execution, table: Any, location: str, partitioned_by: list[str],
                       compression: str) -> list[str]:
        """Write ``table`` as Parquet files under ``location`` (Hive partitions), encrypted as the results are;
        the written objects' URLs."""
        import pyarrow.dataset as ds

        written: list[str] = []
        with tempfile.TemporaryDirectory(prefix="athena-") as folder:
            if table.num_rows:
                partitioning = ds.partitioning(table.select(partitioned_by).schema, flavor="hive") \
                    if partitioned_by else None
                ds.write_dataset(table, folder, format="parquet", partitioning=partitioning,
                                 basename_template=f"{execution.id}_{{i}}",
                                 file_options=ds.ParquetFileFormat().make_write_options(compression=compression),
                                 existing_data_behavior="overwrite_or_ignore")
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    url = f"{location.rstrip('/')}/{path.relative_to(folder).as_posix()}"
                    self._put(execution, url, path.read_bytes())
                    written.append(url)
        return written

    def _manifest(self, execution: Execution, prefix: str, files: list[str], columns: list[dict[str, Any]]) -> None:
        """The data manifest (one S3 path a line) and the metadata Athena writes beside it."""
        manifest = f"{prefix}-manifest.csv"
        self._put(execution, manifest, "".join(f"{f}\n" for f in files).encode("utf-8"), "text/csv")
        self._put(execution, f"{prefix}.metadata", json.dumps({"ColumnInfo": columns}).encode("utf-8"))
        execution.manifest_location = manifest

    def _ctas(self, execution: Execution, statement: Statement) -> list[list[str | None]]:
        """CREATE TABLE AS: Parquet files under external_location (or the results location's ``tables/<id>/``),
        the Glue table and its partitions, and the data manifest."""
        props = statement.properties
        storage = str(props.get("format", "PARQUET")).upper()
        if storage != "PARQUET":
            raise SqlError(f"NOT_SUPPORTED: the embedded Athena writes CTAS tables as PARQUET, not {storage}")
        target = statement.table
        database = target.database or execution.context.get("Database")
        glue = self._glue(execution)
        try:
            glue.get_table(DatabaseName=database, Name=target.table)
            if statement.if_exists:
                self._text_result(execution, [])
                return []
            raise SqlError(f"TABLE_ALREADY_EXISTS: Table '{engine.CATALOG}.{database}.{target.table}' already exists")
        except glue.exceptions.EntityNotFoundException:
            pass
        try:
            glue.get_database(Name=database)
        except glue.exceptions.EntityNotFoundException:
            raise SqlError(f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist") from None
        prefix = f"{self._output_prefix(execution)}/tables/{execution.id}"
        enforced = self._enforced(execution)
        location = prefix if enforced or not props.get("external_location") else str(props["external_location"])
        location = location.rstrip("/")
        if not enforced and props.get("external_location") and self._has_objects(execution, location):
            raise SqlError(f"HIVE_PATH_ALREADY_EXISTS: Target directory for table '{database}.{target.table}' "
                           f"already exists: {location}. You may need to manually clean the data at location "
                           f"'{location}' before retrying.")
        description, table = self._query(execution, statement.query)
        names = [d[0] for d in description]
        if len(set(n.lower() for n in names)) != len(names):
            raise SqlError("Column name specified more than once")
        partitioned_by = [str(p).lower() for p in props.get("partitioned_by") or []]
        missing = [p for p in partitioned_by if p not in [n.lower() for n in names]]
        if missing:
            raise SqlError(f"Partition columns {missing} not present in the query's columns {names}")
        table = table.rename_columns([n.lower() for n in names])
        if not statement.with_data:
            table = table.slice(0, 0)
        compression = str(props.get("write_compression") or props.get("parquet_compression") or "GZIP").lower()
        files = self._write_parquet(execution, table, location, partitioned_by, compression)
        types = {name.lower(): d[1] for name, d in zip(names, description)}
        glue.create_table(DatabaseName=database, TableInput={
            "Name": target.table, "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE",
                           "has_encrypted_data": str(bool(execution.result_configuration.get(
                               "EncryptionConfiguration"))).lower()},
            "PartitionKeys": [{"Name": p, "Type": engine.hive_type(types[p])} for p in partitioned_by],
            "StorageDescriptor": {
                "Columns": [{"Name": n, "Type": engine.hive_type(t)} for n, t in types.items()
                            if n not in partitioned_by],
                "Location": f"{location}/",
                "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                              "Parameters": {"serialization.format": "1"}},
            }})
        if partitioned_by:
            self._register_partitions(glue, database, target.table, location, files, partitioned_by)
        columns = [engine.column_info(n, d[1]) for n, d in zip(names, description)]
        self._manifest(execution, prefix, files, columns)
        execution.output_location = prefix
        execution.update_count = table.num_rows
        return []

    def _insert(self, execution: Execution, statement: Statement) -> list[list[str | None]]:
        """INSERT INTO: the query's rows as new Parquet files under the table's location (and partitions)."""
        import pyarrow as pa

        glue = self._glue(execution)
        database = statement.table.database or execution.context.get("Database")
        try:
            found = glue.get_table(DatabaseName=database, Name=statement.table.table)["Table"]
        except glue.exceptions.EntityNotFoundException:
            raise SqlError(f"TABLE_NOT_FOUND: Table '{engine.CATALOG}.{database}.{statement.table.table}' does not "
                           "exist") from None
        if engine.table_format(found) != "parquet":
            raise SqlError("NOT_SUPPORTED: the embedded Athena inserts into Parquet tables only")
        descriptor = found["StorageDescriptor"]
        partitions = [p["Name"].lower() for p in found.get("PartitionKeys", [])]
        target = [(c["Name"].lower(), c["Type"])
                  for c in descriptor.get("Columns", []) + found.get("PartitionKeys", [])]
        description, result = self._query(execution, statement.query)
        listed = [c.lower() for c in statement.columns] or [name for name, _ in target]
        unknown = [c for c in listed if c not in dict(target)]
        if unknown or len(listed) != len(description):
            raise SqlError(f"Insert query has {len(description)} columns; the table "
                           f"{database}.{statement.table.table} takes {len(listed)} ({', '.join(listed)})"
                           + (f"; unknown columns: {unknown}" if unknown else ""))
        arrays = []
        for name, glue_type in target:
            wanted = engine.arrow_type(glue_type)
            if name in listed:
                column = result.column(listed.index(name))
                arrays.append(column.cast(wanted) if wanted is not None else column)
            else:
                arrays.append(pa.nulls(result.num_rows, wanted or pa.string()))
        table = pa.table(arrays, names=[name for name, _ in target])
        location = descriptor["Location"].rstrip("/")
        files = self._write_parquet(execution, table, location, partitions, "gzip")
        if partitions:
            self._register_partitions(glue, database, statement.table.table, location, files, partitions,
                                      existing_ok=True)
        execution.update_count = table.num_rows
        self._text_result(execution, [])
        return []

    @staticmethod
    def _register_partitions(glue: Any, database: str, table: str, location: str, files: list[str],
                             partitioned_by: list[str], existing_ok: bool = False) -> None:
        from urllib.parse import unquote

        folders = sorted({f[len(location) + 1:].rsplit("/", 1)[0] for f in files})
        described = glue.get_table(DatabaseName=database, Name=table)["Table"]["StorageDescriptor"]
        inputs = []
        for folder in folders:
            values = [unquote(part.split("=", 1)[1]) for part in folder.split("/")][:len(partitioned_by)]
            inputs.append({"Values": values, "StorageDescriptor": {**described, "Location": f"{location}/{folder}/"}})
        for start in range(0, len(inputs), 100):
            answer = glue.batch_create_partition(DatabaseName=database, TableName=table,
                                                 PartitionInputList=inputs[start:start + 100])
            failed = [e for e in answer.get("Errors", [])
                      if not (existing_ok and e["ErrorDetail"].get("ErrorCode") == "AlreadyExistsException")]
            if failed:
                raise SqlError(f"HIVE_METASTORE_ERROR: partitions not registered: {failed}")

    def _unload(self, execution: Execution, statement: Statement) -> list[list[str | None]]:
        """UNLOAD: the query's rows as Parquet files under the TO location, which must be empty, and a manifest."""
        props = statement.properties
        storage = str(props.get("format", "")).upper()
        if storage != "PARQUET":
            raise SqlError(f"NOT_SUPPORTED: the embedded Athena unloads as PARQUET only (format = 'PARQUET'), not "
                           f"{storage or 'TEXTFILE'}")
        location = statement.location.rstrip("/")
        if self._has_objects(execution, location):
            raise SqlError(f"HIVE_PATH_ALREADY_EXISTS: Target directory for table already exists: {location}/. "
                           "UNLOAD writes to an empty location.")
        description, table = self._query(execution, statement.query)
        names = [d[0] for d in description]
        table = table.rename_columns(names)
        partitioned_by = [str(p) for p in props.get("partitioned_by") or []]
        compression = str(props.get("compression") or "GZIP").lower()
        files = self._write_parquet(execution, table, location, partitioned_by, compression)
        prefix = f"{self._output_prefix(execution)}/{execution.id}"
        self._manifest(execution, prefix, files, [engine.column_info(n, d[1]) for n, d in zip(names, description)])
        execution.output_location = f"{location}/"
        execution.update_count = table.num_rows
        return []

    def _has_objects(self, execution: Execution, location: str) -> bool:
        bucket, key = _split_s3(location)
        listed = self._s3(execution).list_objects_v2(Bucket=bucket, Prefix=f"{key}/" if key else "", MaxKeys=1)
        return bool(listed.get("KeyCount"))

    def _enforced(self, execution: Execution) -> bool:
        try:
            workgroup = self._workgroup(execution.account, execution.region, execution.workgroup)
        except AwsError:
            return False
        return bool((workgroup.configuration or {}).get("EnforceWorkGroupConfiguration"))


def _result_configuration(workgroup: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
    """The result configuration a query runs with: the workgroup's when it enforces its configuration, else the
    request's members over the workgroup's."""
    own = dict(workgroup.get("ResultConfiguration") or {})
    if workgroup.get("EnforceWorkGroupConfiguration"):
        return {k: v for k, v in own.items() if v}
    merged = {**own, **{k: v for k, v in requested.items() if v}}
    return {k: v for k, v in merged.items() if v}


def _parse_csv_line(line: str) -> list[str | None]:
    """One line of a result CSV back into values: an unquoted empty field is a null."""
    values: list[str | None] = []
    i, n = 0, len(line)
    while i <= n:
        if i < n and line[i] == '"':
            j, chunk = i + 1, []
            while j < n:
                if line[j] == '"':
                    if j + 1 < n and line[j + 1] == '"':
                        chunk.append('"')
                        j += 2
                        continue
                    break
                chunk.append(line[j])
                j += 1
            values.append("".join(chunk))
            i = j + 2
        else:
            end = line.find(",", i)
            end = n if end < 0 else end
            values.append(line[i:end] or None)
            i = end + 1
        if i > n:
            break
    return values
