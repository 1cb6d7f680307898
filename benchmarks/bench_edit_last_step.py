"""Edit the last of five ``%%step`` cells and re-run them all: only the edited one should cost.

In a real IPython shell, five ``%%step`` cells each sleep 1 s and pass a small DataFrame
(10,000 x 5 float64) to the next. After a first run of all five, the last step's code is edited
and all five cells are re-run (the first four should come from the cache). That wall time is
compared with running the edited last step's code alone as a plain cell (no ``%%step``).
The two are measured alternately, --repeats times, each time with a new edit; the table gives
medians and the ratio of the medians. Target: re-run-all <= 1.2 x last-step-alone.

Usage: .venv/bin/python benchmarks/bench_edit_last_step.py [--repeats N] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import time
from typing import Any

import _common

TARGET_RATIO = 1.2

SETUP = """\
import time
import numpy as np
import pandas as pd
raw = pd.DataFrame(np.random.default_rng(0).random((10_000, 5)), columns=list("abcde"))
"""

STEPS = [
    ("load", "time.sleep(1)\ndf1 = raw.assign(total=raw.a + raw.b)\n"),
    ("clean", "time.sleep(1)\ndf2 = df1[df1.a > 0.1].reset_index(drop=True)\n"),
    ("features", "time.sleep(1)\ndf3 = df2.assign(ratio=df2.c / (df2.d + 1))\n"),
    ("scale", "time.sleep(1)\ndf4 = (df3 - df3.mean()) / df3.std()\n"),
]


def last_step(edit: int) -> str:
    """The last step's code; each ``edit`` changes it."""
    return f"time.sleep(1)\nsummary = df4.describe()\nscore = float(df4.total.sum()) + {edit}\n"


def step_cells(edit: int) -> list[str]:
    cells = [f"%%step {name}\n{code}" for name, code in STEPS]
    return [*cells, f"%%step report\n{last_step(edit)}"]


def timed(shell: Any, cells: list[str]) -> tuple[float, list[float]]:
    """Total wall time of running ``cells`` one after another, and each cell's time."""
    each = []
    started = time.perf_counter()
    for cell in cells:
        cell_started = time.perf_counter()
        _common.run(shell, cell)
        each.append(time.perf_counter() - cell_started)
    return time.perf_counter() - started, each


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--profile", action="store_true", help="Profile one re-run of all five cells."
    )
    args = parser.parse_args()

    _common.header(
        "edit the last of 5 %%step cells (1 s each), re-run all five",
        ".venv/bin/python benchmarks/bench_edit_last_step.py",
    )
    shell = _common.fresh_shell()
    sink = io.StringIO()
    rerun_all, alone, per_cell = [], [], []
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        _common.run(shell, SETUP)
        first_run, _ = timed(shell, step_cells(0))
        for repeat in range(1, args.repeats + 1):
            plain = [last_step(repeat)]
            if repeat % 2:
                total, each = timed(shell, step_cells(repeat))
                single, _ = timed(shell, plain)
            else:
                single, _ = timed(shell, plain)
                total, each = timed(shell, step_cells(repeat))
            rerun_all.append(total)
            alone.append(single)
            per_cell.append(each)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            timed(shell, step_cells(args.repeats + 1))
            profiler.disable()
    log = sink.getvalue()
    if "report: ran" not in log or "load: up to date" not in log:
        sys.stderr.write(log)
        raise RuntimeError("the pipeline did not behave as expected (see its output above)")

    ratio = _common.median(rerun_all) / _common.median(alone)
    ok = ratio <= TARGET_RATIO
    print(
        f"{args.repeats} edits, measured alternately; seconds; "
        f"first run of all five cells: {first_run:.3f} s."
    )
    print(
        _common.table(
            [
                [
                    "re-run all 5 %%step cells after the edit",
                    f"{_common.median(rerun_all):.3f}",
                    " ".join(f"{t:.3f}" for t in rerun_all),
                ],
                [
                    "edited last step alone, plain cell",
                    f"{_common.median(alone):.3f}",
                    " ".join(f"{t:.3f}" for t in alone),
                ],
            ],
            ["what", "median s", "each run s"],
        )
    )
    print()
    names = [name for name, _ in STEPS] + ["report"]
    print("re-run, per cell (median s):")
    print(
        _common.table(
            [
                [f"%%step {name}", f"{_common.median([run[i] for run in per_cell]):.4f}"]
                for i, name in enumerate(names)
            ],
            ["cell", "median s"],
        )
    )
    print()
    print(
        _common.table(
            [
                [
                    "re-run-all / last-step-alone",
                    f"{ratio:.3f}",
                    f"<= {TARGET_RATIO:g}",
                    _common.verdict(ok),
                ]
            ],
            ["ratio", "measured", "target", "result"],
        )
    )
    if args.profile:
        print("--- cProfile of one re-run of all five cells (top 25 by cumulative time) ---")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(25)
    print()
    print(f"RESULT edit_last_step: {_common.verdict(ok)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
