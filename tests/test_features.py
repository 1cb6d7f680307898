"""FeatureStore and %%features: point-in-time retrieval checked against a brute-force reference,
online lookup, validation, versions, listing, lineage and tamper detection."""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from mlops_nb import (
    CorruptObjectError,
    FeatureStore,
    FeatureValidationError,
    FeatureView,
    InvalidNameError,
    Pipeline,
    UnknownViewError,
)

from .conftest import Notebook

EPOCH = pd.Timestamp(0, tz="UTC")


# -- the reference: the point-in-time rules written as plainly as possible ------------------------
def to_utc(value: Any) -> pd.Timestamp:
    """One instant in UTC; naive times are UTC."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@dataclass
class RefView:
    """What the reference knows about a view: its definition and every frame ingested, in order."""

    name: str
    entities: tuple[str, ...]
    features: list[str]
    ttl: pd.Timedelta | None = None
    timestamp: str = "ts"
    created: str | None = None
    ingests: list[pd.DataFrame] = field(default_factory=list)


def rank(view: RefView, frame: pd.DataFrame, ingest_number: int, row_number: int) -> tuple:
    """Greatest event time, then greatest created time, then later ingest, then later row."""
    row = frame.iloc[row_number]
    created = to_utc(row[view.created]) if view.created else EPOCH
    return (to_utc(row[view.timestamp]), created, ingest_number, row_number)


def same_key(view: RefView, row: Any, wanted: Any) -> bool:
    return all(row[key] == wanted[key] for key in view.entities)


def reference_point_in_time(
    entity_df: pd.DataFrame, time_column: str, views: list[RefView]
) -> dict[str, list[Any]]:
    """Per requested feature, the value each entity row should get (None: no candidate).

    Candidates share the row's key and have ``t - ttl <= event time <= t``; no ttl, no lower bound.
    """
    out: dict[str, list[Any]] = {f: [] for view in views for f in view.features}
    for position in range(len(entity_df)):
        wanted = entity_df.iloc[position]
        t = to_utc(wanted[time_column])
        for view in views:
            winner, best = None, None
            for ingest_number, frame in enumerate(view.ingests):
                for row_number in range(len(frame)):
                    candidate = frame.iloc[row_number]
                    if not same_key(view, candidate, wanted):
                        continue
                    event = to_utc(candidate[view.timestamp])
                    if event > t or (view.ttl is not None and event < t - view.ttl):
                        continue
                    order = rank(view, frame, ingest_number, row_number)
                    if best is None or order > best:
                        winner, best = candidate, order
            for feature in view.features:
                out[feature].append(None if winner is None else winner[feature])
    return out


def reference_online(
    rows: list[dict[str, Any]], view: RefView, now: pd.Timestamp
) -> dict[str, list[Any]]:
    """The newest row per entity over every ingest, hidden when its event is before now - ttl."""
    out: dict[str, list[Any]] = {f: [] for f in view.features}
    for wanted in rows:
        winner, best = None, None
        for ingest_number, frame in enumerate(view.ingests):
            for row_number in range(len(frame)):
                candidate = frame.iloc[row_number]
                order = rank(view, frame, ingest_number, row_number)
                if same_key(view, candidate, wanted) and (best is None or order > best):
                    winner, best = candidate, order
        if best is not None and view.ttl is not None and best[0] < now - view.ttl:
            winner = None
        for feature in view.features:
            out[feature].append(None if winner is None else winner[feature])
    return out


def is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def same_values(got: list[Any], expected: list[Any]) -> bool:
    """Exact equality (values are copied, never computed); None, NaN and NA are the same null."""
    if len(got) != len(expected):
        return False
    for a, b in zip(got, expected):
        if is_null(a) or is_null(b):
            if not (is_null(a) and is_null(b)):
                return False
        elif a != b:
            return False
    return True


def assert_matches_reference(
    fs: FeatureStore, entity_df: pd.DataFrame, views: list[RefView]
) -> pd.DataFrame:
    """get_historical_features keeps every entity row, in order, and adds the reference's values."""
    original = entity_df.copy()
    features = [f for v in views for f in v.features]
    result = fs.get_historical_features(
        entity_df, [f"{v.name}:{f}" for v in views for f in v.features]
    )
    expected = reference_point_in_time(original, "event_timestamp", views)
    assert list(result.columns) == [*original.columns, *features]
    pd.testing.assert_frame_equal(result[list(original.columns)], original)  # same rows, same order
    pd.testing.assert_frame_equal(entity_df, original)  # the caller's frame is left alone
    for feature in features:
        got = result[feature].tolist()
        assert same_values(got, expected[feature]), (feature, got, expected[feature])
    return result


def build(fs: FeatureStore, views: list[RefView], schemas: list[Any] | None = None) -> None:
    """Apply each view, then ingest its frames in order."""
    for number, view in enumerate(views):
        fs.apply(
            FeatureView(
                view.name,
                entities=list(view.entities),
                timestamp=view.timestamp,
                created=view.created,
                ttl=view.ttl,
                schema=schemas[number] if schemas else None,
            )
        )
        for frame in view.ingests:
            fs.ingest(view.name, frame)


# -- generated scenarios ---------------------------------------------------------------------------
# At 07:00 UTC on 2024-03-10 New York moves its clocks forward: local renderings jump an hour.
BASE = pd.Timestamp("2024-03-10 06:55")
STYLES = ["naive", "UTC", "Asia/Kolkata", "America/New_York", "naive-text", "offset-text"]


def render_times(minutes: list[int], style: str) -> pd.Series:
    """The UTC instants BASE + minutes, written the way a user might have them."""
    utc = pd.Series([BASE + pd.Timedelta(minutes=m) for m in minutes], dtype="datetime64[ns]")
    if style == "naive":
        return utc
    if style == "naive-text":
        return pd.Series([t.isoformat() for t in utc], dtype=object)
    if style == "offset-text":
        tokyo = utc.dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
        return pd.Series([t.isoformat() for t in tokyo], dtype=object)
    return utc.dt.tz_localize("UTC").dt.tz_convert(style)


