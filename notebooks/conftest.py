"""nbval set-up: each notebook's kernel starts against its own fresh, empty mlops_nb store."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_HOME = "MLOPS_NB_HOME"


class _NotebookStore:
    """The temporary store of the notebook whose cells are running, and the value it replaced."""

    notebook: pytest.Collector | None = None
    home: str | None = None
    saved: str | None = None

    def start(self, notebook: pytest.Collector | None) -> None:
        self.notebook = notebook
        self.saved = os.environ.get(_HOME)
        self.home = tempfile.mkdtemp(prefix="mlops_nb_home_")
        os.environ[_HOME] = self.home

    def finish(self) -> None:
        if self.saved is None:
            os.environ.pop(_HOME, None)
        else:
            os.environ[_HOME] = self.saved
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
        self.notebook = self.home = self.saved = None


_current = _NotebookStore()


def _is_notebook_cell(item: pytest.Item | None) -> bool:
    return item is not None and item.path.suffix == ".ipynb"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # nbval starts a notebook's kernel while setting up its first cell, and the kernel inherits
    # os.environ at that moment: so the store must be switched before any other setup runs.
    if _is_notebook_cell(item) and item.parent is not _current.notebook:
        _current.finish()
        _current.start(item.parent)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield  # nbval stops the kernel here, after the notebook's last cell
    if _is_notebook_cell(item) and (nextitem is None or nextitem.parent is not item.parent):
        _current.finish()
