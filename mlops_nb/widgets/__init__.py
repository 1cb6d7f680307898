"""ipywidgets views: a live DAG of a running pipeline and a browser of the store (presentation only).

Imported on demand, so that ``%load_ext mlops_nb`` does not load ipywidgets.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DagView", "LiveDag", "StoreBrowser"]


def __getattr__(name: str) -> Any:
    if name in ("DagView", "LiveDag"):
        from .live_dag import LiveDag

        return LiveDag  # DagView(pipeline) is the live view; mlops_nb.display has the static one
    if name == "StoreBrowser":
        from .store_browser import StoreBrowser

        return StoreBrowser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