# Few keys and few distinct minutes, so that rows collide: ties and boundaries are the point.
keys_a = st.integers(0, 1)
keys_b = st.integers(0, 1)
event_minutes = st.integers(0, 5)
created_minutes = st.integers(0, 2)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[RefView], list[Any], pd.DataFrame]:
    """1-3 views (own keys, ttl, created column), 0-3 ingests each, and an entity frame."""
    ids = iter(range(1, 10_000))
    views: list[RefView] = []
    schemas: list[Any] = []
    anchors: list[tuple[int, int, int]] = []
    for number in range(draw(st.integers(1, 3))):
        entities = draw(st.sampled_from([("a",), ("a", "b")]))
        created = "created" if draw(st.booleans()) else None
        minutes = st.integers(1, 3).map(lambda m: pd.Timedelta(minutes=m))
        ttl = draw(st.one_of(st.none(), minutes))
        x, n = f"x{number}", f"n{number}"
        ingests = []
        for _ in range(draw(st.integers(0, 3))):
            row = st.tuples(keys_a, keys_b, event_minutes, created_minutes, st.booleans())
            rows = draw(st.lists(row, min_size=1, max_size=5))
            anchors.extend((r[0], r[1], r[2]) for r in rows)
            style = draw(st.sampled_from(STYLES))
            frame = pd.DataFrame({"a": pd.Series([r[0] for r in rows], dtype="int64")})
            if "b" in entities:
                frame["b"] = pd.Series([r[1] for r in rows], dtype="int64")
            frame["ts"] = render_times([r[2] for r in rows], style).to_numpy()
            if created:
                frame["created"] = render_times([r[3] + 100 for r in rows], style).to_numpy()
            # Every row carries its own values, so a wrong winner can never look right.
            numbers = [next(ids) for _ in rows]
            floats = [math.nan if r[4] else i + 0.5 for r, i in zip(rows, numbers)]
            frame[x] = pd.Series(floats, dtype="float64")
            frame[n] = pd.Series(numbers, dtype="int64")
            ingests.append(frame)
        explicit = not ingests or draw(st.booleans())  # a view without rows needs its schema
        schemas.append({x: "float64", n: "int64"} if explicit else None)
        wanted = draw(st.sampled_from([[x], [n], [x, n], [n, x]]))
        views.append(RefView(f"v{number}", entities, wanted, ttl, "ts", created, ingests))

    entity_rows = []
    for _ in range(draw(st.integers(0, 8))):
        if anchors and draw(st.integers(0, 3)) > 0:
            # a feature row's own key and time, or a few minutes later: on and around the TTL bounds
            a, b, minute = draw(st.sampled_from(anchors))
            entity_rows.append((a, b, minute + draw(st.sampled_from([0, 0, 1, 2, 3, 4]))))
        else:  # anywhere, including unknown keys and times before every feature row
            entity_rows.append(draw(st.tuples(st.integers(0, 2), keys_b, st.integers(-1, 9))))
    if entity_rows and draw(st.booleans()):
        entity_rows += entity_rows[: draw(st.integers(1, len(entity_rows)))]  # duplicate rows
    style = draw(st.sampled_from(STYLES))
    entity_df = pd.DataFrame(
        {
            "a": pd.Series([r[0] for r in entity_rows], dtype="int64"),
            "b": pd.Series([r[1] for r in entity_rows], dtype="int64"),
            "event_timestamp": render_times([r[2] for r in entity_rows], style).to_numpy(),
            "label": pd.Series([f"row{i}" for i in range(len(entity_rows))], dtype=object),
        }
    )
    if draw(st.booleans()):
        entity_df.index = pd.Index([100 - 7 * i for i in range(len(entity_rows))], dtype="int64")
    return views, schemas, entity_df


# One generated store serves both checks: building it (files, fsync, catalog) is the slow part.
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(-1, 9), st.sampled_from(STYLES[:4]))
def test_historical_and_online_features_match_the_reference(
    scenario: Any, now_minute: int, now_style: str
) -> None:
    views, schemas, entity_df = scenario
    now = render_times([now_minute], now_style).iloc[0]
    rows = [{"a": int(a), "b": int(b)} for a, b in zip(entity_df["a"], entity_df["b"])]
    with tempfile.TemporaryDirectory() as root:
        fs = FeatureStore(root)
        try:
            build(fs, views, schemas)
            assert_matches_reference(fs, entity_df, views)
            for view in views:
                wanted = [f"{view.name}:{f}" for f in view.features]
                got = fs.get_online_features(rows, wanted, now=now)
                expected = reference_online(rows, view, to_utc(now))
                assert len(got) == len(rows)
                for feature in view.features:
                    values = got[feature].tolist()
                    assert same_values(values, expected[feature]), (feature, values, expected)
        finally:
            fs.store.close()


# -- point-in-time rules, one at a time ------------------------------------------------------------
@pytest.fixture
def fs(tmp_path: Path) -> Iterator[FeatureStore]:
    store = FeatureStore(tmp_path / "features")
    yield store
    store.store.close()


def times(*texts: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(texts), format="ISO8601"), dtype="datetime64[ns]")


def entities_at(keys: list[Any], when: list[str], column: str = "driver_id") -> pd.DataFrame:
    return pd.DataFrame({column: keys, "event_timestamp": times(*when)})


def day_one(*clock: str) -> pd.Series:
    """Times on 2024-01-01, e.g. day_one("10:00", "11:30")."""
    return times(*[f"2024-01-01 {c}" for c in clock])


def test_the_winner_is_latest_event_then_latest_created_then_latest_ingest(
    fs: FeatureStore,
) -> None:
    view = RefView("stats", ("driver_id",), ["rate"], created="created")
    view.ingests = [
        pd.DataFrame(
            {
                "driver_id": [1, 1, 1, 2],
                "ts": day_one("10:00", "11:00", "11:00", "11:00"),
                "created": day_one("12:00", "12:00", "13:00", "12:00"),
                "rate": [1.0, 2.0, 3.0, 4.0],
            }
        ),
        # the same event and created times as rate 3.0: the later ingest wins
        pd.DataFrame(
            {"driver_id": [1], "ts": day_one("11:00"), "created": day_one("13:00"), "rate": [5.0]}
        ),
        # an older created time loses, even when ingested later
        pd.DataFrame(
            {"driver_id": [1], "ts": day_one("11:00"), "created": day_one("12:30"), "rate": [6.0]}
        ),
        # within one ingest call, the later of two rows with the same times wins
        pd.DataFrame(
            {
                "driver_id": [2, 2],
                "ts": day_one("11:00", "11:00"),
                "created": day_one("14:00", "14:00"),
                "rate": [7.0, 8.0],
            }
        ),
    ]
    build(fs, [view])
    clock = ["2024-01-01 10:30", "2024-01-01 11:00", "2024-01-01 09:00", "2024-01-01 11:00"]
    wanted = entities_at([1, 1, 1, 2, 2], [*clock, "2024-01-01 10:59:59"])
    result = assert_matches_reference(fs, wanted, [view])
    assert same_values(result["rate"].tolist(), [1.0, 5.0, None, 8.0, None])


def test_ttl_bounds_are_both_inclusive_and_no_ttl_means_no_lower_bound(fs: FeatureStore) -> None:
    limited = RefView("limited", ("driver_id",), ["speed"], ttl=pd.Timedelta(hours=1))
    unlimited = RefView("unlimited", ("driver_id",), ["trips"])
    limited.ingests = [
        pd.DataFrame({"driver_id": [1, 1], "ts": day_one("10:00", "12:00"), "speed": [1.0, 2.0]})
    ]
    unlimited.ingests = [pd.DataFrame({"driver_id": [1], "ts": times("2000-01-01"), "trips": [7]})]
    build(fs, [limited, unlimited])
    clock = ["10:00", "11:00", "11:00:00.000001", "12:00", "13:00", "09:59:59.999999"]
    wanted = entities_at([1] * 6, [f"2024-01-01 {c}" for c in clock])
    result = assert_matches_reference(fs, wanted, [limited, unlimited])
    assert same_values(result["speed"].tolist(), [1.0, 1.0, None, 2.0, 2.0, None])
    assert same_values(result["trips"].tolist(), [7, 7, 7, 7, 7, 7])


