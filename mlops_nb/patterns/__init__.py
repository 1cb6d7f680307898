"""ML design patterns as small scikit-learn components: the Cascade and the multimodal preprocessor."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Cascade", "ImageFlattener", "ModalityError", "infer_modalities", "multimodal_preprocessor"]

# scikit-learn is imported only when a pattern is used, so `import mlops_nb` stays light.
_HOMES = {
    "Cascade": ".cascade",
    "multimodal_preprocessor": ".multimodal",
    "infer_modalities": ".multimodal",
    "ImageFlattener": ".multimodal",
    "ModalityError": ".multimodal",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
