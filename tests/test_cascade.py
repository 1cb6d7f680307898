"""The Cascade estimator: scikit-learn's contract, routing, errors, skops, and the lesson's claims."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import check_estimator

from mlops_nb.datasets.shoppers import AGE_GROUPS_SPLIT, load_shoppers
from mlops_nb.patterns import Cascade


def logistic() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression())


def age_cascade(threshold: float = AGE_GROUPS_SPLIT) -> Cascade:
    return Cascade(
        DecisionTreeClassifier(max_depth=1),
        [logistic(), logistic()],
        segment_by="age",
        thresholds=[threshold],
    )


@pytest.fixture(scope="module")
def shoppers() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    data = load_shoppers()
    X, y = data.drop(columns="bought"), data["bought"]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    return X_train, X_test, y_train, y_test


def test_passes_check_estimator_in_the_documented_configuration() -> None:
    # No expected failures: every check passes.
    check_estimator(
        Cascade(
            router=DecisionTreeClassifier(max_depth=1),
            experts=[LogisticRegression(), LogisticRegression()],
        )
    )


def test_router_picks_the_expert_and_experts_see_only_their_rows(shoppers) -> None:
    X_train, X_test, y_train, _ = shoppers
    cascade = age_cascade().fit(X_train, y_train)
    assert cascade.router_.tree_.threshold[0] == pytest.approx(AGE_GROUPS_SPLIT - 0.5)
    np.testing.assert_array_equal(cascade.thresholds_, [AGE_GROUPS_SPLIT])
    young = (X_train["age"] < AGE_GROUPS_SPLIT).to_numpy()
    young_expert = clone(logistic()).fit(X_train[young], y_train[young])
    older_expert = clone(logistic()).fit(X_train[~young], y_train[~young])
    test_young = (X_test["age"] < AGE_GROUPS_SPLIT).to_numpy()
    expected = np.where(test_young, young_expert.predict(X_test), older_expert.predict(X_test))
    np.testing.assert_array_equal(cascade.predict(X_test), expected)
    assert list(cascade.feature_names_in_) == list(X_train.columns)


def test_predict_proba_covers_every_class_across_experts() -> None:
    # Segment 0 only ever sees classes "a" and "b", segment 1 only "b" and "c".
    X = np.repeat(np.arange(8.0), 10).reshape(-1, 1)
    y = np.array(["a", "b", "a", "b", "b", "c", "b", "c"]).repeat(10)
    cascade = Cascade(
        DecisionTreeClassifier(max_depth=1),
        [DecisionTreeClassifier(), DecisionTreeClassifier()],
        thresholds=[4],
    ).fit(X, y)
    np.testing.assert_array_equal(cascade.classes_, ["a", "b", "c"])
    proba = cascade.predict_proba([[0.0], [7.0]])
    np.testing.assert_allclose(proba, [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(cascade.predict([[0.0], [7.0]]), ["a", "c"])


def test_a_segment_with_one_label_gets_a_constant_expert() -> None:
    X = np.arange(20.0).reshape(-1, 1)
    y = np.r_[np.zeros(10), np.arange(10) % 2]
    cascade = Cascade(DecisionTreeClassifier(max_depth=1), [LogisticRegression()] * 2).fit(X, y)
    np.testing.assert_array_equal(cascade.predict(X[:10]), np.zeros(10))


def test_predict_proba_exists_only_when_every_expert_has_it(shoppers) -> None:
    X_train, X_test, y_train, _ = shoppers
    mixed = Cascade(
        DecisionTreeClassifier(max_depth=1),
        [logistic(), RidgeClassifier()],
        segment_by="age",
        thresholds=[AGE_GROUPS_SPLIT],
    )
    assert not hasattr(mixed, "predict_proba")
    mixed.fit(X_train, y_train)
    assert not hasattr(mixed, "predict_proba")
    with pytest.raises(AttributeError, match="predict_proba"):
        mixed.predict_proba(X_test)
    assert mixed.predict(X_test).shape == (len(X_test),)
    assert hasattr(age_cascade(), "predict_proba")


def test_works_with_pipeline_clone_and_grid_search(shoppers) -> None:
    X_train, X_test, y_train, y_test = shoppers
    pipeline = make_pipeline(
        StandardScaler(), Cascade(DecisionTreeClassifier(max_depth=1), [LogisticRegression()] * 2)
    )
    assert pipeline.fit(X_train, y_train).score(X_test, y_test) > 0.5
    cascade = age_cascade()
    copy_ = clone(cascade)
    assert copy_.get_params()["thresholds"] == [AGE_GROUPS_SPLIT]
    assert copy_.experts[0] is not cascade.experts[0]
    search = GridSearchCV(cascade, {"thresholds": [[30], [AGE_GROUPS_SPLIT], [55]]}, cv=3)
    search.fit(X_train, y_train)
    assert search.best_params_ == {"thresholds": [AGE_GROUPS_SPLIT]}


def test_skops_round_trip_trusts_only_known_types(shoppers) -> None:
    X_train, X_test, y_train, _ = shoppers
    cascade = age_cascade().fit(X_train, y_train)
    data = skops.io.dumps(cascade)
    untrusted = skops.io.get_untrusted_types(data=data)
    assert all(
        name.split(".")[0] in {"sklearn", "numpy", "scipy", "mlops_nb"} for name in untrusted
    )
    loaded = skops.io.loads(data, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict(X_test), cascade.predict(X_test))
    np.testing.assert_array_equal(loaded.predict_proba(X_test), cascade.predict_proba(X_test))


def test_the_cascade_beats_one_model_for_everyone(shoppers) -> None:
    X_train, X_test, y_train, y_test = shoppers
    single = logistic().fit(X_train, y_train).score(X_test, y_test)
    cascade = age_cascade().fit(X_train, y_train).score(X_test, y_test)
    assert (round(single, 3), round(cascade, 3)) == (0.617, 0.812)
    assert cascade > single + 0.15


def test_retraining_the_router_alone_degrades_accuracy(shoppers) -> None:
    X_train, X_test, y_train, y_test = shoppers
    cascade = age_cascade().fit(X_train, y_train)
    router_only = copy.deepcopy(cascade)
    new_groups = (X_train["age"] >= 50).astype(int)
    router_only.router_ = clone(cascade.router).fit(X_train, new_groups)
    joint = age_cascade(threshold=50).fit(X_train, y_train)

    before = cascade.score(X_test, y_test)
    after = router_only.score(X_test, y_test)
    refitted = joint.score(X_test, y_test)
    assert (round(before, 3), round(after, 3), round(refitted, 3)) == (0.812, 0.704, 0.724)
    assert after < before - 0.05
    assert after < refitted


def test_a_function_can_define_the_segments() -> None:
    X = np.arange(40.0).reshape(-1, 1)
    y = (np.arange(40) % 3 == 0).astype(int)
    cascade = Cascade(
        DecisionTreeClassifier(max_depth=1), [LogisticRegression()] * 2, segment_by=np.signbit
    ).fit(X - 20, y)
    assert cascade.thresholds_ is None
    assert cascade.router_.predict([[-5.0]])[0] == 1


def test_the_dataset_is_deterministic_and_checks_its_arguments() -> None:
    assert load_shoppers(n=50, seed=3).equals(load_shoppers(n=50, seed=3))
    assert not load_shoppers(n=50, seed=3).equals(load_shoppers(n=50, seed=4))
    older = load_shoppers(n=200, ages=(50, 60))["age"]
    assert older.between(50, 60).all()
    with pytest.raises(ValueError, match=r"n >= 1 .* got n=0"):
        load_shoppers(n=0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"experts": []}, r"experts is empty: a cascade needs at least one expert"),
        (
            {"thresholds": [30, 50]},
            r"thresholds=\[30, 50\] makes 3 segments but experts has 2 model\(s\): give one expert per segment, or 1 threshold",
        ),
        (
            {"experts": [LogisticRegression()] * 3, "thresholds": [50, 30]},
            r"must be strictly increasing",
        ),
        (
            {"segment_by": np.signbit, "thresholds": [0]},
            r"thresholds=\[0\] only apply when segment_by is a column",
        ),
        ({"segment_by": "age"}, r"segment_by='age' names a column, but X is not a DataFrame"),
        ({"thresholds": [100]}, r"The router sends no training rows to expert 1"),
    ],
)
def test_bad_parameters_say_what_is_wrong_and_how_to_fix_it(params, message) -> None:
    cascade = Cascade(DecisionTreeClassifier(max_depth=1), [LogisticRegression()] * 2)
    X, y = np.arange(20.0).reshape(-1, 1), np.arange(20) % 2
    with pytest.raises(ValueError, match=message):
        cascade.set_params(**params).fit(X, y)


def test_experts_must_be_a_list() -> None:
    cascade = Cascade(DecisionTreeClassifier(), "lr")
    with pytest.raises(
        TypeError, match=r"experts must be a list of classifiers, one per segment; got 'lr'"
    ):
        cascade.fit(np.arange(20.0).reshape(-1, 1), np.arange(20) % 2)


def three_segments(X: np.ndarray) -> np.ndarray:
    return np.arange(len(X)) % 3


def test_segments_must_name_existing_experts() -> None:
    X, y = np.arange(30.0).reshape(-1, 1), np.arange(30) % 2
    cascade = Cascade(
        DecisionTreeClassifier(), [LogisticRegression()] * 2, segment_by=three_segments
    )
    with pytest.raises(
        ValueError,
        match=r"gave segment\(s\) \[2\] but there are only 2 experts, at positions 0 to 1",
    ):
        cascade.fit(X, y)


def test_a_router_predicting_a_missing_expert_is_refused() -> None:
    X, y = np.arange(30.0).reshape(-1, 1), np.arange(30) % 2
    cascade = Cascade(DecisionTreeClassifier(max_depth=1), [LogisticRegression()] * 2).fit(X, y)
    cascade.router_ = DecisionTreeClassifier().fit(X, np.arange(30) % 3)
    with pytest.raises(
        ValueError, match=r"the router gave segment\(s\) \[2\] but there are only 2 experts"
    ):
        cascade.predict(X)