def test_naive_times_are_utc_and_zoned_times_are_converted(fs: FeatureStore) -> None:
    view = RefView("zoned", ("driver_id",), ["rate"], ttl=pd.Timedelta(hours=1))
    paris = times("2024-07-01 12:00", "2024-07-01 13:00").dt.tz_localize("Europe/Paris")
    # Paris is UTC+2 in July: the events are at 10:00 and 11:00 UTC.
    view.ingests = [pd.DataFrame({"driver_id": [1, 1], "ts": paris, "rate": [1.0, 2.0]})]
    build(fs, [view])
    moments = [
        "2024-07-01 10:00",  # naive = UTC: exactly the first event
        "2024-07-01 09:59:59",
        "2024-07-01 10:59",
        "2024-07-01T07:00:00-04:00",  # 11:00 UTC
        "2024-07-01 12:00:01",  # just over the TTL
        "2024-07-01T14:00:00+02:00",  # 12:00 UTC: exactly on the TTL bound
    ]
    expected = [1.0, None, 1.0, 2.0, None, 2.0]
    wanted = pd.DataFrame({"driver_id": [1] * 6, "event_timestamp": moments})
    result = assert_matches_reference(fs, wanted, [view])
    assert same_values(result["rate"].tolist(), expected)
    kolkata = pd.to_datetime(pd.Series(moments), utc=True, format="mixed").dt.tz_convert(
        "Asia/Kolkata"
    )
    result = assert_matches_reference(fs, wanted.assign(event_timestamp=kolkata), [view])
    assert same_values(result["rate"].tolist(), expected)


def test_rows_keep_their_order_index_duplicates_and_other_columns(fs: FeatureStore) -> None:
    view = RefView("stats", ("driver_id",), ["rate"])
    view.ingests = [
        pd.DataFrame(
            {"driver_id": [1, 2], "ts": times("2024-01-01", "2024-01-02"), "rate": [0.1, 0.2]}
        )
    ]
    build(fs, [view])
    when = ["2024-02-01", "2023-01-01", "2024-02-01", "2024-01-01", "2024-02-01", "2024-02-01"]
    wanted = entities_at([2, 1, 2, 2, 3, 1], when)
    wanted["note"] = list("abcdef")
    wanted.index = pd.Index(list("zyxwvu"))
    result = assert_matches_reference(fs, wanted, [view])
    assert list(result.index) == list("zyxwvu")
    assert same_values(result["rate"].tolist(), [0.2, None, 0.2, None, None, 0.1])


def test_multi_column_keys_and_several_views_each_with_its_own_ttl(fs: FeatureStore) -> None:
    trips = RefView("trips", ("city", "driver_id"), ["count"], ttl=pd.Timedelta(days=1))
    rating = RefView("rating", ("driver_id",), ["stars"], ttl=pd.Timedelta(days=30))
    trips.ingests = [
        pd.DataFrame(
            {
                "city": ["oslo", "oslo", "rome"],
                "driver_id": [1, 2, 1],
                "ts": times("2024-01-01", "2024-01-01", "2024-01-02"),
                "count": [3, 4, 5],
            }
        )
    ]
    rating.ingests = [
        pd.DataFrame(
            {"driver_id": [1, 2], "ts": times("2023-12-20", "2023-11-01"), "stars": [4.5, 3.0]}
        )
    ]
    build(fs, [trips, rating])
    wanted = pd.DataFrame(
        {
            "city": ["oslo", "rome", "oslo", "rome"],
            "driver_id": [1, 1, 2, 2],
            "event_timestamp": times("2024-01-02", "2024-01-02", "2024-01-01 12:00", "2024-01-02"),
        }
    )
    result = assert_matches_reference(fs, wanted, [trips, rating])
    assert same_values(result["count"].tolist(), [3, 5, 4, None])
    assert same_values(result["stars"].tolist(), [4.5, 4.5, None, None])


def test_an_empty_entity_frame_gives_an_empty_result_with_the_feature_columns(
    fs: FeatureStore,
) -> None:
    view = RefView("stats", ("driver_id",), ["rate"])
    view.ingests = [pd.DataFrame({"driver_id": [1], "ts": times("2024-01-01"), "rate": [0.5]})]
    build(fs, [view])
    empty = pd.DataFrame({"driver_id": pd.Series([], dtype="int64"), "event_timestamp": times()})
    result = assert_matches_reference(fs, empty, [view])
    assert list(result.columns) == ["driver_id", "event_timestamp", "rate"] and result.empty


@pytest.mark.parametrize("keys", [[1, 2], ["ann", "bob"]], ids=["number-keys", "text-keys"])
def test_a_view_without_rows_gives_nulls(fs: FeatureStore, keys: list[Any]) -> None:
    schema = {"rate": "float64"}
    fs.apply(FeatureView("later", entities=["driver"], timestamp="ts", schema=schema))
    wanted = entities_at(keys, ["2024-01-01", "2024-01-02"], column="driver")
    result = fs.get_historical_features(wanted, ["later:rate"])
    assert same_values(result["rate"].tolist(), [None, None])


def test_text_keys_and_text_features_are_copied(fs: FeatureStore) -> None:
    view = RefView("profile", ("driver",), ["car"])
    view.ingests = [
        pd.DataFrame(
            {
                "driver": ["ann", "bob"],
                "ts": times("2024-01-01", "2024-01-01"),
                "car": ["fiat", "saab"],
            }
        )
    ]
    build(fs, [view])
    wanted = entities_at(["bob", "ann", "cy"], ["2024-02-01"] * 3, column="driver")
    result = assert_matches_reference(fs, wanted, [view])
    assert same_values(result["car"].tolist(), ["saab", "fiat", None])


@pytest.mark.parametrize(
    "stamps",
    [
        pytest.param(["1969-12-31 23:00", "1970-01-01 01:00"], id="around-the-unix-epoch"),
        pytest.param(["1900-01-01", "1900-01-03"], id="historical-records"),
        pytest.param(["2150-01-01", "2150-01-03"], id="far-future-plans"),
    ],
)
def test_event_times_far_from_1970_are_retrieved(fs: FeatureStore, stamps: list[str]) -> None:
    view = RefView("history", ("station",), ["level"])
    view.ingests = [pd.DataFrame({"station": [1, 1], "ts": times(*stamps), "level": [1.0, 2.0]})]
    build(fs, [view])
    first, second = pd.Timestamp(stamps[0]), pd.Timestamp(stamps[1])
    moments = [first - pd.Timedelta(minutes=1), first + (second - first) / 2, second]
    wanted = entities_at([1, 1, 1], [str(m) for m in moments], column="station")
    result = assert_matches_reference(fs, wanted, [view])
    assert same_values(result["level"].tolist(), [None, 1.0, 2.0])


