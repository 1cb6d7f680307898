"""The mlops-nb command, run as users run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from mlops_nb import Pipeline, Store
from mlops_nb.cli import main


@pytest.fixture
def home(tmp_path: Path) -> Path:
    pipe = Pipeline("sales", store=Store(tmp_path / "store"))
    pipe.define_cell("load", "amounts = [10, 20, 30]\nrate = 2")
    pipe.define_cell("total", "total = sum(amounts) * rate\nprint('total', total)")
    pipe.run()
    return tmp_path / "store"


def test_list_status_run_and_export(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(home), "list"]) == 0
    assert capsys.readouterr().out == "sales\t2 steps\n"
    assert main(["--home", str(home), "status", "sales"]) == 0
    status = capsys.readouterr().out
    assert "load" in status and "up to date" in status
    assert main(["--home", str(home), "run", "sales"]) == 0
    assert "0 ran, 2 cached, 0 failed in" in capsys.readouterr().out
    target = tmp_path / "sales.py"
    assert main(["--home", str(home), "export", "sales", "-o", str(target)]) == 0
    run = subprocess.run([sys.executable, str(target)], capture_output=True, text=True, check=True)
    assert run.stdout == "total 120\n"


def test_unknown_pipeline_is_a_clear_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(home), "status", "sale"]) == 2
    assert "No pipeline named 'sale'" in capsys.readouterr().err


def test_a_value_from_a_plain_cell_cannot_be_guessed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = Pipeline("plain", store=Store(tmp_path / "store"), namespace={"rate": 2})
    pipe.define_cell("scaled", "scaled = 10 * rate")
    pipe.run()
    assert main(["--home", str(tmp_path / "store"), "run", "plain"]) == 1  # the step cannot run
    error = capsys.readouterr().err
    assert "mlops-nb: step 'scaled' failed: MissingInputError(\"Step 'scaled' reads 'rate'" in error
    assert "Traceback" not in error


def test_the_console_script_is_installed(home: Path) -> None:
    executable = shutil.which("mlops-nb", path=str(Path(sys.executable).parent))
    assert executable is not None
    run = subprocess.run([executable, "--home", str(home), "list"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("sales")


def test_store_ls_verify_and_gc(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(home)
    orphan = store.put(list(range(50_000)))  # stored, but no step refers to it
    assert main(["--home", str(home), "store", "ls"]) == 0
    listing = capsys.readouterr().out
    assert "pipelines: sales: 2 steps" in listing and "objects: " in listing

    assert main(["--home", str(home), "store", "verify"]) == 0
    assert "objects verified" in capsys.readouterr().out
    assert main(["store", "verify", "--store", str(home)]) == 0  # the store after the command too
    assert "objects verified" in capsys.readouterr().out

    with store.transaction() as db:  # pretend the orphan is old enough to collect
        db.execute("UPDATE objects SET created = 0 WHERE sha256 = ?", (orphan.sha256,))
    assert main(["--home", str(home), "store", "gc", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would delete 1 unreferenced objects")
    assert main(["--home", str(home), "store", "gc"]) == 0
    assert store.find(orphan.value_hash) is None
    assert main(["--home", str(home), "run", "sales"]) == 0  # everything referenced survived
    assert "0 ran, 2 cached, 0 failed" in capsys.readouterr().out


def test_store_verify_reports_a_damaged_object(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(home)
    ref = store.put(list(range(50_000)))
    [path] = (home / "objects").glob(f"*/{ref.sha256}.*")
    path.write_bytes(path.read_bytes()[:-5] + b"xxxxx")
    assert main(["--home", str(home), "store", "verify"]) == 1
    captured = capsys.readouterr()
    assert "1 damaged" in captured.out and ref.sha256 in captured.err


# -- notebooks, run headless ---------------------------------------------------------------------
CELLS = [
    ("markdown", "# A tiny pipeline"),
    ("code", "%load_ext mlops_nb\n%pipeline use tiny\n%pipeline clear"),
    ("code", "import math\n\nRATE = 3  # a parameter"),
    ("code", "%%step load\nimport time\n\nnumbers = list(range(1, 6))\nprint('loaded', len(numbers))"),
    ("code", "%%step scaled\nscaled = [n * RATE for n in numbers]"),
    ("code", "%%step squares\nsquares = [n * n for n in numbers]"),
    ("code", "%%step report\ntotal = sum(scaled) + sum(squares)\nprint('total', total, math.floor(2.5))"),
    ("code", "print(total)  # shows a step output: not a set-up cell"),
    ("code", "%dag"),
]


def write_notebook(path: Path, cells: list[tuple[str, str]] = CELLS) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(text) if kind == "code" else nbformat.v4.new_markdown_cell(text)
        for kind, text in cells
    ]
    nbformat.write(notebook, path)
    return path


def mlops_nb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script, in a fresh process, as a scheduler or CI job would run it."""
    executable = str(Path(sys.executable).parent / "mlops-nb")
    return subprocess.run([executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def summary_rows(stdout: str) -> dict[str, str]:
    """step -> action, from the summary table."""
    rows = re.findall(r"^(\w+)\s+(ran|cached|failed)\s+[\d.]+\s", stdout, re.MULTILINE)
    return dict(rows)


def test_run_a_notebook_headless_then_only_what_changed(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "tiny.ipynb")
    store = tmp_path / "store"
    first = mlops_nb("run", "tiny.ipynb", "--store", str(store), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert summary_rows(first.stdout) == {"load": "ran", "scaled": "ran", "squares": "ran", "report": "ran"}
    assert "total 100 2" in first.stdout  # the step's own output, live
    assert "4 ran, 0 cached, 0 failed" in first.stdout
    assert "tiny.ipynb: ran 2 set-up cells, skipped 2; pipeline 'tiny' has 4 steps" in first.stderr
    assert "4/4 steps" in first.stderr  # the progress bar

    again = mlops_nb("run", "tiny.ipynb", "--store", str(store), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert set(summary_rows(again.stdout).values()) == {"cached"}  # %pipeline clear was not run

    cells = list(CELLS)
    cells[5] = ("code", "%%step squares\nsquares = [n ** 3 for n in numbers]")
    write_notebook(notebook, cells)
    edited = mlops_nb("run", "tiny.ipynb", "--store", str(store), cwd=tmp_path)
    assert summary_rows(edited.stdout) == {
        "load": "cached", "scaled": "cached", "squares": "ran", "report": "ran",
    }  # fmt: skip
    forced = mlops_nb("run", "tiny.ipynb", "--store", str(store), "--force", cwd=tmp_path)
    assert set(summary_rows(forced.stdout).values()) == {"ran"}


def test_a_failing_step_exits_non_zero_with_its_traceback(tmp_path: Path) -> None:
    cells = [*CELLS[:4], ("code", "%%step scaled\nscaled = [n / (RATE - 3) for n in numbers]")]
    write_notebook(tmp_path / "broken.ipynb", cells)
    run = mlops_nb("run", "broken.ipynb", "--store", str(tmp_path / "store"), cwd=tmp_path)
    assert run.returncode == 1
    assert summary_rows(run.stdout) == {"load": "ran", "scaled": "failed"}
    assert "ZeroDivisionError" in run.stderr and "<step scaled>" in run.stderr
    assert "mlops-nb: step 'scaled' failed: ZeroDivisionError" in run.stderr


def test_a_failing_set_up_cell_is_named(tmp_path: Path) -> None:
    write_notebook(tmp_path / "setup.ipynb", [CELLS[1], ("code", "RATE = 1 / 0"), CELLS[3]])
    run = mlops_nb("run", "setup.ipynb", "--store", str(tmp_path / "store"), cwd=tmp_path)
    assert run.returncode == 2
    assert "Set-up cell 2 of setup.ipynb failed: ZeroDivisionError" in run.stderr


def test_run_a_missing_notebook_or_not_a_notebook(tmp_path: Path) -> None:
    missing = mlops_nb("run", "nowhere.ipynb", "--store", str(tmp_path / "store"), cwd=tmp_path)
    assert missing.returncode == 2 and "No notebook at 'nowhere.ipynb'" in missing.stderr
    (tmp_path / "text.ipynb").write_text("not json")
    bad = mlops_nb("run", "text.ipynb", "--store", str(tmp_path / "store"), cwd=tmp_path)
    assert bad.returncode == 2 and "'text.ipynb' is not a Jupyter notebook" in bad.stderr


def test_export_a_notebook_to_a_module_that_runs_without_mlops_nb(tmp_path: Path) -> None:
    write_notebook(tmp_path / "tiny.ipynb")
    export = mlops_nb("export", "tiny.ipynb", "-o", "tiny_pipeline.py", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert export.stdout == "Wrote tiny_pipeline.py\n"
    run = subprocess.run([sys.executable, "tiny_pipeline.py"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "loaded 5\ntotal 100 2\n"


def test_export_writes_the_same_module_as_the_magic(nb: Any, tmp_path: Path) -> None:
    write_notebook(tmp_path / "tiny.ipynb")
    for _, cell in CELLS[1:7]:
        nb.ok(cell)
    nb.ok(f"%pipeline export {tmp_path / 'from_magic.py'}")
    export = mlops_nb("export", "tiny.ipynb", "-o", "from_cli.py", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    magic_source = (tmp_path / "from_magic.py").read_text().replace("from_magic.py", "X")
    assert (tmp_path / "from_cli.py").read_text().replace("from_cli.py", "X") == magic_source


@pytest.mark.parametrize("command", [[], ["run"], ["export"], ["status"], ["list"], ["store"], ["store", "gc"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: mlops-nb {' '.join(command)}".rstrip())
    if command == ["run"]:
        assert "--executor dask|dask://HOST:PORT" in text and "--store PATH" in text
    if not command:
        assert "examples:" in text and "exit status" in text


def test_run_a_notebook_on_dask(tmp_path: Path) -> None:
    write_notebook(tmp_path / "tiny.ipynb")
    run = mlops_nb("run", "tiny.ipynb", "--store", str(tmp_path / "store"), "--executor", "dask", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert set(summary_rows(run.stdout).values()) == {"ran"}
    assert "total 100 2" in run.stdout  # printed on a worker, shown here
    local = mlops_nb("run", "tiny.ipynb", "--store", str(tmp_path / "store"), cwd=tmp_path)
    assert set(summary_rows(local.stdout).values()) == {"cached"}  # the workers filled the cache


def test_an_unknown_executor_is_a_usage_error(tmp_path: Path) -> None:
    write_notebook(tmp_path / "tiny.ipynb")
    run = mlops_nb("run", "tiny.ipynb", "--store", str(tmp_path / "s"), "--executor", "spark", cwd=tmp_path)
    assert run.returncode == 2
    assert "Unknown executor 'spark'. Use 'dask' for a local Dask cluster" in run.stderr


def test_the_notebook_is_the_whole_truth_about_its_steps(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    write_notebook(tmp_path / "tiny.ipynb")
    assert mlops_nb("run", "tiny.ipynb", "--store", store, cwd=tmp_path).returncode == 0
    renamed = [*CELLS[:3], ("code", CELLS[3][1].replace("%%step load", "%%step loading")), *CELLS[4:6]]
    write_notebook(tmp_path / "tiny.ipynb", renamed)  # load renamed, report deleted
    run = mlops_nb("run", "tiny.ipynb", "--store", store, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert summary_rows(run.stdout) == {"loading": "ran", "scaled": "cached", "squares": "cached"}


def test_a_redefined_step_keeps_its_place_and_options_name_it_anywhere(tmp_path: Path) -> None:
    cells = [
        ("code", "%%step --no-cache load\nnumbers = [1, 2]"),
        ("code", "%%step --no-cache double --needs load\ndoubled = [2 * n for n in numbers]"),
        ("code", "%%step --no-cache load\nnumbers = [1, 2, 3]"),
    ]
    write_notebook(tmp_path / "redefine.ipynb", cells)
    run = mlops_nb("run", "redefine.ipynb", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert list(summary_rows(run.stdout)) == ["load", "double"]


def test_a_set_up_cell_importing_what_a_step_imports_still_runs(tmp_path: Path) -> None:
    cells = [("code", "import math\nN = 3"), ("code", "%%step roots\nimport math\nroots = [math.sqrt(i) for i in range(N)]")]
    write_notebook(tmp_path / "imports.ipynb", cells)
    run = mlops_nb("run", "imports.ipynb", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "ran 1 set-up cells" in run.stderr


def test_step_mistakes_in_a_notebook_name_the_cell(tmp_path: Path) -> None:
    cases = {
        "%%step scaled --needs lod\nscaled = [n * RATE for n in numbers]": "%%step cell 5 of bad.ipynb: Step 'scaled' needs 'lod'",
        "%%step scaled --bogus\nscaled = 1": "%%step cell 5 of bad.ipynb: unrecognized arguments: --bogus",
        "%%step scaled\nscaled = (": "%%step cell 5 of bad.ipynb: ",
    }
    for cell, message in cases.items():
        write_notebook(tmp_path / "bad.ipynb", [*CELLS[:4], ("code", cell)])
        run = mlops_nb("run", "bad.ipynb", "--store", str(tmp_path / "s"), cwd=tmp_path)
        assert run.returncode == 2, run.stderr
        assert message in run.stderr and "Traceback" not in run.stderr


def test_ipython_syntax_inside_a_step_works_headless(tmp_path: Path) -> None:
    cells = [("code", "%%step timed\n%time total = sum(range(10))")]
    write_notebook(tmp_path / "magic.ipynb", cells)
    run = mlops_nb("run", "magic.ipynb", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert summary_rows(run.stdout) == {"timed": "ran"}


def test_an_mlops_nb_error_inside_a_step_is_a_failed_step(tmp_path: Path) -> None:
    cells = [("code", "%%step features\nimport mlops_nb\nview = mlops_nb.FeatureStore().get_view('typo')")]
    write_notebook(tmp_path / "inner.ipynb", cells)
    run = mlops_nb("run", "inner.ipynb", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert run.returncode == 1
    assert summary_rows(run.stdout) == {"features": "failed"}
    assert "mlops-nb: step 'features' failed: UnknownViewError" in run.stderr


def test_two_notebooks_opened_in_one_process_get_their_own_pipelines(tmp_path: Path) -> None:
    write_notebook(tmp_path / "first.ipynb", [("code", "%%step one\none = 1")])
    write_notebook(tmp_path / "second.ipynb", [("code", "%%step two\ntwo = 2")])
    script = (
        "from mlops_nb.headless import open_notebook\n"
        "for name in ('first', 'second'):\n"
        "    print(open_notebook(name + '.ipynb').describe())\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "MLOPS_NB_HOME": str(tmp_path / "s")})
    assert run.returncode == 0, run.stderr
    assert "pipeline 'first' has 1 step" in run.stdout and "pipeline 'second' has 1 step" in run.stdout
