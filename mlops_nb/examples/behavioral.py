"""Four behavioural design patterns at work on small ML tasks, for lesson 08."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_iris, load_wine
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "Check",
    "EventSource",
    "FillStrategy",
    "IrisTrainer",
    "LivePlot",
    "Observer",
    "Trainer",
    "ValidationError",
    "WineTrainer",
    "constant_fill",
    "impute",
    "mean_fill",
    "median_fill",
    "metrics_logger",
    "null_check",
    "range_check",
    "schema_check",
    "train_with_events",
    "validate",
]

# Strategy

#: A fill strategy: given a numeric column, return the value its missing entries should take.
FillStrategy = Callable[[pd.Series], float]


def mean_fill(column: pd.Series) -> float:
    """Fill with the column's mean.

    >>> mean_fill(pd.Series([1.0, None, 3.0]))
    2.0
    """
    return float(column.mean())


def median_fill(column: pd.Series) -> float:
    """Fill with the column's median, which outliers do not drag.

    >>> median_fill(pd.Series([1.0, 2.0, None, 100.0]))
    2.0
    """
    return float(column.median())


def constant_fill(value: float) -> FillStrategy:
    """Make a strategy that fills with a fixed ``value``, whatever the column holds.

    >>> constant_fill(-1.0)(pd.Series([1.0, None]))
    -1.0
    """

    def constant(column: pd.Series) -> float:
        return value

    return constant


def impute(frame: pd.DataFrame, fill: FillStrategy) -> pd.DataFrame:
    """Return a copy of ``frame`` whose missing numeric values are replaced using ``fill``.

    ``impute`` does not know which strategy it runs: a new one is a new function, not an edit here.

    Parameters
    ----------
    frame : pandas.DataFrame
        The data; it is not modified.
    fill : FillStrategy
        Called once per numeric column with missing values; returns the value to fill with.

    Examples
    --------
    >>> data = pd.DataFrame({"x": [1.0, None, 5.0], "name": ["a", "b", None]})
    >>> impute(data, median_fill)["x"].tolist()
    [1.0, 3.0, 5.0]
    """
    filled = frame.copy()
    for name in filled.select_dtypes("number").columns:
        if filled[name].isna().any():
            filled[name] = filled[name].fillna(fill(filled[name]))
    return filled


# Observer

#: An observer: called with the event's name and its data.
Observer = Callable[[str, dict[str, Any]], None]


class EventSource:
    """Tells every subscribed observer about each event, in the order they subscribed.

    The code that emits events knows nothing about who listens: only this small interface.
    An observer that raises stops the notification: the error reaches the emitting code with a
    message naming the observer and the event (a broken log must not go unnoticed).

    Examples
    --------
    >>> events = EventSource()
    >>> seen = []
    >>> _ = events.subscribe(lambda event, data: seen.append((event, data["epoch"])))
    >>> events.notify("epoch_end", epoch=1)
    >>> seen
    [('epoch_end', 1)]
    """

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> Observer:
        """Call ``observer`` on every later event; returns it, so it can be unsubscribed."""
        self._observers.append(observer)
        return observer

    def unsubscribe(self, observer: Observer) -> None:
        """Stop calling ``observer``; raises ``ValueError`` when it is not subscribed."""
        if observer not in self._observers:
            raise ValueError(f"{observer!r} is not subscribed, so it cannot be unsubscribed.")
        self._observers.remove(observer)

    def notify(self, event: str, **data: Any) -> None:
        """Call every observer with ``event`` and ``data``, in subscription order."""
        for observer in list(self._observers):  # a copy: an observer may unsubscribe itself
            try:
                observer(event, data)
            except Exception as error:
                name = getattr(observer, "__name__", type(observer).__name__)
                raise RuntimeError(
                    f"Observer {name!r} failed on event {event!r}: {error!r}. "
                    f"Fix it, or unsubscribe it to carry on without it."
                ) from error


def metrics_logger(log: list[dict[str, Any]]) -> Observer:
    """Make an observer that appends each event, as a flat dict, to ``log``.

    >>> log = []
    >>> metrics_logger(log)("epoch_end", {"epoch": 1, "accuracy": 0.9})
    >>> log
    [{'event': 'epoch_end', 'epoch': 1, 'accuracy': 0.9}]
    """

    def log_metrics(event: str, data: dict[str, Any]) -> None:
        log.append({"event": event, **data})

    return log_metrics


class LivePlot:
    """An observer that keeps a matplotlib line of one metric, one point per ``epoch_end``.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    metric : str
        Which value of the event's data to plot against its ``epoch``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> plot = LivePlot(ax, "accuracy")
    >>> plot("epoch_end", {"epoch": 1, "accuracy": 0.5})
    >>> list(plot.line.get_ydata())
    [0.5]
    >>> plt.close(fig)
    """

    def __init__(self, ax: Any, metric: str) -> None:
        self.ax, self.metric = ax, metric
        (self.line,) = ax.plot([], [], marker="o", label=metric)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event != "epoch_end":
            return
        self.line.set_data(
            [*self.line.get_xdata(), data["epoch"]], [*self.line.get_ydata(), data[self.metric]]
        )
        self.ax.relim()
        self.ax.autoscale_view()
        self.ax.figure.canvas.draw_idle()


def train_with_events(
    X: np.ndarray, y: np.ndarray, events: EventSource, *, epochs: int = 5, seed: int = 0
) -> SGDClassifier:
    """Train a linear classifier epoch by epoch, announcing ``epoch_end`` and ``training_end``.

    Each ``epoch_end`` carries ``epoch`` (from 1) and ``accuracy`` on the training data;
    ``training_end`` carries ``epochs``. The loop neither prints nor plots: observers do.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> events = EventSource()
    >>> log = []
    >>> _ = events.subscribe(metrics_logger(log))
    >>> _ = train_with_events(X, y, events, epochs=2)
    >>> [entry["event"] for entry in log]
    ['epoch_end', 'epoch_end', 'training_end']
    """
    model = SGDClassifier(random_state=seed)
    order = np.random.default_rng(seed)
    classes = np.unique(y)
    for epoch in range(1, epochs + 1):
        shuffled = order.permutation(len(y))
        model.partial_fit(X[shuffled], y[shuffled], classes=classes)
        events.notify("epoch_end", epoch=epoch, accuracy=float(model.score(X, y)))
    events.notify("training_end", epochs=epochs)
    return model


# Template Method


class Trainer:
    """A training run whose steps are fixed (load, prepare, fit, evaluate) and whose details are not.

    :meth:`run` is the template method: subclasses never override it, only the hooks it calls.
    ``load`` and ``make_model`` must be written; ``prepare``, ``fit`` and ``evaluate`` have
    defaults (a stratified 75/25 split, ``make_model().fit``, accuracy).

    Parameters
    ----------
    seed : int
        The random seed of the split.

    Examples
    --------
    >>> IrisTrainer().run()
    1.0
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def run(self) -> float:
        """Load, prepare, fit and evaluate, always in this order; returns the test score."""
        X, y = self.load()
        X_train, X_test, y_train, y_test = self.prepare(X, y)
        self.model_ = self.fit(X_train, y_train)
        return self.evaluate(self.model_, X_test, y_test)

    def load(self) -> tuple[Any, Any]:
        """Return the features and the labels."""
        raise NotImplementedError(f"{type(self).__name__} must define load() -> (X, y).")

    def make_model(self) -> Any:
        """Return a new, unfitted estimator."""
        raise NotImplementedError(f"{type(self).__name__} must define make_model().")

    def prepare(self, X: Any, y: Any) -> Sequence[Any]:
        """Split into ``X_train, X_test, y_train, y_test``."""
        return train_test_split(X, y, test_size=0.25, random_state=self.seed, stratify=y)

    def fit(self, X_train: Any, y_train: Any) -> Any:
        """Return the model fitted on the training rows."""
        return self.make_model().fit(X_train, y_train)

    def evaluate(self, model: Any, X_test: Any, y_test: Any) -> float:
        """Return the model's score on the test rows."""
        return float(model.score(X_test, y_test))


