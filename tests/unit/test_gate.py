"""The promotion quality gate (``modelwerk.core.gate``): expected predictions, latency budget, response schema."""

from __future__ import annotations

import doctest
import json
import time

import pytest

from modelwerk import settings
from modelwerk.core import gate

CASES = gate.parse_cases("case,site,vibration,expected,tolerance\n"
                         "healthy,north,2.0,0,\n"
                         "failing,south,9.0,1,\n")
REGRESSION = gate.parse_cases("case,plant,wind,expected,tolerance\ncalm,wp-01,2.0,5,1\nrated,wp-01,15,130,25\n")


def classifier(body: bytes, content_type: str) -> tuple[bytes, str]:
    """A stand-in model: failing when vibration is above 5."""
    assert content_type == "text/csv" and b"\n" not in body
    site, vibration = body.decode().split(",")
    return (b"1\n" if float(vibration) > 5 else b"0\n"), "text/csv"


def test_the_module_examples_hold():
    assert doctest.testmod(gate, raise_on_error=False).failed == 0


def test_a_model_that_predicts_every_point_passes():
    result = gate.run(CASES, classifier, budget_ms=1000)
    assert result.passed and result.failures == []
    assert [c.predicted for c in result.cases] == ["0", "1"]
    assert result.requests == 2 * (gate.REPEATS + 1) and result.latency_ms["p95"] is not None
    json.dumps(result.to_dict())


def test_a_wrong_prediction_fails_and_names_the_data_point():
    result = gate.run(CASES, lambda body, ct: (b"0", "text/csv"), budget_ms=1000)
    assert not result.passed
    assert result.failures == ["case failing: predicted 0, expected 1"]
    assert [c.passed for c in result.cases] == [True, False]


def test_regression_points_pass_within_their_tolerance_and_fail_outside():
    near = gate.run(REGRESSION, lambda body, ct: (b'{"predictions": [5.5]}' if b"2.0" in body else
                                                  b'{"predictions": [110.0]}', "application/json"), budget_ms=1000)
    assert near.passed, near.failures
    far = gate.run(REGRESSION, lambda body, ct: (b"5.0" if b"2.0" in body else b"100.0", "text/csv"), budget_ms=1000)
    assert far.failures == ["case rated: predicted 100.0, expected 130 ± 25"]


def test_a_slow_endpoint_fails_on_the_latency_budget():
    def slow(body: bytes, content_type: str) -> tuple[bytes, str]:
        time.sleep(0.03)
        return classifier(body, content_type)

    result = gate.run(CASES, slow, budget_ms=10, repeats=2)
    assert not result.passed and all(c.passed for c in result.cases)
    assert len(result.failures) == 1 and result.failures[0].startswith("latency: p95 ")
    assert "over the budget of 10 ms" in result.failures[0] and result.latency_ms["p95"] >= 30


@pytest.mark.parametrize(("answer", "reason"), [
    ((b"0\n1\n", "text/csv"), "2 predictions for one row"),
    ((b'{"predictions": ', "application/json"), "is not a readable prediction"),
    ((b"\xff\xfe", "text/csv"), "is not a readable prediction"),
])
def test_an_answer_of_the_wrong_shape_fails_the_schema_check(answer, reason):
    result = gate.run(CASES, lambda body, ct: answer, budget_ms=1000)
    assert not result.passed and all(reason in f for f in result.failures), result.failures


def test_an_endpoint_error_fails_the_point_without_stopping_the_gate():
    def failing(body: bytes, content_type: str) -> tuple[bytes, str]:
        raise RuntimeError("ModelError: 500")

    result = gate.run(CASES, failing, budget_ms=1000)
    assert result.failures == [f"case {name}: the endpoint answered with an error: ModelError: 500"
                               for name in ("healthy", "failing")]


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    ("case,x\na,1\n", "no 'expected' column"),
    ("case,expected\na,1\n", "names no model input"),
    ("x,expected\n1,2,3\n", "line 2 has 3 values"),
    ("x,expected,tolerance\n1,2,wide\n", "is not a number"),
    ("x,expected,tolerance\n1,2,-1\n", "must be a number >= 0"),
    ("x,expected\n", "holds no data point"),
])
def test_an_unusable_cases_file_is_refused_with_what_to_fix(text, message):
    with pytest.raises(gate.GateError, match=message):
        gate.parse_cases(text)


def test_inputs_out_of_the_versions_order_are_refused():
    with pytest.raises(gate.GateError, match=r"takes \['vibration', 'site'\] \(in this order\)"):
        gate.parse_cases("site,vibration,expected\nnorth,1,0\n", inputs=["vibration", "site"])


@pytest.mark.parametrize("use_case", ["pump-health", "energy-forecast"])
def test_every_use_case_keeps_gate_cases_in_its_models_input_order(use_case):
    config = settings.load().use_case(use_case)
    cases = gate.read_cases(config.folder / "gate_cases.csv", inputs=config.contract.input_schema)
    assert len(cases.cases) >= 4 and len({c.name for c in cases.cases}) == len(cases.cases)
    if config.contract.task == "regression":
        assert all(c.tolerance is not None for c in cases.cases)
    else:
        assert {c.expected for c in cases.cases} == {"0", "1"}


def test_the_command_line_refuses_a_bad_cases_file_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "gate_cases.csv"
    bad.write_text("case,x\n")
    assert gate.main(["--endpoint", "e", "--cases", str(bad), "--budget-ms", "100"]) == 2
    assert "no 'expected' column" in capsys.readouterr().err
