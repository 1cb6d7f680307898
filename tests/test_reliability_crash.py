"""Crash safety: a writer killed with SIGKILL at random points never loses or half-writes data."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import random
import signal
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from mlops_nb import FeatureStore, FeatureView, Pipeline, Store, TransformRegistry

VIEW, TRANSFORM, PIPELINE = "readings", "scaler", "crash"
# Where a writer may kill itself: in the middle of an object file, before its fsync, before and
# after the rename that publishes it, and just before and after a catalog commit.
POINTS = ("write", "fsync", "rename", "renamed", "commit", "committed")
KILLS_PER_STORE = 25  # a fresh store now and then keeps each check quick
# One output per format: JSON, .npy, Parquet and pickle.
STEP = """
import numpy as np
import pandas as pd
doubled = [v * 2 for v in data]
array = np.asarray(doubled)
frame = pd.DataFrame({"v": doubled})
pairs = tuple(zip(doubled, data))
"""


# -- what a writer writes: all of it can be recomputed from (seed, i) ---------------------------------
def step_input(seed: int, i: int) -> list[int]:
    """Small lists are stored inside the catalog, long ones (over 64 kB of JSON) in files."""
    rng = np.random.default_rng([seed, i])
    return rng.integers(0, 10**6, int(rng.choice([5, 200, 15_000]))).tolist()


def batch(seed: int, i: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, i])
    rows = int(rng.integers(1, 300))
    return pd.DataFrame(
        {
            "sensor": rng.integers(0, 40, rows),
            "ts": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 10**7, rows), unit="s"),
            "value": rng.random(rows),
            "batch": np.full(rows, seed * 10_000 + i),
        }
    )


def fit_data(seed: int, i: int) -> np.ndarray:
    return np.random.default_rng([seed, i]).normal(seed, i + 1, size=(20, 3))


def write_until_killed(root: str, log: str, seed: int, point: str | None, nth: int) -> None:
    """Step results, feature ingests and transform saves, in turn, logging each one committed."""
    with open(log, "ab", buffering=0) as done:  # one unbuffered write per line: never half a line
        try:
            if point is not None:
                _kill_myself_at(point, nth)
            store = Store(root)
            features, registry = FeatureStore(store), TransformRegistry(store)
            namespace: dict[str, Any] = {}
            pipeline = Pipeline(PIPELINE, store, namespace)
            pipeline.define_cell("double", STEP)
            features.apply(FeatureView(VIEW, entities=["sensor"], timestamp="ts"))
            for i in itertools.count(seed % 3):  # each writer starts with another kind of write
                if i % 3 == 0:
                    namespace["data"] = step_input(seed, i)
                    pipeline.run_step("double")
                    done.write(f"step {seed} {i}\n".encode())
                elif i % 3 == 1:
                    features.ingest(VIEW, batch(seed, i))
                    done.write(f"ingest {seed} {i}\n".encode())
                else:
                    X = fit_data(seed, i)
                    version = registry.save(
                        TRANSFORM, StandardScaler().fit(X), X, source=f"{seed} {i}"
                    )
                    done.write(f"transform {seed} {i} {version}\n".encode())
        except BaseException:
            done.write(f"error {traceback.format_exc()!r}\n".encode())
            raise


def _kill_myself_at(point: str, nth: int) -> None:
    """SIGKILL this process the nth time it reaches ``point``."""
    seen = itertools.count(1)

    def due(name: str) -> bool:
        return name == point and next(seen) == nth

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    write, fsync, replace, transaction = os.write, os.fsync, os.replace, Store.transaction

    def write_then_die(descriptor: int, data: Any) -> int:
        if due("write"):
            write(descriptor, memoryview(data)[: len(data) // 2])  # half of it reaches the file
            die()
        return write(descriptor, data)

    def fsync_then_die(descriptor: int) -> None:
        if due("fsync"):
            die()
        fsync(descriptor)

    def replace_then_die(source: Any, target: Any) -> None:
        if due("rename"):
            die()
        replace(source, target)
        if due("renamed"):
            die()

    @contextlib.contextmanager
    def transaction_then_die(self: Store, what: str = "the change") -> Iterator[Any]:
        with transaction(self, what) as db:
            yield db
            if self._depth == 1 and due("commit"):
                die()
        if self._depth == 0 and due("committed"):
            die()

    os.write, os.fsync, os.replace = write_then_die, fsync_then_die, replace_then_die  # type: ignore[assignment]
    Store.transaction = transaction_then_die  # type: ignore[method-assign,assignment]


# -- checking the store after each kill -----------------------------------------------------------------
@dataclass
class Seen:
    """What the checks have seen so far in one store."""

    log_lines: int = 0
    logged: Counter[str] = field(default_factory=Counter)
    steps: set[tuple[int, int]] = field(default_factory=set)
    ingests: set[int] = field(default_factory=set)  # batch ids
    transforms: dict[tuple[int, int], int] = field(default_factory=dict)
    parts: dict[int, int] = field(default_factory=dict)  # part -> batch id
    versions: dict[int, tuple[int, int]] = field(
        default_factory=dict
    )  # transform version -> writer


def check_after_kill(root: Path, log: Path, seen: Seen) -> None:
    """The store opens, `mlops-nb store verify` passes, every committed item loads and is whole."""
    from mlops_nb.cli import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        assert main(["--home", str(root), "store", "verify"]) == 0, output.getvalue()
    assert "objects verified" in output.getvalue()
    lines = log.read_text().splitlines() if log.exists() else []
    for line in lines[seen.log_lines :]:
        assert not line.startswith("error"), f"the writer failed: {line}"
        kind, *values = line.split()
        seen.logged[kind] += 1
        seed, i = int(values[0]), int(values[1])
        if kind == "step":
            seen.steps.add((seed, i))
        elif kind == "ingest":
            seen.ingests.add(seed * 10_000 + i)
        else:
            seen.transforms[seed, i] = int(values[2])
    seen.log_lines = len(lines)

    store = Store(root)
    try:
        assert store.query("PRAGMA integrity_check") == [("ok",)]
        listed = {row[0] for row in store.query("SELECT sha256 FROM objects")}
        assert store.referenced() <= listed, "a committed row points to an object that is not there"
        check_parts(store, seen)
        check_transforms(store, seen)
        for seed, i in sorted(seen.steps):  # restored from the cache, never run again
            data = step_input(seed, i)
            namespace: dict[str, Any] = {"data": data}
            report = Pipeline(PIPELINE, store, namespace).run_step("double")
            assert report.action == "cached" and len(report.restored) == 4
            assert namespace["doubled"] == [v * 2 for v in data]
            assert (
                namespace["array"].tolist()
                == namespace["frame"]["v"].tolist()
                == namespace["doubled"]
            )
            assert namespace["pairs"] == tuple(zip(namespace["doubled"], data))
        seen.steps.clear()  # checked once: they stay in the catalog
    finally:
        store.close()


def check_parts(store: Store, seen: Seen) -> None:
    """Parts are numbered 1, 2, 3...; each holds one whole batch; each logged batch is there once."""
    parts = store.query(
        "SELECT part, sha256, rows FROM feature_parts WHERE view = ? ORDER BY part", (VIEW,)
    )
    assert [part for part, _, _ in parts] == list(range(1, len(parts) + 1))
    for part, sha256, rows in parts:
        if part in seen.parts:
            continue
        frame = store.get(sha256, expect="parquet")
        (batch_id,) = set(frame["batch"])
        expected = batch(*divmod(int(batch_id), 10_000))
        assert len(frame) == rows == len(expected)
        np.testing.assert_array_equal(frame["value"], expected["value"])
        assert batch_id not in seen.parts.values(), "one ingest was stored twice"
        seen.parts[part] = int(batch_id)
    assert seen.ingests <= set(seen.parts.values()), "a committed ingest was lost"
    online = store.query("SELECT sort_key FROM online_features WHERE view = ?", (VIEW,))
    assert all(int(key[-8:], 16) <= len(parts) for (key,) in online), "online row of no part"


def check_transforms(store: Store, seen: Seen) -> None:
    """Versions are 1, 2, 3...; each loads and is the scaler its writer fitted."""
    registry = TransformRegistry(store)
    versions = [
        row[0]
        for row in store.query(
            "SELECT version FROM transforms WHERE name = ? ORDER BY 1", (TRANSFORM,)
        )
    ]
    assert versions == list(range(1, len(versions) + 1))
    for version in versions:
        if version in seen.versions:
            continue
        seed, i = map(int, registry.info(TRANSFORM, version)["source"]["text"].split())
        scaler = registry.load(TRANSFORM, version)
        np.testing.assert_allclose(scaler.mean_, fit_data(seed, i).mean(axis=0))
        seen.versions[version] = (seed, i)
    for writer, version in seen.transforms.items():
        assert seen.versions[version] == writer, "a committed transform version was lost"


def check_everything(root: Path, seen: Seen) -> None:
    """At the end: the feature store answers like a brute-force reading of every batch, and garbage
    collection removes only what nothing uses (files of killed writers included)."""
    store = Store(root)
    try:
        features = FeatureStore(store)
        if seen.parts:  # some ingest committed before the kills (not a given, the kills are random)
            check_features(features, seen)
        store.garbage_collect(older_than=-1)
        files = {p.name.split(".")[0] for p in store.objects_dir.glob("??/*")}
        assert files == {
            row[0] for row in store.query("SELECT sha256 FROM objects WHERE inline IS NULL")
        }
        assert store.verify_all() == []
        if seen.parts:  # and still, after garbage collection
            check_features(features, seen)
    finally:
        store.close()


def check_features(features: FeatureStore, seen: Seen) -> None:
    """The feature store answers like a brute-force reading of every committed batch."""
    # The reference: every batch in part order; on equal event times the later one wins.
    data = pd.concat([batch(*divmod(b, 10_000)) for _, b in sorted(seen.parts.items())])
    data = data.sort_values("ts", kind="stable")
    read = features.read(VIEW)
    assert sorted(read["batch"].tolist()) == sorted(data["batch"].tolist())
    sensors = sorted(set(data["sensor"].tolist()))
    online = features.get_online_features(
        [{"sensor": s} for s in sensors], [f"{VIEW}:value"], now="2030-01-01"
    )
    assert online["value"].tolist() == data.groupby("sensor")["value"].last()[sensors].tolist()
    moment = pd.Timestamp("2024-03-01")
    wanted = pd.DataFrame({"sensor": sensors, "event_timestamp": moment})
    before = data[data["ts"] <= moment].groupby("sensor")["value"].last()
    historical = features.get_historical_features(wanted, [f"{VIEW}:value"])["value"]
    assert [None if pd.isna(v) else v for v in historical] == [before.get(s) for s in sensors]


def test_a_writer_killed_at_random_points_leaves_a_consistent_store(
    tmp_path: Path, forkserver: ForkServerContext, heavy: bool, figures: dict[str, str]
) -> None:
    kills = 2000 if heavy else 200
    rng = random.Random(20240611)
    counts = {"timer": 0, **{point: 0 for point in POINTS}}
    committed: Counter[str] = Counter()
    started = time.perf_counter()
    root, log, seen = tmp_path / "store0", tmp_path / "log0", Seen()
    for number in range(kills):
        if number and number % KILLS_PER_STORE == 0:
            check_everything(root, seen)
            committed += seen.logged
            root, log, seen = tmp_path / f"store{number}", tmp_path / f"log{number}", Seen()
        point = rng.choice(POINTS) if rng.random() < 0.5 else None
        writer = forkserver.Process(
            target=write_until_killed, args=(str(root), str(log), number, point, rng.randint(1, 3))
        )
        writer.start()
        writer.join(2.0 if point else rng.uniform(0.0, 0.05))  # the writer kills itself, or we do
        if writer.exitcode is None:
            writer.kill()
            writer.join()
            counts["timer"] += 1
        else:
            counts[point or "timer"] += 1
        assert writer.exitcode == -signal.SIGKILL, log.read_text() if log.exists() else ""
        check_after_kill(root, log, seen)
    check_everything(root, seen)
    committed += seen.logged
    seconds = time.perf_counter() - started
    assert all(counts[point] for point in POINTS), counts  # every kind of point was hit
    # The writers got work done (how much depends on the machine), so the checks checked something.
    assert min(committed[k] for k in ("step", "ingest", "transform")) >= kills // 40, committed
    figures["crash: SIGKILLs"] = (
        f"{kills} ({', '.join(f'{n} at {p}' for p, n in counts.items())}); committed and checked: "
        f"{committed['step']} step results, {committed['ingest']} ingests, "
        f"{committed['transform']} transform versions; {seconds:.0f} s"
    )
