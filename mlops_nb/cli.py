"""The ``mlops-nb`` command: run and export notebook pipelines headless, and look after the store."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from .errors import MlopsNbError
from .export import export_pipeline
from .observers import ReportCollector
from .pipeline import Pipeline, StepReport
from .store import Store

__all__ = ["main"]

EXAMPLES = """\
examples:
  mlops-nb run notebooks/01_workflow_pipeline.ipynb      run a notebook's pipeline, with its cache
  mlops-nb run pipeline.ipynb --executor dask             independent steps in parallel on Dask
  mlops-nb export pipeline.ipynb -o pipeline.py           a plain Python module of the steps
  mlops-nb status workflow                                each stored step's state
  mlops-nb store verify                                   check every stored object's checksum

exit status: 0 on success, 1 when a step fails or the store is damaged, 2 on a usage error.
"""

SOURCE_HELP = "A notebook (.ipynb) or the name of a pipeline in the store (see `mlops-nb list`)."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-nb",
        description="Run, inspect and export mlops_nb pipelines without a browser.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--home", metavar="PATH", help="The store folder (default: $MLOPS_NB_HOME or ./.mlops_nb).")
    # Every command also takes the store after its name: `mlops-nb store verify --store PATH`.
    store_option = argparse.ArgumentParser(add_help=False)
    store_option.add_argument("--store", metavar="PATH", help="The store folder (same as --home).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", parents=[store_option], help="Bring a pipeline up to date (cached steps are restored, not run).",
        description="Bring a pipeline up to date. For a notebook: run its set-up cells (imports, "
        "parameters), define its %%step cells, then run the steps, restoring every step whose "
        "code and inputs are unchanged from the store. Prints a progress bar and a summary table.",
    )  # fmt: skip
    run.add_argument("source", help=SOURCE_HELP)
    run.add_argument(
        "--executor", metavar="dask|dask://HOST:PORT",
        help="Run steps as Dask tasks, independent ones in parallel: 'dask' starts a local "
        "cluster, 'dask://HOST:PORT' uses a running scheduler.",
    )  # fmt: skip
    run.add_argument("--force", action="store_true", help="Execute every step, even up-to-date ones.")

    export = commands.add_parser(
        "export", parents=[store_option], help="Write a pipeline as a standalone Python module.",
        description="Write the pipeline as a Python module with one function per step and a "
        "main() that runs them in order; it needs neither Jupyter nor mlops_nb.",
    )  # fmt: skip
    export.add_argument("source", help=SOURCE_HELP)
    export.add_argument("-o", "--output", metavar="PATH.py", help="Where to write it (default: NAME.py).")

    status = commands.add_parser("status", parents=[store_option], help="Show each step's state.")
    status.add_argument("source", help=SOURCE_HELP)

    commands.add_parser("list", parents=[store_option], help="List the pipelines in the store.")

    store = commands.add_parser("store", help="Look after the store: ls, verify, gc.")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    store_commands.add_parser(
        "ls", parents=[store_option],
        help="What the store holds: pipelines, feature views, transforms, objects.",
    )  # fmt: skip
    store_commands.add_parser("verify", parents=[store_option], help="Check every stored object against its checksum.")
    collect = store_commands.add_parser(
        "gc", parents=[store_option], help="Delete objects that nothing refers to any more."
    )
    collect.add_argument("--dry-run", action="store_true", help="Only say what would be deleted.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    home = getattr(args, "store", None) or args.home
    if home:
        os.environ["MLOPS_NB_HOME"] = str(home)  # notebooks opened headless use the same store
    try:
        store = Store(home)
        if args.command == "store":
            return _store_command(store, args)
        if args.command == "list":
            pipelines = Pipeline.stored(store)
            for name, steps in pipelines.items():
                print(f"{name}\t{steps} steps")
            if not pipelines:
                print(f"No pipelines in {store.root}.")
            return 0
        pipeline = _open(args.source, store)
        if args.command == "status":
            print(pipeline.status().to_string(index=False))
        elif args.command == "run":
            return _run(pipeline, args)
        else:
            print(f"Wrote {export_pipeline(pipeline, args.output or f'{pipeline.name}.py')}")
    except MlopsNbError as error:
        print(f"mlops-nb: error: {error}", file=sys.stderr)
        return 2
    return 0


def _open(source: str, store: Store) -> Pipeline:
    """A notebook's pipeline (set-up cells run, steps defined) or a pipeline from the store."""
    if source.endswith(".ipynb"):
        from .headless import open_notebook

        notebook = open_notebook(source)
        print(notebook.describe(), file=sys.stderr)
        return notebook.pipeline
    known = Pipeline.stored(store)
    if source not in known:
        hint = " To run a notebook, pass its .ipynb path." if Path(source).exists() else ""
        raise MlopsNbError(
            f"No pipeline named {source!r} in {str(store.root)!r}. "
            f"Pipelines there: {', '.join(sorted(known)) or 'none'}.{hint}"
        )
    return Pipeline(source, store)


