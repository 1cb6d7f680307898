"""The local store: serializers, checksums, names and the catalog (crashes and concurrent
writers: see test_reliability_crash.py and test_reliability_concurrency.py)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_nb import (
    CorruptObjectError,
    InvalidNameError,
    MlopsNbError,
    Pipeline,
    Store,
    UnstorableValueError,
)
from mlops_nb.errors import MAX_NAME_LENGTH, validate_name
from mlops_nb.hashing import content_hash
from mlops_nb.store import INLINE_LIMIT, default_home, serializers
from mlops_nb.store.catalog import SCHEMA_VERSION


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "store")
    yield opened
    opened.close()


def serializer_of(store: Store, sha256: str) -> str:
    return store.query("SELECT serializer FROM objects WHERE sha256 = ?", (sha256,))[0][0]


def is_inline(store: Store, sha256: str) -> bool:
    return (
        store.query("SELECT inline IS NOT NULL FROM objects WHERE sha256 = ?", (sha256,))[0][0] == 1
    )


def object_files(store: Store) -> list[Path]:
    return sorted(p for p in store.objects_dir.rglob("*") if p.is_file())


@dataclass
class Point:
    x: float
    y: float


def training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    X = rng.rand(60, 3)
    return X, (X[:, 0] + X[:, 1] > 1).astype(int)


# -- round trips ---------------------------------------------------------------------------------------


def fitted(make: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: make().fit(*training_data())


def sklearn(name: str) -> Callable[[], Any]:
    def make() -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.tree import DecisionTreeClassifier

        return {
            "logistic": lambda: LogisticRegression(C=0.5),
            "scaler": StandardScaler,
            "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
            "tree": lambda: DecisionTreeClassifier(max_depth=3, random_state=0),
        }[name]()

    return make


def closure() -> Callable[[int], int]:
    offset = 10
    return lambda value: value + offset


ROUND_TRIPS: dict[str, tuple[str, Callable[[], Any]]] = {
    # id: (serializer expected, make the value)
    "json-dict": ("json", lambda: {"accuracy": 0.93, "labels": ["a", "b"], "n": None, "ok": True}),
    "json-list": ("json", lambda: [1, 2.5, "é", [None, False]]),
    "json-string": ("json", lambda: "line\nbreak \u2028 and 😀"),
    "json-large": ("json", lambda: list(range(40_000))),
    "json-float-edge": ("json", lambda: [0.1, -0.0, 1e300, float("nan")]),
    "parquet-basic": (
        "parquet",
        lambda: pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan], "c": ["x", "y"]}),
    ),
    "parquet-large": (
        "parquet",
        lambda: pd.DataFrame({"i": np.arange(50_000), "f": np.random.RandomState(1).rand(50_000)}),
    ),
    "parquet-tz": (
        "parquet",
        lambda: pd.DataFrame(
            {"t": pd.date_range("2024-03-30", periods=4, freq="12h", tz="Europe/Paris")}
        ),
    ),
    "parquet-naive-datetime": (
        "parquet",
        lambda: pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3)}),
    ),
    "parquet-datetime-seconds": (
        "pickle",  # Parquet would change its dtype or labels
        lambda: pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-06-01"]).as_unit("s")}),
    ),
    "parquet-categorical": (
        "parquet",
        lambda: pd.DataFrame({"c": pd.Categorical(["lo", "hi", "lo"], ordered=True)}),
    ),
    "parquet-nullable": (
        "parquet",
        lambda: pd.DataFrame(
            {"i": pd.array([1, None], dtype="Int64"), "b": pd.array([None, True], dtype="boolean")}
        ),
    ),
    "parquet-string": (
        "parquet",
        lambda: pd.DataFrame({"s": pd.array(["a", None], dtype="string")}),
    ),
    "parquet-object-strings": (
        "pickle",  # Parquet would change its dtype or labels
        lambda: pd.DataFrame({"s": pd.Series(["a", "b"], dtype=object)}),
    ),
    "parquet-float32": (
        "parquet",
        lambda: pd.DataFrame({"f": np.array([1.5, 2.5], dtype=np.float32)}),
    ),
    "parquet-timedelta": (
        "pickle",  # Parquet would change its dtype or labels
        lambda: pd.DataFrame({"d": pd.to_timedelta([1, 90], unit="s")}),
    ),
    "parquet-named-index": (
        "parquet",
        lambda: pd.DataFrame({"a": [1, 2]}, index=pd.Index([10, 20], name="key")),
    ),
    "parquet-range-index": (
        "parquet",
        lambda: pd.DataFrame({"a": [1, 2]}, index=pd.RangeIndex(5, 9, 2)),
    ),
    "parquet-string-index": ("parquet", lambda: pd.DataFrame({"a": [1, 2]}, index=["r1", "r2"])),
    "parquet-multi-index": (
        "pickle",  # Parquet would change its dtype or labels
        lambda: pd.DataFrame(
            {"v": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
        ),
    ),
    "parquet-empty": ("pickle", pd.DataFrame),  # Parquet would change its (empty) labels
    "parquet-no-rows": ("parquet", lambda: pd.DataFrame({"a": pd.Series([], dtype="int64")})),
    "npy-int": ("npy", lambda: np.arange(10)),
    "npy-large": ("npy", lambda: np.random.RandomState(2).rand(100_000)),
    "npy-fortran": ("npy", lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4))),
    "npy-strided": ("npy", lambda: np.arange(30)[::3]),
    "npy-datetime": ("npy", lambda: np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]")),
    "npy-unicode": ("npy", lambda: np.array(["ab", "ç"])),
    "npy-structured": ("npy", lambda: np.array([(1, 2.5)], dtype=[("a", "i4"), ("b", "f8")])),
    "npy-0d": ("npy", lambda: np.array(3.5)),
    "skops-unfitted": ("skops", sklearn("logistic")),
    "skops-logistic": ("skops", fitted(sklearn("logistic"))),
    "skops-scaler": ("skops", fitted(sklearn("scaler"))),
    "skops-pipeline": ("skops", fitted(sklearn("pipeline"))),
    "skops-tree": ("skops", fitted(sklearn("tree"))),
    "pickle-tuple": ("pickle", lambda: (1, "a", None)),
    "pickle-int-keys": ("pickle", lambda: {1: "a", 2: "b"}),
    "pickle-set": ("pickle", lambda: {"x", "y"}),
    "pickle-dataclass": ("pickle", lambda: Point(1.0, 2.0)),
    "pickle-series": ("pickle", lambda: pd.Series([1, 2], name="s")),
    "pickle-int-columns": ("pickle", lambda: pd.DataFrame({0: [1], 1: [2]})),
    "pickle-mixed-column": ("pickle", lambda: pd.DataFrame({"m": [1, "a"]})),
    "pickle-object-array": ("pickle", lambda: np.array([1, "a", None], dtype=object)),
    "pickle-large": ("pickle", lambda: tuple(range(30_000))),
}


def assert_same(original: Any, loaded: Any) -> None:
    assert type(loaded) is type(original)
    if isinstance(original, pd.DataFrame):
        pd.testing.assert_frame_equal(loaded, original)
    elif isinstance(original, pd.Series):
        pd.testing.assert_series_equal(loaded, original)
    elif isinstance(original, np.ndarray):
        np.testing.assert_array_equal(loaded, original)
        assert loaded.dtype == original.dtype
    elif hasattr(original, "get_params"):
        assert repr(loaded.get_params()) == repr(original.get_params())
        if hasattr(original, "n_features_in_"):
            X, _ = training_data()
            method = "predict" if hasattr(original, "predict") else "transform"
            np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(original, method)(X))
    elif isinstance(original, list):
        assert repr(loaded) == repr(original)  # exact: tells -0.0 from 0.0 and keeps NaN
    else:
        assert loaded == original


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_values_round_trip_with_the_same_content_hash(store: Store, case: str) -> None:
    serializer, make = ROUND_TRIPS[case]
    value = make()
    ref = store.put(value)
    assert ref.value_hash == content_hash(value)
    assert serializer_of(store, ref.sha256) == serializer
    loaded = store.get(ref.sha256)
    assert_same(value, loaded)
    assert content_hash(loaded) == ref.value_hash


def test_a_lambda_round_trips_through_pickle(store: Store) -> None:
    add = closure()
    ref = store.put(add)
    assert serializer_of(store, ref.sha256) == "pickle"
    loaded = store.get(ref.sha256)
    assert loaded(5) == 15
    assert content_hash(loaded) == ref.value_hash
    square = store.get(store.put(lambda v: v * v).sha256)
    assert square(7) == 49


def test_values_survive_reopening_the_store(tmp_path: Path) -> None:
    first = Store(tmp_path / "store")
    small, large = first.put({"k": 1}), first.put(np.arange(50_000))
    first.close()
    again = Store(tmp_path / "store")
    assert again.get(small.sha256) == {"k": 1}
    np.testing.assert_array_equal(again.get(large.sha256), np.arange(50_000))


def test_find_returns_the_object_holding_a_content_hash(store: Store) -> None:
    value = [1, 2, 3]
    assert store.find(content_hash(value)) is None
    ref = store.put(value)
    assert store.find(content_hash([1, 2, 3])) == ref


# -- inline or file ----------------------------------------------------------------------------------


def test_small_values_live_in_the_catalog(store: Store) -> None:
    ref = store.put(np.arange(100))
    assert is_inline(store, ref.sha256)
    assert object_files(store) == []


def test_large_values_live_in_a_file_named_by_its_sha256(store: Store) -> None:
    value = np.random.RandomState(0).rand(20_000)  # 160 kB > INLINE_LIMIT
    ref = store.put(value)
    assert not is_inline(store, ref.sha256)
    path = store.object_path(ref.sha256, ".npy")
    assert object_files(store) == [path]
    assert path.parent == store.objects_dir / ref.sha256[:2]
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == ref.sha256
    assert store.query("SELECT size FROM objects WHERE sha256 = ?", (ref.sha256,)) == [(len(data),)]
    assert len(data) > INLINE_LIMIT


def test_the_inline_limit_is_on_the_serialized_size(store: Store) -> None:
    below = store.put(np.zeros(INLINE_LIMIT // 8 - 100, dtype=np.uint64))
    above = store.put(np.ones(INLINE_LIMIT // 8 + 100, dtype=np.uint64))
    assert is_inline(store, below.sha256)
    assert not is_inline(store, above.sha256)


def test_no_temporary_files_are_left_behind(store: Store) -> None:
    for size in (10, 100_000):
        store.put(np.arange(size))
        store.put(pd.DataFrame({"a": np.arange(size)}))
    assert not [p for p in object_files(store) if p.name.startswith(".incoming-")]


# -- deduplication ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: np.arange(30_000), lambda: {"a": [1, 2]}, lambda: pd.DataFrame({"a": range(10_000)})],
    ids=["large-array", "small-json", "frame"],
)
def test_equal_values_are_stored_once(store: Store, make: Callable[[], Any]) -> None:
    first = store.put(make())
    files = object_files(store)
    second = store.put(make())
    assert second == first
    assert store.query("SELECT COUNT(*) FROM objects") == [(1,)]
    assert object_files(store) == files


def test_different_values_are_stored_separately(store: Store) -> None:
    refs = {store.put([i]).sha256 for i in range(20)}
    assert len(refs) == 20
    assert store.query("SELECT COUNT(*) FROM objects") == [(20,)]


# -- corrupt, tampered and missing objects --------------------------------------------------------------


def corrupt_message(where: str, label: str) -> str:
    return (
        rf"^The file {re.escape(repr(where))} holding {re.escape(label)} is corrupt or was modified: "
        r"its sha256 does not match the catalog, so it was not loaded\. Write a good copy: re-run "
        r"the step that produces it \(with --force\), or save or ingest it again\.$"
    )


LARGE_VALUES: dict[str, tuple[str, Callable[[], Any]]] = {
    "npy": (".npy", lambda: np.random.RandomState(0).rand(20_000)),
    "parquet": (".parquet", lambda: pd.DataFrame({"a": np.random.RandomState(0).rand(20_000)})),
    "pickle": (".pkl", lambda: tuple(np.random.RandomState(0).rand(20_000).tolist())),
    "json": (".json", lambda: np.random.RandomState(0).rand(20_000).tolist()),
}


@pytest.mark.parametrize("kind", LARGE_VALUES)
@pytest.mark.parametrize("damage", ["flip-a-bit", "truncate", "append"])
def test_a_damaged_object_file_is_refused_with_its_path(
    store: Store, kind: str, damage: str
) -> None:
    suffix, make = LARGE_VALUES[kind]
    ref = store.put(make())
    path = store.object_path(ref.sha256, suffix)
    data = bytearray(path.read_bytes())
    if damage == "flip-a-bit":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        del data[-10:]
    else:
        data += b"\x00"
    path.write_bytes(bytes(data))
    label = "output 'X' of step 'load'"
    with pytest.raises(CorruptObjectError, match=corrupt_message(str(path), label)) as caught:
        store.get(ref.sha256, label=label)
    assert isinstance(caught.value, OSError)
    assert isinstance(caught.value, MlopsNbError)


def test_a_tampered_pickle_is_never_unpickled(store: Store, tmp_path: Path) -> None:
    ref = store.put(tuple(range(30_000)))
    path = store.object_path(ref.sha256, ".pkl")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CorruptObjectError, match=corrupt_message(str(path), "value")):
        store.get(ref.sha256)
    assert not marker.exists()


def test_a_tampered_inline_object_is_refused(store: Store) -> None:
    ref = store.put({"threshold": 0.5})
    with store.transaction() as db:
        db.execute(
            "UPDATE objects SET inline = ? WHERE sha256 = ?", (b'{"threshold": 0.9}', ref.sha256)
        )
    with pytest.raises(
        CorruptObjectError,
        match=rf"^The catalog row of object {ref.sha256[:12]}.* holding output 'cfg' of step 's' is "
        r"corrupt or was modified",
    ):
        store.get(ref.sha256, label="output 'cfg' of step 's'")


def test_a_missing_object_file_gives_a_clear_error(store: Store) -> None:
    ref = store.put(np.random.RandomState(0).rand(20_000))
    path = store.object_path(ref.sha256, ".npy")
    path.unlink()
    with pytest.raises(
        CorruptObjectError,
        match=rf"^The file {re.escape(repr(str(path)))} holding output 'X' of step 'load' is "
        r"missing\. Write it again: re-run the step that produces it \(with --force\), or save "
        r"or ingest it again\.$",
    ):
        store.get(ref.sha256, label="output 'X' of step 'load'")


def test_an_unknown_object_gives_a_clear_error(store: Store) -> None:
    with pytest.raises(CorruptObjectError, match=r"has no object 0123456789ab\.\.\. for value"):
        store.get("0123456789ab" + "0" * 52)


def test_a_corrupt_step_output_names_the_file_and_the_step(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    pipe = Pipeline("corrupt", store=Store(tmp_path / "store"), namespace=namespace)
    pipe.define_cell("load", "import numpy as np\nX = np.random.RandomState(0).rand(20_000)")
    pipe.run_step("load")
    (path,) = object_files(pipe.store)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    restarted = Pipeline("corrupt", store=Store(tmp_path / "store"), namespace={})
    with pytest.raises(
        CorruptObjectError, match=corrupt_message(str(path), "output 'X' of step 'load'")
    ):
        restarted.run_step("load")


# -- restoring large values: equal, writable, within memory ---------------------------------------------


def every_stable_dtype(rows: int) -> pd.DataFrame:
    """One column of each dtype Parquet gives back exactly, on an index with repeated labels."""
    rng = np.random.RandomState(3)
    frame = pd.DataFrame(
        {
            "f64": np.where(rng.rand(rows) < 0.1, np.nan, rng.rand(rows)),
            "f32": rng.rand(rows).astype(np.float32),
            "i64": rng.randint(-5, 5, rows),
            "u8": rng.randint(0, 255, rows).astype(np.uint8),
            "flag": rng.rand(rows) < 0.5,
            "when": pd.date_range("2024-01-01", periods=rows, freq="min"),
            "zoned": pd.date_range("2024-03-30", periods=rows, freq="h", tz="Europe/Paris"),
            "city": pd.Categorical(rng.choice(["Lyon", "Nice"], rows), ordered=True),
            "name": pd.array([f"n{i}" if i % 7 else None for i in range(rows)], dtype="str"),
            "label": pd.array([f"l{i}" if i % 3 else None for i in range(rows)], dtype="string"),
            "count": pd.array([i if i % 5 else None for i in range(rows)], dtype="Int64"),
        },
        index=pd.Index(np.arange(rows) // 2, name="key"),
    )
    frame.columns.name = "feature"
    frame.attrs = {"source": "sensor"}
    return frame


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Frames are read in batches of columns however small they are; returns the batches read."""
    read: list[list[str]] = []
    batches = serializers._batches

    def recorded(sizes: dict[str, int]) -> list[list[str]]:
        made = batches(sizes)
        read.extend(made)
        return made

    monkeypatch.setattr(serializers, "MIN_BATCH_BYTES", 1)
    monkeypatch.setattr(serializers, "_batches", recorded)
    return read


