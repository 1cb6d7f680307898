"""A 6-step pipeline with two independent 1 s branches: in one process vs a 2-worker Dask cluster.

The pipeline is lesson 09's: load (scikit-learn's wine data) -> acidity and colour (the two
branches, independent of each other) -> join -> train -> evaluate, defined from cell code with
``Pipeline.define_cell`` exactly as ``%%step`` cells are. Every run uses ``force=True``, so every
step really executes (and stores its outputs); only the executor changes:

in-process   ``pipe.run(force=True)``: one step after the other, in this process.
dask         ``pipe.run(executor=DaskExecutor(), force=True)``: each step a Dask task on a
             ``LocalCluster`` of 2 worker processes (1 thread each), started once per
             configuration; its start-up and the first runs on the fresh cluster (workers import
             pandas, pyarrow, scikit-learn, skops) are timed separately and not counted.

The branch work is about 1 s per branch, of one of two kinds:

sleep   (the default) ``time.sleep(1)``: a stand-in for waiting on a slow query, the lesson's
        case. Sleeping uses no CPU, so the figure isolates what the executor adds (shipping steps
        and data to workers) and hides (the second branch's second), and it stays meaningful on
        a small or busy machine.
cpu     (``--work cpu`` or ``both``) a pure-Python loop calibrated to take 1 s in this process:
        real computation, which only runs in parallel when two cores are free. On a 2-core
        machine the client, the scheduler and both workers share them, so expect little.

In-process and Dask runs alternate, --repeats times each. Dask's task stream says, per run,
whether the two branch tasks computed at the same time and how long they took together ("branch
span").

Target: the two branches finish in about the time of one, so the whole Dask run is about one branch
step faster: saved = median in-process - median dask >= 0.8 s (80% of one branch), for the first work kind
given (sleep, by default). The other rows are context.

Usage: .venv/bin/python benchmarks/bench_dask_executor.py [--repeats N] [--work sleep|cpu|both]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import _common

BRANCH_SECONDS = 1.0
TARGET_SAVED = 0.8 * BRANCH_SECONDS
WARM_UP_RUNS = 2

STEPS = {
    "load": """\
from sklearn.datasets import load_wine

wine = load_wine(as_frame=True).frame
print(f"{len(wine)} wines, {wine.shape[1] - 1} measurements each")
""",
    "acidity": """\
{work}
acidity = wine[["malic_acid", "total_phenols", "flavanoids", "nonflavanoid_phenols"]].assign(
    phenol_ratio=wine["flavanoids"] / wine["total_phenols"]
)
""",
    "colour": """\
{work}
colour = wine[["color_intensity", "hue", "od280/od315_of_diluted_wines"]].assign(
    colour_per_hue=wine["color_intensity"] / wine["hue"]
)
""",
    "join": """\
table = acidity.join(colour).assign(target=wine["target"])
print(f"training table: {table.shape[0]} rows x {table.shape[1] - 1} features")
""",
    "train": """\
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

X_train, X_test, y_train, y_test = train_test_split(
    table.drop(columns="target"), table["target"],
    test_size=TEST_SIZE, random_state=SEED, stratify=table["target"],
)
model = make_pipeline(StandardScaler(), LogisticRegression(C=C)).fit(X_train, y_train)
""",
    "evaluate": """\
accuracy = model.score(X_test, y_test)
print(f"accuracy on {len(X_test)} held-out wines: {accuracy:.3f}")
""",
}

WORK = {
    "sleep": f"import time\n\ntime.sleep({BRANCH_SECONDS})",
    # Names starting with _ are never step outputs; SPIN is an input, like a parameter.
    "cpu": "_total = 0\nfor _i in range(SPIN):\n    _total += _i * _i",
}


def spin_for(seconds: float) -> int:
    """Loop count of the ``cpu`` branch work that takes ``seconds`` in this process."""
    count, elapsed = 200_000, 0.0
    while elapsed < 0.2:
        count *= 2
        started = time.perf_counter()
        exec(WORK["cpu"], {"SPIN": count})  # noqa: S102 -- the benchmark's own code
        elapsed = time.perf_counter() - started
    return int(count * seconds / elapsed)


def build(store: Any, kind: str, spin: int) -> Any:
    """The lesson's pipeline, with ``kind`` branch work, in its own pipeline of ``store``."""
    from mlops_nb import Pipeline

    pipe = Pipeline(f"bench_{kind}", store, {"TEST_SIZE": 0.25, "SEED": 0, "C": 1.0, "SPIN": spin})
    pipe.clear()
    for name, code in STEPS.items():
        pipe.define_cell(name, code.replace("{work}", WORK[kind]))
    return pipe


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """Send what the steps print (and replay) to a buffer: terminal speed must not count."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def run_in_process(pipe: Any) -> float:
    """Wall seconds of one forced run in this process."""
    with quietly():
        started = time.perf_counter()
        pipe.run(force=True)
        return time.perf_counter() - started


def run_on_dask(pipe: Any, executor: Any) -> tuple[float, float, bool]:
    """One forced run on Dask: wall seconds, the branch tasks' span, and whether they overlapped."""
    from distributed import get_task_stream

    with quietly(), get_task_stream(executor.client) as stream:
        started = time.perf_counter()
        pipe.run(executor=executor, force=True)
        seconds = time.perf_counter() - started
    spans = {}
    for task in stream.data:
        name = task["key"].removeprefix("step-").rsplit("-", 1)[0]
        for span in task["startstops"]:
            if span["action"] == "compute":
                spans[name] = (span["start"], span["stop"])
    (a_start, a_stop), (c_start, c_stop) = spans["acidity"], spans["colour"]
    overlapped = max(a_start, c_start) < min(a_stop, c_stop)
    return seconds, max(a_stop, c_stop) - min(a_start, c_start), overlapped


