"""Structural design patterns in a few lines each (Adapter, Decorator, Composite) for lesson 07."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

__all__ = [
    "Group",
    "NumpyLogit",
    "NumpyLogitAdapter",
    "RuleScorer",
    "RuleScorerAdapter",
    "Scorer",
    "SklearnScorer",
    "Step",
    "cached",
    "logged",
    "timed",
]

F = TypeVar("F", bound=Callable[..., Any])


# -- Adapter ---------------------------------------------------------------------------------------
class Scorer(Protocol):
    """The one interface the serving code needs: a probability of the positive class per row."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of shape ``(n_rows, 2)``: column 0 negative, column 1 positive."""
        ...


class SklearnScorer:
    """Adapts any fitted scikit-learn classifier (already the right shape: it only delegates).

    Parameters
    ----------
    model : object
        A fitted scikit-learn classifier with ``predict_proba``.

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> model = DummyClassifier(strategy="prior").fit([[0], [1], [2], [3]], [0, 0, 0, 1])
    >>> SklearnScorer(model).predict_proba(np.array([[5]])).tolist()
    [[0.75, 0.25]]
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The wrapped model's probabilities, unchanged."""
        return np.asarray(self.model.predict_proba(X))


class RuleScorer:
    """A hand-written rule from another team: one row (a dict) in, a risk score from 0 to 100 out.

    Parameters
    ----------
    column : str
        The feature the rule looks at.
    threshold : float
        Rows above it are risky.

    Examples
    --------
    >>> RuleScorer("mean radius", 15.0).score({"mean radius": 20.0})
    90
    """

    def __init__(self, column: str, threshold: float) -> None:
        self.column = column
        self.threshold = threshold

    def score(self, row: dict[str, float]) -> int:
        """90 when ``row[column]`` is above the threshold, else 10."""
        return 90 if row[self.column] > self.threshold else 10


class RuleScorerAdapter:
    """Gives a RuleScorer the ``predict_proba`` interface: arrays in, a two-column array out.

    Parameters
    ----------
    rule : RuleScorer
        The rule to adapt.
    columns : sequence of str
        The names of the columns of the arrays passed to ``predict_proba``.

    Examples
    --------
    >>> adapter = RuleScorerAdapter(RuleScorer("size", 15.0), columns=["size"])
    >>> adapter.predict_proba(np.array([[20.0], [3.0]])).tolist()
    [[0.1, 0.9], [0.9, 0.1]]
    """

    def __init__(self, rule: RuleScorer, columns: Sequence[str]) -> None:
        self.rule = rule
        self.columns = list(columns)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """One ``rule.score`` per row, turned from 0..100 into probabilities."""
        scores = np.array([self.rule.score(dict(zip(self.columns, row))) for row in X])
        return np.column_stack([100 - scores, scores]) / 100


class NumpyLogit:
    """A logistic model in plain numpy, with its own names: ``weights``, ``bias``, ``probability``.

    Parameters
    ----------
    weights : array-like
        One weight per column.
    bias : float
        The intercept.

    Examples
    --------
    >>> NumpyLogit([1.0], 0.0).probability(np.array([[0.0]])).tolist()
    [0.5]
    """

    def __init__(self, weights: Sequence[float] | np.ndarray, bias: float) -> None:
        self.weights = np.asarray(weights, dtype=float)
        self.bias = bias

    def probability(self, X: np.ndarray) -> np.ndarray:
        """The probability of the positive class, one number per row (a 1-D array)."""
        return np.asarray(1 / (1 + np.exp(-(np.asarray(X) @ self.weights + self.bias))))


