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


def _cells(path: Path) -> list[dict[str, Any]]:
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
        {**cell, "source": "".join(cell.get("source", ""))}
        for cell in cells
        if cell.get("cell_type") == "code"
    ]


def open_notebook(path: str | Path, shell: Any = None) -> NotebookPipeline:
    """Run the notebook's set-up cells and define its steps in ``shell`` (default: a new one).

    Nothing is computed beyond the set-up cells: call ``.pipeline.run()`` for that. The pipeline
    is named after the notebook (or what its ``%pipeline use`` says) and lives in the default
    store (``$MLOPS_NB_HOME`` or ``./.mlops_nb``), so runs share the notebook's cache.
    """
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    path = Path(path)
    cells = _cells(path)
    os.environ.setdefault("MPLBACKEND", "Agg")  # no windows from plots in a headless run
    shell = shell or InteractiveShell.instance()
    shell.user_ns["__session__"] = str(path)  # the pipeline is named after the notebook
    shell.extension_manager.load_extension("mlops_nb")
    magics = shell.magics_manager.registry["StepMagics"]

    steps = [(i, c) for i, c in enumerate(cells) if c["source"].lstrip().startswith("%%step")]
    bodies = [analyse(_body(cell["source"])) for _, cell in steps]
    step_outputs = {name for info in bodies for name in info.defines}
    step_inputs = {name for info in bodies for name in info.reads} - step_outputs
    first_step = steps[0][0] if steps else len(cells)
    result = NotebookPipeline(path, magics.pipeline)
    for index, cell in enumerate(cells):
        source = cell["source"]
        code = "\n".join(line for line in source.splitlines() if not _SKIPPED_LINE.match(line))
        reason = _reason_to_skip(cell, code, shell, step_outputs)
        if not reason and index > first_step and not _defines_any(code, shell, step_inputs):
            reason = "comes after the steps and defines nothing they read"
        if reason:
            if not source.lstrip().startswith("%%step"):
                result.skipped_cells[index] = reason
            continue
        with capture_output():  # what set-up cells print is for the notebook's reader
            outcome = shell.run_cell(code, silent=True)
        if not outcome.success:
            error = outcome.error_before_exec or outcome.error_in_exec
            raise MlopsNbError(
                f"Set-up cell {index + 1} of {path.name} failed: {error!r}. Fix it in the "
                f"notebook, or tag the cell raises-exception if it fails on purpose."
            ) from error
        result.ran_cells.append(index)
    latest: dict[str, tuple[str, str]] = {}  # step name -> its last definition, as a top-to-bottom run would leave it
    for _, cell in steps:
        if "raises-exception" not in cell.get("metadata", {}).get("tags", []):
            line, _, body = cell["source"].lstrip()[len("%%step"):].partition("\n")
            name = line.split()[0] if line.split() else ""
            latest.pop(name, None)
            latest[name] = (line, body)
    for line, body in latest.values():
        magics.define(line, body)
    result.pipeline = magics.pipeline  # %pipeline use may have switched it
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
