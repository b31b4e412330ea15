"""The CLI's promise: one JSON object with --json, one sentence and a non-zero exit on error, never a traceback."""

import json

import pytest

from modelwerk import cli


@pytest.fixture(autouse=True)
def no_local_mode(monkeypatch):
    monkeypatch.setenv("MODELWERK_LOCAL", "0")


def test_generate_prints_one_json_object(tmp_path, capsys):
    out = tmp_path / "pumps.csv"
    assert cli.main(["data", "generate", "--use-case", "pump-health", "--rows", "50", "--seed", "3", "--out", str(out),
                     "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"] == 50 and out.is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["data", "generate", "--use-case", "boilers", "--rows", "5", "--out", "x.csv"], "unknown use case",
                     id="unknown-use-case"),
        pytest.param(["data", "generate", "--use-case", "pump-health", "--rows", "0", "--out", "x.csv"], "--rows",
                     id="no-rows"),
        pytest.param(["data", "generate", "--use-case", "pump-health", "--rows", "5", "--out", "x.xlsx"], ".csv",
                     id="unsupported-format"),
        pytest.param(["data", "generate", "--use-case", "pump-health", "--rows", "5", "--bad-rows", "2", "--out",
                      "x.csv"], "--bad-rows", id="bad-fraction"),
    ],
)
def test_errors_are_one_sentence_on_stderr(argv, message, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in captured.err


def test_local_status_when_not_running(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELWERK_STATE_DIR", str(tmp_path))
    assert cli.main(["local", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"running": False}
