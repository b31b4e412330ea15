"""Synthetic hourly weather and production of solar and wind plants.

``modelwerk data generate --use-case energy-forecast`` loads this file by path and calls :func:`generate`.

The plants
    Solar parks ``PV-01``, ... (5 to 150 MW) and wind parks ``WP-01``, ... (20 to 400 MW), half and half, spread
    over Germany (latitude 47.5 to 54.5). One row per plant and hour from 2025-03-01 00:00 UTC, ordered by time and
    then plant; about 90 days per plant, more when the 99 + 99 plant ids are used up. The plants themselves
    (location, capacity, wind resource) are the same in every file, whatever the seed: a new seed gives them new
    weather.

Weather
    Every plant has a weather station: irradiance follows the sun (day of year, hour, latitude, longitude; a
    clear-sky model) dimmed by clouds; cloud cover, temperature, humidity and wind speed are smooth random processes,
    part regional (shared by all plants) and part local. Wind speed is Rayleigh distributed, at hub height for wind
    parks and at 10 m for solar parks. Temperature has a seasonal and a daily cycle; humidity rises with clouds and
    falls in the afternoon.

Production (MWh in the hour, within [0, capacity])
    Solar: capacity x irradiance / 1000 W/m2 x a performance ratio that drops as the modules heat up, with a
    DC/AC ratio of 1.15 (inverters clip at the capacity). Wind: a power curve (cut-in 3 m/s, rated 12.5 m/s,
    cut-out 25 m/s) corrected for air density, with occasional outages and curtailment. Both with a few percent of
    noise.

Drift
    ``drift`` 1.0 = a warmer, drier, clearer and calmer season: temperature +7 degC, humidity -12 points, fewer
    clouds (so more irradiance) and 35 % less wind. Production follows the weather, as it would. Values between 0
    and 1 scale the shifts; above 1 extrapolates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelwerk.synthetic import reported, smooth_noise

COLUMNS = (
    "plant_id",
    "plant_type",
    "timestamp",
    "shift_lead",
    "irradiance_wm2",
    "temperature_c",
    "wind_speed_ms",
    "cloud_cover_pct",
    "humidity_pct",
    "capacity_mw",
    "production_mwh",
)

START = np.datetime64("2025-03-01T00:00:00", "us")
START_DAY_OF_YEAR = 59  # 0-based: 1 March 2025
HOURS_PER_PLANT = 90 * 24
MAX_PER_TYPE = 99  # ids have two digits
FLEET_SEED = 3010  # the plants themselves do not depend on the seed, only their weather and production do

# Control-room shift leads: 12-hour shifts (06-18, 18-06 UTC), one control room for the north, one for the south.
SHIFT_LEADS = np.array(
    [
        ["Anna Becker", "Jonas Hartmann", "Lea Vogel", "Tim Krause"],
        ["Marie Huber", "Lukas Maier", "Sara Brandt", "David Lorenz"],
    ],
    dtype=object,
)

CUT_IN_MS, RATED_MS, CUT_OUT_MS = 3.0, 12.5, 25.0
DC_AC_RATIO = 1.15


def _plants(rows: int) -> tuple[int, int, int]:
    """(solar plants, wind plants, hours) for ``rows`` rows."""
    plants = int(np.clip(-(-rows // HOURS_PER_PLANT), min(2, rows), 2 * MAX_PER_TYPE))
    solar = -(-plants // 2)
    return solar, plants - solar, -(-rows // plants)


def _fleet(solar: int, wind: int) -> tuple[np.ndarray, ...]:
    """Properties of the first ``solar`` solar and ``wind`` wind plants, the same in every file whatever the seed.

    (latitude, longitude, capacity MW, mean wind speed m/s at the station: hub height or 10 m)
    """
    fleet = np.random.default_rng(FLEET_SEED)
    n = MAX_PER_TYPE
    latitude = fleet.uniform(47.5, 54.5, (2, n))
    longitude = fleet.uniform(6.0, 15.0, (2, n))
    capacity = np.round(np.stack([fleet.uniform(5.0, 150.0, n), fleet.uniform(20.0, 400.0, n)]), 1)
    mean_wind = np.stack([fleet.uniform(3.0, 4.5, n), fleet.uniform(6.5, 9.0, n)])
    properties = (latitude, longitude, capacity, mean_wind)
    return tuple(np.concatenate([values[0, :solar], values[1, :wind]]) for values in properties)




def _clear_sky(hours: np.ndarray, latitude: np.ndarray, longitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(global horizontal irradiance under a clear sky in W/m2, local solar hour) in the middle of each hour."""
    middle = hours + 0.5
    day = START_DAY_OF_YEAR + middle / 24.0
    declination = np.radians(23.44) * np.sin(2 * np.pi * (day + 285.0) / 365.0)
    solar_hour = (middle % 24.0) + longitude / 15.0
    hour_angle = np.radians(15.0 * (solar_hour - 12.0))
    phi = np.radians(latitude)
    cos_zenith = np.sin(phi) * np.sin(declination) + np.cos(phi) * np.cos(declination) * np.cos(hour_angle)
    sun_up = cos_zenith > 0.0
    cos_zenith = np.maximum(cos_zenith, 1e-3)
    return np.where(sun_up, 1098.0 * cos_zenith * np.exp(-0.057 / cos_zenith), 0.0), solar_hour


