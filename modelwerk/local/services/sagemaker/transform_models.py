"""State and behaviour of the embedded SageMaker's transform jobs: what runs behind each job moto stores.

A job runs as SageMaker runs it, on a thread of the server: the model's container (the model's own or its model
package version's, as endpoints resolve it) served by ``InstanceCount`` processes of the serving container
(:func:`modelwerk.local.endpoints.start_fleet`, pinged before use, always stopped at the end); every input object
(``S3Prefix`` in key order, or a ``ManifestFile``; ``Gzip`` unpacked) split into records (``SplitType`` Line, or the
whole object); records filtered (``InputFilter``), sent in requests of up to ``MaxPayloadInMB`` (``MultiRecord``)
or one each (``SingleRecord``), at most ``MaxConcurrentTransforms`` in flight per instance, with ``ContentType``
and ``Accept``, each retried ``InvocationsMaxRetries`` times on a 5xx or no answer within
``InvocationsTimeoutInSeconds``; answers joined with their input (``JoinSource``), filtered (``OutputFilter``) and
written to ``<S3OutputPath>/<object key relative to the input prefix>.out`` (SSE-KMS with ``KmsKeyId``) in the job's
account. A record the model refuses fails the job, naming the object and line; a stopped job ends Stopped. With a
``DataCaptureConfig`` the job writes SageMaker's batch capture: manifests of its input and output objects under
``<DestinationS3Uri>/input|output/yyyy/mm/dd/hh/``.

Filters are the JSONPath subset SageMaker documents: for CSV ``$``, ``$[i]``, ``$[i,j,...]`` (negative indexes from
the end) and one slice ``$[a:b]`` (``b`` inclusive, as SageMaker's examples have it; either end may be left out);
for JSON ``$``, ``$.a.b`` and ``$['a','b']`` (after an optional ``$.a``). Anything else is refused when the job is
created.
"""

from __future__ import annotations

import csv
import gzip
import http.client
import io
import json
import logging
import os
import re
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

from modelwerk.core.capture import CsvFilter
from modelwerk.local.services._routing import AwsError

log = logging.getLogger("modelwerk.local")

STATE_CHANGE = "SageMaker Transform Job State Change"
IN_PROGRESS, COMPLETED, FAILED, STOPPING, STOPPED = "InProgress", "Completed", "Failed", "Stopping", "Stopped"
FINISHED = (COMPLETED, FAILED, STOPPED)
DEFAULT_PAYLOAD_MB = 6
MAX_PAYLOAD_MB = 100
DEFAULT_TIMEOUT_SECONDS = 600
DEFAULT_RETRIES = 3
CSV, JSON, JSONLINES = "text/csv", "application/json", "application/jsonlines"
_FORMATS = {"text/csv": CSV, "application/json": JSON, "application/jsonlines": JSONLINES,
            "application/x-jsonlines": JSONLINES}
