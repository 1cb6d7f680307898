"""The behavioural-pattern examples of lesson 08 behave as the lesson says."""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from mlops_nb.examples.behavioral import (
    EventSource,
    IrisTrainer,
    LivePlot,
    Trainer,
    ValidationError,
    WineTrainer,
    constant_fill,
    impute,
    mean_fill,
    median_fill,
    metrics_logger,
    null_check,
    range_check,
    schema_check,
    train_with_events,
    validate,
)

matplotlib.use("Agg")


# Strategy

@pytest.fixture
def holes() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.0, None, 2.0, 9.0], "y": [4, 4, 4, 4], "city": ["a", None, "b", "c"]})


@pytest.mark.parametrize(
    ("fill", "expected"), [(mean_fill, 4.0), (median_fill, 2.0), (constant_fill(-1.0), -1.0)]
)
def test_fill_strategies_are_interchangeable(holes: pd.DataFrame, fill: Any, expected: float) -> None:
    filled = impute(holes, fill)
    assert filled["x"].tolist() == [1.0, expected, 2.0, 9.0]
    pd.testing.assert_series_equal(filled["y"], holes["y"])
    assert filled["city"].isna().sum() == 1, "text columns are left alone"
    assert holes["x"].isna().sum() == 1, "the input is not modified"


def test_a_new_strategy_is_just_a_function(holes: pd.DataFrame) -> None:
    assert impute(holes, lambda column: column.max())["x"][1] == 9.0


# Observer

def test_observers_receive_events_in_order() -> None:
    events, calls = EventSource(), []
    events.subscribe(lambda event, data: calls.append(("first", event, data)))
    events.subscribe(lambda event, data: calls.append(("second", event, data)))
    events.notify("epoch_end", epoch=1)
    events.notify("training_end", epochs=1)
    assert calls == [
        ("first", "epoch_end", {"epoch": 1}),
        ("second", "epoch_end", {"epoch": 1}),
        ("first", "training_end", {"epochs": 1}),
        ("second", "training_end", {"epochs": 1}),
    ]


def test_unsubscribed_observers_hear_nothing_more() -> None:
    events, log = EventSource(), []
    observer = events.subscribe(metrics_logger(log))
    events.notify("epoch_end", epoch=1)
    events.unsubscribe(observer)
    events.notify("epoch_end", epoch=2)
    assert log == [{"event": "epoch_end", "epoch": 1}]
    with pytest.raises(ValueError, match="is not subscribed, so it cannot be unsubscribed"):
        events.unsubscribe(observer)


def test_a_failing_observer_stops_the_notification_and_is_named() -> None:
    events, log = EventSource(), []

    def broken(event: str, data: dict[str, Any]) -> None:
        raise KeyError("loss")

    events.subscribe(broken)
    events.subscribe(metrics_logger(log))
    with pytest.raises(RuntimeError, match=r"Observer 'broken' failed on event 'epoch_end': KeyError\('loss'\)\. Fix it, or unsubscribe it") as caught:
        events.notify("epoch_end", epoch=1)
    assert isinstance(caught.value.__cause__, KeyError)
    assert log == [], "observers after the failing one are not called"
    events.unsubscribe(broken)
    events.notify("epoch_end", epoch=1)
    assert log == [{"event": "epoch_end", "epoch": 1}]


def test_training_loop_notifies_its_observers_and_is_deterministic() -> None:
    X, y = load_iris(return_X_y=True)
    runs = []
    for _ in range(2):
        events, log = EventSource(), []
        events.subscribe(metrics_logger(log))
        train_with_events(X, y, events, epochs=3, seed=0)
        runs.append(log)
    assert [entry["event"] for entry in runs[0]] == ["epoch_end"] * 3 + ["training_end"]
    assert [entry["epoch"] for entry in runs[0][:3]] == [1, 2, 3]
    assert runs[0] == runs[1]


def test_live_plot_adds_one_point_per_epoch_and_ignores_other_events() -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    plot = LivePlot(ax, "accuracy")
    plot("epoch_end", {"epoch": 1, "accuracy": 0.5})
    plot("training_end", {"epochs": 1})
    plot("epoch_end", {"epoch": 2, "accuracy": 0.75})
    assert list(plot.line.get_xdata()) == [1, 2]
    assert list(plot.line.get_ydata()) == [0.5, 0.75]
    plt.close(fig)


# Template Method

class RecordingTrainer(IrisTrainer):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def load(self) -> tuple[Any, Any]:
        self.calls.append("load")
        return super().load()

    def prepare(self, X: Any, y: Any) -> Any:
        self.calls.append("prepare")
        return super().prepare(X, y)

    def fit(self, X_train: Any, y_train: Any) -> Any:
        self.calls.append("fit")
        return super().fit(X_train, y_train)

    def evaluate(self, model: Any, X_test: Any, y_test: Any) -> float:
        self.calls.append("evaluate")
        return super().evaluate(model, X_test, y_test)


def test_run_calls_the_hooks_in_a_fixed_order() -> None:
    trainer = RecordingTrainer()
    assert trainer.run() == IrisTrainer().run()
    assert trainer.calls == ["load", "prepare", "fit", "evaluate"]


def test_subclasses_change_only_their_hooks() -> None:
    for subclass in (IrisTrainer, WineTrainer):
        assert subclass.run is Trainer.run
        assert {"load", "make_model"} == {name for name in vars(subclass) if not name.startswith("_")}
    assert IrisTrainer().run() == 1.0
    assert WineTrainer().run() == 1.0


def test_a_trainer_without_its_hooks_says_what_is_missing() -> None:
    with pytest.raises(NotImplementedError, match=r"Trainer must define load\(\) -> \(X, y\)\."):
        Trainer().run()


# Chain of Responsibility

@pytest.fixture
def checks() -> list[Any]:
    return [
        schema_check({"age": "number", "income": "number", "city": "text"}),
        null_check(["age", "income"]),
        range_check("age", 0, 120),
    ]


@pytest.fixture
def clean() -> pd.DataFrame:
    return pd.DataFrame({"age": [31, 45, 62], "income": [30.0, 52.5, 41.0], "city": ["Oslo", "Lima", "Pune"]})


def test_clean_data_passes_every_check(clean: pd.DataFrame, checks: list[Any]) -> None:
    assert validate(clean, checks) is clean


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda df: df.drop(columns="city"), r"Check 'schema' failed: missing columns \['city'\]\."),
        (lambda df: df.assign(income=["a", "b", "c"]), r"Check 'schema' failed: columns \['income'\] do not have the expected kind \['number'\]\."),
        (lambda df: df.assign(income=[1.0, np.nan, np.nan]), r"Check 'nulls' failed: missing values in columns \['income'\], rows \[1, 2\]\."),
        (lambda df: df.assign(age=[31, -4, 200]), r"Check 'ranges' failed: column 'age' outside \[0, 120\] in rows \[1, 2\]\."),
    ],
)
def test_the_chain_names_the_failing_check_and_the_culprits(
    clean: pd.DataFrame, checks: list[Any], break_it: Any, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        validate(break_it(clean), checks)


def test_the_chain_stops_at_the_first_failure(clean: pd.DataFrame) -> None:
    ran = []

    def spy(frame: pd.DataFrame) -> None:
        ran.append("spy")

    broken = clean.assign(age=[31.0, None, 500.0])
    with pytest.raises(ValidationError, match=r"Check 'nulls' failed: missing values in columns \['age'\], rows \[1\]\. .*later checks did not run"):
        validate(broken, [null_check(["age"]), spy, range_check("age", 0, 120)])
    assert ran == []
