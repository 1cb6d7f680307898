"""Charts that teach at a glance: the features of a view, one model against a cascade."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from .errors import did_you_mean
from .features import FeatureStore, UnknownViewError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["cascade_comparison", "feature_distributions"]

# Fixed colours, so that a chart looks the same in every lesson and every run.
NUMERIC_COLOUR, CATEGORY_COLOUR = "#2563eb", "#7c3aed"
SINGLE_COLOUR, CASCADE_COLOUR, SPLIT_COLOUR = "#9ca3af", "#2563eb", "#b91c1c"


def feature_distributions(
    feature_store: FeatureStore,
    view: str,
    features: Sequence[str] | None = None,
    *,
    version: int | None = None,
    bins: int = 30,
    top: int = 10,
    columns: int = 3,
) -> Figure:
    """Small multiples of a feature view's stored data: one chart per feature.

    Numeric features get a histogram; the others (text, categories, booleans) a bar chart of
    their ``top`` most frequent values. Missing values are left out and counted in the title.
    The figure has exactly one axes per feature, in the order asked for.

    Parameters
    ----------
    feature_store : FeatureStore
        Where the view lives.
    view : str
        The feature view's name.
    features : list of str, optional
        Which features to draw; default all of them, in the view's order.
    version : int, optional
        The view version to read; default the latest.
    bins : int, default=30
        Histogram bins per numeric feature.
    top : int, default=10
        How many of the most frequent values a non-numeric feature shows.
    columns : int, default=3
        Charts per row.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import tempfile, pandas as pd
    >>> from mlops_nb import FeatureStore, FeatureView
    >>> fs = FeatureStore(tempfile.mkdtemp())
    >>> fs.apply(FeatureView("cars", entities=["car"], timestamp="ts"))
    1
    >>> rows = pd.DataFrame({"car": [1, 2, 3], "ts": ["2024-01-01"] * 3,
    ...                      "kmh": [50.0, 70.0, 90.0], "colour": ["red", "blue", "red"]})
    >>> _ = fs.ingest("cars", rows)
    >>> figure = feature_distributions(fs, "cars")
    >>> [axes.get_title() for axes in figure.axes]
    ['kmh', 'colour']
    """
    import matplotlib.pyplot as plt

    data = feature_store.read(view, version)
    known = feature_store.get_view(view, version).features
    names = list(known if features is None else features)
    for name in names:
        if name not in known:
            raise UnknownViewError(
                f"View {view!r} has no feature {name!r}.{did_you_mean(name, known)} "
                f"Its features: {', '.join(known) or 'none yet (ingest data first)'}."
            )
    if not names:
        raise UnknownViewError(f"View {view!r} has no features to draw yet: ingest data first.")
    across = min(columns, len(names))
    down = math.ceil(len(names) / across)
    figure, grid = plt.subplots(down, across, figsize=(3.4 * across, 2.6 * down), squeeze=False)
    for ax in grid.flat[len(names) :]:
        ax.remove()  # an incomplete last row: keep one axes per feature, no empty frames
    for ax, name in zip(grid.flat, names):
        values = data[name].dropna()
        missing = len(data) - len(values)
        ax.set_title(name if not missing else f"{name} ({missing:,} missing)", fontsize="medium")
        if values.dtype.kind in "iuf":
            ax.hist(
                values.to_numpy(dtype=float), bins=_bin_edges(values, bins), color=NUMERIC_COLOUR
            )
            ax.set_ylabel("rows")
        else:
            _top_values(ax, values, top)
    suffix = f" v{version}" if version is not None else ""
    figure.suptitle(f"Feature view {view!r}{suffix}: {len(data):,} rows")
    figure.tight_layout()
    return figure


def _bin_edges(values: pd.Series, bins: int) -> Any:
    """``bins`` equal bins, or one bin per integer when a count takes few values (no gaps)."""
    import numpy as np

    if values.dtype.kind in "iu" and len(values) and values.max() - values.min() < bins:
        return np.arange(values.min(), values.max() + 2) - 0.5
    return bins


def _top_values(ax: Axes, values: pd.Series, top: int) -> None:
    """A horizontal bar per frequent value, the most frequent on top (ties in name order)."""
    counts = (
        values.astype(str).value_counts().sort_index().sort_values(ascending=False, kind="stable")
    )
    if len(counts) > top:
        ax.set_title(f"{ax.get_title()}: top {top} of {len(counts):,}", fontsize="medium")
    shown = counts.head(top)
    ax.barh(shown.index.tolist(), shown.to_numpy(), color=CATEGORY_COLOUR)
    ax.invert_yaxis()
    ax.set_xlabel("rows")


def cascade_comparison(
    single: Any,
    cascade: Any,
    X: pd.DataFrame,
    y: Any,
    *,
    by: str | None = None,
    bins: int | Sequence[float] = 10,
    ax: Axes | None = None,
) -> Figure:
    """Accuracy of one model and of a cascade, band by band along the column the cascade routes on.

    Each band of ``by`` gets two bars, one per model; dashed lines mark the cascade's split
    points and a dotted line the accuracy of always guessing the most common label. The legend
    gives each model's overall accuracy.

    Parameters
    ----------
    single : classifier
        The fitted model for everyone.
    cascade : Cascade
        The fitted cascade (any fitted classifier works; split lines need ``thresholds_``).
    X : DataFrame
        Test rows, never seen in training.
    y : array-like
        Their labels.
    by : str, optional
        The column whose bands are compared; default the cascade's ``segment_by`` column.
    bins : int or list of float, default=10
        Number of equal-width bands, or their edges. A band holds its left edge, not its
        right one; rows outside the edges are left out.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from mlops_nb.patterns import Cascade
    >>> X = pd.DataFrame({"x": np.linspace(-3, 3, 300)})
    >>> y = np.where(X["x"] < 0, X["x"] > -1, X["x"] < 1).astype(int)
    >>> single = LogisticRegression().fit(X, y)
    >>> cascade = Cascade(DecisionTreeClassifier(max_depth=1),
    ...                   [LogisticRegression(), LogisticRegression()],
    ...                   segment_by="x", thresholds=[0]).fit(X, y)
    >>> figure = cascade_comparison(single, cascade, X, y, bins=[-3, -2, -1, 0, 1, 2, 3.01])
    >>> figure.axes[0].get_title()
    'One model vs a cascade, by x'
    """
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    column = by if by is not None else getattr(cascade, "segment_by", None)
    if not isinstance(column, str) or column not in X.columns:
        raise ValueError(
            f"Compare the models along which column? by={column!r} is not a column of X."
            f"{did_you_mean(str(column), map(str, X.columns))} Pass by='...', one of "
            f"{list(map(str, X.columns))}."
        )
    labels = np.asarray(y)
    right = pd.DataFrame(
        {"single": single.predict(X) == labels, "cascade": cascade.predict(X) == labels},
        index=X.index,
    )
    bands = pd.cut(X[column], bins=bins, right=False)
    by_band = right.groupby(bands, observed=True).mean()
    left = np.array([band.left for band in by_band.index], dtype=float)
    width = np.array([band.length for band in by_band.index], dtype=float)
    if ax is None:
        figure, ax = plt.subplots(figsize=(9, 3.6))
    else:
        figure = cast("Figure", ax.figure)
    # Bars sit on a real axis of `column`, so a split line lands exactly on its value.
    ax.bar(
        left + 0.1 * width,
        by_band["single"],
        width=0.4 * width,
        align="edge",
        color=SINGLE_COLOUR,
        label=f"one model for everyone ({right['single'].mean():.3f})",
    )
    ax.bar(
        left + 0.5 * width,
        by_band["cascade"],
        width=0.4 * width,
        align="edge",
        color=CASCADE_COLOUR,
        label=f"cascade ({right['cascade'].mean():.3f})",
    )
    thresholds = getattr(cascade, "thresholds_", None)
    if thresholds is not None and column == getattr(cascade, "segment_by", None):
        for number, threshold in enumerate(thresholds):
            label = (
                f"the cascade's split ({', '.join(f'{t:g}' for t in thresholds)})"
                if number == 0
                else None
            )
            ax.axvline(threshold, color=SPLIT_COLOUR, linestyle="--", linewidth=1.5, label=label)
    baseline = pd.Series(labels).value_counts(normalize=True).max()
    ax.axhline(
        baseline,
        color="black",
        linestyle=":",
        linewidth=1,
        label=f"always the most common label ({baseline:.3f})",
    )
    ax.set_ylim(0, 1.25)  # room for the legend above the bars
    ax.set_xlabel(column)
    ax.set_ylabel("accuracy")
    ax.set_title(f"One model vs a cascade, by {column}")
    ax.legend(loc="upper center", ncol=2, fontsize="small", framealpha=1)
    figure.tight_layout()
    return figure