_DOTTED = re.compile(r"^\$((?:\.[A-Za-z_][\w-]*)+)$")
_BRACKET = re.compile(r"^\$((?:\.[A-Za-z_][\w-]*)*)\[\s*('[^']+'(?:\s*,\s*'[^']+')*)\s*\]$")
_ROW = re.compile(r"\brow (\d+)\b")


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def job_arn(account: str, region: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:transform-job/{name.lower()}"


class JobFailed(Exception):
    """The job cannot go on; the message is its FailureReason."""


class JobStopped(Exception):
    """StopTransformJob was called while the job ran."""


# -- filters -----------------------------------------------------------------------------------------------------------


def media_format(media_type: str | None) -> str | None:
    return _FORMATS.get((media_type or "").split(";", 1)[0].strip().lower())


@dataclass(frozen=True)
class JsonPath:
    """A JSON JSONPath: the whole document, a dotted member, or some members of one (``$.a['x','y']``)."""

    path: tuple[str, ...] = ()
    members: tuple[str, ...] | None = None

    def select(self, document: Any) -> Any:
        value = document
        for name in self.path:
            if not isinstance(value, dict) or name not in value:
                raise KeyError(f"the record has no member {'.'.join(self.path)}")
            value = value[name]
        if self.members is None:
            return value
        if not isinstance(value, dict):
            raise KeyError(f"the record's {'.'.join(self.path) or 'root'} is not an object")
        return {name: value[name] for name in self.members if name in value}


def parse_filter(expression: str | None, fmt: str, what: str) -> CsvFilter | JsonPath | None:
    """The filter, None for ``$`` or none; a ValidationException for what the embedded SageMaker cannot evaluate."""
    text = (expression or "").strip()
    if text in ("", "$"):
        return None
    if fmt == CSV:
        try:
            return CsvFilter.parse(text)
        except ValueError:
            raise validation(f"{what} {expression!r} is not a JSONPath the embedded SageMaker evaluates for CSV: it "
                             "takes $, an index or indexes ($[0], $[0,2], $[-1]) or one slice ($[1:], $[:3], $[1:3])"
                             ) from None
    matched = _DOTTED.match(text)
    if matched:
        return JsonPath(path=tuple(matched.group(1).strip(".").split(".")))
    matched = _BRACKET.match(text)
    if matched:
        path = tuple(p for p in matched.group(1).strip(".").split(".") if p)
        return JsonPath(path=path, members=tuple(m.strip().strip("'") for m in matched.group(2).split(",")))
    raise validation(f"{what} {expression!r} is not a JSONPath the embedded SageMaker evaluates for JSON: it takes $, "
                     "$.member.member and $['a','b'] (optionally after $.member)")


def _csv_fields(line: str) -> list[str]:
    if '"' not in line:
        return line.split(",")
    return next(csv.reader([line], strict=True))


def _csv_line(fields: list[str]) -> str:
    if not any('"' in f or "," in f for f in fields):
        return ",".join(fields)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


# -- the job's request -------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """How a job reads, sends and writes its records (checked when it is created)."""

    content_type: str | None
    accept: str | None
    input_format: str | None
    output_format: str | None
    split_line: bool
    gzip: bool
    multi_record: bool
    payload_bytes: int
    concurrency: int
    instances: int
    assemble_line: bool
    join: bool
    input_filter: CsvFilter | JsonPath | None
    output_filter: CsvFilter | JsonPath | None
    timeout: float
    retries: int
    capture: dict[str, Any] | None

    @property
    def per_record(self) -> bool:
        """Whether each answer must be matched to its record (to join, filter or stamp it)."""
        return self.join or self.output_filter is not None or bool(self.capture and
                                                                     self.capture.get("GenerateInferenceId"))


def plan(params: dict[str, Any]) -> Plan:
    """The job's plan, or a ValidationException for a request the embedded SageMaker cannot run."""
    source = params["TransformInput"]["DataSource"]["S3DataSource"]
    if source["S3DataType"] not in ("S3Prefix", "ManifestFile"):
        raise validation(f"S3DataType {source['S3DataType']} is not supported for batch transform: use S3Prefix or "
                         "ManifestFile")
    split = params["TransformInput"].get("SplitType", "None")
    if split in ("RecordIO", "TFRecord"):
        raise validation(f"SplitType {split} is not run by the embedded SageMaker: its records are lines (Line) or "
                         "whole objects (None)")
    resources = params["TransformResources"]
    payload_mb = params.get("MaxPayloadInMB") or DEFAULT_PAYLOAD_MB
    if payload_mb > MAX_PAYLOAD_MB:
        raise validation(f"MaxPayloadInMB {payload_mb} is more than {MAX_PAYLOAD_MB}")
    strategy = params.get("BatchStrategy") or ("MultiRecord" if split == "Line" else "SingleRecord")
    content_type = params["TransformInput"].get("ContentType")
    output = params["TransformOutput"]
    accept = output.get("Accept")
    processing = params.get("DataProcessing") or {}
    join = processing.get("JoinSource", "None") == "Input"
    input_format, output_format = media_format(content_type), media_format(accept) or media_format(content_type)
    filtered = join or (processing.get("InputFilter") or "$").strip() != "$" or \
        (processing.get("OutputFilter") or "$").strip() != "$"
    if filtered:
        if input_format is None or output_format is None:
            raise validation("DataProcessing needs ContentType and Accept of text/csv, application/json or "
                             "application/jsonlines")
        if join and (input_format == CSV) != (output_format == CSV):
            raise validation(f"JoinSource Input joins records of one format: ContentType {content_type} and Accept "
                             f"{accept} differ")
        if input_format == CSV and split != "Line":
            raise validation("DataProcessing on CSV needs SplitType Line (each line is a record)")
    capture = params.get("DataCaptureConfig")
    client = params.get("ModelClientConfig") or {}
    return Plan(
        content_type=content_type, accept=accept, input_format=input_format, output_format=output_format,
        split_line=split == "Line", gzip=params["TransformInput"].get("CompressionType", "None") == "Gzip",
        multi_record=strategy == "MultiRecord" and split == "Line", payload_bytes=int(payload_mb * 2**20),
        concurrency=max(1, int(params.get("MaxConcurrentTransforms") or 1)),
        instances=int(resources["InstanceCount"]), assemble_line=output.get("AssembleWith", "None") == "Line",
        join=join, input_filter=parse_filter(processing.get("InputFilter"), input_format or CSV, "InputFilter"),
        output_filter=parse_filter(processing.get("OutputFilter"),
                                   (input_format if join else output_format) or CSV, "OutputFilter"),
        timeout=float(client.get("InvocationsTimeoutInSeconds") or DEFAULT_TIMEOUT_SECONDS),
        retries=int(client.get("InvocationsMaxRetries", DEFAULT_RETRIES)), capture=capture)


# -- records -----------------------------------------------------------------------------------------------------------


class Records:
    """One input object's records and how each is sent and written back.

    Records stay bytes from the object to the output: lines are split, filtered and joined with list and bytes
    operations over the whole object (no per-record decoding), as the object's size is what a job's time grows with.
    """

    def __init__(self, plan_: Plan, body: bytes, where: str):
        self.plan = plan_
        self.where = where
        if not body.isascii():
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as error:
                raise JobFailed(f"ClientError: {where} is not UTF-8 text (byte {error.start})") from None
        self.numbers: list[int] | None = None
        if plan_.split_line:
            lines = body.split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            if b"\r" in body or b"\n\n" in body or body.startswith(b"\n"):
                lines = [line.removesuffix(b"\r") for line in lines]
                self.numbers = [i + 1 for i, line in enumerate(lines) if line]
                lines = [line for line in lines if line]
            self.inputs = lines
        else:
            self.inputs = [body] if body else []
        self._quoted = b'"' in body
        sent = self._filtered()
        #: MultiRecord: the records to send, each ending with a newline (requests are slices of it); else one each.
        self.payload = (b"\n".join(sent) + b"\n" if sent else b"") if plan_.multi_record else b""
        self.sent = [] if plan_.multi_record else sent

    def line(self, index: int) -> int:
        return self.numbers[index] if self.numbers is not None else index + 1

    def _filtered(self) -> list[bytes]:
        selector = self.plan.input_filter
        if selector is None:
            return self.inputs
        if isinstance(selector, CsvFilter) and selector.drops_first and not self._quoted:
            sent = [line.partition(b",")[2] for line in self.inputs]
            if all(sent) or all(b"," in line for line in self.inputs):  # else select() names the one-column line
                return sent
        try:
            if isinstance(selector, CsvFilter):
                return [_csv_line(selector.select(_csv_fields(line.decode()))).encode() for line in self.inputs]
            return [json.dumps(selector.select(json.loads(line)), separators=(",", ":")).encode()
                    for line in self.inputs]
        except (IndexError, KeyError, ValueError, csv.Error):
            for index, line in enumerate(self.inputs):  # name the first record the filter cannot take
                try:
                    if isinstance(selector, CsvFilter):
                        selector.select(_csv_fields(line.decode()))
                    else:
                        selector.select(json.loads(line))
                except (IndexError, KeyError, ValueError, csv.Error) as error:
                    raise JobFailed(f"ClientError: InputFilter cannot be applied to {self.where}, line "
                                    f"{self.line(index)}: {error}") from None
            raise

    def batches(self) -> Iterator[tuple[int, int, bytes]]:
        """(first record, end record, request body) of each request: MultiRecord cuts the records, joined with
        newlines, at the last newline within ``MaxPayloadInMB``."""
        if not self.plan.multi_record:
            for index, record in enumerate(self.sent):
                yield index, index + 1, (record + b"\n" if self.plan.split_line else record)
            return
        payload = self.payload
        limit = self.plan.payload_bytes
        start, offset = 0, 0
        while offset < len(payload):
            cut = payload.rfind(b"\n", offset, offset + limit) + 1 if len(payload) - offset > limit else len(payload)
            if cut <= offset:
                raise JobFailed(f"ClientError: the record at {self.where}, line {self.line(start)} is larger than "
                                f"MaxPayloadInMB ({limit // 2**20} MB)")
            end = start + payload.count(b"\n", offset, cut)
            yield start, end, payload[offset:cut]
            start, offset = end, cut

    def assemble(self, start: int, end: int, answer: bytes, stamp: str | None) -> bytes:
        """The output of records ``start:end`` from the model's answer to them."""
        plan_ = self.plan
        if not plan_.per_record:
            if plan_.assemble_line and not answer.endswith(b"\n"):
                return answer + b"\n"
            return answer
        if plan_.split_line:
            outputs = answer.split(b"\n")
            if outputs and outputs[-1] == b"":
                outputs.pop()
        else:
            outputs = [answer.strip()]
        if len(outputs) != end - start:
            raise JobFailed(f"ClientError: the model answered {len(outputs)} line(s) for the {end - start} record(s) "
                            f"of {self.where}, lines {self.line(start)}-{self.line(end - 1)}; joining and filtering "
                            "need one answer line per record")
        csv_out = plan_.output_format == CSV if not plan_.join else plan_.input_format == CSV
        if csv_out and plan_.join and plan_.output_filter is None and stamp is None:
            return b"\n".join(map(b",".join, zip(self.inputs[start:end], outputs))) + b"\n"
        lines = []
        for offset, output in enumerate(outputs):
            index = start + offset
            try:
                lines.append(self._record(index, output.decode("utf-8"), csv_out, stamp))
            except (IndexError, KeyError, ValueError, csv.Error) as error:
                raise JobFailed(f"ClientError: OutputFilter cannot be applied to the output of {self.where}, line "
                                f"{self.line(index)}: {error}") from None
        return ("\n".join(lines) + "\n").encode("utf-8")

    def _record(self, index: int, output: str, csv_out: bool, stamp: str | None) -> str:
        """One output record; with ``stamp`` (GenerateInferenceId) a new inference id and the job's start time."""
        plan_ = self.plan
        inference = (str(uuid.uuid4()), stamp) if stamp else None
        source = self.inputs[index].decode("utf-8") if plan_.join else ""
        if csv_out:
            fields = (_csv_fields(source) if plan_.join else []) + _csv_fields(output)
            if plan_.output_filter is not None:
                fields = plan_.output_filter.select(fields)
            if inference:
                fields = [*fields, *inference]
            return _csv_line(fields)
        answer = json.loads(output)
        if plan_.join:
            document = json.loads(source)
            document = {**document, "SageMakerOutput": answer} if isinstance(document, dict) else \
                {"SageMakerInput": document, "SageMakerOutput": answer}
        else:
            document = answer
        if plan_.output_filter is not None:
            document = plan_.output_filter.select(document)
        if inference:
            base = document if isinstance(document, dict) else {"SageMakerOutput": document}
            document = {**base, "SageMakerInferenceId": inference[0], "SageMakerInferenceTime": inference[1]}
        return json.dumps(document, separators=(",", ":"))

    def rejected_line(self, start: int, end: int, message: str) -> str:
        """The line the container's message points at (``row N`` of the request), else the request's lines."""
        matched = _ROW.search(message)
        if matched and 0 < int(matched.group(1)) <= end - start:
            return f"line {self.line(start + int(matched.group(1)) - 1)}"
        if end - start == 1:
            return f"line {self.line(start)}"
        return f"lines {self.line(start)}-{self.line(end - 1)}"


# -- invocations -------------------------------------------------------------------------------------------------------


class Rejected(Exception):
    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Invoker:
    """Requests to the instances' ``/invocations``, one keep-alive connection per thread and instance."""

    def __init__(self, urls: list[str], plan_: Plan):
        self.urls = urls
        self.plan = plan_
        self.headers = {}
        if plan_.content_type:
            self.headers["Content-Type"] = plan_.content_type
        if plan_.accept:
            self.headers["Accept"] = plan_.accept
        self._local = threading.local()

    def _connection(self, url: str) -> http.client.HTTPConnection:
        connections = self._local.__dict__.setdefault("connections", {})
        connection = connections.get(url)
        if connection is None:
            parsed = urlparse(url)
            connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=self.plan.timeout)
            connections[url] = connection
        return connection

    def _drop(self, url: str) -> None:
        connection = self._local.__dict__.get("connections", {}).pop(url, None)
        if connection is not None:
            connection.close()

    def invoke(self, instance: int, body: bytes) -> bytes:
        url = self.urls[instance % len(self.urls)]
        failure = Rejected(None, "no answer")
        for _ in range(self.plan.retries + 1):
            try:
                connection = self._connection(url)
                connection.request("POST", "/invocations", body=body, headers=self.headers)
                response = connection.getresponse()
                answer = response.read()
            except TimeoutError:
                self._drop(url)
                failure = Rejected(None, f"the model did not answer within InvocationsTimeoutInSeconds "
                                         f"({self.plan.timeout:g} s)")
                continue
            except (OSError, http.client.HTTPException) as error:
                self._drop(url)
                failure = Rejected(None, f"the model's server did not answer ({type(error).__name__}: {error})")
                continue
            if response.status < 300:
                return answer
            failure = Rejected(response.status, _message(answer))
            if response.status < 500:
                break
        raise failure


