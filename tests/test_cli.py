"""The mlops-nb command, run as users run it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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
    assert capsys.readouterr().out.count("up to date, cached") == 2
    target = tmp_path / "sales.py"
    assert main(["--home", str(home), "export", "sales", str(target)]) == 0
    run = subprocess.run([sys.executable, str(target)], capture_output=True, text=True, check=True)
    assert run.stdout == "total 120\n"


def test_unknown_pipeline_is_a_clear_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(home), "status", "sale"]) == 2
    assert "No pipeline named 'sale'" in capsys.readouterr().err


def test_a_value_from_a_plain_cell_cannot_be_guessed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = Pipeline("plain", store=Store(tmp_path / "store"), namespace={"rate": 2})
    pipe.define_cell("scaled", "scaled = 10 * rate")
    pipe.run()
    assert main(["--home", str(tmp_path / "store"), "run", "plain"]) == 2
    assert "reads 'rate', which no step outputs" in capsys.readouterr().err


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

    with store.transaction() as db:  # pretend the orphan is old enough to collect
        db.execute("UPDATE objects SET created = 0 WHERE sha256 = ?", (orphan.sha256,))
    assert main(["--home", str(home), "store", "gc", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would delete 1 unreferenced objects")
    assert main(["--home", str(home), "store", "gc"]) == 0
    assert store.find(orphan.value_hash) is None
    assert main(["--home", str(home), "run", "sales"]) == 0  # everything referenced survived
    assert capsys.readouterr().out.count("up to date, cached") == 2


def test_store_verify_reports_a_damaged_object(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(home)
    ref = store.put(list(range(50_000)))
    [path] = (home / "objects").glob(f"*/{ref.sha256}.*")
    path.write_bytes(path.read_bytes()[:-5] + b"xxxxx")
    assert main(["--home", str(home), "store", "verify"]) == 1
    captured = capsys.readouterr()
    assert "1 damaged" in captured.out and ref.sha256 in captured.err
