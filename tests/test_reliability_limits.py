"""Resource limits: a full disk or a value too large for memory fails with a clear error and leaves
the store as it was."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from IPython.core.error import UsageError
from sklearn.preprocessing import StandardScaler

from mlops_nb import FeatureStore, FeatureView, MlopsNbError, Store, TransformRegistry
from mlops_nb.errors import DiskFullError, ValueTooLargeError
from mlops_nb.store import serializers

from .conftest import Notebook


class FullDisk:
    """The disk holding the store fills up: once ``room`` more bytes are in, writing to a file in
    the store (``os.write``) or flushing one to disk (``os.fsync``) fails with ENOSPC."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, root: Path, room: int = 0, call: str = "write"
    ) -> None:
        self.root, self.room = str(root.resolve()), room
        write, fsync = os.write, os.fsync

        def full_write(descriptor: int, data: Any) -> int:
            if call == "write" and self.holds(descriptor):
                if self.room <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                data = memoryview(data)[: self.room]  # what still fits goes in: a short write
                self.room -= len(data)
            return write(descriptor, data)

        def full_fsync(descriptor: int) -> None:
            if call == "fsync" and self.holds(descriptor):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            fsync(descriptor)

        monkeypatch.setattr(os, "write", full_write)
        monkeypatch.setattr(os, "fsync", full_fsync)

    def holds(self, descriptor: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{descriptor}").startswith(self.root)
        except OSError:
            return False


def full_message(
    root: Path, what: str, cause: str = r"\[Errno 28\] No space left on device"
) -> str:
    return (
        rf"^The disk holding the store {re.escape(repr(str(root)))} is full \({cause}\): "
        rf"{re.escape(what)} was not saved and the store is unchanged\. Free some space \(`mlops-nb "
        r"store gc` deletes objects nothing uses\) or set MLOPS_NB_HOME to a folder on a bigger "
        r"disk, then run it again\.$"
    )


def snapshot(store: Store) -> dict[str, Any]:
    """Every catalog row and every file of the store."""
    tables = [
        "objects",
        "steps",
        "results",
        "feature_views",
        "feature_parts",
        "online_features",
        "transforms",
    ]
    rows = {table: store.query(f"SELECT * FROM {table} ORDER BY 1, 2") for table in tables}  # noqa: S608
    rows = {
        t: [tuple(v for v in row if not isinstance(v, float)) for row in r] for t, r in rows.items()
    }
    return {**rows, "files": sorted(str(p) for p in store.objects_dir.rglob("*") if p.is_file())}


def assert_whole(store: Store) -> None:
    assert store.query("PRAGMA integrity_check") == [("ok",)]
    assert store.verify_all() == []
    assert not list(store.objects_dir.glob(".incoming-*")), "a temporary file was left behind"
    listed = {row[0] for row in store.query("SELECT sha256 FROM objects")}
    assert store.referenced() <= listed


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


# -- a full disk --------------------------------------------------------------------------------------------
VALUES: dict[str, Callable[[], Any]] = {
    "array-file": lambda: np.arange(50_000.0),
    "frame-file": lambda: pd.DataFrame({"a": np.arange(50_000.0)}),
    "pickle-file": lambda: tuple(range(30_000)),
    "small-inline": lambda: {"accuracy": 0.93},
}


@pytest.mark.parametrize("room", [0, 10], ids=["nothing-fits", "some-fits"])
@pytest.mark.parametrize("kind", VALUES)
def test_a_full_disk_while_storing_a_value_changes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch, kind: str, room: int
) -> None:
    store.put([1, 2, 3])
    before = snapshot(store)
    with monkeypatch.context() as patch:
        FullDisk(patch, store.root, room)
        with pytest.raises(
            DiskFullError, match=full_message(store.root, "output 'X' of step 'load'")
        ) as caught:
            store.put(VALUES[kind](), label="output 'X' of step 'load'")
    assert isinstance(caught.value, OSError) and isinstance(caught.value, MlopsNbError)
    assert snapshot(store) == before
    assert_whole(store)
    ref = store.put(VALUES[kind]())  # with room again, the same write works
    assert repr(store.get(ref.sha256)) == repr(VALUES[kind]())


def test_a_disk_full_at_fsync_changes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(store)
    with monkeypatch.context() as patch:
        FullDisk(patch, store.root, call="fsync")
        with pytest.raises(DiskFullError, match=full_message(store.root, "value")):
            store.put(np.arange(50_000.0))
    assert snapshot(store) == before
    assert_whole(store)