def test_the_entity_time_column_can_be_named_or_found(fs: FeatureStore) -> None:
    fs.apply(FeatureView("stats", entities=["driver_id"], timestamp="ts"))
    fs.ingest("stats", pd.DataFrame({"driver_id": [1], "ts": ["2024-01-01"], "rate": [0.5]}))
    named = pd.DataFrame({"driver_id": [1], "when": ["2024-01-02"]})
    by_name = fs.get_historical_features(named, ["stats:rate"], timestamp="when")
    assert by_name["rate"].tolist() == [0.5]
    only_datetime = pd.DataFrame({"driver_id": [1], "at": times("2024-01-02")})
    assert fs.get_historical_features(only_datetime, ["stats:rate"])["rate"].tolist() == [0.5]

    with pytest.raises(FeatureValidationError, match=r"no column 'whn'\. Did you mean 'when'\?"):
        fs.get_historical_features(named, ["stats:rate"], timestamp="whn")
    with pytest.raises(FeatureValidationError, match=r"Which column of entity_df holds each row's"):
        fs.get_historical_features(named, ["stats:rate"])
    no_key = pd.DataFrame({"driver": [1], "event_timestamp": ["2024-01-02"]})
    with pytest.raises(
        FeatureValidationError, match=r"lacks \['driver_id'\] needed .* view 'stats'"
    ):
        fs.get_historical_features(no_key, ["stats:rate"])

    clash = entities_at([1], ["2024-01-02"]).assign(rate=0)
    with pytest.raises(
        FeatureValidationError, match=r"would overwrite the column 'rate'; pass full"
    ):
        fs.get_historical_features(clash, ["stats:rate"])
    full = fs.get_historical_features(clash, ["stats:rate"], full_feature_names=True)
    assert full["stats__rate"].tolist() == [0.5] and full["rate"].tolist() == [0]


def test_an_entity_key_of_another_type_is_refused_at_ingest(fs: FeatureStore) -> None:
    fs.apply(FeatureView("stats", entities=["driver_id"], timestamp="ts"))
    fs.ingest("stats", pd.DataFrame({"driver_id": [1], "ts": ["2024-01-01"], "rate": [0.5]}))
    before = snapshot(fs, "stats")
    text_key = pd.DataFrame({"driver_id": ["D1"], "ts": ["2024-01-02"], "rate": [0.7]})
    with pytest.raises(FeatureValidationError, match=r"'driver_id'"):
        fs.ingest("stats", text_key)
    assert snapshot(fs, "stats") == before
    result = fs.get_historical_features(entities_at([1], ["2024-01-03"]), ["stats:rate"])
    assert result["rate"].tolist() == [0.5]


# -- online lookup ---------------------------------------------------------------------------------
def online(fs: FeatureStore, feature: str, now: Any = "2024-01-02", **key: Any) -> Any:
    """One entity's online value of one feature, None when missing."""
    value = fs.get_online_features([key], [feature], now=now)[feature.split(":")[1]].iloc[0]
    return None if is_null(value) else value


def test_online_keeps_the_latest_value_whatever_the_ingest_order(fs: FeatureStore) -> None:
    fs.apply(FeatureView("stats", entities=["driver_id"], timestamp="ts", created="created"))

    def ingest(driver: int, ts: str, created: str, rate: float) -> int:
        row = {"driver_id": [driver], "ts": [ts], "created": [created], "rate": [rate]}
        return fs.ingest("stats", pd.DataFrame(row)).online_updated

    first = pd.DataFrame(
        {
            "driver_id": [1, 1, 2],
            "ts": ["2024-01-01 10:00", "2024-01-01 12:00", "2024-01-01 11:00"],
            "created": ["2024-01-01 13:00"] * 3,
            "rate": [1.0, 2.0, 3.0],
        }
    )
    report = fs.ingest("stats", first)
    assert (report.rows, report.entities, report.online_updated) == (3, 2, 2)
    assert online(fs, "stats:rate", driver_id=1) == 2.0
    # an older event arriving later never overwrites the newer value
    assert ingest(1, "2024-01-01 11:00", "2024-01-01 23:00", 9.0) == 0
    assert online(fs, "stats:rate", driver_id=1) == 2.0
    # the same event time with a newer created time wins; an older one does not
    assert ingest(1, "2024-01-01 12:00", "2024-01-01 14:00", 4.0) == 1
    assert online(fs, "stats:rate", driver_id=1) == 4.0
    assert ingest(1, "2024-01-01 12:00", "2024-01-01 13:30", 5.0) == 0
    assert online(fs, "stats:rate", driver_id=1) == 4.0
    # the same event and created times: the latest ingest wins
    assert ingest(1, "2024-01-01 12:00", "2024-01-01 14:00", 6.0) == 1
    assert online(fs, "stats:rate", driver_id=1) == 6.0
    assert online(fs, "stats:rate", driver_id=2) == 3.0
    assert online(fs, "stats:rate", driver_id=99) is None  # unknown entity


def test_online_honours_the_ttl_at_read_time(fs: FeatureStore) -> None:
    fs.apply(FeatureView("speed", entities=["car"], timestamp="ts", ttl="2h"))
    events = pd.DataFrame(
        {"car": [1, 2], "ts": ["2024-01-01 10:00", "2024-01-01 11:00"], "kmh": [50.0, 60.0]}
    )
    fs.ingest("speed", events)
    lookup = [{"car": 1}, {"car": 2}, {"car": 3}]

    def at(now: Any) -> list[Any]:
        values = fs.get_online_features(lookup, ["speed:kmh"], now=now)["kmh"]
        return [None if is_null(v) else v for v in values]

    assert at("2024-01-01 12:00") == [50.0, 60.0, None]  # exactly ttl old: still valid
    assert at("2024-01-01 12:00:00.000001") == [None, 60.0, None]
    berlin_1pm = pd.Timestamp("2024-01-01 13:00", tz="Europe/Berlin")  # 12:00 UTC
    assert at(berlin_1pm) == [50.0, 60.0, None]
    assert at(dt.datetime(2024, 1, 1, 13, 0, 1)) == [None, None, None]  # naive: UTC
    assert at(None) == [None, None, None]  # default: the current time, long after 2024


def test_online_takes_dicts_or_a_frame_with_multi_column_keys(fs: FeatureStore) -> None:
    fs.apply(FeatureView("trips", entities=["city", "driver_id"], timestamp="ts"))
    data = {
        "city": ["oslo", "rome", "oslo"],
        "driver_id": [1, 1, 2],
        "ts": ["2024-01-01"] * 3,
        "count": [3, 5, 4],
        "score": [0.1, 0.2, None],
    }
    fs.ingest("trips", pd.DataFrame(data))
    rows = [
        {"city": "rome", "driver_id": 1},
        {"city": "oslo", "driver_id": 2},
        {"city": "rome", "driver_id": 2},
    ]
    wanted = ["trips:count", "trips:score"]
    from_dicts = fs.get_online_features(rows, wanted, now="2024-01-02")
    from_frame = fs.get_online_features(pd.DataFrame(rows), wanted, now="2024-01-02")
    for got in (from_dicts, from_frame):
        assert got["city"].tolist() == ["rome", "oslo", "rome"]
        assert got["driver_id"].tolist() == [1, 2, 2]
        assert same_values(got["count"].tolist(), [5, 4, None])
        assert same_values(got["score"].tolist(), [0.2, None, None])
    message = r"Each entity row needs \['city', 'driver_id'\] for view 'trips'; missing \['city'\]"
    with pytest.raises(FeatureValidationError, match=message):
        fs.get_online_features([{"driver_id": 1}], ["trips:count"])


