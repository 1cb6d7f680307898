"""End to end in real Jupyter kernels: rich output replay, and restore after a kernel restart."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel


@contextmanager
def kernel(home: Path, cwd: Path) -> Iterator[Any]:
    env = {**os.environ, "MLOPS_NB_HOME": str(home), "JPY_SESSION_NAME": str(cwd / "lesson.ipynb")}
    manager, client = start_new_kernel(startup_timeout=120, env=env, cwd=str(cwd))
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def execute(client: Any, code: str) -> tuple[str, list[dict[str, Any]]]:
    """Run ``code``; return the reply status and the outputs, as a notebook would store them."""
    outputs: list[dict[str, Any]] = []

    def keep(message: dict[str, Any]) -> None:
        kind, content = message["msg_type"], message["content"]
        if kind in ("stream", "display_data", "execute_result", "error"):
            outputs.append({"type": kind, **content})

    reply = client.execute_interactive(code, timeout=120, output_hook=keep)
    return reply["content"]["status"], outputs


def text_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o["type"] == "stream")


STEPS = [
    "%%step load\nopen('runs.log', 'a').write('load\\n')\n"
    "import pandas as pd\nraw = pd.DataFrame({'x': range(6), 'y': [1, 4, 9, 16, 25, 36]})\nraw.head(3)",
    "%%step plot\nopen('runs.log', 'a').write('plot\\n')\nimport matplotlib.pyplot as plt\n"
    "fig, ax = plt.subplots()\nax.plot(raw.x, raw.y)\nslope = float((raw.y.iloc[-1] - raw.y.iloc[0]) / 5)",
    "%%step report\nopen('runs.log', 'a').write('report\\n')\nreport = f'slope={slope}'\nprint(report)",
]


def test_rich_output_is_replayed_and_a_restart_restores_without_running(tmp_path: Path) -> None:
    home = tmp_path / "store"
    with kernel(home, tmp_path) as client:
        assert execute(client, "%load_ext mlops_nb")[0] == "ok"
        first_run = [execute(client, cell) for cell in STEPS]
        assert [status for status, _ in first_run] == ["ok"] * 3
        load_outputs, plot_outputs = first_run[0][1], first_run[1][1]
        assert any("text/html" in o.get("data", {}) for o in load_outputs)
        assert any("image/png" in o.get("data", {}) for o in plot_outputs)

        status, again = execute(client, STEPS[1])  # unchanged: the figure comes from the store
        assert status == "ok"
        assert sum("image/png" in o.get("data", {}) for o in again) == 1
        assert "plot: up to date, cached" in text_of(again)
        status, outputs = execute(client, "import mlops_nb; print(mlops_nb.pipeline().name)")
        assert text_of(outputs).strip() == "lesson"  # named after the notebook

    # A brand-new kernel: nothing in memory, only the store on disk.
    with kernel(home, tmp_path) as client:
        assert execute(client, "%load_ext mlops_nb")[0] == "ok"
        status, outputs = execute(client, "%pipeline run")
        assert status == "ok"
        assert text_of(outputs).count("up to date, cached") == 3
        displays = [o["data"] for o in outputs if o["type"] != "stream"]
        # No replayed output, only the progress bar: a widget with a plain-text twin.
        assert len(displays) == 1 and "application/vnd.jupyter.widget-view+json" in displays[0]
        assert displays[0]["text/plain"].startswith("lesson: 0/3 steps")
        status, outputs = execute(client, "print(report, raw.shape, slope)")
        assert text_of(outputs).strip() == "slope=7.0 (6, 2) 7.0"
        status, outputs = execute(client, "%pipeline status")
        assert "up to date" in outputs[-1]["data"]["text/plain"]
    assert (tmp_path / "runs.log").read_text().split() == ["load", "plot", "report"]


def test_a_failing_step_shows_the_users_traceback(tmp_path: Path) -> None:
    with kernel(tmp_path / "store", tmp_path) as client:
        execute(client, "%load_ext mlops_nb")
        status, outputs = execute(client, "%%step broken\nvalues = [1, 2]\nvalues[5]")
        assert status == "error"
        [error] = [o for o in outputs if o["type"] == "error"]
        assert error["ename"] == "IndexError"
        assert any("<step broken>" in line for line in error["traceback"])
        assert "✗ broken: failed" in text_of(outputs)
        status, outputs = execute(client, "%%step broken\nvalues = [1, 2]\nvalues[1]")
        assert status == "ok"
