"""The local SageMaker Runtime in front of a stand-in serving process: routing, errors in the Runtime API's shape,
multi-model loading from S3, metrics recorded per request."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import tarfile
from collections import Counter

import boto3
import pytest
from aiohttp import web
from moto_fresh import fresh_mock_aws

from modelwerk.local import runtime


class Backend:
    """A serving process: echoes rows, 400 on 'bad', holds loaded models like a multi-model container."""

    def __init__(self, name: str):
        self.name = name
        self.loaded: dict[str, str] = {}
        self.seen: list = []
        self.app = web.Application()
        self.app.router.add_post("/invocations", self.invocations)
        self.app.router.add_post("/models", self.load)

    async def invocations(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(request.headers.copy())  # case-insensitive, as HTTP headers are
        target = request.headers.get("X-Amzn-SageMaker-Target-Model")
        if target is not None and target not in self.loaded:
            return web.json_response({"message": f"model {target} is not loaded"}, status=404)
        if body == b"bad":
            return web.json_response({"message": "expected 3 columns, got 1"}, status=400)
        return web.json_response({"predictions": [self.name], "model": target})

    async def load(self, request: web.Request) -> web.Response:
        doc = await request.json()
        if doc["model_name"] in self.loaded:
            return web.json_response({"message": "already loaded"}, status=409)
        self.loaded[doc["model_name"]] = doc["url"]
        return web.json_response({"status": "loaded"})


class Metrics:
    def __init__(self):
        self.records = []

    def record(self, *args):
        self.records.append(args)

    def close(self):
        pass


async def _serve(backend: Backend) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(backend.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


async def _call(app, path: str, body: bytes = b"1,2,3\n", headers: dict[str, str] | None = None):
    sent = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {"content-type": "text/csv"}).items()]}
    await app(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def _write(folder, name, **record):
    (folder / f"{name}.json").write_text(json.dumps({"endpoint": name, **record}))


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_requests_are_split_between_fleets_by_weight(tmp_path, loop):
    async def scenario():
        blue, green = Backend("blue"), Backend("green")
        runners = [await _serve(b) for b in (blue, green)]
        _write(tmp_path, "pumps", mode="SingleModel", variants=[
            {"name": "AllTraffic", "fleet": "blue", "url": runners[0][1], "weight": 0.8},
            {"name": "AllTraffic", "fleet": "green", "url": runners[1][1], "weight": 0.2}])
        metrics = Metrics()
        app = runtime.Gateway(tmp_path, metrics=metrics)
        answers = Counter()
        for _ in range(400):
            status, headers, body = await _call(app, "/endpoints/pumps/invocations")
            assert status == 200 and headers[b"x-amzn-invoked-production-variant"] == b"AllTraffic"
            answers[json.loads(body)["predictions"][0]] += 1
        await app._session.close()
        for runner, _ in runners:
            await runner.cleanup()
        return answers, metrics

    answers, metrics = loop.run_until_complete(scenario())
    assert 250 < answers["blue"] < 380 and answers["green"] > 20
    assert len(metrics.records) == 400 and all(r[0] == "pumps" and r[2] == 200 for r in metrics.records)


def test_container_errors_come_back_as_model_errors_and_unknown_endpoints_as_validation_errors(tmp_path, loop):
    async def scenario():
        backend = Backend("only")
        runner, url = await _serve(backend)
        _write(tmp_path, "pumps", variants=[{"url": url, "weight": 1.0}])
        app = runtime.Gateway(tmp_path)
        bad = await _call(app, "/endpoints/pumps/invocations", b"bad")
        unknown = await _call(app, "/endpoints/nowhere/invocations")
        too_big = await _call(app, "/endpoints/pumps/invocations", b"x" * (runtime.MAX_PAYLOAD_BYTES + 1))
        forwarded = await _call(app, "/endpoints/pumps/invocations", headers={
            "content-type": "text/csv", "x-amzn-sagemaker-inference-id": "id-9", "authorization": "AWS4 secret"})
        await app._session.close()
        await runner.cleanup()
        return bad, unknown, too_big, forwarded, backend.seen[-1]

    bad, unknown, too_big, forwarded, headers = loop.run_until_complete(scenario())
    assert bad[0] == 424 and bad[1][b"x-amzn-errortype"] == b"ModelError"
    doc = json.loads(bad[2])
    assert doc["OriginalStatusCode"] == 400 and doc["OriginalMessage"] == "expected 3 columns, got 1"
    assert unknown[0] == 400 and unknown[1][b"x-amzn-errortype"] == b"ValidationError"
    assert "nowhere" in json.loads(unknown[2])["message"]
    assert too_big[0] == 413
    assert forwarded[0] == 200
    assert headers["X-Amzn-SageMaker-Inference-Id"] == "id-9" and "Authorization" not in headers


def test_a_stopped_fleet_answers_service_unavailable_not_a_traceback(tmp_path, loop, monkeypatch):
    from modelwerk.local.server import free_port

    monkeypatch.setattr(runtime, "RECONNECT_SECONDS", 1.0)  # how long a replaced worker is waited for

    _write(tmp_path, "gone", variants=[{"url": f"http://127.0.0.1:{free_port()}", "weight": 1.0}])
    app = runtime.Gateway(tmp_path)

    async def scenario():
        answer = await _call(app, "/endpoints/gone/invocations")
        await app._session.close()
        return answer

    status, headers, body = loop.run_until_complete(scenario())
    assert status == 503 and headers[b"x-amzn-errortype"] == b"ServiceUnavailable"
    assert "not answering" in json.loads(body)["message"]


def _model_archive() -> bytes:
    """The same bytes on every call: the gzip header's timestamp is fixed, not the clock's second."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
        data = b'{"input_schema": []}'
        info = tarfile.TarInfo("metadata.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@fresh_mock_aws()
def test_a_multi_model_target_is_fetched_from_the_prefix_and_loaded_on_first_use(tmp_path, loop, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    s3 = boto3.client("s3", region_name="eu-central-1")
    s3.create_bucket(Bucket="serving", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_object(Bucket="serving", Key="models/fleet/pump-7.tar.gz", Body=_model_archive())
    records, cache = tmp_path / "records", tmp_path / "cache"
    records.mkdir()

    async def scenario():
        backend = Backend("mme")
        runner, url = await _serve(backend)
        _write(records, "fleet", mode="MultiModel", variants=[{
            "url": url, "weight": 1.0, "model_data_prefix": "s3://serving/models/fleet/",
            "model_cache_dir": str(cache)}])
        app = runtime.Gateway(records)
        first = await _call(app, "/endpoints/fleet/invocations", headers={
            "content-type": "text/csv", "x-amzn-sagemaker-target-model": "pump-7.tar.gz"})
        backend.loaded.clear()  # the container evicted it: the next call loads it again
        again = await _call(app, "/endpoints/fleet/invocations", headers={
            "content-type": "text/csv", "x-amzn-sagemaker-target-model": "pump-7.tar.gz"})
        missing = await _call(app, "/endpoints/fleet/invocations", headers={
            "content-type": "text/csv", "x-amzn-sagemaker-target-model": "pump-8.tar.gz"})
        escape = await _call(app, "/endpoints/fleet/invocations", headers={
            "content-type": "text/csv", "x-amzn-sagemaker-target-model": "../secrets.tar.gz"})
        untargeted = await _call(app, "/endpoints/fleet/invocations")
        await app._session.close()
        await runner.cleanup()
        return first, again, missing, escape, untargeted, backend

    first, again, missing, escape, untargeted, backend = loop.run_until_complete(scenario())
    assert first[0] == 200 and json.loads(first[2])["model"] == "pump-7.tar.gz"
    assert again[0] == 200 and "pump-7.tar.gz" in backend.loaded
    folder = backend.loaded["pump-7.tar.gz"]
    assert (cache / folder.rsplit("/", 1)[-1] / "model.tar.gz").read_bytes() == _model_archive()
    assert missing[0] == 404 and "pump-8.tar.gz" in json.loads(missing[2])["message"]
    assert escape[0] == 400
    assert untargeted[0] == 400 and "TargetModel" in json.loads(untargeted[2])["message"]
