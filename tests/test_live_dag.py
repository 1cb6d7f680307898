"""The live DAG widget and the progress bar, driven by real runs in a real IPython shell."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from mlops_nb import Pipeline, Store
from mlops_nb.observers import ProgressBar, RunObserver
from mlops_nb.widgets import DagView, LiveDag

STEPS = {
    "load": "raw = [3, 1, 2]",
    "clean": "clean = sorted(raw)",
    "total": "total = sum(clean)\nprint('total', total)",
}


def define(nb: Any) -> None:
    for name, code in STEPS.items():
        nb.ok(f"%%step {name}\n{code}")


def svg_states(live: LiveDag) -> dict[str, str]:
    return dict(re.findall(r'data-step="([^"]+)" data-state="([^"]+)"', live.graph.value))


def test_dag_live_shows_every_state_as_a_run_goes(nb: Any) -> None:
    define(nb)
    nb.ok("%pipeline clear total")
    nb.ok("live = %dag --live")
    live = nb.ns["live"]
    assert isinstance(live, LiveDag)
    assert svg_states(live) == {"load": "up to date", "clean": "up to date"}

    define(nb)  # total is new again: the view grows when a %%step cell runs
    assert svg_states(live) == {"load": "cached", "clean": "cached", "total": "ran"}

    seen: list[dict[str, str]] = []

    class Snapshot(RunObserver):  # what the widget showed just before each step finished
        def step_finished(self, report: Any) -> None:
            seen.append(svg_states(live))

    nb.pipeline.observers.insert(0, Snapshot())
    nb.ok("%pipeline run --force")
    assert [s[name] for s, name in zip(seen, STEPS)] == ["running"] * 3
    assert svg_states(live) == {"load": "ran", "clean": "ran", "total": "ran"}
    assert live.progress.value == live.progress.max == 3
    assert live.message.value == "done"
    assert re.search(r"ran · \d+\.\d\d s", live.graph.value)  # per-step time


def test_a_failed_step_is_red_and_named(nb: Any) -> None:
    define(nb)
    nb.ok("live = %dag --live")
    nb.run("%%step clean\nclean = sorted(raw) + [1 / 0]")
    live = nb.ns["live"]
    assert svg_states(live)["clean"] == "failed"
    nb.run("%pipeline run")
    assert live.message.value == "failed: clean"


def test_picking_a_step_shows_its_code_inputs_outputs_and_status(nb: Any) -> None:
    define(nb)
    nb.ok("live = %dag --live")
    live = nb.ns["live"]
    live.picker.value = "clean"
    details = live.details.value
    assert "clean = sorted(raw)" in details
    assert "<th style='text-align:left'>inputs</th><td>raw</td>" in details
    assert "<th style='text-align:left'>outputs</th><td>clean</td>" in details
    assert "up to date" in details


def test_text_twin_is_stable_for_notebooks_and_static_views(nb: Any) -> None:
    define(nb)
    nb.ok("live = %dag --live")
    bundle = nb.ns["live"]._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == (
        "Pipeline 'default': 3 steps\n"
        "  load   [up to date]  → raw\n"
        "  clean  [up to date]  → clean  (after load)\n"
        "  total  [up to date]  → total  (after clean)"
    )
    assert bundle["image/svg+xml"].startswith("<svg")


def test_only_the_newest_live_view_is_updated(tmp_path: Any) -> None:
    pipe = Pipeline("p", Store(tmp_path / "s"))
    pipe.define_cell("load", "raw = 1")
    first, second = LiveDag(pipe), DagView(pipe)
    assert [o for o in pipe.observers if isinstance(o, LiveDag)] == [second]
    pipe.run()
    assert first.view.state["load"] == "never run" and second.view.state["load"] == "ran"


def test_the_progress_bar_counts_steps_in_a_terminal(tmp_path: Any) -> None:
    pipe = Pipeline("p", Store(tmp_path / "s"))
    for name, code in STEPS.items():
        pipe.define_cell(name, code)
    stream = io.StringIO()
    pipe.observers.append(ProgressBar("p", file=stream))
    pipe.run()
    text = stream.getvalue()
    assert "p: 0/3 steps" in text and "p: 3/3 steps" in text and "total ran" in text


def test_run_progress_leaves_no_observer_behind(tmp_path: Any) -> None:
    pipe = Pipeline("p", Store(tmp_path / "s"))
    pipe.define_cell("bad", "x = 1 / 0")
    with pytest.raises(ZeroDivisionError):
        pipe.run(progress=True)
    assert pipe.observers == []


def test_a_step_that_cannot_start_is_shown_failed_and_only_this_run_counts(tmp_path: Any) -> None:
    pipe = Pipeline("p", Store(tmp_path / "s"))
    pipe.define_cell("load", "raw = 1")
    pipe.define_cell("bad", "scaled = rate * raw")
    pipe.namespace["rate"] = 2
    pipe.run()
    del pipe.namespace["rate"]  # a plain-cell value gone, as after a restart
    live = LiveDag(pipe)
    with pytest.raises(Exception, match="reads 'rate'"):
        pipe.run(force=True)
    assert live.view.state["bad"] == "failed" and live.message.value == "failed: bad"
    pipe.run("load")
    assert live.message.value == "done"
