"""Synthetic data: deterministic, valid under the contract, learnable, drifting on demand, damaged on demand."""

from __future__ import annotations

import doctest
import json
import math
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from modelwerk import settings, synthetic
from modelwerk.core.contract import Contract
from modelwerk.errors import ValidationError
from modelwerk.settings import UseCaseConfig

ROOT = Path(__file__).resolve().parents[2]
USE_CASES = ["pump-health", "energy-forecast"]
ROWS = 20_000


@pytest.fixture(scope="module")
def config() -> settings.PlatformConfig:
    return settings.load(ROOT)


@pytest.fixture(scope="module")
def clean(config: settings.PlatformConfig) -> dict[str, pd.DataFrame]:
    return {name: synthetic.generate(config.use_case(name), ROWS, seed=11) for name in USE_CASES}


@pytest.fixture(scope="module")
def tank_levels(tmp_path_factory: pytest.TempPathFactory) -> UseCaseConfig:
    """A third use case added by configuration only: a folder with a contract.json and nothing else."""
    folder = tmp_path_factory.mktemp("tank_levels")
    (folder / "contract.json").write_text(
        json.dumps(
            {
                "use_case": "tank-levels",
                "task": "regression",
                "label": "level_pct",
                "key": ["tank_id", "timestamp"],
                "timestamp": "timestamp",
                "asset": "tank_id",
                "columns": [
                    {"name": "tank_id", "type": "string", "required": True, "pattern": "^T[A-C]-[0-9]{2}$"},
                    {"name": "region", "type": "string", "required": True, "allowed": ["alpha", "beta"]},
                    {"name": "timestamp", "type": "timestamp", "required": True},
                    {"name": "checked_at", "type": "timestamp"},
                    {"name": "inspector_email", "type": "string", "personal": True},
                    {"name": "note", "type": "string"},
                    {"name": "pumps_running", "type": "integer", "required": True, "min": 0, "max": 4},
                    {"name": "inflow_m3h", "type": "double", "required": True, "min": 0, "max": 250},
                    {"name": "alarm", "type": "boolean"},
                    {"name": "level_pct", "type": "double", "required": True, "min": 0, "max": 100},
                ],
            }
        )
    )
    return UseCaseConfig(name="tank-levels", folder=folder, contract=Contract.load(folder / "contract.json"))


