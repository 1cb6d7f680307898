"""Real notebooks as %%step cells: re-binding, imports, failed runs, restores and saying why."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from mlops_nb import MutationWarning, Pipeline, Store

from .conftest import Notebook


def step(name: str, log: Path, body: str, options: str = "") -> str:
    """A step cell that notes in ``log`` each time it really executes."""
    return f"%%step {name} {options}\nopen({str(log)!r}, 'a').write('{name}\\n')\n{body}"


def executions(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "executions.log"


def restart(nb: Notebook) -> None:
    """What a kernel restart does to the notebook's memory (the store stays)."""
    nb.ok("%reset -f")
    from mlops_nb.magics import load

    load(nb.shell)


def test_restart_and_run_all_with_imports_in_an_earlier_step(nb: Notebook, log: Path) -> None:
    cells = [
        step("setup", log, "import numpy as np\nfrom collections import Counter as C"),
        step("data", log, "x = np.arange(5)\ncounts = C('abca')"),
        step("total", log, "total = int(np.sum(x)) + counts['a']"),
    ]
    for cell in cells:
        nb.ok(cell)
    restart(nb)
    for cell in cells:  # Restart & Run All: every step cached, none fails
        nb.ok(cell)
    assert executions(log) == ["setup", "data", "total"]
    assert nb.ns["total"] == 12 and nb.ns["np"].__name__ == "numpy"
    assert nb.pipeline.steps["total"].imports == {"np": ["numpy", ""]}
    restart(nb)
    nb.ok("%pipeline run")
    assert nb.ns["total"] == 12 and executions(log) == ["setup", "data", "total"]


def test_a_later_step_using_an_import_is_defined_alike_before_and_after_a_restart(
    nb: Notebook, log: Path
) -> None:
    nb.ok(step("setup", log, "import numpy as np"))
    nb.ok(step("use", log, "y = np.ones(2)"))
    definition = nb.pipeline.steps["use"].to_json()
    restart(nb)
    nb.ok(step("use", log, "y = np.ones(2)"))  # run out of order: `setup` not re-run first
    assert nb.pipeline.steps["use"].to_json() == definition
    assert executions(log) == ["setup", "use"]
    assert list(nb.ns["y"]) == [1.0, 1.0]


def test_a_failed_run_never_replaces_the_stored_definition_or_result(
    nb: Notebook, log: Path, store_home: Path
) -> None:
    nb.ok(step("load", log, "x = 2"))
    nb.ok(step("double", log, "y = x * 2"))
    error = nb.error(step("double", log, "y = x * 2 / undefined_name"))
    assert isinstance(error, NameError)
    assert nb.pipeline.status().set_index("step").loc["double", "state"] == "failed"
    other = Pipeline(nb.pipeline.name, Store(store_home), namespace={})  # another kernel
    assert other.run()["y"] == 4
    assert executions(log) == ["load", "double", "double"]


def test_a_restore_restores_every_step_it_can_and_names_the_others(
    nb: Notebook, log: Path
) -> None:
    nb.ok(step("a", log, "a = 1"))
    nb.error(step("broken", log, "b = a + missing_name"))
    nb.ok(step("independent", log, "d = a + 10"))
    restart(nb)
    error = nb.error("%pipeline run")
    assert isinstance(error, NameError)
    assert "failed: broken (NameError)" in error.__notes__[0]
    assert (nb.ns["a"], nb.ns["d"]) == (1, 11)  # restored although 'broken' failed


def test_steps_after_a_failed_one_are_named_as_not_run(store: Store) -> None:
    pipe = Pipeline("chain", store=store)
    pipe.define_cell("first", "x = 1 / 0")
    pipe.define_cell("second", "y = x + 1")
    pipe.define_cell("third", "z = 3")
    with pytest.raises(ZeroDivisionError) as failure:
        pipe.run()
    note = failure.value.__notes__[0]
    assert "1 of 3 steps are up to date" in note
    assert "not run because they depend on a failed step: second" in note
    assert pipe.namespace["z"] == 3


def test_a_long_chain_restores_without_hitting_the_recursion_limit(store: Store) -> None:
    pipe = Pipeline("chain", store=store)
    pipe.define_cell("s0", "x0 = 0")
    for index in range(1, 400):
        pipe.define_cell(f"s{index}", f"x{index} = x{index - 1} + 1")
    pipe.run()
    fresh = Pipeline("chain", store=store, namespace={})
    assert fresh.run_step("s399").action == "cached"
    assert fresh.namespace["x399"] == 399


