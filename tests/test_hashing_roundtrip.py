"""A value's content hash survives a store round trip and a kernel restart: data, fitted models,
random generators, figures, and functions, classes and instances defined in notebook cells."""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlops_nb import Store
from mlops_nb.hashing import content_hash

REPOSITORY = Path(__file__).resolve().parents[1]

# A notebook cell, as a kernel runs it: from a file name such as /tmp/ipykernel_1234/567.py.
CELL = """
import numpy as np

SCALE = 3
OFFSET = {offset!r}
LABEL = {label!r}


def helper(x):
    return x * SCALE


def score(values, power=2, *, label=LABEL):
    return float(np.sum(np.asarray(values) ** power)) + helper(OFFSET), label


def factorial(n):
    return 1 if n <= 1 else n * factorial(n - 1)


def is_even(n):
    return True if n == 0 else is_odd(n - 1)


def is_odd(n):
    return False if n == 0 else is_even(n - 1)


def make_scaler(factor):
    def scale(x):
        return x * factor + OFFSET
    return scale


scale_by_offset = make_scaler(OFFSET)
shift = lambda x, by=OFFSET: x + by + SCALE


class Point:
    dims = 2

    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm(self):
        return (self.x ** 2 + self.y ** 2) ** 0.5

    @staticmethod
    def origin():
        return Point(0, 0)

    @property
    def scaled(self):
        return helper(self.x)


class Node:
    def __init__(self, name):
        self.name, self.children, self.parent = name, [], None

    def add(self, child):
        child.parent = self
        self.children.append(child)
        return child


from dataclasses import dataclass


@dataclass
class Settings:
    learning_rate: float = 0.1
    depth: int = 3


point = Point(OFFSET, 2)
tree = Node(LABEL)
tree.add(Node("leaf"))
settings = Settings(depth=OFFSET)
"""
CELL_OBJECTS = [
    "helper", "score", "factorial", "is_even", "make_scaler", "scale_by_offset", "shift",
    "Point", "Node", "Settings", "point", "tree", "settings",
]  # fmt: skip


