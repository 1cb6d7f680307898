"""Peak memory and throughput of restoring large values from the store (``Store.get``).

Three values of about 1 GB each (GB = 10**9 bytes in memory: ``memory_usage(deep=True)`` of a
frame, ``nbytes`` of an array) are put into a temporary store:

- a DataFrame of mixed numeric columns (float64, int64, float32, int32, bool),
- the same kind of frame with one string column (unique ids, pandas' default ``str`` dtype),
- a float64 numpy array.

Each one is then restored in a fresh process per contender, taking turns for ``--rounds`` rounds:

- ``Store.get``: the store's read path. It checks the file's sha256 (reading it in chunks), then
  copies a frame's columns of numbers, booleans or dates one row group at a time into arrays made
  at their final size and lets pandas read the other columns a batch at a time; an array is read
  by ``np.load`` straight into the new array.
- the previous read path, side by side: the same sha256 check, then ``pd.read_parquet`` of the
  whole file (frames) or ``np.load`` (arrays: the same code as now, already within budget),
- for context, without the sha256 check: ``pq.read_table(path).to_pandas()``, Arrow's own
  low-memory options (``read_table(memory_map=True).to_pandas(self_destruct=True,
  split_blocks=True)``) and a copy-on-write memory map of the .npy file (``np.load(mmap_mode="c")``).

Peak extra memory is the child's VmHWM after the restore minus its RSS just before it (VmHWM is
reset with ``/proc/self/clear_refs`` first; Arrow's buffers are not seen by tracemalloc), divided by
the value's size; "after reading it" is the same after ``content_hash`` of the restored value has
read every byte (a memory map only reads the file then). Every restored value must have the
stored value's content hash. The page cache is warm: the files were just written.

Target: ``Store.get`` peaks within 1.3 x the value's size in extra memory.

Usage: .venv/bin/python benchmarks/bench_restore.py [--gb SIZE] [--rounds N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common

TARGET_RATIO = 1.3
CHILD_PREFIX = "CHILD_RESULT "


# -- memory of this process (used in the children) ------------------------------------------------
def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> bool:
    """Start VmHWM again from the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# -- the values -----------------------------------------------------------------------------------
def numeric_frame(size: float) -> Any:
    import numpy as np
    import pandas as pd

    rows = int(size / 33)  # bytes per row, column by column below
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "f0": rng.random(rows),  # 8
            "f1": rng.normal(size=rows),  # 8
            "i0": rng.integers(0, 1_000_000, rows),  # 8
            "f32": rng.random(rows, dtype=np.float32),  # 4
            "i32": rng.integers(0, 100, rows, dtype=np.int32),  # 4
            "flag": rng.random(rows) < 0.3,  # 1
        }
    )


def string_frame(size: float) -> Any:
    import numpy as np
    import pandas as pd

    rows = int(size / 80)  # 8 float64 (64 bytes) + an id of ~12 characters with its offset
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"f{i}": rng.random(rows) for i in range(8)})
    frame["key"] = "id-" + pd.Series(np.arange(rows)).astype("str")
    return frame


def array(size: float) -> Any:
    import numpy as np

    return np.random.default_rng(2).random(int(size / 8))


VALUES: dict[str, tuple[str, Callable[[float], Any]]] = {
    "frame": ("DataFrame, 6 numeric columns", numeric_frame),
    "strings": ("DataFrame, 8 float64 + 1 str column", string_frame),
    "array": ("ndarray float64", array),
}


def value_size(value: Any) -> int:
    return int(value.nbytes if hasattr(value, "nbytes") else value.memory_usage(deep=True).sum())


# -- the contenders (each runs in a child process) --------------------------------------------------
def checked(path: str, sha256: str) -> Any:
    """The store's check: the file's sha256, read in chunks, then the file at position 0."""
    file = open(path, "rb")  # noqa: SIM115 -- the caller closes it
    if hashlib.file_digest(file, "sha256").hexdigest() != sha256:
        raise RuntimeError(f"{path} does not match its sha256")
    file.seek(0)
    return file