def test_online_serves_a_thousand_entities_in_one_call(fs: FeatureStore) -> None:
    fs.apply(FeatureView("big", entities=["id"], timestamp="ts"))
    values = [i / 4 for i in range(1000)]
    fs.ingest(
        "big", pd.DataFrame({"id": range(1000), "ts": ["2024-01-01"] * 1000, "value": values})
    )
    ids = list(reversed(range(1005)))  # five unknown ids first, then every known one
    got = fs.get_online_features([{"id": i} for i in ids], ["big:value"], now="2024-01-02")
    assert same_values(got["value"].tolist(), [None] * 5 + values[::-1])
    as_frame = fs.get_online_features(pd.DataFrame({"id": ids}), ["big:value"], now="2024-01-02")
    assert same_values(as_frame["value"].tolist(), [None] * 5 + values[::-1])


# -- validation: each error says what is wrong, and nothing is written -----------------------------
def snapshot(fs: FeatureStore, view: str) -> dict[str, Any]:
    """Everything an ingest could change: catalog rows, stored objects, online rows, the data."""
    query = fs.store.query
    return {
        "views": query("SELECT * FROM feature_views WHERE name = ? ORDER BY version", (view,)),
        "parts": query(
            "SELECT * FROM feature_parts WHERE view = ? ORDER BY version, part", (view,)
        ),
        "online": query("SELECT * FROM online_features WHERE view = ? ORDER BY entity", (view,)),
        "objects": query("SELECT sha256 FROM objects ORDER BY sha256"),
        "listed": fs.list_views().to_json(),
        "data": fs.read(view).to_json(orient="split", date_format="iso"),
    }


GOOD = pd.DataFrame(
    {
        "driver_id": [1, 2],
        "ts": ["2024-01-01", "2024-01-02"],
        "created": ["2024-01-03", "2024-01-03"],
        "rate": [0.5, 0.7],
        "trips": [3, 4],
    }
)
BAD_INGESTS = [
    pytest.param(
        lambda d: d.drop(columns=["driver_id"]),
        r"missing column\(s\) \['driver_id'\]\. The view needs entities \['driver_id'\]",
        id="missing-key",
    ),
    pytest.param(
        lambda d: d.drop(columns=["ts"]),
        r"missing column\(s\) \['ts'\]\. .*timestamp 'ts'",
        id="missing-timestamp",
    ),
    pytest.param(
        lambda d: d.drop(columns=["created"]),
        r"missing column\(s\) \['created'\]\. .*created 'created'; the data has \['driver_id', ",
        id="missing-created",
    ),
    pytest.param(
        lambda d: d.assign(driver_id=[1, None]),
        r"entity column 'driver_id' is empty in 1 row\(s\), e\.g\. rows \[1\]",
        id="null-key",
    ),
    pytest.param(
        lambda d: d.assign(ts=["2024-01-01", "next tuesday"]),
        r"Column 'ts' has 1 missing or unparseable timestamp\(s\), e\.g\. \['next tuesday'\] at ro",
        id="unparseable-time",
    ),
    pytest.param(
        lambda d: d.assign(ts=[None, "2024-01-01"]),
        r"Column 'ts' has 1 missing or unparseable timestamp\(s\), e\.g\. \[(None|nan)\] at rows",
        id="missing-time",
    ),
    pytest.param(
        lambda d: d.assign(created=["soon", "later"]),
        r"Column 'created' has 2 missing or unparseable timestamp\(s\), e\.g\. \['soon', 'later'\]",
        id="unparseable-created",
    ),
    pytest.param(
        lambda d: d.assign(rate=["fast", "slow"]),
        r"Cannot ingest into 'drivers': 'rate' is str but the view has float64",
        id="text-into-float",
    ),
    pytest.param(
        lambda d: d.assign(trips=[1.5, 2.5]),
        r"'trips' is float64 but the view has int64",
        id="float-into-int",
    ),
    pytest.param(
        lambda d: d.assign(extra=1),
        r"unknown column\(s\) \['extra'\]\. Match the view's schema",
        id="unknown-column",
    ),
    pytest.param(
        lambda d: d.drop(columns=["trips"]),
        r"missing feature\(s\) \['trips'\]",
        id="missing-feature",
    ),
    pytest.param(
        lambda d: d[["driver_id", "ts", "created"]],
        r"missing feature\(s\) \['rate', 'trips'\]",
        id="no-features",
    ),
    pytest.param(
        lambda d: d.to_dict("list"),
        r"ingest\(\) takes a pandas DataFrame, got dict",
        id="not-a-frame",
    ),
]


@pytest.mark.parametrize("change, message", BAD_INGESTS)
def test_a_failed_ingest_says_why_and_writes_nothing(
    fs: FeatureStore, change: Any, message: str
) -> None:
    fs.apply(FeatureView("drivers", entities=["driver_id"], timestamp="ts", created="created"))
    fs.ingest("drivers", GOOD)
    before = snapshot(fs, "drivers")
    with pytest.raises(FeatureValidationError, match=message):
        fs.ingest("drivers", change(GOOD.copy()))
    assert snapshot(fs, "drivers") == before
    assert online(fs, "drivers:rate", driver_id=2) == 0.7


def test_integers_may_go_into_a_float_feature(fs: FeatureStore) -> None:
    fs.apply(FeatureView("drivers", entities=["driver_id"], timestamp="ts", created="created"))
    fs.ingest("drivers", GOOD)
    fs.ingest("drivers", GOOD.assign(rate=[1, 2], ts=["2024-02-01", "2024-02-02"]))
    rate = fs.read("drivers")["rate"]
    assert str(rate.dtype) == "float64" and rate.tolist() == [0.5, 0.7, 1.0, 2.0]


def test_a_failed_first_ingest_leaves_the_view_without_a_schema(fs: FeatureStore) -> None:
    fs.apply(FeatureView("fresh", entities=["driver_id"], timestamp="ts"))
    before = snapshot(fs, "fresh")
    with pytest.raises(FeatureValidationError, match=r"no feature columns besides \['driver_id', "):
        fs.ingest("fresh", GOOD[["driver_id", "ts"]])
    with pytest.raises(FeatureValidationError, match=r"Column 'ts' has 1 missing or unparseable"):
        fs.ingest("fresh", GOOD.drop(columns=["created"]).assign(ts=["x", "2024-01-01"]))
    assert snapshot(fs, "fresh") == before
    assert fs.get_view("fresh").features == []
    fs.ingest("fresh", GOOD.drop(columns=["created"]).assign(rate=["a", "b"]))
    assert fs.get_view("fresh").schema == {"rate": "str", "trips": "int64"}


