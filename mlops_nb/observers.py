"""Who is told what a pipeline run does, step by step (Observer pattern): progress, status, views."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline import StepReport

__all__ = ["RunObserver", "ProgressBar", "StatusLines", "ReportCollector"]


class RunObserver:
    """Base class: override the events you care about. ``Pipeline.observers`` holds instances.

    A run tells ``run_started`` (the steps it will bring up to date, in order), then per step
    ``step_started`` (in this process, only when the step really executes; on Dask, when the step
    is handed to a worker, which may then find it cached) and ``step_finished`` (ran, cached or
    failed), then ``run_finished``, even when a step failed. A single ``%%step`` cell tells only
    the step events.
    """

    def run_started(self, steps: list[str]) -> None:
        """A run of ``steps`` begins."""

    def step_started(self, step: str) -> None:
        """``step`` is about to execute (it was not up to date)."""

    def step_finished(self, report: StepReport) -> None:
        """``report.step`` ran, was restored from the cache, or failed."""

    def run_finished(self) -> None:
        """The run is over, successful or not."""


class ProgressBar(RunObserver):
    """A tqdm bar, one tick per step: a widget in notebooks, a text bar in terminals."""

    def __init__(self, description: str = "pipeline", file: Any = None) -> None:
        self.description = description
        self.file = file
        self._bar: Any = None

    def run_started(self, steps: list[str]) -> None:
        from tqdm.auto import tqdm

        # No timing fields in the bar's text: notebooks record it and must stay reproducible.
        self._bar = tqdm(
            total=len(steps), desc=self.description, unit="step", file=self.file or sys.stderr,
            bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar}| {postfix}",
        )  # fmt: skip

    def step_started(self, step: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"running {step}")

    def step_finished(self, report: StepReport) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{report.step} {report.action}")
            self._bar.update(1)

    def run_finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class StatusLines(RunObserver):
    """Prints each step's one-line summary as it finishes; ``hint(step)`` says how to force a re-run."""

    def __init__(self, hint: Callable[[str], str]) -> None:
        self.hint = hint

    def step_finished(self, report: StepReport) -> None:
        stream = sys.stderr if report.action == "failed" else sys.stdout
        print(report.summary(self.hint(report.step)), file=stream)


class ReportCollector(RunObserver):
    """Keeps every report of a run, e.g. for a summary table at the end."""

    def __init__(self) -> None:
        self.reports: list[StepReport] = []

    def run_started(self, steps: list[str]) -> None:
        self.reports = []

    def step_finished(self, report: StepReport) -> None:
        self.reports.append(report)
