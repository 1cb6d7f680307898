"""The quickstart notebook, run in a real JupyterLab in Chromium, as a learner runs it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Browser, Locator, Page

from mlops_nb import Pipeline, Store

from .conftest import LabServer

QUICKSTART = Path(__file__).parents[2] / "notebooks" / "01_workflow_pipeline.ipynb"
PIPELINE = "workflow"  # the quickstart's `%pipeline use workflow`
FINAL_STATES = {"ran", "cached", "up to date"}
RUN_TIMEOUT_MS = 180_000
WIDGET_TIMEOUT = 15.0  # widgets render, and update over comm messages, after the kernel is idle
CELL = ".jp-Notebook .jp-Cell"
MERMAID = ".jp-OutputArea-output.jp-RenderedMermaid"  # outputs only, not Markdown diagrams

# The notebook panel's model through window.jupyterapp: the DOM shows no execution count for a
# cell whose input is collapsed, and renders an error exactly like text printed to stderr.
KERNEL_READY = """() => {
    const kernel = window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel;
    return kernel?.connectionStatus === 'connected' && kernel.status === 'idle';
}"""
# Finished: every code cell ran, or one failed (which stops Run All). Between two cells the
# kernel can be idle with no cell running, so "idle and nothing running" alone ends too early.
RUN_FINISHED = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const code = panel.content.widgets.filter(cell => cell.model.type === 'code');
    const failed = code.some(cell =>
        !(cell.model.getMetadata?.('tags') || []).includes('raises-exception')
        && cell.model.outputs.toJSON().some(output => output.output_type === 'error'));
    return panel.sessionContext.session?.kernel?.status === 'idle'
        && code.every(cell => cell.model.executionState !== 'running')
        && (failed || code.every(cell => cell.model.executionCount !== null));
}"""
CELLS = """() => window.jupyterapp.shell.currentWidget.content.widgets.map(cell => ({
    type: cell.model.type,
    execution_count: cell.model.type === 'code' ? cell.model.executionCount : null,
    outputs: cell.model.type === 'code' ? cell.model.outputs.toJSON() : [],
}))"""
# JupyterLab renders text/vnd.mermaid outputs as <figure><img src="data:image/svg+xml,...">
# followed by the (hidden) source in <pre><code class="mermaid">; Markdown cells' diagrams are
# excluded by asking for output areas only.
MERMAID_OUTPUTS = """() => Array.from(
    document.querySelectorAll('.jp-Notebook .jp-OutputArea-output.jp-RenderedMermaid')
).map(output => {
    const img = output.querySelector('figure img');
    const svg = img ? decodeURIComponent(img.src.slice(img.src.indexOf(',') + 1)) : '';
    const diagram = new DOMParser().parseFromString(svg, 'image/svg+xml');
    return {
        drawn: Boolean(img && img.complete && img.naturalWidth > 0),
        warning: output.classList.contains('jp-mod-warning'),
        source: output.querySelector('code.mermaid')?.textContent ?? '',
        // A node's label is "NAME<br/>STATE": its first text node is the step's name.
        nodes: Array.from(diagram.querySelectorAll('g.node .nodeLabel p'),
                          label => label.firstChild?.textContent ?? ''),
    };
})"""
# The live DAG widget's contract: a .mlops-nb-live-dag container holding one
# [data-step][data-state] element per step.
LIVE_DAGS = """() => Array.from(
    document.querySelectorAll('.jp-Notebook .mlops-nb-live-dag'),
    dag => Array.from(dag.querySelectorAll('[data-step]'),
                      step => [step.getAttribute('data-step'), step.getAttribute('data-state')]),
)"""


@dataclass(frozen=True)
class NotebookRun:
    page: Page
    notebook: nbformat.NotebookNode  # the file as opened: cell i here is cell i in the browser
    cells: list[dict[str, Any]]  # each cell's type, execution count and outputs after the run


def _without_outputs(path: Path) -> nbformat.NotebookNode:
    """The notebook as committed, without outputs: everything checked then comes from this run."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def _run_all_cells(page: Page) -> None:
    """Run > Run All Cells, as a learner would."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def _cell_with(page: Page, selector: str) -> Locator:
    """The notebook cell holding the last element that matches ``selector``."""
    return page.locator(CELL, has=page.locator(selector)).last


def _scroll_to_top(locator: Locator) -> None:
    locator.evaluate("element => element.scrollIntoView({block: 'start'})")
    locator.page.wait_for_timeout(500)  # offscreen cells get their real height once laid out