def store_get(path: str, sha256: str, store: str) -> Callable[[], Any]:
    from mlops_nb.store import Store

    opened = Store(store)  # opening the catalog is not part of the restore
    return lambda: opened.get(sha256)


def previous_frame(path: str, sha256: str, store: str) -> Callable[[], Any]:
    import pandas as pd

    def restore() -> Any:
        with checked(path, sha256) as file:
            return pd.read_parquet(file, engine="pyarrow")

    return restore


def previous_array(path: str, sha256: str, store: str) -> Callable[[], Any]:
    import numpy as np

    def restore() -> Any:
        with checked(path, sha256) as file:
            return np.load(file, allow_pickle=False)

    return restore


def plain_arrow(path: str, sha256: str, store: str) -> Callable[[], Any]:
    import pyarrow.parquet as pq

    return lambda: pq.read_table(path).to_pandas()


def arrow_self_destruct(path: str, sha256: str, store: str) -> Callable[[], Any]:
    import pyarrow.parquet as pq

    return lambda: pq.read_table(path, memory_map=True).to_pandas(
        self_destruct=True, split_blocks=True
    )


def mapped_array(path: str, sha256: str, store: str) -> Callable[[], Any]:
    import numpy as np

    # A view: np.memmap is a subclass of ndarray, which content_hash tells apart.
    return lambda: np.load(path, mmap_mode="c").view(np.ndarray)


# Each one prepares (opens what it needs) and returns the restore to time.
CONTENDERS: dict[str, Callable[[str, str, str], Callable[[], Any]]] = {
    "Store.get": store_get,
    "previous: sha256 + pd.read_parquet": previous_frame,
    "previous: sha256 + np.load": previous_array,
    "pq.read_table().to_pandas(), no check": plain_arrow,
    "memory_map + self_destruct, no check": arrow_self_destruct,
    "np.load(mmap_mode='c'), no check": mapped_array,
}
PER_VALUE = {
    "frame": ["Store.get", "previous: sha256 + pd.read_parquet",
              "pq.read_table().to_pandas(), no check", "memory_map + self_destruct, no check"],
    "strings": ["Store.get", "previous: sha256 + pd.read_parquet",
                "pq.read_table().to_pandas(), no check"],
    "array": ["Store.get", "previous: sha256 + np.load", "np.load(mmap_mode='c'), no check"],
}  # fmt: skip


def child_main(params_file: str) -> int:
    import pandas as pd

    from mlops_nb.hashing import content_hash

    # A tiny Parquet read first: what the first read imports is not counted.
    tiny = io.BytesIO()
    pd.DataFrame({"x": [1.0]}).to_parquet(tiny)
    pd.read_parquet(tiny)
    params = json.loads(Path(params_file).read_text())
    restore = CONTENDERS[params["contender"]](params["path"], params["sha256"], params["store"])
    gc.collect()
    reset = reset_peak()
    before = _status_bytes("VmRSS")
    started = time.perf_counter()
    value = restore()
    seconds = time.perf_counter() - started
    peak = _status_bytes("VmHWM") - before
    digest = content_hash(value)
    peak_after_reading = _status_bytes("VmHWM") - before
    result = {
        "seconds": seconds,
        "peak": peak,
        "peak_after_reading": peak_after_reading,
        "hash": digest,
        "reset": reset,
    }
    print(CHILD_PREFIX + json.dumps(result), flush=True)
    return 0


