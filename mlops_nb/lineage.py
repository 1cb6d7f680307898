"""Lineage: what data a step used, collected while the step runs (e.g. feature view versions)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["collecting", "record"]

_entries: ContextVar[list[dict[str, Any]] | None] = ContextVar("mlops_nb_lineage", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[dict[str, Any]]]:
    """Collect every :func:`record` made inside the block into the yielded list.

    >>> with collecting() as found:
    ...     record({"view": "drivers", "version": 1})
    >>> found
    [{'view': 'drivers', 'version': 1}]
    """
    entries: list[dict[str, Any]] = []
    token = _entries.set(entries)
    try:
        yield entries
    finally:
        _entries.reset(token)


def record(entry: dict[str, Any]) -> None:
    """Note that the running code used some data; a no-op when nothing is collecting."""
    entries = _entries.get()
    if entries is not None:
        entries.append(entry)
