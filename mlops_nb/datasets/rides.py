"""Driver statistics and rides with a label: the Feature Store lesson's data, generated offline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["START", "Rides", "load_rides"]

#: The first hour of every generated dataset (UTC).
START = "2024-03-01"

# Share of driver_stats rows that reach the warehouse late, and how late (hours).
_LATE_SHARE = 0.03
_LATE_HOURS = (6.0, 48.0)


@dataclass(frozen=True, eq=False)
class Rides:
    """A ride-hailing company's data: hourly driver statistics, daily summaries and rides.

    Attributes
    ----------
    driver_stats : DataFrame
        Hourly snapshots per driver: ``driver_id``, ``event_ts`` (the hour the values describe),
        ``created`` (when the row reached the warehouse), ``conv_rate``, ``acc_rate`` and
        ``avg_daily_trips``. Rows are in arrival order (by ``created``); a few arrived hours or
        days late, so the frame is not sorted by ``event_ts``.
    driver_daily : DataFrame
        One row per driver and day with rides: ``driver_id``, ``event_ts`` (the day's last
        second), ``rides_today`` and ``completed_rate_today``, computed from that day's rides
        *including their outcomes*.
    rides : DataFrame
        ``ride_id``, ``driver_id``, ``event_timestamp`` and the label ``completed``.
    """

    driver_stats: pd.DataFrame
    driver_daily: pd.DataFrame
    rides: pd.DataFrame

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{name}: {len(frame):,} rows"
            for name, frame in [
                ("driver_stats", self.driver_stats),
                ("driver_daily", self.driver_daily),
                ("rides", self.rides),
            ]
        )
        return f"Rides({sizes})"


def load_rides(n_drivers: int = 100, days: int = 30, seed: int = 0) -> Rides:
    """Generate the rides dataset: the same ``seed`` always gives the same frames.

    Each driver has a latent *reliability*, the probability of completing a ride, that drifts
    hour by hour (a random walk on the logit scale). The hourly ``conv_rate`` is a noisy reading
    of it; each ride's ``completed`` label is drawn from it at the ride's time.

    Parameters
    ----------
    n_drivers : int
        How many drivers; their ids start at 1001.
    days : int
        How many days of data, starting at :data:`START` (UTC).
    seed : int
        Seed of the random generator.

    Returns
    -------
    Rides
        The three frames: ``driver_stats``, ``driver_daily`` and ``rides``.

    Examples
    --------
    >>> data = load_rides(n_drivers=3, days=2)
    >>> data.driver_stats.shape
    (144, 6)
    >>> list(data.rides.columns)
    ['ride_id', 'driver_id', 'event_timestamp', 'completed']
    >>> list(data.driver_daily.columns)
    ['driver_id', 'event_ts', 'rides_today', 'completed_rate_today']
    """
    import numpy as np

    if n_drivers < 1 or days < 1:
        raise ValueError(
            f"load_rides needs at least one driver and one day; got n_drivers={n_drivers!r}, "
            f"days={days!r}."
        )
    rng = np.random.default_rng(seed)
    hours = days * 24
    level = rng.normal(0.8, 1.0, n_drivers)
    walk = np.cumsum(rng.normal(0.0, 0.08, (n_drivers, hours)), axis=1)
    reliability = 1.0 / (1.0 + np.exp(-(level[:, None] + walk)))  # shape (drivers, hours)
    trips_per_day = rng.uniform(2.0, 8.0, n_drivers)

    driver_stats = _driver_stats(rng, reliability, trips_per_day)
    rides = _rides(rng, reliability, trips_per_day)
    return Rides(driver_stats, _driver_daily(rides), rides)


def _driver_ids(n_drivers: int) -> np.ndarray:
    import numpy as np

    return np.arange(1001, 1001 + n_drivers)


def _driver_stats(
    rng: np.random.Generator, reliability: np.ndarray, trips_per_day: np.ndarray
) -> pd.DataFrame:
    """Hourly snapshots, in the order they reached the warehouse."""
    import numpy as np
    import pandas as pd

    n_drivers, hours = reliability.shape
    size = n_drivers * hours
    hour_starts = pd.date_range(START, periods=hours, freq="h", tz="UTC")
    # Most rows land a few minutes after their hour; a few are stuck upstream for hours or days.
    delay_minutes = rng.uniform(1.0, 10.0, size)
    late = rng.random(size) < _LATE_SHARE
    delay_minutes[late] = rng.uniform(*_LATE_HOURS, int(late.sum())) * 60.0
    event_ts = hour_starts[np.tile(np.arange(hours), n_drivers)]
    conv_rate = reliability + rng.normal(0.0, 0.05, reliability.shape)
    acc_rate = 0.5 + 0.5 * reliability + rng.normal(0.0, 0.05, reliability.shape)
    frame = pd.DataFrame(
        {
            "driver_id": np.repeat(_driver_ids(n_drivers), hours),
            "event_ts": event_ts,
            "created": event_ts + pd.to_timedelta(delay_minutes.round(), unit="min"),
            "conv_rate": np.clip(conv_rate, 0, 1).ravel().round(3),
            "acc_rate": np.clip(acc_rate, 0, 1).ravel().round(3),
            "avg_daily_trips": rng.poisson(trips_per_day[:, None], (n_drivers, hours)).ravel(),
        }
    )
    return frame.sort_values(["created", "driver_id"], kind="stable", ignore_index=True)


def _rides(
    rng: np.random.Generator, reliability: np.ndarray, trips_per_day: np.ndarray
) -> pd.DataFrame:
    """Rides at random seconds of each day; the label is drawn from the driver's reliability then."""
    import numpy as np
    import pandas as pd

    n_drivers, hours = reliability.shape
    days = hours // 24
    per_driver_day = rng.poisson(trips_per_day[:, None], (n_drivers, days)).ravel()
    driver = np.repeat(np.repeat(np.arange(n_drivers), days), per_driver_day)
    day = np.repeat(np.tile(np.arange(days), n_drivers), per_driver_day)
    second = rng.integers(0, 24 * 3600, len(day))
    hour = day * 24 + second // 3600
    completed = rng.random(len(day)) < reliability[driver, hour]
    frame = pd.DataFrame(
        {
            "driver_id": _driver_ids(n_drivers)[driver],
            "event_timestamp": pd.Timestamp(START, tz="UTC")
            + pd.to_timedelta(day * 86400 + second, unit="s"),
            "completed": completed.astype("int64"),
        }
    )
    frame = frame.sort_values(["event_timestamp", "driver_id"], kind="stable", ignore_index=True)
    frame.insert(0, "ride_id", np.arange(1, len(frame) + 1))
    return frame


def _driver_daily(rides: pd.DataFrame) -> pd.DataFrame:
    """Per driver and day: how many rides, and the share completed, stamped at the day's end."""
    import pandas as pd

    day = rides["event_timestamp"].dt.floor("D").rename("day")
    daily = (
        rides.groupby(["driver_id", day])["completed"]
        .agg(rides_today="size", completed_rate_today="mean")
        .reset_index()
    )
    daily.insert(1, "event_ts", daily.pop("day") + pd.Timedelta(days=1) - pd.Timedelta(seconds=1))
    return daily