def run_cell(
    filename: str = "/tmp/ipykernel_1234/567.py", offset: int = 1, label: str = "a"
) -> dict[str, Any]:
    """Run the cell like a kernel would, in a namespace whose ``__name__`` is ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    # dont_inherit: the cell must not get this file's `from __future__ import annotations`.
    code = compile(CELL.format(offset=offset, label=label), filename, "exec", dont_inherit=True)
    exec(code, namespace)  # noqa: S102 -- the test's own cell source
    return namespace


def round_trip(value: Any) -> Any:
    """Store a value in a new store and load it back, as a restored step does."""
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        try:
            return store.get(store.put(value).sha256)
        finally:
            store.close()


# -- values of many kinds ---------------------------------------------------------------------------


def training_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    X = rng.rand(40, 3)
    return X, (X[:, 0] + X[:, 1] > 1).astype(int)


def fitted_model(kind: str, seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = {
        "logistic": lambda: LogisticRegression(C=0.5),
        "gradient-boosting": lambda: GradientBoostingClassifier(n_estimators=5, random_state=seed),
        "random-forest": lambda: RandomForestClassifier(n_estimators=4, random_state=seed),
        "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
    }[kind]()
    return model.fit(*training_data(seed))


def random_generator(kind: str, seed: int, draws: int) -> Any:
    generator = {
        "RandomState": lambda: np.random.RandomState(seed),
        "Generator": lambda: np.random.default_rng(seed),
        "PCG64": lambda: np.random.PCG64(seed),
        "random.Random": lambda: random.Random(seed),
    }[kind]()
    for _ in range(draws):  # move the state on, so that not only fresh generators are checked
        (generator.random_raw if kind == "PCG64" else generator.random)()
    return generator


def figure(lines: int) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure()
    axes = fig.subplots()
    for line in range(lines):
        axes.plot([0, 1, 2], [line, line + 1, line * 2], label=f"line {line}")
    if lines:
        axes.legend()
    return fig


def figure_and_axes(lines: int) -> tuple[Any, Any]:
    fig = figure(lines)
    return fig, fig.axes[0]


def cell_object(name: str, offset: int, label: str) -> Any:
    return run_cell(offset=offset, label=label)[name]


scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.complex_numbers()
    | st.text(max_size=10) | st.binary(max_size=10)
)  # fmt: skip
nested = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=4)
    ),
    max_leaves=12,
)
DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
    "float32", "float64", "complex64", "complex128", "datetime64[ns]", "datetime64[D]",
    "timedelta64[s]", "U4", "S4",
]  # fmt: skip
arrays = hnp.arrays(
    dtype=st.sampled_from(DTYPES),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
)
object_arrays = st.lists(st.integers() | st.text(max_size=3) | st.none(), max_size=6).map(
    lambda items: np.array(items, dtype=object)
)

DATES = st.datetimes(
    min_value=pd.Timestamp("1900-01-01").to_pydatetime(),
    max_value=pd.Timestamp("2200-01-01").to_pydatetime(),
)
COLUMNS: dict[str, Callable[[Callable[[Any], list[Any]]], Any]] = {
    # kind: how to build a column from draw(list of n elements)
    "int": lambda draw: np.array(draw(st.integers(-(2**63), 2**63 - 1)), dtype=np.int64),
    "float": lambda draw: np.array(draw(st.floats(allow_nan=False) | st.just(np.nan) | st.just(-np.nan)), "float64"),
    "bool": lambda draw: np.array(draw(st.booleans()), dtype=bool),
    "category": lambda draw: pd.Categorical(draw(st.sampled_from(["low", "mid", "high"]))),
    "Int64": lambda draw: pd.array(draw(st.none() | st.integers(-(2**63), 2**63 - 1)), "Int64"),
    "utc": lambda draw: pd.DatetimeIndex(draw(DATES)).tz_localize("UTC"),
    "paris": lambda draw: (
        pd.DatetimeIndex(draw(DATES)).tz_localize("UTC").tz_convert("Europe/Paris")
    ),
    "naive": lambda draw: pd.DatetimeIndex(draw(DATES)),
    "string": lambda draw: pd.array(draw(st.none() | st.text(max_size=5)), dtype="string"),
    "str": lambda draw: draw(st.text(max_size=5)),  # pandas infers its default string dtype
    "object": lambda draw: np.array(draw(st.integers() | st.text(max_size=3)), dtype=object),
}


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame | pd.Series:
    rows = draw(st.integers(0, 6))
    kinds = draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, max_size=4, unique=True))
    columns = {
        kind: COLUMNS[kind](lambda elements: draw(st.lists(elements, min_size=rows, max_size=rows)))
        for kind in kinds
    }
    frame = pd.DataFrame(columns)
    if draw(st.booleans()):
        frame.index = pd.Index([f"r{row}" for row in range(rows)], name="row")
    return frame[kinds[0]] if draw(st.booleans()) else frame


models = st.builds(
    fitted_model,
    st.sampled_from(["logistic", "gradient-boosting", "random-forest", "pipeline"]),
    st.integers(0, 2),
)
generators = st.builds(
    random_generator,
    st.sampled_from(["RandomState", "Generator", "PCG64", "random.Random"]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 3),
)
cell_objects = st.builds(
    cell_object, st.sampled_from(CELL_OBJECTS), st.integers(-5, 5), st.text(max_size=4)
)
special = models | generators | cell_objects | st.builds(figure, st.integers(0, 2))
values = (
    nested | arrays | object_arrays | frames() | special | st.lists(special, min_size=1, max_size=3)
)


@settings(max_examples=250, deadline=None)
@given(values)
def test_a_value_hashes_the_same_after_a_store_round_trip(value: Any) -> None:
    assert content_hash(round_trip(value)) == content_hash(value)


SPECIAL: dict[str, Callable[[], Any]] = {
    **{f"model-{kind}": (lambda kind=kind: fitted_model(kind, 0)) for kind in
       ["logistic", "gradient-boosting", "random-forest", "pipeline"]},
    **{f"generator-{kind}": (lambda kind=kind: random_generator(kind, 7, 2)) for kind in
       ["RandomState", "Generator", "PCG64", "random.Random"]},
    **{f"cell-{name}": (lambda name=name: cell_object(name, 3, "b")) for name in CELL_OBJECTS},
    "cell-partial": lambda: functools.partial(cell_object("score", 3, "b"), power=3),
    "figure": lambda: figure(2),
    "figure-and-axes": lambda: figure_and_axes(1),
}  # fmt: skip


@pytest.mark.parametrize("name", SPECIAL)
def test_every_kind_of_object_hashes_the_same_after_a_store_round_trip(name: str) -> None:
    value = SPECIAL[name]()
    assert content_hash(round_trip(value)) == content_hash(value)
    assert content_hash(round_trip(round_trip(value))) == content_hash(value)


def test_a_frame_with_a_computed_nan_keeps_its_hash_through_the_store() -> None:
    # Parquet writes every NaN as the standard one, but 0/0 and inf - inf give a negative one:
    # such a frame is stored another way.
    with np.errstate(invalid="ignore"):
        frame = pd.DataFrame({"ratio": np.array([1.0, 0.0]) / np.array([2.0, 0.0])})
    assert content_hash(round_trip(frame)) == content_hash(frame)


# -- another process: a restarted kernel ------------------------------------------------------------

PROCESS = """
import json, sys
import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from mlops_nb import Store
from mlops_nb.hashing import content_hash