def run_child(work: Path, params: dict[str, Any]) -> dict[str, Any]:
    params_file = work / "params.json"
    params_file.write_text(json.dumps(params))
    completed = subprocess.run(
        [sys.executable, __file__, "--child", str(params_file)],
        stdout=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    lines = [line for line in completed.stdout.splitlines() if line.startswith(CHILD_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{params['contender']!r} failed (exit status {completed.returncode})")
    return dict(json.loads(lines[-1][len(CHILD_PREFIX) :]))


# -- the run --------------------------------------------------------------------------------------
def store_value(work: Path, kind: str, size: float) -> dict[str, Any]:
    """Build one value, put it in a fresh store and forget it; what the children need to know."""
    from mlops_nb.hashing import content_hash
    from mlops_nb.store import Store

    value = VALUES[kind][1](size)
    store = Store(work / kind)
    ref = store.put(value)
    (serializer,) = store.query("SELECT serializer FROM objects WHERE sha256 = ?", (ref.sha256,))[0]
    path = store.object_path(ref.sha256, {"parquet": ".parquet", "npy": ".npy"}[serializer])
    stored = {
        "store": str(store.root),
        "sha256": ref.sha256,
        "path": str(path),
        "size": value_size(value),
        "file_size": path.stat().st_size,
        "hash": content_hash(value),
        "serializer": serializer,
    }
    store.close()
    del value
    gc.collect()
    return stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--gb", type=float, default=1.0, help="Size of each value in memory, GB.")
    parser.add_argument("--rounds", type=int, default=3, help="Restores per contender.")
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it.")
    args = parser.parse_args()
    if args.child:
        return child_main(args.child)

    _common.header(
        "restoring large values from the store: peak memory and throughput",
        ".venv/bin/python benchmarks/bench_restore.py",
    )
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    print(f"versions: pandas {pd.__version__}, pyarrow {pa.__version__}, numpy {np.__version__}")
    load_before = os.getloadavg()[0]
    work = args.keep or Path(tempfile.mkdtemp(prefix="mlops_nb_bench_restore_"))
    work.mkdir(parents=True, exist_ok=True)
    rows, targets, all_equal, reset = [], [], True, True
    try:
        for kind, (title, _) in VALUES.items():
            stored = store_value(work, kind, args.gb * 1e9)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PER_VALUE[kind]}
            for _ in range(args.rounds):
                for name in PER_VALUE[kind]:
                    result = run_child(work, {**stored, "contender": name})
                    runs[name].append(result)
                    all_equal &= result["hash"] == stored["hash"]
                    reset &= result["reset"]
            baseline = PER_VALUE[kind][1]
            for name, results in runs.items():
                seconds = _common.median([r["seconds"] for r in results])
                peak = max(r["peak"] for r in results) / stored["size"]
                after = max(r["peak_after_reading"] for r in results) / stored["size"]
                is_target = name == "Store.get"
                rows.append([
                    title, name, f"{stored['size'] / 1e9:.3f}", f"{seconds:.2f}",
                    f"{stored['size'] / 1e9 / seconds:.2f}", f"{peak:.2f}", f"{after:.2f}",
                    f"{_common.median([r['seconds'] for r in runs[baseline]]) / seconds:.2f}",
                    f"<= {TARGET_RATIO:g}" if is_target else "context",
                    _common.verdict(peak <= TARGET_RATIO) if is_target else "",
                ])  # fmt: skip
                if is_target:
                    targets.append(peak <= TARGET_RATIO)
            print(
                f"{title}: {stored['size'] / 1e9:.3f} GB in memory, {stored['serializer']} file of "
                f"{stored['file_size'] / 1e9:.3f} GB",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"median of {args.rounds} restores each, every one in a fresh process, contenders taking "
        f"turns; GB = 10**9 bytes of the value in memory; peak = the largest extra memory of the "
        f"{args.rounds} runs / value size; x previous speed = previous path's median s / this "
        f"one's (above 1: faster)."
    )
    headers = ["value", "read path", "GB", "median s", "GB/s", "peak x size",
               "after reading x size", "x previous speed", "target", "result"]  # fmt: skip
    print(_common.table(rows, headers))
    if not reset:
        print("note: /proc/self/clear_refs could not be written: peaks include start-up.")
    print(f"every restored value has the stored value's content hash: {all_equal}")
    print(
        f"load average (1 min): {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
        f"end (on {os.cpu_count()} cores)"
    )
    print()
    passed = all(targets) and all_equal
    print(f"RESULT restore: {_common.verdict(passed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
