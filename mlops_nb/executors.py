"""Schedulers: which step runs when and where, in this process or on Dask (Strategy pattern).

A scheduler orders the steps and asks the pipeline to run each one; running one step's code is
the cell runner's job (:mod:`mlops_nb.runners`), deciding cache hits the pipeline's.
"""

from __future__ import annotations

import contextlib
import functools
import io
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .runs import StepReport

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .steps import Step

__all__ = ["InProcessExecutor", "DaskExecutor", "resolve_executor"]


class InProcessExecutor:
    """Runs steps in this process, one after the other, in dependency order."""

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


def raise_first_failure(failed: Mapping[str, BaseException], blocked: list[str], total: int) -> None:
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
                    pipeline.runner.replay(report.recording)
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
                _run_on_worker, functools.partial(type(pipeline), pipeline.name, pipeline.store),
                list(pipeline.steps.values()), step, given, after, links, force,
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
    make_pipeline: Callable[..., Pipeline], steps: list[Step], step: Step, given: dict[str, Any],
    after: dict[str, tuple[StepReport, dict[str, Any]]], links: dict[str, str], force: bool,
) -> tuple[StepReport, dict[str, Any]]:  # fmt: skip
    """Runs on a Dask worker: one step, with the cache, in a namespace made of its inputs.

    ``after`` holds the results of the upstream steps (Dask waits for them before calling this);
    ``links`` says which of them each input comes from, and ``steps`` are the client's steps in
    notebook order, so the worker links every name exactly as the client does. The pipeline on
    the worker decides the cache hit exactly as in the client's process (``Pipeline.run_step``).
    """
    __tracebackhide__ = True  # noqa: F841
    from distributed import get_worker

    namespace = dict(given)
    namespace.update((read, after[producer][1][read]) for read, producer in links.items())
    pipeline = make_pipeline(namespace=namespace)
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