# --------------------------------------------------------------------------------------------------------------------
# A reference reading of the contract, as the ingestion applies it to the text of a file


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every value as the text a CSV file holds: ISO timestamps with Z, floats by repr, empty for missing."""

    def text(value: object) -> str:
        if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, pd.Timestamp):
            return value.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(value, (bool, np.bool_)):
            return str(bool(value))
        if isinstance(value, (float, np.floating)):
            return repr(float(value))
        return str(value)

    return pd.DataFrame({name: frame[name].map(text).astype(object) for name in frame.columns}, index=frame.index)


def violations(text: pd.DataFrame, contract: Contract) -> pd.Series:
    """Per row the first broken rule (``type:<col>``, ..., ``duplicate_key``), None for a valid row."""
    text = text.reset_index(drop=True)
    reason = pd.Series([None] * len(text), dtype=object)

    def flag(mask: pd.Series, why: str) -> None:
        reason[mask.to_numpy() & reason.isna().to_numpy()] = why

    for column in contract.columns:
        values = text[column.name].astype(object)
        present = values != ""
        if column.required:
            flag(~present, f"missing_required:{column.name}")
        if column.type in ("integer", "double"):
            number = pd.to_numeric(values.where(present), errors="coerce")
            bad = present & number.isna()
            if column.type == "integer":
                bad |= present & ~values.astype(str).str.fullmatch(r"[+-]?\d+")
            flag(bad, f"type:{column.name}")
            outside = (number < column.min if column.min is not None else False) | (
                number > column.max if column.max is not None else False
            )
            flag(present & ~bad & outside, f"out_of_range:{column.name}")
        elif column.type == "timestamp":
            parsed = pd.to_datetime(values.where(present), format="ISO8601", utc=True, errors="coerce")
            flag(present & parsed.isna(), f"type:{column.name}")
        elif column.type == "boolean":
            flag(present & ~values.isin(["True", "False", "true", "false"]), f"type:{column.name}")
        else:
            if column.allowed:
                flag(present & ~values.isin(column.allowed), f"not_allowed:{column.name}")
            if column.pattern:
                flag(present & ~values.astype(str).str.fullmatch(column.pattern), f"pattern:{column.name}")
    valid = reason.isna()
    duplicated = text.loc[valid, list(contract.key)].duplicated(keep="first")
    reason[duplicated[duplicated].index] = "duplicate_key"
    return reason


def injected(reasons: pd.Series, frame: pd.DataFrame) -> pd.Series:
    """The injected reasons spread over all rows by position, None where undamaged."""
    spread = pd.Series([None] * len(frame), dtype=object)
    spread[frame.index.get_indexer(reasons.index)] = reasons.to_numpy()
    return spread


def read_back(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if path.suffix in (".jsonl", ".ndjson"):
        return pd.DataFrame([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()])
    return pd.read_parquet(path)


def auc(score: pd.Series, label: pd.Series) -> float:
    """Area under the ROC curve (Mann-Whitney)."""
    ranks = score.rank()
    positives = int(label.sum())
    negatives = len(label) - positives
    return float((ranks[label == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


DRIFTING = {
    "pump-health": (["vibration_rms", "bearing_temp_c", "pressure_bar"], ["speed_rpm", "flow_m3h", "power_kw"]),
    "energy-forecast": (["temperature_c", "humidity_pct", "cloud_cover_pct", "wind_speed_ms"], ["capacity_mw"]),
}


def shifts(before: pd.DataFrame, after: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Mean difference in units of the reference standard deviation."""
    return pd.Series({c: (after[c].mean() - before[c].mean()) / before[c].std() for c in columns})


# --------------------------------------------------------------------------------------------------------------------
# Determinism


@pytest.mark.parametrize("use_case", USE_CASES)
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_the_same_seed_writes_byte_identical_files(config, tmp_path, use_case, suffix):
    paths = [tmp_path / f"{n}{suffix}" for n in range(2)]
    for path in paths:
        synthetic.generate_file(config.use_case(use_case), path, rows=3_000, seed=5, drift=0.3, bad_rows=0.05)
    assert paths[0].read_bytes() == paths[1].read_bytes()


@pytest.mark.parametrize("use_case", USE_CASES)
def test_another_seed_gives_other_data(config, use_case):
    first = synthetic.generate(config.use_case(use_case), 2_000, seed=1)
    second = synthetic.generate(config.use_case(use_case), 2_000, seed=2)
    label = config.use_case(use_case).contract.label
    assert not first[label].equals(second[label])
    assert not first.equals(second)


@pytest.mark.parametrize(("use_case", "asset", "properties"), [
    pytest.param("pump-health", "pump_id", ["site"], id="pump-health"),
    pytest.param("energy-forecast", "plant_id", ["plant_type", "capacity_mw"], id="energy-forecast"),
])
def test_another_seed_keeps_the_fleet_and_gives_it_new_readings(config, use_case, asset, properties):
    first = synthetic.generate(config.use_case(use_case), 5_000, seed=1)
    second = synthetic.generate(config.use_case(use_case), 5_000, seed=2)
    fleet = [frame.groupby(asset)[properties].first() for frame in (first, second)]
    pd.testing.assert_frame_equal(fleet[0], fleet[1])


@pytest.mark.parametrize("use_case", USE_CASES)
def test_another_seed_without_drift_stays_in_distribution(config, clean, use_case):
    other = synthetic.generate(config.use_case(use_case), ROWS, seed=12)
    moved, stable = DRIFTING[use_case]
    assert (shifts(clean[use_case], other, moved + stable).abs() < 0.15).all()


