"""Synthetic condition-monitoring readings of a fleet of centrifugal pumps.

``modelwerk data generate --use-case pump-health`` loads this file by path and calls :func:`generate`.

The fleet
    Pumps ``P-001``, ``P-002``, ... spread over three sites, one reading per pump every 10 minutes from
    2025-01-06 00:00 UTC, rows ordered by time and then pump (a fleet export). About 30 days of history per pump:
    the fleet grows with the number of rows (at least 3 pumps, at most 999). The pumps themselves (site, size, motor,
    wear) are the same in every file, whatever the seed: a new seed gives the same fleet new readings, so a drift
    monitor compares like with like.

Physics
    Demand follows a daily cycle; speed, flow, pressure and power follow the pump affinity laws
    (flow ~ speed, pressure ~ speed^2, power = flow * pressure / efficiency). Bearing temperature is the site's
    ambient temperature (daily cycle, weather) plus a load-dependent rise. Vibration scales with speed^2.

Failures
    Each pump fails now and then (a renewal process, some pumps more often than others). Most failures are preceded
    by a degradation episode of 1 to 3 days: vibration climbs and turns spiky (bearing impacts), bearing temperature
    climbs, flow and pressure sag and power rises as efficiency drops. About one failure in seven is sudden (a few
    hours of warning). After a failure the pump stands still for 4 to 24 hours of repair (speed, flow, pressure and
    power 0). Maintenance also catches some degradation before it ends in a failure, so a rising vibration is
    evidence, not proof. ``failure`` is 1
    when the pump fails within the next 24 hours (about 6.5 % of a large fleet's rows).

Drift
    ``drift`` 1.0 = the vibration sensors read 1.2 mm/s high (re-mounted sensors), summer raises the bearing
    temperatures by 10 degC and the pressure transmitters read 10 % + 1 bar high (recalibration). Speed, flow and
    power do not drift. Values between 0 and 1 scale the shifts; above 1 extrapolates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelwerk.synthetic import reported, smooth_noise

COLUMNS = (
    "pump_id",
    "site",
    "timestamp",
    "operator_email",
    "vibration_rms",
    "bearing_temp_c",
    "flow_m3h",
    "pressure_bar",
    "speed_rpm",
    "power_kw",
    "failure",
)

START = np.datetime64("2025-01-06T00:00:00", "us")
STEP = np.timedelta64(10, "m")
STEPS_PER_HOUR = 6
STEPS_PER_DAY = 24 * STEPS_PER_HOUR
HORIZON = 24 * STEPS_PER_HOUR  # label: a failure within the next 24 hours
READINGS_PER_PUMP = 30 * STEPS_PER_DAY
MAX_PUMPS = 999
FLEET_SEED = 6010  # the fleet itself does not depend on the seed, only its readings do

SITES = np.array(["plant-north", "plant-south", "plant-east"], dtype=object)
SITE_AMBIENT_C = np.array([8.0, 17.0, 12.0])

# Five operators per site; three 8-hour shifts (06-14, 14-22, 22-06 UTC) rotate through them day by day.
OPERATORS = np.array(
    [
        [f"{name}@example.com" for name in names]
        for names in (
            ("anna.schmidt", "jonas.weber", "lea.fischer", "lukas.wagner", "mia.becker"),
            ("noah.hoffmann", "emma.schulz", "paul.koch", "sofia.richter", "ben.klein"),
            ("lina.wolf", "elias.neumann", "clara.schwarz", "felix.braun", "ida.zimmermann"),
        )
    ],
    dtype=object,
)

# Degradation and repair, in 10-minute steps.
EPISODE_STEPS = (24 * STEPS_PER_HOUR, 72 * STEPS_PER_HOUR)
SUDDEN_EPISODE_STEPS = (STEPS_PER_HOUR, 4 * STEPS_PER_HOUR)
SUDDEN_SHARE = 0.15
REPAIR_STEPS = (4 * STEPS_PER_HOUR, 24 * STEPS_PER_HOUR)
MIN_GAP = REPAIR_STEPS[1] + EPISODE_STEPS[1] + STEPS_PER_DAY
MEAN_GAP = 17 * STEPS_PER_DAY
SPIKE_SHARE = 0.04


def _fleet_shape(rows: int) -> tuple[int, int]:
    """(pumps, readings per pump) for ``rows`` readings: about 30 days per pump."""
    pumps = int(np.clip(-(-rows // READINGS_PER_PUMP), min(3, rows), MAX_PUMPS))
    return pumps, -(-rows // pumps)


def _fleet(pumps: int) -> tuple[np.ndarray, ...]:
    """Properties of the first ``pumps`` pumps, the same in every file whatever the seed: P-001 is always P-001.

    (site index, nominal rpm, rated flow m3/h, rated pressure bar, efficiency, base vibration mm/s, bearing temperature
    rise degC, wear: how much more often than average the pump fails)
    """
    fleet = np.random.default_rng(FLEET_SEED)
    n = MAX_PUMPS
    properties = (
        fleet.integers(0, len(SITES), n),
        np.where(fleet.random(n) < 0.6, 1480.0, 2960.0),  # 4-pole or 2-pole motors at 50 Hz
        np.round(fleet.uniform(60.0, 800.0, n), -1),
        np.round(fleet.uniform(3.0, 16.0, n), 1),
        fleet.uniform(0.65, 0.82, n),
        fleet.uniform(1.2, 3.0, n),
        fleet.uniform(30.0, 42.0, n),
        fleet.lognormal(0.0, 0.35, n),
    )
    return tuple(values[:pumps] for values in properties)




def _events(rng: np.random.Generator, pumps: int, steps: int, mean_gap: np.ndarray, min_gap: int) -> np.ndarray:
    """Event times (steps) per pump, shape (pumps, k), each row increasing and ending beyond ``steps``.

    Gaps are ``min_gap`` plus a gamma-distributed part; the first event falls anywhere within the first gap, as if
    the process had been running before the data starts.
    """
    count = steps // min_gap + 3
    spread = np.maximum(mean_gap - min_gap, 1.0)[:, None]
    gaps = min_gap + rng.gamma(2.0, spread / 2.0, size=(pumps, count))
    gaps[:, 0] *= rng.random(pumps)
    return np.cumsum(gaps, axis=1).astype(np.int64)


def _next_event(times: np.ndarray, step: np.ndarray, pump: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For readings at ``step`` of ``pump``: (index into ``times.ravel()`` of the next event after step, its time)."""
    offset = np.int64(times.max() + 1)
    flat = (times + offset * np.arange(times.shape[0])[:, None]).ravel()
    index = np.searchsorted(flat, step + offset * pump, side="right")
    return index, flat[index] - offset * pump


