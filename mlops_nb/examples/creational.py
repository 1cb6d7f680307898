"""Creational patterns for ML code: a model factory, a pipeline builder, and injected state."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Self

from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import SelectKBest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlops_nb.errors import did_you_mean

__all__ = [
    "MODELS",
    "MetricsLog",
    "PipelineBuilder",
    "evaluate",
    "evaluate_with_global_log",
    "global_log",
    "make_model",
]

# Read-only, so that extending it means building a new mapping, never changing everyone's.
MODELS: Mapping[str, type[BaseEstimator]] = MappingProxyType(
    {
        "decision_tree": DecisionTreeClassifier,
        "knn": KNeighborsClassifier,
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
    }
)


def make_model(
    config: Mapping[str, Any], registry: Mapping[str, type[BaseEstimator]] = MODELS
) -> BaseEstimator:
    """Create an unfitted estimator from a config dict (Factory pattern).

    Parameters
    ----------
    config : mapping
        ``{"model": name, "params": {...}}``; ``params`` is optional.
    registry : mapping, default MODELS
        Model names to estimator classes. Pass ``{**MODELS, "mine": MyModel}`` to add models
        without editing this function.

    Returns
    -------
    BaseEstimator
        A new, unfitted estimator.

    Raises
    ------
    ValueError
        If the name is not in ``registry``.

    Examples
    --------
    >>> make_model({"model": "logistic_regression", "params": {"C": 0.5}})
    LogisticRegression(C=0.5)
    """
    name = config["model"]
    if name not in registry:
        raise ValueError(
            f"Unknown model {name!r}: choose one of {', '.join(map(repr, sorted(registry)))}, "
            f"or pass registry={{**MODELS, {name!r}: YourEstimator}}.{did_you_mean(name, registry)}"
        )
    return registry[name](**config.get("params", {}))


class PipelineBuilder:
    """Assemble a preprocessing + model scikit-learn Pipeline step by step (Builder pattern).

    Preprocessing steps keep the order they are added in; the model is always the last step.

    Examples
    --------
    >>> pipe = PipelineBuilder().impute().scale().model(LogisticRegression()).build()
    >>> [name for name, _ in pipe.steps]
    ['impute', 'scale', 'model']
    """

    def __init__(self) -> None:
        self._steps: list[tuple[str, BaseEstimator]] = []
        self._model: BaseEstimator | None = None

    def _add(self, name: str, step: BaseEstimator) -> Self:
        if any(existing == name for existing, _ in self._steps):
            raise ValueError(f"The pipeline already has a {name!r} step: add each step once.")
        self._steps.append((name, step))
        return self

    def impute(self, strategy: str = "median") -> Self:
        """Fill missing values with ``SimpleImputer(strategy=strategy)``."""
        return self._add("impute", SimpleImputer(strategy=strategy))

    def scale(self) -> Self:
        """Standardise every column with ``StandardScaler``."""
        return self._add("scale", StandardScaler())

    def select_best(self, k: int) -> Self:
        """Keep the ``k`` columns most related to the target (``SelectKBest``)."""
        return self._add("select", SelectKBest(k=k))

    def model(self, estimator: BaseEstimator) -> Self:
        """Set the final estimator (replacing any earlier one)."""
        self._model = estimator
        return self

    def build(self) -> Pipeline:
        """Return a new Pipeline of fresh clones, so two builds never share fitted state.

        Raises
        ------
        ValueError
            If no model was set.
        """
        if self._model is None:
            raise ValueError("The pipeline has no model: call .model(estimator) before .build().")
        steps = [*self._steps, ("model", self._model)]
        return Pipeline([(name, clone(step)) for name, step in steps])


class MetricsLog:
    """Records one experiment's metrics by name.

    Examples
    --------
    >>> log = MetricsLog()
    >>> log.record("accuracy", 0.9)
    >>> log.metrics
    {'accuracy': 0.9}
    """

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def record(self, name: str, value: float) -> None:
        """Store ``value`` under ``name``, replacing an earlier value."""
        self.metrics[name] = value


def evaluate(name: str, model: Any, X: Any, y: Any, log: MetricsLog) -> dict[str, float]:
    """Record ``model``'s accuracy on ``X, y`` as ``name`` in the given ``log``; return its metrics.

    The log is passed in (dependency injection): each caller, and each test, brings its own.

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> model = DummyClassifier().fit([[0], [1]], [1, 1])
    >>> evaluate("dummy", model, [[0], [1]], [1, 1], MetricsLog())
    {'dummy': 1.0}
    """
    log.record(name, float(model.score(X, y)))
    return dict(log.metrics)


# The smell the lessons show: one log shared by every caller of this module.
_GLOBAL_LOG = MetricsLog()


def global_log() -> MetricsLog:
    """The one module-wide MetricsLog (Singleton): every caller gets the same object.

    Examples
    --------
    >>> global_log() is global_log()
    True
    """
    return _GLOBAL_LOG


def evaluate_with_global_log(name: str, model: Any, X: Any, y: Any) -> dict[str, float]:
    """Like :func:`evaluate`, but writes to :func:`global_log`, so calls see each other's metrics."""
    return evaluate(name, model, X, y, global_log())
