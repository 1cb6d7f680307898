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
    store = commands.add_parser("store", help="Look after the store: ls, verify, gc.")
    store_commands = store.add_subparsers(dest="store_command", required=True)
    store_commands.add_parser("ls", help="What the store holds: pipelines, feature views, transforms, objects.")
    store_commands.add_parser("verify", help="Check every stored object against its checksum.")
    collect = store_commands.add_parser("gc", help="Delete objects that nothing refers to any more.")
    collect.add_argument("--dry-run", action="store_true", help="Only say what would be deleted.")
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
        if args.command == "store":
            return _store_command(store, args)
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


def _store_command(store: Store, args: argparse.Namespace) -> int:
    if args.store_command == "ls":
        sections = [
            ("pipelines", "SELECT pipeline || ': ' || COUNT(*) || ' steps' FROM steps GROUP BY pipeline"),
            ("feature views", "SELECT name || ' v' || MAX(version) FROM feature_views GROUP BY name"),
            ("transforms", "SELECT name || ' v' || MAX(version) FROM transforms GROUP BY name"),
        ]
        print(f"store {store.root}")
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