def generate(rows: int, rng: np.random.Generator, drift: float) -> pd.DataFrame:
    """Clean readings: exactly the contract's columns, in its order, every value valid.

    Parameters
    ----------
    rows : int
        Number of readings.
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same frame.
    drift : float
        0 = the reference distribution; 1 = vibration, bearing temperature and pressure clearly shifted.

    Example
    -------
    >>> frame = generate(1_000, np.random.default_rng(7), drift=0.0)
    >>> list(frame.columns) == list(COLUMNS), len(frame)
    (True, 1000)
    """
    pumps, steps = _fleet_shape(rows)
    step = np.repeat(np.arange(steps, dtype=np.int64), pumps)[:rows]
    pump = np.tile(np.arange(pumps, dtype=np.int64), steps)[:rows]

    site_of_pump, nominal_rpm, rated_flow, rated_bar, efficiency, base_vibration, temp_rise, wear = _fleet(pumps)

    # Failures and degradation before them.
    failures = _events(rng, pumps, steps, MEAN_GAP / wear, MIN_GAP)
    sudden = rng.random(failures.shape) < SUDDEN_SHARE
    episode = np.where(
        sudden,
        rng.integers(*SUDDEN_EPISODE_STEPS, size=failures.shape),
        rng.integers(*EPISODE_STEPS, size=failures.shape),
    ).ravel()
    intensity = rng.uniform(0.7, 1.3, failures.shape).ravel()
    repair = rng.integers(*REPAIR_STEPS, size=failures.shape).ravel()

    index, next_failure = _next_event(failures, step, pump)
    to_failure = next_failure - step
    failure = (to_failure <= HORIZON).astype(np.int64)
    severity = np.clip(1.0 - to_failure / episode[index], 0.0, 1.0) ** 1.5 * intensity[index]
    has_previous = index > pump * failures.shape[1]
    previous = np.where(has_previous, index - 1, 0)
    stopped = has_previous & (step - failures.ravel()[previous] < repair[previous])

    # Degradation that maintenance catches before it becomes a failure.
    fixes = _events(rng, pumps, steps, np.full(pumps, 20.0 * STEPS_PER_DAY), 5 * STEPS_PER_DAY)
    fix_episode = rng.integers(12 * STEPS_PER_HOUR, 48 * STEPS_PER_HOUR, size=fixes.shape).ravel()
    fix_intensity = rng.uniform(0.25, 0.7, fixes.shape).ravel()
    fix_index, next_fix = _next_event(fixes, step, pump)
    caught = np.clip(1.0 - (next_fix - step) / fix_episode[fix_index], 0.0, 1.0) ** 1.5 * fix_intensity[fix_index]
    severity = np.maximum(severity, caught)

    # Operation: a daily demand cycle per site, the affinity laws, efficiency lost to wear.
    hour = (step % STEPS_PER_DAY) / STEPS_PER_HOUR
    site = site_of_pump[pump]
    demand_noise = smooth_noise(rng, steps, len(SITES), 3 * STEPS_PER_HOUR).ravel()
    load = 0.88 + 0.07 * np.sin(2 * np.pi * (hour - 9.0) / 24.0)
    load = np.clip(load + 0.03 * demand_noise[step * len(SITES) + site], 0.6, 1.0)
    running = ~stopped
    speed = nominal_rpm[pump] * load * (1.0 + rng.normal(0.0, 0.002, rows))
    flow = rated_flow[pump] * load * (1.0 - 0.12 * severity) * (1.0 + rng.normal(0.0, 0.02, rows))
    pressure = rated_bar[pump] * load**2 * (1.0 - 0.08 * severity) * (1.0 + rng.normal(0.0, 0.015, rows))
    power = flow * pressure / 36.0 / (efficiency[pump] * (1.0 - 0.15 * severity)) * (1.0 + rng.normal(0.0, 0.01, rows))
    # Impacts of a damaged bearing come and go: spikes grow more frequent as it degrades (so does the rolling std).
    spiking = rng.random(rows) < SPIKE_SHARE + 0.3 * np.minimum(severity, 1.0)
    spikes = np.where(spiking, rng.uniform(1.5, 3.0, rows), 1.0)
    vibration = base_vibration[pump] * (0.7 + 0.3 * load**2) * rng.lognormal(0.0, 0.25, rows) * spikes + 4.0 * severity

    weather = smooth_noise(rng, steps, len(SITES), 2 * STEPS_PER_DAY).ravel()
    daily = 5.0 * np.sin(2 * np.pi * (hour - 9.0) / 24.0)
    ambient = SITE_AMBIENT_C[site] + daily + 3.0 * weather[step * len(SITES) + site]
    rated_power = rated_flow * rated_bar / 36.0 / efficiency
    bearing = ambient + temp_rise[pump] * (0.6 + 0.4 * power / rated_power[pump]) + 30.0 * severity**1.2
    bearing = bearing + rng.normal(0.0, 1.5, rows)

    # Standing still for repair.
    speed = np.where(running, speed, 0.0)
    flow = np.where(running, flow, 0.0)
    pressure = np.where(running, pressure, 0.0)
    power = np.where(running, power, 0.0)
    vibration = np.where(running, vibration, rng.uniform(0.05, 0.3, rows))
    bearing = np.where(running, bearing, ambient + rng.uniform(1.0, 4.0, rows))

    # Drift: what the sensors report, not what the pump does.
    vibration = vibration + 1.2 * drift
    bearing = bearing + 10.0 * drift
    pressure = pressure * (1.0 + 0.1 * drift) + 1.0 * drift

    shift = (step - 6 * STEPS_PER_HOUR) // (8 * STEPS_PER_HOUR)  # shifts counted from 06:00 on the first day
    rota = shift % OPERATORS.shape[1]
    return pd.DataFrame(
        {
            "pump_id": np.array([f"P-{n:03d}" for n in range(1, pumps + 1)], dtype=object)[pump],
            "site": SITES[site],
            "timestamp": pd.DatetimeIndex(START + step * STEP).tz_localize("UTC"),
            "operator_email": OPERATORS[site, rota],
            "vibration_rms": reported(np.clip(vibration, 0.0, 100.0), 2),
            "bearing_temp_c": reported(np.clip(bearing, -40.0, 200.0), 1),
            "flow_m3h": reported(np.clip(flow, 0.0, 2000.0), 1),
            "pressure_bar": reported(np.clip(pressure, 0.0, 60.0), 2),
            "speed_rpm": reported(np.clip(speed, 0.0, 6000.0), 0),
            "power_kw": reported(np.clip(power, 0.0, 1000.0), 1),
            "failure": failure,
        },
        columns=list(COLUMNS),
    )
