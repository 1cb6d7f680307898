"""Steps and the Pipeline: the DAG between them, their fingerprints, staleness and cached runs."""

from __future__ import annotations

import builtins
import functools
import graphlib
import importlib
import inspect
import json
import sys
import textwrap
import time
import types
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from . import lineage
from .cells import analyse, normalise
from .errors import (
    AmbiguousProducerError,
    CycleError,
    MissingInputError,
    MlopsNbError,
    MutationWarning,
    UnknownStepError,
    did_you_mean,
    validate_name,
)
from .executors import InProcessExecutor, Recording, remember_source, resolve_executor
from .hashing import content_hash
from .observers import ProgressBar, RunObserver
from .store import Store

if TYPE_CHECKING:
    import pandas as pd

    from .executors import DaskExecutor

__all__ = ["Step", "StepReport", "Pipeline", "STATES"]

STATES = ("up to date", "stale", "never run", "failed")


@dataclass
class Step:
    """One unit of work: code (or a function), the names it reads and the names it outputs."""

    name: str
    code: str
    source: str = ""
    reads: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    no_cache: bool = False
    kind: str = "cell"  # or "function", for @step
    imports: dict[str, list[str]] = field(default_factory=dict)
    func: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_name(self.name)
        self.source = self.source or self.code

    @functools.cached_property
    def code_hash(self) -> str:
        """Hash of what defines the step: normalised code and options, not comments or spacing."""
        options = json.dumps([self.outputs, self.needs, self.files, sorted(self.reads)])
        return xxhash.xxh3_128_hexdigest((normalise(self.code) + options).encode())

    def to_json(self) -> str:
        record = {k: v for k, v in asdict(self).items() if k != "func"}
        return json.dumps(record)

    @classmethod
    def from_json(cls, text: str) -> Step:
        record = json.loads(text)
        for key in ("reads", "outputs", "needs", "files"):
            record[key] = tuple(record[key])
        return cls(**record)


@dataclass
class StepReport:
    """What happened when a step was asked to run."""

    step: str
    action: str  # "ran", "cached" or "failed"
    seconds: float
    outputs: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    stored: bool = True
    #: What the step printed and displayed (when it ran, or when the cached run did).
    recording: Recording = field(default_factory=list, repr=False)
    #: When the report was made (``time.time()``): for a step that ran, when it finished.
    finished: float = field(default_factory=time.time)
    #: The address of the Dask worker that ran or restored the step; "" for this process.
    worker: str = ""

    def summary(self, force_hint: str) -> str:
        """The one status line shown after a step."""
        names = ", ".join(self.outputs) or "no outputs"
        if self.action == "ran":
            kept = "stored" if self.stored else "not stored: --no-cache"
            return f"✓ {self.step}: ran in {self.seconds:.2f} s → {names} ({kept})"
        if self.action == "cached":
            how = f"restored {', '.join(self.restored)} from the store" if self.restored else "outputs already in memory"
            return (
                f"✓ {self.step}: up to date, cached: {how}, saving {self.seconds:.2f} s. "
                f"To re-run anyway: {force_hint}"
            )
        return f"✗ {self.step}: failed after {self.seconds:.2f} s; nothing was stored"


