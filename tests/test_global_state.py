"""Global settings a step changes are found, survive pickling and come back in a fresh process."""

from __future__ import annotations

import doctest
import json
import os
import pickle
import random
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import cloudpickle
import numpy as np
import pytest

from mlops_nb import global_state
from mlops_nb.global_state import (
    NUMPY_DRAWS,
    OPTION_SETTINGS,
    RANDOM_DRAWS,
    changes,
    draws_from_global_rng,
    settings_hashes,
    snapshot,
)

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, **env: str) -> Any:
    """Run ``code`` in a fresh interpreter (like a restarted kernel); return what it printed as JSON."""
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
        env={**os.environ, "MPLBACKEND": "Agg", **env},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


class Case(NamedTuple):
    imports: str  # done before the step, and again on restore (imports are re-done)
    step: str
    probe: str  # sets `result` from the global state after the step
    expected: dict[str, list[str] | None] | None  # by setting: changed options, None for a whole
    # value; every option setting is checked, the others only when listed


CASES = {
    "numpy seed": Case(
        "import numpy as np", "np.random.seed(0)\n_ = np.random.rand(5)",
        "result = np.random.rand(3).tolist()", {"numpy.random": None},
    ),
    "numpy cached gaussian": Case(
        "import numpy as np", "np.random.seed(1)\n_ = np.random.randn()",
        "result = np.random.randn(3).tolist()", {"numpy.random": None},
    ),
    "random seed": Case(
        "import random", "random.seed(0)\n_ = random.random()",
        "result = [random.random() for _ in range(3)]", {"random": None},
    ),
    "sklearn set_config": Case(
        "import sklearn", 'sklearn.set_config(transform_output="pandas")',
        'result = sklearn.get_config()["transform_output"]', {"sklearn": ["transform_output"]},
    ),
    "pandas set_option": Case(
        "import pandas as pd", 'pd.set_option("display.max_rows", 7)',
        'result = pd.get_option("display.max_rows")', {"pandas": ["display.max_rows"]},
    ),
    "pandas options attribute": Case(
        "import pandas as pd", "pd.options.display.precision = 2",
        "result = repr(pd.Series([1.23456]))", {"pandas": ["display.precision"]},
    ),
    "pandas float_format": Case(
        "import pandas as pd", 'pd.options.display.float_format = "{:.1f}".format',
        'result = repr(pd.DataFrame({"x": [1.23456]}))', {"pandas": ["display.float_format"]},
    ),
    "rcParams item": Case(
        "import matplotlib.pyplot as plt", 'plt.rcParams["lines.linewidth"] = 4.5',
        "result = plt.subplots()[1].plot([1, 2])[0].get_linewidth()",
        {"matplotlib": ["lines.linewidth"]},
    ),
    "rcParams update": Case(
        "import matplotlib as mpl", 'mpl.rcParams.update({"font.size": 7.0, "axes.grid": True})',
        'result = [mpl.rcParams["font.size"], mpl.rcParams["axes.grid"]]',
        {"matplotlib": ["axes.grid", "font.size"]},
    ),
    "style.use": Case(
        "import matplotlib.pyplot as plt", 'plt.style.use("ggplot")',
        """
ax = plt.subplots()[1]
result = [[line.get_color() for line in ax.plot([0, 1], [0, 1], [0, 1], [1, 0])],
          str(ax.get_facecolor())]
""",
        None,  # many options: see test_style_use_records_only_the_options_it_changes
    ),
    "filterwarnings": Case(
        "import warnings", 'warnings.filterwarnings("error", message="boom")',
        """
try:
    warnings.warn("boom")
    result = "shown"
except UserWarning:
    result = "raised"
""",
        {"warnings": None},
    ),
    "simplefilter": Case(
        "import warnings", 'warnings.simplefilter("ignore")',
        """
with warnings.catch_warnings(record=True) as caught:
    warnings.warn("x")
result = len(caught)
""",
        {"warnings": None},
    ),
    "resetwarnings": Case(  # an empty list of filters is a change too
        "import warnings", "warnings.resetwarnings()",
        """
with warnings.catch_warnings(record=True) as caught:
    warnings.warn_explicit("old", DeprecationWarning, "lib.py", 1, module="lib")
result = len(caught)
""",
        {"warnings": None},
    ),
    "set_printoptions": Case(
        "import numpy as np", "np.set_printoptions(precision=3)",
        "result = repr(np.array([1 / 3]))", {"numpy.printoptions": ["precision"]},
    ),
    "printoptions back to default": Case(
        'import numpy as np\nnp.set_printoptions(formatter={"float": lambda x: "F"})',
        "np.set_printoptions(formatter=None)",
        "result = repr(np.array([1.5]))", {"numpy.printoptions": ["formatter"]},
    ),
    "set_printoptions keeps the formatter": Case(
        'import numpy as np\nnp.set_printoptions(formatter={"int": lambda x: "I"})',
        'np.set_printoptions(precision=3, formatter=np.get_printoptions()["formatter"])',
        "result = [repr(np.array([1 / 3])), repr(np.array([1]))]",
        {"numpy.printoptions": ["precision"]},
    ),
    "seterr": Case(
        'import numpy as np\nnp.set_printoptions(formatter={"int": lambda x: "I"})',
        'np.seterr(divide="raise")',
        """
try:
    np.array([1.0]) / 0
    result = ["warned"]
except FloatingPointError:
    result = ["raised"]
result.append(repr(np.array([1])))  # re-applying errstate must not reset print options
""",
        {"numpy.errstate": ["divide"]},
    ),
    "libraries imported by the step": Case(
        "",
        """
import pandas as pd, sklearn, matplotlib
pd.set_option("display.max_rows", 7)
sklearn.set_config(transform_output="pandas")
matplotlib.rcParams["lines.linewidth"] = 4.5
""",
        """
import pandas as pd, sklearn, matplotlib
result = [pd.get_option("display.max_rows"), sklearn.get_config()["transform_output"],
          matplotlib.rcParams["lines.linewidth"]]
""",
        {"pandas": ["display.max_rows"], "sklearn": ["transform_output"],
         "matplotlib": ["lines.linewidth"]},
    ),
}  # fmt: skip

