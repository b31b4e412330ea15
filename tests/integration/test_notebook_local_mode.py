"""Local mode inside a Python process, as a notebook starts it: `modelwerk.local.start()`."""

import os

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]


@pytest.fixture
def notebook(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MODELWERK_STATE_DIR", str(tmp_path / "state"))
    from modelwerk import local, platform

    platform._resolve_cached.cache_clear()
    yield local
    local.stop()
    platform._resolve_cached.cache_clear()


def test_start_deploys_and_the_data_verbs_work_in_process(notebook, tmp_path):
    from modelwerk import data

    state = notebook.start()
    assert os.environ["AWS_ENDPOINT_URL"] == state.endpoint_url
    data.generate("energy-forecast", rows=300, seed=9, out=tmp_path / "weather.csv")
    assert data.ingest("energy-forecast", [tmp_path / "weather.csv"])["rows_accepted"] == 300
    assert data.query("SELECT count(*) AS n FROM modelwerk_dev_raw.energy_forecast")["n"].tolist() == [300]
    notebook.stop()
    assert "AWS_ENDPOINT_URL" not in os.environ
    assert notebook.read_state() is None
