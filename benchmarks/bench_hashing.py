"""Content-hashing throughput of ``mlops_nb.hashing.content_hash`` on DataFrames, single thread.

The main figure is a ~1 GB numeric DataFrame (16 float64 columns x 8.4M rows). Side by side, on
the same data in the same run, for context:

- ``xxh3_128`` over the frame's raw bytes (the ceiling: content_hash uses xxh3 on the buffers),
- ``hashlib.sha256`` over the same raw bytes,
- ``pd.util.hash_pandas_object(df).sum()``, the usual pandas way to fingerprint a frame.

Then two 2M-row frames with a string column (8 float64 columns + one string column), where
content_hash cannot read a numeric buffer: unique ids, and 50 repeated labels.

GB = 10**9 bytes of ``df.memory_usage(deep=True).sum()``. Each method runs --repeats times, the
methods taking turns; the table gives the best and the median. Peak memory stays under ~2 GB.

Usage: .venv/bin/python benchmarks/bench_hashing.py [--rows N] [--repeats N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import pstats
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import _common
import numpy as np
import pandas as pd
import xxhash

from mlops_nb.hashing import content_hash

TARGET_GBPS = 1.0


def numeric_frame(rows: int, columns: int = 16) -> tuple[pd.DataFrame, np.ndarray]:
    """A float64 frame whose single block is ``values`` (shape columns x rows): no copy is made."""
    values = np.empty((columns, rows), dtype=np.float64)
    rng = np.random.default_rng(0)
    for row in values:  # one column at a time: no temporary 1 GB array
        rng.random(out=row)
    frame = pd.DataFrame(values.T, columns=[f"f{i}" for i in range(columns)], copy=False)
    assert np.shares_memory(frame["f0"].to_numpy(), values), "the frame copied its data"
    return frame, values


def string_frame(rows: int, kind: str) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"f{i}": rng.random(rows) for i in range(8)})
    if kind == "ids":
        frame["key"] = "id-" + pd.Series(np.arange(rows)).astype("str")
    else:
        labels = np.array([f"city_{i:02d}" for i in range(50)], dtype=object)
        frame["key"] = pd.Series(labels[rng.integers(0, 50, rows)]).astype("str")
    return frame


def timings(methods: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per run of each method; the methods take turns so drift affects all alike."""
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            gc.collect()
            started = time.perf_counter()
            method()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def rows_for(
    title: str, size: float, seconds: dict[str, list[float]], target: str | None
) -> tuple[list[list[str]], bool]:
    rows, passed = [], True
    for name, runs in seconds.items():
        best, med = size / min(runs) / 1e9, size / _common.median(runs) / 1e9
        is_target = target == name
        ok = med >= TARGET_GBPS
        if is_target:
            passed = ok
        rows.append(
            [
                title,
                name,
                f"{size / 1e9:.3f}",
                f"{min(runs):.3f}",
                f"{best:.2f}",
                f"{med:.2f}",
                f">= {TARGET_GBPS:g}" if is_target else "context",
                _common.verdict(ok) if is_target else "",
            ]
        )
    return rows, passed


def profile(value: Any, title: str) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    content_hash(value)
    profiler.disable()
    print(f"--- cProfile of content_hash: {title} (top 12 by internal time) ---")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)


def numeric_case(args: argparse.Namespace) -> tuple[list[list[str]], bool]:
    """The ~1 GB numeric frame: content_hash (the target) and three baselines on the same bytes."""
    frame, values = numeric_frame(args.rows)
    size = float(frame.memory_usage(deep=True).sum())
    methods: dict[str, Callable[[], Any]] = {
        "mlops_nb content_hash": lambda: content_hash(frame),
        "xxh3_128(raw bytes)": lambda: xxhash.xxh3_128_hexdigest(values.data),
        "hashlib.sha256(raw bytes)": lambda: hashlib.sha256(values.data).hexdigest(),
        "hash_pandas_object().sum()": lambda: pd.util.hash_pandas_object(frame).sum(),
    }
    title = f"16 x float64, {args.rows:,} rows"
    rows = rows_for(title, size, timings(methods, args.repeats), "mlops_nb content_hash")
    if args.profile:
        profile(frame, title)
    return rows


def string_case(args: argparse.Namespace, kind: str, label: str) -> list[list[str]]:
    """A frame with a string column: content_hash beside hash_pandas_object, for context."""
    frame = string_frame(args.string_rows, kind)
    size = float(frame.memory_usage(deep=True).sum())
    methods: dict[str, Callable[[], Any]] = {
        "mlops_nb content_hash": lambda: content_hash(frame),
        "hash_pandas_object().sum()": lambda: pd.util.hash_pandas_object(frame).sum(),
    }
    title = f"8 x float64 + str ({label}), {args.string_rows:,} rows"
    rows, _ = rows_for(title, size, timings(methods, args.repeats), None)
    if args.profile:
        profile(frame, title)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_400_000, help="Rows of the numeric frame.")
    parser.add_argument("--string-rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    _common.header(
        "content_hash throughput (single thread)",
        ".venv/bin/python benchmarks/bench_hashing.py",
    )
    table_rows, passed = numeric_case(args)
    gc.collect()  # the 1 GB frame is gone before the next frames are built
    for kind, label in (("ids", "unique ids"), ("labels", "50 labels")):
        table_rows += string_case(args, kind, label)
        gc.collect()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"best and median of {args.repeats} runs each; GB/s = 10**9 bytes per second; "
        f"peak RSS {peak:.2f} GB."
    )
    print(
        _common.table(
            table_rows,
            ["frame", "method", "GB", "best s", "GB/s best", "GB/s median", "target", "result"],
        )
    )
    print()
    print(f"RESULT hashing: {_common.verdict(passed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
