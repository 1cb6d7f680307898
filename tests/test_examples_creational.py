"""The creational-pattern examples: model factory, pipeline builder, injected vs global log."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from mlops_nb.examples.creational import (
    MODELS,
    MetricsLog,
    PipelineBuilder,
    evaluate,
    evaluate_with_global_log,
    global_log,
    make_model,
)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return X[:200], y[:200]


@pytest.mark.parametrize(
    ("name", "cls", "params"),
    [
        ("logistic_regression", LogisticRegression, {"C": 0.5}),
        ("random_forest", RandomForestClassifier, {"n_estimators": 7, "random_state": 0}),
        ("decision_tree", DecisionTreeClassifier, {"max_depth": 3}),
        ("knn", KNeighborsClassifier, {"n_neighbors": 4}),
    ],
)
def test_factory_builds_each_model_with_its_params(name: str, cls: type, params: dict) -> None:
    model = make_model({"model": name, "params": params})
    assert type(model) is cls
    assert model.get_params() | params == model.get_params()


def test_factory_params_are_optional() -> None:
    assert make_model({"model": "knn"}).get_params() == KNeighborsClassifier().get_params()


def test_factory_builds_a_new_object_each_time() -> None:
    config = {"model": "decision_tree"}
    assert make_model(config) is not make_model(config)


def test_unknown_model_names_the_choices_and_the_close_match() -> None:
    with pytest.raises(ValueError, match=r"Unknown model 'random_forst': choose one of 'decision_tree', "
                       r"'knn', 'logistic_regression', 'random_forest'.*Did you mean 'random_forest'\?"):
        make_model({"model": "random_forst"})


def test_a_new_model_extends_the_registry_without_changing_the_default() -> None:
    registry = {**MODELS, "gradient_boosting": GradientBoostingClassifier}
    model = make_model({"model": "gradient_boosting", "params": {"n_estimators": 5}}, registry=registry)
    assert isinstance(model, GradientBoostingClassifier) and model.n_estimators == 5
    assert "gradient_boosting" not in MODELS
    with pytest.raises(TypeError):
        MODELS["gradient_boosting"] = GradientBoostingClassifier  # type: ignore[index]


def test_builder_keeps_step_order_and_puts_the_model_last() -> None:
    builder = PipelineBuilder().model(LogisticRegression()).select_best(5).impute().scale()
    pipe = builder.build()
    assert isinstance(pipe, Pipeline)
    assert [name for name, _ in pipe.steps] == ["select", "impute", "scale", "model"]


def test_built_pipeline_fits_and_predicts(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    pipe = PipelineBuilder().impute().scale().model(LogisticRegression(max_iter=1000)).build()
    assert pipe.fit(X, y).score(X, y) > 0.9
    assert pipe.predict(X).shape == y.shape


def test_building_twice_gives_independent_pipelines(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    builder = PipelineBuilder().scale().model(LogisticRegression(max_iter=1000))
    first, second = builder.build(), builder.build()
    first.fit(X, y)
    assert first["model"] is not second["model"]
    assert not hasattr(second["model"], "coef_"), "fitting one build must not fit the other"


def test_builder_refuses_a_missing_model_and_duplicate_steps() -> None:
    with pytest.raises(ValueError, match=r"has no model: call \.model\(estimator\) before \.build\(\)"):
        PipelineBuilder().scale().build()
    with pytest.raises(ValueError, match="already has a 'scale' step"):
        PipelineBuilder().scale().scale()


def _fitted_dummy() -> DummyClassifier:
    return DummyClassifier().fit([[0], [1]], [1, 1])


def test_injected_logs_do_not_interfere() -> None:
    first, second = MetricsLog(), MetricsLog()
    assert evaluate("a", _fitted_dummy(), [[0]], [1], first) == {"a": 1.0}
    assert evaluate("b", _fitted_dummy(), [[0]], [0], second) == {"b": 0.0}
    assert first.metrics == {"a": 1.0}


def test_the_global_log_leaks_between_uses() -> None:
    # The smell the lesson shows, pinned: the second caller sees the first caller's metric,
    # and what a test sees depends on which tests ran before it.
    before = dict(global_log().metrics)
    evaluate_with_global_log("leak_first", _fitted_dummy(), [[0]], [1])
    seen = evaluate_with_global_log("leak_second", _fitted_dummy(), [[0]], [1])
    assert {"leak_first", "leak_second"} <= set(seen)
    assert set(seen) == set(before) | {"leak_first", "leak_second"}
    assert global_log() is global_log()