def _message(answer: bytes) -> str:
    try:
        document = json.loads(answer)
        if isinstance(document, dict) and document.get("message"):
            return str(document["message"])
    except ValueError:
        pass
    return " ".join(answer.decode("utf-8", "replace").split())[:300] or "(empty body)"


# -- the job -----------------------------------------------------------------------------------------------------------


@dataclass
class TransformJob:
    account: str
    region: str
    name: str
    params: dict[str, Any]
    plan: Plan
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started: datetime | None = None
    ended: datetime | None = None
    modified: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    status: str = IN_PROGRESS
    failure_reason: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    #: Records, requests and objects done, for the job's log line and the tests.
    counts: dict[str, int] = field(default_factory=lambda: {"objects": 0, "records": 0, "requests": 0})
    #: Seconds from the job's start until its instances answered /ping ("ready") and until it completed ("done").
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return job_arn(self.account, self.region, self.name)

    def describe(self) -> dict[str, Any]:
        """DescribeTransformJob: what the request had, with the job's status and times."""
        answer: dict[str, Any] = {"TransformJobName": self.name, "TransformJobArn": self.arn,
                                  "TransformJobStatus": self.status, "ModelName": self.params["ModelName"],
                                  "CreationTime": self.created}
        for member in ("MaxConcurrentTransforms", "ModelClientConfig", "MaxPayloadInMB", "BatchStrategy",
                       "Environment", "TransformInput", "TransformOutput", "DataCaptureConfig", "TransformResources",
                       "DataProcessing", "ExperimentConfig"):
            if self.params.get(member) not in (None, {}):
                answer[member] = self.params[member]
        if self.failure_reason:
            answer["FailureReason"] = self.failure_reason[:1024]
        if self.started:
            answer["TransformStartTime"] = self.started
        if self.ended:
            answer["TransformEndTime"] = self.ended
        return answer


