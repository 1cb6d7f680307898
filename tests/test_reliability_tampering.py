"""Tampering: a modified object, a modified or untrusted skops file, a pickle swapped in, a catalog
row pointing outside the store: each is refused with a clear error and never executed."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
import xxhash
from IPython.core.error import UsageError
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mlops_nb import (
    CorruptObjectError,
    FeatureStore,
    FeatureView,
    Store,
    TransformError,
    TransformRegistry,
    UntrustedTypesError,
)
from mlops_nb.cli import main

from .conftest import Notebook

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / f"mlops-nb-tampering-{os.getpid()}"


def leave_a_mark(X: Any) -> Any:
    """What an attacker's code would do when loaded: something visible."""
    MARKER.touch()
    return X


class Payload:
    """A pickle that runs code when it is loaded."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (MARKER,))


@pytest.fixture(autouse=True)
def no_mark() -> Iterator[None]:
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "tampered content was executed"


def verify_command(root: Path) -> tuple[int, str]:
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = main(["--home", str(root), "store", "verify"])
    return code, output.getvalue()


def file_of(store: Store, sha256: str) -> Path:
    (serializer,) = store.query("SELECT serializer FROM objects WHERE sha256 = ?", (sha256,))[0]
    suffix = {
        "npy": ".npy",
        "pickle": ".pkl",
        "parquet": ".parquet",
        "bytes": ".bin",
        "json": ".json",
    }
    return store.object_path(sha256, suffix[serializer])


def swap_in(store: Store, old: str, data: bytes, serializer: str, suffix: str) -> str:
    """Replace an object by ``data`` *and* fix every checksum in the catalog, as someone who can
    write the whole store folder could: the checksum alone can no longer protect the reader."""
    new = hashlib.sha256(data).hexdigest()
    path = store.objects_dir / new[:2] / f"{new}{suffix}"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO objects SELECT ?, value_hash, ?, ?, NULL, '[]', created, ? FROM objects "
            "WHERE sha256 = ?",
            (new, serializer, len(data), xxhash.xxh3_128_hexdigest(data), old),
        )
        for table in ("transforms", "feature_parts"):
            db.execute(f"UPDATE {table} SET sha256 = ? WHERE sha256 = ?", (new, old))  # noqa: S608
    return new


# -- step outputs -----------------------------------------------------------------------------------------
def test_a_modified_step_output_is_refused_then_repaired_by_a_forced_run(
    nb: Notebook, store_home: Path
) -> None:
    cell = "%%step load\nimport numpy as np\nX = np.arange(20_000) * 1.5"
    nb.ok(cell)
    store = nb.pipeline.store
    (sha256,) = [
        row[0] for row in store.query("SELECT sha256 FROM objects WHERE serializer = 'npy'")
    ]
    path = file_of(store, sha256)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0x01  # one bit of one number
    path.write_bytes(bytes(data))

    code, output = verify_command(store_home)
    assert code == 1
    assert re.search(
        rf"The file {re.escape(repr(str(path)))} holding object {sha256[:12]} is corrupt", output
    )
    nb.ok("del X")
    error = nb.error(cell)  # restoring it would load the modified numbers
    assert isinstance(error, UsageError)
    assert re.search(
        rf"^The file {re.escape(repr(str(path)))} holding output 'X' of step 'load' is corrupt or was "
        r"modified: its sha256 does not match the catalog, so it was not loaded\. Write a good copy: "
        r"re-run the step that produces it \(with --force\)",
        str(error),
    )
    nb.ok(cell.replace("load", "load --force", 1))  # the advice works: a good copy is written
    assert verify_command(store_home)[0] == 0
    nb.ok("del X")
    nb.ok(cell)
    np.testing.assert_array_equal(nb.ns["X"], np.arange(20_000) * 1.5)


def test_a_pickle_swapped_in_for_a_step_output_is_never_unpickled(nb: Notebook) -> None:
    cell = "%%step load\nrows = tuple(range(30_000))"
    nb.ok(cell)
    store = nb.pipeline.store
    (sha256,) = [
        row[0] for row in store.query("SELECT sha256 FROM objects WHERE serializer = 'pickle'")
    ]
    file_of(store, sha256).write_bytes(pickle.dumps(Payload()))
    nb.ok("del rows")
    error = nb.error(cell)
    assert isinstance(error, UsageError)
    assert "holding output 'rows' of step 'load' is corrupt or was modified" in str(error)


# -- transforms -------------------------------------------------------------------------------------------
@pytest.fixture
def registry(tmp_path: Path) -> TransformRegistry:
    registry = TransformRegistry(tmp_path / "store")
    X = pd.DataFrame({"age": [20.0, 30.0, 40.0]})
    assert registry.save("scaler", StandardScaler().fit(X), X) == 1
    return registry


def transform_sha(registry: TransformRegistry) -> str:
    return str(registry.info("scaler")["sha256"])


def test_a_modified_skops_file_is_refused(registry: TransformRegistry) -> None:
    path = file_of(registry.store, transform_sha(registry))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(
        CorruptObjectError,
        match=rf"^The file {re.escape(repr(str(path)))} holding transform 'scaler' v1 is corrupt or was modified",
    ):
        registry.load("scaler")


def test_an_untrusted_type_in_a_rechecksummed_skops_file_is_refused(
    registry: TransformRegistry,
) -> None:
    hostile = skops.io.dumps(FunctionTransformer(func=leave_a_mark).fit([[1.0]]))
    swap_in(registry.store, transform_sha(registry), hostile, "bytes", ".bin")
    with pytest.raises(
        UntrustedTypesError,
        match=r"^Transform 'scaler' v1 contains types outside scikit-learn, numpy, scipy and mlops_nb: "
        r"\['tests\.test_reliability_tampering\.leave_a_mark'\]\. Loading runs their code, so it was "
        r"refused\. If you trust where this file came from, load it with trusted=",
    ):
        registry.load("scaler")
    assert registry.load(
        "scaler", trusted=["tests.test_reliability_tampering.leave_a_mark"]
    ).transform([[2.0]]) == [[2.0]]
    MARKER.unlink()  # trusted on purpose: running it is what trusting means


@pytest.mark.parametrize("recorded_as", ["bytes", "pickle"])
def test_a_pickle_swapped_in_for_a_skops_file_is_never_unpickled(
    registry: TransformRegistry, recorded_as: str
) -> None:
    swap_in(registry.store, transform_sha(registry), pickle.dumps(Payload()), recorded_as, ".bin")
    if recorded_as == "bytes":
        message = r"^Transform 'scaler' v1 is not a readable skops file \(BadZipFile: File is not a zip file\)"
        with pytest.raises(TransformError, match=message):
            registry.load("scaler")
    else:
        message = r"records transform 'scaler' v1 \(object [0-9a-f]{12}\.\.\.\) as 'pickle' data, but it must be 'bytes'"
        with pytest.raises(CorruptObjectError, match=message):
            registry.load("scaler")


# -- feature parts ----------------------------------------------------------------------------------------
@pytest.fixture
def features(tmp_path: Path) -> FeatureStore:
    features = FeatureStore(tmp_path / "store")
    features.apply(FeatureView("stats", entities=["driver_id"], timestamp="ts"))
    features.ingest(
        "stats", pd.DataFrame({"driver_id": [1, 2], "ts": ["2024-01-01"] * 2, "rate": [0.5, 0.7]})
    )
    return features


def part_sha(features: FeatureStore) -> str:
    return str(features.store.query("SELECT sha256 FROM feature_parts WHERE part = 1")[0][0])


def test_a_modified_part_is_refused_by_the_next_ingest(
    features: FeatureStore, tmp_path: Path
) -> None:
    path = file_of(features.store, part_sha(features))
    frame = pd.read_parquet(path)
    frame.loc[0, "rate"] = 99.0
    frame.to_parquet(path)  # still a valid Parquet file
    more = pd.DataFrame({"driver_id": [1], "ts": ["2024-01-02"], "rate": [0.9]})
    with pytest.raises(
        CorruptObjectError,
        match=r"holding part 1 of view 'stats' is missing, corrupt or was modified",
    ):
        FeatureStore(tmp_path / "store").ingest("stats", more)


def test_a_pickle_swapped_in_for_a_part_is_never_unpickled(
    features: FeatureStore, tmp_path: Path
) -> None:
    swap_in(features.store, part_sha(features), pickle.dumps(Payload()), "pickle", ".pkl")
    fresh = FeatureStore(tmp_path / "store")
    message = r"records part 1 of view 'stats' \(object [0-9a-f]{12}\.\.\.\) as 'pickle' data, but it must be 'parquet'"
    with pytest.raises(CorruptObjectError, match=message):
        fresh.read("stats")
    wanted = pd.DataFrame({"driver_id": [1], "event_timestamp": ["2024-01-03"]})
    with pytest.raises(CorruptObjectError, match=message):
        fresh.get_historical_features(wanted, ["stats:rate"])


# -- catalog rows pointing outside the store --------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../../outside", "{tmp}/outside", "ab/../../../../outside"])
def test_a_catalog_row_pointing_outside_the_store_is_refused(tmp_path: Path, name: str) -> None:
    root = tmp_path / "a" / "b" / "store"
    store = Store(root)
    sha256 = name.format(tmp=tmp_path)
    outside = (store.objects_dir / sha256[:2] / f"{sha256}.pkl").resolve()  # where it would lead
    assert tmp_path in outside.parents and root not in outside.parents
    outside.write_bytes(pickle.dumps(Payload()))
    with store.transaction() as db:
        db.execute(
            "INSERT INTO objects VALUES (?, 'h', 'pickle', 1, NULL, '[]', 0, NULL)", (sha256,)
        )
    message = (
        rf"The catalog of the store at {re.escape(repr(str(root)))} names an object "
        rf"{re.escape(repr(sha256))}, which is not a sha256: the catalog was modified\. No file outside "
        rf"{re.escape(repr(str(store.objects_dir)))} is read or deleted\. Restore catalog\.sqlite from a "
        r"backup, or start a new store \(set MLOPS_NB_HOME to an empty folder\)\."
    )
    with pytest.raises(CorruptObjectError, match=f"^{message}$"):
        store.get(sha256)
    (problem,) = store.verify_all()
    assert re.fullmatch(message, problem)
    assert verify_command(root)[0] == 1
    assert store.garbage_collect(older_than=-1) == (1, 1)  # the row goes, the file outside stays
    assert outside.exists()
    assert store.query("SELECT COUNT(*) FROM objects") == [(0,)]


def test_transforms_and_parts_pointing_outside_the_store_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    registry = TransformRegistry(root)
    X = pd.DataFrame({"age": [20.0, 30.0]})
    registry.save("scaler", StandardScaler().fit(X), X)
    features = FeatureStore(registry.store)
    features.apply(FeatureView("stats", entities=["driver_id"], timestamp="ts"))
    features.ingest("stats", pd.DataFrame({"driver_id": [1], "ts": ["2024-01-01"], "rate": [0.5]}))
    with registry.store.transaction() as db:
        for table in ("transforms", "feature_parts", "objects"):
            db.execute(f"UPDATE {table} SET sha256 = '../../../outside' || sha256")  # noqa: S608
    with pytest.raises(
        CorruptObjectError, match=r"which is not a sha256: the catalog was modified"
    ):
        registry.load("scaler")
    with pytest.raises(
        CorruptObjectError, match=r"which is not a sha256: the catalog was modified"
    ):
        FeatureStore(root).read("stats")
    wanted = pd.DataFrame({"driver_id": [1], "event_timestamp": ["2024-01-03"]})
    with pytest.raises(
        CorruptObjectError, match=r"which is not a sha256: the catalog was modified"
    ):
        FeatureStore(root).get_historical_features(wanted, ["stats:rate"])
