"""Helpers shared by the benchmarks: machine description, statistics, tables, a real shell."""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    """One line: cores, CPU model, Python version, platform."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {model}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def header(title: str, command: str) -> None:
    print(f"== {title} ==")
    print(f"machine: {machine()}")
    print(f"command: {command}")
    print()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile, ``fraction`` in [0, 1]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A plain-text table: numeric columns right-aligned, text columns left-aligned."""
    body = [[str(cell) for cell in row] for row in rows]
    cells = [headers] + body
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in body) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        columns = zip(row, widths, numeric, strict=True)
        parts = [cell.rjust(w) if right else cell.ljust(w) for cell, w, right in columns]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in body)])


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").lstrip("<>= "))
    except ValueError:
        return False
    return True


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def fresh_shell() -> Any:
    """A real IPython InteractiveShell with ``mlops_nb`` loaded and an empty store.

    IPython's own folder and the mlops_nb store both go to a temporary folder (removed at exit),
    and the input history is kept in memory: a benchmark neither reads nor writes the user's files.
    """
    scratch = Path(tempfile.mkdtemp(prefix="mlops_nb_bench_"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ["IPYTHONDIR"] = str(scratch / "ipython")
    os.environ["MLOPS_NB_HOME"] = str(scratch / "store")
    os.environ.pop("JPY_SESSION_NAME", None)
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    result = shell.run_cell("%load_ext mlops_nb", store_history=False)
    result.raise_error()
    return shell


def run(shell: Any, cell: str) -> None:
    """Run a cell like a notebook would, and fail loudly if it raised."""
    result = shell.run_cell(cell, store_history=True)
    if not result.success:
        print(f"cell failed:\n{cell}", file=sys.__stderr__)
        result.raise_error()