class TransformJobs:
    """Every account's transform jobs of one embedded AWS."""

    def __init__(self, context: Any):
        self.context = context
        self._jobs: dict[tuple[str, str, str], TransformJob] = {}
        self._lock = threading.Lock()

    def get(self, account: str, region: str, name: str) -> TransformJob | None:
        with self._lock:
            return self._jobs.get((account, region, name))

    def check(self, account: str, region: str, params: dict[str, Any]) -> Plan:
        """The job's plan, once its name is free and its model exists (before moto stores it)."""
        from moto.sagemaker.models import sagemaker_backends

        backend = sagemaker_backends[account][region]
        name = params["TransformJobName"]
        if name in backend.transform_jobs:
            raise AwsError("ResourceInUse", "Job name must be unique within an AWS account and region, and a job "
                                            f"with this name already exists ({job_arn(account, region, name)})")
        if params["ModelName"] not in backend._models:
            raise validation(f"Could not find model \"arn:aws:sagemaker:{region}:{account}:model/"
                             f"{params['ModelName'].lower()}\".")
        return plan(params)

    def create(self, account: str, region: str, params: dict[str, Any], plan_: Plan) -> TransformJob:
        job = TransformJob(account=account, region=region, name=params["TransformJobName"], params=params,
                           plan=plan_)
        with self._lock:
            self._jobs[(account, region, job.name)] = job
        self._set_status(job, IN_PROGRESS)
        self.context.spawn(f"transform-job-{job.name}", self._run, job)
        return job

    def stop(self, job: TransformJob) -> None:
        if job.status in FINISHED:
            raise validation(f"Transform job {job.arn} is {job.status}; only a job in progress can be stopped.")
        if job.status == IN_PROGRESS:
            job.stop.set()
            self._set_status(job, STOPPING)

    def stop_all(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop.set()

    # -- running ------------------------------------------------------------------------------------------------------
    def _run(self, job: TransformJob) -> None:
        """Run the job: its instances start while the first input is read; each next input is read, and each output
        written, while the instances score the current one (objects stay in order, one of each at a time)."""
        from modelwerk.local import endpoints as fleets

        job.started = datetime.now(timezone.utc)
        clock = time.perf_counter()
        pids: list[int] = []
        background = ThreadPoolExecutor(max_workers=3, thread_name_prefix=f"transform-{job.name}-io")
        width = job.plan.concurrency * job.plan.instances
        requests = ThreadPoolExecutor(max_workers=width, thread_name_prefix=f"transform-{job.name}")
        try:
            starting = background.submit(self._start_instances, job, pids)
            s3 = self.context.client("s3", job.account, job.region)
            objects = self._inputs(job, s3)
            reading = background.submit(self._read, job, s3, objects[0][0]) if objects else None
            invoker = Invoker(starting.result(), job.plan)
            job.seconds["ready"] = time.perf_counter() - clock
            written: list[str] = []
            writing: Future | None = None
            for number, (source_uri, relative) in enumerate(objects):
                records = reading.result()
                if number + 1 < len(objects):
                    reading = background.submit(self._read, job, s3, objects[number + 1][0])
                self._check_stopped(job)
                output = self._transform_object(job, invoker, requests, source_uri, records)
                del records
                if writing is not None:
                    written.append(writing.result())
                writing = background.submit(self._write, job, s3, relative, output)
            if writing is not None:
                written.append(writing.result())
            if job.plan.capture:
                self._capture(job, s3, objects, written)
            self._check_stopped(job)
            job.seconds["done"] = time.perf_counter() - clock
            self._finish(job, COMPLETED, None)
        except JobStopped:
            self._finish(job, STOPPED, None)
        except JobFailed as error:
            self._finish(job, STOPPED if job.stop.is_set() else FAILED, None if job.stop.is_set() else str(error))
        except Exception as error:  # noqa: BLE001 - whatever broke is the job's FailureReason, never a hang
            log.exception("transform job %s broke", job.name)
            self._finish(job, FAILED, f"InternalServerError: {type(error).__name__}: {error}")
        finally:
            requests.shutdown(wait=True, cancel_futures=True)
            background.shutdown(wait=True, cancel_futures=True)  # an instance still starting is stopped below
            for pid in pids:
                fleets.stop_process(pid)

    def _check_stopped(self, job: TransformJob) -> None:
        if job.stop.is_set():
            raise JobStopped()

    def _start_instances(self, job: TransformJob, pids: list[int]) -> list[str]:
        from modelwerk.local import endpoints as fleets
        from modelwerk.local.services.sagemaker.endpoint_models import model_container, read_s3

        model = job.params["ModelName"]
        try:
            container = model_container(self.context, job.account, job.region, model)
            if container.mode == "MultiModel":
                raise ValueError(f"model {model} is MultiModel; batch transform serves single models")
            if not container.model_data_url:
                raise ValueError(f"model {model} has no ModelDataUrl: the serving container loads its model from a "
                                 "model.tar.gz in S3")
            workdir = self.context.folder("transform-jobs", job.account, job.region, job.name)
            model_dir = fleets.extract_model(read_s3(self.context, job.account, job.region,
                                                     container.model_data_url), workdir / "model")
        except Exception as error:  # noqa: BLE001 - the model cannot be had: the job's failure
            raise JobFailed(f"ClientError: {_reason(error)}") from None
        plan_ = job.plan
        environment = {**container.environment, **(job.params.get("Environment") or {}),
                       **self.context.credentials(job.account, job.region),
                       "MODELWERK_MODEL_DIR": str(model_dir), "SAGEMAKER_BATCH": "true",
                       "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(plan_.payload_bytes // 2**20),
                       "SAGEMAKER_BATCH_STRATEGY": "MULTI_RECORD" if plan_.multi_record else "SINGLE_RECORD",
                       "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": str(plan_.concurrency)}
        urls = []
        for instance in range(plan_.instances):
            self._check_stopped(job)
            try:
                started = fleets.start_fleet(root=self.context.root, workdir=workdir, endpoint=job.name,
                                             fleet=f"instance-{instance + 1}", environment=environment,
                                             inherit_aws=False)
            except Exception as error:  # noqa: BLE001 - a model that does not become ready fails the job
                raise JobFailed(f"ClientError: the model did not become ready: {_reason(error)}") from None
            pids.append(started.pid)
            urls.append(started.url)
        return urls

    def _inputs(self, job: TransformJob, s3: Any) -> list[tuple[str, str]]:
        """(object URI, path relative to the input) of every input object, in order."""
        from botocore.exceptions import ClientError

        source = job.params["TransformInput"]["DataSource"]["S3DataSource"]
        uri = source["S3Uri"]
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        try:
            if source["S3DataType"] == "ManifestFile":
                manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict) \
                        or "prefix" not in manifest[0]:
                    raise JobFailed(f"ClientError: the manifest {uri} is not [{{\"prefix\": ...}}, \"key\", ...]")
                prefix = str(manifest[0]["prefix"])
                return [(prefix + str(relative), str(relative)) for relative in manifest[1:]]
            folder = key[:key.rfind("/") + 1]
            found = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                found += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        except ClientError as error:
            raise JobFailed(f"ClientError: the input {uri} cannot be read: "
                            f"{error.response.get('Error', {}).get('Code', error)}") from None
        except ValueError as error:
            raise JobFailed(f"ClientError: the manifest {uri} is not JSON: {error}") from None
        if not found:
            raise JobFailed(f"ClientError: no objects under the input {uri}")
        return [(f"s3://{bucket}/{k}", k[len(folder):]) for k in sorted(found)]

    def _read(self, job: TransformJob, s3: Any, source_uri: str) -> Records:
        """The records of one input object (read, unpacked, split and filtered)."""
        from botocore.exceptions import ClientError

        self._check_stopped(job)
        bucket, _, key = source_uri.removeprefix("s3://").partition("/")
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            raise JobFailed(f"ClientError: the input object {source_uri} cannot be read: "
                            f"{error.response.get('Error', {}).get('Code', error)}") from None
        if job.plan.gzip:
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error) as error:
                raise JobFailed(f"ClientError: {source_uri} is not gzip (CompressionType Gzip): {error}") from None
        return Records(job.plan, body, source_uri)

    def _transform_object(self, job: TransformJob, invoker: Invoker, pool: ThreadPoolExecutor, source_uri: str,
                          records: Records) -> bytes:
        """The output of one input object: its requests, at most ``MaxConcurrentTransforms`` per instance in flight
        (and as many more ready), answers assembled in order."""
        plan_ = job.plan
        stamp = (job.started or job.created).strftime("%Y-%m-%dT%H:%M:%SZ") \
            if plan_.capture and plan_.capture.get("GenerateInferenceId") else None
        parts: list[bytes] = []
        width = plan_.concurrency * len(invoker.urls)
        pending: deque[tuple[int, int, Future]] = deque()

        def collect() -> None:
            start, end, future = pending.popleft()
            try:
                answer = future.result()
            except Rejected as rejected:
                status = f"{rejected.status}" if rejected.status else "no answer"
                raise JobFailed(f"ClientError: the model refused {source_uri}, "
                                f"{records.rejected_line(start, end, rejected.message)} ({status}): "
                                f"{rejected.message}") from None
            parts.append(records.assemble(start, end, answer, stamp))
            job.counts["records"] += end - start
            job.counts["requests"] += 1

        try:
            for number, (start, end, body) in enumerate(records.batches()):
                self._check_stopped(job)
                pending.append((start, end, pool.submit(invoker.invoke, number, body)))
                while len(pending) >= 2 * width or (pending and pending[0][2].done()):
                    collect()
            while pending:
                collect()
        finally:
            for _, _, future in pending:
                future.cancel()
        return b"".join(parts)

    def _write(self, job: TransformJob, s3: Any, relative: str, output: bytes) -> str:
        """Put one object's output at ``<S3OutputPath>/<relative>.out``; its URI."""
        target = job.params["TransformOutput"]
        out_bucket, _, out_prefix = target["S3OutputPath"].removeprefix("s3://").partition("/")
        out_key = f"{out_prefix.rstrip('/')}/{relative}.out" if out_prefix.strip("/") else f"{relative}.out"
        self._put(s3, out_bucket, out_key, output, target.get("KmsKeyId"))
        job.counts["objects"] += 1
        return f"s3://{out_bucket}/{out_key}"

    def _put(self, s3: Any, bucket: str, key: str, body: bytes, kms_key: str | None) -> None:
        from botocore.exceptions import ClientError

        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        except ClientError as error:
            raise JobFailed(f"ClientError: s3://{bucket}/{key} cannot be written: "
                            f"{error.response.get('Error', {}).get('Code', error)}") from None

    def _capture(self, job: TransformJob, s3: Any, objects: list[tuple[str, str]], written: list[str]) -> None:
        """SageMaker's batch capture: a manifest of the input objects and one of the output objects (not copies),
        under ``<DestinationS3Uri>/input|output/yyyy/mm/dd/hh/<job name>.json`` (the hour the job started), written by
        :mod:`modelwerk.core.capture` as the drift monitor reads them."""
        from modelwerk.core.capture import BATCH_INPUT, BATCH_OUTPUT, batch_manifest, batch_manifest_key

        capture = job.plan.capture or {}
        bucket, _, prefix = capture["DestinationS3Uri"].removeprefix("s3://").partition("/")
        for side, uris in ((BATCH_INPUT, [uri for uri, _ in objects]), (BATCH_OUTPUT, written)):
            common = _common_prefix(uris)
            key = batch_manifest_key(prefix, side, job.started or job.created, unique=job.name)
            self._put(s3, bucket, key, batch_manifest(common, (uri[len(common):] for uri in uris)),
                      capture.get("KmsKeyId"))

    # -- status -------------------------------------------------------------------------------------------------------
    def _finish(self, job: TransformJob, status: str, reason: str | None) -> None:
        job.ended = datetime.now(timezone.utc)
        job.failure_reason = reason
        timing = "".join(f", {what} after {seconds:.2f} s" for what, seconds in job.seconds.items())
        log.info("transform job %s %s: %d object(s), %d record(s), %d request(s)%s%s", job.name, status,
                 job.counts["objects"], job.counts["records"], job.counts["requests"], timing,
                 f": {reason}" if reason else "")
        self._set_status(job, status)

    def _set_status(self, job: TransformJob, status: str) -> None:
        from moto.sagemaker.models import sagemaker_backends

        job.status = status
        job.modified = datetime.now(timezone.utc)
        stored = sagemaker_backends[job.account][job.region].transform_jobs.get(job.name)
        if stored is not None:  # moto's record answers as the job is
            stored.transform_job_status, stored.failure_reason = status, job.failure_reason or ""
            stored.transform_start_time = (job.started or job.created).replace(tzinfo=None)
            stored.transform_end_time = job.ended.replace(tzinfo=None) if job.ended else None
            stored.last_modified_time = job.modified.replace(tzinfo=None)
        detail = {k: (_millis(v) if isinstance(v, datetime) else v) for k, v in job.describe().items()}
        detail["Tags"] = {t["Key"]: t["Value"] for t in job.params.get("Tags") or []}
        self.context.emit_event(job.account, job.region, source="aws.sagemaker", detail_type=STATE_CHANGE,
                                detail=detail, resources=[job.arn])


def _common_prefix(uris: list[str]) -> str:
    """The folder every URI is under (``s3://bucket/some/prefix/``)."""
    common = os.path.commonprefix(uris) if uris else ""
    return common[:common.rfind("/") + 1]


def _reason(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    return " ".join(message.split())[:900]


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
