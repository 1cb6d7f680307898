"""The IPython layer: ``%%step``, ``%pipeline``, ``%dag``, ``%%features``, ``%%transform`` call the core."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .errors import MlopsNbError, validate_name
from .executors import DaskExecutor, InProcessExecutor, resolve_executor
from .runners import CellRunner, Recording, run_code
from .observers import StatusLines
from .pipeline import Pipeline, StepReport
from .store import Store

__all__ = ["StepMagics", "NotebookRunner", "load", "active_pipeline"]


class NotebookRunner(CellRunner):
    """Runs a step's code in the kernel, recording rich display output (tables, figures) for replay."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell

    @contextlib.contextmanager
    def recording(self, recording: Recording) -> Iterator[None]:
        publisher = self.shell.display_pub
        original_publish = publisher.publish

        def publish(data: dict[str, Any], metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
            recording.append(
                {"output_type": "display_data", "data": data, "metadata": metadata or {}}
            )
            original_publish(data, metadata=metadata, **kwargs)

        publisher.publish = publish  # type: ignore[method-assign,assignment]
        try:
            with super().recording(recording):
                yield
        finally:
            del publisher.publish  # back to the class's own method

    def show(self, value: Any) -> None:
        formatter = self.shell.display_formatter
        data, metadata = formatter.format(value) if formatter is not None else ({}, {})
        if data:
            self.shell.display_pub.publish(data, metadata=metadata)

    def finish(self) -> None:
        # The inline backend shows figures after the cell; show them now so they are recorded.
        backend = sys.modules.get("matplotlib_inline.backend_inline")
        pyplot = sys.modules.get("matplotlib.pyplot")
        if backend is not None and pyplot is not None and "inline" in pyplot.get_backend():
            backend.flush_figures()

    def replay(self, recording: Recording) -> None:
        for output in recording:
            if output["output_type"] == "stream":
                (sys.stderr if output["name"] == "stderr" else sys.stdout).write(output["text"])
            else:
                self.shell.display_pub.publish(output["data"], metadata=output["metadata"])


def _unquote(text: str | None) -> str | None:
    """IPython keeps the quotes of a quoted option value (``--description "two words"``)."""
    if text and len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _names(text: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in (_unquote(text) or "").split(",") if part.strip()]


def _default_pipeline_name(shell: InteractiveShell) -> str:
    """The notebook's file name where the front end tells us, else ``default``."""
    session = shell.user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or ""
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(str(session)).stem).strip("._-")[:64]
    return stem or "default"