@pytest.mark.parametrize("use_case", USE_CASES)
def test_bad_rows_damage_the_same_clean_rows_underneath(config, use_case):
    clean = synthetic.generate(config.use_case(use_case), 5_000, seed=3)
    damaged = synthetic.generate(config.use_case(use_case), 5_000, seed=3, bad_rows=0.1)
    differs = (as_text(clean) != as_text(damaged)).any(axis=1)
    assert differs.sum() == sum(damaged.attrs["bad_rows"].values()) == 500


# --------------------------------------------------------------------------------------------------------------------
# Clean rows


@pytest.mark.parametrize("use_case", USE_CASES)
def test_clean_rows_have_the_contract_columns_in_order(config, clean, use_case):
    frame = clean[use_case]
    contract = config.use_case(use_case).contract
    assert list(frame.columns) == contract.column_names
    assert len(frame) == ROWS
    assert str(frame[contract.timestamp].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize("use_case", USE_CASES)
def test_clean_rows_break_no_rule_of_the_contract(config, clean, use_case):
    frame = clean[use_case]
    assert violations(as_text(frame), config.use_case(use_case).contract).isna().all()
    assert frame.notna().all().all()


@pytest.mark.parametrize("use_case", USE_CASES)
def test_clean_rows_have_unique_keys(config, clean, use_case):
    contract = config.use_case(use_case).contract
    assert not clean[use_case].duplicated(list(contract.key)).any()


def test_pump_readings_come_every_ten_minutes_per_pump(clean):
    steps = clean["pump-health"].groupby("pump_id")["timestamp"].diff().dropna()
    assert (steps == pd.Timedelta(minutes=10)).all()
    assert clean["pump-health"]["pump_id"].nunique() >= 3


def test_pump_failures_are_a_learnable_minority(clean):
    frame = clean["pump-health"].sort_values(["pump_id", "timestamp"])
    assert 0.05 <= frame["failure"].mean() <= 0.10
    rolling = frame.groupby("pump_id")["vibration_rms"].transform(lambda v: v.rolling(36, min_periods=1).mean())
    assert auc(frame["vibration_rms"], frame["failure"]) > 0.75
    assert auc(rolling, frame["failure"]) > 0.75
    assert auc(frame["bearing_temp_c"], frame["failure"]) > 0.7
    assert auc(frame["flow_m3h"], frame["failure"]) < 0.65  # not every column gives it away


def test_energy_production_follows_the_weather_within_capacity(clean):
    frame = clean["energy-forecast"]
    assert (frame["production_mwh"] <= frame["capacity_mw"]).all()
    solar = frame[frame["plant_type"] == "solar"]
    wind = frame[frame["plant_type"] == "wind"]
    assert (solar.loc[solar["irradiance_wm2"] == 0, "production_mwh"] == 0).all()
    assert 0.3 < (solar["irradiance_wm2"] == 0).mean() < 0.6  # nights
    assert (solar["production_mwh"] / solar["capacity_mw"]).corr(solar["irradiance_wm2"]) > 0.95
    assert (wind["production_mwh"] / wind["capacity_mw"]).corr(wind["wind_speed_ms"]) > 0.7
    assert set(frame["plant_id"].str[:2]) == {"PV", "WP"}


# --------------------------------------------------------------------------------------------------------------------
# Drift

@pytest.mark.parametrize("use_case", USE_CASES)
def test_drift_one_clearly_shifts_several_features(config, clean, use_case):
    drifted = synthetic.generate(config.use_case(use_case), ROWS, seed=11, drift=1.0)
    moved, stable = DRIFTING[use_case]
    assert (shifts(clean[use_case], drifted, moved).abs() > 0.4).all()
    assert (shifts(clean[use_case], drifted, stable).abs() < 0.05).all()


@pytest.mark.parametrize("use_case", USE_CASES)
def test_half_the_drift_shifts_about_half_as_far(config, clean, use_case):
    moved = DRIFTING[use_case][0]
    half = synthetic.generate(config.use_case(use_case), ROWS, seed=11, drift=0.5)
    full = synthetic.generate(config.use_case(use_case), ROWS, seed=11, drift=1.0)
    ratio = shifts(clean[use_case], half, moved) / shifts(clean[use_case], full, moved)
    assert ratio.between(0.3, 0.7).all(), ratio


# --------------------------------------------------------------------------------------------------------------------
# Bad rows


@pytest.mark.parametrize("use_case", USE_CASES)
@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.2])
def test_the_bad_row_fraction_is_honoured(config, use_case, fraction):
    frame = synthetic.generate(config.use_case(use_case), 10_000, seed=2, bad_rows=fraction)
    assert sum(frame.attrs["bad_rows"].values()) == round(fraction * 10_000)


