"""Overhead of ``%%step`` on a trivial cell versus the same plain cell, in a real IPython shell.

Every measured cell goes through ``shell.run_cell`` with history on, as in a notebook. Plain and
step cells are timed alternately (their order flips every iteration) and the overhead of one
iteration is ``step time - plain time``; the table gives the median and p90 of those differences.
Cell output goes to an in-memory buffer so that terminal speed does not count.

Cases
-----
first run, new step    a never-seen step name each iteration, with a new input value: the cell
                       is analysed, added to the DAG, executed and its output stored. The
                       pipeline is switched every 50 steps (untimed), so it holds 0-49 steps,
                       the size of a long lesson notebook.
first run, new input   one step whose input changes each iteration: executed and stored.
cache hit              one unchanged step re-run: fingerprinted, found in the store, its outputs
                       kept and its output replayed.
... with a 50-module   the same two cases for a step that imports a local package of 50 modules
local package          (each imports the next): its in-memory code is part of the fingerprint.

A second table shows how the first-run overhead grows with the number of steps in the pipeline
(one pipeline grown to --scaling steps); it is context, with no target.

Usage: .venv/bin/python benchmarks/bench_step_overhead.py [--iterations N] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common

TARGET_MS = 2.0
PACKAGE_TARGET_MS = 10.0
PIPELINE_SIZE = 50
PACKAGE_MODULES = 50


def local_package(modules: int) -> str:
    """Write a package of ``modules`` modules, each importing the next, and put it on sys.path."""
    root = Path(tempfile.mkdtemp(prefix="mlops_nb_bench_pkg_"))
    package = root / "localpkg"
    package.mkdir()
    (package / "__init__.py").write_text("from . import m0\n")
    for i in range(modules):
        nxt = f"from . import m{i + 1}\n" if i + 1 < modules else ""
        (package / f"m{i}.py").write_text(
            f"{nxt}SCALE = {i}\n\ndef f(v):\n    return v + SCALE\n\nclass Model{i}:\n"
            f"    def predict(self, v):\n        return f(v) * 2\n"
        )
    sys.path.insert(0, str(root))
    return "localpkg"


def cases(shell: Any) -> dict[str, tuple[Callable[[int], tuple[str, str]], float]]:
    """For each case: (iteration -> (plain cell, step cell), target ms), after preparing."""

    def new_step(i: int) -> tuple[str, str]:
        if i % PIPELINE_SIZE == 0:
            _common.run(shell, f"%pipeline use notebook{i // PIPELINE_SIZE}")
        shell.user_ns["x"] = i
        return f"y_{i} = x + 1\n", f"%%step new_{i}\ny_{i} = x + 1\n"

    def new_input(i: int) -> tuple[str, str]:
        shell.user_ns["x"] = 10_000_000 + i
        return "y = x + 1\n", "%%step same\ny = x + 1\n"

    def cache_hit(i: int) -> tuple[str, str]:
        shell.user_ns["x"] = 1
        return "z = x + 1\n", "%%step cached\nz = x + 1\n"

    package = local_package(PACKAGE_MODULES)

    def package_new_input(i: int) -> tuple[str, str]:
        shell.user_ns["x"] = 20_000_000 + i
        code = f"import {package}\nw = {package}.m0.f(x)\n"
        return code, f"%%step pkg_same\n{code}"

    def package_cache_hit(i: int) -> tuple[str, str]:
        shell.user_ns["x"] = 1
        code = f"import {package}\nv = {package}.m0.f(x)\n"
        return code, f"%%step pkg_cached\n{code}"

    return {
        "first run, new step": (new_step, TARGET_MS),
        "first run, new input": (new_input, TARGET_MS),
        "cache hit": (cache_hit, TARGET_MS),
        f"first run, {PACKAGE_MODULES}-module package": (package_new_input, PACKAGE_TARGET_MS),
        f"cache hit, {PACKAGE_MODULES}-module package": (package_cache_hit, PACKAGE_TARGET_MS),
    }


def timed(shell: Any, cell: str) -> float:
    """Milliseconds taken by ``shell.run_cell(cell)``."""
    started = time.perf_counter_ns()
    _common.run(shell, cell)
    return (time.perf_counter_ns() - started) / 1e6


def measure(
    shell: Any, make: Callable[[int], tuple[str, str]], iterations: int, offset: int
) -> dict[str, list[float]]:
    plain_ms, step_ms, overhead_ms = [], [], []
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        for i in range(iterations):
            plain, step = make(offset + i)
            if i % 2 == 0:
                p = timed(shell, plain)
                s = timed(shell, step)
            else:
                s = timed(shell, step)
                p = timed(shell, plain)
            plain_ms.append(p)
            step_ms.append(s)
            overhead_ms.append(s - p)
            sink.seek(0)
            sink.truncate()
    return {"plain": plain_ms, "step": step_ms, "overhead": overhead_ms}


def scaling(shell: Any, steps: int, bucket: int) -> list[list[str]]:
    """First-run overhead of a new step while one pipeline grows to ``steps`` steps."""
    with contextlib.redirect_stdout(io.StringIO()):
        _common.run(shell, "%pipeline use scaling")

    def grow(i: int) -> tuple[str, str]:
        shell.user_ns["x"] = i
        return f"w_{i} = x + 1\n", f"%%step grow_{i}\nw_{i} = x + 1\n"

    over = measure(shell, grow, steps, 0)["overhead"]
    return [
        [
            f"{start}-{start + bucket - 1}",
            f"{_common.median(over[start : start + bucket]):.3f}",
            f"{_common.percentile(over[start : start + bucket], 0.9):.3f}",
        ]
        for start in range(0, steps, bucket)
    ]


def profile(
    shell: Any, make: Callable[[int], tuple[str, str]], iterations: int, offset: int, title: str
) -> None:
    profiler = cProfile.Profile()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        for i in range(iterations):
            _, step = make(offset + i)
            profiler.enable()
            shell.run_cell(step, store_history=True)
            profiler.disable()
            sink.seek(0)
            sink.truncate()
    print(f"--- cProfile of {iterations} step cells: {title} (top 25 by cumulative time) ---")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--scaling", type=int, default=300, help="Grow one pipeline to N steps (0: skip)."
    )
    parser.add_argument(
        "--profile", action="store_true", help="Also profile each case with cProfile."
    )
    args = parser.parse_args()

    _common.header(
        "%%step overhead on a trivial cell (y = x + 1), real InteractiveShell",
        ".venv/bin/python benchmarks/bench_step_overhead.py",
    )
    shell = _common.fresh_shell()
    rows, passed = [], True
    for offset, (title, (make, target)) in enumerate(cases(shell).items()):
        base = offset * 1_000_000
        with contextlib.redirect_stdout(io.StringIO()):
            _common.run(shell, f"%pipeline use case{offset}")
        measure(shell, make, args.warmup, base)
        figures = measure(shell, make, args.iterations, base + args.warmup)
        over = figures["overhead"]
        ok = _common.median(over) < target
        passed &= ok
        rows.append(
            [
                title,
                f"{_common.median(figures['plain']):.3f}",
                f"{_common.median(figures['step']):.3f}",
                f"{_common.median(over):.3f}",
                f"{_common.percentile(over, 0.9):.3f}",
                f"< {target:g}",
                _common.verdict(ok),
            ]
        )
        if args.profile:
            profile(shell, make, args.iterations, base + 500_000, title)
    print(
        f"{args.iterations} interleaved iterations per case after {args.warmup} warm-up; "
        f"times in ms; overhead = step - plain, per iteration."
    )
    print(
        _common.table(
            rows,
            ["case", "plain med", "step med", "overhead med", "overhead p90", "target", "result"],
        )
    )
    print()
    if args.scaling:
        print(
            f"First-run overhead of a new step by pipeline size (one pipeline grown to "
            f"{args.scaling} steps; ms; context, no target):"
        )
        print(
            _common.table(
                scaling(shell, args.scaling, 50),
                ["steps already defined", "overhead med", "overhead p90"],
            )
        )
        print()
    print(f"RESULT step_overhead: {_common.verdict(passed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
