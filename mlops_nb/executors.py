"""How a step's code runs and how its recorded output is replayed (Strategy pattern)."""

from __future__ import annotations

import ast
import contextlib
import io
import linecache
import sys
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .pipeline import Pipeline, Step, StepReport
    from .store import Store

__all__ = [
    "InProcessExecutor", "DaskExecutor", "resolve_executor", "run_code", "remember_source",
    "Recording",
]  # fmt: skip

#: The output a step produced, in order, as nbformat-style dicts
#: (``{"output_type": "stream", "name": "stdout", "text": ...}`` or ``display_data``).
Recording = list[dict[str, Any]]


def remember_source(code: str, filename: str) -> None:
    """Let tracebacks and warnings quote ``code`` under ``filename`` (e.g. ``<step clean>``)."""
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)


def run_code(code: str, namespace: dict[str, Any], filename: str) -> Any:
    """Execute cell code in ``namespace`` like a notebook cell; return its last expression's value.

    The source is registered with :mod:`linecache` so tracebacks show the step's own lines.
    A trailing ``;`` hides the last value, as in IPython.

    >>> ns = {}
    >>> run_code("x = 2\\nx * 21", ns, "<step demo>")
    42
    """
    __tracebackhide__ = True  # noqa: F841 -- IPython hides this frame from tracebacks
    tree = ast.parse(code, filename)
    last: ast.Expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
        last = cast(ast.Expr, tree.body.pop())
    remember_source(code, filename)
    exec(compile(tree, filename, "exec"), namespace)  # noqa: S102 -- running the user's cell is the job
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), filename, "eval"), namespace)  # noqa: S307


class _Tee(io.TextIOBase):
    """Writes through to a stream while recording what was written."""

    def __init__(self, target: Any, name: str, recording: Recording) -> None:
        self.target, self.name, self.recording = target, name, recording

    def write(self, text: str) -> int:
        self.target.write(text)
        last = self.recording[-1] if self.recording else None
        if last and last["output_type"] == "stream" and last["name"] == self.name:
            last["text"] += text
        else:
            self.recording.append({"output_type": "stream", "name": self.name, "text": text})
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")


class InProcessExecutor:
    """Runs steps in this process, in the pipeline's namespace, recording stdout and stderr.

    Other front ends subclass it: the notebook executor also records rich display output.
    """

    def run_steps(self, pipeline: Pipeline, names: list[str], *, force: bool = False) -> None:
        """Bring ``names`` (in dependency order) up to date, one after the other.

        A failing step does not stop the steps that do not depend on it; at the end the first
        failure is raised, with a note naming every step that failed or could not run.
        """
        __tracebackhide__ = True  # noqa: F841
        failed: dict[str, Exception] = {}
        blocked: list[str] = []
        for name in names:
            if any(up in failed or up in blocked for up in pipeline.upstream(name)):
                blocked.append(name)
                continue
            try:
                pipeline.run_step(name, force=force)
            except Exception as error:  # noqa: BLE001 -- reported below, after the other steps
                failed[name] = error
        if failed:
            raise_first_failure(failed, blocked, len(names))


    def close(self) -> None:
        """Release what the executor holds: nothing, in this process."""

    def execute(self, step: Step, namespace: dict[str, Any]) -> Recording:
        """Run ``step``; its outputs land in ``namespace``. Returns what it printed and displayed."""
        __tracebackhide__ = True  # noqa: F841
        recording: Recording = []
        with self.recording(recording):
            value = self.call(step, namespace)
            if value is not None:
                self.show(value)
            self.finish()
        return recording

    @contextlib.contextmanager
    def recording(self, recording: Recording) -> Iterator[None]:
        """While active, what the step writes to stdout and stderr is shown and recorded."""
        saved = sys.stdout, sys.stderr
        sys.stdout = _Tee(saved[0], "stdout", recording)
        sys.stderr = _Tee(saved[1], "stderr", recording)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved

    def finish(self) -> None:
        """Called after the step's code, still recording (front ends flush pending output here)."""

    def call(self, step: Step, namespace: dict[str, Any]) -> Any:
        """Run the step's code or function; return the value to display, if any."""
        __tracebackhide__ = True  # noqa: F841
        if step.func is None:
            return run_code(step.code, namespace, f"<step {step.name}>")
        result = step.func(*(namespace[name] for name in step.reads))
        assign_outputs(step, result, namespace)
        return None

    def show(self, value: Any) -> None:
        """Display a cell's last value: in a script, its repr on stdout."""
        print(repr(value))

    def replay(self, recording: Recording) -> None:
        """Show recorded output again, as text."""
        for output in recording:
            if output["output_type"] == "stream":
                (sys.stderr if output["name"] == "stderr" else sys.stdout).write(output["text"])
            else:
                print(output["data"].get("text/plain", ""))


