"""Local mode inside a Python process, as a notebook meets it: ``modelwerk.local.start()`` in a kernel started in a
checkout whose local mode runs (the session's) points the kernel's clients at it instead of starting another one."""

import os

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode-reads")]


@pytest.fixture
def kernel(local_mode):
    """A fresh kernel's environment: no AWS_* variables, the session's local-mode records; it comes back after.

    ``local.stop()`` is not called: it ends the local mode of the checkout, and this one is the session's."""
    from modelwerk import local, platform

    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]
    platform._resolve_cached.cache_clear()
    yield local
    os.environ.clear()
    os.environ.update(saved)
    platform._resolve_cached.cache_clear()


def test_start_reuses_the_running_local_mode_and_the_data_verbs_work_in_process(kernel, local_mode, tmp_path):
    from modelwerk import data

    state = kernel.start()
    assert state.endpoint_url == local_mode["endpoint_url"] and state.pid != os.getpid()
    assert os.environ["AWS_CONFIG_FILE"] == local_mode["aws_config_file"]
    assert os.environ["AWS_PROFILE"] == "modelwerk-dev" and "AWS_ENDPOINT_URL" not in os.environ

    sql = "SELECT count(*) AS n FROM modelwerk_dev_raw.energy_forecast"
    before = int(data.query(sql)["n"].iloc[0])
    data.generate("energy-forecast", rows=300, seed=9, out=tmp_path / "weather.csv")
    assert data.ingest("energy-forecast", [tmp_path / "weather.csv"])["rows_accepted"] == 300
    assert int(data.query(sql)["n"].iloc[0]) == before + 300