@pytest.mark.parametrize("use_case", USE_CASES)
def test_every_kind_of_defect_appears(config, use_case):
    frame = synthetic.generate(config.use_case(use_case), 10_000, seed=2, bad_rows=0.05)
    assert set(frame.attrs["bad_rows"]) == set(synthetic.DEFECT_KINDS)


@pytest.mark.parametrize("use_case", USE_CASES)
def test_each_bad_row_breaks_exactly_the_rule_reported(config, clean, use_case):
    contract = config.use_case(use_case).contract
    damaged, reasons = synthetic.inject_bad_rows(clean[use_case], contract, 0.05, np.random.default_rng(9))
    expected = injected(reasons, damaged)
    assert violations(as_text(damaged), contract).equals(expected)


@hypothesis_settings(max_examples=30, deadline=None)
@given(fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_bad_rows_are_reported_as_the_ingestion_would_find_them(config, fraction, seed):
    contract = config.use_case("pump-health").contract
    frame = synthetic.generate(config.use_case("pump-health"), 300, seed=4)
    damaged, reasons = synthetic.inject_bad_rows(frame, contract, fraction, np.random.default_rng(seed))
    assert len(reasons) == int(fraction * 300 + 0.5)
    assert violations(as_text(damaged), contract).equals(injected(reasons, damaged))


def test_a_duplicated_key_copies_an_earlier_clean_row(config, clean):
    contract = config.use_case("energy-forecast").contract
    frame = clean["energy-forecast"]
    damaged, reasons = synthetic.inject_bad_rows(frame, contract, 0.05, np.random.default_rng(1))
    duplicates = reasons.index[reasons == "duplicate_key"]
    keys = damaged[list(contract.key)]
    for row in duplicates[:50]:
        earlier = keys.loc[: row - 1]
        match = earlier[(earlier == keys.loc[row]).all(axis=1)]
        assert any(index not in reasons.index for index in match.index)


def test_bad_rows_keep_text_in_object_columns(config, clean):
    contract = config.use_case("pump-health").contract
    damaged, reasons = synthetic.inject_bad_rows(clean["pump-health"], contract, 0.05, np.random.default_rng(3))
    typed = reasons[reasons.str.startswith("type:")]
    for row, reason in typed.items():
        assert isinstance(damaged.at[row, reason.split(":", 1)[1]], str)
    assert damaged["vibration_rms"].dtype == object


# --------------------------------------------------------------------------------------------------------------------
# A use case with only a contract


def test_a_use_case_without_a_generator_gets_valid_rows_from_its_contract(tank_levels):
    frame = synthetic.generate(tank_levels, 5_000, seed=1)
    contract = tank_levels.contract
    assert list(frame.columns) == contract.column_names and len(frame) == 5_000
    assert violations(as_text(frame), contract).isna().all()
    assert frame["tank_id"].nunique() == 5
    assert frame["inspector_email"].str.fullmatch(r"[a-z]+\.[a-z]+@example\.com").all()


def test_a_use_case_without_a_generator_drifts_and_breaks_on_demand(tank_levels):
    reference = synthetic.generate(tank_levels, 5_000, seed=1)
    drifted = synthetic.generate(tank_levels, 5_000, seed=1, drift=1.0, bad_rows=0.05)
    assert sum(drifted.attrs["bad_rows"].values()) == 250
    assert drifted.attrs["bad_rows"].keys() == set(synthetic.DEFECT_KINDS)
    shifted = synthetic.generate(tank_levels, 5_000, seed=1, drift=1.0)
    assert (shifts(reference, shifted, ["inflow_m3h", "pumps_running"]) > 0.4).all()
    assert shifted["level_pct"].equals(reference["level_pct"])  # the label does not drift


def test_a_generator_must_return_the_contract_columns(tank_levels, tmp_path):
    folder = tmp_path / "tank_levels"
    folder.mkdir()
    (folder / "contract.json").write_text((tank_levels.folder / "contract.json").read_text())
    (folder / "synthetic.py").write_text(
        "import pandas as pd\n\ndef generate(rows, rng, drift):\n    return pd.DataFrame({'level_pct': [1.0] * rows})\n"
    )
    use_case = UseCaseConfig(name="tank-levels", folder=folder, contract=tank_levels.contract)
    with pytest.raises(ValidationError, match=r"the contract declares \['tank_id'"):
        synthetic.generate(use_case, 10)


def test_generators_load_by_path_without_importing_the_pipelines_package(config):
    """In a fresh process: other tests of this session import the package on purpose."""
    script = ("import sys; from modelwerk import settings, synthetic; "
              "synthetic.generate(settings.load().use_case('pump-health'), 100); "
              "print('sagemaker_pipelines' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], cwd=config.root, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------------------------
# Files


@pytest.mark.parametrize("use_case", USE_CASES)
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".ndjson", ".parquet"])
def test_clean_files_read_back_to_the_same_rows(clean, tmp_path, use_case, suffix):
    frame = clean[use_case].head(2_000)
    path = tmp_path / f"rows{suffix}"
    summary = synthetic.write(frame, path)
    assert summary["rows"] == 2_000 and summary["bytes"] == path.stat().st_size
    back = read_back(path)
    if suffix == ".parquet":
        pd.testing.assert_frame_equal(back, frame)
    else:
        pd.testing.assert_frame_equal(as_text(back), as_text(frame))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_damaged_files_carry_their_defects(config, clean, tmp_path, suffix):
    contract = config.use_case("pump-health").contract
    frame = clean["pump-health"].head(5_000)
    damaged, reasons = synthetic.inject_bad_rows(frame, contract, 0.1, np.random.default_rng(8))
    path = tmp_path / f"rows{suffix}"
    synthetic.write(damaged, path)
    assert violations(as_text(read_back(path)), contract).equals(injected(reasons, damaged))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_the_ingestion_quarantines_exactly_the_damaged_rows_for_the_reasons_given(config, clean, tmp_path, suffix):
    ingest = pytest.importorskip("modelwerk.core.ingest")
    contract = config.use_case("pump-health").contract
    frame = clean["pump-health"].head(5_000)
    damaged, reasons = synthetic.inject_bad_rows(frame, contract, 0.05, np.random.default_rng(6))
    path = tmp_path / f"landing{suffix}"
    synthetic.write(damaged, path, truncate_last_line=True)  # cuts CSV files only
    expected = {frame.index.get_loc(row) + 1: reason for row, reason in reasons.items()}
    if suffix == ".csv":
        expected[len(frame)] = synthetic.MALFORMED_ROW
    result = ingest.ingest_file(
        path.read_bytes(),
        path.name,
        contract,
        pseudonymization_key=b"test",
        source_key=f"s3://landing/pump-health/{path.name}",
        ingested_at=datetime(2025, 6, 1, tzinfo=timezone.utc),
    )
    quarantined = result.quarantine.select(["_row", "_reason"]).to_pydict()
    assert dict(zip(quarantined["_row"], quarantined["_reason"])) == expected
    assert result.rows_in == len(frame)