CELL = {cell!r}
OBJECTS = {objects!r}
namespace = {{"__name__": "__main__"}}
exec(compile(CELL.format(offset=4, label="x"), sys.argv[1], "exec"), namespace)
rng = np.random.RandomState(0)
X = rng.rand(60, 3)
y = (X[:, 0] > 0.5).astype(int)
values = {{name: namespace[name] for name in OBJECTS}}
values["gradient-boosting"] = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
values["random-state"] = np.random.RandomState(3)
values["generator"] = np.random.default_rng(3)
store = Store(sys.argv[2])
print(json.dumps({{name: [store.put(value).sha256, content_hash(value)] for name, value in values.items()}}))
"""

RESTORE = """
import json, sys
from mlops_nb import Store
from mlops_nb.hashing import content_hash

store = Store(sys.argv[1])
stored = json.loads(sys.argv[2])
print(json.dumps({name: content_hash(store.get(sha256)) for name, (sha256, _) in stored.items()}))
"""


def python(script: str, *arguments: str, seed: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-c", script, *arguments], env={**os.environ, "PYTHONHASHSEED": seed},
        capture_output=True, text=True, check=False, cwd=REPOSITORY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_two_kernels_running_the_same_cell_give_the_same_hashes(tmp_path: Path) -> None:
    script = PROCESS.format(cell=CELL, objects=CELL_OBJECTS)
    first = python(script, "/tmp/ipykernel_1111/12.py", str(tmp_path / "one"), seed="1")
    second = python(script, "/tmp/ipykernel_2222/3.py", str(tmp_path / "two"), seed="2")
    assert {name: digest for name, (_, digest) in first.items()} == {
        name: digest for name, (_, digest) in second.items()
    }
    # The same cell in this process, from yet another file name, agrees with both.
    namespace = run_cell("/tmp/ipykernel_3333/40.py", offset=4, label="x")
    for name in CELL_OBJECTS:
        assert content_hash(namespace[name]) == first[name][1], name


def test_a_restarted_kernel_restores_values_with_the_hashes_they_were_stored_with(
    tmp_path: Path,
) -> None:
    script = PROCESS.format(cell=CELL, objects=CELL_OBJECTS)
    stored = python(script, "/tmp/ipykernel_1111/12.py", str(tmp_path / "store"), seed="1")
    restored = python(RESTORE, str(tmp_path / "store"), json.dumps(stored), seed="3")
    assert restored == {name: digest for name, (_, digest) in stored.items()}


def test_hashing_plain_values_never_imports_matplotlib() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np, pandas as pd
        from mlops_nb.hashing import content_hash
        namespace = {"__name__": "__main__"}
        exec("class Box:\\n    def __init__(self):\\n        self.v = [1]\\nbox = Box()", namespace)
        for value in [1, "a", [np.arange(3)], pd.DataFrame({"a": [1]}), namespace["box"],
                      np.random.RandomState(0), content_hash, np.mean, pd.DataFrame]:
            content_hash(value)
        print(json.dumps("matplotlib" in sys.modules))
        """
    )
    assert python(script, seed="0") is False
