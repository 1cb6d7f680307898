"""mlops_nb.plots: what the charts show matches the data, and the same data draws the same PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlops_nb import FeatureStore, FeatureView, Store, UnknownViewError
from mlops_nb.patterns import Cascade
from mlops_nb.plots import cascade_comparison, feature_distributions


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def close_figures() -> None:
    plt.close("all")


# -- feature_distributions ------------------------------------------------------------------------
CARS = pd.DataFrame(
    {
        "car": [1, 2, 3, 4, 5, 6],
        "ts": ["2024-01-01"] * 6,
        "kmh": [50.0, 70.0, np.nan, 90.0, 95.0, 130.0],
        "doors": [3, 5, 5, 5, 4, 3],
        "colour": ["red", "blue", "red", "green", "red", "blue"],
    }
)


@pytest.fixture
def fs(tmp_path: Path) -> FeatureStore:
    store = FeatureStore(Store(tmp_path / "store"))
    store.apply(FeatureView("cars", entities=["car"], timestamp="ts"))
    store.ingest("cars", CARS)
    return store


def bar_heights(ax: plt.Axes) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def test_one_chart_per_feature_in_the_view_order(fs: FeatureStore) -> None:
    figure = feature_distributions(fs, "cars")
    assert [ax.get_title() for ax in figure.axes] == ["kmh (1 missing)", "doors", "colour"]
    assert figure.get_suptitle() == "Feature view 'cars': 6 rows"


def test_a_histogram_counts_every_present_value(fs: FeatureStore) -> None:
    kmh = feature_distributions(fs, "cars", ["kmh"], bins=4).axes[0]
    assert len(kmh.patches) == 4
    assert sum(bar_heights(kmh)) == 5  # six rows, one missing
    assert kmh.get_ylabel() == "rows"


def test_a_count_feature_gets_one_bar_per_integer(fs: FeatureStore) -> None:
    doors = feature_distributions(fs, "cars", ["doors"]).axes[0]
    centres = [patch.get_x() + patch.get_width() / 2 for patch in doors.patches]
    assert centres == [3.0, 4.0, 5.0]
    assert bar_heights(doors) == [2, 1, 3]


def test_categories_are_bars_most_frequent_first(fs: FeatureStore) -> None:
    colour = feature_distributions(fs, "cars", ["colour"], top=2).axes[0]
    widths = [patch.get_width() for patch in colour.patches]
    labels = [label.get_text() for label in colour.get_yticklabels()]
    assert (labels, widths) == (["red", "blue"], [3, 2])  # the top 2 only
    assert colour.get_title() == "colour: top 2 of 3"
    assert colour.yaxis_inverted()  # the most frequent on top


def test_an_older_version_is_drawn_from_its_own_data(fs: FeatureStore) -> None:
    fs.apply(
        FeatureView(
            "cars",
            entities=["car"],
            timestamp="ts",
            schema={"kmh": "float64", "doors": "int64", "colour": "str", "seats": "int64"},
        )
    )
    fs.ingest("cars", CARS.head(2).assign(seats=[2, 4]))
    assert len(feature_distributions(fs, "cars").axes) == 4
    old = feature_distributions(fs, "cars", version=1)
    assert [ax.get_title() for ax in old.axes] == ["kmh (1 missing)", "doors", "colour"]
    assert old.get_suptitle() == "Feature view 'cars' v1: 6 rows"


def test_a_full_grid_of_small_multiples_wraps_at_columns(fs: FeatureStore) -> None:
    figure = feature_distributions(fs, "cars", ["colour", "kmh"], columns=1)
    assert [ax.get_title() for ax in figure.axes] == ["colour", "kmh (1 missing)"]
    assert (
        figure.axes[0].get_position().y0 > figure.axes[1].get_position().y0
    )  # one above the other


def test_an_unknown_feature_is_named_with_a_suggestion(fs: FeatureStore) -> None:
    with pytest.raises(UnknownViewError, match=r"no feature 'color'\. Did you mean 'colour'\?"):
        feature_distributions(fs, "cars", ["color"])


def test_the_same_view_draws_the_same_png(fs: FeatureStore) -> None:
    assert png(feature_distributions(fs, "cars")) == png(feature_distributions(fs, "cars"))


# -- cascade_comparison ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models() -> tuple[LogisticRegression, Cascade, pd.DataFrame, np.ndarray]:
    """Below 0 the label is x > -1, above 0 it is x < 1: one line cannot fit both halves."""
    X = pd.DataFrame({"x": np.linspace(-3, 3, 300), "noise": np.tile([0.0, 1.0], 150)})
    y = np.where(X["x"] < 0, X["x"] > -1, X["x"] < 1).astype(int)
    single = LogisticRegression().fit(X, y)
    cascade = Cascade(
        DecisionTreeClassifier(max_depth=1),
        [LogisticRegression(), LogisticRegression()],
        segment_by="x",
        thresholds=[0],
    ).fit(X, y)
    return single, cascade, X, y


EDGES = [-3, -1.5, 0, 1.5, 3.5]


def test_bars_are_each_models_accuracy_per_band(models: tuple) -> None:
    single, cascade, X, y = models
    ax = cascade_comparison(single, cascade, X, y, bins=EDGES).axes[0]
    band = np.digitize(X["x"], EDGES) - 1
    expected = {
        name: [float(np.mean(model.predict(X)[band == b] == y[band == b])) for b in range(4)]
        for name, model in [("single", single), ("cascade", cascade)]
    }
    heights = bar_heights(ax)
    assert heights[:4] == pytest.approx(expected["single"])
    assert heights[4:] == pytest.approx(expected["cascade"])
    assert [patch.get_x() for patch in ax.patches[:4]] == pytest.approx([-2.85, -1.35, 0.15, 1.7])


def test_the_chart_is_labelled_and_marks_the_split(models: tuple) -> None:
    single, cascade, X, y = models
    ax = cascade_comparison(single, cascade, X, y, bins=EDGES).axes[0]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        "One model vs a cascade, by x",
        "x",
        "accuracy",
    )
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert f"one model for everyone ({single.score(X, y):.3f})" in legend
    assert f"cascade ({cascade.score(X, y):.3f})" in legend
    assert "the cascade's split (0)" in legend
    assert "always the most common label (0.667)" in legend  # 200 of the 300 labels are 0
    split = next(line for line in ax.get_lines() if line.get_label() == "the cascade's split (0)")
    assert list(split.get_xdata()) == [0, 0]


def test_it_draws_on_the_axes_it_is_given(models: tuple) -> None:
    single, cascade, X, y = models
    figure, (left, right) = plt.subplots(1, 2)
    assert cascade_comparison(single, cascade, X, y, bins=EDGES, ax=right) is figure
    assert not left.patches and len(right.patches) == 8


def test_any_column_can_be_compared_without_split_lines(models: tuple) -> None:
    single, cascade, X, y = models
    ax = cascade_comparison(single, cascade, X, y, by="noise", bins=[0, 0.5, 1.5]).axes[0]
    assert len(ax.patches) == 4
    assert not any("split" in text.get_text() for text in ax.get_legend().get_texts())


def test_an_unknown_column_says_which_ones_exist(models: tuple) -> None:
    single, cascade, X, y = models
    with pytest.raises(
        ValueError, match=r"by='nois' is not a column of X\. Did you mean 'noise'\?"
    ):
        cascade_comparison(single, cascade, X, y, by="nois")


def test_the_same_models_draw_the_same_png(models: tuple) -> None:
    single, cascade, X, y = models
    assert png(cascade_comparison(single, cascade, X, y)) == png(
        cascade_comparison(single, cascade, X, y)
    )