@pytest.mark.parametrize("rows", [40, 20_000], ids=["inline", "file"])
def test_a_frame_read_in_batches_of_columns_comes_back_the_same(
    store: Store, small_batches: list[list[str]], rows: int
) -> None:
    value = every_stable_dtype(rows)
    ref = store.put(value)
    assert serializer_of(store, ref.sha256) == "parquet"
    assert is_inline(store, ref.sha256) == (rows == 40)
    loaded = store.get(ref.sha256)
    assert len(small_batches) > 1
    assert [name for batch in small_batches for name in batch] == list(value.columns)
    pd.testing.assert_frame_equal(loaded, value)
    assert loaded.dtypes.to_dict() == value.dtypes.to_dict()
    assert loaded.attrs == value.attrs
    assert content_hash(loaded) == ref.value_hash


@pytest.mark.parametrize(
    "case", [case for case, (kind, _) in ROUND_TRIPS.items() if kind == "parquet"]
)
def test_every_parquet_round_trip_holds_when_read_in_batches_of_columns(
    store: Store, small_batches: list[list[str]], case: str
) -> None:
    value = ROUND_TRIPS[case][1]()
    ref = store.put(value)
    loaded = store.get(ref.sha256)
    assert_same(value, loaded)
    assert content_hash(loaded) == ref.value_hash