def test_why_names_the_code_diff_the_input_and_its_producer(nb: Notebook, log: Path) -> None:
    nb.ok(step("load", log, "x = 2"))
    nb.ok(step("double", log, "y = x * 2"))
    assert nb.pipeline.explain("double") == []
    nb.pipeline.define_cell("load", "x = 3")  # defined, not run yet
    nb.ok(step("load", log, "x = 3"))
    assert nb.pipeline.explain("double") == ["input 'x' changed (from step 'load')"]
    nb.pipeline.define_cell("double", "y = x * 2 + 1")
    [code] = [r for r in nb.pipeline.explain("double") if r.startswith("its code changed")]
    assert "-y = x * 2" in code and "+y = x * 2 + 1" in code
    status = nb.pipeline.status().set_index("step")
    assert status.loc["double", "state"] == "stale" and status.loc["double", "why"] == "its code changed"


def test_the_status_line_of_a_step_that_runs_says_why(nb: Notebook, log: Path, capsys) -> None:
    nb.ok(step("load", log, "x = 2"))
    nb.ok(step("double", log, "y = x * 2"))
    nb.ok(step("load", log, "x = 5"))
    capsys.readouterr()
    nb.ok(step("double", log, "y = x * 2"))
    assert "ran because input 'x' changed (from step 'load')" in capsys.readouterr().out
    nb.ok(step("double", log, "y = x * 2", "--force"))
    assert "ran because forced" in capsys.readouterr().out


def test_pipeline_why_magic_prints_the_reasons(nb: Notebook, log: Path, capsys) -> None:
    nb.ok(step("load", log, "x = 2"))
    capsys.readouterr()
    nb.ok("%pipeline why load")
    assert "'load' is up to date" in capsys.readouterr().out
    nb.pipeline.define_cell("load", "x = 4")
    nb.ok("%pipeline why load")
    assert "'load' would run because:\n  - its code changed" in capsys.readouterr().out
    assert "Did you mean 'load'?" in str(nb.error("%pipeline why lod"))
    assert "needs a step name" in str(nb.error("%pipeline why"))


def test_restoring_a_function_points_it_at_the_notebooks_globals(nb: Notebook, log: Path) -> None:
    nb.ok("factor = 3")
    nb.ok(step("helpers", log, "def scale(v):\n    return v * factor"))
    restart(nb)
    nb.ok("factor = 3")
    nb.ok(step("helpers", log, "def scale(v):\n    return v * factor"))
    assert executions(log) == ["helpers"]
    nb.ok("factor = 5")
    assert nb.ns["scale"](2) == 10  # as a plain cell's function would: it sees the new factor


def test_global_settings_set_in_a_cached_step_are_re_applied(nb: Notebook, log: Path) -> None:
    cells = [
        step("setup", log, "import sklearn\nimport numpy as np\nsklearn.set_config(transform_output='pandas')\nnp.random.seed(7)"),
        step("scale", log, "from sklearn.preprocessing import StandardScaler\nscaled = StandardScaler().fit_transform([[1.0], [3.0]])\nkind = type(scaled).__name__"),
        step("draw", log, "draws = np.random.rand(3).round(6).tolist()"),
    ]
    for cell in cells:
        nb.ok(cell)
    plain = (nb.ns["kind"], nb.ns["draws"])
    assert plain[0] == "DataFrame"
    nb.ok("import sklearn; sklearn.set_config(transform_output='default')\nimport numpy as np; np.random.seed(0)")
    restart(nb)
    for cell in cells:
        nb.ok(cell)
    assert executions(log) == ["setup", "scale", "draw"]
    assert (nb.ns["kind"], nb.ns["draws"]) == plain
    import sklearn

    assert sklearn.get_config()["transform_output"] == "pandas"
    sklearn.set_config(transform_output="default")


def test_a_step_drawing_from_the_global_generator_depends_on_its_state(nb: Notebook, log: Path) -> None:
    nb.ok(step("seed", log, "import numpy as np\nnp.random.seed(1)"))
    nb.ok(step("draw", log, "first = np.random.rand()"))
    nb.ok(step("draw_again", log, "second = np.random.rand()"))
    assert nb.ns["first"] != nb.ns["second"]  # the state moved on, as in a plain run
    values = (nb.ns["first"], nb.ns["second"])
    restart(nb)
    for name, body in [("seed", "import numpy as np\nnp.random.seed(1)"), ("draw", "first = np.random.rand()"),
                       ("draw_again", "second = np.random.rand()")]:
        nb.ok(step(name, log, body))
    assert (nb.ns["first"], nb.ns["second"]) == values
    assert executions(log) == ["seed", "draw", "draw_again"]
    nb.ok(step("seed", log, "import numpy as np\nnp.random.seed(2)"))
    nb.ok(step("draw", log, "first = np.random.rand()"))
    assert executions(log)[-1] == "draw"  # a new seed: the draw is computed again
    assert "numpy.random random state changed" in nb.pipeline.explain("draw_again")[0]