def raise_first_failure(failed: dict[str, BaseException], blocked: list[str], total: int) -> None:
    """Raise the first step's own exception, with a note summing up the whole run."""
    first = next(iter(failed.values()))
    done = total - len(failed) - len(blocked)
    note = (
        f"pipeline run: {done} of {total} steps are up to date; failed: "
        f"{', '.join(f'{name} ({type(error).__name__})' for name, error in failed.items())}"
    )
    if blocked:
        note += f"; not run because they depend on a failed step: {', '.join(blocked)}"
    first.add_note(note + ". Fix the failing step and run again: the others stay cached.")
    raise first


def assign_outputs(step: Step, result: Any, namespace: dict[str, Any]) -> None:
    """Bind a function step's return value to its output name(s)."""
    if len(step.outputs) == 1:
        namespace[step.outputs[0]] = result
        return
    if not isinstance(result, (tuple, list)) or len(result) != len(step.outputs):
        raise ValueError(
            f"Step {step.name!r} declares outputs {list(step.outputs)} but returned "
            f"{type(result).__qualname__}; return a tuple of {len(step.outputs)} values."
        )
    namespace.update(zip(step.outputs, result))



def resolve_executor(spec: InProcessExecutor | DaskExecutor | str) -> InProcessExecutor | DaskExecutor:
    """An executor from its name: ``"dask"`` (a new local cluster) or ``"dask://HOST:PORT"``.

    >>> resolve_executor("dask://10.0.0.5:8786").address
    'tcp://10.0.0.5:8786'
    """
    if not isinstance(spec, str):
        return spec
    if spec == "dask":
        return DaskExecutor()
    if spec.startswith("dask://") and len(spec) > len("dask://"):
        return DaskExecutor("tcp://" + spec[len("dask://"):])
    from .errors import MlopsNbError

    raise MlopsNbError(
        f"Unknown executor {spec!r}. Use 'dask' for a local Dask cluster, or "
        f"'dask://HOST:PORT' for a running Dask scheduler."
    )


class DaskExecutor:
    """Runs each step as a Dask task whose inputs are its upstream tasks' outputs.

    Independent steps run in parallel on the cluster's workers. Each worker checks the cache and
    stores what it computes in the same store, so the store must be on a disk every worker can
    reach (always true for the default local cluster). Outputs come back into the pipeline's
    namespace and what a step printed is shown again, in the order steps finish. Rich output
    (tables, figures) is recorded as text on a worker.

    Parameters
    ----------
    address : str, optional
        A running scheduler, e.g. ``"tcp://10.0.0.5:8786"``. Default: start a ``LocalCluster``
        of worker processes on first use, kept until :meth:`close`.
    n_workers : int
        Workers of the local cluster (one thread each: steps are not assumed thread-safe).
    """

    def __init__(self, address: str | None = None, n_workers: int = 2) -> None:
        self.address = address
        self.n_workers = n_workers
        self._client: Any = None
        self._cluster: Any = None

    def __repr__(self) -> str:
        where = self.address or f"a local cluster of {self.n_workers} workers"
        return f"DaskExecutor({where})"

    @property
    def client(self) -> Any:
        """The ``distributed.Client``, connected (and the local cluster started) on first use."""
        if self._client is None:
            import logging

            from distributed import Client, LocalCluster

            from .errors import MlopsNbError

            if self.address is None:
                self._cluster = LocalCluster(
                    # Workers log a step's failure; the client raises it with its traceback.
                    n_workers=self.n_workers, threads_per_worker=1, processes=True,
                    dashboard_address=":0", silence_logs=logging.CRITICAL,
                )  # fmt: skip
                self._client = Client(self._cluster)
            else:
                try:
                    self._client = Client(self.address, timeout="5s")
                except OSError as error:
                    raise MlopsNbError(
                        f"Cannot reach the Dask scheduler at {self.address!r} ({error}). Start it "
                        f"with `dask scheduler`, or use executor 'dask' for a local cluster."
                    ) from error
        return self._client

    def close(self) -> None:
        """Disconnect, and stop the local cluster if this executor started one."""
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_steps(self, pipeline: Pipeline, names: list[str], *, force: bool = False) -> None:
        """Submit each step once the steps it needs are done, to the least busy worker.

        Dask alone would queue sibling steps on the worker that holds their input; choosing
        the worker here is what lets independent steps run side by side. When a step fails, the
        steps that do not depend on it still run; then the first failure is raised, with a note
        naming every step that failed or could not run (as in this process).
        """
        __tracebackhide__ = True  # noqa: F841
        from distributed import as_completed

        from .pipeline import StepReport

        client = self.client  # connect first: a connection error is not a pickling error
        busy = dict.fromkeys(client.scheduler_info()["workers"], 0)  # steps sent, per worker
        waiting_on = {name: set(pipeline.upstream(name)) & set(names) for name in names}
        futures: dict[str, Any] = {}
        where: dict[str, str] = {}  # step -> worker
        step_of: dict[str, str] = {}  # task key -> step

        def submit(name: str) -> Any:
            where[name] = min(busy, key=busy.__getitem__)
            busy[where[name]] += 1
            futures[name] = self._submit(pipeline, name, futures, where[name], force)
            step_of[futures[name].key] = name
            pipeline.notify("step_started", name)
            return futures[name]

        running = as_completed([submit(name) for name in names if not waiting_on[name]])
        failed: dict[str, BaseException] = {}
        blocked: list[str] = []
        try:
            for future in running:
                name = step_of[future.key]
                busy[where[name]] -= 1
                if future.status != "finished":
                    problem = future.exception()
                    report = getattr(problem, "mlops_nb_report", None) or StepReport(name, "failed", 0.0)
                    pipeline.notify("step_finished", report)
                    failed[name] = problem.with_traceback(future.traceback())
                    blocked.extend(_downstream(name, waiting_on))
                    continue
                report, outputs = future.result()
                pipeline.namespace.update(outputs)
                if report.action == "ran":
                    pipeline.executor.replay(report.recording)
                pipeline.notify("step_finished", report)
                for other, ups in waiting_on.items():
                    if name in ups:
                        ups.discard(name)
                        if not ups and other not in blocked:
                            running.add(submit(other))
        finally:
            for future in futures.values():
                future.cancel()
        if failed:
            raise_first_failure(failed, list(dict.fromkeys(blocked)), len(names))

    def _submit(self, pipeline: Pipeline, name: str, futures: dict[str, Any], worker: str, force: bool) -> Any:
        """One step as a task on ``worker``, its upstream steps' results as inputs."""
        from .errors import MlopsNbError

        step = pipeline.steps[name]
        after = {up: futures[up] for up in pipeline.upstream(name) if up in futures}
        given = {
            read: pipeline.namespace[read]  # e.g. a parameter from a plain cell
            for read in step.reads
            if read in pipeline.namespace and read not in step.imports
            and not any(read in pipeline.steps[up].outputs for up in after)
        }  # fmt: skip
        links = {read: producer for read, producer in pipeline.links()[name].items() if producer in after}
        try:
            return self.client.submit(
                _run_on_worker, pipeline.name, pipeline.store, list(pipeline.steps.values()),
                step, given, after, links, force,
                key=f"step-{name}-{uuid.uuid4().hex[:8]}", pure=False,
                workers=[worker], allow_other_workers=True,  # elsewhere only if it leaves
            )  # fmt: skip
        except Exception as error:  # what cannot be pickled cannot travel to a worker
            raise MlopsNbError(
                f"Step {name!r} cannot be sent to a Dask worker: {_unpicklable(step, given)} "
                f"cannot be pickled. Create that value inside a step, or run the pipeline in "
                f"this process (without an executor)."
            ) from error


