"""The Multimodal Input pattern: infer_modalities, multimodal_preprocessor and the reviews data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from mlops_nb.datasets.reviews import PHOTO_SHAPE, load_reviews
from mlops_nb.patterns import infer_modalities, multimodal_preprocessor
from mlops_nb.patterns.multimodal import ImageFlattener, ModalityError

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "mlops_nb.")


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return load_reviews(n=600)


@pytest.fixture(scope="module")
def split(reviews: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    X, y = reviews.drop(columns="recommended"), reviews["recommended"]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    return X_train, X_test, y_train, y_test


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "review": ["great pan, works", "broke after a week", "great value", "cheap and flimsy"],
            "category": ["kitchen", "toys", "kitchen", "garden"],
            "price": [20.0, np.nan, 12.0, 8.0],
            "photo": [np.full((2, 3), float(i)) for i in range(4)],
        }
    )


def model(**groups: list[str]) -> Pipeline:
    return Pipeline(
        [
            ("preprocess", multimodal_preprocessor(**groups)),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    )


# -- infer_modalities ----------------------------------------------------------------------------


def test_infer_modalities_on_the_reviews(reviews: pd.DataFrame) -> None:
    assert infer_modalities(reviews.drop(columns="recommended")) == {
        "text": ["review"],
        "categorical": ["category"],
        "numeric": ["price", "review_length", "helpful_votes"],
        "image": ["photo"],
    }


def test_infer_modalities_reads_dtypes_and_content() -> None:
    frame = pd.DataFrame(
        {
            "flag": [True, False, True, False],
            "size": pd.Categorical(["S", "M", "L", "M"]),
            "count": [1, 2, 3, 4],
            "name": ["a b", "c d", "e f", "g h"],  # two words, few values: categorical
            "note": ["one two three", "four five six seven", "eight nine ten", "x y z"],
            "when": pd.date_range("2024-01-01", periods=4),
            "pixels": [np.zeros(3), None, np.ones(3), np.zeros(3)],
        }
    )
    assert infer_modalities(frame) == {
        "text": ["note"],
        "categorical": ["flag", "size", "name"],
        "numeric": ["count"],
        "image": ["pixels"],
    }


def test_many_distinct_short_strings_are_text_and_the_thresholds_are_parameters() -> None:
    frame = pd.DataFrame({"title": [f"item {i}" for i in range(60)]})
    assert infer_modalities(frame)["text"] == ["title"]
    assert infer_modalities(frame, max_categories=100)["categorical"] == ["title"]
    assert infer_modalities(frame, min_words=2)["text"] == ["title"]


def test_infer_modalities_on_an_empty_frame_and_on_a_non_frame() -> None:
    assert infer_modalities(pd.DataFrame()) == {
        "text": [],
        "categorical": [],
        "numeric": [],
        "image": [],
    }
    with pytest.raises(ModalityError, match="needs|pandas DataFrame; got list"):
        infer_modalities([[1, 2]])  # type: ignore[arg-type]


# -- the preprocessor ------------------------------------------------------------------------------


def test_output_shape_and_feature_names() -> None:
    pre = multimodal_preprocessor(
        text="review", categorical="category", numeric="price", image="photo"
    )
    assert isinstance(pre, ColumnTransformer)
    out = pre.fit_transform(small_frame())
    names = pre.get_feature_names_out().tolist()
    vocabulary = {
        "great",
        "pan",
        "works",
        "broke",
        "after",
        "week",
        "value",
        "cheap",
        "and",
        "flimsy",
    }
    assert out.shape == (4, len(vocabulary) + 3 + 1 + 6) == (4, len(names))
    assert {n.removeprefix("text_review__") for n in names if n.startswith("text_")} == vocabulary
    assert [n for n in names if not n.startswith("text_")] == [
        "categorical__category_garden",
        "categorical__category_kitchen",
        "categorical__category_toys",
        "numeric__price",
        *[f"image_photo__photo_{i}" for i in range(6)],
    ]


def test_max_text_features_limits_the_vocabulary() -> None:
    pre = multimodal_preprocessor(text=["review"], max_text_features=2).fit(small_frame())
    names = pre.get_feature_names_out().tolist()
    assert len(names) == 2 and "text_review__great" in names  # the only word used twice


def test_unknown_categories_become_zeros_and_missing_numbers_the_median() -> None:
    pre = multimodal_preprocessor(categorical=["category"], numeric=["price"]).fit(small_frame())
    serving = pd.DataFrame({"category": ["books", "toys"], "price": [np.nan, 12.0]})
    out = np.asarray(pre.transform(serving))
    assert out[0, :3].tolist() == [0.0, 0.0, 0.0]  # "books" was never seen in fit
    assert out[1, :3].tolist() == [0.0, 0.0, 1.0]
    assert out[0, 3] == pytest.approx(out[1, 3])  # NaN -> median 12.0, then scaled like 12.0
    assert not np.isnan(out).any()


def test_image_columns_are_flattened_and_scaled() -> None:
    pre = multimodal_preprocessor(image="photo").fit(small_frame())
    out = pre.transform(small_frame())
    assert out.shape == (4, 6)
    assert np.allclose(out.mean(axis=0), 0.0) and np.allclose(out.std(axis=0), 1.0)


def test_image_flattener_on_a_stacked_array_and_bad_cells() -> None:
    stacked = np.arange(24.0).reshape(2, 3, 4)
    assert ImageFlattener().fit_transform(stacked).shape == (2, 12)
    flattener = ImageFlattener().fit(small_frame()["photo"])
    with pytest.raises(ModalityError, match=r"row 1 has shape \(3, 3\).*shape \(2, 3\)"):
        flattener.transform(pd.Series([np.zeros((2, 3)), np.zeros((3, 3))], name="photo"))
    with pytest.raises(ModalityError, match="row 0 holds str .*not a numeric numpy array"):
        ImageFlattener().fit(pd.Series(["not an image"], name="photo"))


# -- clear errors ----------------------------------------------------------------------------------


def test_no_columns_at_all() -> None:
    with pytest.raises(ModalityError, match=r"got no columns.*infer_modalities\(df\)"):
        multimodal_preprocessor()


def test_a_column_in_two_groups() -> None:
    with pytest.raises(
        ModalityError, match="'price' is in both categorical and numeric.*one group"
    ):
        multimodal_preprocessor(categorical=["price"], numeric=["price"])
    with pytest.raises(ModalityError, match="'price' is twice in numeric"):
        multimodal_preprocessor(numeric=["price", "price"])


def test_an_unknown_column_name_suggests_a_close_match() -> None:
    pre = multimodal_preprocessor(text="reveiw", numeric="price")
    with pytest.raises(
        ModalityError, match=r"Column 'reveiw' is not in the data\. Did you mean 'review'\?"
    ):
        pre.fit(small_frame())
    assert issubclass(ModalityError, ValueError)


def test_columns_must_be_named_and_data_must_be_a_frame() -> None:
    with pytest.raises(ModalityError, match="named by strings; numeric= got 3"):
        multimodal_preprocessor(numeric=[3])  # type: ignore[list-item]
    with pytest.raises(ModalityError, match="needs a pandas DataFrame; got ndarray"):
        multimodal_preprocessor(numeric="price").fit(np.zeros((3, 1)))


# -- scikit-learn and skops ------------------------------------------------------------------------


def test_in_a_pipeline_with_clone_and_grid_search(split: tuple) -> None:
    X_train, X_test, y_train, y_test = split
    groups = infer_modalities(X_train)
    pipe = model(**groups)
    copy = clone(pipe)
    assert copy.get_params()["preprocess__text_review__max_features"] == 1000
    search = GridSearchCV(pipe, {"preprocess__text_review__max_features": [5, 200]}, cv=3).fit(
        X_train, y_train
    )
    assert search.best_params_ == {"preprocess__text_review__max_features": 200}
    assert search.score(X_test, y_test) > 0.7


def test_skops_round_trip_gives_the_same_predictions(split: tuple) -> None:
    X_train, X_test, y_train, _ = split
    pipe = model(**infer_modalities(X_train)).fit(X_train, y_train)
    data = skops.io.dumps(pipe)
    untrusted = skops.io.get_untrusted_types(data=data)
    assert all(name.startswith(TRUSTED_PREFIXES) for name in untrusted), untrusted
    loaded = skops.io.loads(data, trusted=untrusted)
    assert np.array_equal(loaded.predict_proba(X_test), pipe.predict_proba(X_test))


# -- the reviews data ------------------------------------------------------------------------------


def test_reviews_are_deterministic_and_have_every_modality() -> None:
    a, b = load_reviews(n=50, seed=3), load_reviews(n=50, seed=3)
    pd.testing.assert_frame_equal(a.drop(columns="photo"), b.drop(columns="photo"))
    assert all(np.array_equal(x, y) for x, y in zip(a["photo"], b["photo"], strict=True))
    assert not a.drop(columns="photo").equals(load_reviews(n=50, seed=4).drop(columns="photo"))
    assert a["price"].isna().any() or load_reviews(n=500)["price"].isna().any()
    full = load_reviews()
    assert len(full) == 2000 and full["helpful_votes"].isna().mean() == pytest.approx(
        0.15, abs=0.03
    )
    assert full["photo"].iloc[0].shape == PHOTO_SHAPE
    assert 0.35 < full["recommended"].mean() < 0.65
    with pytest.raises(ValueError, match="at least one review"):
        load_reviews(n=0)


def test_the_multimodal_model_beats_every_single_modality_model() -> None:
    reviews = load_reviews()
    X, y = reviews.drop(columns="recommended"), reviews["recommended"]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    groups = infer_modalities(X_train)

    def accuracy(**chosen: list[str]) -> float:
        fitted = model(**chosen).fit(X_train, y_train)
        return float(accuracy_score(y_test, fitted.predict(X_test)))

    everything = accuracy(**groups)
    single = {modality: accuracy(**{modality: columns}) for modality, columns in groups.items()}
    assert everything > 0.78
    assert all(everything >= score + 0.1 for score in single.values()), (everything, single)


def test_the_image_flattener_passes_scikit_learns_estimator_checks() -> None:
    from sklearn.utils.estimator_checks import check_estimator

    from mlops_nb.patterns.multimodal import ImageFlattener

    failed = [r["check_name"] for r in check_estimator(ImageFlattener(), on_fail=None) if r["status"] == "failed"]
    assert failed == []
