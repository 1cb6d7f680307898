"""mlops_nb: teach MLOps design patterns by doing them, in Jupyter.

Load the notebook magics with ``%load_ext mlops_nb``; the same features work in plain Python
through :class:`Pipeline` and :class:`Store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    CorruptObjectError,
    CycleError,
    DiskFullError,
    InvalidNameError,
    MissingInputError,
    MlopsNbError,
    MutationWarning,
    StepSyntaxError,
    StoreVersionError,
    UnhashableValueError,
    UnknownStepError,
    UnstorableValueError,
    ValueTooLargeError,
)
from .executors import DaskExecutor
from .features import FeatureStore, FeatureValidationError, FeatureView, UnknownViewError
from .pipeline import Pipeline, StepReport
from .steps import Step
from .transforms import (
    LibraryVersionWarning,
    SkewError,
    TransformError,
    TransformRegistry,
    UntrustedTypesError,
)
from .store import Store

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__version__ = "0.1.0"

__all__ = [
    "CorruptObjectError",
    "CycleError",
    "DaskExecutor",
    "DiskFullError",
    "FeatureStore",
    "FeatureValidationError",
    "FeatureView",
    "InvalidNameError",
    "LibraryVersionWarning",
    "MissingInputError",
    "MlopsNbError",
    "MutationWarning",
    "Pipeline",
    "SkewError",
    "Step",
    "StepReport",
    "StepSyntaxError",
    "Store",
    "StoreVersionError",
    "TransformError",
    "TransformRegistry",
    "UnhashableValueError",
    "UnknownStepError",
    "UnknownViewError",
    "UnstorableValueError",
    "UntrustedTypesError",
    "ValueTooLargeError",
    "load_ipython_extension",
    "pipeline",
    "step",
]


def load_ipython_extension(shell: InteractiveShell) -> None:
    """Register ``%%step``, ``%pipeline``, ``%dag``, ``%%features``, ``%%transform`` (%load_ext)."""
    from .magics import load

    load(shell)


def pipeline() -> Pipeline:
    """The active notebook's Pipeline (the one ``%%step`` cells are added to).

    Raises :class:`MlopsNbError` outside IPython or before ``%load_ext mlops_nb``.
    """
    from .magics import active_pipeline

    return active_pipeline()


def step(func: Any = None, **options: Any) -> Any:
    """Decorator: add a function to the active notebook's pipeline, see :meth:`Pipeline.step`."""
    return pipeline().step(func, **options)