class NumpyLogitAdapter:
    """Gives a NumpyLogit the ``predict_proba`` interface (a different name and a different shape).

    Parameters
    ----------
    model : NumpyLogit
        The model to adapt.

    Examples
    --------
    >>> NumpyLogitAdapter(NumpyLogit([1.0], 0.0)).predict_proba(np.array([[0.0]])).tolist()
    [[0.5, 0.5]]
    """

    def __init__(self, model: NumpyLogit) -> None:
        self.model = model

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Column 1 is ``model.probability(X)``, column 0 its complement."""
        positive = self.model.probability(X)
        return np.column_stack([1 - positive, positive])


# -- Decorator -------------------------------------------------------------------------------------
def timed(function: F) -> F:
    """Measure each call of ``function``; the last duration is kept in ``wrapper.seconds``.

    Parameters
    ----------
    function : callable
        The function to time.

    Returns
    -------
    callable
        A function with the same name, docstring and result.

    Examples
    --------
    >>> @timed
    ... def train(n):
    ...     "Pretend to train."
    ...     return n * 2
    >>> train(21), train.__name__, train.seconds >= 0
    (42, 'train', True)
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            wrapper.seconds = time.perf_counter() - started  # type: ignore[attr-defined]

    wrapper.seconds = None  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def logged(function: F) -> F:
    """Log each call of ``function`` and what it returned, on the ``mlops_nb.examples`` logger.

    Parameters
    ----------
    function : callable
        The function whose calls to log.

    Returns
    -------
    callable
        A function with the same name, docstring and result.

    Examples
    --------
    >>> @logged
    ... def train(n):
    ...     return n * 2
    >>> train(21)
    42
    """
    logger = logging.getLogger("mlops_nb.examples")

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logger.info("calling %s with %r %r", function.__name__, args, kwargs)
        result = function(*args, **kwargs)
        logger.info("%s returned %r", function.__name__, result)
        return result

    return wrapper  # type: ignore[return-value]


def cached(function: F) -> F:
    """Remember ``function``'s result per arguments (which must be hashable), in memory.

    ``wrapper.calls`` counts the calls that really ran ``function``.

    Parameters
    ----------
    function : callable
        A function whose result depends only on its arguments.

    Returns
    -------
    callable
        A function with the same name, docstring and result.

    Examples
    --------
    >>> @cached
    ... def train(n):
    ...     return n * 2
    >>> train(21), train(21), train(1), train.calls
    (42, 42, 2, 2)
    """
    results: dict[Hashable, Any] = {}

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        if key not in results:
            wrapper.calls += 1  # type: ignore[attr-defined]
            results[key] = function(*args, **kwargs)
        return results[key]

    wrapper.calls = 0  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


# -- Composite -------------------------------------------------------------------------------------
class Step:
    """A leaf: one named function from data to data.

    Parameters
    ----------
    name : str
        What the step does.
    function : callable
        Takes the data and returns the new data.

    Examples
    --------
    >>> Step("double", lambda xs: [x * 2 for x in xs]).run([1, 2])
    [2, 4]
    """

    def __init__(self, name: str, function: Callable[[Any], Any]) -> None:
        self.name = name
        self.function = function

    def run(self, data: Any) -> Any:
        """Apply the function."""
        return self.function(data)

    def names(self) -> list[str]:
        """This step's name, in a list (so that a Group can concatenate them)."""
        return [self.name]


class Group:
    """A composite: steps and groups run in order, with the same ``run(data)`` as one step.

    Parameters
    ----------
    name : str
        What the group does.
    children : sequence of Step or Group
        Run first to last, each on the previous one's output.

    Examples
    --------
    >>> clean = Group("clean", [Step("drop negatives", lambda xs: [x for x in xs if x >= 0])])
    >>> Group("all", [clean, Step("sum", sum)]).run([3, -1, 4])
    7
    """

    def __init__(self, name: str, children: Sequence[Step | Group]) -> None:
        self.name = name
        self.children = list(children)

    def run(self, data: Any) -> Any:
        """Run each child on the output of the one before."""
        for child in self.children:
            data = child.run(data)
        return data

    def names(self) -> list[str]:
        """Every leaf step's name, in the order they run, as ``group/step``."""
        return [f"{self.name}/{name}" for child in self.children for name in child.names()]