def test_csv_timestamps_are_iso_with_z(clean, tmp_path):
    path = tmp_path / "rows.csv"
    synthetic.write(clean["energy-forecast"].head(3), path)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("plant_id,plant_type,timestamp,")
    assert re.search(r",2025-03-01T00:00:00Z,", lines[1])


def test_a_cut_upload_ends_in_a_short_last_line(config, tmp_path):
    path = tmp_path / "cut.csv"
    summary = synthetic.generate_file(config.use_case("pump-health"), path, rows=1_000, seed=1, bad_rows=0.02)
    content = path.read_text()
    lines = content.split("\n")
    assert not content.endswith("\n")
    assert len(lines) == 1_001
    assert all(line.count(",") == 10 for line in lines[:-1] if '"' not in line)
    assert lines[-1].count(",") < 10
    assert summary["truncated_last_line"] and summary["defects"]["malformed_row"] == 1
    assert summary["bad_rows"] == sum(summary["defects"].values()) in (20, 21)  # the cut row may have been damaged


def test_the_summary_counts_what_was_written(config, tmp_path):
    use_case = config.use_case("energy-forecast")
    summary = synthetic.generate_file(use_case, tmp_path / "e.parquet", rows=2_000, seed=3, bad_rows=0.05)
    assert summary == {
        "use_case": "energy-forecast",
        "path": str(tmp_path / "e.parquet"),
        "format": "parquet",
        "rows": 2_000,
        "bytes": (tmp_path / "e.parquet").stat().st_size,
        "seed": 3,
        "drift": 0.0,
        "generator": "synthetic.py",
        "bad_rows": 100,
        "defects": summary["defects"],
        "truncated_last_line": False,
    }
    assert sum(summary["defects"].values()) == 100