SCRIPT = """
import json, pickle, cloudpickle
from mlops_nb import global_state
{imports}

def probe():
{probe}
    return repr(result)

{body}
"""
ORIGINAL = """
before = global_state.snapshot()
{step}
recorded = global_state.changes(before, global_state.snapshot())
with open({path!r}, "wb") as file:
    cloudpickle.dump(recorded, file)  # as the store writes it
found = {{k: sorted(v) if k in global_state.OPTION_SETTINGS else None for k, v in recorded.items()}}
print(json.dumps({{"changes": found, "result": probe()}}))
"""
RESTORED = """
default = probe()
with open({path!r}, "rb") as file:
    global_state.apply(pickle.load(file))  # as the store reads it
print(json.dumps({{"default": default, "result": probe()}}))
"""


def script(imports: str, probe: str, body: str) -> str:
    return SCRIPT.format(imports=imports, probe=textwrap.indent(probe, "    "), body=body)


@pytest.mark.parametrize("case", CASES)
def test_a_change_is_recorded_and_reapplied_in_a_fresh_process(case: str, tmp_path: Path) -> None:
    imports, step, probe, expected = CASES[case]
    path = str(tmp_path / "changes.pkl")
    original = python(script(imports, probe, ORIGINAL.format(step=step, path=path)))
    restored = python(script(imports, probe, RESTORED.format(path=path)))

    found = original["changes"]
    if expected is not None:
        checked = {k: v for k, v in found.items() if k in expected or k in OPTION_SETTINGS}
        assert checked == expected
    assert restored["default"] != original["result"], "the probe must see the change"
    assert restored["result"] == original["result"]