def _downstream(name: str, waiting_on: dict[str, set[str]]) -> list[str]:
    """Every step that (transitively) waits for ``name``."""
    found, pending = [], [name]
    while pending:
        current = pending.pop()
        for other, ups in waiting_on.items():
            if current in ups and other not in found:
                found.append(other)
                pending.append(other)
    return found


def _unpicklable(step: Step, given: dict[str, Any]) -> str:
    """Which part of a step's task fails to pickle, in words."""
    import cloudpickle

    for name, value in given.items():
        try:
            cloudpickle.dumps(value)
        except Exception:
            return f"its input {name!r} ({type(value).__qualname__})"
    return "its code or function"


def _run_on_worker(
    pipeline_name: str, store: Store, steps: list[Step], step: Step, given: dict[str, Any],
    after: dict[str, tuple[StepReport, dict[str, Any]]], links: dict[str, str], force: bool,
) -> tuple[StepReport, dict[str, Any]]:  # fmt: skip
    """Runs on a Dask worker: one step, with the cache, in a namespace made of its inputs.

    ``after`` holds the results of the upstream steps (Dask waits for them before calling this);
    ``links`` says which of them each input comes from, and ``steps`` are the client's steps in
    notebook order, so the worker links every name exactly as the client does.
    """
    __tracebackhide__ = True  # noqa: F841
    from distributed import get_worker

    from .pipeline import Pipeline, StepReport

    namespace = dict(given)
    namespace.update((read, after[producer][1][read]) for read, producer in links.items())
    pipeline = Pipeline(pipeline_name, store, namespace)
    pipeline.steps = {s.name: (step if s.name == step.name else s) for s in steps}
    # Recorded output is shown by the client; the worker's own console would only repeat it.
    sink = io.StringIO()
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            report = pipeline.run_step(step.name, force=force)
    except BaseException as error:
        # Travels back with the exception, for observers: how long the step ran before failing.
        error.mlops_nb_report = StepReport(  # type: ignore[attr-defined]
            step.name, "failed", time.perf_counter() - started, worker=get_worker().address
        )
        raise
    report.worker = get_worker().address
    return report, {n: namespace[n] for n in step.outputs if n in namespace}
