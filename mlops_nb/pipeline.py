"""Steps and the Pipeline: the DAG between them, their fingerprints, staleness and cached runs."""

from __future__ import annotations

import builtins
import contextlib
import graphlib
import heapq
import importlib
import inspect
import json
import pickle
import sys
import textwrap
import time
import types
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from . import global_state, lineage
from .errors import (
    CycleError,
    MissingInputError,
    MlopsNbError,
    MutationWarning,
    UnknownStepError,
    did_you_mean,
    validate_name,
)
from .executors import InProcessExecutor, resolve_executor
from .runners import CellRunner, Recording, remember_source
from .hashing import code_dependencies, content_hash, hash_bytes
from .observers import ProgressBar, RunObserver
from .runs import Basis, RunRecords, StepReport
from .cells import CellInfo
from .mutations import find_mutations
from .steps import Step, analysed
from .store import Store

if TYPE_CHECKING:
    import pandas as pd

    from .executors import DaskExecutor

__all__ = ["Step", "StepReport", "Pipeline", "STATES"]

STATES = ("up to date", "stale", "never run", "failed")


class Pipeline:
    """A named DAG of steps whose results persist in a :class:`~mlops_nb.store.Store`.

    Steps keep the order they were defined in (a notebook's top-to-bottom order; redefining a
    step keeps its place). A step reads each name from the latest step before it that outputs
    the name, so re-binding ``X`` in a later step is normal: each reader gets its version.

    Parameters
    ----------
    name : str
        The pipeline's name in the store; steps are saved under it.
    store : Store, optional
        Where results live; default ``Store()`` (``$MLOPS_NB_HOME`` or ``./.mlops_nb``).
    namespace : dict, optional
        Where steps read inputs and write outputs; in a notebook, the user namespace.
    executor : InProcessExecutor or DaskExecutor, optional
        Which step runs when and where (the scheduler); default: one after the other, here.
    runner : CellRunner, optional
        How one step's code runs and its output is recorded; notebooks record rich output.

    Examples
    --------
    >>> import tempfile
    >>> pipe = Pipeline("demo", store=Store(tempfile.mkdtemp()))
    >>> @pipe.step
    ... def numbers():
    ...     return [3, 1, 2]
    >>> @pipe.step
    ... def total(numbers):
    ...     return sum(numbers)
    >>> pipe.run()["total"]
    6
    >>> pipe.run_step("total").action
    'cached'
    """

    def __init__(
        self,
        name: str = "default",
        store: Store | None = None,
        namespace: dict[str, Any] | None = None,
        executor: InProcessExecutor | DaskExecutor | None = None,
        runner: CellRunner | None = None,
    ) -> None:
        self.name = validate_name(name, "pipeline")
        self.store = store if store is not None else Store()
        self.namespace: dict[str, Any] = namespace if namespace is not None else {}
        self.executor: InProcessExecutor | DaskExecutor = executor or InProcessExecutor()
        self.runner = runner or CellRunner()
        self.records = RunRecords(self.store, self.name)
        #: Told about every step that runs or is restored: progress bars, live DAG views...
        self.observers: list[RunObserver] = []
        #: Names the front end owns (IPython's In, Out, exit...): never treated as step inputs.
        self.hidden_names: set[str] = set()
        self._linked: dict[str, Step] | None = None
        self._links: dict[str, dict[str, str]] = {}
        rows = self.store.query(
            "SELECT definition FROM steps WHERE pipeline = ? ORDER BY position", (self.name,)
        )
        steps = [Step.from_json(definition) for (definition,) in rows]
        self.steps: dict[str, Step] = {step.name: step for step in steps}
        #: The definitions as saved: a step's definition is saved only once it ran or restored.
        self._saved = {step.name: step.to_json() for step in steps}
        #: Hashes of every value a step produced in this session, by name, even if the step has
        #: since been cleared: such a value in the namespace came from a step, not a plain cell.
        self._produced: dict[str, set[str]] = {}

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={list(self.steps)})"

    @staticmethod
    def stored(store: Store) -> dict[str, int]:
        """The pipelines saved in ``store``: name -> number of steps, by name."""
        rows = store.query("SELECT pipeline, COUNT(*) FROM steps GROUP BY pipeline ORDER BY pipeline")
        return dict(rows)

    # -- defining steps ------------------------------------------------------------------------
    def add(self, step: Step) -> Step:
        """Add or replace a step (a replaced step keeps its place), checking the DAG stays valid.

        A new step is saved at once; a changed definition is saved once the step has run or
        been restored, so a definition that fails never replaces one that worked.
        """
        for needed in step.needs:
            if needed not in self.steps or needed == step.name:
                raise UnknownStepError(
                    f"Step {step.name!r} needs {needed!r}, which is not a step of pipeline "
                    f"{self.name!r}.{did_you_mean(needed, self.steps)} Known steps: "
                    f"{', '.join(self.steps) or 'none yet'}. Run the cell defining {needed!r} first."
                )
        candidate = {**self.steps, step.name: step}
        self._check_graph(candidate)
        self.steps = candidate
        if step.name not in self._saved:
            self._save_definition(step)  # a new step replaces nothing: save it at once
        return step

    def _save_definition(self, step: Step) -> None:
        if self._saved.get(step.name) == step.to_json():
            return
        position = list(self.steps).index(step.name)
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?)",
                (self.name, step.name, step.to_json(), position),
            )
        self._saved[step.name] = step.to_json()

    def define_cell(
        self,
        name: str,
        source: str,
        *,
        code: str | None = None,
        needs: Iterable[str] = (),
        outputs: Iterable[str] | None = None,
        files: Iterable[str] = (),
        no_cache: bool = False,
    ) -> Step:
        """Define a step from a cell's source; its reads and outputs come from static analysis.

        ``code`` is the Python to run when it differs from ``source`` (IPython syntax such as
        ``%time`` is translated first); ``outputs`` narrows the names that are stored.
        """
        validate_name(name)
        code = source if code is None else code
        info = analysed(code)
        defined = [n for n in info.defines if not n.startswith("_")]
        if outputs is not None:
            outputs = list(outputs)
            for output in outputs:
                if output not in info.defines:
                    raise MlopsNbError(
                        f"--outputs names {output!r}, which step {name!r} never assigns."
                        f"{did_you_mean(output, defined)} It assigns: {', '.join(defined) or 'nothing'}."
                    )
            defined = outputs
        earlier = self._steps_before(name)
        imports, reads = {}, []
        for read in info.reads:
            value = self.namespace.get(read, _MISSING)
            if read in self.hidden_names or read.startswith("_") or isinstance(value, types.MethodType):
                continue  # the front end's own names (In, Out, get_ipython...) are not data
            path = _import_path(value) if value is not _MISSING else _imported_by(read, earlier)
            if path:
                imports[read] = path  # re-imported on demand, e.g. after a kernel restart
            elif value is not _MISSING or not hasattr(builtins, read) or any(
                read in s.outputs for s in earlier
            ):
                reads.append(read)
        outputs_ = tuple(n for n in defined if n not in info.imports and n not in imports)
        changed = self._changed_in_place(name, info, earlier)
        if outputs is None:  # a value changed in place is an output too: the cells after see it
            outputs_ += tuple(n for n in changed if n not in outputs_)
        step = Step(
            name, code, source=source, reads=tuple(reads), outputs=outputs_, needs=tuple(needs),
            files=tuple(files), no_cache=no_cache, imports=imports,
        )  # fmt: skip
        previous = self.steps.get(name)
        if previous is not None and previous.code == code:
            step.defines_imports = previous.defines_imports
            learned = tuple(n for n in previous.learned if n in reads and outputs is None)
            step.outputs += tuple(n for n in learned if n not in step.outputs)
            step.learned = learned
        # Warnings quote the line they are about: let them see this version of the code.
        remember_source(code, f"<step {name}>")
        self.add(step)
        self._warn_about_mutations(step, info)
        return step

    def _steps_before(self, name: str) -> list[Step]:
        """The steps defined before ``name`` (all of them, for a new step)."""
        before = []
        for step in self.steps.values():
            if step.name == name:
                break
            before.append(step)
        return before

    def step(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        outputs: Iterable[str] | None = None,
        needs: Iterable[str] = (),
        files: Iterable[str] = (),
        no_cache: bool = False,
    ) -> Any:
        """Decorator: a function becomes a step. Parameters are inputs; the return is the output.

        The output is named after the function, or after ``outputs`` when it returns a tuple.
        The function itself (its code and the globals it reads) is part of the fingerprint.
        """

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            parameters = tuple(inspect.signature(function).parameters)
            try:
                code = textwrap.dedent(inspect.getsource(function))
            except (OSError, TypeError):
                code = repr(function.__code__.co_code.hex())  # no source (e.g. python -c)
            step = Step(
                name or function.__name__, code, reads=parameters,
                outputs=tuple(outputs) if outputs is not None else (function.__name__,),
                needs=tuple(needs), files=tuple(files), no_cache=no_cache, kind="function",
                func=function,
            )  # fmt: skip
            self.add(step)
            self._save_definition(step)  # a function step is defined by running its decorator
            return function

        return register(func) if func is not None else register

    def remove(self, name: str | None = None) -> None:
        """Forget one step (or, with no name, every step) and its cached results."""
        names = [self._get(name).name] if name is not None else list(self.steps)
        with self.store.transaction() as db:
            for step_name in names:
                for table in ("steps", "results", "runs"):
                    column = "name" if table == "steps" else "step"
                    db.execute(
                        f"DELETE FROM {table} WHERE pipeline = ? AND {column} = ?",  # noqa: S608
                        (self.name, step_name),
                    )
        self.steps = {n: s for n, s in self.steps.items() if n not in names}
        for step_name in names:
            self._saved.pop(step_name, None)

    # -- the graph -------------------------------------------------------------------------------
    def links(self, steps: dict[str, Step] | None = None) -> dict[str, dict[str, str]]:
        """For each step, the step each name it reads comes from: the latest one before it."""
        steps = self.steps if steps is None else steps
        if self._linked is not steps:  # step dicts are replaced, never edited, so identity is enough
            latest: dict[str, str] = {}
            links: dict[str, dict[str, str]] = {}
            for step in steps.values():
                links[step.name] = {read: latest[read] for read in step.reads if read in latest}
                latest.update(dict.fromkeys(step.outputs, step.name))
            self._linked, self._links = steps, links
        return self._links

    def upstream(self, name: str, steps: dict[str, Step] | None = None) -> list[str]:
        """The steps that ``name`` directly depends on (producers of its reads, plus --needs)."""
        steps = self.steps if steps is None else steps
        return list(dict.fromkeys([*steps[name].needs, *self.links(steps)[name].values()]))

    def _check_graph(self, steps: dict[str, Step]) -> None:
        # Reads always point back to an earlier step; only --needs can close a circle.
        if not any(step.needs for step in steps.values()):
            return
        sorter = graphlib.TopologicalSorter({name: self.upstream(name, steps) for name in steps})
        try:
            sorter.prepare()
        except graphlib.CycleError as error:
            cycle = " → ".join(reversed(error.args[1]))
            raise CycleError(
                f"These steps would depend on each other in a circle: {cycle}. A pipeline must be "
                f"acyclic: drop a --needs."
            ) from None

    def order(self, target: str | None = None) -> list[str]:
        """Step names in an order where every step comes after the steps it depends on.

        With ``target``, only that step and the steps it (transitively) depends on.
        """
        wanted = set(self.steps)
        if target is not None:
            wanted, pending = set(), [self._get(target).name]
            while pending:
                current = pending.pop()
                if current not in wanted:
                    wanted.add(current)
                    pending.extend(self.upstream(current))
        sorter = graphlib.TopologicalSorter(
            {name: self.upstream(name) for name in self.steps if name in wanted}
        )
        position = {name: index for index, name in enumerate(self.steps)}
        sorter.prepare()
        # Always the earliest ready step: notebook order wherever --needs allows, so a name
        # several steps bind ends up holding the last one's value, as after a plain run.
        ordered: list[str] = []
        ready: list[tuple[int, str]] = []
        while sorter.is_active():
            for name in sorter.get_ready():
                heapq.heappush(ready, (position[name], name))
            name = heapq.heappop(ready)[1]
            ordered.append(name)
            sorter.done(name)
        return ordered

    def _get(self, name: str) -> Step:
        if name not in self.steps:
            raise UnknownStepError(
                f"No step named {name!r} in pipeline {self.name!r}.{did_you_mean(name, self.steps)}"
                f" Known steps: {', '.join(self.steps) or 'none yet'}."
            )
        return self.steps[name]

    # -- fingerprints ------------------------------------------------------------------------------
    def basis(self, name: str) -> Basis:
        """What the step's fingerprint is made of now: code, inputs, files, code it uses, settings."""
        step = self._get(name)
        return self._current_basis(step, self.records.last())

    def fingerprint(self, name: str) -> str:
        """The step's current fingerprint: its code and options plus the content of its inputs."""
        return self.basis(name).fingerprint

    def _current_basis(self, step: Step, last: dict[str, dict[str, Any]]) -> Basis:
        self._import_reads(step)
        settings = global_state.snapshot()
        self._redo_own_imports(step)
        return self._basis(step, last, settings)

    def _basis(
        self, step: Step, last: dict[str, dict[str, Any]], settings: dict[str, Any] | None = None
    ) -> Basis:
        """The step's basis now; ``settings`` is a :func:`global_state.snapshot` taken already."""
        links = self.links()[step.name]
        produced = self._produced_hashes(last)
        inputs: dict[str, list[Any]] = {}
        for read in step.reads:
            producer = links.get(read)
            recorded = last.get(producer, {}).get("outputs", {}).get(read) if producer else None
            value_hash = content_hash(self.namespace[read]) if read in self.namespace else None
            if value_hash is not None and (value_hash == recorded or value_hash not in produced.get(read, ())):
                inputs[read] = [value_hash, producer]  # the producer's version, or a plain cell's
            elif recorded is not None:
                inputs[read] = [recorded, producer]  # another step's version, or not loaded: its own
        files = {path: _file_hash(Path(path), step.name) for path in step.files}
        # The code it uses, named so a change can be explained: your modules by content, the
        # libraries by version (a function read as an input is hashed by its code, with inputs).
        deps: dict[str, str] = {}
        for alias in [*step.imports, *step.info.imports]:
            if alias in self.namespace:
                value = self.namespace[alias]
                deps.update(code_dependencies(value))
                if not callable(value) and not isinstance(value, types.ModuleType):
                    # data imported by name (`from settings import RATE`): by its content
                    deps[f"imported value {alias}"] = content_hash(value)
        if step.func is not None:
            deps["function"] = content_hash(step.func)
            deps.update(code_dependencies(step.func))
        elif step.kind == "function" and (before := RunRecords.basis(last.get(step.name))):
            # A function step from another session: its code is not loaded here to hash, so
            # its stored result stands for it (it cannot run here anyway).
            deps = before.deps
        snapshot = global_state.snapshot() if settings is None else settings
        hashes = global_state.settings_hashes(snapshot)
        for generator in global_state.draws_from_global_rng(step.code, self.namespace):
            # pickle, not content_hash: that would import pandas for a numpy value
            hashes[f"{generator} random state"] = hash_bytes(pickle.dumps(snapshot.get(generator)))
        return Basis(
            step.code_hash, step.source, inputs, files, deps, hashes,
        )  # fmt: skip

    # -- running -----------------------------------------------------------------------------------
    def run(
        self,
        target: str | None = None,
        *,
        force: bool = False,
        executor: InProcessExecutor | DaskExecutor | str | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Bring every step (or ``target`` and what it needs) up to date, in dependency order.

        Up-to-date steps are not executed: their outputs come from the store. A step that fails
        does not stop the others: every step that does not depend on it still runs or is
        restored, then :class:`~mlops_nb.errors.StepsFailedError` names what could not be done.
        Returns the outputs.

        Parameters
        ----------
        target : str, optional
            Run only this step and the steps it needs.
        force : bool
            Execute even up-to-date steps.
        executor : optional
            How the steps run: this pipeline's own executor (default, one after the other in this
            process), a :class:`~mlops_nb.executors.DaskExecutor`, or ``"dask"`` /
            ``"dask://HOST:PORT"`` (see :func:`~mlops_nb.executors.resolve_executor`). A cluster
            started from a string is stopped after the run; pass a ``DaskExecutor`` to reuse one.
        progress : bool
            Show a progress bar while the run lasts.
        """
        names = self.order(target)
        runner = resolve_executor(executor) if executor is not None else self.executor
        added = [ProgressBar(self.name)] if progress else []
        self.observers.extend(added)
        try:
            self.notify("run_started", names)
            runner.run_steps(self, names, force=force)
        finally:
            self.notify("run_finished")
            for observer in added:
                self.observers.remove(observer)
            if isinstance(executor, str):
                runner.close()  # a cluster started for this run only
        return {n: self.namespace[n] for name in names for n in self.steps[name].outputs if n in self.namespace}

    def notify(self, event: str, *args: Any) -> None:
        """Tell every observer about ``event`` (a :class:`~mlops_nb.observers.RunObserver` method)."""
        for observer in list(self.observers):
            getattr(observer, event)(*args)

    def run_step(self, name: str, *, force: bool = False, replay: bool = False) -> StepReport:
        """Run one step, or restore it from the store when its fingerprint is unchanged.

        With ``replay``, a restored step shows the output it printed and displayed when it ran.
        """
        __tracebackhide__ = True  # noqa: F841
        step = self._get(name)
        try:
            self._import_reads(step)
            last = self._provide_inputs(step)
            # Settings as the cells before left them: before this step's own imports, which
            # may change them (matplotlib's inline backend sets rcParams when pyplot is imported).
            settings_before = global_state.snapshot()
            self._redo_own_imports(step)
            basis = self._basis(step, last, settings_before)
        except MlopsNbError:  # e.g. an input nobody defines: observers see the step fail
            self.notify("step_finished", StepReport(name, "failed", 0.0))
            raise
        if not force and not step.no_cache:
            report = self._restore(step, basis, replay)
            if report is not None:
                self._remember(step)
                self.notify("step_finished", report)
                return report
        reason = "forced" if force else "--no-cache" if step.no_cache else self._why(step, basis, last)[0]
        if step.func is None and not step.code.strip():
            raise MlopsNbError(f"Step {name!r} has no code to run.")
        if step.kind == "function" and step.func is None:
            raise MlopsNbError(
                f"Step {name!r} must run, but it is a Python function from another session whose "
                f"code is not loaded here. Run the code that defines it (the @step decorator) again."
            )
        self.notify("step_started", name)
        started = time.perf_counter()
        try:
            with lineage.collecting() as used:
                recording = self.runner.execute(step, self.namespace)
            self._learn_changed_inputs(step, basis)
            changes = global_state.changes(settings_before, global_state.snapshot())
            seconds = time.perf_counter() - started
            report = self._store_run(step, basis, recording, seconds, used, changes)
        except BaseException as error:
            seconds = time.perf_counter() - started
            self.records.record_failure(step.name, step.code_hash, seconds, repr(error))
            self.notify("step_finished", StepReport(name, "failed", seconds))
            raise
        report.reason = reason.splitlines()[0].rstrip(":")
        self._remember(step)
        self.notify("step_finished", report)
        return report

    def _learn_changed_inputs(self, step: Step, basis: Basis) -> None:
        """Inputs of earlier steps that the step changed in place while running become its
        outputs: what static analysis cannot see, e.g. ``train_test_split(..., random_state=rs)``
        advancing a generator another step made. The cells after it then read the changed value."""
        links = self.links()[step.name]
        changed = tuple(
            name
            for name, (value_hash, producer) in basis.inputs.items()
            if producer is not None and name not in step.outputs and name in self.namespace
            and content_hash(self.namespace[name]) != value_hash
        )  # fmt: skip
        if changed and all(name in links for name in changed):
            step.outputs += changed
            step.learned += changed
            self._linked = None  # the producers of later steps' inputs may have changed
            names = ", ".join(repr(name) for name in changed)
            warnings.warn_explicit(
                f"step {step.name!r} changed {names} (made by an earlier step) in place while "
                f"running, e.g. by passing it to a function that changes it. It is stored as an "
                f"output of {step.name!r} too, so the cells after it see the change.",
                MutationWarning, filename=f"<step {step.name}>", lineno=1,
            )  # fmt: skip

    def _remember(self, step: Step) -> None:
        """Save the definition of a step that worked, with the import paths its code binds."""
        bound = {
            alias: path
            for alias in step.info.imports
            if (path := _import_path(self.namespace.get(alias, _MISSING)))
        } if step.kind == "cell" else {}  # fmt: skip
        step.defines_imports = bound
        self._save_definition(step)

    def _store_run(
        self, step: Step, basis: Basis, recording: Recording, seconds: float,
        used: list[dict[str, Any]], changes: dict[str, Any],
    ) -> StepReport:  # fmt: skip
        """Store a step's outputs and recorded display, then commit its result in one transaction."""
        outputs = tuple(n for n in step.outputs if n in self.namespace)
        if step.no_cache:
            hashes = {n: content_hash(self.namespace[n]) for n in outputs}
            self._note_produced(hashes)
            with self.store.transaction() as db:
                self.records.record(db, step.name, "ran", basis, hashes, seconds)
            return StepReport(step.name, "ran", seconds, outputs, stored=False, recording=recording)
        refs = {
            n: self.store.put(self.namespace[n], label=f"output {n!r} of step {step.name!r}")
            for n in outputs
        }
        state = self.store.put(changes, label=f"global settings of step {step.name!r}").sha256 if changes else ""
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO results (pipeline, step, fingerprint, outputs, display, "
                "seconds, created, lineage, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.name, step.name, basis.fingerprint,
                    json.dumps({n: [r.sha256, r.value_hash] for n, r in refs.items()}),
                    json.dumps(recording), seconds, time.time(), json.dumps(used, default=str),
                    state,
                ),
            )  # fmt: skip
            self.records.record(
                db, step.name, "ran", basis, {n: r.value_hash for n, r in refs.items()}, seconds
            )
        self._note_produced({n: r.value_hash for n, r in refs.items()})
        return StepReport(step.name, "ran", seconds, outputs, recording=recording)

    def _note_produced(self, hashes: dict[str, str]) -> None:
        for name, value_hash in hashes.items():
            self._produced.setdefault(name, set()).add(value_hash)

    def _import_reads(self, step: Step) -> None:
        """Import what the step reads as a module or library object (made by an earlier step).

        Imports are never data: after a restart they are imported again, not restored.
        """
        for alias, (module, qualname) in step.imports.items():
            if alias not in self.namespace:
                with contextlib.suppress(ImportError, AttributeError):
                    self.namespace[alias] = _load(module, qualname)

    def _redo_own_imports(self, step: Step) -> None:
        """Re-do the step's own import statements: a cached step still leaves its modules
        behind for the cells after it, as a plain run would."""
        for statement in step.import_statements():
            with contextlib.suppress(ImportError):
                exec(statement, self.namespace)  # noqa: S102 -- the step's own import line

    def _produced_hashes(self, last: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
        """Per name, the hashes of every value a step produced: recorded, or in this session."""
        produced = {name: set(hashes) for name, hashes in self._produced.items()}
        for record in last.values():
            for output, value_hash in record["outputs"].items():
                produced.setdefault(output, set()).add(value_hash)
        return produced

    def _provide_inputs(self, step: Step) -> dict[str, dict[str, Any]]:
        """Make sure each name the step reads holds its producer's version.

        A value another (later) step put under that name, or no value at all, is replaced by
        restoring (or running) the producer. A value that no step produced comes from a plain
        cell and is used as it is. The walk is a loop, not a recursion: chains of any length.
        Returns the last run of every step (see :meth:`RunRecords.last`), as it is afterwards.
        """
        last = self.records.last()
        produced = self._produced_hashes(last)
        hashes: dict[str, str] = {}

        def holds(name: str, producer: str) -> bool:
            if name not in self.namespace:
                return False
            if name not in hashes:
                hashes[name] = content_hash(self.namespace[name])
            expected = last.get(producer, {}).get("outputs", {}).get(name)
            return hashes[name] == expected or hashes[name] not in produced.get(name, set())

        stale, pending = set(), [step.name]
        while pending:
            for read, producer in self.links()[pending.pop()].items():
                if producer not in stale and not holds(read, producer):
                    stale.add(producer)
                    pending.append(producer)
        for producer in [name for name in self.steps if name in stale]:  # in notebook order
            self.run_step(producer)
        if stale:
            last = self.records.last()
        recorded_inputs = last.get(step.name, {}).get("inputs", {})
        for read in step.reads:
            if read not in self.namespace and (step.func is not None or read in recorded_inputs):
                raise MissingInputError(
                    f"Step {step.name!r} reads {read!r}, which no step before it outputs and which "
                    f"is not defined in this session."
                    f"{did_you_mean(read, [*self.namespace, *self._all_outputs()])} Run the cell "
                    f"that defines it, or compute it inside a step so the pipeline can restore it."
                )
        return last

    def _all_outputs(self) -> list[str]:
        return [n for s in self.steps.values() for n in s.outputs]

    def _restore(self, step: Step, basis: Basis, replay: bool) -> StepReport | None:
        row = self.records.result(step.name, basis.fingerprint)
        if row is None or not all(lineage.is_current(self.store, e) for e in json.loads(row[3])):
            return None  # never run with these inputs, or the data it read (e.g. features) changed
        stored, recording, seconds, _, state = json.loads(row[0]), json.loads(row[1]), row[2], row[3], row[4]
        restored = []
        for output, (sha256, value_hash) in stored.items():
            if output in self.namespace and content_hash(self.namespace[output]) == value_hash:
                continue  # the value in memory is already the cached one: keep it
            value = self.store.get(sha256, label=f"output {output!r} of step {step.name!r}")
            self.namespace[output] = _rebind_globals(value, self.namespace)
            restored.append(output)
        if state:
            global_state.apply(self.store.get(state, label=f"global settings of step {step.name!r}"))
        if replay:
            self.runner.replay(recording)
        hashes = {n: pair[1] for n, pair in stored.items()}
        self._note_produced(hashes)
        with self.store.transaction() as db:
            self.records.record(db, step.name, "cached", basis, hashes, seconds)
        return StepReport(step.name, "cached", seconds, tuple(stored), tuple(restored), recording=recording)

    def lineage(self, name: str) -> list[dict[str, Any]]:
        """What data the step's latest stored result was built from (e.g. feature view versions)."""
        return self._latest_lineage(self._get(name).name)

    def _latest_lineage(self, name: str) -> list[dict[str, Any]]:
        rows = self.store.query(
            "SELECT r.lineage FROM results r JOIN runs ON runs.pipeline = r.pipeline "
            "AND runs.step = r.step AND runs.fingerprint = r.fingerprint "
            "WHERE r.pipeline = ? AND r.step = ?",
            (self.name, name),
        )
        return json.loads(rows[0][0]) if rows else []

    # -- status and why ------------------------------------------------------------------------------
    def explain(self, name: str) -> list[str]:
        """Why the step would run instead of being restored; ``[]`` when it is up to date.

        Each reason says what differs from the stored result: the code (as a diff), which input
        changed and which step produced it, which file, module or library version, a global
        setting, new feature data; or that it was never run or failed last time.
        """
        step = self._get(name)
        last = self.records.last()
        basis = self._current_basis(step, last)
        if step.no_cache:
            return ["it is a --no-cache step: it always runs"]
        row = self.records.result(step.name, basis.fingerprint)
        if row is not None:
            if all(lineage.is_current(self.store, e) for e in json.loads(row[3])):
                return []
            return ["the feature data it read changed (new data was ingested)"]
        return self._why(step, basis, last)

    def _why(self, step: Step, basis: Basis, last: dict[str, dict[str, Any]]) -> list[str]:
        record = last.get(step.name)
        if record is None:
            return ["never run"]
        reasons = []
        if record["action"] == "failed":
            reasons.append(f"it failed last time ({record['error']})")
        before = RunRecords.basis(record)
        if before is not None:
            reasons.extend(basis.differences(before))
        return reasons or ["its stored result is missing (cleared or collected)"]

    def states(self) -> dict[str, dict[str, Any]]:
        """Per step: state (one of :data:`STATES`), why, last action and seconds, from the catalog.

        Cheap enough for a live view: inputs are compared by the hashes the catalog recorded,
        not by hashing values again.
        """
        last = self.records.last()
        states: dict[str, dict[str, Any]] = {}
        for name in self.order():
            step = self.steps[name]
            record = last.get(name)
            if record is None:
                states[name] = {"state": "never run", "why": "never run", "last action": None, "seconds": None}
                continue
            why = ""
            if record["action"] == "failed":
                why = f"failed last time ({record['error']})"
            elif record["code_hash"] != step.code_hash:
                why = "its code changed"
            elif not all(lineage.is_current(self.store, e) for e in self._latest_lineage(name)):
                why = "new feature data"
            else:
                why = self._changed_input(step, record, last, states)
            state = "failed" if record["action"] == "failed" else "stale" if why else "up to date"
            states[name] = {"state": state, "why": why, "last action": record["action"], "seconds": record["seconds"]}
        return states

    def _changed_input(
        self, step: Step, record: dict[str, Any], last: dict[str, dict[str, Any]],
        states: dict[str, dict[str, Any]],
    ) -> str:  # fmt: skip
        for up in step.needs:
            if states[up]["state"] != "up to date":
                return f"step {up!r} it needs is {states[up]['state']}"
        links = self.links()[step.name]
        for name, value_hash in record["inputs"].items():
            if name.startswith("file:"):
                if _file_hash(Path(name[5:]), step.name, missing_ok=True) != value_hash:
                    return f"file {name[5:]!r} changed"
                continue
            producer = links.get(name)
            if producer is not None:
                if states[producer]["state"] != "up to date":
                    return f"input {name!r} comes from step {producer!r}, which is {states[producer]['state']}"
                if last.get(producer, {}).get("outputs", {}).get(name) != value_hash:
                    return f"input {name!r} changed (from step {producer!r})"
            elif name in self.namespace and content_hash(self.namespace[name]) != value_hash:
                return f"input {name!r} changed"
        return ""

    def status(self) -> pd.DataFrame:
        """A table of steps: needs, outputs, state, why, last action and seconds."""
        import pandas as pd

        states = self.states()
        rows = [
            {
                "step": name,
                "needs": ", ".join(self.upstream(name)),
                "outputs": ", ".join(self.steps[name].outputs),
                **states[name],
            }
            for name in self.order()
        ]
        columns = ["step", "needs", "outputs", "state", "why", "last action", "seconds"]
        return pd.DataFrame(rows, columns=columns)

    # -- persistence helpers ----------------------------------------------------------------------
    def clear(self, name: str | None = None) -> None:
        """Alias of :meth:`remove`, matching ``%pipeline clear``."""
        self.remove(name)

    def _changed_in_place(self, name: str, info: CellInfo, earlier: list[Step]) -> dict[str, Any]:
        """The values of earlier steps that the cell changes in place, each with its finding."""
        is_library = lambda value: _import_path(value) is not None  # noqa: E731
        made_before = {output for step in earlier for output in step.outputs}
        return {
            finding.name: finding
            for finding in find_mutations(info, self.namespace, is_library=is_library)
            if finding.name in made_before
        }

    def _warn_about_mutations(self, step: Step, info: CellInfo) -> None:
        """A MutationWarning per in-place change of a value another step or cell made (through
        an alias or a loop variable too), with a fix that works for the type at hand.

        A value of an earlier step is then an output of this step as well (handled: the cells
        after it read the changed value, re-running the step starts from the producer's
        version); a value from a plain cell cannot be put back, so re-running sees its own edit.
        """
        links = self.links()[step.name]
        is_library = lambda value: _import_path(value) is not None  # noqa: E731
        for finding in find_mutations(info, self.namespace, is_library=is_library):
            owner = links.get(finding.name)
            if not owner and finding.name not in self.namespace:
                continue
            through = f" through {finding.alias!r}" if finding.alias else ""
            if owner and finding.name in step.outputs:
                what = (
                    f"step {step.name!r} {finding.how} {finding.name!r} (an output of step "
                    f"{owner!r}){through}{finding.detail}. The changed {finding.name!r} is stored "
                    f"as an output of {step.name!r} too, so the cells after it see the change, and "
                    f"re-running {step.name!r} starts again from the version of {owner!r}. Clearer: "
                    f"{finding.advice[0].lower()}{finding.advice[1:]}, e.g. {finding.fix}."
                )
            else:
                what = finding.message(step.name, "a variable from another cell")
            warnings.warn_explicit(
                what, MutationWarning, filename=f"<step {step.name}>", lineno=finding.lineno
            )


_MISSING = object()


def _imported_by(name: str, earlier: list[Step]) -> list[str] | None:
    """The import path of ``name`` if the latest earlier step binding it did so by an import."""
    for step in reversed(earlier):
        if name in step.defines_imports:
            return step.defines_imports[name]
        if name in step.outputs:
            return None
    return None


def _load(module: str, qualname: str) -> Any:
    value: Any = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        value = getattr(value, part)
    return value


def _rebind_globals(value: Any, namespace: dict[str, Any]) -> Any:
    """Point a restored notebook function (or class's methods) at the notebook's globals.

    Unpickling gives such a function a private copy of the globals it used; a plain run's
    function sees the notebook's current globals, so a restored one must too.
    """
    main = namespace.get("__name__", "__main__")
    if isinstance(value, types.FunctionType) and value.__module__ == main:
        rebound = types.FunctionType(
            value.__code__, namespace, value.__name__, value.__defaults__, value.__closure__
        )
        rebound.__kwdefaults__ = value.__kwdefaults__
        rebound.__qualname__ = value.__qualname__
        rebound.__dict__.update(value.__dict__)
        rebound.__annotations__ = value.__annotations__
        return rebound
    if isinstance(value, type) and value.__module__ == main:
        for attribute, member in list(vars(value).items()):
            if isinstance(member, types.FunctionType):
                setattr(value, attribute, _rebind_globals(member, namespace))
    return value


def _import_path(value: Any) -> list[str] | None:
    """``[module, qualname]`` for modules and importable library objects, else None.

    The module is the shortest public one that exposes the object (``sklearn.datasets``, not
    ``sklearn.datasets._base``), so exported code imports what a person would write.
    """
    if isinstance(value, types.ModuleType):
        return [value.__name__, ""]
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__":
        return None
    if "<" in qualname or _resolve(module, qualname) is not value:
        return None  # not importable by name (a closure, an instance...)
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        candidate = ".".join(parts[:end])
        if any(part.startswith("_") for part in parts[:end]):
            break
        loaded = sys.modules.get(candidate)
        if loaded is not None and "." not in qualname and getattr(loaded, qualname, None) is value:
            return [candidate, qualname]
    return [module, qualname]


def _resolve(module: str, qualname: str) -> Any:
    value: Any = sys.modules.get(module)
    for part in qualname.split("."):
        value = getattr(value, part, None)
    return value


def _file_hash(path: Path, step: str, missing_ok: bool = False) -> str:
    """Content hash of a file, or of every file under a folder."""
    if not path.exists():
        if missing_ok:
            return ""
        raise MlopsNbError(
            f"Step {step!r} lists --files {str(path)!r}, which does not exist "
            f"(relative paths start at {str(Path.cwd())!r}). Fix the path or create the file."
        )
    state = xxhash.xxh3_128()
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            state.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    state.update(chunk)
    return state.hexdigest()
