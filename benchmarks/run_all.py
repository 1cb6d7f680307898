"""Run every benchmark, each in its own process, then print one summary line per benchmark.

Usage: .venv/bin/python benchmarks/run_all.py   (or: make bench)

A MISS is reported, not raised: the exit status is non-zero only when a benchmark crashes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import _common

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "bench_step_overhead.py",
    "bench_hashing.py",
    "bench_restore.py",
    "bench_edit_last_step.py",
    "bench_pit_join.py",
    "bench_dask_executor.py",
]


def main() -> int:
    print(f"machine: {_common.machine()}")
    print()
    summary, crashed = [], False
    started = time.perf_counter()
    for script in BENCHMARKS:
        script_started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, str(HERE / script)], cwd=_common.REPO,
            stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        result = "no RESULT line"
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith("RESULT "):
                result = line.split(":", 1)[1].strip()
        if process.wait() != 0:
            crashed = True
            result = f"CRASHED (exit status {process.returncode})"
        summary.append([script, result, f"{time.perf_counter() - script_started:.1f}"])
        print()
    print(_common.table(summary, ["benchmark", "result", "seconds"]))
    print(f"total: {time.perf_counter() - started:.1f} s")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
