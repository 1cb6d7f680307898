"""Lineage: what data a step used, collected while the step runs (e.g. feature view versions)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["collecting", "record", "is_current"]

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


def is_current(store: Any, entry: dict[str, Any]) -> bool:
    """Whether the data a lineage entry describes is unchanged (new feature data makes it stale)."""
    if entry.get("kind") == "feature_view":
        from .features import FeatureStore

        return FeatureStore(store).lineage_is_current(entry)
    return True