class IrisTrainer(Trainer):
    """Logistic regression on the iris flowers: only the data and the model are its own."""

    def load(self) -> tuple[Any, Any]:
        return load_iris(return_X_y=True)

    def make_model(self) -> ClassifierMixin:
        return LogisticRegression(max_iter=1000)


class WineTrainer(Trainer):
    """Scaled logistic regression on the wines: only the data and the model are its own."""

    def load(self) -> tuple[Any, Any]:
        return load_wine(return_X_y=True)

    def make_model(self) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression())


# Chain of Responsibility

#: A check: returns ``None`` when the data passes, else what is wrong with it.
Check = Callable[[pd.DataFrame], str | None]


class ValidationError(ValueError):
    """Data failed a check of a validation chain."""


def schema_check(expected: dict[str, str]) -> Check:
    """Make a check that the frame has these columns, with these dtype kinds.

    ``expected`` maps a column to ``"number"`` or ``"text"``.

    >>> check = schema_check({"age": "number", "city": "text"})
    >>> check(pd.DataFrame({"age": [31]}))
    "missing columns ['city']"
    """

    def schema(frame: pd.DataFrame) -> str | None:
        missing = [name for name in expected if name not in frame.columns]
        if missing:
            return f"missing columns {missing}"
        wrong = [
            name
            for name, kind in expected.items()
            if pd.api.types.is_numeric_dtype(frame[name]) != (kind == "number")
        ]
        if wrong:
            return f"columns {wrong} do not have the expected kind {[expected[n] for n in wrong]}"
        return None

    return schema


