"""Keyed pseudonymization (modelwerk.core.pseudonymize): deterministic, keyed, null-preserving, vectorised."""

from __future__ import annotations

import hashlib
import hmac
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelwerk.core.pseudonymize import DIGEST_LENGTH, pseudonymize_array, pseudonymize_series, pseudonymize_value

KEY = b"a-secret-key"


def test_a_pseudonym_is_the_hex_hmac_sha256_of_the_utf8_value() -> None:
    expected = hmac.new(KEY, "Jürgen@example.com".encode(), hashlib.sha256).hexdigest()

    assert pseudonymize_value("Jürgen@example.com", KEY) == expected
    assert len(expected) == DIGEST_LENGTH


@settings(max_examples=200, deadline=None)
@given(value=st.text())
def test_the_same_key_and_value_always_give_the_same_pseudonym(value: str) -> None:
    assert pseudonymize_value(value, KEY) == pseudonymize_value(value, bytes(KEY))
    assert pseudonymize_array(pa.array([value]), KEY).to_pylist() == [pseudonymize_value(value, KEY)]


def test_another_key_gives_another_pseudonym() -> None:
    assert pseudonymize_value("ops@example.com", KEY) != pseudonymize_value("ops@example.com", b"other-key")


def test_distinct_values_get_distinct_pseudonyms() -> None:
    values = [f"op{i}@example.com" for i in range(1000)]

    assert len(set(pseudonymize_array(pa.array(values), KEY).to_pylist())) == 1000


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(pa.array(["a", None, "b", "a"]), id="array"),
        pytest.param(pa.chunked_array([["a", None], ["b", "a"]]), id="chunked"),
        pytest.param(pa.array(["a", None, "b", "a"]).dictionary_encode(), id="dictionary"),
        pytest.param(pa.array(["a", None, "b", "a"], pa.large_string()), id="large-string"),
    ],
)
def test_arrays_keep_nulls_and_map_equal_values_to_equal_pseudonyms(values: pa.Array) -> None:
    out = pseudonymize_array(values, KEY).to_pylist()

    assert out == [pseudonymize_value(v, KEY) if v is not None else None for v in ["a", None, "b", "a"]]


def test_dictionary_output_holds_each_digest_once() -> None:
    out = pseudonymize_array(pa.array(["a", "b", "a", "a"]), KEY, as_dictionary=True)

    assert pa.types.is_dictionary(out.type)
    assert len(out.dictionary) == 2
    assert out.to_pylist() == pseudonymize_array(pa.array(["a", "b", "a", "a"]), KEY).to_pylist()


def test_a_series_keeps_its_index_and_its_missing_values() -> None:
    series = pd.Series(["a", None, "a"], index=[10, 11, 12], name="email")

    out = pseudonymize_series(series, KEY)

    assert out.index.tolist() == [10, 11, 12]
    assert out.name == "email"
    assert out.iloc[0] == out.iloc[2] == pseudonymize_value("a", KEY)
    assert out.isna().tolist() == [False, True, False]


@pytest.mark.parametrize("key", [pytest.param(b"", id="empty"), pytest.param("text", id="str")])
def test_a_key_must_be_non_empty_bytes(key: object) -> None:
    with pytest.raises(ValueError, match="non-empty bytes"):
        pseudonymize_value("x", key)  # type: ignore[arg-type]


def test_a_million_rows_with_few_distinct_values_cost_milliseconds() -> None:
    rng = np.random.default_rng(1)
    emails = pa.array(np.array([f"op{i}@example.com" for i in range(30)])[rng.integers(0, 30, 1_000_000)])
    pseudonymize_array(emails, KEY)  # warm up

    started = time.perf_counter()
    out = pseudonymize_array(emails, KEY, as_dictionary=True)
    elapsed = time.perf_counter() - started

    assert len(out) == 1_000_000
    assert elapsed < 0.5  # typically ~20 ms; the bound leaves room for a busy CI machine