class Pipeline:
    """A named DAG of steps whose results persist in a :class:`~mlops_nb.store.Store`.

    Parameters
    ----------
    name : str
        The pipeline's name in the store; steps are saved under it.
    store : Store, optional
        Where results live; default ``Store()`` (``$MLOPS_NB_HOME`` or ``./.mlops_nb``).
    namespace : dict, optional
        Where steps read inputs and write outputs; in a notebook, the user namespace.
    executor : InProcessExecutor, optional
        How steps run.

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
        executor: InProcessExecutor | None = None,
    ) -> None:
        self.name = validate_name(name, "pipeline")
        self.store = store if store is not None else Store()
        self.namespace: dict[str, Any] = namespace if namespace is not None else {}
        self.executor = executor or InProcessExecutor()
        #: Told about every step that runs or is restored: progress bars, live DAG views...
        self.observers: list[RunObserver] = []
        #: Names the front end owns (IPython's In, Out, exit...): never treated as step inputs.
        self.hidden_names: set[str] = set()
        self._indexed: dict[str, Step] | None = None
        self._index: dict[str, list[str]] = {}
        rows = self.store.query(
            "SELECT definition FROM steps WHERE pipeline = ? ORDER BY position", (self.name,)
        )
        steps = [Step.from_json(definition) for (definition,) in rows]
        self.steps: dict[str, Step] = {step.name: step for step in steps}

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={list(self.steps)})"

    @staticmethod
    def stored(store: Store) -> dict[str, int]:
        """The pipelines saved in ``store``: name -> number of steps, by name."""
        rows = store.query("SELECT pipeline, COUNT(*) FROM steps GROUP BY pipeline ORDER BY pipeline")
        return dict(rows)

    # -- defining steps ------------------------------------------------------------------------
    def add(self, step: Step) -> Step:
        """Add or replace a step, after checking the DAG it makes stays valid; then save it."""
        for needed in step.needs:
            if needed not in self.steps or needed == step.name:
                raise UnknownStepError(
                    f"Step {step.name!r} needs {needed!r}, which is not a step of pipeline "
                    f"{self.name!r}.{did_you_mean(needed, self.steps)} Known steps: "
                    f"{', '.join(self.steps) or 'none yet'}. Run the cell defining {needed!r} first."
                )
        candidate = {**self.steps, step.name: step}
        previous = self.steps.get(step.name)
        if previous is not None and previous.to_json() == step.to_json():
            self.steps = candidate  # same definition (a re-run): nothing to check or save
            return step
        self._check_graph(candidate)
        position = list(self.steps).index(step.name) if step.name in self.steps else len(self.steps)
        self.steps = candidate
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?)",
                (self.name, step.name, step.to_json(), position),
            )
        return step

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
        info = analyse(code)
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
        imports, reads = {}, []
        for read in info.reads:
            value = self.namespace.get(read)
            if read in self.hidden_names or read.startswith("_") or isinstance(value, types.MethodType):
                continue  # the front end's own names (In, Out, get_ipython...) are not data
            path = _import_path(value)
            if path:
                imports[read] = path  # re-imported on demand, e.g. after a kernel restart
            elif read in self.namespace or not hasattr(builtins, read) or self._producers_of(read, name):
                reads.append(read)
        outputs_ = tuple(n for n in defined if n not in info.imports and n not in imports)
        step = Step(
            name, code, source=source, reads=tuple(reads), outputs=outputs_, needs=tuple(needs),
            files=tuple(files), no_cache=no_cache, imports=imports,
        )  # fmt: skip
        # Warnings quote the line they are about: let them see this version of the code.
        remember_source(code, f"<step {name}>")
        self._warn_about_mutations(step, info.mutations)
        return self.add(step)

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

    # -- the graph -------------------------------------------------------------------------------
    def _producers_of(self, name: str, reader: str, steps: dict[str, Step] | None = None) -> list[str]:
        """The steps other than ``reader`` that output ``name``."""
        steps = self.steps if steps is None else steps
        if self._indexed is not steps:  # step dicts are replaced, never edited, so identity is enough
            index: dict[str, list[str]] = {}
            for step in steps.values():
                for output in step.outputs:
                    index.setdefault(output, []).append(step.name)
            self._indexed, self._index = steps, index
        return [producer for producer in self._index.get(name, ()) if producer != reader]

    def upstream(self, name: str, steps: dict[str, Step] | None = None) -> list[str]:
        """The steps that ``name`` directly depends on (producers of its reads, plus --needs)."""
        steps = self.steps if steps is None else steps
        step = steps[name]
        found: dict[str, None] = dict.fromkeys(step.needs)
        for read in step.reads:
            producers = self._producers_of(read, name, steps)
            if len(producers) > 1:
                raise AmbiguousProducerError(
                    f"Step {name!r} reads {read!r}, but {len(producers)} steps output it: "
                    f"{' and '.join(repr(p) for p in producers)}. Each variable should have one "
                    f"producer: rename the output in one of them (e.g. {read}_clean = ...), narrow "
                    f"it with --outputs, or remove an old step with %pipeline clear STEP."
                )
            found.update(dict.fromkeys(producers))
        return list(found)

    def _check_graph(self, steps: dict[str, Step]) -> None:
        sorter = graphlib.TopologicalSorter({name: self.upstream(name, steps) for name in steps})
        try:
            sorter.prepare()
        except graphlib.CycleError as error:
            cycle = " → ".join(reversed(error.args[1]))
            raise CycleError(
                f"These steps would depend on each other in a circle: {cycle}. A pipeline must be "
                f"acyclic: bind a new name instead of re-assigning a variable an upstream step "
                f"reads, or drop a --needs."
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
        ordered: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            ordered.extend(ready)
            sorter.done(*ready)
        return ordered

    def _get(self, name: str) -> Step:
        if name not in self.steps:
            raise UnknownStepError(
                f"No step named {name!r} in pipeline {self.name!r}.{did_you_mean(name, self.steps)}"
                f" Known steps: {', '.join(self.steps) or 'none yet'}."
            )
        return self.steps[name]

    # -- fingerprints ------------------------------------------------------------------------------
    def _input_hashes(self, step: Step) -> dict[str, str]:
        hashes = {}
        for name in step.reads:
            if name in self.namespace:
                hashes[name] = content_hash(self.namespace[name])
        for path in step.files:
            hashes[f"file:{path}"] = _file_hash(Path(path), step.name)
        return hashes

    @staticmethod
    def _fingerprint(step: Step, input_hashes: dict[str, str]) -> str:
        return xxhash.xxh3_128_hexdigest((step.code_hash + json.dumps(sorted(input_hashes.items()))).encode())

    def fingerprint(self, name: str) -> str:
        """The step's current fingerprint: its code and options plus the content of its inputs."""
        step = self._get(name)
        return self._fingerprint(step, self._input_hashes(step))

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

        Up-to-date steps are not executed: their outputs come from the store. Returns the outputs.

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
            self._provide_inputs(step)
            input_hashes = self._input_hashes(step)
        except MlopsNbError:  # e.g. an input nobody defines: observers see the step fail
            self.notify("step_finished", StepReport(name, "failed", 0.0))
            raise
        fingerprint = self._fingerprint(step, input_hashes)
        if not force and not step.no_cache:
            report = self._restore(step, fingerprint, input_hashes, replay)
            if report is not None:
                self.notify("step_finished", report)
                return report
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
                recording = self.executor.execute(step, self.namespace)
            seconds = time.perf_counter() - started
            report = self._store_run(step, fingerprint, input_hashes, recording, seconds, used)
        except BaseException as error:
            seconds = time.perf_counter() - started
            self._record_run(step, "failed", None, input_hashes, {}, seconds, repr(error))
            self.notify("step_finished", StepReport(name, "failed", seconds))
            raise
        self.notify("step_finished", report)
        return report

    def _store_run(
        self, step: Step, fingerprint: str, input_hashes: dict[str, str], recording: Recording,
        seconds: float, used: list[dict[str, Any]],
    ) -> StepReport:  # fmt: skip
        """Store a step's outputs and recorded display, then commit its result in one transaction."""
        outputs = tuple(n for n in step.outputs if n in self.namespace)
        if step.no_cache:
            hashes = {n: content_hash(self.namespace[n]) for n in outputs}
            self._record_run(step, "ran", fingerprint, input_hashes, hashes, seconds, None)
            return StepReport(step.name, "ran", seconds, outputs, stored=False, recording=recording)
        refs = {
            n: self.store.put(self.namespace[n], label=f"output {n!r} of step {step.name!r}")
            for n in outputs
        }
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO results (pipeline, step, fingerprint, outputs, display, "
                "seconds, created, lineage) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.name, step.name, fingerprint,
                    json.dumps({n: [r.sha256, r.value_hash] for n, r in refs.items()}),
                    json.dumps(recording), seconds, time.time(), json.dumps(used, default=str),
                ),
            )  # fmt: skip
            self._record_run(
                step, "ran", fingerprint, input_hashes,
                {n: r.value_hash for n, r in refs.items()}, seconds, None, db,
            )  # fmt: skip
        return StepReport(step.name, "ran", seconds, outputs, recording=recording)

    def _provide_inputs(self, step: Step) -> None:
        """Import modules the step used, and bring missing upstream outputs up to date first."""
        for alias, (module, qualname) in step.imports.items():
            if alias not in self.namespace:
                value: Any = importlib.import_module(module)
                for part in filter(None, qualname.split(".")):
                    value = getattr(value, part)
                self.namespace[alias] = value
        recorded_inputs = self._last_inputs(step.name)
        for read in step.reads:
            if read in self.namespace:
                continue
            producers = self._producers_of(read, step.name)
            if producers:
                self.run_step(producers[0])
            elif step.func is not None or read in recorded_inputs:
                raise MissingInputError(
                    f"Step {step.name!r} reads {read!r}, which no step outputs and which is not "
                    f"defined in this session.{did_you_mean(read, [*self.namespace, *self._all_outputs()])} "
                    f"Run the cell that defines it, or compute it inside a step so the pipeline "
                    f"can restore it."
                )

    def _last_inputs(self, name: str) -> dict[str, str]:
        rows = self.store.query(
            "SELECT inputs FROM runs WHERE pipeline = ? AND step = ?", (self.name, name)
        )
        return json.loads(rows[0][0]) if rows else {}

    def _all_outputs(self) -> list[str]:
        return [n for s in self.steps.values() for n in s.outputs]

    def _restore(
        self, step: Step, fingerprint: str, input_hashes: dict[str, str], replay: bool
    ) -> StepReport | None:
        rows = self.store.query(
            "SELECT outputs, display, seconds, lineage FROM results "
            "WHERE pipeline = ? AND step = ? AND fingerprint = ?",
            (self.name, step.name, fingerprint),
        )
        if not rows or not all(lineage.is_current(self.store, e) for e in json.loads(rows[0][3])):
            return None  # never run with these inputs, or the data it read (e.g. features) changed
        stored, recording, seconds = json.loads(rows[0][0]), json.loads(rows[0][1]), rows[0][2]
        restored = []
        for output, (sha256, value_hash) in stored.items():
            if output in self.namespace and content_hash(self.namespace[output]) == value_hash:
                continue  # the value in memory is already the cached one: keep it
            self.namespace[output] = self.store.get(
                sha256, label=f"output {output!r} of step {step.name!r}"
            )
            restored.append(output)
        if replay:
            self.executor.replay(recording)
        hashes = {n: pair[1] for n, pair in stored.items()}
        self._record_run(step, "cached", fingerprint, input_hashes, hashes, seconds, None)
        return StepReport(step.name, "cached", seconds, tuple(stored), tuple(restored), recording=recording)

    def _record_run(
        self, step: Step, action: str, fingerprint: str | None, inputs: dict[str, str],
        outputs: dict[str, str], seconds: float, error: str | None, db: Any = None,
    ) -> None:  # fmt: skip
        row = (
            self.name, step.name, action, fingerprint, step.code_hash, json.dumps(inputs),
            json.dumps(outputs), seconds, error, time.time(),
        )  # fmt: skip
        sql = "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        if db is not None:
            db.execute(sql, row)
        else:
            with self.store.transaction() as connection:
                connection.execute(sql, row)

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

    # -- status ------------------------------------------------------------------------------------
    def states(self) -> dict[str, dict[str, Any]]:
        """Per step: state (one of :data:`STATES`), last action and seconds, from the catalog."""
        runs = {
            row[0]: row[1:]
            for row in self.store.query(
                "SELECT step, action, code_hash, inputs, outputs, seconds FROM runs WHERE pipeline = ?",
                (self.name,),
            )
        }
        states: dict[str, dict[str, Any]] = {}
        for name in self.order():
            step = self.steps[name]
            run = runs.get(name)
            if run is None:
                states[name] = {"state": "never run", "last action": None, "seconds": None}
                continue
            action, code_hash, inputs_json, _, seconds = run
            state = "failed" if action == "failed" else "up to date"
            if state == "up to date" and (
                code_hash != step.code_hash
                or not all(lineage.is_current(self.store, e) for e in self._latest_lineage(name))
                or any(states[up]["state"] != "up to date" for up in self.upstream(name))
                or self._inputs_changed(step, json.loads(inputs_json), runs)
            ):
                state = "stale"
            states[name] = {"state": state, "last action": action, "seconds": seconds}
        return states

    def _inputs_changed(self, step: Step, recorded: dict[str, str], runs: dict[str, Any]) -> bool:
        for name, value_hash in recorded.items():
            if name.startswith("file:"):
                if _file_hash(Path(name[5:]), step.name, missing_ok=True) != value_hash:
                    return True
                continue
            producers = self._producers_of(name, step.name)
            if producers:
                run = runs.get(producers[0])
                if run is None or json.loads(run[3]).get(name) != value_hash:
                    return True
            elif name in self.namespace and content_hash(self.namespace[name]) != value_hash:
                return True
        return False

    def status(self) -> pd.DataFrame:
        """A table of steps: needs, outputs, state, last action and seconds."""
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
        columns = ["step", "needs", "outputs", "state", "last action", "seconds"]
        return pd.DataFrame(rows, columns=columns)

    # -- persistence helpers ----------------------------------------------------------------------
    def clear(self, name: str | None = None) -> None:
        """Alias of :meth:`remove`, matching ``%pipeline clear``."""
        self.remove(name)

    def _warn_about_mutations(self, step: Step, mutations: Iterable[Any]) -> None:
        for mutation in mutations:
            owner = self._producers_of(mutation.name, step.name)
            if not owner and mutation.name not in self.namespace:
                continue
            if _import_path(self.namespace.get(mutation.name)):
                continue  # np.add(...) or a class method is not a change to data
            whose = f"an output of step {owner[0]!r}" if owner else "a variable from another cell"
            if mutation.how.startswith("calls .") and "fit" in mutation.how:
                fix = f"{mutation.name}_fitted = sklearn.base.clone({mutation.name}).fit(...)"
            else:
                fix = f"{mutation.name}_new = {mutation.name}.copy()"
            warnings.warn_explicit(
                f"step {step.name!r} {mutation.how} {mutation.name!r} ({whose}) in place. "
                f"The cache cannot see that change and re-running {step.name!r} would see its own "
                f"edit. Bind a new name instead, e.g. {fix}.",
                MutationWarning,
                filename=f"<step {step.name}>",
                lineno=mutation.lineno,
            )
        for name in step.outputs:
            producers = self._producers_of(name, step.name)
            if name in step.reads and producers:
                owner_name = producers[0]
                warnings.warn_explicit(
                    f"step {step.name!r} re-assigns {name!r}, which step {owner_name!r} outputs: two "
                    f"steps now produce {name!r} and re-running {step.name!r} would see its own "
                    f"result. Bind a new name instead, e.g. {name}_clean = ...",
                    MutationWarning,
                    filename=f"<step {step.name}>",
                    lineno=1,
                )


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