def test_unknown_views_and_features_suggest_close_names(fs: FeatureStore) -> None:
    fs.apply(FeatureView("drivers", entities=["driver_id"], timestamp="ts", created="created"))
    fs.ingest("drivers", GOOD)
    wanted = entities_at([1], ["2024-01-05"])
    unknown = r"No feature view 'driver'\. Did you mean 'drivers'\? Known views: drivers\. Create"
    with pytest.raises(UnknownViewError, match=unknown):
        fs.ingest("driver", GOOD)
    with pytest.raises(
        UnknownViewError, match=r"No feature view 'drivrs'\. Did you mean 'drivers'"
    ):
        fs.get_historical_features(wanted, ["drivrs:rate"])
    no_feature = (
        r"View 'drivers' has no feature 'rat'\. Did you mean 'rate'\? Its features: rate, t"
    )
    with pytest.raises(UnknownViewError, match=no_feature):
        fs.get_historical_features(wanted, ["drivers:rat"])
    with pytest.raises(UnknownViewError, match=r"no feature 'trip'\. Did you mean 'trips'\?"):
        fs.get_online_features([{"driver_id": 1}], ["drivers:trip"])
    with pytest.raises(
        UnknownViewError, match=r"No feature view 'drives'\. Did you mean 'drivers'"
    ):
        fs.read("drives")
    with pytest.raises(UnknownViewError, match=r"No version 7 of feature view 'drivers'"):
        fs.read("drivers", version=7)
    with pytest.raises(KeyError):  # an UnknownViewError is also a KeyError
        fs.describe("nothing")

    syntax = (
        r"Name features as 'view:feature', e\.g\. 'driver_stats:conv_rate'; got 'drivers\.rate'"
    )
    with pytest.raises(FeatureValidationError, match=syntax):
        fs.get_historical_features(wanted, ["drivers.rate"])
    with pytest.raises(
        FeatureValidationError, match=r"Name features as 'view:feature'.*'drivers:'"
    ):
        fs.get_online_features([{"driver_id": 1}], ["drivers:"])
    with pytest.raises(FeatureValidationError, match=r"Ask for at least one feature"):
        fs.get_historical_features(wanted, [])
    assert fs.get_historical_features(wanted, "drivers:rate")["rate"].tolist() == [0.5]


@pytest.mark.parametrize("ttl", ["soon", "-2h", 0, "0s", dt.timedelta(seconds=-1), [1]])
def test_a_bad_ttl_is_refused(ttl: Any) -> None:
    message = r"ttl=.* is not a positive duration: use e\.g\. '2h', '7d' or datetime\.timedelta"
    with pytest.raises(FeatureValidationError, match=message):
        FeatureView("stats", entities=["driver_id"], ttl=ttl)