@magics_class
class StepMagics(Magics):
    """Owns this kernel's Store and active Pipeline; each magic is a thin call into them."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.kernel = shell  # typed, never None (Magics.shell may be)
        self._pipeline: Pipeline | None = None
        # A Dask cluster takes seconds to start: keep one per --executor value for the session.
        self._executors: dict[str, InProcessExecutor | DaskExecutor] = {}

    @property
    def pipeline(self) -> Pipeline:
        """Created on first use, so that ``%load_ext`` itself does nothing slow."""
        if self._pipeline is None:
            self._pipeline = self._open(_default_pipeline_name(self.kernel))
        return self._pipeline

    def _open(self, name: str) -> Pipeline:
        store = self._pipeline.store if self._pipeline is not None else Store()
        pipeline = Pipeline(name, store, self.kernel.user_ns, runner=NotebookRunner(self.kernel))
        pipeline.hidden_names = set(self.kernel.user_ns_hidden)
        return pipeline

    # -- %%step -------------------------------------------------------------------------------
    @magic_arguments()
    @argument("name", help="The step's name (letters, digits, _ - .), unique in the pipeline.")
    @argument("--needs", metavar="A,B", help="Steps to run before this one, besides those inferred.")
    @argument("--outputs", metavar="X,Y", help="Store only these variables (default: all it assigns).")
    @argument("--files", metavar="PATH,...", help="Files whose content is part of the fingerprint.")
    @argument("--force", action="store_true", help="Run even if a cached result exists.")
    @argument("--no-cache", action="store_true", help="Always run; store nothing.")
    @cell_magic
    def step(self, line: str, cell: str) -> None:
        """Run the cell as a pipeline step, or restore its outputs if nothing changed.

        Inputs are the variables the cell reads, outputs the ones it assigns; a step whose code
        and inputs are unchanged is not executed again, even after a kernel restart.
        """
        __tracebackhide__ = True  # noqa: F841
        args = self.define(line, cell)
        started = time.perf_counter()
        try:
            report = self.pipeline.run_step(args.name, force=args.force, replay=True)
        except MlopsNbError as error:
            raise UsageError(str(error)) from error
        except BaseException:
            failed = StepReport(args.name, "failed", time.perf_counter() - started)
            print(failed.summary(""), file=sys.stderr)
            raise
        print(report.summary(f"%%step {args.name} --force"))

    def define(self, line: str, cell: str) -> Any:
        """Add the ``%%step`` cell to the pipeline without running it; returns its parsed options."""
        args = parse_options(self.step, line)
        code = self.kernel.transform_cell(cell)
        with _usage_errors():
            self.pipeline.define_cell(
                args.name, cell, code=code, needs=_names(args.needs),
                outputs=None if args.outputs is None else _names(args.outputs),
                files=_names(args.files), no_cache=args.no_cache,
            )  # fmt: skip
        return args

    # -- %pipeline ------------------------------------------------------------------------------
    @magic_arguments(name="pipeline")
    @argument(
        "action",
        choices=["run", "status", "why", "clear", "use", "export"],
        help="run [STEP]: bring steps up to date; status: a table of steps; why STEP: what differs "
        "from its stored result; clear [STEP]: forget steps and their cache; use NAME: switch "
        "pipeline; export PATH.py: write a Python module.",
    )
    @argument("target", nargs="?", help="A step name (run, clear), pipeline name (use) or path (export).")
    @argument("--force", action="store_true", help="With run: execute even up-to-date steps.")
    @argument(
        "--executor", metavar="dask|dask://HOST:PORT",
        help="With run: run steps as Dask tasks, independent ones in parallel, on a local cluster "
        "(dask) or a running scheduler (dask://HOST:PORT).",
    )  # fmt: skip
    @line_magic("pipeline")  # type: ignore[arg-type]
    def pipeline_magic(self, line: str) -> Any:
        """Run, inspect, clear, switch or export the notebook's pipeline."""
        __tracebackhide__ = True  # noqa: F841
        args = parse_options(self.pipeline_magic, line)
        with _usage_errors():
            if args.action == "run":
                self._run(args.target, force=args.force, executor=_unquote(args.executor))
                return None
            if args.executor:
                raise UsageError(f"--executor only applies to %pipeline run, not {args.action}.")
            if args.action == "status":
                return self.pipeline.status()
            if args.action == "why":
                if not args.target:
                    raise UsageError("%pipeline why needs a step name, e.g. %pipeline why train")
                reasons = self.pipeline.explain(_unquote(args.target) or "")
                print(_why_text(args.target, reasons))
                return None
            if args.action == "clear":
                self.pipeline.remove(args.target)
                print(f"Forgot {repr(args.target) if args.target else 'every step'} in pipeline {self.pipeline.name!r}.")
                return None
            args.target = _unquote(args.target)
            if args.action == "use":
                if not args.target:
                    raise UsageError("%pipeline use needs a name, e.g. %pipeline use churn_model")
                self._pipeline = self._open(args.target)
                print(f"Using pipeline {args.target!r} ({len(self._pipeline.steps)} steps stored).")
                return None
            from .export import export_pipeline

            if not args.target:
                raise UsageError("%pipeline export needs a path, e.g. %pipeline export pipeline.py")
            path = export_pipeline(self.pipeline, args.target)
            print(f"Wrote {path} ({len(self.pipeline.steps)} steps). Run it with: python {path}")
            return None

    def _run(self, target: str | None, *, force: bool, executor: str | None) -> None:
        """``%pipeline run``: a progress bar, and one status line per step as it finishes."""
        __tracebackhide__ = True  # noqa: F841
        if executor is not None and executor not in self._executors:
            self._executors[executor] = resolve_executor(executor)
        lines = StatusLines(lambda name: f"%pipeline run {name} --force")
        self.pipeline.observers.append(lines)
        try:
            self.pipeline.run(
                target, force=force, progress=True,
                executor=self._executors[executor] if executor is not None else None,
            )  # fmt: skip
        finally:
            self.pipeline.observers.remove(lines)

    # -- %%features ----------------------------------------------------------------------------
    @magic_arguments()
    @argument("view", help="The feature view to ingest into.")
    @argument("--entities", metavar="A,B", help="Key column(s); required when the view is new.")
    @argument("--timestamp", help="The event time column (default event_ts for a new view).")
    @argument("--created", help="The column saying when each row was computed (tie-breaker).")
    @argument("--ttl", help="How long values stay valid, e.g. 2h or 7d.")
    @argument("--description", help="What the features mean.")
    @cell_magic
    def features(self, line: str, cell: str) -> None:
        """Ingest the DataFrame the cell evaluates to (its last expression) into a feature view.

        The view is created from the options when it does not exist yet; options given for an
        existing view re-apply it (a changed schema or key makes a new version).
        """
        __tracebackhide__ = True  # noqa: F841
        import pandas as pd

        from .features import FeatureStore, FeatureView, UnknownViewError

        args = parse_options(self.features, line)
        with _usage_errors():
            validate_name(args.view, "feature view")  # before it names the cell's code
        value = run_code(self.kernel.transform_cell(cell), self.kernel.user_ns, f"<features {args.view}>")
        if not isinstance(value, pd.DataFrame):
            raise UsageError(
                f"%%features needs the cell to end with a DataFrame expression, got "
                f"{type(value).__qualname__}. End the cell with the frame, e.g. `stats`."
            )
        with _usage_errors():
            store = FeatureStore(self.pipeline.store)
            try:
                base: FeatureView | None = store.get_view(args.view)
            except UnknownViewError:
                base = None
            options: dict[str, Any] = {
                key: _unquote(getattr(args, key))
                for key in ("timestamp", "created", "ttl", "description")
                if getattr(args, key) is not None
            }
            if args.entities:
                options["entities"] = _names(args.entities)
            if base is None and "entities" not in options:
                raise UsageError(
                    f"Feature view {args.view!r} is new: say which columns are its keys, e.g. "
                    f"%%features {args.view} --entities driver_id --timestamp event_ts"
                )
            if base is None or options:  # options given for an existing view re-apply it
                store.apply(replace(base, **options) if base else FeatureView(args.view, **options))
            print(store.ingest(args.view, value))

    # -- %%transform ---------------------------------------------------------------------------
    @magic_arguments()
    @argument("name", help="The transform's name; each save adds a version.")
    @argument("--data", metavar="VAR", help="The variable holding the data it was fitted on.")
    @argument("--source", help="Where that data came from, e.g. step:features.")
    @argument("--tags", metavar="A,B", help="Labels to find this version by.")
    @cell_magic
    def transform(self, line: str, cell: str) -> None:
        """Save the fitted transformer the cell evaluates to (its last expression), with skops.

        With --data, the input schema and fit-time statistics are saved too, for skew checks.
        """
        __tracebackhide__ = True  # noqa: F841
        from .transforms import TransformRegistry

        args = parse_options(self.transform, line)
        with _usage_errors():
            validate_name(args.name, "transform")
        value = run_code(self.kernel.transform_cell(cell), self.kernel.user_ns, f"<transform {args.name}>")
        if value is None:
            raise UsageError(
                "%%transform needs the cell to end with the fitted transformer, e.g. "
                "`StandardScaler().fit(X_train)`."
            )
        data_name = _unquote(args.data)
        if data_name is not None and data_name not in self.kernel.user_ns:
            raise UsageError(f"--data names {data_name!r}, which is not defined in this notebook.")
        data = self.kernel.user_ns[data_name] if data_name else None
        with _usage_errors():
            registry = TransformRegistry(self.pipeline.store)
            version = registry.save(
                args.name, value, data, source=_unquote(args.source), tags=_names(args.tags)
            )
        schema = f" with the schema and statistics of {data_name!r}" if data_name else ""
        print(f"Saved transform {args.name!r} v{version} ({type(value).__name__}){schema}.")

    # -- %dag ---------------------------------------------------------------------------------
    @magic_arguments()
    @argument("--direction", default="LR", choices=["LR", "TB"], help="Left-right or top-bottom.")
    @argument("--live", action="store_true", help="A widget that updates while the pipeline runs.")
    @line_magic
    def dag(self, line: str) -> Any:
        """Show the pipeline's DAG, each step coloured by its state.

        With --live, a widget that recolours each step as ``%pipeline run`` or a ``%%step`` cell
        runs it, with a progress bar and per-step times; pick a step to see its code and status.
        """
        args = parse_options(self.dag, line)
        from .display import DagView

        with _usage_errors():
            if args.live:
                try:
                    from .widgets.live_dag import LiveDag
                except ImportError:
                    print("ipywidgets is not installed: showing the static DAG.", file=sys.stderr)
                else:
                    return LiveDag(self.pipeline, direction=args.direction)
            return DagView(self.pipeline, direction=args.direction)

    @line_magic
    def browse(self, line: str) -> Any:
        """Browse the store: pipelines and steps, feature views, transforms (a widget)."""
        if line.strip():
            raise UsageError(f"%browse takes no arguments, got {line.strip()!r}.")
        from .widgets.store_browser import StoreBrowser

        return StoreBrowser(self.pipeline.store)