def test_style_use_records_only_the_options_it_changes() -> None:
    import matplotlib as mpl
    from matplotlib import style

    before = snapshot()
    with mpl.rc_context():
        style.use("ggplot")
        recorded = changes(before, snapshot())
    assert set(recorded) == {"matplotlib"}
    assert "axes.prop_cycle" in recorded["matplotlib"]
    assert "backend" not in recorded["matplotlib"]
    assert all(before["matplotlib"][k] != v for k, v in recorded["matplotlib"].items())


def test_unchanged_settings_give_no_changes() -> None:
    import matplotlib  # noqa: F401
    import pandas  # noqa: F401
    import sklearn  # noqa: F401

    before = snapshot()
    assert set(before) >= {*OPTION_SETTINGS, "numpy.random", "random", "warnings"}
    _ = [1, 2, 3] * 2  # a step that touches no global setting
    assert changes(before, snapshot()) == {}


def test_each_change_is_found_and_nothing_else() -> None:
    import matplotlib as mpl
    import pandas as pd
    import sklearn

    state = np.random.get_state()
    before = snapshot()
    try:
        with (
            sklearn.config_context(assume_finite=True),
            pd.option_context("display.max_columns", 3),
            mpl.rc_context({"figure.dpi": 50}),
            np.printoptions(linewidth=40),
            np.errstate(over="raise"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("error", ResourceWarning)
            np.random.rand()
            recorded = changes(before, snapshot())
    finally:
        np.random.set_state(state)
    assert {k: v for k, v in recorded.items() if k != "numpy.random"} == {
        "sklearn": {"assume_finite": True},
        "pandas": {"display.max_columns": 3},
        "matplotlib": {"figure.dpi": 50.0},
        "numpy.printoptions": {"linewidth": 40},
        "numpy.errstate": {"over": "raise"},
        "warnings": [("error", None, ResourceWarning, None, 0), *before["warnings"]],
    }
    assert pickle.dumps(recorded["numpy.random"]) != pickle.dumps(before["numpy.random"])


def test_recorded_changes_survive_pickle_and_cloudpickle() -> None:
    import matplotlib as mpl
    import pandas as pd
    from matplotlib import style

    state = np.random.get_state()
    before = snapshot()
    try:
        with (
            pd.option_context("display.float_format", "{:.2f}".format),
            mpl.rc_context(),
            np.printoptions(formatter={"float": lambda x: "F"}),
            warnings.catch_warnings(),
        ):
            style.use("ggplot")  # a cycler among the values
            warnings.filterwarnings("ignore", message="not .* now", module="mlops_nb")
            np.random.seed(3)
            recorded = changes(before, snapshot())
    finally:
        np.random.set_state(state)
    without_lambda = {k: v for k, v in recorded.items() if k != "numpy.printoptions"}
    assert pickle.loads(pickle.dumps(without_lambda)).keys() == without_lambda.keys()
    stored = cloudpickle.dumps(recorded)  # the store writes with cloudpickle, reads with pickle
    for loaded in (cloudpickle.loads(stored), pickle.loads(stored)):
        assert set(loaded) == set(recorded)
        assert pickle.dumps(loaded["numpy.random"]) == pickle.dumps(recorded["numpy.random"])
        assert loaded["warnings"] == recorded["warnings"]
        assert loaded["matplotlib"] == recorded["matplotlib"]
        assert loaded["pandas"]["display.float_format"](1.0) == "1.00"
        assert loaded["numpy.printoptions"]["formatter"]["float"](1.0) == "F"


def test_snapshot_and_friends_import_no_library() -> None:
    imported = python(
        """
        import json, sys
        from mlops_nb import global_state
        before = set(sys.modules)
        snap = global_state.snapshot()
        global_state.changes(snap, global_state.snapshot())
        global_state.settings_hashes(snap)
        global_state.draws_from_global_rng("import numpy as np\\nx = np.random.rand()", {})
        global_state.apply({"random": snap["random"]})
        print(json.dumps([sorted(set(sys.modules) - before), "numpy" in before]))
        """
    )
    assert imported == [[], False]


HASHED = """
import json
import numpy as np, pandas as pd, sklearn, matplotlib.pyplot as plt
from mlops_nb import global_state
at_defaults = global_state.settings_hashes(global_state.snapshot())
pd.options.display.float_format = "{:.2f}".format
plt.style.use("ggplot")
sklearn.set_config(transform_output="pandas")
np.set_printoptions(precision=3)
np.seterr(all="raise")
print(json.dumps([at_defaults, global_state.settings_hashes(global_state.snapshot())]))
"""


def test_settings_hashes_are_equal_in_two_fresh_processes() -> None:
    first = python(HASHED, PYTHONHASHSEED="1")
    second = python(HASHED, PYTHONHASHSEED="2")
    assert first == second
    at_defaults, changed = first
    assert at_defaults == {}
    assert sorted(changed) == sorted(OPTION_SETTINGS)


def test_a_library_at_its_defaults_adds_no_hash_so_importing_it_changes_no_fingerprint() -> None:
    hashes = python(
        """
        import json
        from mlops_nb import global_state
        before = global_state.settings_hashes(global_state.snapshot())
        import numpy, pandas, sklearn, matplotlib.pyplot
        print(json.dumps([before, global_state.settings_hashes(global_state.snapshot())]))
        """
    )
    assert hashes == [{}, {}]


def test_settings_hashes_change_with_the_setting_that_changed() -> None:
    import matplotlib as mpl
    import pandas as pd

    with mpl.rc_context({"lines.linewidth": 3.0}):
        before = settings_hashes(snapshot())
        with pd.option_context("display.max_rows", 5):
            after = settings_hashes(snapshot())
        with pd.option_context("display.float_format", "{:.2f}".format):
            two_digits = settings_hashes(snapshot())
        with pd.option_context("display.float_format", "{:.3f}".format):
            three_digits = settings_hashes(snapshot())
    assert "matplotlib" in before
    assert {k for k in after.keys() | before.keys() if after.get(k) != before.get(k)} == {"pandas"}
    assert two_digits["pandas"] != three_digits["pandas"]


np_module = np
random_module = random


def user_function(n: int) -> int:
    return n


@pytest.mark.parametrize(
    ("code", "namespace", "expected"),
    [
        ("x = np.random.rand(3)", {"np": np_module}, ["numpy.random"]),
        ("import numpy as np\nx = np.random.normal(size=3)", {}, ["numpy.random"]),
        ("import numpy.random\nx = numpy.random.randint(3)", {}, ["numpy.random"]),
        ("import numpy.random as npr\nnpr.shuffle(a)", {}, ["numpy.random"]),
        ("from numpy import random as npr\nx = npr.choice(5)", {}, ["numpy.random"]),
        ("x = npr.permutation(5)", {"npr": np_module.random}, ["numpy.random"]),
        ("x = rand(2)", {"rand": np_module.random.rand}, ["numpy.random"]),
        ("x = sample(2)", {"sample": np_module.random.sample}, ["numpy.random"]),
        ("from numpy.random import randint\nx = randint(3)", {}, ["numpy.random"]),
        ("sizes = list(map(np.random.rand, [1, 2]))", {"np": np_module}, ["numpy.random"]),
        ("def noisy(a):\n    return a + np.random.randn()\ny = noisy(1)", {"np": np_module}, ["numpy.random"]),
        ("x = np.random.rand()\nnp.random.seed(0)", {"np": np_module}, ["numpy.random"]),
        ("if fresh:\n    np.random.seed(0)\nx = np.random.rand()", {"np": np_module}, ["numpy.random"]),
        ("np.random.seed(np.random.randint(9))", {"np": np_module}, ["numpy.random"]),
        ("x = random.random()", {"random": random_module}, ["random"]),
        ("from random import choice\nx = choice([1, 2])", {}, ["random"]),
        ("shuffle(items)", {"shuffle": random_module.shuffle}, ["random"]),
        ("x = random.gauss(0, 1) + np.random.rand()", {"random": random_module, "np": np_module},
         ["numpy.random", "random"]),
        # not draws from a global generator
        ("rng = np.random.default_rng(0)\nx = rng.normal()", {"np": np_module}, []),
        ("x = np.random.default_rng().normal()", {"np": np_module}, []),
        ("rs = np.random.RandomState(0)\nx = rs.rand()", {"np": np_module}, []),
        ("x = rs.rand()", {"rs": np_module.random.RandomState(0)}, []),
        ("x = Random(0).random()", {"Random": random_module.Random}, []),
        ("np.random.seed(0)", {"np": np_module}, []),
        ("state = np.random.get_state()", {"np": np_module}, []),
        ("np.random.seed(0)\nx = np.random.rand(3)", {"np": np_module}, []),
        ("random.seed(1)\nx = random.random()", {"random": random_module}, []),
        ("x = np.random.rand()", {}, []),  # np is not numpy here
        ("x = rand(3)", {"rand": user_function}, []),
        ("random = np.random.default_rng(0)\nx = random.random()",
         {"random": random_module, "np": np_module}, []),
        ("x = np.mean(np.ones(3))", {"np": np_module}, []),
    ],
)  # fmt: skip
def test_draws_from_global_rng(code: str, namespace: dict[str, Any], expected: list[str]) -> None:
    assert draws_from_global_rng(code, namespace) == expected


def test_the_drawing_function_lists_match_the_installed_modules() -> None:
    legacy = {
        name for name in np.random.mtrand.__all__ if not isinstance(getattr(np.random, name), type)
    }
    not_draws = {"seed", "get_state", "set_state", "get_bit_generator", "set_bit_generator"}
    assert NUMPY_DRAWS == legacy - not_draws
    bound = {
        name for name in random.__all__
        if getattr(getattr(random, name), "__self__", None) is random.seed.__self__
    }  # fmt: skip
    assert bound - {"seed", "getstate", "setstate"} <= RANDOM_DRAWS
    assert RANDOM_DRAWS - bound <= {"binomialvariate"}  # new in Python 3.12


def test_snapshot_cost(capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib  # noqa: F401
    import pandas  # noqa: F401
    import sklearn  # noqa: F401

    def per_call(function: Any, *args: Any) -> float:
        """Best CPU microseconds per call: CPU time, as other processes may share the machine."""
        best = float("inf")
        for _ in range(20):
            started = time.process_time()
            for _ in range(50):
                function(*args)
            best = min(best, (time.process_time() - started) / 50)
        return best * 1e6

    snap = snapshot()
    with capsys.disabled():
        print(
            f"\nglobal_state, CPU time with numpy, pandas, sklearn and matplotlib imported: "
            f"snapshot() {per_call(snapshot):.0f} us (runs twice per executed step), "
            f"changes() {per_call(changes, snap, snap):.0f} us, "
            f"settings_hashes() {per_call(settings_hashes, snap):.0f} us, "
            f"of which numpy.random.get_state() {per_call(np.random.get_state):.0f} us"
        )


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(global_state, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


def test_options_that_only_change_speed_are_not_part_of_fingerprints() -> None:
    import pandas as pd

    before = global_state.settings_hashes(global_state.snapshot())
    with pd.option_context("compute.use_numexpr", not pd.get_option("compute.use_numexpr")):
        assert global_state.settings_hashes(global_state.snapshot()) == before
    with pd.option_context("display.max_rows", 3):
        assert "pandas" in global_state.settings_hashes(global_state.snapshot())


def test_choosing_a_matplotlib_backend_is_not_a_setting_that_changes_results() -> None:
    code = (
        "import matplotlib\nfrom mlops_nb import global_state\n"
        "before = global_state.settings_hashes(global_state.snapshot())\n"
        "matplotlib.use('Agg')\nmatplotlib.interactive(True)\n"
        "print(before == global_state.settings_hashes(global_state.snapshot()) == {})"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
