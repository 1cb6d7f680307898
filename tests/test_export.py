"""Exporting a pipeline to a standalone module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlops_nb import MlopsNbError, Pipeline, Store
from mlops_nb.export import export_pipeline, pipeline_source


def test_cells_and_functions_export_to_one_function_each(tmp_path: Path) -> None:
    import math

    pipe = Pipeline("mixed", store=Store(tmp_path / "store"), namespace={"math": math, "N": 3})
    pipe.define_cell("load", "values = [math.sqrt(i) for i in range(N)]")

    @pipe.step
    def doubled(values: list[float]) -> list[float]:
        return [2 * v for v in values]

    source = pipeline_source(pipe)
    assert "import math" in source and "N = 3" in source
    assert "def step_load(N):" in source and "def step_doubled(values: list[float])" in source
    path = export_pipeline(pipe, tmp_path / "mixed.py")
    code = f"import runpy; print(runpy.run_path({str(path)!r})['main']()['doubled'])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == str([2 * math.sqrt(i) for i in range(3)])


def test_what_cannot_be_exported_is_named(tmp_path: Path) -> None:
    pipe = Pipeline("odd", store=Store(tmp_path / "store"), namespace={"model": object()})
    pipe.define_cell("use", "result = str(model)")
    with pytest.raises(MlopsNbError, match=r"reads 'model'.*not a simple literal.*%%step config"):
        pipeline_source(pipe)
    with pytest.raises(MlopsNbError, match="Export to a .py file"):
        export_pipeline(pipe, tmp_path / "odd.txt")
    magic = Pipeline("magic", store=Store(tmp_path / "store"))
    magic.define_cell("m", "%time x = 1", code="get_ipython().run_line_magic('time', 'x = 1')\n")
    with pytest.raises(MlopsNbError, match="uses IPython syntax"):
        pipeline_source(magic)
