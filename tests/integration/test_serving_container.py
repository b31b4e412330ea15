"""The serving container's contract, tested against the running process: ``python -m modelwerk_serving``.

Each server runs on a free port with its models in the test's folders; data capture writes to an embedded AWS.
Servers are module fixtures, grouped so that the tests sharing one run on the same xdist worker.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from serving_helpers import (
    ROOT,
    ServingProcess,
    SlowModel,
    csv_body,
    logistic_regression,
    numeric_columns,
    pump_health_artifact,
    write_artifact,
)

pytestmark = pytest.mark.slow

SINGLE = pytest.mark.xdist_group("serving-single")
MULTI = pytest.mark.xdist_group("serving-multi-model")
LIFECYCLE = pytest.mark.xdist_group("serving-lifecycle")

BUCKET = "modelwerk-dev-serving-capture"
CAPTURE_KEY = re.compile(r"^capture/(?P<endpoint>[\w-]+)/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}"
                         r"\.jsonl$")


def _bucket(embedded_aws) -> str:
    s3 = embedded_aws.client("s3")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    return BUCKET


def _captured(embedded_aws, endpoint: str) -> dict[str, list]:
    """The capture objects of an endpoint: key -> parsed records."""
    from modelwerk.core.capture import parse_line

    s3 = embedded_aws.client("s3")
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"capture/{endpoint}/").get("Contents", [])
    return {o["Key"]: [parse_line(line) for line in
                       s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().splitlines()]
            for o in objects}


def _predictions(response) -> list:
    content_type = response.headers["content-type"]
    text = response.body.decode()
    if content_type == "text/csv":
        return [int(line) for line in text.splitlines()]
    if content_type == "application/json":
        return json.loads(text)["predictions"]
    assert content_type == "application/jsonlines"
    return [json.loads(line)["prediction"] for line in text.splitlines()]


def _assert_one_line_error(response, status: int, pattern: str) -> None:
    assert response.status == status, response.body
    document = response.json()
    assert set(document) == {"message"}
    assert "\n" not in document["message"] and "Traceback" not in document["message"]
    assert re.search(pattern, document["message"]), document["message"]


# ---------------------------------------------------------------------------------------------------------------------
# Single model: a logistic regression fitted on an array, served from a folder holding model.tar.gz, capture on


@pytest.fixture(scope="module")
def lr(tmp_path_factory):
    model, x = logistic_regression(10)
    folder = write_artifact(tmp_path_factory.mktemp("lr") / "model", model, numeric_columns(10), archive=True)
    return model, x, folder


@pytest.fixture(scope="module")
def lr_server(lr, embedded_aws, tmp_path_factory):
    _, _, folder = lr
    server = ServingProcess(
        tmp_path_factory.mktemp("lr-server") / "server.log",
        MODELWERK_MODEL_DIR=str(folder),
        MODELWERK_CAPTURE_S3_URI=f"s3://{_bucket(embedded_aws)}/capture",
        MODELWERK_ENDPOINT_NAME="lr-endpoint",
        MODELWERK_CAPTURE_FLUSH_SECONDS="0.2",
        **embedded_aws.env,
    ).start()
    server.wait_ready()
    yield server
    assert server.stop() == 0, server.log()


def _body(kind: str, x: np.ndarray) -> tuple[str, str]:
    if kind == "csv":
        return "text/csv", csv_body(x)
    if kind == "json-lists":
        return "application/json", json.dumps({"instances": x.tolist()})
    if kind == "json-objects":
        return "application/json", json.dumps({"instances": [{f"f{i}": v for i, v in enumerate(r)} for r in x]})
    return "application/jsonlines", "".join(json.dumps(r) + "\n" for r in x.tolist())


@SINGLE
@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("accept", [None, "text/csv", "application/json", "application/jsonlines"])
@pytest.mark.parametrize("kind", ["csv", "json-lists", "json-objects", "jsonlines"])
def test_invocations_in_every_content_type_and_accept(lr, lr_server, kind, accept, rows):
    model, x, _ = lr
    content_type, body = _body(kind, x[:rows])

    response = lr_server.post("/invocations", body, content_type, {"Accept": accept} if accept else None)

    assert response.status == 200, response.body
    assert response.headers["content-type"] == (accept or content_type)
    assert _predictions(response) == model.predict(x[:rows]).tolist()


@SINGLE
def test_one_json_object_is_one_row(lr, lr_server):
    model, x, _ = lr

    response = lr_server.post("/invocations", json.dumps({f"f{i}": v for i, v in enumerate(x[3])}),
                              "application/json")

    assert response.json() == {"predictions": model.predict(x[3:4]).tolist()}


@SINGLE
@pytest.mark.parametrize(
    ("content_type", "body", "accept", "status", "pattern"),
    [
        pytest.param("text/csv", '"1,2,3', None, 400, "malformed CSV", id="malformed-csv"),
        pytest.param("application/json", '{"instances": [[1, 2', None, 400, "malformed JSON", id="malformed-json"),
        pytest.param("text/csv", "1,2,3\n", None, 400, r"row 1 has 3 value\(s\); the model takes 10", id="count"),
        pytest.param("text/csv", "1,2,x,4,5,6,7,8,9,10\n", None, 400, r"column 'f2' \(double\): 'x' is not a number",
                     id="not-a-number"),
        pytest.param("application/json", "[1, 2, 3]", None, 400, "row 1 is a number", id="flat-json-list"),
        pytest.param("application/x-npy", "1,2", None, 415, "Content-Type", id="content-type"),
        pytest.param(None, "1,2", None, 415, "no Content-Type", id="no-content-type"),
        pytest.param("text/csv", "1,2", "text/html", 406, "Accept", id="accept"),
        pytest.param("text/csv", "", None, 400, "empty", id="empty-body"),
        pytest.param("text/csv", b"\xff\xfe\x00", None, 400, "not UTF-8", id="not-utf8"),
        pytest.param("text/csv", "0,0,0,0,0,0,0,0,0,\n", None, 400, "cannot predict these rows.*NaN",
                     id="missing-value-the-model-refuses"),
    ],
)
def test_bad_input_is_4xx_with_a_one_line_message(lr_server, content_type, body, accept, status, pattern):
    response = lr_server.post("/invocations", body, content_type, {"Accept": accept} if accept else None)

    _assert_one_line_error(response, status, pattern)


@SINGLE
def test_a_body_over_sagemakers_6_mb_limit_is_413(lr_server):
    body = b"1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0,9.0,10.0\n" * (6 * 2**20 // 40 + 10)

    _assert_one_line_error(lr_server.post("/invocations", body), 413, "6 MB")


@SINGLE
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/invocations", 405, id="get-invocations"),
        pytest.param("POST", "/ping", 405, id="post-ping"),
        pytest.param("GET", "/models", 404, id="models-api-is-multi-model-only"),
        pytest.param("GET", "/nothing", 404, id="unknown"),
    ],
)
def test_unknown_routes_and_methods(lr_server, method, path, status):
    from serving_helpers import request

    _assert_one_line_error(request(lr_server.port, method, path, b"1" if method == "POST" else None), status, path)


@SINGLE
def test_invocations_are_captured_in_sagemakers_format_and_key_layout(lr, lr_server, embedded_aws):
    _, x, _ = lr
    sent = {}
    for i in range(5):
        body = csv_body(x[i : i + 2])
        response = lr_server.post("/invocations", body, "text/csv",
                                  {"X-Amzn-SageMaker-Inference-Id": f"order-{i}", "Accept": "application/json"})
        sent[f"order-{i}"] = (body, response.body.decode())

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = {r.inference_id: r for rs in _captured(embedded_aws, "lr-endpoint").values() for r in rs}
        if set(sent) <= set(records):
            break
        time.sleep(0.2)
    objects = _captured(embedded_aws, "lr-endpoint")

    assert objects and all(CAPTURE_KEY.match(key) for key in objects), list(objects)
    for inference_id, (body, output) in sent.items():
        record = records[inference_id]
        assert (record.input_content_type, record.input_encoding, record.input_data) == ("text/csv", "CSV", body)
        assert (record.output_content_type, record.output_encoding) == ("application/json", "JSON")
        assert record.output_data == output


# ---------------------------------------------------------------------------------------------------------------------
# Single model: the training step's pipeline for pump-health, asked with generated data


@pytest.fixture(scope="module")
def pump(tmp_path_factory):
    return pump_health_artifact(tmp_path_factory.mktemp("pump") / "model")


@pytest.fixture(scope="module")
def pump_server(pump, tmp_path_factory):
    folder, _, _ = pump
    server = ServingProcess(tmp_path_factory.mktemp("pump-server") / "server.log",
                            MODELWERK_MODEL_DIR=str(folder)).start()
    server.wait_ready()
    yield server
    assert server.stop() == 0, server.log()


@SINGLE
def test_generated_rows_without_the_label_are_a_valid_csv_request(pump, pump_server, tmp_path):
    from modelwerk import settings, synthetic

    folder, _, _ = pump
    metadata = json.loads((folder / "metadata.json").read_text())
    columns = [f["name"] for f in metadata["input_schema"]]
    generated = tmp_path / "pumps.csv"
    synthetic.generate_file(settings.load().use_case("pump-health"), generated, rows=300, seed=11)
    frame = pd.read_csv(generated)
    buffer = io.StringIO()
    frame[columns].to_csv(buffer, header=False, index=False)

    response = pump_server.post("/invocations", buffer.getvalue(), "text/csv", {"Accept": "application/json"})

    assert response.status == 200, response.body
    import joblib

    typed = frame[columns].astype({c: "float64" for c in columns if c != "site"}).astype({"site": object})
    expected = joblib.load(folder / "model.joblib").predict(typed).tolist()
    assert response.json()["predictions"] == expected
    assert set(expected) <= set(metadata["classes"])


@SINGLE
def test_a_pipeline_model_rejects_a_value_of_the_wrong_type_by_column(pump, pump_server):
    response = pump_server.post("/invocations", '{"site": "plant-north", "vibration_rms": "loud", "bearing_temp_c": 60,'
                                ' "flow_m3h": 1, "pressure_bar": 1, "speed_rpm": 1, "power_kw": 1}', "application/json")

    _assert_one_line_error(response, 400, r"column 'vibration_rms' \(double\): 'loud' is not a number")


# ---------------------------------------------------------------------------------------------------------------------
# Start-up: bad settings, a corrupt model


@SINGLE
@pytest.mark.parametrize(
    ("env", "pattern"),
    [
        pytest.param({"SAGEMAKER_BIND_TO_PORT": "eighty"}, "SAGEMAKER_BIND_TO_PORT='eighty' is not a whole number",
                     id="port"),
        pytest.param({"SAGEMAKER_MODEL_SERVER_WORKERS": "0"}, "must be at least 1", id="workers"),
        pytest.param({"SAGEMAKER_MULTI_MODEL": "maybe"}, "neither true nor false", id="multi-model"),
        pytest.param({"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}, "one worker",
                     id="multi-model-workers"),
        pytest.param({"MODELWERK_MME_MEMORY_MB": "-5"}, "must be more than 0", id="memory"),
        pytest.param({"MODELWERK_CAPTURE_S3_URI": "https://bucket/prefix"}, "not an s3://", id="capture-uri"),
        pytest.param({"MODELWERK_CAPTURE_S3_URI": "s3://bucket/p"}, "MODELWERK_ENDPOINT_NAME must be set",
                     id="capture-endpoint"),
        pytest.param({"MODELWERK_CAPTURE_S3_URI": "s3://bucket/p", "MODELWERK_ENDPOINT_NAME": "e",
                      "MODELWERK_CAPTURE_SAMPLING_PERCENT": "120"}, "at most 100", id="sampling"),
        pytest.param({"MODELWERK_MODEL_DIR": "/nonexistent/model"}, "does not exist", id="model-dir"),
    ],
)
def test_bad_settings_stop_the_server_with_one_line_and_exit_code_2(lr, tmp_path, env, pattern):
    _, _, folder = lr
    server = ServingProcess(tmp_path / "server.log", **{"MODELWERK_MODEL_DIR": str(folder), **env}).start()

    assert server.process.wait(30) == 2
    lines = [line for line in server.log().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines


@SINGLE
@pytest.mark.parametrize("damage", ["not-a-pickle", "not-a-tar"])
def test_a_corrupt_model_stops_the_server_with_a_clear_line_and_never_turns_healthy(tmp_path, damage):
    model, _ = logistic_regression(3)
    folder = write_artifact(tmp_path / "model", model, numeric_columns(3), archive=damage == "not-a-tar")
    if damage == "not-a-pickle":
        (folder / "model.joblib").write_bytes(b"this is not a model")
    else:
        (folder / "model.tar.gz").write_bytes(b"\x1f\x8b truncated")
    server = ServingProcess(tmp_path / "server.log", MODELWERK_MODEL_DIR=str(folder)).start()

    statuses = set()
    deadline = time.monotonic() + 30
    while server.process.poll() is None and time.monotonic() < deadline:
        statuses.add(server.ping(timeout=1))
        time.sleep(0.05)

    assert server.process.poll() == 1, server.log()
    assert 200 not in statuses
    assert re.search(r"ERROR .* cannot load the model from .*(model.joblib cannot be loaded|not a readable tar)",
                     server.log()), server.log()


# ---------------------------------------------------------------------------------------------------------------------
# Multi-model


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    """Models SageMaker would have downloaded: a folder, a .tar.gz file, a folder holding model.tar.gz."""
    root = tmp_path_factory.mktemp("models")
    models = {}
    for seed, (name, archive) in enumerate([("lr-a", False), ("lr-b", True), ("team/lr-c", True)]):
        model, x = logistic_regression(4, seed=seed)
        write_artifact(root / name, model, numeric_columns(4), archive=archive)
        models[name] = (model, x)
    (root / "lr-b" / "model.tar.gz").rename(root / "lr-b.tar.gz")
    (root / "lr-b").rmdir()
    models["lr-b.tar.gz"] = models.pop("lr-b")
    return root, models


@pytest.fixture(scope="module")
def mme(model_root, tmp_path_factory):
    root, _ = model_root
    server = ServingProcess(tmp_path_factory.mktemp("mme") / "server.log", SAGEMAKER_MULTI_MODEL="true",
                            MODELWERK_MODEL_ROOT=str(root)).start()
    server.wait_ready()
    yield server
    assert server.stop() == 0, server.log()


def _load(server, name, url):
    return server.post("/models", json.dumps({"model_name": name, "url": str(url)}), "application/json")


@MULTI
def test_load_get_invoke_and_unload_a_model(model_root, mme):
    root, models = model_root
    model, x = models["lr-a"]

    loaded = _load(mme, "alpha", root / "lr-a")
    assert loaded.status == 200, loaded.body
    _assert_one_line_error(_load(mme, "alpha", root / "lr-a"), 409, "already loaded")

    described = mme.get("/models/alpha")
    assert described.status == 200
    assert described.json()["modelName"] == "alpha" and described.json()["modelUrl"] == str(root / "lr-a")

    invoked = mme.post("/models/alpha/invoke", csv_body(x[:5]))
    assert _predictions(invoked) == model.predict(x[:5]).tolist()

    assert mme.delete("/models/alpha").status == 200
    _assert_one_line_error(mme.delete("/models/alpha"), 404, "not loaded")
    _assert_one_line_error(mme.get("/models/alpha"), 404, "not loaded")


@MULTI
def test_the_model_list_is_paginated(model_root, mme):
    root, _ = model_root
    names = [f"page-{i}" for i in range(5)]
    for name in names:
        assert _load(mme, name, root / "lr-a").status == 200

    seen, token, pages = [], None, 0
    while True:
        page = mme.get("/models?limit=2" + (f"&next_page_token={token}" if token else "")).json()
        pages += 1
        seen += [m["modelName"] for m in page["models"]]
        token = page.get("nextPageToken")
        if token is None:
            break

    assert [n for n in seen if n.startswith("page-")] == names
    assert len(seen) == len(set(seen)) and pages >= 3
    _assert_one_line_error(mme.get("/models?limit=0"), 400, "limit")
    _assert_one_line_error(mme.get("/models?next_page_token=%25%25"), 400, "next_page_token")
    for name in names:
        mme.delete(f"/models/{name}")


@MULTI
@pytest.mark.parametrize("name", ["lr-b.tar.gz", "team/lr-c", "lr-a"])
def test_the_target_model_header_routes_and_loads_from_the_model_root(model_root, mme, name):
    _, models = model_root
    model, x = models[name]

    response = mme.post("/invocations", json.dumps(x[:3].tolist()), "application/json",
                        {"X-Amzn-SageMaker-Target-Model": name})

    assert response.status == 200, response.body
    assert response.json()["predictions"] == model.predict(x[:3]).tolist()
    assert mme.get("/models/" + name.replace("/", "%2F")).status == 200  # loaded now


@MULTI
@pytest.mark.parametrize(
    ("headers", "status", "pattern"),
    [
        pytest.param({"X-Amzn-SageMaker-Target-Model": "nobody.tar.gz"}, 404, "not found under the model root",
                     id="unknown"),
        pytest.param({"X-Amzn-SageMaker-Target-Model": "../lr-a"}, 400, r"'\.\.'", id="outside-the-root"),
        pytest.param({}, 400, "X-Amzn-SageMaker-Target-Model", id="no-header"),
    ],
)
def test_a_target_model_that_cannot_be_served_is_4xx(mme, headers, status, pattern):
    _assert_one_line_error(mme.post("/invocations", "1,2,3,4", "text/csv", headers), status, pattern)


@MULTI
def test_an_xgboost_model_is_served(mme, tmp_path):
    import xgboost

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    y = (x[:, 0] - x[:, 2] > 0).astype(int)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(x, y)
    folder = write_artifact(tmp_path / "xgb", model, numeric_columns(5), archive=True)

    assert _load(mme, "xgb", folder / "model.tar.gz").status == 200
    response = mme.post("/models/xgb/invoke", csv_body(x[:20]), "text/csv", {"Accept": "application/jsonlines"})

    assert _predictions(response) == model.predict(x[:20]).tolist()


@MULTI
@pytest.mark.parametrize("damage", ["garbage-pickle", "no-metadata", "features-mismatch"])
def test_a_corrupt_artifact_fails_its_load_while_other_models_keep_serving(model_root, mme, tmp_path, damage):
    root, models = model_root
    model, x = models["lr-a"]
    folder = write_artifact(tmp_path / "bad", model, numeric_columns(4))
    if damage == "garbage-pickle":
        (folder / "model.joblib").write_bytes(b"\x80\x04 garbage")
    elif damage == "no-metadata":
        (folder / "metadata.json").unlink()
    else:
        write_artifact(folder, model, numeric_columns(6))
    assert _load(mme, "healthy", root / "lr-a").status == 200

    _assert_one_line_error(_load(mme, "broken", folder), 422, "model 'broken' cannot be loaded")

    assert mme.post("/models/healthy/invoke", csv_body(x[:2])).status == 200
    assert mme.get("/models/broken").status == 404
    mme.delete("/models/healthy")


@MULTI
def test_post_models_needs_a_name_and_a_local_url(mme):
    _assert_one_line_error(mme.post("/models", '{"url": "/tmp"}', "application/json"), 400, "model name")
    _assert_one_line_error(_load(mme, "s3", "s3://bucket/model.tar.gz"), 400, "only local paths")
    _assert_one_line_error(_load(mme, "gone", "/nonexistent/model"), 400, "no such file")
    _assert_one_line_error(mme.post("/models", "[]", "application/json"), 400, "JSON object")


BIG = 9_000


@pytest.fixture(scope="module")
def big_models(tmp_path_factory):
    """Logistic regressions over many features: artifacts (model and input schema) of about 0.4 MB, one of 1.3 MB."""
    root = tmp_path_factory.mktemp("big")
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    for name, features in (("big-1", BIG), ("big-2", BIG), ("big-3", BIG), ("huge", 3 * BIG)):
        x = rng.normal(size=(6, features))
        write_artifact(root / name, LogisticRegression().fit(x, [0, 1] * 3), numeric_columns(features))
    return root


@pytest.fixture(scope="module")
def small_mme(big_models, tmp_path_factory):
    server = ServingProcess(tmp_path_factory.mktemp("small-mme") / "server.log", SAGEMAKER_MULTI_MODEL="true",
                            MODELWERK_MODEL_ROOT=str(big_models), MODELWERK_MME_MEMORY_MB="1").start()
    server.wait_ready()
    yield server
    assert server.stop() == 0, server.log()


@MULTI
def test_the_least_recently_used_model_is_unloaded_to_make_room(big_models, small_mme):
    size_mb = sum(f.stat().st_size for f in (big_models / "big-1").iterdir()) / 2**20
    assert 0.34 < size_mb < 0.5  # two fit the 1 MB budget, three do not

    assert _load(small_mme, "big-1", big_models / "big-1").status == 200
    assert _load(small_mme, "big-2", big_models / "big-2").status == 200
    row = ",".join(["0.5"] * BIG)
    assert small_mme.post("/models/big-1/invoke", row).status == 200  # big-1 is now the most recently used
    assert _load(small_mme, "big-3", big_models / "big-3").status == 200

    assert small_mme.get("/models/big-2").status == 404
    assert small_mme.get("/models/big-1").status == 200
    assert small_mme.get("/models/big-3").status == 200
    assert small_mme.post("/invocations", row, headers={"X-Amzn-SageMaker-Target-Model": "big-2"}).status == 200


@MULTI
def test_a_model_larger_than_the_whole_budget_is_507(big_models, small_mme):
    _assert_one_line_error(_load(small_mme, "huge", big_models / "huge"), 507, "memory budget is 1.00 MB")
    _assert_one_line_error(small_mme.post("/invocations", "1", headers={"X-Amzn-SageMaker-Target-Model": "huge"}),
                           507, "needs about")


# ---------------------------------------------------------------------------------------------------------------------
# Lifecycle: a model slow to load and to predict; worker crash; graceful stop with capture flushed


@pytest.fixture(scope="module")
def slow_server(embedded_aws, tmp_path_factory):
    folder = write_artifact(tmp_path_factory.mktemp("slow") / "model",
                            SlowModel(load_seconds=1.5, predict_seconds=1.0), numeric_columns(3))
    server = ServingProcess(
        tmp_path_factory.mktemp("slow-server") / "server.log",
        MODELWERK_MODEL_DIR=str(folder),
        MODELWERK_CAPTURE_S3_URI=f"s3://{_bucket(embedded_aws)}/capture",
        MODELWERK_ENDPOINT_NAME="slow-endpoint",
        MODELWERK_CAPTURE_FLUSH_SECONDS="600",  # only the shutdown writes: what the graceful stop test looks for
        **embedded_aws.env,
    ).start()
    server.startup_statuses = server.wait_ready()
    yield server
    server.stop()


def _in_background(call) -> dict:
    outcome: dict = {}

    def run():
        try:
            outcome["response"] = call()
        except Exception as exc:  # noqa: BLE001 - reported by the test's assertion
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=run)
    outcome["thread"].start()
    return outcome


@LIFECYCLE
def test_ping_is_503_while_the_model_loads_then_200(slow_server):
    statuses = slow_server.startup_statuses

    assert statuses[0] == 503 and statuses[-1] == 200
    assert set(statuses) == {503, 200}


@LIFECYCLE
def test_ping_answers_at_once_while_a_prediction_runs(slow_server):
    pending = _in_background(lambda: slow_server.post("/invocations", "1,2,3\n"))
    time.sleep(0.3)

    started = time.monotonic()
    status = slow_server.ping(timeout=2)
    answered_in = time.monotonic() - started
    pending["thread"].join(10)

    assert status == 200 and answered_in < 0.5
    assert pending["response"].status == 200


@LIFECYCLE
def test_a_killed_worker_is_replaced_and_requests_wait_for_its_model_instead_of_failing(slow_server):
    [worker] = slow_server.workers()

    import os

    os.kill(worker, signal.SIGKILL)
    # sent at once: it waits in the supervisor's socket until the replacement has loaded its model and accepts
    waiting = slow_server.post("/invocations", "1,2,3\n", timeout=60)
    statuses = slow_server.wait_ready()

    assert waiting.status == 200, (waiting.body, slow_server.log())
    assert statuses == [200], "the replacement answered before its model was loaded"
    assert slow_server.workers() and slow_server.workers() != [worker]
    assert "died" in slow_server.log()


@LIFECYCLE
def test_sigterm_answers_requests_in_flight_flushes_capture_and_exits_0(slow_server, embedded_aws):
    assert slow_server.ping() == 200
    pending = _in_background(lambda: slow_server.post("/invocations", "4,5,6\n", "text/csv",
                                                      {"X-Amzn-SageMaker-Inference-Id": "last-words"}, timeout=30))
    time.sleep(0.4)

    slow_server.process.send_signal(signal.SIGTERM)
    pending["thread"].join(30)
    exit_code = slow_server.process.wait(30)

    assert "error" not in pending, pending.get("error")
    assert pending["response"].status == 200 and pending["response"].body == b"0\n"
    assert exit_code == 0, slow_server.log()
    records = [r for rs in _captured(embedded_aws, "slow-endpoint").values() for r in rs]
    assert "last-words" in {r.inference_id for r in records}


# ---------------------------------------------------------------------------------------------------------------------
# The image's recipe


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@SINGLE
def test_the_image_pins_what_the_project_pins():
    from serving_helpers import SERVING

    frameworks = _pins(ROOT / "frameworks.txt")
    constraints = {**_pins(ROOT / "constraints.txt"), **frameworks}
    serving = _pins(SERVING / "requirements.txt")

    assert set(frameworks) == {"scikit-learn", "xgboost-cpu"}
    assert {"uvicorn", "uvloop", "httptools", "boto3", "numpy", "pandas", "joblib"} <= set(serving)
    assert {name: version for name, version in serving.items() if constraints.get(name) != version} == {}
    assert "-c frameworks.txt" in (ROOT / "constraints.txt").read_text()


@SINGLE
def test_the_dockerfile_follows_sagemakers_container_contract():
    from serving_helpers import SERVING

    dockerfile = (SERVING / "Dockerfile").read_text()

    assert re.search(r"^FROM public\.ecr\.aws/docker/library/python:3\.11-slim", dockerfile, re.MULTILINE)  # no Docker Hub limits
    assert "com.amazonaws.sagemaker.capabilities.multi-models=true" in dockerfile
    assert re.search(r"^EXPOSE 8080$", dockerfile, re.MULTILINE)
    assert re.search(r"^USER (?!root|0\b)\S+", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["python", "-m", "modelwerk_serving"]' in dockerfile and 'CMD ["serve"]' in dockerfile
    for source in ("frameworks.txt", "containers/serving/requirements.txt", "modelwerk/core",
                   "containers/serving/modelwerk_serving"):
        assert re.search(rf"^COPY .*{re.escape(source)}", dockerfile, re.MULTILINE), source


@SINGLE
def test_the_serve_argument_is_accepted_and_others_refused(lr, tmp_path):
    _, _, folder = lr
    server = ServingProcess(tmp_path / "server.log", MODELWERK_MODEL_DIR=str(folder))
    refused = subprocess.run([sys.executable, "-m", "modelwerk_serving", "train"], cwd=ROOT, env=server.env,
                             capture_output=True, text=True, timeout=60, check=False)

    assert refused.returncode == 2 and "usage: python -m modelwerk_serving [serve]" in refused.stderr

    served = subprocess.Popen([sys.executable, "-m", "modelwerk_serving", "serve"], cwd=ROOT, env=server.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server.process = served
    try:
        assert server.wait_ready()[-1] == 200
    finally:
        assert server.stop() == 0
