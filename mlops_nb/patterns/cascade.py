"""The Cascade pattern as a scikit-learn classifier: a router picks which expert model answers each row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.utils import Tags, _safe_indexing, get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["Cascade"]


def _experts_have(method: str) -> Callable[[Cascade], bool]:
    """For ``available_if``: the cascade offers ``method`` only if every expert does."""

    def check(cascade: Cascade) -> bool:
        experts = getattr(cascade, "experts_", cascade.experts)
        return all(hasattr(expert, method) for expert in experts)

    return check


class Cascade(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A router model sends each row to one of several expert models, trained together in one ``fit``.

    Training splits the rows into segments, one per expert: by ``thresholds`` on the column
    ``segment_by`` (segment 0 holds the rows below the first threshold, segment 1 the next band,
    and so on), or by a function of ``X``. The router is a classifier trained to predict the
    segment of a row; then each expert is trained on the rows the fitted router sends it. To
    predict, the router picks the expert and that expert answers.

    **Why one unit.** An expert is only good on the kind of rows it was trained on, so it must be
    trained on exactly the rows the router will send it. Retrain the router alone (new segments,
    new data, a new threshold) and it silently changes what each expert sees: some rows now reach
    an expert that never saw their kind. No error, no warning, just worse predictions. So one
    ``fit`` trains the router and then the experts, and they travel as one object (one file, one
    version).

    Parameters
    ----------
    router : classifier
        Learns to predict the segment (an expert's position in ``experts``) from ``X``.
        A ``DecisionTreeClassifier(max_depth=1)`` learns a single threshold exactly.
    experts : list of classifiers
        One per segment, in segment order. Each is cloned and fitted on its segment's rows.
    segment_by : int, str or callable, default=0
        How training rows are split: a column (position, or name for a DataFrame) cut at
        ``thresholds``, or a function ``segment_by(X) -> array of expert positions``. To save the
        cascade with skops, a function must be importable (defined in a module, not a lambda).
    thresholds : list of float, optional
        Increasing cut points on the ``segment_by`` column, one fewer than there are experts; a
        row equal to a threshold goes to the upper segment. By default, the column's quantiles on
        the training data, so that segments have equal sizes.

    Attributes
    ----------
    router_ : classifier
        The fitted router.
    experts_ : list of classifiers
        The fitted experts; ``experts_[i]`` answers the rows the router assigns to segment ``i``.
        A segment whose training rows all have the same label gets a ``DummyClassifier`` that
        predicts that label, since many classifiers refuse to train on a single class.
    thresholds_ : ndarray or None
        The cut points used in training (None when ``segment_by`` is a function).
    classes_ : ndarray
        Every class seen in training, across all experts.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray
        Column names seen in ``fit``, when ``X`` was a DataFrame.

    Examples
    --------
    Below 0 the label is ``x > -1``, above 0 it is ``x < 1``: one logistic regression cannot fit
    both, one per segment can.

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> X = np.linspace(-3, 3, 600).reshape(-1, 1)
    >>> y = np.where(X[:, 0] < 0, X[:, 0] > -1, X[:, 0] < 1).astype(int)
    >>> cascade = Cascade(
    ...     DecisionTreeClassifier(max_depth=1),
    ...     [LogisticRegression(), LogisticRegression()],
    ...     thresholds=[0.0],
    ... ).fit(X, y)
    >>> cascade.predict([[-2.0], [-0.5], [0.5], [2.0]])
    array([0, 1, 1, 0])
    >>> bool(cascade.score(X, y) > LogisticRegression().fit(X, y).score(X, y) + 0.2)
    True
    """

    def __init__(
        self,
        router: Any,
        experts: Sequence[Any],
        *,
        segment_by: int | str | Callable[[Any], Any] = 0,
        thresholds: Sequence[float] | None = None,
    ) -> None:
        self.router = router
        self.experts = experts
        self.segment_by = segment_by
        self.thresholds = thresholds

    def fit(self, X: Any, y: Any) -> Cascade:
        """Split the rows into segments, train the router to predict them and each expert on its own.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : Cascade
        """
        n_experts = self._check_params()
        # Checked here for clear errors; DataFrames reach the router and experts unchanged.
        checked, y = validate_data(
            self,
            X,
            y,
            reset=True,
            dtype=None,
            ensure_all_finite=self._needs_finite(),
            ensure_min_samples=2,
        )
        X = X if _is_frame(X) else checked
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        segments, self.thresholds_ = self._segments(X, n_experts)
        self.router_ = clone(self.router).fit(X, segments)
        # Experts learn from the rows the router really sends them, mistakes included.
        routes = self.router_.predict(X)
        self.experts_ = []
        for position, expert in enumerate(self.experts):
            rows = routes == position
            if not rows.any():
                raise ValueError(
                    f"The router sends no training rows to expert {position}, so it cannot be "
                    f"trained. Use fewer experts, or thresholds that leave rows in every segment "
                    f"(thresholds={self.thresholds!r})."
                )
            if len(np.unique(y[rows])) == 1:
                # Every row of the segment has the same label: the answer is known, no model needed.
                expert = DummyClassifier(strategy="prior")
            self.experts_.append(clone(expert).fit(_safe_indexing(X, rows), y[rows]))
        return self

    @available_if(_experts_have("predict"))
    def predict(self, X: Any) -> np.ndarray:
        """Predict with the expert the router picks for each row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        X, segments = self._route(X)
        predictions = np.empty(len(segments), dtype=self.classes_.dtype)
        for position, expert in enumerate(self.experts_):
            rows = segments == position
            if rows.any():
                predictions[rows] = expert.predict(_safe_indexing(X, rows))
        return predictions

    @available_if(_experts_have("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities from the expert the router picks for each row.

        An expert that never saw some class in its segment gives that class probability 0.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        X, segments = self._route(X)
        probabilities = np.zeros((len(segments), len(self.classes_)))
        for position, expert in enumerate(self.experts_):
            rows = segments == position
            if rows.any():
                columns = np.searchsorted(self.classes_, expert.classes_)
                probabilities[np.ix_(rows, columns)] = expert.predict_proba(_safe_indexing(X, rows))
        return probabilities

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        experts = self.experts if isinstance(self.experts, (list, tuple)) else []
        tags.input_tags.allow_nan = all(
            get_tags(model).input_tags.allow_nan for model in [self.router, *experts]
        )
        return tags

    def _needs_finite(self) -> bool:
        """Reject missing values up front unless the router and every expert accept them."""
        return not self.__sklearn_tags__().input_tags.allow_nan

    def _check_params(self) -> int:
        """Validate the parameters; return the number of experts."""
        if isinstance(self.experts, (str, bytes)) or not isinstance(self.experts, Sequence):
            raise TypeError(
                f"experts must be a list of classifiers, one per segment; got {self.experts!r}."
            )
        if len(self.experts) == 0:
            raise ValueError(
                "experts is empty: a cascade needs at least one expert per segment, e.g. "
                "experts=[LogisticRegression(), LogisticRegression()]."
            )
        if callable(self.segment_by) and self.thresholds is not None:
            raise ValueError(
                f"thresholds={self.thresholds!r} only apply when segment_by is a column; "
                f"segment_by is the function {self.segment_by!r}. Remove one of the two."
            )
        if self.thresholds is not None:
            cuts = np.asarray(self.thresholds, dtype=float)
            if cuts.ndim != 1 or len(cuts) != len(self.experts) - 1:
                raise ValueError(
                    f"thresholds={self.thresholds!r} makes {cuts.size + 1} segments but experts "
                    f"has {len(self.experts)} model(s): give one expert per segment, or "
                    f"{len(self.experts) - 1} threshold(s), one between each pair of neighbouring "
                    f"segments."
                )
            if np.any(np.diff(cuts) <= 0):
                raise ValueError(
                    f"thresholds={self.thresholds!r} must be strictly increasing, e.g. [30, 50]."
                )
        return len(self.experts)

    def _segments(self, X: Any, n_experts: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Each training row's segment, and the cut points used (None for a function)."""
        if callable(self.segment_by):
            segments = np.asarray(self.segment_by(X))
            _check_positions(segments, n_experts, f"segment_by {self.segment_by!r}")
            return segments.astype(np.intp), None
        if isinstance(self.segment_by, str) and not _is_frame(X):
            raise ValueError(
                f"segment_by={self.segment_by!r} names a column, but X is not a DataFrame: pass "
                f"a DataFrame with that column, or give the column's position instead."
            )
        column = np.asarray(_safe_indexing(X, self.segment_by, axis=1), dtype=float)
        if self.thresholds is None:
            cuts = np.quantile(column, np.arange(1, n_experts) / n_experts)
        else:
            cuts = np.asarray(self.thresholds, dtype=float)
        return np.searchsorted(cuts, column, side="right"), cuts

    def _route(self, X: Any) -> tuple[Any, np.ndarray]:
        """The checked rows, and the expert position the router picks for each of them."""
        check_is_fitted(self)
        checked = validate_data(
            self, X, reset=False, dtype=None, ensure_all_finite=self._needs_finite()
        )
        X = X if _is_frame(X) else checked
        segments = np.asarray(self.router_.predict(X))
        _check_positions(segments, len(self.experts_), "the router")
        return X, segments.astype(np.intp)


def _check_positions(segments: np.ndarray, n_experts: int, source: str) -> None:
    """Segments must be expert positions 0 .. n_experts - 1."""
    valid = np.isin(segments, np.arange(n_experts))
    if not valid.all():
        bad = sorted({value.item() for value in segments[~valid]})
        raise ValueError(
            f"{source} gave segment(s) {bad} but there are only {n_experts} experts, at positions "
            f"0 to {n_experts - 1}. Each segment must be the position of an expert in experts: "
            f"add experts or change how rows are segmented."
        )


def _is_frame(X: Any) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc")