def _why_text(step: str, reasons: list[str]) -> str:
    """``%pipeline why``'s answer: one line per reason, or that the step is up to date."""
    if not reasons:
        return f"{step!r} is up to date: running it restores its stored result."
    lines = [f"{step!r} would run because:"] + [f"  - {reason}" for reason in reasons]
    return "\n".join(lines)


def parse_options(magic: Any, line: str) -> Any:
    """``parse_argstring``, with an unclosed quote reported as bad usage, not a crash."""
    try:
        return parse_argstring(magic, line)
    except ValueError as error:  # from shlex: "No closing quotation"
        raise UsageError(
            f"Cannot read the options {line.strip()!r}: {error}. Close the quote, e.g. "
            f'--description "two words".'
        ) from None


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """Show mlops_nb errors as one clear line instead of a traceback through the magic."""
    try:
        yield
    except MlopsNbError as error:
        raise UsageError(str(error)) from error


def load(shell: InteractiveShell) -> None:
    """Register the magics on ``shell`` (called by ``%load_ext mlops_nb``)."""
    magics = StepMagics(shell)
    shell.register_magics(magics)


def active_pipeline() -> Pipeline:
    """The Pipeline of the running IPython session's mlops_nb extension."""
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("StepMagics") if shell is not None else None
    if magics is None:
        raise MlopsNbError(
            "No notebook pipeline is active: run %load_ext mlops_nb in the notebook first, or, "
            "in a script, create one with mlops_nb.Pipeline('name')."
        )
    return magics.pipeline
