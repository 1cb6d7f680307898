"""Open a notebook's pipeline without a browser: set-up cells run, ``%%step`` cells become steps.

This is what ``mlops-nb run NOTEBOOK.ipynb`` and ``mlops-nb export NOTEBOOK.ipynb`` build on. A
plain cell is a set-up cell, and runs, when it defines something (imports, parameters), comes
before the first step or defines a name a step reads, and neither uses nor re-creates a step's
output. Cells that only show things, cells tagged ``raises-exception`` and other cell magics are
skipped. Each ``%%step`` cell is then defined, the last definition of a step winning, as when
the notebook is run top to bottom.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cells import analyse
from .errors import MlopsNbError
from .pipeline import Pipeline

__all__ = ["NotebookPipeline", "open_notebook"]

#: Lines of set-up cells that would act on the pipeline itself (clear its cache, run it, show it).
_SKIPPED_LINE = re.compile(
    r"^\s*%(pipeline\s+(run|status|clear|export)|dag|browse|reset|load_ext\s+mlops_nb\s*$)\b"
)


@dataclass
class NotebookPipeline:
    """A notebook's pipeline, opened in an in-process IPython shell."""

    path: Path
    pipeline: Pipeline
    ran_cells: list[int] = field(default_factory=list)
    skipped_cells: dict[int, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: which set-up cells ran, and the pipeline they lead to."""
        steps = len(self.pipeline.steps)
        return (
            f"{self.path.name}: ran {len(self.ran_cells)} set-up cells, skipped "
            f"{len(self.skipped_cells)}; pipeline {self.pipeline.name!r} has {steps} "
            f"step{'s' * (steps != 1)}"
        )


def _cells(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The code cells, each with its number in the notebook (counting every cell from 1)."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except FileNotFoundError:
        raise MlopsNbError(f"No notebook at {str(path)!r}. Check the path.") from None
    except (ValueError, KeyError, TypeError) as error:
        raise MlopsNbError(
            f"{str(path)!r} is not a Jupyter notebook ({error}). Pass an .ipynb file."
        ) from None
    return [
        (number, {**cell, "source": "".join(cell.get("source", ""))})
        for number, cell in enumerate(cells, start=1)
        if cell.get("cell_type") == "code"
    ]


def open_notebook(path: str | Path, shell: Any = None) -> NotebookPipeline:
    """Run the notebook's set-up cells and define its steps in ``shell`` (default: IPython's).

    Nothing is computed beyond the set-up cells: call ``.pipeline.run()`` for that. The pipeline
    is named after the notebook (or what its ``%pipeline use`` says) and lives in the default
    store (``$MLOPS_NB_HOME`` or ``./.mlops_nb``), so runs share the notebook's cache. Its steps
    are the notebook's ``%%step`` cells only: steps stored before but since deleted are left out.
    """
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from .magics import parse_options

    path = Path(path)
    cells = _cells(path)
    os.environ.setdefault("MPLBACKEND", "Agg")  # no windows from plots in a headless run
    shell = shell or InteractiveShell.instance()
    shell.user_ns["__session__"] = str(path)  # the pipeline is named after the notebook
    shell.extension_manager.load_extension("mlops_nb")
    magics = shell.magics_manager.registry["StepMagics"]
    magics._pipeline = None  # opened afresh under this notebook's name on first use

    # name -> (cell number, options, code): a redefined step keeps its place, with its last code.
    steps: dict[str, tuple[int, str, str]] = {}
    for number, cell in cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["source"].lstrip().startswith("%%step") and "raises-exception" not in tags:
            line, _, body = cell["source"].lstrip()[len("%%step"):].partition("\n")
            try:
                steps[parse_options(magics.step, line).name] = (number, line, body)
            except UsageError as error:
                raise MlopsNbError(f"%%step cell {number} of {path.name}: {error}") from None
    bodies = []
    for number, _, body in steps.values():
        try:
            bodies.append(analyse(shell.transform_cell(body)))
        except MlopsNbError as error:
            raise MlopsNbError(f"%%step cell {number} of {path.name}: {error}") from None
    step_outputs = {
        name for info in bodies for name in info.defines
        if name not in info.imports and not name.startswith("_")
    }  # fmt: skip
    step_inputs = {name for info in bodies for name in info.reads} - step_outputs
    first_step = min((number for number, _, _ in steps.values()), default=len(cells) + 1)

    result = NotebookPipeline(path, magics.pipeline)
    for number, cell in cells:
        source = cell["source"]
        code = "\n".join(line for line in source.splitlines() if not _SKIPPED_LINE.match(line))
        reason = _reason_to_skip(cell, code, shell, step_outputs)
        if not reason and number > first_step and not _defines_any(code, shell, step_inputs):
            reason = "comes after the steps and defines nothing they read"
        if reason:
            if not source.lstrip().startswith("%%step"):
                result.skipped_cells[number] = reason
            continue
        with capture_output():  # what set-up cells print is for the notebook's reader
            outcome = shell.run_cell(code, silent=True)
        if not outcome.success:
            failure = outcome.error_before_exec or outcome.error_in_exec
            raise MlopsNbError(
                f"Set-up cell {number} of {path.name} failed: {failure!r}. Fix it in the "
                f"notebook, or tag the cell raises-exception if it fails on purpose."
            ) from failure
        result.ran_cells.append(number)

    magics.pipeline.steps = {}  # the notebook is the whole truth (%pipeline use may have switched)
    for number, line, body in steps.values():
        try:
            magics.define(line, body)
        except UsageError as error:
            raise MlopsNbError(f"%%step cell {number} of {path.name}: {error}") from None
    result.pipeline = magics.pipeline
    return result


def _defines_any(code: str, shell: Any, names: set[str]) -> bool:
    return bool(set(analyse(shell.transform_cell(code)).defines) & names)


def _body(source: str) -> str:
    """A ``%%step`` cell without its magic line."""
    return source.lstrip().partition("\n")[2]


def _reason_to_skip(cell: dict[str, Any], code: str, shell: Any, step_outputs: set[str]) -> str:
    """Why a set-up run leaves this cell out, or ``""`` to run it (``code``: the cell to run)."""
    source = cell["source"].lstrip()
    if source.startswith("%%step"):
        return "a step"
    if "raises-exception" in cell.get("metadata", {}).get("tags", []):
        return "fails on purpose"
    if source.startswith("%%"):
        return "a cell magic"
    if re.search(r"^\s*%pipeline\s+use\b", code, re.MULTILINE):
        return ""  # it chooses the pipeline the steps belong to
    try:
        info = analyse(shell.transform_cell(code))
    except MlopsNbError:
        return "not valid Python"
    if set(info.reads) & step_outputs:
        return "uses step outputs"
    if set(info.defines) & step_outputs:
        return "re-creates a step output"
    if not info.defines:
        return "only shows things"
    return ""