def test_fitting_models_of_another_step_through_a_loop_variable_warns(nb: Notebook, log: Path) -> None:
    nb.ok(step("data", log, "from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)"))
    nb.ok(step("make", log, "from sklearn.tree import DecisionTreeClassifier\nmodels = {'tree': DecisionTreeClassifier(random_state=0)}"))
    with pytest.warns(MutationWarning, match=r"calls \.fit\(\) on 'models' \(an output of step 'make'\) through 'clf'.*clone\(clf\)\.fit\(X, y\)"):
        nb.shell.run_cell(step("fit_all", log, "for name, clf in models.items():\n    clf.fit(X, y)"))


def test_methods_that_return_new_objects_are_not_mutations(nb: Notebook, log: Path) -> None:
    nb.ok(step("frames", log, "import pandas as pd\nA = pd.DataFrame({'v': [1, 2]})\nB = pd.DataFrame({'v': [3, 4]})"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MutationWarning)
        nb.ok(step("total", log, "total = A.add(B, fill_value=0)\nordered = A.sort_values('v')"))


def test_set_params_on_another_steps_estimator_suggests_a_clone(nb: Notebook, log: Path) -> None:
    nb.ok(step("make", log, "from sklearn.linear_model import LogisticRegression\nest = LogisticRegression()"))
    with pytest.warns(MutationWarning, match=r"sklearn\.base\.clone\(est\)\.set_params\(C=2\)") as caught:
        nb.shell.run_cell(step("tune", log, "est.set_params(C=2)"))
    assert ".copy()" not in str(caught[0].message)


def test_drawing_from_another_steps_generator_warns(nb: Notebook, log: Path) -> None:
    nb.ok(step("make_rng", log, "import numpy as np\nrng = np.random.default_rng(0)"))
    with pytest.warns(MutationWarning, match=r"draws from 'rng'.*default_rng"):
        nb.shell.run_cell(step("draw", log, "sample = rng.integers(0, 10, 3)"))


def test_a_time_magic_inside_a_step_stores_what_it_assigns(nb: Notebook, log: Path) -> None:
    nb.ok(step("timed", log, "%time answer = 40 + 2"))
    assert nb.pipeline.steps["timed"].outputs == ("answer",)
    restart(nb)
    nb.ok("%pipeline run")
    assert nb.ns["answer"] == 42 and executions(log) == ["timed"]


def test_editing_your_own_module_makes_the_step_stale_once_it_is_reloaded(
    nb: Notebook, log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "mycode"
    package.mkdir()
    (package / "utils.py").write_text("def double(v):\n    return v * 2\n")
    monkeypatch.syspath_prepend(str(package))
    cell = step("use", log, "import utils\nresult = utils.double(21)")
    nb.ok(cell)
    (package / "utils.py").write_text("def double(v):\n    return v * 3\n")
    nb.ok(cell)  # not reloaded: the kernel still runs the old code, as a plain cell would
    assert nb.ns["result"] == 42 and executions(log) == ["use"]
    nb.ok("import importlib, utils\nimportlib.reload(utils)")
    nb.ok(cell)
    assert nb.ns["result"] == 63 and executions(log) == ["use", "use"]
    assert nb.pipeline.explain("use") == []
    monkeypatch.delitem(sys.modules, "utils")


def test_a_global_read_by_a_step_function_is_part_of_its_fingerprint(store: Store) -> None:
    namespace: dict[str, object] = {}
    exec("factor = 2\ndef scale(values):\n    return [v * factor for v in values]", namespace)  # noqa: S102
    pipe = Pipeline("globals", store=store, namespace={"values": [1, 2]})
    pipe.define_cell("scaled", "scaled = scale(values)")
    pipe.namespace["scale"] = namespace["scale"]
    assert pipe.run()["scaled"] == [2, 4]
    namespace["factor"] = 3
    assert pipe.run()["scaled"] == [3, 6]
    assert pipe.run_step("scaled").action == "cached"


def test_a_decorated_step_function_sees_the_globals_it_reads(store: Store) -> None:
    module: dict[str, object] = {"__name__": "__main__"}
    source = (
        "from mlops_nb import Pipeline\n"
        "threshold = 2\n"
        "pipe = Pipeline('decorated', store=STORE)\n"
        "@pipe.step\n"
        "def kept():\n"
        "    return [v for v in range(5) if v > threshold]\n"
    )
    module["STORE"] = store
    exec(source, module)  # noqa: S102
    pipe = module["pipe"]
    assert pipe.run()["kept"] == [3, 4]  # type: ignore[attr-defined]
    module["threshold"] = 3
    assert pipe.run()["kept"] == [4]  # type: ignore[attr-defined]


def test_why_names_the_module_that_changed(nb: Notebook, log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "helpers_why.py").write_text("def inc(v):\n    return v + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    nb.ok(step("use", log, "import helpers_why\nout = helpers_why.inc(1)"))
    (tmp_path / "helpers_why.py").write_text("def inc(v):\n    return v + 2\n")
    nb.ok("import importlib, helpers_why\nimportlib.reload(helpers_why)")
    [reason] = nb.pipeline.explain("use")
    assert reason == f"module helpers_why ({tmp_path / 'helpers_why.py'}) changed"
    monkeypatch.delitem(sys.modules, "helpers_why")


def test_an_upgraded_library_makes_its_steps_stale_and_says_so(store: Store) -> None:
    pipe = Pipeline("versions", store=store)
    pipe.define_cell("use", "import json\nimport sklearn\nv = json.dumps([1])")
    pipe.run()
    import sklearn

    real = sklearn.__version__
    try:
        sklearn.__version__ = "0.0.1"  # stands in for `pip install -U scikit-learn` and a reload
        assert pipe.explain("use") == [f"library scikit-learn changed version: {real} → 0.0.1"]
        assert pipe.run_step("use").action == "ran"
    finally:
        sklearn.__version__ = real


def test_why_ignores_a_later_steps_version_of_an_input(nb: Notebook, log: Path) -> None:
    nb.ok(step("load", log, "raw = [1, 2]"))
    nb.ok(step("clean", log, "clean = [v * 2 for v in raw]"))
    nb.ok(step("rescale", log, "raw = [v / 2 for v in raw]"))
    assert nb.pipeline.explain("clean") == []  # running it would put load's raw back first
    assert nb.pipeline.status().set_index("step").loc["clean", "state"] == "up to date"


def test_a_value_changed_in_place_is_stored_and_restored_as_in_a_plain_run(nb: Notebook, log: Path) -> None:
    cells = [
        step("make", log, "import numpy as np\nrng = np.random.default_rng(42)\nfirst = rng.integers(0, 1000, 3).tolist()"),
        step("draw", log, "second = rng.integers(0, 1000, 3).tolist()"),
        step("fit", log, "from sklearn.linear_model import LinearRegression\nmodels = {'lr': LinearRegression()}"),
        step("train", log, "for name, clf in models.items():\n    clf.fit([[0.0], [1.0]], [0.0, 2.0])"),
        step("use", log, "third = rng.integers(0, 1000, 3).tolist()\nslope = float(models['lr'].coef_[0])"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MutationWarning)
        for cell in cells:
            nb.ok(cell)
        plain = {name: nb.ns[name] for name in ("first", "second", "third", "slope")}
        assert plain["slope"] == pytest.approx(2.0) and plain["second"] != plain["third"]
        nb.ok(cells[1])  # re-running a cell that changed a value starts from its producer's version
        assert nb.ns["second"] == plain["second"]
        restart(nb)
        for cell in cells:
            nb.ok(cell)
        assert {name: nb.ns[name] for name in plain} == plain
        assert executions(log) == ["make", "draw", "fit", "train", "use"]
        restart(nb)
        nb.ok("%pipeline run")
        assert {name: nb.ns[name] for name in plain} == plain


def test_a_run_follows_notebook_order_so_the_last_binding_wins(store: Store) -> None:
    pipe = Pipeline("order", store=store)
    pipe.define_cell("data", "x = 1")
    pipe.define_cell("first", "y = x + 1")
    pipe.define_cell("uses_first", "z = y * 10")
    pipe.define_cell("second", "y = x + 100")  # depends on 'data' only, re-binds y
    assert pipe.order() == ["data", "first", "uses_first", "second"]
    fresh = Pipeline("order", store=store, namespace={})
    pipe.run()
    fresh.run()
    assert fresh.namespace["y"] == 101 and fresh.namespace["z"] == 20


def test_an_input_changed_inside_a_library_call_is_learned_as_an_output(nb: Notebook, log: Path) -> None:
    cells = [
        step("make", log, "import numpy as np\nrs = np.random.RandomState(0)"),
        step("split", log, "from sklearn.model_selection import train_test_split\ntrain, test = train_test_split(list(range(10)), random_state=rs)"),
        step("after", log, "later = rs.randint(0, 1000, 3).tolist()"),
    ]
    with pytest.warns(MutationWarning, match=r"step 'split' changed 'rs' \(made by an earlier step\)"):
        for cell in cells:
            nb.ok(cell)
    plain = (nb.ns["train"], nb.ns["later"])
    assert "rs" in nb.pipeline.steps["split"].outputs
    restart(nb)
    for cell in cells:
        nb.ok(cell)
    assert (nb.ns["train"], nb.ns["later"]) == plain
    assert executions(log) == ["make", "split", "after"]
