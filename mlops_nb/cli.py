"""The ``mlops-nb`` command: inspect, run and export stored pipelines from a terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import MlopsNbError
from .export import export_pipeline
from .pipeline import Pipeline
from .store import Store

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-nb", description="Inspect, run and export the pipelines in an mlops_nb store."
    )
    parser.add_argument(
        "--home", help="The store folder (default: $MLOPS_NB_HOME or ./.mlops_nb)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="List the pipelines in the store.")
    for name, text in [
        ("status", "Show each step's state."),
        ("run", "Bring every step up to date (cached steps are restored, not run)."),
        ("export", "Write the pipeline as a standalone Python module."),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument("pipeline", help="The pipeline's name (see `mlops-nb list`).")
        if name == "export":
            command.add_argument("path", help="The .py file to write.")
        if name == "run":
            command.add_argument("--force", action="store_true", help="Run even up-to-date steps.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        store = Store(args.home)
        if args.command == "list":
            rows = store.query("SELECT pipeline, COUNT(*) FROM steps GROUP BY pipeline ORDER BY 1")
            for pipeline, steps in rows:
                print(f"{pipeline}\t{steps} steps")
            if not rows:
                print(f"No pipelines in {store.root}.")
            return 0
        known = [row[0] for row in store.query("SELECT DISTINCT pipeline FROM steps")]
        if args.pipeline not in known:
            raise MlopsNbError(
                f"No pipeline named {args.pipeline!r} in {str(store.root)!r}. "
                f"Pipelines there: {', '.join(sorted(known)) or 'none'}."
            )
        pipeline = Pipeline(args.pipeline, store)
        if args.command == "status":
            print(pipeline.status().to_string(index=False))
        elif args.command == "run":
            for name in pipeline.order():
                report = pipeline.run_step(name, force=args.force)
                print(report.summary(f"mlops-nb run {args.pipeline} --force"))
        else:
            print(f"Wrote {export_pipeline(pipeline, args.path)}")
    except MlopsNbError as error:
        print(f"mlops-nb: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
