"""Requests to the services the embedded AWS runs itself, in front of moto's dispatcher.

A request is ours when its operation is registered by one of our services: by ``X-Amz-Target`` (the JSON protocol),
by ``Action`` and the signing service (the query protocol, which older botocore versions still speak), or by a
route (REST protocols, e.g. Lambda's ``Invoke``). Parameters are parsed and replies rendered with botocore's model of
the service (through moto's protocol parsers and serializers), so a reply has AWS's shape whatever the client.
Everything else goes to moto unchanged.
"""

from __future__ import annotations

import io
import json
import logging
import re
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger("modelwerk.local")

#: Local-only controls of the services (:attr:`Service.controls`).
CONTROL_PREFIX = "/modelwerk-api/"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/")


class AwsError(Exception):
    """An error in AWS's shape: its code (the ``__type``), its message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def validation_error(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def not_found(message: str, code: str = "ResourceNotFound") -> AwsError:
    return AwsError(code, message)


@dataclass
class Call:
    """One request to an operation we run."""

    service: str  # botocore's service name: sagemaker, glue, athena, cloudwatch, lambda, codepipeline
    operation: str
    params: dict[str, Any]
    account: str
    region: str
    access_key: str
    environ: dict[str, Any]
    path_params: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    _moto: Any = None

    def forward(self) -> tuple[int, dict[str, str], bytes]:
        """Hand the request to moto as it came; its (status, headers, body)."""
        environ = dict(self.environ)
        environ["wsgi.input"] = io.BytesIO(self.body)
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            captured["status"], captured["headers"] = int(status.split()[0]), dict(headers)
            return lambda data: None

        chunks = self._moto(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        return captured["status"], captured["headers"], body

    def forward_json(self) -> dict[str, Any]:
        """Moto's reply to this JSON-protocol request, parsed; an :class:`AwsError` if moto refused it."""
        status, _, body = self.forward()
        document = json.loads(body or b"{}")
        if status >= 300:
            raise AwsError(str(document.get("__type", "InternalFailure")).rsplit("#", 1)[-1],
                           document.get("message") or document.get("Message") or "", status)
        return document


#: A handler takes the call and returns the operation's output (a dict in the shape of botocore's output shape),
#: or a :class:`Reply` for a raw response (REST payloads), and raises :class:`AwsError`.
Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """A REST operation: ``method`` and a path pattern with named groups (Lambda's ``Invoke``)."""

    method: str
    pattern: str
    operation: str


@dataclass
class Service:
    """One AWS service the embedded AWS runs (a part of it: moto answers the rest).

    ``start(context)`` and ``stop()`` run background work (schedules, evaluators, workers) while the server runs.
    ``controls`` are local-only requests in the spirit of moto's ``/moto-api/`` (fire a schedule now, evaluate the
    alarms now): ``POST /modelwerk-api/<service>/<name>`` with a JSON body, answered with JSON.
    """

    name: str
    handlers: dict[str, Handler]
    routes: tuple[Route, ...] = ()
    controls: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    start: Callable[[Any], None] | None = None
    stop: Callable[[], None] | None = None


