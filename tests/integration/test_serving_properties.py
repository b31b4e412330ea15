"""No 5xx from client input: arbitrary bodies to the running container's ``/invocations`` (issue 17).

Hypothesis sends bytes, text, CSV made of awkward tokens (``inf``, ``nan``, ``1e309``, huge integers, quotes) and
JSON of any shape and depth, in every content type the server reads and some it does not. Whatever the body, the
answer is 2xx or 4xx with a one-line message, and the server is healthy afterwards. A pipeline model (imputing
missing values) and a required column make the rules of missing and non-finite values matter.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import ServingProcess, write_artifact

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serving-properties")]

COLUMNS = [("a", "double"), ("b", "double"), ("c", "boolean")]
CONTENT_TYPES = ["text/csv", "application/json", "application/jsonlines", "text/plain", "application/octet-stream"]
TOKENS = ["1", "0", "-2.5", "", "nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309", "9" * 400, "true",
          "\"1,2\"", "\"", "x", " ", "\t", "1e-400", "0x10", "1_000"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    x[:, 2] = x[:, 2] > 0
    model = make_pipeline(SimpleImputer(), LogisticRegression()).fit(x, (x[:, 0] > 0).astype(int))
    folder = write_artifact(tmp_path_factory.mktemp("model"), model, COLUMNS)
    document = json.loads((folder / "metadata.json").read_text())
    document["input_schema"][0]["required"] = True
    (folder / "metadata.json").write_text(json.dumps(document))
    process = ServingProcess(tmp_path_factory.mktemp("server") / "server.log", MODELWERK_MODEL_DIR=str(folder)).start()
    process.wait_ready()
    yield process
    process.stop()


_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**500, max_value=10**500),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8), st.sampled_from(TOKENS))
_json_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                              st.dictionaries(st.sampled_from(["a", "b", "c", "d",
                                                                                               "instances"]),
                                                                              inner, max_size=4)),
                            max_leaves=20)
_csv = st.lists(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=5), min_size=1, max_size=4).map(
    lambda rows: "\n".join(",".join(row) for row in rows).encode())


def _json_text(value) -> bytes:
    text = json.dumps(value)  # Python's json writes NaN/Infinity for such floats: bodies the server must refuse
    return text.encode()


_bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    _csv,
    _json_values.map(_json_text),
    st.lists(_json_values, max_size=4).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda depth: ("[" * depth + "]" * depth).encode()),
    st.sampled_from([b"[[1, NaN, true]]", b"[[1, Infinity, true]]", b"[[" + b"9" * 5000 + b", 1, true]]",
                     b"inf,1,true", b"1e309,1,true", b",1,true", b"1,,", ("9" * 400 + ",1,true").encode()]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=_bodies, content_type=st.sampled_from(CONTENT_TYPES),
       accept=st.sampled_from([None, "text/csv", "application/json", "*/*", "image/png"]))
def test_no_body_answers_5xx(server, body, content_type, accept):
    headers = {"Accept": accept} if accept else {}
    response = server.post("/invocations", body, content_type=content_type, headers=headers)

    assert response.status < 500, (response.status, response.body, server.log()[-2000:])
    if response.status >= 400:
        message = response.json()["message"]
        assert "\n" not in message and "Traceback" not in message
    assert server.ping() == 200
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("body, pattern", [
    (b"1,2,true\ninf,1,true\n", r"row 2, column 'a' \(double\): 'inf' is not a finite number"),
    (b"1," + b"9" * 400 + b",true\n", r"row 1, column 'b' \(double\): .* is not a finite number"),
    (b"nan,1,true\n", r"row 1, column 'a' \(double\).*required"),
])
def test_non_finite_and_missing_required_values_are_400_naming_row_and_column(server, body, pattern):
    import re

    response = server.post("/invocations", body)

    assert response.status == 400 and re.search(pattern, response.json()["message"]), response.body