def _run(pipeline: Pipeline, args: argparse.Namespace) -> int:
    """Run with a progress bar on stderr, then print a summary table; 1 if a step failed."""
    collector = ReportCollector()
    pipeline.observers.append(collector)
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        pipeline.run(force=args.force, executor=args.executor, progress=True)
    except Exception as error:
        if isinstance(error, MlopsNbError) and not any(r.action == "failed" for r in collector.reports):
            raise  # a usage error, before any step ran
        failure = error  # a step failed: show its error, then the summary
    print(_summary(collector.reports, time.perf_counter() - started))
    if failure is not None:
        if not isinstance(failure, MlopsNbError):  # our own errors say all in one line
            traceback.print_exception(failure, file=sys.stderr)
        failed = [r.step for r in collector.reports if r.action == "failed"]
        print(f"mlops-nb: step {failed[-1] if failed else '?'!r} failed: {failure!r}", file=sys.stderr)
        return 1
    return 0


def _summary(reports: list[StepReport], seconds: float) -> str:
    """A table of what each step did, and the totals."""
    width = max([len(r.step) for r in reports] + [4])
    lines = [f"{'step':<{width}}  {'action':<7} {'seconds':>8}  outputs"]
    for report in reports:
        outputs = ", ".join(report.outputs) or "-"
        lines.append(f"{report.step:<{width}}  {report.action:<7} {report.seconds:>8.2f}  {outputs}")
    counts = {action: sum(r.action == action for r in reports) for action in ("ran", "cached", "failed")}
    lines.append(
        f"{counts['ran']} ran, {counts['cached']} cached, {counts['failed']} failed in {seconds:.1f} s"
    )
    return "\n".join(lines)


def _store_command(store: Store, args: argparse.Namespace) -> int:
    if args.store_command == "ls":
        sections = [
            ("feature views", "SELECT name || ' v' || MAX(version) FROM feature_views GROUP BY name"),
            ("transforms", "SELECT name || ' v' || MAX(version) FROM transforms GROUP BY name"),
        ]
        print(f"store {store.root}")
        pipelines = [f"{name}: {steps} steps" for name, steps in Pipeline.stored(store).items()]
        print(f"pipelines: {', '.join(pipelines) or 'none'}")
        for title, sql in sections:
            names = [row[0] for row in store.query(sql + " ORDER BY 1")]
            print(f"{title}: {', '.join(names) or 'none'}")
        count, size = store.query("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects")[0]
        print(f"objects: {count} ({size / 1e6:.1f} MB)")
        return 0
    if args.store_command == "verify":
        problems = store.verify_all()
        for problem in problems:
            print(f"mlops-nb: {problem}", file=sys.stderr)
        total = store.query("SELECT COUNT(*) FROM objects")[0][0]
        print(f"{total - len(problems)} of {total} objects verified" + (f"; {len(problems)} damaged" if problems else ""))
        return 1 if problems else 0
    count, size = store.garbage_collect(dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {count} unreferenced objects ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
