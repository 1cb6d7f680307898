"""Concurrency: kernels (processes) and threads writing one store at once lose nothing, duplicate
nothing and never see 'database is locked'."""

from __future__ import annotations

import os
import threading
import time
import traceback
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from mlops_nb import FeatureStore, FeatureView, Pipeline, Store, TransformRegistry
from mlops_nb.hashing import content_hash

VIEW, TRANSFORM = "readings", "scaler"


def batch(writer: int, i: int) -> pd.DataFrame:
    """Every writer's batches share sensors and event times: ties between kernels are the point."""
    rng = np.random.default_rng([writer, i])
    rows = int(rng.integers(1, 50))
    return pd.DataFrame(
        {
            "sensor": rng.integers(0, 10, rows),
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 20, rows), unit="h"),
            "value": rng.random(rows),
            "batch": np.full(rows, writer * 1000 + i),
        }
    )


def fit_data(writer: int, i: int) -> np.ndarray:
    return np.random.default_rng([writer, i]).normal(writer, i + 1, size=(20, 2))


def write_rounds(store: Store, writer: int, rounds: int, steps: bool) -> list[str]:
    """Ingests, transform saves, shared values and (in a process of its own) steps; one log line each."""
    log = []
    features, registry = FeatureStore(store), TransformRegistry(store)
    features.apply(FeatureView(VIEW, entities=["sensor"], timestamp="ts"))
    own: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    if steps:  # a step's output in a pipeline of its own, and one step every writer runs too
        mine = Pipeline(f"writer{writer}", store, own)
        mine.define_cell("double", "doubled = [v * 2 for v in data]")
        everyone = Pipeline("shared", store, shared)
        everyone.define_cell("total", "total = sum(data)")
    for i in range(rounds):
        if steps:
            own["data"] = [writer, i]
            log.append(f"step {writer} {i} {mine.run_step('double').action}")
            shared["data"] = list(range(i))
            everyone.run_step("total")
        report = features.ingest(VIEW, batch(writer, i))
        log.append(f"ingest {writer} {i} {report.part}")
        X = fit_data(writer, i)
        version = registry.save(TRANSFORM, StandardScaler().fit(X), X, source=f"{writer} {i}")
        log.append(f"transform {writer} {i} {version}")
        store.put(["shared", i])  # every writer stores this same value at about the same time
    return log


def kernel(root: str, log: str, writer: int, rounds: int, go: str) -> None:
    """One kernel: waits for the others, then opens the (maybe not yet created) store and writes."""
    with open(log, "w") as output:
        try:
            while not Path(go).exists():
                time.sleep(0.001)
            lines = write_rounds(Store(root), writer, rounds, steps=True)
            output.write("\n".join([*lines, "done"]) + "\n")
        except BaseException:
            output.write(f"error {traceback.format_exc()}")
            raise


def check_store(store: Store, writers: list[int], rounds: int, logs: list[str]) -> None:
    """Nothing lost, nothing twice, every version and part numbered 1..n, online and offline agree."""
    assert store.query("PRAGMA integrity_check") == [("ok",)]
    assert store.verify_all() == []
    features, registry = FeatureStore(store), TransformRegistry(store)
    expected = len(writers) * rounds
    parts = store.query(
        "SELECT part, sha256 FROM feature_parts WHERE view = ? ORDER BY part", (VIEW,)
    )
    assert [part for part, _ in parts] == list(range(1, expected + 1)), "lost or duplicate parts"
    batches = {}
    for part, sha256 in parts:
        (batch_id,) = set(store.get(sha256, expect="parquet")["batch"])
        batches[part] = int(batch_id)
    assert sorted(batches.values()) == sorted(w * 1000 + i for w in writers for i in range(rounds))
    versions = registry.versions(TRANSFORM)["version"].tolist()
    assert versions == list(range(1, expected + 1)), "lost or duplicate transform versions"
    for line in logs:
        kind, writer, i, value = line.split()
        if kind == "ingest":
            assert batches[int(value)] == int(writer) * 1000 + int(i)
        elif kind == "transform":
            assert registry.info(TRANSFORM, int(value))["source"]["text"] == f"{writer} {i}"
            scaler = registry.load(TRANSFORM, int(value))
            np.testing.assert_allclose(scaler.mean_, fit_data(int(writer), int(i)).mean(axis=0))
    for number in range(rounds):
        assert store.find(content_hash(["shared", number])) is not None
    # The reference: every batch in ingestion (part) order; on equal event times the later wins.
    data = pd.concat([batch(*divmod(batches[p], 1000)) for p, _ in parts], ignore_index=True)
    data = data.sort_values("ts", kind="stable")
    sensors = sorted(data["sensor"].unique().tolist())
    online = features.get_online_features(
        [{"sensor": s} for s in sensors], [f"{VIEW}:value"], now="2024-01-02"
    )
    assert online["value"].tolist() == data.groupby("sensor")["value"].last().loc[sensors].tolist()
    moment = pd.Timestamp("2024-01-01 10:00")
    wanted = pd.DataFrame({"sensor": sensors, "event_timestamp": moment})
    historical = features.get_historical_features(wanted, [f"{VIEW}:value"])
    before = data[data["ts"] <= moment].groupby("sensor")["value"].last()
    got = [None if pd.isna(value) else value for value in historical["value"]]
    assert got == [before.get(s) for s in sensors]