def test_a_full_catalog_changes_nothing_and_the_store_keeps_working(store: Store) -> None:
    store.put([1, 2, 3])
    before = snapshot(store)
    pages = store.query("PRAGMA page_count")[0][0]
    store.query(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    with pytest.raises(
        DiskFullError, match=full_message(store.root, "value", "database or disk is full")
    ):
        store.put(np.arange(7_000.0))  # 56 kB: stored inside the catalog
    assert snapshot(store) == before
    store.query("PRAGMA max_page_count = 1000000")
    ref = store.put(np.arange(7_000.0))  # no transaction was left open: the store is not stuck
    np.testing.assert_array_equal(store.get(ref.sha256), np.arange(7_000.0))
    assert_whole(store)


def test_a_full_disk_during_an_ingest_changes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    features = FeatureStore(store)
    features.apply(FeatureView("stats", entities=["driver_id"], timestamp="ts"))
    rows = pd.DataFrame({"driver_id": [1, 2], "ts": ["2024-01-01"] * 2, "rate": [0.5, 0.7]})
    before = snapshot(store)
    with monkeypatch.context() as patch:
        FullDisk(patch, store.root)
        with pytest.raises(DiskFullError, match=full_message(store.root, "part 1 of view 'stats'")):
            features.ingest("stats", rows)
    assert snapshot(store) == before  # the schema inferred from the data was not saved either
    assert features.get_view("stats").schema is None
    assert_whole(store)
    assert features.ingest("stats", rows).part == 1


def test_a_full_disk_during_a_transform_save_saves_no_version(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = TransformRegistry(store)
    X = pd.DataFrame({"age": [20.0, 30.0, 40.0]})
    before = snapshot(store)
    with monkeypatch.context() as patch:
        FullDisk(patch, store.root)
        with pytest.raises(DiskFullError, match=full_message(store.root, "transform 'scaler'")):
            registry.save("scaler", StandardScaler().fit(X), X)
    assert snapshot(store) == before
    assert_whole(store)
    assert registry.save("scaler", StandardScaler().fit(X), X) == 1


def test_a_full_disk_during_a_step_is_a_usage_error_and_the_step_failed(
    nb: Notebook, store_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = "%%step load\nimport numpy as np\nX = np.arange(50_000.0)"
    nb.ok("%%step first\nsmall = 1")
    with monkeypatch.context() as patch:
        FullDisk(patch, store_home)
        error = nb.error(cell)
    assert isinstance(error, UsageError)
    assert re.search(full_message(store_home, "output 'X' of step 'load'"), str(error))
    store = nb.pipeline.store
    assert nb.pipeline.states()["load"]["state"] == "failed"
    assert store.query("SELECT COUNT(*) FROM results WHERE step = 'load'") == [(0,)]
    assert_whole(store)
    nb.ok(cell)
    assert nb.pipeline.states()["load"]["state"] == "up to date"


# -- a value too large for memory ---------------------------------------------------------------------------
def out_of_memory(*args: Any, **kwargs: Any) -> Any:
    raise MemoryError


def too_large_message(what: str, kind: str) -> str:
    return (
        rf"^Cannot store {re.escape(what)} \(a {kind}\): there is not enough memory to write it, so "
        r"nothing was stored\. Free memory \(del large values you no longer need\), or keep this "
        r"value out of the store: bind it to a _private name, or leave it out of the step's --outputs\.$"
    )


@pytest.mark.parametrize(
    "where, make, kind",
    [
        (
            lambda p: p.setattr(serializers.NumpySerializer, "dump", out_of_memory),
            VALUES["array-file"],
            "ndarray",
        ),
        (
            lambda p: p.setattr(pd.DataFrame, "to_parquet", out_of_memory),
            VALUES["frame-file"],
            "DataFrame",
        ),
        (
            lambda p: p.setattr(serializers.PickleSerializer, "dump", out_of_memory),
            VALUES["pickle-file"],
            "tuple",
        ),
        (
            lambda p: p.setattr("mlops_nb.store.content_hash", out_of_memory),
            VALUES["small-inline"],
            "dict",
        ),
    ],
    ids=["npy", "parquet", "pickle", "hashing"],
)
def test_a_value_too_large_for_memory_stores_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch, where: Callable[[pytest.MonkeyPatch], None],
    make: Callable[[], Any], kind: str,
) -> None:  # fmt: skip
    before = snapshot(store)
    with monkeypatch.context() as patch:
        where(patch)
        with pytest.raises(
            ValueTooLargeError, match=too_large_message("output 'X' of step 'load'", kind)
        ) as caught:
            store.put(make(), label="output 'X' of step 'load'")
    assert isinstance(caught.value, MemoryError)
    assert snapshot(store) == before
    assert_whole(store)


def test_a_step_output_too_large_for_memory_is_a_usage_error(
    nb: Notebook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serializers.NumpySerializer, "dump", out_of_memory)
    error = nb.error("%%step load\nimport numpy as np\nX = np.arange(50_000.0)")
    assert isinstance(error, UsageError)
    assert re.search(too_large_message("output 'X' of step 'load'", "ndarray"), str(error))
    assert nb.pipeline.states()["load"]["state"] == "failed"
    assert_whole(nb.pipeline.store)


def test_an_ingest_or_save_too_large_for_memory_changes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    features, registry = FeatureStore(store), TransformRegistry(store)
    features.apply(FeatureView("stats", entities=["driver_id"], timestamp="ts"))
    before = snapshot(store)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", out_of_memory)
    with pytest.raises(
        ValueTooLargeError, match=too_large_message("part 1 of view 'stats'", "DataFrame")
    ):
        features.ingest(
            "stats", pd.DataFrame({"driver_id": [1], "ts": ["2024-01-01"], "rate": [0.5]})
        )
    monkeypatch.setattr(skops.io, "dumps", out_of_memory)
    with pytest.raises(
        ValueTooLargeError,
        match=r"^Cannot save transform 'scaler' \(StandardScaler\): there is not enough memory to write "
        r"it, so nothing was saved\. Free memory",
    ):
        registry.save("scaler", StandardScaler().fit([[1.0], [2.0]]))
    assert snapshot(store) == before
    assert_whole(store)