@pytest.mark.parametrize("in_batches", [False, True], ids=["one-read", "in-batches"])
def test_a_restored_frame_is_writable_and_the_stored_file_keeps_its_content(
    store: Store, request: pytest.FixtureRequest, in_batches: bool
) -> None:
    if in_batches:
        request.getfixturevalue("small_batches")
    value = every_stable_dtype(20_000)
    ref = store.put(value)
    path = store.object_path(ref.sha256, ".parquet")
    loaded = store.get(ref.sha256)
    for position in range(loaded.shape[1]):
        loaded.iloc[0, position] = loaded.iloc[1, position]
    loaded["f64"] *= 2
    loaded.loc[loaded.index[2], "i64"] = 99
    assert loaded["i64"].iloc[2] == 99 and loaded["f64"].iloc[1] == value["f64"].iloc[1] * 2
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256
    pd.testing.assert_frame_equal(store.get(ref.sha256), value)


ARRAYS: dict[str, Callable[[int], np.ndarray]] = {
    "float64": lambda n: np.random.RandomState(4).rand(n),
    "int8": lambda n: np.arange(n, dtype=np.int8),
    "bool": lambda n: np.arange(n) % 3 == 0,
    "complex": lambda n: np.arange(n) * (1 + 2j),
    "datetime": lambda n: np.arange(n).astype("datetime64[s]"),
    "unicode": lambda n: np.array(["ab", "ç", ""] * (n // 3)),
    "structured": lambda n: np.rec.fromarrays([np.arange(n), np.arange(n) / 2], names="a,b").view(
        np.ndarray
    ),
    "fortran-2d": lambda n: np.asfortranarray(np.arange(n, dtype=np.float32).reshape(-1, 4)),
}


@pytest.mark.parametrize("size", [300, 60_000], ids=["inline", "file"])
@pytest.mark.parametrize("kind", ARRAYS)
def test_a_restored_array_is_writable_and_the_stored_file_keeps_its_content(
    store: Store, kind: str, size: int
) -> None:
    value = ARRAYS[kind](size)
    ref = store.put(value)
    assert serializer_of(store, ref.sha256) == "npy"
    loaded = store.get(ref.sha256)
    assert type(loaded) is np.ndarray  # not a np.memmap, which content_hash tells apart
    assert loaded.flags.writeable
    assert loaded.dtype == value.dtype and loaded.flags.f_contiguous == value.flags.f_contiguous
    np.testing.assert_array_equal(loaded, value)
    assert content_hash(loaded) == ref.value_hash
    loaded[...] = loaded[::-1].copy()
    assert not np.array_equal(loaded, value)
    if not is_inline(store, ref.sha256):
        path = store.object_path(ref.sha256, ".npy")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256
    np.testing.assert_array_equal(store.get(ref.sha256), value)


@pytest.mark.parametrize("kind", ["parquet", "npy"])
@pytest.mark.parametrize("damage", ["flip-a-bit", "truncate"])
def test_a_damaged_large_value_is_refused_before_it_is_read(
    store: Store, monkeypatch: pytest.MonkeyPatch, kind: str, damage: str
) -> None:
    value = (
        every_stable_dtype(20_000) if kind == "parquet" else np.random.RandomState(5).rand(50_000)
    )
    ref = store.put(value)
    path = store.object_path(ref.sha256, f".{kind}")
    data = bytearray(path.read_bytes())
    if damage == "flip-a-bit":
        data[len(data) // 3] ^= 0x01
    else:
        del data[len(data) // 2 :]
    path.write_bytes(bytes(data))

    def never(*args: Any) -> Any:
        raise AssertionError("a damaged file was read")

    monkeypatch.setattr(type(serializers.by_name(kind)), "load", never)
    with pytest.raises(CorruptObjectError, match=corrupt_message(str(path), "value")):
        store.get(ref.sha256)


RESTORE_IN_A_NEW_PROCESS = """
import gc, json, sys
from pathlib import Path

import numpy, pandas, pyarrow.parquet  # imported before measuring: only the restore counts

from mlops_nb.hashing import content_hash
from mlops_nb.store import Store


def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024


store = Store(sys.argv[1])
store.get(sys.argv[3])  # a small value of the same kind first: what it imports is not counted
gc.collect()
try:
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
except OSError:
    pass  # then the peak includes start-up, far below the value's size
before = status("VmRSS")
value = store.get(sys.argv[2])
print(json.dumps({"extra": status("VmHWM") - before, "hash": content_hash(value)}))
"""


def about_200_mb(kind: str) -> Any:
    rng = np.random.RandomState(6)
    if kind == "array":
        return rng.rand(25_000_000)
    if kind == "one-column-frame":
        return pd.DataFrame({"x": rng.rand(25_000_000)})
    rows = 3_000_000
    columns = {f"f{i}": rng.rand(rows) for i in range(6)}
    columns |= {"i": rng.randint(0, 1000, rows), "f32": rng.rand(rows).astype(np.float32)}
    return pd.DataFrame(columns)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
@pytest.mark.parametrize("kind", ["frame", "one-column-frame", "array"])
def test_restoring_a_large_value_needs_little_more_memory_than_the_value(
    store: Store, kind: str
) -> None:
    value = about_200_mb(kind)
    size = value.nbytes if kind == "array" else int(value.memory_usage(deep=True).sum())
    ref, small = store.put(value), store.put(value[:100])
    del value
    run = subprocess.run(
        [sys.executable, "-c", RESTORE_IN_A_NEW_PROCESS, str(store.root), ref.sha256, small.sha256],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    restored = json.loads(run.stdout)
    assert restored["hash"] == ref.value_hash
    # Reading the whole Parquet file at once peaked at 2.3 x; the margin absorbs allocator noise.
    assert restored["extra"] / size < 1.6, f"restoring took {restored['extra'] / size:.2f} x"


# -- unstorable values -----------------------------------------------------------------------------------


def test_a_value_no_serializer_can_write_raises_unstorable_value_error(store: Store) -> None:
    frame = pd.DataFrame({"lock": [threading.Lock()]})
    with pytest.raises(
        UnstorableValueError,
        match=r"^Cannot store output 'conn' of step 'open' \(a DataFrame\): Cannot hash a lock value "
        r"\(cannot pickle '_thread\.lock' object\)\.",
    ) as caught:
        store.put(frame, label="output 'conn' of step 'open'")
    assert isinstance(caught.value, TypeError)
    assert store.query("SELECT COUNT(*) FROM objects") == [(0,)]
    assert object_files(store) == []


def test_an_unpicklable_value_raises_unstorable_value_error(store: Store) -> None:
    with pytest.raises(
        UnstorableValueError, match=r"Cannot store value \(a generator\): pickle: cannot pickle"
    ):
        store.put((x for x in range(3)), value_hash="0" * 32)
    assert store.query("SELECT COUNT(*) FROM objects") == [(0,)]
    assert object_files(store) == []


# -- names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../x", "..", ".", "a/b", "a\\b", "/etc", "", "x" * 200, "x" * (MAX_NAME_LENGTH + 1), ".hidden",
     "-flag", "a..b", "clean\n", "tab\tname", "nul\x00", "spaced name", "naïve", "a:b"],
)  # fmt: skip
def test_unsafe_names_are_rejected(name: str) -> None:
    with pytest.raises(
        InvalidNameError, match=rf"^Invalid step name {re.escape(repr(name))}: use 1 to 64"
    ):
        validate_name(name)
    with pytest.raises(ValueError):
        validate_name(name, "pipeline")


@pytest.mark.parametrize("name", [None, 3, b"abc", Path("a"), ["a"]])
def test_non_string_names_are_rejected(name: object) -> None:
    with pytest.raises(
        InvalidNameError, match=rf"^A view name must be a string, got {re.escape(repr(name))}\.$"
    ):
        validate_name(name, "view")


@pytest.mark.parametrize(
    "name", ["clean", "train_model", "v1.2", "A-b_c", "_private", "9lives", "x" * 64]
)
def test_safe_names_are_accepted_unchanged(name: str) -> None:
    assert validate_name(name) == name


def is_safe_component(name: str, root: Path) -> bool:
    return (
        isinstance(name, str)
        and 1 <= len(name) <= MAX_NAME_LENGTH
        and name not in (".", "..")
        and not any(c in name for c in "/\\\x00\n\r")
        and Path(name).name == name
        and len(Path(name).parts) == 1
        and not Path(name).is_absolute()
        and os.path.normpath(name) == name
        and (root / name).resolve().parent == root.resolve()
    )


NAME_ALPHABET = st.sampled_from(list("ab_-./\\:~ \n\x00é") + ["..", "0"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(NAME_ALPHABET, max_size=70).map("".join)))
def test_every_accepted_name_is_a_safe_single_path_component(name: str) -> None:
    root = Path("/srv/store")
    try:
        accepted = validate_name(name)
    except InvalidNameError:
        return
    assert accepted == name
    assert is_safe_component(name, root)


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}", fullmatch=True).filter(
        lambda n: ".." not in n
    )
)
def test_every_documented_name_is_accepted(name: str) -> None:
    assert validate_name(name) == name


