"""Shared fixtures: a real IPython shell with the extension loaded, on a fresh store."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython import get_ipython
from IPython.testing.globalipapp import start_ipython

from mlops_nb import Pipeline, Store


class Notebook:
    """Runs cells in a real InteractiveShell, like a notebook would, and returns their result."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell

    def run(self, cell: str) -> Any:
        return self.shell.run_cell(cell, store_history=True)

    def ok(self, cell: str) -> Any:
        """Run a cell that must succeed."""
        result = self.run(cell)
        assert result.success, f"cell failed: {result.error_before_exec or result.error_in_exec!r}"
        return result

    def error(self, cell: str) -> BaseException:
        """Run a cell that must fail and return its exception."""
        result = self.run(cell)
        error = result.error_before_exec or result.error_in_exec
        assert error is not None, "the cell was expected to fail"
        return error

    @property
    def ns(self) -> dict[str, Any]:
        return self.shell.user_ns

    @property
    def pipeline(self) -> Pipeline:
        import mlops_nb

        return mlops_nb.pipeline()


@pytest.fixture
def store_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "store"
    monkeypatch.setenv("MLOPS_NB_HOME", str(home))
    return home


@pytest.fixture
def nb(store_home: Path) -> Iterator[Notebook]:
    """A fresh namespace and a freshly loaded extension, as after a kernel restart."""
    start_ipython()  # once per process; later calls are no-ops
    shell = get_ipython()
    assert shell is not None
    shell.reset(new_session=True)
    from mlops_nb.magics import load

    load(shell)  # a new extension instance: nothing carried over in memory
    yield Notebook(shell)
    shell.reset(new_session=True)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "api-store")


# -- reliability tests: heavy variants, figures, fast writer processes ------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--heavy",
        action="store_true",
        help="Run the heavy reliability variants: more kills, more writer processes and more "
        "generated cases (same as MLOPS_NB_HEAVY=1).",
    )


@pytest.fixture(scope="session")
def heavy(request: pytest.FixtureRequest) -> bool:
    """Whether to run the heavy variants of the reliability tests."""
    return bool(request.config.getoption("--heavy")) or os.environ.get("MLOPS_NB_HEAVY") == "1"


#: What the reliability tests measured (kills, processes, generated cases), shown after the run.
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="session")
def figures() -> dict[str, str]:
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def forkserver() -> ForkServerContext:
    """Start writer processes in milliseconds: each is forked from a server that imported the
    libraries once, never from this (multi-threaded) test process."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["pytest", "numpy", "pandas", "pyarrow.parquet", "duckdb", "sklearn.preprocessing",
         "skops.io", "cloudpickle", "mlops_nb.features", "mlops_nb.pipeline", "mlops_nb.transforms"]
    )  # fmt: skip
    return context