def generate(rows: int, rng: np.random.Generator, drift: float) -> pd.DataFrame:
    """Clean hourly rows: exactly the contract's columns, in its order, every value valid.

    Parameters
    ----------
    rows : int
        Number of rows (plant-hours).
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same frame.
    drift : float
        0 = the reference distribution; 1 = temperature, humidity, cloud cover, irradiance and wind clearly shifted.

    Example
    -------
    >>> frame = generate(1_000, np.random.default_rng(7), drift=0.0)
    >>> list(frame.columns) == list(COLUMNS), len(frame)
    (True, 1000)
    """
    solar_count, wind_count, steps = _plants(rows)
    plants = solar_count + wind_count
    solar = np.arange(plants) < solar_count
    hours = np.arange(steps, dtype=np.int64)[:, None]

    latitude, longitude, capacity, mean_wind = _fleet(solar_count, wind_count)

    # Clouds: a regional weather system, local patches, hourly variation.
    cloud_z = (
        0.6 * smooth_noise(rng, steps, 1, 36) + 0.6 * smooth_noise(rng, steps, plants, 8) + 0.5 * smooth_noise(rng, steps, plants, 3)
    )
    cloud = 1.0 / (1.0 + np.exp(-(2.0 * cloud_z + 0.4 - 1.3 * drift)))

    clear, solar_hour = _clear_sky(hours, latitude, longitude)
    broken = rng.standard_normal((steps, plants)) * 0.25 * cloud * (1.0 - cloud)
    sensor = np.clip(1.0 + rng.normal(0.0, 0.03, (steps, plants)) + broken, 0.0, None)
    irradiance = clear * (1.0 - 0.75 * cloud**3.4) * sensor
    irradiance = np.where(irradiance < 1.0, 0.0, np.clip(irradiance, 0.0, 1500.0))  # the pyranometer's dead band

    day = START_DAY_OF_YEAR + (hours + 0.5) / 24.0
    seasonal = 9.5 - 10.0 * np.cos(2 * np.pi * (day - 20.0) / 365.0) - 0.5 * (latitude - 50.0)
    daily = 4.5 * (1.0 - 0.5 * cloud) * np.cos(2 * np.pi * (solar_hour - 15.0) / 24.0)
    anomaly = 2.5 * smooth_noise(rng, steps, 1, 72) + 1.0 * smooth_noise(rng, steps, plants, 24)
    temperature = np.clip(seasonal + daily + anomaly + rng.normal(0.0, 0.3, (steps, plants)) + 7.0 * drift, -40.0, 60.0)

    humidity = 72.0 + 18.0 * (cloud - 0.5) - 2.5 * daily + 4.0 * smooth_noise(rng, steps, plants, 12)
    humidity = np.clip(humidity + rng.normal(0.0, 2.0, (steps, plants)) - 12.0 * drift, 10.0, 100.0)

    def wind_component() -> np.ndarray:
        regional = smooth_noise(rng, steps, 1, 18)
        return 0.75 * regional + 0.55 * smooth_noise(rng, steps, plants, 6) + 0.35 * smooth_noise(rng, steps, plants, 2)

    calm = max(0.1, 1.0 - 0.35 * drift)
    wind = mean_wind / np.sqrt(np.pi / 2.0) * np.hypot(wind_component(), wind_component()) * calm
    wind = np.clip(wind, 0.0, 75.0)

    # Production from the true weather.
    cell = temperature + 0.03 * irradiance
    performance = 0.86 * (1.0 - 0.0037 * (cell - 25.0))
    solar_mwh = DC_AC_RATIO * capacity * irradiance / 1000.0 * performance
    curve = np.clip((wind**3 - CUT_IN_MS**3) / (RATED_MS**3 - CUT_IN_MS**3), 0.0, 1.0) * (wind < CUT_OUT_MS)
    density = 288.15 / (273.15 + temperature)
    outage = smooth_noise(rng, steps, plants, 12) > 1.9
    availability = np.where(outage, rng.uniform(0.0, 0.5, (steps, plants)), 1.0)
    wind_mwh = capacity * np.clip(curve * density, 0.0, 1.0) * availability
    production = np.where(solar, solar_mwh, wind_mwh) * (1.0 + rng.normal(0.0, 0.03, (steps, plants)))
    production = np.clip(production, 0.0, capacity)

    ids = [f"PV-{n:02d}" for n in range(1, solar_count + 1)] + [f"WP-{n:02d}" for n in range(1, wind_count + 1)]
    control_room = (latitude < 51.0).astype(np.int64)
    shift = (hours - 6) // 12
    lead = SHIFT_LEADS[control_room[None, :], shift % SHIFT_LEADS.shape[1]]

    def flat(values: np.ndarray) -> np.ndarray:
        return np.broadcast_to(values, (steps, plants)).ravel()[:rows]

    return pd.DataFrame(
        {
            "plant_id": flat(np.array(ids, dtype=object)),
            "plant_type": flat(np.where(solar, "solar", "wind").astype(object)),
            "timestamp": pd.DatetimeIndex(flat(START + hours * np.timedelta64(1, "h"))).tz_localize("UTC"),
            "shift_lead": flat(lead),
            "irradiance_wm2": reported(flat(irradiance), 1),
            "temperature_c": reported(flat(temperature), 1),
            "wind_speed_ms": reported(flat(wind), 2),
            "cloud_cover_pct": reported(flat(100.0 * cloud), 1),
            "humidity_pct": reported(flat(humidity), 1),
            "capacity_mw": flat(capacity),
            "production_mwh": reported(flat(production), 3),
        },
        columns=list(COLUMNS),
    )