def null_check(columns: Sequence[str]) -> Check:
    """Make a check that these columns have no missing values.

    >>> null_check(["age"])(pd.DataFrame({"age": [31, None]}))
    "missing values in columns ['age'], rows [1]"
    """

    def nulls(frame: pd.DataFrame) -> str | None:
        missing = frame[list(columns)].isna()
        if not missing.any(axis=None):
            return None
        bad_columns = [name for name in columns if missing[name].any()]
        bad_rows = frame.index[missing.any(axis=1)].tolist()
        return f"missing values in columns {bad_columns}, rows {bad_rows}"

    return nulls


def range_check(column: str, low: float, high: float) -> Check:
    """Make a check that ``column`` lies within ``[low, high]``.

    >>> range_check("age", 0, 120)(pd.DataFrame({"age": [31, 250]}))
    "column 'age' outside [0, 120] in rows [1]"
    """

    def ranges(frame: pd.DataFrame) -> str | None:
        outside = ~frame[column].between(low, high)
        if not outside.any():
            return None
        return f"column {column!r} outside [{low}, {high}] in rows {frame.index[outside].tolist()}"

    return ranges


def validate(frame: pd.DataFrame, checks: Sequence[Check]) -> pd.DataFrame:
    """Pass ``frame`` along ``checks`` in order; stop at the first that fails.

    Each check has one job; ``validate`` only runs them in order, so later checks may assume
    what earlier ones proved (the range check runs on columns the schema check found).

    Returns
    -------
    pandas.DataFrame
        ``frame`` itself, when every check passes.

    Raises
    ------
    ValidationError
        Naming the first failing check and what it found.

    Examples
    --------
    >>> data = pd.DataFrame({"age": [31, 250]})
    >>> validate(data, [schema_check({"age": "number"}), range_check("age", 0, 120)])
    Traceback (most recent call last):
    ...
    mlops_nb.examples.behavioral.ValidationError: Check 'ranges' failed: column 'age' outside [0, 120] in rows [1]. ...
    """
    for check in checks:
        problem = check(frame)
        if problem is not None:
            name = getattr(check, "__name__", type(check).__name__)
            raise ValidationError(
                f"Check {name!r} failed: {problem}. Fix the data upstream, or the check if the "
                f"data is right; later checks did not run."
            )
    return frame
