"""The preparation transform: dedupe rule, casts, rolling features against a pandas reference, context days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glue_jobs.prepare_curated import transform as prep
from modelwerk.core.contract import Contract

# pyspark 4 warns about pandas 3 on import; these tests never hand pandas frames to Spark.
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")

ROOT = Path(__file__).resolve().parents[2]
PUMP = Contract.load(ROOT / "sagemaker_pipelines/pump_health/contract.json")
RAW_DDL = (
    "pump_id string, site string, timestamp timestamp, operator_email string, vibration_rms double, "
    "bearing_temp_c double, flow_m3h double, pressure_bar double, speed_rpm double, power_kw double, "
    "failure bigint, _ingested_at timestamp, _source_key string"
)
T0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
INGESTED = dt.datetime(2025, 3, 10, tzinfo=dt.UTC)
FEATURES = PUMP.rolling.feature_names


def reading(
    pump: str,
    minutes: int,
    vibration: float,
    *,
    ingested: dt.datetime = INGESTED,
    source: str = "s3://landing/a.csv",
    **values,
) -> dict:
    row = {
        "pump_id": pump,
        "site": "plant-north",
        "timestamp": T0 + dt.timedelta(minutes=minutes),
        "operator_email": None,
        "vibration_rms": vibration,
        "bearing_temp_c": 40.0 + vibration / 2,
        "flow_m3h": 100.0,
        "pressure_bar": 5.0,
        "speed_rpm": 1500.0,
        "power_kw": 50.0,
        "failure": 0,
        "_ingested_at": ingested,
        "_source_key": source,
    }
    row.update(values)
    return row


def frame(spark, rows: list[dict]):
    columns = [c.split()[0] for c in RAW_DDL.split(", ")]
    return spark.createDataFrame([tuple(r[c] for c in columns) for r in rows], RAW_DDL)


def collect(df) -> pd.DataFrame:
    rows = [r.asDict() for r in df.collect()]
    return pd.DataFrame(rows, columns=df.columns)


def pandas_reference(rows: list[dict], contract: Contract) -> pd.DataFrame:
    """Dedupe (latest _ingested_at, then larger _source_key) and pandas time-window rolling per asset."""
    raw = pd.DataFrame(rows)
    raw["timestamp"] = pd.to_datetime(raw["timestamp"], utc=True)
    raw = raw.sort_values(["_ingested_at", "_source_key"], ascending=False, kind="stable")
    deduped = (
        raw.drop_duplicates(list(contract.key), keep="first")
        .sort_values(["pump_id", "timestamp"])
        .reset_index(drop=True)
    )
    rolling = contract.rolling
    for column in rolling.columns:
        grouped = deduped.groupby("pump_id").rolling(rolling.window, on="timestamp")[column]
        for stat in rolling.stats:
            # Groups come out sorted by asset, readings by time: the order of ``deduped``.
            deduped[rolling.feature_name(column, stat)] = getattr(grouped, stat)().to_numpy()
    deduped["dt"] = deduped["timestamp"].dt.strftime("%Y-%m-%d")
    return deduped


@pytest.fixture(scope="module")
def spark():
    pyspark_sql = pytest.importorskip("pyspark.sql")
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("test-prepare-transform")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")  # local mode stays on loopback
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# --- pure helpers (no Spark session) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        pytest.param("6h", ["2025-02-28"], id="hours-need-one-day"),
        pytest.param("1d", ["2025-02-28"], id="one-day-needs-one-day"),
        pytest.param("36h", ["2025-02-27", "2025-02-28"], id="longer-windows-need-more-days"),
    ],
)
def test_context_partitions_cover_the_window(window: str, expected: list[str]) -> None:
    doc = PUMP.to_dict()
    doc["rolling"]["window"] = window
    assert prep.context_partitions(["2025-03-01"], Contract.from_dict(doc)) == expected


def test_context_partitions_leave_out_touched_days() -> None:
    assert prep.context_partitions(["2025-03-01", "2025-03-02", "2025-03-04"], PUMP) == ["2025-02-28", "2025-03-03"]


def test_contract_without_rolling_reads_no_context() -> None:
    doc = PUMP.to_dict()
    del doc["rolling"]
    assert prep.context_partitions(["2025-03-01"], Contract.from_dict(doc)) == []


def test_late_data_recomputes_the_existing_days_its_windows_reach() -> None:
    existing = ["2025-02-28", "2025-03-01", "2025-03-02", "2025-03-05"]
    assert prep.affected_partitions(["2025-03-01"], existing, PUMP) == ["2025-03-01", "2025-03-02"]
    assert prep.affected_partitions(["2025-03-04"], existing, PUMP) == ["2025-03-04", "2025-03-05"]
    assert prep.affected_partitions(["2025-03-05"], existing, PUMP) == ["2025-03-05"]


# --- transform on a local SparkSession -----------------------------------------------------------------------------


@pytest.mark.slow
def test_latest_ingestion_wins_a_duplicate_key(spark) -> None:
    rows = [
        reading("P-001", 0, 1.0, ingested=INGESTED, source="s3://landing/z.csv"),
        reading("P-001", 0, 2.0, ingested=INGESTED + dt.timedelta(hours=1), source="s3://landing/a.csv"),
    ]
    out = collect(prep.transform(frame(spark, rows), PUMP, None))
    assert out["vibration_rms"].tolist() == [2.0]


@pytest.mark.slow
def test_larger_source_key_breaks_an_ingestion_tie(spark) -> None:
    rows = [
        reading("P-001", 0, 1.0, source="s3://landing/b.csv"),
        reading("P-001", 0, 2.0, source="s3://landing/c.csv"),
        reading("P-001", 0, 3.0, source="s3://landing/a.csv"),
    ]
    out = collect(prep.transform(frame(spark, rows), PUMP, None))
    assert out[["vibration_rms", "_source_key"]].values.tolist() == [[2.0, "s3://landing/c.csv"]]


@pytest.mark.slow
def test_result_does_not_depend_on_input_order(spark) -> None:
    rows = [reading("P-001", 0, v, source="s3://landing/same.csv") for v in (3.0, 1.0, 2.0)]
    first = collect(prep.transform(frame(spark, rows), PUMP, None))
    second = collect(prep.transform(frame(spark, rows[::-1]), PUMP, None))
    pd.testing.assert_frame_equal(first, second)
    assert first["vibration_rms"].tolist() == [3.0]


@pytest.mark.slow
def test_rolling_features_match_pandas(spark) -> None:
    rng = np.random.default_rng(7)
    rows = []
    for pump in ("P-001", "P-002", "P-003"):
        minutes = np.cumsum(rng.choice([10, 10, 10, 20, 60, 360], size=120))  # irregular, with gaps of the window
        for m in minutes:
            rows.append(reading(pump, int(m), float(rng.normal(5, 2))))
    # Duplicates with later ingestion replace some values.
    for row in rows[::9]:
        rows.append(
            {**row, "vibration_rms": row["vibration_rms"] + 10, "_ingested_at": INGESTED + dt.timedelta(days=1)}
        )
    expected = pandas_reference(rows, PUMP)
    out = collect(prep.transform(frame(spark, rows), PUMP, None))
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    out = out.sort_values(["pump_id", "timestamp"]).reset_index(drop=True)
    assert len(out) == len(expected)
    assert (out["timestamp"] == expected["timestamp"]).all()
    assert (out["dt"] == expected["dt"]).all()
    np.testing.assert_allclose(out["vibration_rms"], expected["vibration_rms"])
    for feature in FEATURES:
        np.testing.assert_allclose(
            out[feature].astype(float), expected[feature].astype(float), rtol=1e-9, atol=1e-12, err_msg=feature
        )


@pytest.mark.slow
def test_window_is_half_open_and_ends_at_the_row(spark) -> None:
    rows = [reading("P-001", 0, 1.0), reading("P-001", 360, 3.0), reading("P-001", 361, 5.0)]
    out = collect(prep.transform(frame(spark, rows), PUMP, None)).sort_values("timestamp")
    assert out["vibration_rms_mean_6h"].tolist() == [1.0, 3.0, 4.0]  # the reading exactly 6 h back is outside
    assert out["vibration_rms_std_6h"].isna().tolist() == [True, True, False]  # one reading: no sample std


@pytest.mark.slow
def test_context_day_feeds_windows_but_is_not_returned(spark) -> None:
    rows = [reading("P-001", m, float(m)) for m in range(23 * 60, 25 * 60 + 1, 10)]  # 2025-03-01 23:00 .. 03-02 01:00
    touched = collect(prep.transform(frame(spark, rows), PUMP, ["2025-03-02"]))
    assert set(touched["dt"]) == {"2025-03-02"}
    first = touched.sort_values("timestamp").iloc[0]
    assert first["vibration_rms_mean_6h"] == pytest.approx(np.mean(range(23 * 60, 24 * 60 + 1, 10)))
    counted = prep.touched_rows(frame(spark, rows), PUMP, ["2025-03-02"]).count()
    assert counted == len(touched) == 7


@pytest.mark.slow
def test_dt_is_the_utc_date_whatever_the_session_time_zone(spark) -> None:
    spark.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
    try:
        out = collect(prep.transform(frame(spark, [reading("P-001", 23 * 60 + 50, 1.0)]), PUMP, None))
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert out["dt"].tolist() == ["2025-03-01"]


@pytest.mark.slow
def test_older_files_are_cast_to_contract_types(spark) -> None:
    old = spark.createDataFrame(
        [
            (
                "P-001",
                "plant-north",
                "2025-03-01 10:00:00",
                "7.5",
                41,
                "1",
                "2025-03-10 00:00:00",
                "s3://landing/old.csv",
                "2025-03-01",
            )
        ],
        "pump_id string, site string, timestamp string, vibration_rms string, bearing_temp_c int, failure string, "
        "_ingested_at string, _source_key string, dt string",
    )
    curated = prep.transform(old, PUMP, None)
    types = dict(curated.dtypes)
    assert [types[name] for name, _ in PUMP.curated_schema()] == [glue for _, glue in PUMP.curated_schema()]
    row = curated.collect()[0]
    assert (row["vibration_rms"], row["bearing_temp_c"], row["failure"], row["flow_m3h"]) == (7.5, 41.0, 1, None)
    assert row["timestamp"] == dt.datetime(2025, 3, 1, 10, 0)  # session time zone UTC
    assert curated.columns == [name for name, _ in PUMP.curated_schema()] + ["dt"]


@pytest.mark.slow
def test_unconvertible_values_become_null(spark) -> None:
    old = spark.createDataFrame(
        [("P-001", "2025-03-01 10:00:00", "not a number")], "pump_id string, timestamp string, vibration_rms string"
    )
    assert prep.transform(old, PUMP, None).collect()[0]["vibration_rms"] is None


@pytest.mark.slow
def test_rows_in_equals_rows_out_plus_duplicates(spark) -> None:
    rows = [reading("P-001", m, 1.0) for m in range(0, 600, 10)]
    rows += [{**r, "_source_key": "s3://landing/b.csv"} for r in rows[:7]]
    raw = frame(spark, rows)
    rows_in = prep.touched_rows(raw, PUMP, None).count()
    rows_out = prep.transform(raw, PUMP, None).count()
    assert (rows_in, rows_out, rows_in - rows_out) == (67, 60, 7)


@pytest.mark.slow
def test_each_partition_lands_in_one_sorted_spark_partition(spark) -> None:
    rows = [reading(p, m, 1.0) for p in ("P-002", "P-001") for m in range(0, 3 * 24 * 60, 180)]
    curated = prep.transform(frame(spark, rows), PUMP, None)
    chunks = curated.rdd.glom().map(lambda rs: [(r["dt"], r["pump_id"], r["timestamp"]) for r in rs]).collect()
    seen: set[str] = set()
    for chunk in chunks:
        assert chunk == sorted(chunk)
        days = {d for d, _, _ in chunk}
        assert not days & seen
        seen |= days
    assert seen == {"2025-03-01", "2025-03-02", "2025-03-03"}