@pytest.mark.parametrize(
    "ttl, expected",
    [
        ("2h", pd.Timedelta(hours=2)),
        ("30min", pd.Timedelta(minutes=30)),
        ("7d", pd.Timedelta(days=7)),
        (dt.timedelta(days=7), pd.Timedelta(days=7)),
    ],
)
def test_the_documented_ttl_spellings_parse_without_warnings(
    ttl: Any, expected: pd.Timedelta
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FeatureView("stats", entities=["driver_id"], ttl=ttl).ttl == expected


@pytest.mark.parametrize("entities", [[], [1], [""], None])
def test_bad_entities_are_refused(entities: Any) -> None:
    message = r"Feature view 'stats' needs entities=\[\.\.\.\] naming its key column\(s\)"
    with pytest.raises(FeatureValidationError, match=message):
        FeatureView("stats", entities=entities)


def test_view_names_are_checked_and_a_single_entity_may_be_a_string() -> None:
    with pytest.raises(InvalidNameError, match=r"Invalid feature view name '\.\./stats'"):
        FeatureView("../stats", entities=["driver_id"])
    assert FeatureView("stats", entities="driver_id").entities == ("driver_id",)


# -- versions --------------------------------------------------------------------------------------
def stats_view(**options: Any) -> FeatureView:
    return FeatureView("stats", **{"entities": ["driver_id"], "timestamp": "ts", **options})


def test_versions_change_only_when_the_structure_changes_after_data_exists(
    fs: FeatureStore,
) -> None:
    assert fs.apply(stats_view(description="Driver stats")) == 1
    assert fs.apply(stats_view(description="Driver stats")) == 1
    # no data yet: a new schema redefines version 1
    assert fs.apply(stats_view(schema={"rate": "float64"})) == 1
    assert fs.get_view("stats").schema == {"rate": "float64"}
    fs.ingest(
        "stats", pd.DataFrame({"driver_id": [1, 2], "ts": ["2024-01-01"] * 2, "rate": [0.5, 0.7]})
    )

    before = snapshot(fs, "stats")
    assert fs.apply(fs.get_view("stats")) == 1  # identical: a no-op
    assert snapshot(fs, "stats") == before
    assert fs.apply(stats_view(description="Per driver")) == 1
    assert fs.apply(stats_view(description="Per driver", ttl="3h")) == 1
    current = fs.get_view("stats")
    assert current.description == "Per driver" and current.ttl == pd.Timedelta(hours=3)
    assert current.schema == {"rate": "float64"}  # kept when the new definition omits it
    assert fs.list_views()["version"].tolist() == [1]

    wider = {"rate": "float64", "trips": "int64"}
    assert fs.apply(stats_view(schema=wider)) == 2
    assert fs.get_view("stats").schema == wider
    assert fs.get_view("stats", version=1).schema == {"rate": "float64"}
    assert fs.read("stats", version=1)["rate"].tolist() == [0.5, 0.7]
    assert fs.read("stats").empty
    assert list(fs.read("stats").columns) == ["driver_id", "ts", "rate", "trips"]
    listed = fs.list_views()[["version", "rows", "parts", "features"]].to_dict("records")
    assert listed == [{"version": 2, "rows": 0, "parts": 0, "features": "rate, trips"}]

    wanted = entities_at([1, 2], ["2024-03-01", "2024-03-01"])
    result = fs.get_historical_features(wanted, ["stats:rate"])
    assert same_values(result["rate"].tolist(), [None, None])  # version 2 has no rows yet
    assert result.attrs["lineage"][0]["version"] == 2
    assert online(fs, "stats:rate", driver_id=1) is None

    v2_rows = pd.DataFrame({"driver_id": [1], "ts": ["2024-02-01"], "rate": [0.9], "trips": [4]})
    fs.ingest("stats", v2_rows)
    result = fs.get_historical_features(wanted, ["stats:rate", "stats:trips"])
    assert same_values(result["rate"].tolist(), [0.9, None])
    assert same_values(result["trips"].tolist(), [4, None])
    assert fs.read("stats", version=1)["rate"].tolist() == [0.5, 0.7]  # the old version is intact

    assert fs.apply(stats_view(entities=["driver_id", "city"], schema=wider)) == 3
    assert fs.apply(stats_view(entities=["driver_id", "city"], schema=wider)) == 3


# -- list_views, describe, read --------------------------------------------------------------------
def test_list_views_describe_and_read(fs: FeatureStore) -> None:
    fs.apply(
        FeatureView(
            "stats",
            entities=["driver_id"],
            timestamp="event_time",
            created="computed_at",
            ttl="2h",
            description="Driver stats",
        )
    )
    fs.apply(FeatureView("alpha", entities=["car"], schema={"kmh": "float64"}))
    paris = day_one("11:00", "12:00", "13:00").dt.tz_localize("Europe/Paris")
    first = {
        "driver_id": [3, 1, 2],
        "event_time": paris,
        "computed_at": ["2024-01-02"] * 3,
        "rate": [0.5, None, 1.5],
        "trips": [1, 2, 3],
    }
    second = {
        "driver_id": [1, 3],
        "event_time": ["2024-01-01 09:00", "2023-12-31 23:00"],
        "computed_at": ["2024-01-03"] * 2,
        "rate": [2.5, 3.5],
        "trips": [4, 5],
    }
    fs.ingest("stats", pd.DataFrame(first))
    fs.ingest("stats", pd.DataFrame(second))

    listed = fs.list_views()
    columns = ["view", "version", "entities", "features", "rows", "parts", "ttl", "description"]
    assert list(listed.columns) == columns
    assert listed.drop(columns="ttl").to_dict("records") == [
        {
            "view": "alpha",
            "version": 1,
            "entities": "car",
            "features": "kmh",
            "rows": 0,
            "parts": 0,
            "description": "",
        },
        {
            "view": "stats",
            "version": 1,
            "entities": "driver_id",
            "features": "rate, trips",
            "rows": 5,
            "parts": 2,
            "description": "Driver stats",
        },
    ]
    assert is_null(listed["ttl"][0]) and listed["ttl"][1] == pd.Timedelta(hours=2)

    data = fs.read("stats")
    assert list(data.columns) == ["driver_id", "event_time", "computed_at", "rate", "trips"]
    assert data["driver_id"].tolist() == [3, 1, 2, 1, 3]  # ingestion order
    assert same_values(data["rate"].tolist(), [0.5, None, 1.5, 2.5, 3.5])
    events = ["10:00", "11:00", "12:00", "09:00"]
    assert [to_utc(t) for t in data["event_time"]] == [
        *[to_utc(f"2024-01-01 {e}") for e in events],
        to_utc("2023-12-31 23:00"),
    ]
    created = [to_utc(t) for t in data["computed_at"]]
    assert created == [to_utc("2024-01-02")] * 3 + [to_utc("2024-01-03")] * 2

    described = fs.describe("stats")
    assert list(described.index) == ["rate", "trips"]
    rate, trips = described.loc["rate"], described.loc["trips"]
    assert (rate["count"], rate["nulls"], rate["mean"], rate["min"], rate["max"]) == (
        4, 1, 2.0, 0.5, 3.5,
    )  # fmt: skip
    assert rate["std"] == pd.Series([0.5, 1.5, 2.5, 3.5]).std()
    assert (trips["count"], trips["nulls"], trips["mean"], trips["min"], trips["max"]) == (
        5, 0, 3.0, 1, 5,
    )  # fmt: skip
    assert to_utc(rate["first_event"]) == to_utc("2023-12-31 23:00")
    assert to_utc(rate["last_event"]) == to_utc("2024-01-01 12:00")

    empty = fs.describe("alpha").loc["kmh"]
    assert (empty["count"], empty["nulls"]) == (0, 0) and math.isnan(empty["mean"])


def test_read_of_a_view_without_rows_has_the_same_columns_as_with_rows(fs: FeatureStore) -> None:
    fs.apply(stats_view(created="created", schema={"rate": "float64"}))
    empty = list(fs.read("stats").columns)
    row = {"driver_id": [1], "ts": ["2024-01-01"], "created": ["2024-01-01"], "rate": [0.5]}
    fs.ingest("stats", pd.DataFrame(row))
    assert empty == list(fs.read("stats").columns) == ["driver_id", "ts", "created", "rate"]


# -- lineage ---------------------------------------------------------------------------------------
@pytest.fixture
def with_two_views(fs: FeatureStore) -> FeatureStore:
    fs.apply(FeatureView("stats", entities=["driver_id"], timestamp="ts"))
    fs.ingest("stats", pd.DataFrame({"driver_id": [1], "ts": ["2024-01-01"], "rate": [0.5]}))
    fs.ingest("stats", pd.DataFrame({"driver_id": [1], "ts": ["2024-01-02"], "rate": [0.7]}))
    fs.apply(FeatureView("profile", entities=["driver_id"], timestamp="ts"))
    profile = {"driver_id": [1], "ts": ["2024-01-01"], "age": [41], "car": ["fiat"]}
    fs.ingest("profile", pd.DataFrame(profile))
    return fs


WANTED = ["stats:rate", "profile:car", "profile:age"]
USED = [
    {"kind": "feature_view", "view": "stats", "version": 1, "parts": [1, 2], "features": ["rate"]},
    {
        "kind": "feature_view",
        "view": "profile",
        "version": 1,
        "parts": [1],
        "features": ["car", "age"],
    },
]


def test_the_training_set_names_the_view_versions_and_parts_it_used(
    with_two_views: FeatureStore,
) -> None:
    result = with_two_views.get_historical_features(entities_at([1], ["2024-01-03"]), WANTED)
    assert result.attrs["lineage"] == USED
    assert result[["rate", "car", "age"]].values.tolist() == [[0.7, "fiat", 41]]


def test_a_function_step_records_the_feature_lineage(with_two_views: FeatureStore) -> None:
    fs = with_two_views
    pipe = Pipeline("training", store=fs.store)

    @pipe.step
    def training_set() -> pd.DataFrame:
        return fs.get_historical_features(entities_at([1], ["2024-01-03"]), WANTED)

    assert pipe.run()["training_set"]["rate"].tolist() == [0.7]
    assert pipe.lineage("training_set") == USED
    assert pipe.run_step("training_set").action == "cached"
    assert pipe.lineage("training_set") == USED  # the stored result keeps its lineage


def test_a_cell_step_records_the_feature_lineage(with_two_views: FeatureStore) -> None:
    namespace = {"root": str(with_two_views.store.root), "wanted": entities_at([1], ["2024-01-03"])}
    pipe = Pipeline("cells", store=with_two_views.store, namespace=namespace)
    code = (
        "from mlops_nb import FeatureStore\n"
        f"training = FeatureStore(root).get_historical_features(wanted, {WANTED!r})"
    )
    pipe.define_cell("training", code)
    pipe.run()
    assert namespace["training"]["rate"].tolist() == [0.7]
    assert pipe.lineage("training") == USED


def test_a_cell_step_may_read_the_feature_store_from_the_namespace(
    with_two_views: FeatureStore,
) -> None:
    namespace = {"fs": with_two_views, "wanted": entities_at([1], ["2024-01-03"])}
    pipe = Pipeline("cells", store=with_two_views.store, namespace=namespace)
    pipe.define_cell("training", f"training = fs.get_historical_features(wanted, {WANTED!r})")
    pipe.run()
    assert pipe.lineage("training") == USED


# -- %%features ------------------------------------------------------------------------------------
def notebook_store(nb: Notebook) -> FeatureStore:
    return FeatureStore(nb.pipeline.store)


FRAME = (
    "pd.DataFrame({'driver_id': [1, 2], 'ts': ['2024-01-01 10:00', '2024-01-01 11:00'], "
    "'rate': [0.5, 0.7]})"
)
NEW_VIEW = "%%features drivers --entities driver_id --timestamp ts"


def test_features_magic_creates_a_view_then_appends(
    nb: Notebook, capsys: pytest.CaptureFixture[str]
) -> None:
    nb.ok("import pandas as pd")
    nb.ok(f"{NEW_VIEW} --ttl 2h --description Per-driver\n{FRAME}")
    assert "Ingested 2 rows into 'drivers' v1 (part 1)" in capsys.readouterr().out
    fs = notebook_store(nb)
    view = fs.get_view("drivers")
    assert view.entities == ("driver_id",) and view.timestamp == "ts"
    assert view.ttl == pd.Timedelta(hours=2) and view.description == "Per-driver"
    assert view.schema == {"rate": "float64"}

    nb.ok("late = pd.DataFrame({'driver_id': [1], 'ts': ['2024-01-01 12:00'], 'rate': [0.9]})")
    nb.ok("%%features drivers\nlate")
    assert "Ingested 1 rows into 'drivers' v1 (part 2)" in capsys.readouterr().out
    assert fs.read("drivers")["rate"].tolist() == [0.5, 0.7, 0.9]
    wanted = entities_at([1, 2, 2], ["2024-01-01 12:30", "2024-01-01 12:30", "2024-01-01 13:00:01"])
    result = fs.get_historical_features(wanted, ["drivers:rate"])
    assert same_values(result["rate"].tolist(), [0.9, 0.7, None])

    # options given for an existing view re-apply it: same structure, same version
    nb.ok(f"%%features drivers --ttl 3h\n{FRAME}")
    assert "v1 (part 3)" in capsys.readouterr().out
    assert fs.get_view("drivers").ttl == pd.Timedelta(hours=3)


@pytest.mark.parametrize("quote", ["'", '"'])
def test_features_magic_takes_a_quoted_description_with_spaces(nb: Notebook, quote: str) -> None:
    nb.ok("import pandas as pd")
    nb.ok(f"{NEW_VIEW} --description {quote}Trips per driver{quote}\n{FRAME}")
    assert notebook_store(nb).get_view("drivers").description == "Trips per driver"


def test_features_magic_errors_are_usage_errors_and_write_nothing(nb: Notebook) -> None:
    nb.ok("import pandas as pd")
    error = nb.error(f"%%features drivers --timestamp ts\n{FRAME}")
    assert isinstance(error, UsageError)
    assert "Feature view 'drivers' is new: say which columns are its keys" in str(error)
    assert "%%features drivers --entities driver_id --timestamp event_ts" in str(error)

    error = nb.error(f"{NEW_VIEW}\n42")
    assert isinstance(error, UsageError)
    assert "%%features needs the cell to end with a DataFrame expression, got int" in str(error)
    error = nb.error(f"{NEW_VIEW}\nframe = {FRAME}")
    assert isinstance(error, UsageError) and "got NoneType" in str(error)

    error = nb.error(f"{NEW_VIEW} --ttl soon\n{FRAME}")
    assert isinstance(error, UsageError) and "ttl='soon' is not a positive duration" in str(error)
    assert notebook_store(nb).list_views().empty

    nb.ok(f"{NEW_VIEW}\n{FRAME}")
    fs = notebook_store(nb)
    before = snapshot(fs, "drivers")
    drift = "pd.DataFrame({'driver_id': [3], 'ts': ['2024-01-02'], 'rate': ['fast']})"
    error = nb.error(f"%%features drivers\n{drift}")
    assert isinstance(error, UsageError) and isinstance(error.__cause__, FeatureValidationError)
    assert "Cannot ingest into 'drivers': 'rate' is str but the view has float64" in str(error)
    error = nb.error("%%features drivers\npd.DataFrame({'driver_id': [3], 'rate': [0.1]})")
    assert isinstance(error, UsageError) and "missing column(s) ['ts']" in str(error)
    assert snapshot(fs, "drivers") == before


# -- tampering -------------------------------------------------------------------------------------
def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_values(path: Path) -> None:
    frame = pd.read_parquet(path)
    frame["rate"] = 99.0  # still a valid Parquet file, with other numbers in it
    frame.to_parquet(path)


@pytest.mark.parametrize("tamper", [flip_a_byte, rewrite_values])
def test_a_tampered_part_is_refused_by_a_new_store_instance(tmp_path: Path, tamper: Any) -> None:
    root = tmp_path / "features"
    fs = FeatureStore(root)
    fs.apply(FeatureView("stats", entities=["driver_id"], timestamp="ts"))
    fs.ingest(
        "stats", pd.DataFrame({"driver_id": [1, 2], "ts": ["2024-01-01"] * 2, "rate": [0.5, 0.7]})
    )
    fs.ingest("stats", pd.DataFrame({"driver_id": [1], "ts": ["2024-01-02"], "rate": [0.9]}))
    wanted = entities_at([1, 2], ["2024-01-03", "2024-01-03"])
    assert fs.get_historical_features(wanted, ["stats:rate"])["rate"].tolist() == [0.9, 0.7]
    [(sha256,)] = fs.store.query("SELECT sha256 FROM feature_parts WHERE part = 1")
    path = fs.store.object_path(sha256, ".parquet")
    tamper(path)

    with pytest.raises(CorruptObjectError, match="part 1 of view 'stats'") as caught:
        FeatureStore(root).get_historical_features(wanted, ["stats:rate"])
    assert str(path) in str(caught.value)
    with pytest.raises(CorruptObjectError, match="part 1 of view 'stats'"):
        FeatureStore(root).read("stats")


def test_dask_reads_the_parquet_files_of_a_view(fs: FeatureStore) -> None:
    import dask.dataframe as dd

    fs.apply(FeatureView("trips", entities=["driver_id"], timestamp="event_ts"))
    for day in ("2024-01-01", "2024-01-02"):
        fs.ingest("trips", pd.DataFrame({
            "driver_id": [1, 2, 1], "event_ts": pd.to_datetime([day] * 3), "km": [1.0, 2.0, 3.0],
        }))  # fmt: skip
    files = fs.parquet_files("trips")
    assert len(files) == 2 and all(Path(f).is_relative_to(fs.store.root) for f in files)
    lazy = dd.read_parquet(files).groupby("driver_id")["km"].mean()
    assert lazy.compute().sort_index().to_dict() == {1: 2.0, 2: 2.0}
    with pytest.raises(UnknownViewError, match="trip"):
        fs.parquet_files("trip")


def test_a_large_ingest_shows_its_progress(fs: FeatureStore, capsys: pytest.CaptureFixture[str]) -> None:
    from mlops_nb.features import LARGE_INGEST

    fs.apply(FeatureView("trips", entities=["driver_id"], timestamp="event_ts"))
    small = pd.DataFrame({"driver_id": [1], "event_ts": pd.to_datetime(["2024-01-01"]), "km": [1.0]})
    fs.ingest("trips", small)
    assert capsys.readouterr().err == ""  # small ingests stay quiet
    rows = LARGE_INGEST
    large = pd.DataFrame({
        "driver_id": range(rows), "event_ts": pd.Timestamp("2024-01-02"), "km": 1.0,
    })  # fmt: skip
    assert fs.ingest("trips", large).rows == rows
    bar = capsys.readouterr().err
    assert f"ingest trips ({rows:,} rows): 0/4" in bar and "4/4" in bar and "done" in bar
