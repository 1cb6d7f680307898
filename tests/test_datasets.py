"""The generated datasets: deterministic, well-typed, messy where the lessons need it, and leaky."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from mlops_nb.datasets import START, Rides, load_rides


@pytest.fixture(scope="module")
def rides() -> Rides:
    return load_rides()


def _point_in_time(rides: Rides) -> pd.DataFrame:
    """Each ride with the latest hourly stats and daily row not after it (a reference as-of join)."""
    with_stats = pd.merge_asof(
        rides.rides,
        rides.driver_stats.sort_values("event_ts"),
        left_on="event_timestamp",
        right_on="event_ts",
        by="driver_id",
    ).drop(columns=["event_ts", "created"])
    return pd.merge_asof(
        with_stats,
        rides.driver_daily.sort_values("event_ts"),
        left_on="event_timestamp",
        right_on="event_ts",
        by="driver_id",
    ).drop(columns="event_ts")


def _same_day(rides: Rides) -> pd.DataFrame:
    """The naive join: each ride with its driver's daily row of the same calendar day."""
    daily = rides.driver_daily.assign(day=rides.driver_daily["event_ts"].dt.floor("D"))
    table = rides.rides.assign(day=rides.rides["event_timestamp"].dt.floor("D"))
    return table.merge(daily.drop(columns="event_ts"), on=["driver_id", "day"], how="left")


def test_same_seed_same_frames_and_other_seed_other_frames(rides: Rides) -> None:
    again = load_rides()
    other = load_rides(seed=1)
    for name in ("driver_stats", "driver_daily", "rides"):
        pd.testing.assert_frame_equal(getattr(rides, name), getattr(again, name))
        assert not getattr(rides, name).equals(getattr(other, name)), name


def test_columns_and_dtypes(rides: Rides) -> None:
    utc = pd.DatetimeTZDtype("us", "UTC")
    assert dict(rides.driver_stats.dtypes) == {
        "driver_id": np.dtype("int64"),
        "event_ts": utc,
        "created": utc,
        "conv_rate": np.dtype("float64"),
        "acc_rate": np.dtype("float64"),
        "avg_daily_trips": np.dtype("int64"),
    }
    assert dict(rides.driver_daily.dtypes) == {
        "driver_id": np.dtype("int64"),
        "event_ts": utc,
        "rides_today": np.dtype("int64"),
        "completed_rate_today": np.dtype("float64"),
    }
    assert dict(rides.rides.dtypes) == {
        "ride_id": np.dtype("int64"),
        "driver_id": np.dtype("int64"),
        "event_timestamp": utc,
        "completed": np.dtype("int64"),
    }


def test_sizes_ranges_and_keys(rides: Rides) -> None:
    stats, daily, table = rides.driver_stats, rides.driver_daily, rides.rides
    assert len(stats) == 100 * 30 * 24
    assert 10_000 < len(table) < 30_000
    assert set(stats["driver_id"]) == set(range(1001, 1101))
    assert not stats.duplicated(["driver_id", "event_ts"]).any()
    assert stats["event_ts"].min() == pd.Timestamp(START, tz="UTC")
    last_hour = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=30) - pd.Timedelta("1h")
    assert stats["event_ts"].max() == last_hour
    assert stats[["conv_rate", "acc_rate"]].stack().between(0, 1).all()
    assert (stats["avg_daily_trips"] >= 0).all()
    assert table["ride_id"].tolist() == list(range(1, len(table) + 1))
    assert table["event_timestamp"].is_monotonic_increasing
    assert set(table["completed"]) == {0, 1}
    assert (daily["event_ts"].dt.strftime("%H:%M:%S") == "23:59:59").all()
    assert daily["rides_today"].sum() == len(table)


def test_repr_is_short(rides: Rides) -> None:
    assert repr(rides) == (
        f"Rides(driver_stats: 72,000 rows, driver_daily: {len(rides.driver_daily):,} rows, "
        f"rides: {len(rides.rides):,} rows)"
    )


def test_some_rows_arrive_late_and_out_of_order(rides: Rides) -> None:
    stats = rides.driver_stats
    delay = stats["created"] - stats["event_ts"]
    assert (delay > pd.Timedelta(0)).all()
    late = delay > pd.Timedelta("6h")
    assert 0.01 < late.mean() < 0.1
    assert delay.max() > pd.Timedelta("1D")
    assert stats["created"].is_monotonic_increasing  # arrival order...
    assert not stats["event_ts"].is_monotonic_increasing  # ...so not event-time order
    per_driver_sorted = stats.groupby("driver_id")["event_ts"].apply(
        lambda s: s.is_monotonic_increasing
    )
    assert not per_driver_sorted.all()


def test_daily_rates_are_computed_from_that_days_rides(rides: Rides) -> None:
    table = rides.rides
    day = table["event_timestamp"].dt.floor("D")
    expected = table.groupby(["driver_id", day])["completed"].mean().to_numpy()
    assert np.allclose(rides.driver_daily["completed_rate_today"].to_numpy(), expected)


def test_labels_follow_the_conversion_rate_at_ride_time(rides: Rides) -> None:
    joined = _point_in_time(rides)
    assert joined["conv_rate"].notna().all()
    assert joined["conv_rate"].corr(joined["completed"]) > 0.4
    low, high = joined["conv_rate"] < 0.3, joined["conv_rate"] > 0.7
    assert joined.loc[low, "completed"].mean() < 0.3
    assert joined.loc[high, "completed"].mean() > 0.7


def test_reliability_drifts_over_time(rides: Rides) -> None:
    by_day = (
        rides.driver_stats.groupby(["driver_id", rides.driver_stats["event_ts"].dt.floor("D")])[
            "conv_rate"
        ]
        .mean()
        .unstack()
    )
    first_week, last_week = by_day.iloc[:, :7].mean(axis=1), by_day.iloc[:, -7:].mean(axis=1)
    assert (first_week - last_week).abs().median() > 0.05


def test_a_same_day_join_leaks_the_label_and_inflates_accuracy(rides: Rides) -> None:
    features = ["conv_rate", "acc_rate", "avg_daily_trips", "completed_rate_today"]
    honest = _point_in_time(rides)
    leaky = honest.assign(completed_rate_today=_same_day(rides)["completed_rate_today"].to_numpy())
    usable = honest[features].notna().all(axis=1)
    cutoff = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=20)
    train = usable & (honest["event_timestamp"] < cutoff)
    later = usable & (honest["event_timestamp"] >= cutoff)

    def fit(frame: pd.DataFrame) -> LogisticRegression:
        return LogisticRegression().fit(frame.loc[train, features], frame.loc[train, "completed"])

    def score(model: LogisticRegression, frame: pd.DataFrame) -> float:
        return accuracy_score(
            frame.loc[later, "completed"], model.predict(frame.loc[later, features])
        )

    honest_model, leaky_model = fit(honest), fit(leaky)
    leaky_offline, leaky_real = score(leaky_model, leaky), score(leaky_model, honest)
    honest_real = score(honest_model, honest)
    assert leaky_offline > honest_real + 0.02  # the leak makes the wrong model look best...
    assert leaky_offline > leaky_real + 0.04  # ...its offline score is inflated...
    assert honest_real > leaky_real + 0.01  # ...and it is really the worse model


def test_tiny_datasets_and_bad_sizes() -> None:
    tiny = load_rides(n_drivers=1, days=1, seed=3)
    assert len(tiny.driver_stats) == 24
    assert set(tiny.rides["driver_id"]) <= {1001}
    with pytest.raises(ValueError, match="at least one driver and one day; got n_drivers=0"):
        load_rides(n_drivers=0)