class _Models:
    """botocore's service models as moto wraps them (its parsers and serializers take its own shapes)."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    def service(self, name: str) -> Any:
        if name not in self._models:
            from moto.core.utils import get_service_model

            self._models[name] = get_service_model(name)
        return self._models[name]


class LocalServices:
    """The WSGI middleware: our services' operations, then moto for everything else."""

    def __init__(self, moto_app: Any, services: Iterable[Service]):
        self.moto_app = moto_app
        #: Set once every service's background work started: ``/modelwerk-api/server/ready`` answers 200 from then on.
        self.ready = False
        self.services = {service.name: service for service in services}
        self.models = _Models()
        self._targets: dict[str, str] = {}
        self._routes: list[tuple[str, re.Pattern[str], str, str]] = []
        for service in self.services.values():
            model = self.models.service(service.name)
            prefix = model.metadata.get("targetPrefix")
            if prefix:
                self._targets[prefix] = service.name
            for route in service.routes:
                self._routes.append((route.method, re.compile(route.pattern), service.name, route.operation))

    # -- which operation --------------------------------------------------------------------------------------------
    def _identify(self, environ: dict[str, Any], body: bytes) -> tuple[str, str, dict[str, str], str] | None:
        """(service, operation, path parameters, protocol) of a request we run, else None."""
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target and "." in target:
            prefix, operation = target.rsplit(".", 1)
            service = self._targets.get(prefix)
            if service and operation in self.services[service].handlers:
                return service, operation, {}, "json"
            return None
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        for route_method, pattern, service, operation in self._routes:
            match = pattern.fullmatch(path)
            if match and method == route_method:
                return service, operation, match.groupdict(), self.models.service(service).protocol
        if method == "POST" and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            signing = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
            action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
            for service in self.services.values():
                model = self.models.service(service.name)
                names = {service.name, model.metadata.get("signingName"), model.metadata.get("endpointPrefix")}
                if signing and signing.group(3) in names and action in service.handlers:
                    return service.name, action, {}, "query"
        return None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        body = _read_body(environ)
        if environ.get("PATH_INFO", "").startswith(CONTROL_PREFIX):
            return self._control(environ, body, start_response)
        identified = self._identify(environ, body)
        if identified is None:
            return self.moto_app(environ, start_response)
        service, operation, path_params, protocol = identified
        operation_model = self.models.service(service).operation_model(operation)
        request_id = str(uuid.uuid4())
        try:
            call = self._call(environ, body, service, operation, operation_model, path_params, protocol)
            result = self.services[service].handlers[operation](call)
            if isinstance(result, Reply):
                return _respond(start_response, result.status, result.body,
                                {"x-amzn-RequestId": request_id, **result.headers})
            return self._render(start_response, operation_model, protocol, result or {}, request_id)
        except AwsError as error:
            return _error(start_response, protocol, error, request_id)
        except Exception as error:  # noqa: BLE001 - an internal failure is AWS's 500, with its reason, never a hang
            log.error("%s.%s failed: %s", service, operation, traceback.format_exc())
            return _error(start_response, protocol, AwsError("InternalFailure", f"{type(error).__name__}: {error}",
                                                             500), request_id)

    def _control(self, environ: dict[str, Any], body: bytes, start_response: Any) -> Any:
        service, _, name = environ["PATH_INFO"][len(CONTROL_PREFIX):].partition("/")
        if (service, name) == ("server", "ready"):
            return _respond(start_response, 200 if self.ready else 503,
                            json.dumps({"ready": self.ready}).encode(), {"Content-Type": "application/json"})
        control = self.services[service].controls.get(name) if service in self.services else None
        if control is None or environ.get("REQUEST_METHOD") != "POST":
            return _respond(start_response, 404, json.dumps({"message": f"no control {environ['PATH_INFO']}; "
                                                                        "see docs/local-mode.md"}).encode(),
                            {"Content-Type": "application/json"})
        try:
            answer = control(json.loads(body or b"{}"))
            return _respond(start_response, 200, json.dumps(answer, default=str).encode(),
                            {"Content-Type": "application/json"})
        except (AwsError, ValueError, KeyError) as error:
            message = error.message if isinstance(error, AwsError) else f"{type(error).__name__}: {error}"
            return _respond(start_response, 400, json.dumps({"message": message}).encode(),
                            {"Content-Type": "application/json"})

    def _call(self, environ: dict[str, Any], body: bytes, service: str, operation: str, operation_model: Any,
              path_params: dict[str, str], protocol: str) -> Call:
        from moto.core.parse import PROTOCOL_PARSERS
        from moto.iam.models import get_account_id_from
        from werkzeug.datastructures import Headers, MultiDict

        signing = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        access_key = signing.group(1) if signing else ""
        region = signing.group(2) if signing else "us-east-1"
        if protocol in ("json", "query"):
            values = MultiDict(parse_qs(body.decode("utf-8", "replace"))) if protocol == "query" else MultiDict()
            headers = Headers([(k[5:].replace("_", "-").title(), v) for k, v in environ.items()
                               if k.startswith("HTTP_")])
            parser = PROTOCOL_PARSERS[protocol](operation_model)
            try:
                params = dict(parser.parse({"body": body, "headers": headers, "method": environ["REQUEST_METHOD"],
                                            "url_params": {}, "url_path": environ.get("PATH_INFO", ""),
                                            "values": values}))
            except Exception as error:  # noqa: BLE001 - a body that does not parse is the caller's error
                raise AwsError("SerializationException", f"the request body does not parse: {error}") from None
            params = _plain(params)
        else:
            params = {}
        return Call(service=service, operation=operation, params=params,
                    account=get_account_id_from(access_key) if access_key else _default_account(),
                    region=region, access_key=access_key, environ=environ, path_params=path_params, body=body,
                    _moto=self.moto_app)

    @staticmethod
    def _render(start_response: Any, operation_model: Any, protocol: str, result: dict[str, Any],
                request_id: str) -> Any:
        from moto.core.serialize import SerializationContext, get_serializer_class

        serializer = get_serializer_class(operation_model.service_model.service_name, protocol)(
            operation_model, context=SerializationContext(request_id))
        rendered = serializer.serialize(result)
        body = rendered["body"]
        headers = {"x-amzn-RequestId": request_id, **rendered.get("headers", {})}
        headers.setdefault("Content-Type", "application/x-amz-json-1.1" if protocol == "json" else "text/xml")
        return _respond(start_response, int(rendered.get("status_code", 200)),
                        body if isinstance(body, bytes) else body.encode("utf-8"), headers)


def _default_account() -> str:
    from moto.core import DEFAULT_ACCOUNT_ID

    return DEFAULT_ACCOUNT_ID


def _plain(value: Any) -> Any:
    """moto's parsers return case-folding dicts; handlers get plain ones with the model's member names."""
    if isinstance(value, dict) or hasattr(value, "items") and not isinstance(value, (str, bytes)):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _respond(start_response: Any, status: int, body: bytes, headers: dict[str, str]) -> list[bytes]:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    headers = {**headers, "Content-Length": str(len(body))}
    start_response(f"{status} {phrase}", list(headers.items()))
    return [body]


def _error(start_response: Any, protocol: str, error: AwsError, request_id: str) -> list[bytes]:
    if protocol == "query":
        from xml.sax.saxutils import escape

        body = (f"<ErrorResponse><Error><Type>{'Receiver' if error.status >= 500 else 'Sender'}</Type>"
                f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        return _respond(start_response, error.status, body, {"Content-Type": "text/xml",
                                                             "x-amzn-RequestId": request_id})
    body = json.dumps({"__type": error.code, "message": error.message, "Message": error.message}).encode()
    return _respond(start_response, error.status, body, {"Content-Type": "application/x-amz-json-1.1",
                                                         "x-amzn-RequestId": request_id,
                                                         "x-amzn-ErrorType": error.code})