def test_pipelines_validate_their_names(tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError, match=r"Invalid pipeline name '\.\./escape'"):
        Pipeline("../escape", store=Store(tmp_path / "store"))


# -- the catalog --------------------------------------------------------------------------------------


def test_the_catalog_uses_wal_and_records_its_schema_version(store: Store) -> None:
    store.put({"a": 1})
    outside = sqlite3.connect(store.catalog_path)
    try:
        assert outside.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert outside.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {
            row[0] for row in outside.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        assert {"objects", "steps", "results", "runs"} <= tables
    finally:
        outside.close()
    assert store.query("PRAGMA busy_timeout")[0][0] >= 5000


def test_a_store_with_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "store").close()
    catalog = tmp_path / "store" / "catalog.sqlite"
    with contextlib.closing(sqlite3.connect(catalog)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    message = (
        rf"^The store at {re.escape(repr(str(catalog)))} has schema version {SCHEMA_VERSION + 1}, "
        rf"newer than this mlops_nb understands \({SCHEMA_VERSION}\)\. Upgrade mlops_nb, or set "
        r"MLOPS_NB_HOME to another folder\.$"
    )
    with pytest.raises(Exception, match=message) as caught:
        Store(tmp_path / "store")
    assert isinstance(caught.value, MlopsNbError)
    with contextlib.closing(sqlite3.connect(catalog)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)


def test_an_object_written_by_an_unknown_serializer_is_explained(store: Store) -> None:
    ref = store.put([1])
    with store.transaction() as db:
        db.execute("UPDATE objects SET serializer = 'zarr' WHERE sha256 = ?", (ref.sha256,))
    with pytest.raises(
        ValueError, match=r"Unknown serializer 'zarr': this store was written by a newer mlops_nb"
    ):
        store.get(ref.sha256)


def test_a_failed_transaction_commits_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as db:
        db.execute("INSERT INTO steps VALUES ('p', 's', '{}', 0)")
        raise RuntimeError("boom")
    assert store.query("SELECT COUNT(*) FROM steps") == [(0,)]


def test_the_default_home_follows_mlops_nb_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_NB_HOME", str(tmp_path / "home"))
    assert default_home() == tmp_path / "home"
    opened = Store()
    assert opened.root == tmp_path / "home"
    assert (tmp_path / "home" / "catalog.sqlite").exists()
    opened.close()
    monkeypatch.delenv("MLOPS_NB_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_home() == Path(".mlops_nb")