@pytest.mark.parametrize("processes", [2, 4])
def test_kernels_writing_one_store_at_once_lose_nothing(
    tmp_path: Path,
    forkserver: ForkServerContext,
    heavy: bool,
    figures: dict[str, str],
    processes: int,
) -> None:
    processes, rounds = (processes * 2, 40) if heavy else (processes, 48 // processes)
    root, go = tmp_path / "store", tmp_path / "go"
    writers = list(range(1, processes + 1))
    logs = [tmp_path / f"writer{w}.log" for w in writers]
    kernels = [
        forkserver.Process(target=kernel, args=(str(root), str(log), w, rounds, str(go)))
        for w, log in zip(writers, logs)
    ]
    for process in kernels:
        process.start()
    started = time.perf_counter()
    go.touch()  # all of them open the fresh store and write at the same moment
    for process in kernels:
        process.join(120)
    seconds = time.perf_counter() - started
    lines = []
    for process, log in zip(kernels, logs):
        text = log.read_text()
        assert process.exitcode == 0 and text.endswith("done\n"), text
        assert "locked" not in text
        lines += text.splitlines()[:-1]

    store = Store(root)
    try:
        check_store(store, writers, rounds, [line for line in lines if not line.startswith("step")])
        for w in writers:  # each kernel's own steps: every result there, restored, not run again
            assert store.query(
                "SELECT COUNT(*) FROM results WHERE pipeline = ?", (f"writer{w}",)
            ) == [(rounds,)]
            namespace: dict[str, Any] = {}
            pipeline = Pipeline(f"writer{w}", store, namespace)
            for i in range(rounds):
                namespace["data"] = [w, i]
                assert pipeline.run_step("double").action == "cached"
                assert namespace["doubled"] == [2 * w, 2 * i]
        assert store.query("SELECT COUNT(*) FROM results WHERE pipeline = 'shared'") == [(rounds,)]
    finally:
        store.close()
    figures[f"concurrency: {processes} kernels"] = (
        f"{rounds} rounds each (step, shared step, ingest into one view, transform save, shared "
        f"value): {processes * rounds} parts and versions, none lost or duplicated; {seconds:.1f} s"
    )


def test_threads_sharing_one_store_lose_nothing(
    tmp_path: Path, heavy: bool, figures: dict[str, str]
) -> None:
    store = Store(tmp_path / "store")
    threads, rounds = (8, 20) if heavy else (4, 8)
    logs: dict[int, list[str]] = {}
    failures: list[str] = []
    values: dict[tuple[int, int], Any] = {}

    def write(writer: int) -> None:
        try:
            for i in range(10):  # arrays in files and in the catalog
                values[writer, i] = store.put(
                    np.full(9_000 if i % 5 == 0 else 3, writer * 1000 + i)
                )
            logs[writer] = write_rounds(store, writer, rounds, steps=False)
        except BaseException:
            failures.append(traceback.format_exc())

    workers = [threading.Thread(target=write, args=(w,)) for w in range(1, threads + 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failures, failures[0]
    check_store(store, list(logs), rounds, [line for lines in logs.values() for line in lines])
    for (writer, i), ref in values.items():
        assert store.get(ref.sha256)[0] == writer * 1000 + i
    store.close()
    figures["concurrency: threads"] = f"{threads} threads sharing one Store, {rounds} rounds each"


def test_garbage_collection_never_deletes_a_value_a_kernel_stores_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel, collector = Store(tmp_path / "store"), Store(tmp_path / "store")  # two connections
    value = np.arange(20_000.0)
    ref = kernel.put(value)
    path = kernel.object_path(ref.sha256, ".npy")

    def forget_when_it_was_stored() -> None:  # as if stored long ago, and nothing refers to it
        with kernel.transaction() as db:
            db.execute("UPDATE objects SET created = 0")
        os.utime(path, (0, 0))

    forget_when_it_was_stored()
    assert kernel.put(value) == ref  # stored again: the collection keeps it
    assert collector.garbage_collect() == (0, 0)
    np.testing.assert_array_equal(kernel.get(ref.sha256), value)

    forget_when_it_was_stored()
    intact = Store._intact

    def collect_meanwhile(self: Store, found: Any) -> bool:
        answer, size = intact(self, found), path.stat().st_size
        assert collector.garbage_collect() == (1, size)  # its row and its file go
        assert not path.exists()
        return answer

    monkeypatch.setattr(Store, "_intact", collect_meanwhile)
    assert kernel.put(value) == ref  # found just before it was collected: written again
    monkeypatch.undo()
    np.testing.assert_array_equal(kernel.get(ref.sha256), value)
    assert kernel.verify_all() == []


def test_an_ingest_overtaken_by_another_kernel_is_prepared_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = FeatureStore(Store(tmp_path / "store")), FeatureStore(Store(tmp_path / "store"))
    first.apply(FeatureView(VIEW, entities=["sensor"], timestamp="ts"))
    tie_losers = FeatureStore._tie_losers
    overtaken: list[int] = []

    def overtake(self: FeatureStore, *args: Any) -> Any:  # the other kernel commits meanwhile
        if self is first and not overtaken:
            overtaken.append(second.ingest(VIEW, batch(2, 0)).part)
        return tie_losers(self, *args)

    monkeypatch.setattr(FeatureStore, "_tie_losers", overtake)
    assert first.ingest(VIEW, batch(1, 0)).part == 2  # prepared again, after the other's part
    assert overtaken == [1]
    data = pd.concat([batch(2, 0), batch(1, 0)]).sort_values("ts", kind="stable")
    sensors = sorted(data["sensor"].unique().tolist())
    online = first.get_online_features(
        [{"sensor": s} for s in sensors], [f"{VIEW}:value"], now="2024-01-02"
    )
    assert online["value"].tolist() == data.groupby("sensor")["value"].last().loc[sensors].tolist()
    assert first.store.verify_all() == []
