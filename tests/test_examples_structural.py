"""The structural-pattern examples of lesson 07 keep the behaviour of the code they wrap."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from mlops_nb.examples.structural import (
    Group,
    NumpyLogit,
    NumpyLogitAdapter,
    RuleScorer,
    RuleScorerAdapter,
    SklearnScorer,
    Step,
    cached,
    logged,
    timed,
)

Data = tuple[np.ndarray, np.ndarray, list[str]]


@pytest.fixture(scope="module")
def data() -> Data:
    bunch = load_breast_cancer()
    return bunch.data[:, :3], bunch.target, list(bunch.feature_names[:3])


# -- Adapter ---------------------------------------------------------------------------------------
def test_every_adapter_gives_one_probability_table(data: Data) -> None:
    X, y, columns = data
    adapters = [
        SklearnScorer(LogisticRegression(max_iter=5000).fit(X, y)),
        RuleScorerAdapter(RuleScorer("mean radius", 15.0), columns),
        NumpyLogitAdapter(NumpyLogit([-1.0, 0.0, 0.0], 14.0)),
    ]
    for adapter in adapters:
        proba = adapter.predict_proba(X)
        assert proba.shape == (len(X), 2)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_adapters_answer_what_the_library_answers(data: Data) -> None:
    X, y, columns = data
    model = LogisticRegression(max_iter=5000).fit(X, y)
    np.testing.assert_array_equal(SklearnScorer(model).predict_proba(X), model.predict_proba(X))

    rule = RuleScorer("mean radius", 15.0)
    direct = [rule.score(dict(zip(columns, row))) / 100 for row in X]
    np.testing.assert_allclose(RuleScorerAdapter(rule, columns).predict_proba(X)[:, 1], direct)

    logit = NumpyLogit([-1.0, 0.0, 0.0], 14.0)
    adapted = NumpyLogitAdapter(logit).predict_proba(X)
    np.testing.assert_allclose(adapted[:, 1], logit.probability(X))


# -- Decorator -------------------------------------------------------------------------------------
def train(n: int, scale: int = 1) -> int:
    """Pretend to train a model."""
    return n * scale


@pytest.mark.parametrize("decorator", [timed, logged, cached])
def test_decorators_keep_result_name_and_docstring(decorator: object) -> None:
    wrapped = decorator(train)  # type: ignore[operator]
    assert wrapped(3, scale=2) == train(3, scale=2) == 6
    assert wrapped.__name__ == "train"
    assert wrapped.__doc__ == "Pretend to train a model."
    assert wrapped.__wrapped__ is train


def test_cache_skips_the_second_call_and_tells_arguments_apart() -> None:
    calls: list[tuple[int, int]] = []

    @cached
    def fit(n: int, scale: int = 1) -> int:
        calls.append((n, scale))
        return n * scale

    assert [fit(2), fit(2), fit(3), fit(2, scale=5), fit(2, scale=5)] == [2, 2, 3, 10, 10]
    assert calls == [(2, 1), (3, 1), (2, 5)]
    assert fit.calls == 3  # type: ignore[attr-defined]


def test_timer_records_the_duration_even_when_the_call_fails() -> None:
    @timed
    def fail() -> None:
        raise ValueError("no data")

    assert fail.seconds is None  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no data"):
        fail()
    assert fail.seconds >= 0  # type: ignore[attr-defined]


def test_log_records_arguments_and_result(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mlops_nb.examples"):
        logged(train)(4, scale=3)
    assert caplog.messages == ["calling train with (4,) {'scale': 3}", "train returned 12"]


# -- Composite -------------------------------------------------------------------------------------
def test_a_group_runs_its_children_in_order() -> None:
    order: list[str] = []

    def record(name: str) -> Step:
        return Step(name, lambda data: order.append(name) or data + [name])

    group = Group("g", [record("a"), record("b"), record("c")])
    assert group.run([]) == ["a", "b", "c"]
    assert order == ["a", "b", "c"]


def test_groups_nest_and_behave_like_the_flat_pipeline() -> None:
    add_one, double = Step("add", lambda x: x + 1), Step("double", lambda x: x * 2)
    negate = Step("neg", lambda x: -x)
    nested = Group("all", [Group("prep", [add_one, double]), negate])
    flat = Group("all", [add_one, double, negate])
    assert nested.run(3) == flat.run(3) == -8
    assert nested.names() == ["all/prep/add", "all/prep/double", "all/neg"]
    assert Group("empty", []).run(5) == 5
