"""The Python API twin of the magics: Pipeline, @step, run, status, in a plain script."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlops_nb import MissingInputError, MlopsNbError, Pipeline, Store, UnknownStepError


class Calls(list):
    """The steps that really executed, kept in a file so no step's closure holds changing state

    (a function's closure values are part of its fingerprint, as its code is)."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = str(log)

    def __eq__(self, other: object) -> bool:
        return self.read() == other

    def __getitem__(self, index: Any) -> Any:
        return self.read()[index]

    def read(self) -> list[str]:
        return Path(self.log).read_text().splitlines() if Path(self.log).exists() else []


def note(log: str, name: str) -> None:
    with open(log, "a") as file:
        file.write(name + "\n")


def make_pipeline(store: Store, calls: Calls) -> Pipeline:
    pipe = Pipeline("api", store=store)
    log = calls.log

    @pipe.step
    def numbers() -> list[int]:
        note(log, "numbers")
        return [3, 1, 2]

    @pipe.step(outputs=("smallest", "largest"))
    def extremes(numbers: list[int]) -> tuple[int, int]:
        note(log, "extremes")
        return min(numbers), max(numbers)

    @pipe.step
    def spread(smallest: int, largest: int) -> int:
        note(log, "spread")
        return largest - smallest

    return pipe


@pytest.fixture
def calls(tmp_path: Path) -> Calls:
    return Calls(tmp_path / "calls.log")


def test_functions_become_steps_with_inputs_from_parameters(store: Store, calls: Calls) -> None:
    pipe = make_pipeline(store, calls)
    assert pipe.order() == ["numbers", "extremes", "spread"]
    assert pipe.upstream("spread") == ["extremes"]
    results = pipe.run()
    assert results == {"numbers": [3, 1, 2], "smallest": 1, "largest": 3, "spread": 2}
    assert calls == ["numbers", "extremes", "spread"]


def test_a_new_pipeline_object_on_the_same_store_restores_without_running(
    store: Store, calls: Calls
) -> None:
    make_pipeline(store, calls).run()
    again = make_pipeline(store, calls)  # like a new process or a kernel restart
    assert list(again.status()["state"]) == ["up to date"] * 3
    assert again.run()["spread"] == 2
    assert calls == ["numbers", "extremes", "spread"]  # from the first run only
    assert list(again.status()["last action"]) == ["cached"] * 3


def test_run_with_a_target_runs_only_what_it_needs(store: Store, calls: Calls) -> None:
    pipe = make_pipeline(store, calls)
    pipe.run("extremes")
    assert calls == ["numbers", "extremes"]
    assert list(pipe.status()["state"]) == ["up to date", "up to date", "never run"]


def test_changing_a_function_reruns_it_and_marks_downstream_stale(store: Store, calls: Calls) -> None:
    pipe = make_pipeline(store, calls)
    pipe.run()

    @pipe.step
    def numbers() -> list[int]:
        note(calls.log, "numbers v2")
        return [3, 1, 2, 9]

    assert list(pipe.status()["state"]) == ["stale", "stale", "stale"]
    assert pipe.run()["spread"] == 8
    assert calls[-3:] == ["numbers v2", "extremes", "spread"]


def test_status_columns_and_states(store: Store, calls: Calls) -> None:
    pipe = make_pipeline(store, calls)
    status = pipe.status()
    assert list(status.columns) == ["step", "needs", "outputs", "state", "why", "last action", "seconds"]
    assert list(status["state"]) == ["never run"] * 3
    assert status.loc[2, "outputs"] == "spread" and status.loc[2, "needs"] == "extremes"


def test_a_failing_function_is_recorded_as_failed(store: Store) -> None:
    pipe = Pipeline("failing", store=store)

    @pipe.step
    def broken() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pipe.run()
    assert pipe.status().loc[0, "state"] == "failed"


def test_missing_inputs_and_unknown_steps_are_explained(store: Store) -> None:
    pipe = Pipeline("missing", store=store)

    @pipe.step
    def total(numbrs: list[int]) -> int:
        return sum(numbrs)

    pipe.namespace["numbers"] = [1]
    with pytest.raises(MissingInputError, match=r"reads 'numbrs'.*Did you mean 'numbers'\?"):
        pipe.run()
    with pytest.raises(UnknownStepError, match=r"No step named 'totl'.*Did you mean 'total'\?"):
        pipe.run_step("totl")


def test_a_function_step_from_another_session_cannot_run_without_its_code(store: Store) -> None:
    pipe = Pipeline("functions", store=store)

    @pipe.step
    def value() -> int:
        return 1

    pipe.run()
    reopened = Pipeline("functions", store=store)
    assert reopened.run()["value"] == 1  # restored from the store
    with pytest.raises(MlopsNbError, match="Run the code that defines it") as failure:
        reopened.run(force=True)
    assert "failed: value (MlopsNbError)" in failure.value.__notes__[0]


def test_cell_steps_run_in_a_script_namespace(store: Store) -> None:
    pipe = Pipeline("cells", store=store, namespace={"rate": 0.5})
    pipe.define_cell("load", "import math\nvalues = [math.sqrt(n) for n in (1, 4, 9)]")
    pipe.define_cell("scale", "scaled = [v * rate for v in values]\nscaled")
    assert pipe.steps["scale"].reads == ("values", "rate")
    assert pipe.steps["load"].outputs == ("values",)  # modules are not outputs
    assert pipe.run()["scaled"] == [0.5, 1.0, 1.5]
    pipe.namespace["rate"] = 2
    assert pipe.status().loc[1, "state"] == "stale"  # a plain variable it reads changed
    assert pipe.run()["scaled"] == [2, 4, 6]


def test_private_and_front_end_names_are_not_inputs_or_outputs(store: Store) -> None:
    pipe = Pipeline("private", store=store, namespace={"In": [], "_scratch": 1})
    pipe.hidden_names = {"In"}
    step = pipe.define_cell("s", "_tmp = len(In) + _scratch\nkept = _tmp")
    assert step.reads == () and step.outputs == ("kept",)


def test_invalid_pipeline_names_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="Invalid pipeline name '../up'"):
        Pipeline("../up", store=store)


def test_the_api_works_in_a_plain_python_script(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            from mlops_nb import Pipeline, Store

            pipe = Pipeline("script", store=Store("store"))

            @pipe.step
            def data():
                print("computing data")
                return list(range(10))

            @pipe.step
            def mean(data):
                return sum(data) / len(data)

            print(pipe.run()["mean"])
            print(pipe.status()["last action"].tolist())
            """
        )
    )
    first = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert first.stdout.split("\n")[:3] == ["computing data", "4.5", "['ran', 'ran']"]
    second = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert second.stdout.split("\n")[:2] == ["4.5", "['cached', 'cached']"]
    assert "IPython" not in subprocess.run(
        [sys.executable, "-c", "import sys; exec(open('train.py').read()); print(sorted(sys.modules))"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.split("\n")[-2]