@pytest.fixture(scope="module")
def quickstart(browser: Browser, lab: LabServer, artifacts: Path) -> Iterator[NotebookRun]:
    # browser first: without Chromium the tests are skipped before a server starts.
    notebook = _without_outputs(QUICKSTART)
    nbformat.write(notebook, lab.root / "quickstart.ipynb")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"{lab.url}/lab/tree/quickstart.ipynb")
        # Run All before the kernel is connected runs nothing, silently.
        page.wait_for_function(KERNEL_READY, timeout=60_000)
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # room for the notebook
        _run_all_cells(page)
        page.wait_for_function(RUN_FINISHED, timeout=RUN_TIMEOUT_MS, polling=500)
        cells = page.evaluate(CELLS)
        # The page as a learner sees it, at the live DAG if there is one, else at the first %dag.
        for selector in [".mlops-nb-live-dag", MERMAID]:
            found = page.locator(CELL).filter(has=page.locator(selector))
            if found.count():
                _scroll_to_top(found.first)
                break
        page.screenshot(path=artifacts / "lab-notebook.png")
        yield NotebookRun(page=page, notebook=notebook, cells=cells)
    except Exception:
        page.screenshot(path=artifacts / "lab-notebook-failed.png")
        raise
    finally:
        page.close()


def test_mermaid_dag_renders_one_node_per_step(quickstart: NotebookRun, artifacts: Path) -> None:
    page = quickstart.page
    outputs = page.evaluate(MERMAID_OUTPUTS)
    assert outputs, "no %dag output was rendered by JupyterLab's Mermaid renderer"
    cell = _cell_with(page, MERMAID)
    _scroll_to_top(cell)
    cell.screenshot(path=artifacts / "mermaid-dag.png")
    for output in outputs:
        steps = re.findall(r'^\s*\w+\["([^"<]+)', output["source"], flags=re.MULTILINE)
        assert steps, f"no step in the Mermaid source:\n{output['source']}"
        assert not output["warning"], f"Mermaid could not draw:\n{output['source']}"
        assert output["drawn"], "the diagram's SVG image did not load"
        assert sorted(output["nodes"]) == sorted(steps), "one node per step"


def test_live_dag_shows_every_step_in_a_final_state(
    quickstart: NotebookRun, lab: LabServer, artifacts: Path
) -> None:
    page = quickstart.page
    steps = list(Pipeline(PIPELINE, store=Store(lab.store_home)).steps)
    assert steps, f"the quickstart left no step in pipeline {PIPELINE!r}"

    def wrong(dag: list[list[str]]) -> dict[str, str]:
        """Steps not shown, or not in a final state, and anything shown in a non-final state."""
        states = dict(dag)
        missing = {step: "missing" for step in steps if step not in states}
        shown = {step: state for step, state in states.items() if state not in FINAL_STATES}
        return missing | shown

    deadline = time.monotonic() + WIDGET_TIMEOUT
    dags: list[list[list[str]]] = page.evaluate(LIVE_DAGS)
    while (not dags or wrong(dags[-1])) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        dags = page.evaluate(LIVE_DAGS)
    assert dags, "no .mlops-nb-live-dag element: the notebook shows no `%dag --live` widget"
    cell = _cell_with(page, ".mlops-nb-live-dag")
    _scroll_to_top(cell)
    cell.screenshot(path=artifacts / "live-dag.png")
    assert not wrong(dags[-1]), f"pipeline steps {steps}; the last live DAG shows {dags[-1]}"


def test_store_browser_shows_its_tabs_and_the_pipeline(quickstart: NotebookRun, artifacts: Path) -> None:
    page = quickstart.page
    cell = _cell_with(page, ".mlops-nb-store-browser")
    _scroll_to_top(cell)  # a notebook lays out only the cells in view
    browser = cell.locator(".mlops-nb-store-browser")
    tabs = browser.locator(".lm-TabBar-tabLabel").all_text_contents()
    assert tabs == ["Pipelines", "Feature views", "Transforms"]
    assert browser.locator("select").first.input_value() == PIPELINE
    cell.screenshot(path=artifacts / "store-browser.png")


def test_no_cell_errored(quickstart: NotebookRun) -> None:
    cells, notebook = quickstart.cells, quickstart.notebook
    shown = quickstart.page.locator(CELL).count()
    assert shown == len(cells) == len(notebook.cells), "cell i in the browser is cell i in the file"
    code = [i for i, cell in enumerate(cells) if cell["type"] == "code"]
    not_run = [i for i in code if cells[i]["execution_count"] is None]
    errors = {
        i: found
        for i, cell in enumerate(cells)
        if "raises-exception" not in notebook.cells[i].metadata.get("tags", [])
        and (found := _errors(cell["outputs"]))
    }
    assert not errors, f"cells that failed (by index): {errors}"
    assert not not_run, f"cells that never ran (a failure stops Run All): {not_run}"


def _errors(outputs: list[dict[str, Any]]) -> list[str]:
    """A traceback, or IPython's one-line UsageError (how a magic reports a mistake)."""
    found = [f"{out['ename']}: {out['evalue']}" for out in outputs if out["output_type"] == "error"]
    for out in outputs:
        if out["output_type"] == "stream" and out["name"] == "stderr":
            found += re.findall(r"^UsageError: .*$", "".join(out["text"]), flags=re.MULTILINE)
    return found