class Case(NamedTuple):
    """The Dask runs of one work kind under one Dask configuration."""

    kind: str
    config: str
    seconds: list[float]
    spans: list[float]
    overlapped: list[bool]


def measure(
    pipes: dict[str, Any], repeats: int
) -> tuple[dict[str, list[float]], list[Case], list[list[str]]]:
    """Forced runs, alternating in-process and Dask, for each work kind.

    Returns the in-process times per work kind, the Dask cases, and the cluster's start-up and
    first runs (which are not measured).
    """
    from mlops_nb import DaskExecutor

    in_process: dict[str, list[float]] = {kind: [] for kind in pipes}
    cases = []
    with DaskExecutor(n_workers=2) as executor:
        started = time.perf_counter()
        executor.client  # noqa: B018 -- starts the LocalCluster
        started_in = time.perf_counter() - started
        first_runs = []
        for kind, pipe in pipes.items():
            warm_up = [run_on_dask(pipe, executor)[0] for _ in range(WARM_UP_RUNS)]
            first_runs.append(f"{kind} {' '.join(f'{t:.2f}' for t in warm_up)}")
        startup = [["DaskExecutor()", f"{started_in:.2f}", "; ".join(first_runs)]]
        for kind, pipe in pipes.items():
            case = Case(kind, "DaskExecutor()", [], [], [])
            for repeat in range(repeats):
                if repeat % 2:
                    in_process[kind].append(run_in_process(pipe))
                seconds, span, overlapped = run_on_dask(pipe, executor)
                case.seconds.append(seconds)
                case.spans.append(span)
                case.overlapped.append(overlapped)
                if not repeat % 2:
                    in_process[kind].append(run_in_process(pipe))
            cases.append(case)
    return in_process, cases, startup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs per executor and case.")
    parser.add_argument("--work", choices=["sleep", "cpu", "both"], default="sleep")
    args = parser.parse_args()
    kinds = ["sleep", "cpu"] if args.work == "both" else [args.work]

    load_before = os.getloadavg()[0]
    _common.header(
        "6-step pipeline, two independent 1 s branches: in-process vs 2-worker Dask cluster",
        ".venv/bin/python benchmarks/bench_dask_executor.py",
    )
    scratch = Path(tempfile.mkdtemp(prefix="mlops_nb_bench_"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ["MLOPS_NB_HOME"] = str(scratch / "store")

    import dask
    import distributed

    from mlops_nb import Store

    store = Store(scratch / "store")
    spin = spin_for(BRANCH_SECONDS) if "cpu" in kinds else 0
    pipes = {kind: build(store, kind, spin) for kind in kinds}
    for pipe in pipes.values():
        run_in_process(pipe)  # untimed: imports and first stores in this process

    in_process, cases, startup = measure(pipes, args.repeats)

    work = {
        "sleep": f"sleep {BRANCH_SECONDS:g} s",
        "cpu": f"a Python loop of {spin:,} iterations (~{BRANCH_SECONDS:g} s here)",
    }
    print(
        f"{args.repeats} forced runs per row, in-process and Dask alternating; seconds; "
        f"branch work: {', '.join(work[kind] for kind in kinds)}."
    )
    print(
        f"dask {dask.__version__}, distributed {distributed.__version__}; "
        f"LocalCluster of 2 worker processes x 1 thread."
    )
    print()
    print("Cluster start-up and the first runs on it (not counted below):")
    print(
        _common.table(
            startup,
            ["dask configuration", "start s", f"first {WARM_UP_RUNS} runs per work kind, s"],
        )
    )
    print()
    rows, verdicts = [], []
    for kind in kinds:
        rows.append([
            kind, "in-process", "-", f"{_common.median(in_process[kind]):.3f}",
            " ".join(f"{t:.2f}" for t in in_process[kind]), "-", "-",
        ])  # fmt: skip
        for case in (case for case in cases if case.kind == kind):
            rows.append([
                kind, "dask", case.config, f"{_common.median(case.seconds):.3f}",
                " ".join(f"{t:.2f}" for t in case.seconds), f"{_common.median(case.spans):.2f}",
                f"{sum(case.overlapped)}/{len(case.overlapped)}",
            ])  # fmt: skip
    print(
        _common.table(
            rows,
            [
                "work",
                "executor",
                "dask configuration",
                "median s",
                "each run s",
                "branch span s",
                "overlapped",
            ],
        )
    )
    print(
        "branch span: from the first branch task's start to the last one's end; overlapped: runs "
        "where the two branch tasks computed at the same time (both from Dask's task stream)."
    )
    print()
    summary = []
    for case in cases:
        base = _common.median(in_process[case.kind])
        saved = base - _common.median(case.seconds)
        primary = case.kind == kinds[0]
        ok = saved >= TARGET_SAVED
        if primary:
            verdicts.append(ok)
        summary.append([
            f"{case.kind}, {case.config}", f"{_common.median(case.seconds) / base:.2f}", f"{saved:+.2f}",
            f">= {TARGET_SAVED:g}" if primary else "context", _common.verdict(ok) if primary else "",
        ])  # fmt: skip
    print(_common.table(summary, ["dask vs in-process", "ratio", "saved s", "target", "result"]))
    passed = all(verdicts)
    print(
        f"load average (1 min): {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"(on {os.cpu_count()} cores)"
    )
    print()
    print(f"RESULT dask_executor: {_common.verdict(passed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
