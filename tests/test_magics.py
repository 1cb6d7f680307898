"""%%step, %pipeline and %dag, run through a real IPython shell."""

from __future__ import annotations

import subprocess
import warnings
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from mlops_nb import (
    CorruptObjectError,
    CycleError,
    MutationWarning,
    UnknownStepError,
)

from .conftest import Notebook


def counting_step(name: str, log: Path, body: str) -> str:
    """A step cell that appends one line to ``log`` each time it really executes."""
    step = name.split()[0]
    return f"%%step {name}\nopen({str(log)!r}, 'a').write('{step}\\n')\n{body}"


def executions(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "executions.log"


def test_loading_the_extension_registers_the_magics(nb: Notebook) -> None:
    magics = nb.shell.magics_manager.magics
    assert "step" in magics["cell"]
    assert {"pipeline", "dag"} <= set(magics["line"])


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = (
        "import sys, mlops_nb; heavy = {'IPython', 'pandas', 'sklearn', 'matplotlib', 'skops', "
        "'duckdb', 'ipywidgets'} & set(sys.modules); print(sorted(heavy))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[]"


def test_a_step_runs_once_then_is_restored_from_the_cache(nb: Notebook, log: Path, capsys) -> None:
    nb.ok(counting_step("load", log, "numbers = [3, 1, 2]\nprint('loaded', len(numbers))"))
    first = capsys.readouterr().out
    assert "loaded 3" in first
    assert "✓ load: ran in" in first and "→ numbers (stored)" in first

    nb.ok(counting_step("load", log, "numbers = [3, 1, 2]\nprint('loaded', len(numbers))"))
    second = capsys.readouterr().out
    assert executions(log) == ["load"]  # not executed again
    assert "loaded 3" in second  # ...but its output is replayed
    assert "up to date, cached" in second and "%%step load --force" in second
    assert nb.ns["numbers"] == [3, 1, 2]


def test_comment_and_whitespace_edits_are_not_changes(nb: Notebook, log: Path) -> None:
    nb.ok(counting_step("load", log, "numbers = [3, 1, 2]"))
    nb.ok(counting_step("load", log, "# the raw numbers\nnumbers = [3,1,  2]   # unsorted\n\n"))
    assert executions(log) == ["load"]
    nb.ok(counting_step("load", log, "numbers = [3, 1, 2, 4]"))
    assert executions(log) == ["load", "load"]


def test_editing_a_step_makes_downstream_steps_stale(nb: Notebook, log: Path) -> None:
    nb.ok(counting_step("load", log, "numbers = [3, 1, 2]"))
    nb.ok(counting_step("total", log, "total = sum(numbers)"))
    nb.ok(counting_step("report", log, "report = f'total={total}'"))
    status = nb.pipeline.status().set_index("step")
    assert list(status["state"]) == ["up to date"] * 3
    assert status.loc["report", "needs"] == "total"

    nb.ok(counting_step("load", log, "numbers = [3, 1, 2, 10]"))
    status = nb.pipeline.status().set_index("step")
    assert status.loc["load", "state"] == "up to date"
    assert status.loc["total", "state"] == "stale"
    assert status.loc["report", "state"] == "stale"

    nb.ok("%pipeline run")
    assert executions(log) == ["load", "total", "report", "load", "total", "report"]
    assert nb.ns["report"] == "total=16"
    assert set(nb.pipeline.status()["state"]) == {"up to date"}


def test_an_upstream_rerun_with_the_same_output_keeps_downstream_cached(nb: Notebook, log: Path) -> None:
    nb.ok(counting_step("load", log, "numbers = [3, 1, 2]"))
    nb.ok(counting_step("total", log, "total = sum(numbers)"))
    nb.ok(counting_step("load", log, "numbers = [3, 1, 2]\nunused = 1"))
    nb.ok(counting_step("total", log, "total = sum(numbers)"))
    assert executions(log) == ["load", "total", "load"]


def test_rich_output_is_replayed_on_a_cache_hit(nb: Notebook, capsys) -> None:
    cell = "%%step table\nimport pandas as pd\ntable = pd.DataFrame({'a': [1, 2]})\ntable.describe()"
    nb.ok(cell)
    first = capsys.readouterr().out
    nb.ok(cell)
    second = capsys.readouterr().out
    assert "count" in first and "count" in second
    outputs = nb.pipeline.store.query("SELECT display FROM results")
    assert '"output_type": "display_data"' in outputs[0][0]


def test_force_reruns_and_no_cache_never_stores(nb: Notebook, log: Path) -> None:
    nb.ok(counting_step("load", log, "numbers = [1]"))
    nb.ok(counting_step("load --force", log, "numbers = [1]"))
    assert executions(log) == ["load", "load"]
    nb.ok(counting_step("fresh --no-cache", log, "now = 1"))
    nb.ok(counting_step("fresh --no-cache", log, "now = 1"))
    assert executions(log).count("fresh") == 2
    assert nb.pipeline.store.query("SELECT COUNT(*) FROM results WHERE step = 'fresh'") == [(0,)]


def test_outputs_narrows_what_is_stored(nb: Notebook) -> None:
    nb.ok("%%step split --outputs train\ntrain, test = [1, 2], [3]")
    assert nb.pipeline.steps["split"].outputs == ("train",)
    error = nb.error("%%step split2 --outputs trian\ntrain, test = [1, 2], [3]")
    assert isinstance(error, UsageError)
    assert "never assigns" in str(error) and "Did you mean 'train'?" in str(error)


def test_needs_adds_an_explicit_edge_and_unknown_needs_are_refused(nb: Notebook) -> None:
    nb.ok("%%step setup\nimport os\nflag = 1")
    nb.ok("%%step after --needs setup\nresult = 2")
    assert nb.pipeline.upstream("after") == ["setup"]
    error = nb.error("%%step other --needs setpu\nvalue = 3")
    assert isinstance(error, UsageError) and isinstance(error.__cause__, UnknownStepError)
    assert "Did you mean 'setup'?" in str(error)
    assert "other" not in nb.pipeline.steps


def test_files_are_part_of_the_fingerprint(nb: Notebook, log: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n")
    cell = counting_step(f"read --files {data}", log, f"text = open({str(data)!r}).read()")
    nb.ok(cell)
    nb.ok(cell)
    data.write_text("a\n2\n")
    assert nb.pipeline.status().loc[0, "state"] == "stale"
    nb.ok(cell)
    assert executions(log) == ["read", "read"]
    error = nb.error("%%step missing --files nowhere.csv\nx = 1")
    assert "does not exist" in str(error) and "'nowhere.csv'" in str(error)


def test_a_name_re_bound_by_a_later_step_is_read_by_position(nb: Notebook, log: Path) -> None:
    nb.ok(counting_step("a", log, "value = 1"))
    nb.ok(counting_step("use_a", log, "first = value * 10"))
    nb.ok(counting_step("b", log, "value = value + 1"))  # re-binding is normal, as in a notebook
    nb.ok(counting_step("use_b", log, "second = value * 10"))
    assert (nb.ns["first"], nb.ns["second"]) == (10, 20)
    assert nb.pipeline.upstream("use_a") == ["a"] and nb.pipeline.upstream("use_b") == ["b"]
    assert nb.pipeline.upstream("b") == ["a"]
    # Re-running an earlier cell reads the version of its own producer, not the later one.
    nb.ok(counting_step("use_a", log, "first = value * 10 + 1"))
    assert nb.ns["first"] == 11
    nb.ok(counting_step("b", log, "value = value + 1"))  # cached: it read a's value, as before
    assert executions(log) == ["a", "use_a", "b", "use_b", "use_a"]
    assert nb.ns["value"] == 2
    nb.ok("%reset -f")
    nb.ok("%pipeline run")
    assert (nb.ns["first"], nb.ns["second"], nb.ns["value"]) == (11, 20, 2)
    assert executions(log) == ["a", "use_a", "b", "use_b", "use_a"]


def test_a_cycle_is_refused_and_the_step_is_not_added(nb: Notebook) -> None:
    nb.ok("%%step a\nx = 1")
    nb.ok("%%step b\ny = x + 1")
    error = nb.error("%%step a --needs b\nx = 1")
    assert isinstance(error.__cause__, CycleError)
    assert "circle" in str(error)
    assert nb.pipeline.steps["a"].needs == ()


def test_a_syntax_error_is_reported_with_its_line(nb: Notebook) -> None:
    error = nb.error("%%step broken\nx = 1\ny = (2 +\n")
    assert isinstance(error, UsageError)
    assert "<step broken>" in str(error) or "line" in str(error)
    assert "broken" not in nb.pipeline.steps
    nb.ok("%%step broken\nx = 1")


def test_bad_names_and_bad_usage_raise_usage_errors(nb: Notebook) -> None:
    for line in ["%%step ../escape\nx = 1", "%%step a/b\nx = 1", "%%step\nx = 1", "%%step ok --bogus\nx = 1"]:
        assert isinstance(nb.error(line), UsageError), line
    assert isinstance(nb.error("%pipeline fly"), UsageError)


def test_an_output_that_cannot_be_stored_fails_cleanly(nb: Notebook) -> None:
    error = nb.error("%%step gen\nnumbers = (i for i in range(3))")
    assert isinstance(error, UsageError)
    assert "Cannot store output 'numbers' of step 'gen'" in str(error)
    assert "generator" in str(error)
    assert nb.pipeline.status().set_index("step").loc["gen", "state"] == "failed"
    nb.ok("%%step gen\nnumbers = list(range(3))")
    assert nb.pipeline.status().set_index("step").loc["gen", "state"] == "up to date"


def test_an_input_that_cannot_be_hashed_is_explained(nb: Notebook) -> None:
    nb.ok("import threading\nlock = threading.Lock()")
    error = nb.error("%%step use_lock\nheld = lock.locked()")
    assert "Cannot hash a lock value" in str(error)


def test_a_failing_step_raises_the_users_error_and_stores_nothing(nb: Notebook, capsys) -> None:
    error = nb.error("%%step divide\nratio = 1 / 0")
    assert isinstance(error, ZeroDivisionError)
    assert "✗ divide: failed" in capsys.readouterr().err
    assert nb.pipeline.status().loc[0, "state"] == "failed"
    assert nb.pipeline.store.query("SELECT COUNT(*) FROM results") == [(0,)]
    nb.ok("%%step divide\nratio = 1 / 2")
    assert nb.ns["ratio"] == 0.5


def test_mutating_an_upstream_variable_warns_with_the_fix(nb: Notebook) -> None:
    nb.ok("%%step load\nimport pandas as pd\nraw = pd.DataFrame({'a': [1, 2]})")
    with pytest.warns(MutationWarning, match=r"assigns into 'raw' \(an output of step 'load'\)"):
        nb.shell.run_cell("%%step clean\nraw['b'] = 1\nclean = raw")
    nb.ok("%%step names\nnames = ['a']")
    with pytest.warns(MutationWarning, match=r"calls .append\(\) on 'names'.*bind a new name"):
        nb.shell.run_cell("%%step more\nnames.append('b')\nmore = len(names)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MutationWarning)  # re-binding a name is not a mutation
        nb.ok("%%step clean3\nraw = raw.dropna()")


def test_corrupt_store_files_name_the_file_and_the_step(nb: Notebook) -> None:
    nb.ok("%%step big\nimport numpy as np\nbig = np.arange(100_000)")
    [file] = (nb.pipeline.store.root / "objects").glob("*/*.npy")
    file.write_bytes(file.read_bytes()[:-10] + b"0123456789")
    nb.ok("del big")
    error = nb.error("%%step big\nimport numpy as np\nbig = np.arange(100_000)")
    assert isinstance(error.__cause__, CorruptObjectError)
    assert str(file) in str(error) and "step 'big'" in str(error) and "--force" in str(error)
    nb.ok("%%step big --force\nimport numpy as np\nbig = np.arange(100_000)")
    assert nb.ns["big"].sum() == sum(range(100_000))


def test_pipeline_run_restores_everything_after_a_reset_without_executing(nb: Notebook, log: Path) -> None:
    nb.ok("import pandas as pd")
    nb.ok(counting_step("load", log, "raw = pd.DataFrame({'x': range(5)})"))
    nb.ok(counting_step("clean", log, "clean = raw[raw.x > 1]"))
    nb.ok(counting_step("total", log, "total = int(clean.x.sum())"))
    nb.ok("%reset -f")
    assert "total" not in nb.ns and "pd" not in nb.ns
    nb.ok("%pipeline run")
    assert executions(log) == ["load", "clean", "total"]
    assert nb.ns["total"] == 9 and list(nb.ns["clean"].x) == [2, 3, 4]


def test_pipeline_run_step_runs_only_what_it_needs(nb: Notebook, log: Path) -> None:
    nb.ok(counting_step("a", log, "x = 1"))
    nb.ok(counting_step("b", log, "y = x + 1"))
    nb.ok(counting_step("other", log, "z = 5"))
    nb.ok("%pipeline run b --force")
    assert executions(log) == ["a", "b", "other", "a", "b"]
    error = nb.error("%pipeline run bb")
    assert "Did you mean 'b'?" in str(error)


def test_pipeline_status_clear_and_use(nb: Notebook) -> None:
    nb.ok("%%step a\nx = 1")
    status = nb.ok("%pipeline status").result
    assert list(status.columns) == ["step", "needs", "outputs", "state", "why", "last action", "seconds"]
    assert status.loc[0, "last action"] == "ran"
    nb.ok("%pipeline use other")
    assert nb.pipeline.name == "other" and nb.pipeline.steps == {}
    nb.ok("%pipeline use default")
    assert list(nb.pipeline.steps) == ["a"]
    nb.ok("%pipeline clear a")
    assert nb.pipeline.steps == {}
    assert isinstance(nb.error("%pipeline use"), UsageError)


def test_export_writes_a_module_that_runs(nb: Notebook, tmp_path: Path) -> None:
    nb.ok("import pandas as pd\nN = 4")
    nb.ok("%%step load\nraw = pd.DataFrame({'x': range(N)})")
    nb.ok("%%step total\ntotal = int(raw.x.sum())\nprint('total is', total)")
    target = tmp_path / "exported" / "pipeline.py"
    nb.ok(f"%pipeline export {target}")
    run = subprocess.run([sys.executable, str(target)], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "total is 6"
    assert "def step_load(N):" in target.read_text()


def test_dag_shows_mermaid_svg_and_text(nb: Notebook) -> None:
    nb.ok("%%step load\nraw = [1, 2]")
    nb.ok("%%step total\ntotal = sum(raw)")
    view = nb.ok("%dag").result
    bundle = view._repr_mimebundle_()
    assert bundle["text/vnd.mermaid"].startswith("flowchart LR")
    assert "-->|raw|" in bundle["text/vnd.mermaid"]
    assert bundle["image/svg+xml"].startswith("<svg") and ">total<" in bundle["image/svg+xml"]
    assert "total  [up to date]  → total  (after load)" in bundle["text/plain"]


def test_active_pipeline_is_the_extensions(nb: Notebook) -> None:
    import mlops_nb

    nb.ok("%%step a\nx = 1")
    assert mlops_nb.pipeline().steps.keys() == {"a"}

    @mlops_nb.step
    def doubled(x):
        return 2 * x

    mlops_nb.pipeline().run()
    assert nb.ns["doubled"] == 2


def test_magics_have_help(nb: Notebook) -> None:
    from mlops_nb.magics import StepMagics

    assert "--no-cache" in StepMagics.step.__doc__
    assert "export" in StepMagics.pipeline_magic.__doc__


def test_fitting_an_upstream_model_suggests_clone(nb: Notebook) -> None:
    nb.ok("%%step model\nfrom sklearn.linear_model import LogisticRegression\nmodel = LogisticRegression()")
    with pytest.warns(MutationWarning, match=r"calls \.fit\(\) on 'model'.*sklearn\.base\.clone\(model\)\.fit"):
        nb.shell.run_cell("%%step train\nfitted = model.fit([[0], [1]], [0, 1])")