def test_clean_csv_keeps_its_last_line_by_default(config, tmp_path):
    summary = synthetic.generate_file(config.use_case("pump-health"), tmp_path / "p.csv", rows=100)
    assert not summary["truncated_last_line"] and (tmp_path / "p.csv").read_text().endswith("\n")


def test_write_refuses_an_unknown_extension(clean, tmp_path):
    with pytest.raises(ValidationError, match=r"choose a file ending in one of"):
        synthetic.write(clean["pump-health"].head(5), tmp_path / "rows.xlsx")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_only_csv_files_are_cut(clean, tmp_path, suffix):
    frame = clean["pump-health"].head(50)
    summary = synthetic.write(frame, tmp_path / f"rows{suffix}", truncate_last_line=True)
    assert not summary["truncated_last_line"] and len(read_back(tmp_path / f"rows{suffix}")) == 50


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"rows": -1}, r"rows must be", id="negative-rows"),
        pytest.param({"rows": 10, "seed": -3}, r"seed must be", id="negative-seed"),
        pytest.param({"rows": 10, "drift": -0.5}, r"drift must be", id="negative-drift"),
        pytest.param({"rows": 10, "bad_rows": 1.5}, r"between 0 and 1", id="too-many-bad-rows"),
    ],
)
def test_generate_refuses_bad_arguments(config, arguments, message):
    with pytest.raises(ValidationError, match=message):
        synthetic.generate(config.use_case("pump-health"), **arguments)


def test_zero_rows_give_an_empty_frame_with_the_contract_columns(config):
    frame = synthetic.generate(config.use_case("energy-forecast"), 0)
    assert frame.empty and list(frame.columns) == config.use_case("energy-forecast").contract.column_names


# --------------------------------------------------------------------------------------------------------------------
# Examples and speed


@pytest.mark.parametrize(
    "module",
    [
        pytest.param("modelwerk", id="library"),
        pytest.param("pump_health", id="pump-health"),
        pytest.param("energy_forecast", id="energy-forecast"),
    ],
)
def test_docstring_examples_run(module, monkeypatch):
    monkeypatch.chdir(ROOT)
    if module == "modelwerk":
        target = synthetic
    else:
        generator = synthetic.load_generator(ROOT / "sagemaker_pipelines" / module)
        target = sys.modules[generator.__module__]
    assert doctest.testmod(target, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.slow
@pytest.mark.parametrize("use_case", USE_CASES)
def test_a_million_rows_generate_in_seconds(config, use_case):
    started = time.perf_counter()
    frame = synthetic.generate(config.use_case(use_case), 1_000_000, seed=1)
    assert len(frame) == 1_000_000
    assert time.perf_counter() - started < 15
