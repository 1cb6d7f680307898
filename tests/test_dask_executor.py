"""Pipelines on a real Dask cluster: a LocalCluster of worker processes, as users start it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_nb import DaskExecutor, MlopsNbError, Pipeline, Store
from mlops_nb.executors import resolve_executor
from mlops_nb.observers import ReportCollector, RunObserver


@pytest.fixture(scope="module")
def dask() -> Iterator[DaskExecutor]:
    with DaskExecutor(n_workers=2) as executor:
        yield executor


BRANCHES = {
    "load": "raw = list(range(10))",
    "left": "import os\nleft = [x * scale for x in raw]\nleft_pid = os.getpid()\nprint('left on a worker')",
    "right": "import os\nright = [x + 1 for x in raw]\nright_pid = os.getpid()",
    "join": "total = sum(left) + sum(right)\ntotal",
}


def branchy(store: Store, scale: int = 2) -> Pipeline:
    pipe = Pipeline("branchy", store, namespace={"scale": scale})
    for name, code in BRANCHES.items():
        pipe.define_cell(name, code)
    return pipe


def actions(store: Store) -> dict[str, str]:
    return dict(store.query("SELECT step, action FROM runs WHERE pipeline = 'branchy'"))


def test_steps_run_on_workers_and_come_back(dask: DaskExecutor, store: Store, capsys: Any) -> None:
    pipe = branchy(store)
    outputs = pipe.run(executor=dask)
    assert outputs["total"] == 2 * 45 + 55
    assert pipe.namespace["left"] == [x * 2 for x in range(10)]
    workers = set(dask.client.run(os.getpid).values())
    assert {pipe.namespace["left_pid"], pipe.namespace["right_pid"]} <= workers
    assert os.getpid() not in workers
    # What a worker printed and the last expression are shown here, once.
    assert capsys.readouterr().out.count("left on a worker") == 1
    assert actions(store) == {"load": "ran", "left": "ran", "right": "ran", "join": "ran"}


def test_reports_say_which_worker_ran_each_step(dask: DaskExecutor, store: Store) -> None:
    collector = ReportCollector()
    pipe = branchy(store)
    pipe.observers.append(collector)
    pipe.run(executor=dask)
    workers = set(dask.client.scheduler_info()["workers"])
    assert {r.worker for r in collector.reports} <= workers
    assert all(r.finished > 0 for r in collector.reports)


def test_the_workers_fill_the_cache_the_notebook_uses(dask: DaskExecutor, store: Store) -> None:
    branchy(store).run(executor=dask)
    fresh = branchy(store)  # a new session: same store, empty memory
    assert fresh.run()["total"] == 145
    assert set(actions(store).values()) == {"cached"}
    assert all(row["state"] == "up to date" for row in fresh.states().values())


def test_a_second_dask_run_restores_instead_of_running(dask: DaskExecutor, store: Store) -> None:
    pipe = branchy(store)
    pipe.run(executor=dask)
    pipe.namespace["scale"] = 3  # a parameter change: only the steps reading it run again
    pipe.run(executor=dask)
    assert actions(store) == {"load": "cached", "left": "ran", "right": "cached", "join": "ran"}
    assert pipe.namespace["total"] == 3 * 45 + 55


def test_independent_steps_run_at_the_same_time_on_two_workers(dask: DaskExecutor, store: Store) -> None:
    started: list[str] = []

    class Order(RunObserver):
        def step_started(self, step: str) -> None:
            started.append(step)

    pipe = Pipeline("siblings", store)
    pipe.define_cell("load", "raw = list(range(10))")
    pipe.define_cell("left", "import time\ntime.sleep(0.5)\nleft = sum(raw)")
    pipe.define_cell("right", "import time\ntime.sleep(0.5)\nright = max(raw)")
    pipe.observers.append(Order())
    collector = ReportCollector()
    pipe.observers.append(collector)
    pipe.run(executor=dask)
    # Both are handed over as soon as load is done, before either ends.
    assert started == ["load", "left", "right"]
    report = {r.step: r for r in collector.reports}
    left, right = report["left"], report["right"]
    assert left.worker != right.worker
    assert max(left.finished - left.seconds, right.finished - right.seconds) < min(left.finished, right.finished)


def test_needs_orders_steps_that_share_no_variable(dask: DaskExecutor, store: Store, tmp_path: Path) -> None:
    marker = tmp_path / "written.txt"
    pipe = Pipeline("files", store, namespace={"path": str(marker)})
    pipe.define_cell("write", "import pathlib, time\ntime.sleep(0.3)\npathlib.Path(path).write_text('done')")
    pipe.define_cell("read", "import pathlib\ntext = pathlib.Path(path).read_text()", needs=["write"])
    assert pipe.run(executor=dask)["text"] == "done"


def test_a_sibling_of_a_failing_step_still_finishes(dask: DaskExecutor, store: Store) -> None:
    pipe = Pipeline("siblings", store)
    pipe.define_cell("load", "raw = list(range(10))")
    pipe.define_cell("slow", "import time\ntime.sleep(0.5)\nslow = sum(raw)")
    pipe.define_cell("bad", "bad = 1 / 0")
    collector = ReportCollector()
    pipe.observers.append(collector)
    with pytest.raises(ZeroDivisionError):
        pipe.run(executor=dask)
    assert {r.step: r.action for r in collector.reports} == {"load": "ran", "slow": "ran", "bad": "failed"}
    assert pipe.namespace["slow"] == 45


def test_a_failing_step_is_reported_with_its_traceback(dask: DaskExecutor, store: Store) -> None:
    pipe = branchy(store)
    pipe.define_cell("right", "right = [x / (x - 3) for x in raw]")
    collector = ReportCollector()
    pipe.observers.append(collector)
    with pytest.raises(ZeroDivisionError) as error:
        pipe.run(executor=dask)
    assert any("<step right>" in str(entry.path) for entry in error.traceback)
    assert [r.step for r in collector.reports if r.action == "failed"] == ["right"]
    recorded = dict(store.query("SELECT step, error FROM runs WHERE pipeline = 'branchy'"))
    assert "ZeroDivisionError" in recorded["right"]
    assert "join" not in actions(store)  # never started: its input failed
    assert pipe.states()["right"]["state"] == "failed"


def test_function_steps_travel_to_the_workers(dask: DaskExecutor, store: Store) -> None:
    pipe = Pipeline("functions", store)

    @pipe.step
    def numbers() -> list[int]:
        return [3, 1, 2]

    @pipe.step
    def ordered(numbers: list[int]) -> list[int]:
        return sorted(numbers)

    assert pipe.run(executor=dask)["ordered"] == [1, 2, 3]
    outputs = json.loads(store.query("SELECT outputs FROM results WHERE step = 'ordered'")[0][0])
    assert list(outputs) == ["ordered"]


def test_a_string_executor_starts_and_stops_its_own_cluster(store: Store, monkeypatch: Any) -> None:
    closed: list[DaskExecutor] = []
    close = DaskExecutor.close

    def spy(self: DaskExecutor) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(DaskExecutor, "close", spy)
    assert branchy(store).run(executor="dask")["total"] == 145
    assert len(closed) == 1 and closed[0]._cluster is None


def test_an_input_that_cannot_travel_is_named(dask: DaskExecutor, store: Store) -> None:
    import threading

    pipe = Pipeline("locks", store, namespace={"lock": threading.Lock()})
    pipe.define_cell("use", "text = str(lock)")
    with pytest.raises(MlopsNbError, match=r"Step 'use' cannot be sent to a Dask worker: its input 'lock' \(lock\) cannot be pickled\. Create"):
        pipe.run(executor=dask)


def test_executor_names_are_checked() -> None:
    assert resolve_executor("dask://scheduler:8786").address == "tcp://scheduler:8786"
    with pytest.raises(MlopsNbError, match=r"Unknown executor 'dask:/x'\. Use 'dask' for a local"):
        resolve_executor("dask:/x")


def test_an_unreachable_scheduler_is_a_clear_error(store: Store) -> None:
    with pytest.raises(MlopsNbError, match=r"Cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:9'"):
        branchy(store).run(executor="dask://127.0.0.1:9")


def test_pipeline_run_magic_on_dask(nb: Any, tmp_path: Path, capsys: Any) -> None:
    nb.ok("scale = 2")
    for name, code in BRANCHES.items():
        nb.ok(f"%%step {name}\n{code}")
    capsys.readouterr()
    try:
        nb.ok("%pipeline run --executor dask --force")
        out = capsys.readouterr().out
        assert out.count("left on a worker") == 1
        assert "✓ left: ran in" in out and "✓ join: ran in" in out
        nb.ok("%pipeline run --executor dask")  # the same cluster, kept for the session
        assert capsys.readouterr().out.count("up to date, cached") == 4
        assert nb.ns["total"] == 145
        error = nb.error("%pipeline status --executor dask")
        assert "--executor only applies to %pipeline run" in str(error)
    finally:
        for executor in nb.shell.magics_manager.registry["StepMagics"]._executors.values():
            executor.close()


def test_a_failure_does_not_stop_the_steps_that_do_not_depend_on_it(dask: DaskExecutor, store: Store) -> None:
    pipe = Pipeline("keep_going", store)
    pipe.define_cell("bad", "bad = 1 / 0")
    pipe.define_cell("after_bad", "after = bad + 1")
    pipe.define_cell("later", "import time\ntime.sleep(0.3)\nlater = 5")  # starts after the failure
    with pytest.raises(ZeroDivisionError) as failure:
        pipe.run(executor=dask)
    assert pipe.namespace["later"] == 5
    assert "not run because they depend on a failed step: after_bad" in failure.value.__notes__[0]


def test_re_bound_names_reach_each_reader_as_in_process(dask: DaskExecutor, store: Store, tmp_path: Path) -> None:
    cells = {
        "a": "value = 1",
        "use_a": "first = value * 10",
        "b": "value = value + 1",
        "use_b": "second = value * 10",
    }
    here = Pipeline("rebind", Store(tmp_path / "here"), namespace={})
    there = Pipeline("rebind", store, namespace={})
    for name, code in cells.items():
        here.define_cell(name, code)
        there.define_cell(name, code)
    assert here.run() == there.run(executor=dask)
    assert (there.namespace["first"], there.namespace["second"]) == (10, 20)


def test_a_pipeline_made_with_a_dask_executor_runs_single_steps_here(dask: DaskExecutor, store: Store) -> None:
    pipe = Pipeline("made_with_dask", store, executor=dask)
    pipe.define_cell("one", "one = 1")
    assert pipe.run_step("one").action == "ran"  # one step: run by the cell runner, in this process
    assert pipe.run()["one"] == 1  # the whole pipeline: on the cluster
    assert pipe.run_step("one").action == "cached"


def test_steps_deleted_from_the_notebook_are_not_restored_by_workers(dask: DaskExecutor, store: Store) -> None:
    old = Pipeline("deleted", store)
    old.define_cell("gone", "value = 1")
    old.define_cell("kept", "result = value + 1")
    old.run()
    new = Pipeline("deleted", store, namespace={"value": 10})  # the notebook lost its 'gone' cell
    new.remove("gone")
    new.define_cell("kept", "result = value + 1")
    assert new.run(executor=dask)["result"] == 11
