"""A DAG view that colours each step as a run goes: running, ran, cached, failed (ipywidgets)."""

from __future__ import annotations

from html import escape
from typing import Any

from ..display import DagView
from ..observers import RunObserver
from ..pipeline import Pipeline, StepReport

__all__ = ["LiveDag"]


class LiveDag(RunObserver):
    """Watches a pipeline (Observer pattern) and redraws its DAG, progress and step details live.

    Display it in a notebook, then run the pipeline: every step turns blue while it runs, then
    green (ran), teal (cached) or red (failed), with its time. Pick a step to see its code,
    inputs, outputs and last status. Only the latest view of a pipeline is kept up to date.

    Where widgets cannot render (a terminal, a static page), the static DAG is shown instead.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline to watch.
    direction : {"LR", "TB"}
        Left-right or top-bottom layout.
    """

    def __init__(self, pipeline: Pipeline, direction: str = "LR") -> None:
        import ipywidgets as widgets

        self.pipeline = pipeline
        self.view = DagView(pipeline, direction=direction)
        self.graph = widgets.HTML()
        self.progress = widgets.IntProgress(min=0, max=max(len(self.view.steps), 1), description="run")
        self.message = widgets.Label()
        self.picker = widgets.Dropdown(options=self.view.steps, description="step")
        self.details = widgets.HTML()
        self.widget = widgets.VBox(
            [self.graph, widgets.HBox([self.progress, self.message]), self.picker, self.details]
        )
        self.widget.add_class("mlops-nb-live-dag")
        self.failed: list[str] = []  # in the current run, for its final message
        self.picker.observe(lambda _: self._show_details(), names="value")
        # One live view per pipeline: an older one would keep redrawing a cell nobody watches.
        pipeline.observers[:] = [o for o in pipeline.observers if not isinstance(o, LiveDag)]
        pipeline.observers.append(self)
        self._redraw()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude) or {}
        # Front ends without widgets show the static picture; text stays reproducible for nbval.
        bundle.update({"text/plain": self.view.text(), "image/svg+xml": self.view.svg()})
        return bundle

    def __repr__(self) -> str:
        return self.view.text()

    # -- events from the pipeline ------------------------------------------------------------------
    def run_started(self, steps: list[str]) -> None:
        self.view = DagView(self.pipeline, direction=self.view.direction)  # steps may have changed
        self.picker.options = self.view.steps
        self.progress.max, self.progress.value = max(len(steps), 1), 0
        self.failed = []
        self.message.value = f"running {len(steps)} step{'s' * (len(steps) != 1)}"
        self._redraw()

    def step_started(self, step: str) -> None:
        if step not in self.view.state:
            self._add_new_steps()
        self.view.state[step] = "running"
        self.message.value = f"running {step}"
        self._redraw()

    def step_finished(self, report: StepReport) -> None:
        if report.step not in self.view.state:
            self._add_new_steps()
        self.view.state[report.step] = report.action
        if report.action == "failed":
            self.failed.append(report.step)
        self.view.seconds[report.step] = report.seconds
        self.progress.value = min(self.progress.value + 1, self.progress.max)
        self.message.value = f"{report.step} {report.action} in {report.seconds:.2f} s"
        self._redraw()

    def run_finished(self) -> None:
        self.message.value = f"failed: {', '.join(self.failed)}" if self.failed else "done"

    def _add_new_steps(self) -> None:
        """A ``%%step`` cell added a step since the view was drawn: redraw, keeping live states."""
        old = self.view
        self.view = DagView(self.pipeline, direction=old.direction)
        self.view.state.update({n: s for n, s in old.state.items() if n in self.view.state})
        self.view.seconds.update({n: s for n, s in old.seconds.items() if n in self.view.state})
        self.picker.options = self.view.steps

    # -- drawing ---------------------------------------------------------------------------------
    def _redraw(self) -> None:
        # Shrink a wide DAG to the output's width instead of cutting it off.
        self.graph.value = self.view.svg().replace("<svg ", '<svg style="max-width:100%;height:auto" ', 1)
        self._show_details()

    def _show_details(self) -> None:
        name = self.picker.value
        if name is None or name not in self.pipeline.steps:
            self.details.value = ""
            return
        step = self.pipeline.steps[name]
        seconds = self.view.seconds.get(name)
        rows = [
            ("state", self.view.state.get(name, "?") + (f" in {seconds:.2f} s" if seconds is not None else "")),
            ("inputs", ", ".join(step.reads) or "none"),
            ("outputs", ", ".join(step.outputs) or "none"),
            ("runs after", ", ".join(self.pipeline.upstream(name)) or "nothing"),
        ]
        table = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{escape(v)}</td></tr>" for k, v in rows)
        self.details.value = f"<table>{table}</table><pre>{escape(step.source)}</pre>"
