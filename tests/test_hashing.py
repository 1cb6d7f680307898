"""Content hashes: equal content gives an equal hash whatever the identity; any change gives another."""

from __future__ import annotations

import copy
import functools
import importlib
import math
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

from mlops_nb import MlopsNbError, UnhashableValueError
from mlops_nb.hashing import code_dependencies, content_hash, hash_bytes


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3],
            "score": [0.5, 1.5, np.nan],
            "name": ["a", "b", "c"],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
        }
    )


# -- equal content, different identity --------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(frame, id="dataframe"),
        pytest.param(lambda: frame()["score"], id="series"),
        pytest.param(lambda: frame().set_index("name"), id="indexed-frame"),
        pytest.param(lambda: pd.Index(["x", "y"], name="k"), id="index"),
        pytest.param(lambda: np.arange(12.0).reshape(3, 4), id="array"),
        pytest.param(lambda: np.array(["a", "bc"]), id="string-array"),
        pytest.param(lambda: np.array([1, "a", None], dtype=object), id="object-array"),
        pytest.param(lambda: np.float64(2.5), id="numpy-scalar"),
        pytest.param(lambda: [1, [2.5, "x"], {"k": (None, True)}], id="nested-list"),
        pytest.param(lambda: {"a": {"b": [1, 2]}, "c": b"raw"}, id="nested-dict"),
        pytest.param(lambda: {"train": np.arange(3), "test": frame()}, id="dict-of-data"),
    ],
)
def test_equal_content_with_different_identity_hashes_equal(make: Callable[[], Any]) -> None:
    first, second = make(), make()
    assert first is not second
    assert content_hash(first) == content_hash(second)
    assert content_hash(first) == content_hash(copy.deepcopy(first))


def test_a_copied_frame_hashes_equal() -> None:
    df = frame()
    assert content_hash(df) == content_hash(df.copy())
    assert content_hash(df) == content_hash(df.copy(deep=False))


def test_sets_hash_equal_whatever_the_insertion_order() -> None:
    # 1 and 9 collide in a small set table, so these two sets iterate in different orders.
    assert list({1, 9}) != list({9, 1})
    assert content_hash({1, 9}) == content_hash({9, 1})
    words = [f"w{i}" for i in range(200)]
    backwards: set[str] = set()
    for word in reversed(words):
        backwards.add(word)
    assert content_hash(set(words)) == content_hash(backwards)
    assert content_hash(frozenset(words)) == content_hash(frozenset(backwards))
    assert content_hash([{"x", "y"}]) == content_hash([{"y", "x"}])


def test_hash_bytes_is_stable_hex() -> None:
    digest = hash_bytes(b"abc")
    assert digest == hash_bytes(memoryview(b"abc"))
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert digest != hash_bytes(b"abd")


# -- any change gives another hash ------------------------------------------------------------------


def set_value(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[1, "id"] = 20
    return df


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(set_value, id="one-value"),
        pytest.param(lambda df: df.assign(name=["a", "b", "C"]), id="one-string"),
        pytest.param(lambda df: df.assign(score=[0.5, 1.5, 0.0]), id="nan-to-zero"),
        pytest.param(lambda df: df.astype({"id": "int32"}), id="dtype"),
        pytest.param(lambda df: df.astype({"id": "float64"}), id="int-to-float"),
        pytest.param(lambda df: df.astype({"id": "Int64"}), id="nullable-dtype"),
        pytest.param(lambda df: df.rename(columns={"id": "ID"}), id="column-name"),
        pytest.param(lambda df: df[["score", "id", "name", "when"]], id="column-order"),
        pytest.param(lambda df: df.set_axis([10, 11, 12]), id="index-values"),
        pytest.param(lambda df: df.rename_axis("row"), id="index-name"),
        pytest.param(lambda df: df.iloc[[1, 0, 2]], id="row-order-with-index"),
        pytest.param(lambda df: df.iloc[[1, 0, 2]].reset_index(drop=True), id="row-order"),
        pytest.param(lambda df: df.iloc[:2], id="fewer-rows"),
        pytest.param(lambda df: df.drop(columns="when"), id="fewer-columns"),
        pytest.param(lambda df: df.assign(when=df["when"] + pd.Timedelta("1s")), id="one-second"),
    ],
)
def test_any_change_to_a_frame_changes_its_hash(
    change: Callable[[pd.DataFrame], pd.DataFrame],
) -> None:
    assert content_hash(change(frame())) != content_hash(frame())


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ([1, 2, 3], [1, 2, 4]),
        ([1, 2], [2, 1]),
        ([1, 2], (1, 2)),
        (1, True),
        (1, 1.0),
        (1, "1"),
        (0.0, -0.0),
        ("a", b"a"),
        (None, "None"),
        ({"a": 1}, {"a": 2}),
        ({"a": 1}, {"b": 1}),
        ({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}),
        ({1, 2}, {1, 3}),
        ({1, 2}, [1, 2]),
        ([[1], [2]], [[1, 2]]),
        (["ab", "c"], ["a", "bc"]),
        (np.int64(1), np.int32(1)),
        (np.array([1, 2, 3]), np.array([1, 2, 4])),
        (np.array([1, 2, 3]), np.array([1, 2, 3], dtype=np.int32)),
        (np.arange(6).reshape(2, 3), np.arange(6).reshape(3, 2)),
        (np.arange(6), np.arange(6).view(np.float64)),
        (np.array(["a", "b"]), np.array(["a", "c"])),
        (np.array([1, "a"], dtype=object), np.array([1, "b"], dtype=object)),
        (pd.Series([1, 2], name="a"), pd.Series([1, 2], name="b")),
        (pd.Series([1, 2]), pd.Series([1, 2], index=[1, 0])),
        (pd.Index([1, 2]), pd.Index([1, 2], name="k")),
    ],
    ids=repr,
)
def test_different_values_hash_differently(first: Any, second: Any) -> None:
    assert content_hash(first) != content_hash(second)


# -- numpy layouts -----------------------------------------------------------------------------------


def test_non_contiguous_arrays_hash_by_their_values() -> None:
    base = np.arange(24, dtype=np.int64).reshape(4, 6)
    strided = base[:, ::2]
    assert not strided.flags.c_contiguous
    assert content_hash(strided) == content_hash(np.ascontiguousarray(strided))
    assert content_hash(base.T) == content_hash(np.ascontiguousarray(base.T))
    assert content_hash(np.asfortranarray(base)) == content_hash(base)
    assert content_hash(base[::-1]) == content_hash(base[::-1].copy())
    assert content_hash(strided) != content_hash(base[:, 1::2])
    assert content_hash(base.T) != content_hash(base)


def test_zero_dimensional_and_empty_arrays() -> None:
    assert content_hash(np.array(3.0)) == content_hash(np.array(3.0))
    assert content_hash(np.array(3.0)) != content_hash(np.array([3.0]))
    assert content_hash(np.empty((0, 3))) != content_hash(np.empty((3, 0)))


def test_structured_arrays_hash_by_field_values_not_padding_bytes() -> None:
    aligned = np.dtype([("flag", "u1"), ("value", "f8")], align=True)  # 7 padding bytes per row
    clean = np.zeros(2, dtype=aligned)
    clean["value"] = [1.5, 2.5]
    dirty = clean.copy()
    dirty.view(np.uint8).reshape(2, aligned.itemsize)[:, 1:8] = 0xFF  # same fields, other padding
    assert (clean == dirty).all()
    assert content_hash(clean) == content_hash(dirty)


def test_datetime_arrays() -> None:
    days = np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]")
    assert content_hash(days) == content_hash(days.copy())
    assert content_hash(days) != content_hash(days.astype("datetime64[s]"))
    assert content_hash(days) != content_hash(days + 1)


# -- pandas column kinds -----------------------------------------------------------------------------

COLUMNS: dict[str, tuple[Callable[[], pd.Series], Callable[[], pd.Series]]] = {
    # kind: (make the column, make the same column with one value changed)
    "datetime": (
        lambda: pd.Series(pd.to_datetime(["2024-03-01 10:00", "2024-03-02 11:00"])),
        lambda: pd.Series(pd.to_datetime(["2024-03-01 10:00", "2024-03-02 11:01"])),
    ),
    "tz-aware": (
        lambda: pd.Series(pd.date_range("2024-03-31", periods=3, freq="h", tz="Europe/Paris")),
        lambda: pd.Series(
            pd.date_range("2024-03-31 01:00", periods=3, freq="h", tz="Europe/Paris")
        ),
    ),
    "timedelta": (
        lambda: pd.Series(pd.to_timedelta([1, 2], unit="s")),
        lambda: pd.Series(pd.to_timedelta([1, 3], unit="s")),
    ),
    "categorical": (
        lambda: pd.Series(pd.Categorical(["low", "high", "low"])),
        lambda: pd.Series(pd.Categorical(["low", "high", "high"])),
    ),
    "nullable-int": (
        lambda: pd.Series(pd.array([1, None, 3], dtype="Int64")),
        lambda: pd.Series(pd.array([1, 2, 3], dtype="Int64")),
    ),
    "nullable-bool": (
        lambda: pd.Series(pd.array([True, None], dtype="boolean")),
        lambda: pd.Series(pd.array([True, False], dtype="boolean")),
    ),
    "string": (
        lambda: pd.Series(["x", None, "z"], dtype="string"),
        lambda: pd.Series(["x", "", "z"], dtype="string"),
    ),
    "str": (lambda: pd.Series(["x", "y"]), lambda: pd.Series(["x", "Y"])),
    "object-strings": (
        lambda: pd.Series(["x", "y"], dtype=object),
        lambda: pd.Series(["x", "yy"], dtype=object),
    ),
    "period": (
        lambda: pd.Series(pd.period_range("2024-01", periods=2, freq="M")),
        lambda: pd.Series(pd.period_range("2024-02", periods=2, freq="M")),
    ),
}


@pytest.mark.parametrize("kind", COLUMNS)
def test_column_kinds_hash_equal_for_copies_and_differ_for_a_change(kind: str) -> None:
    make, make_changed = COLUMNS[kind]
    column = make()
    assert content_hash(column) == content_hash(make())
    assert content_hash(column.to_frame("c")) == content_hash(make().to_frame("c").copy())
    assert content_hash(column) != content_hash(make_changed())
    assert content_hash(column.to_frame("c")) != content_hash(make_changed().to_frame("c"))


def test_tz_aware_columns_hash_their_time_zone() -> None:
    utc = pd.Series(pd.date_range("2024-01-01", periods=2, tz="UTC"))
    assert content_hash(utc) != content_hash(utc.dt.tz_convert("Europe/Paris"))
    assert content_hash(utc) != content_hash(utc.dt.tz_localize(None))


def test_categoricals_with_other_categories_hash_differently() -> None:
    # The same codes [0, 1, 0] stand for different values.
    first = pd.DataFrame({"c": pd.Categorical(["a", "b", "a"])})
    second = pd.DataFrame({"c": pd.Categorical(["x", "y", "x"])})
    assert content_hash(first) != content_hash(second)


def test_categorical_dtype_changes_change_the_hash() -> None:
    plain = pd.Series(pd.Categorical(["a", "b"]))
    assert content_hash(plain) != content_hash(pd.Series(pd.Categorical(["a", "b"], ordered=True)))
    wider = pd.Series(pd.Categorical(["a", "b"], categories=["a", "b", "c"]))
    assert content_hash(plain) != content_hash(wider)


def test_object_columns_tell_numbers_from_their_text() -> None:
    assert content_hash(pd.Series([1, 2], dtype=object)) != content_hash(
        pd.Series(["1", "2"], dtype=object)
    )
    assert content_hash(pd.DataFrame({"v": [1, "a"]})) != content_hash(
        pd.DataFrame({"v": ["1", "a"]})
    )


def test_frames_with_list_and_dict_cells_can_be_hashed() -> None:
    tokens = pd.DataFrame({"doc": [1, 2], "tokens": [["a", "b"], ["c"]], "meta": [{"k": 1}, {}]})
    assert content_hash(tokens) == content_hash(tokens.copy())
    other = tokens.assign(tokens=[["a", "b"], ["c", "d"]])
    assert content_hash(tokens) != content_hash(other)


def test_multi_index_frames() -> None:
    index = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["key", "n"])
    df = pd.DataFrame({"v": [1.0, 2.0]}, index=index)
    assert content_hash(df) == content_hash(df.copy())
    assert content_hash(df) != content_hash(df.set_axis(index.set_levels([1, 3], level="n")))
    assert content_hash(df) != content_hash(df.rename_axis(["key", "m"]))


def test_frames_hash_by_content_not_by_block_layout() -> None:
    df = frame()
    rebuilt = pd.DataFrame({name: df[name].to_numpy().copy() for name in df.columns})
    assert content_hash(df) == content_hash(rebuilt)


# -- hypothesis: generated frames ---------------------------------------------------------------------

FRAME_COLUMNS = [
    hpd.column("i", dtype=np.int64),
    hpd.column("f", dtype=np.float64),
    hpd.column("b", dtype=bool),
    hpd.column("t", dtype="datetime64[ns]"),
    hpd.column("s", elements=st.text(max_size=5), dtype=object),
]
frames = hpd.data_frames(FRAME_COLUMNS, index=hpd.range_indexes(min_size=1, max_size=15))


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return bool(a == b)


@settings(max_examples=80, deadline=None)
@given(frames, st.data())
def test_generated_frames_hash_equal_to_their_copy_and_change_with_one_cell(
    df: pd.DataFrame, data: st.DataObject
) -> None:
    assert content_hash(df) == content_hash(df.copy())
    assert content_hash(df) == content_hash(df.copy(deep=False))
    row = data.draw(st.integers(0, len(df) - 1))
    position = data.draw(st.integers(0, df.shape[1] - 1))
    old = df.iat[row, position]
    strategy = {
        "i": st.integers(-(2**63), 2**63 - 1),
        "f": st.floats(),
        "b": st.booleans(),
        "t": st.datetimes(min_value=datetime(1700, 1, 1), max_value=datetime(2200, 1, 1)),
        "s": st.text(max_size=5),
    }[df.columns[position]]
    plain = old.item() if isinstance(old, np.generic) else old
    new = data.draw(strategy.filter(lambda v: not same(v, plain)))
    edited = df.copy()
    edited.iat[row, position] = new
    assert edited.dtypes.equals(df.dtypes)
    assert content_hash(edited) != content_hash(df)


# -- stable across processes (fingerprints survive a kernel restart) ------------------------------------

STABLE_VALUES = """
import numpy as np, pandas as pd
values = {
    "text": "héllo",
    "nested": {"a": [1, 2.5, None], "b": ("x", b"y")},
    "words": {f"w{i}" for i in range(50)},
    "frame": pd.DataFrame({"s": ["a", "b"], "o": pd.Series(["c", "d"], dtype=object),
                           "c": pd.Categorical(["u", "v"]), "f": [1.0, 2.0]}),
    "array": np.arange(10).reshape(2, 5),
}
"""


def hashes_in_subprocess(seed: str) -> str:
    script = STABLE_VALUES + textwrap.dedent(
        """
        from mlops_nb.hashing import content_hash
        print(sorted((k, content_hash(v)) for k, v in values.items()))
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    return result.stdout


def test_hashes_are_the_same_in_another_process() -> None:
    assert hashes_in_subprocess("1") == hashes_in_subprocess("2")


# -- unhashable values ----------------------------------------------------------------------------------


@pytest.fixture
def open_files(tmp_path: Path) -> Iterator[dict[str, Any]]:
    path = tmp_path / "data.txt"
    path.write_text("a,b\n1,2\n")
    with open(path) as text, open(tmp_path / "out.txt", "w") as out, open(path, "rb") as binary:
        yield {"text-read": text, "text-write": out, "binary": binary}


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        pytest.param(lambda files: (x for x in range(3)), "generator", id="generator"),
        pytest.param(lambda files: threading.Lock(), "lock", id="lock"),
        pytest.param(lambda files: files["binary"], "BufferedReader", id="binary-file"),
        pytest.param(lambda files: files["text-write"], "TextIOWrapper", id="file-for-writing"),
        pytest.param(lambda files: files["text-read"], "TextIOWrapper", id="file-for-reading"),
        pytest.param(lambda files: [1, {"lock": threading.Lock()}], "lock", id="nested-lock"),
    ],
)
def test_unhashable_values_raise_a_helpful_error(
    open_files: dict[str, Any], make: Callable[[dict[str, Any]], Any], type_name: str
) -> None:
    with pytest.raises(
        UnhashableValueError,
        match=rf"^Cannot hash a {type_name} value \(.+\)\. Steps fingerprint their inputs by "
        r"content: convert it to data \(a list, DataFrame, array\.\.\.\) before passing it "
        r"between steps, or keep it inside one step\.$",
    ) as caught:
        content_hash(make(open_files))
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, MlopsNbError)


# -- estimators --------------------------------------------------------------------------------------


def test_estimators_hash_by_parameters_and_fitted_state() -> None:
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    assert content_hash(LogisticRegression(C=0.5)) == content_hash(LogisticRegression(C=0.5))
    assert content_hash(LogisticRegression(C=0.5)) != content_hash(LogisticRegression(C=1.0))
    fitted = LogisticRegression().fit(X, y)
    assert content_hash(fitted) == content_hash(LogisticRegression().fit(X, y))
    assert content_hash(fitted) != content_hash(LogisticRegression())
    assert content_hash(fitted) != content_hash(LogisticRegression().fit(X, 1 - y))


# -- code: functions and classes from notebook cells --------------------------------------------------


def define(source: str, filename: str = "/tmp/ipykernel_1234/1.py", **names: Any) -> dict[str, Any]:
    """Run a cell's source as a kernel would: from a kernel's file name, in ``__main__``."""
    namespace = {"__name__": "__main__", **names}
    # dont_inherit: the cell must not get this file's `from __future__ import annotations`.
    code = compile(textwrap.dedent(source), filename, "exec", dont_inherit=True)
    exec(code, namespace)  # noqa: S102 -- the test's own cell source
    return namespace


TRAIN = """
import numpy as np

RATE = 0.5


def train(values, steps=10, *, tol=1e-3):
    total = np.mean(values) * RATE
    return total * steps + tol
"""


@pytest.mark.parametrize(
    "edited",
    [
        pytest.param("\n\n" + TRAIN, id="blank-lines-above"),
        pytest.param("# load the data first\n" + TRAIN, id="comment-above"),
        pytest.param(TRAIN.replace("    total =", "    # the mean, scaled\n\n    total ="), id="comment-inside"),
        pytest.param(TRAIN.replace("*, tol", "*,\n          tol"), id="wrapped-signature"),
    ],
)  # fmt: skip
def test_comments_blank_lines_and_file_names_do_not_change_a_functions_hash(edited: str) -> None:
    original = define(TRAIN, "/tmp/ipykernel_1111/5.py")["train"]
    moved = define(edited, "/tmp/ipykernel_2222/77.py")["train"]
    positions = [(f.__code__.co_firstlineno, f.__code__.co_linetable) for f in (original, moved)]
    assert positions[0] != positions[1]  # the lines moved, which the hash must not see
    assert content_hash(moved) == content_hash(original)


@pytest.mark.parametrize(
    "edited",
    [
        pytest.param(TRAIN.replace("* steps", "* steps * 2"), id="body"),
        pytest.param(TRAIN.replace("steps=10", "steps=20"), id="default"),
        pytest.param(TRAIN.replace("tol=1e-3", "tol=1e-4"), id="keyword-default"),
        pytest.param(TRAIN.replace("RATE = 0.5", "RATE = 0.25"), id="global-it-reads"),
        pytest.param(TRAIN.replace("np.mean", "np.median"), id="library-function"),
        pytest.param(TRAIN.replace("values, steps", "values, n, steps"), id="signature"),
        pytest.param(TRAIN.replace("total = ", "total_ = ").replace("total *", "total_ *"), id="local-name"),
        pytest.param(TRAIN.replace("def train", "def fit"), id="name"),
    ],
)  # fmt: skip
def test_any_change_to_what_a_function_computes_changes_its_hash(edited: str) -> None:
    original = define(TRAIN)["train"]
    changed = define(edited)["train" if "def train" in edited else "fit"]
    assert content_hash(changed) != content_hash(original)


def test_a_functions_hash_follows_the_current_value_of_the_globals_it_reads() -> None:
    namespace = define(TRAIN)
    before = content_hash(namespace["train"])
    namespace["RATE"] = 0.75  # a later cell rebinds it: the same function now computes otherwise
    assert content_hash(namespace["train"]) != before
    namespace["RATE"] = 0.5
    assert content_hash(namespace["train"]) == before
    namespace["UNUSED"] = 1  # a global it does not read
    assert content_hash(namespace["train"]) == before


def test_functions_it_calls_count_too_and_builtins_only_when_shadowed() -> None:
    source = """
    def clean(text):
        return text.strip().lower()

    def tokens(text):
        return len(clean(text).split())
    """
    original = define(source)["tokens"]
    assert content_hash(define(source.replace(".lower()", ".upper()"))["tokens"]) != content_hash(
        original
    )
    shadowed = define(textwrap.dedent(source) + "\ndef len(items):\n    return 0\n")["tokens"]
    assert content_hash(shadowed) != content_hash(original)


def test_closures_nested_functions_and_lambdas_hash_by_code_and_captured_values() -> None:
    source = """
    def make_scaler(factor):
        def scale(x):
            return x * factor
        return scale

    twice, thrice, twice_again = make_scaler(2), make_scaler(3), make_scaler(2)
    add = lambda x, by=1: x + by
    add_two = lambda x, by=2: x + by
    """
    namespace = define(source)
    assert content_hash(namespace["twice"]) == content_hash(namespace["twice_again"])
    assert content_hash(namespace["twice"]) != content_hash(namespace["thrice"])
    assert content_hash(namespace["add"]) != content_hash(namespace["add_two"])
    inner_changed = define(source.replace("return x * factor", "return x * factor + 1"))
    assert content_hash(inner_changed["make_scaler"]) != content_hash(namespace["make_scaler"])
    add_three = functools.partial(namespace["add"], by=3)
    assert content_hash(add_three) == content_hash(functools.partial(define(source)["add"], by=3))
    assert content_hash(add_three) != content_hash(functools.partial(namespace["add"], by=4))


def test_recursive_and_mutually_recursive_functions_hash_without_looping() -> None:
    source = """
    def factorial(n):
        return 1 if n <= 1 else n * factorial(n - 1)

    def is_even(n):
        return True if n == 0 else is_odd(n - 1)

    def is_odd(n):
        return False if n == 0 else is_even(n - 1)

    def walk(n):
        def step(k):
            return k if k <= 0 else step(k - 1)
        return step(n)
    """
    namespace = define(source)
    digests = {
        name: content_hash(namespace[name]) for name in ["factorial", "is_even", "is_odd", "walk"]
    }
    assert len(set(digests.values())) == 4
    assert content_hash(define(source)["is_even"]) == digests["is_even"]
    edited = define(source.replace("return False if n == 0", "return n < 0 if n == 0"))
    assert content_hash(edited["is_even"]) != digests["is_even"]  # through the function it calls


def test_replacing_a_functions_code_in_place_changes_its_hash() -> None:
    # What IPython's %autoreload does to functions defined in a module that it reloads.
    namespace = define("def f(x):\n    return x + 1\n\ndef g(x):\n    return x + 2\n")
    before = content_hash(namespace["f"])
    namespace["f"].__code__ = namespace["g"].__code__.replace(co_name="f", co_qualname="f")
    assert content_hash(namespace["f"]) != before


CLASSES = """
import numpy as np
from dataclasses import dataclass

WEIGHT = 2.0


class Scaler:
    factor = 2

    def __init__(self, offset=0.0):
        self.offset = offset

    def transform(self, values):
        return np.asarray(values) * self.factor * WEIGHT + self.offset

    @staticmethod
    def name():
        return "scaler"

    @property
    def double(self):
        return Scaler(self.offset * 2)


class Pipeline(Scaler):
    pass


@dataclass
class Config:
    rate: float = 0.1
    depth: int = 3


class Node:
    def __init__(self, name):
        self.name, self.children, self.parent = name, [], None

    def add(self, child):
        child.parent = self
        self.children.append(child)
        return child
"""


@pytest.mark.parametrize(
    ("edited", "name"),
    [
        pytest.param(CLASSES.replace("* self.factor *", "* self.factor ** 2 *"), "Scaler", id="method"),
        pytest.param(CLASSES.replace("factor = 2", "factor = 3"), "Scaler", id="class-attribute"),
        pytest.param(CLASSES.replace('return "scaler"', 'return "other"'), "Scaler", id="staticmethod"),
        pytest.param(CLASSES.replace("offset * 2", "offset * 3"), "Scaler", id="property"),
        pytest.param(CLASSES.replace("WEIGHT = 2.0", "WEIGHT = 3.0"), "Scaler", id="global-a-method-reads"),
        pytest.param(CLASSES.replace("offset=0.0", "offset=1.0"), "Scaler", id="method-default"),
        pytest.param(CLASSES.replace("class Pipeline(Scaler)", "class Pipeline(object)"), "Pipeline", id="base"),
        pytest.param(CLASSES.replace("* self.factor *", "* self.factor ** 2 *"), "Pipeline", id="base-method"),
        pytest.param(CLASSES.replace("depth: int = 3", "depth: int = 4"), "Config", id="dataclass-field"),
    ],
)  # fmt: skip
def test_any_change_to_a_class_changes_its_hash_and_its_instances_hash(
    edited: str, name: str
) -> None:
    original, changed = define(CLASSES)[name], define(edited)[name]
    assert content_hash(changed) != content_hash(original)
    assert content_hash(changed()) != content_hash(original())


def test_a_class_and_its_instances_hash_the_same_from_another_cell_file() -> None:
    first = define(CLASSES, "/tmp/ipykernel_1/2.py")
    second = define("\n# a comment\n" + CLASSES, "/tmp/ipykernel_3/4.py")
    for name in ["Scaler", "Pipeline", "Config", "Node"]:
        assert content_hash(first[name]) == content_hash(second[name])
    assert content_hash(first["Scaler"](1.5)) == content_hash(second["Scaler"](1.5))
    assert content_hash(first["Config"](depth=5)) == content_hash(second["Config"](depth=5))


def test_instances_hash_by_their_state_even_when_it_points_back_to_them() -> None:
    namespace = define(CLASSES)
    Node, Scaler = namespace["Node"], namespace["Scaler"]
    assert content_hash(Scaler(1.0)) != content_hash(Scaler(2.0))
    root = Node("root")
    root.add(Node("leaf"))
    same = Node("root")
    same.add(Node("leaf"))
    assert content_hash(root) == content_hash(same)
    same.children[0].name = "other"
    assert content_hash(root) != content_hash(same)
    records = [namespace["Config"](rate=i / 10) for i in range(1000)]
    assert content_hash(records) == content_hash(copy.deepcopy(records))


def test_a_class_holding_an_unhashable_value_still_hashes_by_its_code() -> None:
    namespace = define(
        "import threading\nclass Cache:\n    lock = threading.Lock()\n    def get(self):\n        return 1\n"
    )
    assert content_hash(namespace["Cache"]) == content_hash(namespace["Cache"])
    assert content_hash(namespace["Cache"]()) == content_hash(namespace["Cache"]())


def test_code_and_generators_are_never_hashed_by_their_pickle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cloudpickle
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import accuracy_score

    model = GradientBoostingClassifier(n_estimators=3, random_state=0)
    values = [
        define(TRAIN)["train"],
        functools.partial(define(TRAIN)["train"], steps=3),
        define(CLASSES)["Scaler"],
        define(CLASSES)["Scaler"](1.0),
        accuracy_score,
        pd.DataFrame,
        np.mean,
        pd,
        np.random.RandomState(0),
        np.random.default_rng(0),
        np.random.PCG64(0),
        random.Random(0),
        model.fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]),
    ]
    expected = [content_hash(value) for value in values]

    def refuse(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("hashed by pickle")

    monkeypatch.setattr(cloudpickle, "dumps", refuse)
    assert [content_hash(value) for value in values] == expected


def test_library_objects_hash_by_name_and_version() -> None:
    import sklearn
    from sklearn.metrics import accuracy_score, f1_score

    assert content_hash(accuracy_score) == content_hash(accuracy_score)
    assert content_hash(accuracy_score) != content_hash(f1_score)
    assert content_hash(np.mean) != content_hash(np.median)
    assert content_hash(pd.DataFrame) != content_hash(pd.Series)
    assert content_hash(np) != content_hash(pd)
    assert code_dependencies(accuracy_score) == {"library scikit-learn": sklearn.__version__}
    assert code_dependencies(pd.DataFrame) == {"library pandas": pd.__version__}
    assert code_dependencies(np) == {"library numpy": np.__version__}
    assert code_dependencies(textwrap) == {}  # the standard library is not a distribution


def test_mlops_nb_itself_is_a_library_even_when_installed_in_editable_mode() -> None:
    import importlib.metadata

    import mlops_nb.hashing

    expected = {"library mlops_nb": importlib.metadata.version("mlops_nb")}
    assert code_dependencies(mlops_nb.hashing.content_hash) == expected
    assert code_dependencies(mlops_nb.hashing) == expected


def test_random_generators_hash_by_their_state() -> None:
    for make in [np.random.RandomState, np.random.default_rng, np.random.PCG64, random.Random]:
        assert content_hash(make(1)) == content_hash(make(1)), make
        assert content_hash(make(1)) != content_hash(make(2)), make
        moved = make(1)
        (moved.random_raw if isinstance(moved, np.random.PCG64) else moved.random)()
        assert content_hash(moved) != content_hash(make(1)), make


def test_gradient_boosting_models_hash_equal_when_fitted_equally() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = np.random.RandomState(0).rand(50, 3), np.arange(50) % 2

    def fit(seed: int) -> Any:
        return GradientBoostingClassifier(n_estimators=5, subsample=0.8, random_state=seed).fit(
            X, y
        )

    assert content_hash(fit(0)) == content_hash(fit(0))
    assert content_hash(fit(0)) != content_hash(fit(1))


def test_figures_are_display_only_and_hash_by_their_type() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    first, second = Figure(), Figure()
    first.subplots().plot([1, 2, 3])
    second.subplots().bar(["a"], [5])
    assert content_hash(first) == content_hash(second)
    assert content_hash(first.axes[0]) == content_hash(second.axes[0])
    assert content_hash(first) != content_hash(first.axes[0])


# -- code: the user's own modules ---------------------------------------------------------------------


class Modules:
    """Writes modules into a folder on sys.path and imports them, as a user's project does."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.root, self.prefix = root, prefix

    def write(self, name: str, source: str) -> Path:
        path = self.root / f"{self.prefix}{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).replace("PREFIX_", self.prefix))
        importlib.invalidate_caches()
        return path

    def load(self, name: str) -> Any:
        return importlib.import_module(f"{self.prefix}{name}".replace("/", "."))


@pytest.fixture
def modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Modules]:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a stale .pyc must never be reloaded
    prefix = f"user_{request.node.name.split('[')[0][-20:]}_{os.getpid()}_"
    yield Modules(tmp_path, prefix)
    for name in [name for name in sys.modules if name.startswith(prefix)]:
        del sys.modules[name]


FEATURES = """
import numpy as np

THRESHOLD = 0.5
COLUMNS = ["age", "income"]


def build(values):
    return np.asarray(values) > THRESHOLD


class Scaler:
    def __init__(self, factor=2):
        self.factor = factor

    def transform(self, values):
        return np.asarray(values) * self.factor
"""


def step_using(module: Any) -> Any:
    """A function from a notebook cell that calls into a user module."""
    return define("def step(values):\n    return features.build(values)\n", features=module)["step"]


def test_a_user_module_counts_once_reloaded_never_from_its_file_alone(modules: Modules) -> None:
    path = modules.write("features", FEATURES)
    features = modules.load("features")
    step = step_using(features)
    before = content_hash(step)
    path.write_text(textwrap.dedent(FEATURES).replace("> THRESHOLD", ">= THRESHOLD"))
    # Edited but not reloaded: the kernel still runs the old code, so nothing changed yet.
    assert content_hash(step) == before
    assert content_hash(features) == content_hash(features)
    importlib.reload(features)
    after = content_hash(step)
    assert after != before
    path.write_text(textwrap.dedent(FEATURES))
    importlib.reload(features)
    assert content_hash(step) == before  # back to the same code: the same hash


@pytest.mark.parametrize(
    "edited",
    [
        pytest.param(FEATURES.replace("THRESHOLD = 0.5", "THRESHOLD = 0.6"), id="constant"),
        pytest.param(FEATURES.replace('"income"]', '"income", "city"]'), id="list"),
        pytest.param(FEATURES.replace("* self.factor", "* self.factor + 1"), id="method-of-a-class"),
        pytest.param(FEATURES.replace("factor=2", "factor=3"), id="method-default"),
        pytest.param(FEATURES + "\ndef extra():\n    return 1\n", id="new-function"),
    ],
)  # fmt: skip
def test_any_change_to_a_reloaded_user_module_changes_the_hash(
    modules: Modules, edited: str
) -> None:
    path = modules.write("features", FEATURES)
    features = modules.load("features")
    before = {
        "step": content_hash(step_using(features)),
        "instance": content_hash(features.Scaler()),
    }
    path.write_text(textwrap.dedent(edited))
    importlib.reload(features)
    assert content_hash(step_using(features)) != before["step"]
    assert content_hash(features.Scaler()) != before["instance"]


def test_changing_a_loaded_module_in_memory_changes_the_hash(modules: Modules) -> None:
    modules.write("features", FEATURES)
    features = modules.load("features")
    step = step_using(features)
    before = content_hash(step)
    features.COLUMNS.append("city")  # in place: the module holds the same list
    assert content_hash(step) != before
    features.COLUMNS.pop()
    assert content_hash(step) == before
    features.THRESHOLD = 0.9
    assert content_hash(step) != before
    features.THRESHOLD = 0.5
    features.Scaler.transform = lambda self, values: values  # a patched method
    assert content_hash(step) != before


LAYERS = {
    # cleaning and loading import each other: a cycle.
    "cleaning": "import PREFIX_loading\n\ndef clean(rows):\n    return [r for r in rows if r]\n",
    "loading": "import PREFIX_cleaning\n\ndef load(rows):\n    return PREFIX_cleaning.clean(rows)\n",
    "pipeline": "from PREFIX_loading import load\n\ndef run(rows):\n    return load(rows)\n",
}


def test_user_modules_are_followed_transitively_and_cycles_end(modules: Modules) -> None:
    paths = {name: modules.write(name, source) for name, source in LAYERS.items()}
    pipeline = modules.load("pipeline")
    step = define("def step(rows):\n    return pipeline.run(rows)\n", pipeline=pipeline)["step"]
    dependencies = code_dependencies(step)
    assert sorted(dependencies) == sorted(
        f"module {modules.prefix}{name} ({path})" for name, path in paths.items()
    )
    before = content_hash(step)
    modules.write("cleaning", LAYERS["cleaning"].replace("if r]", "if r is not None]"))
    importlib.reload(sys.modules[f"{modules.prefix}cleaning"])  # two imports away from the step
    assert content_hash(step) != before
    changed = code_dependencies(step)
    assert [name for name in dependencies if changed[name] != dependencies[name]] == [
        f"module {modules.prefix}cleaning ({paths['cleaning']})"
    ]


def test_code_dependencies_names_user_modules_and_libraries(modules: Modules) -> None:
    import sklearn

    path = modules.write(
        "features", FEATURES + "\nfrom sklearn.preprocessing import StandardScaler\n"
    )
    features = modules.load("features")
    source = """
    from sklearn.metrics import accuracy_score
    import pandas as pd

    def evaluate(frame):
        return accuracy_score(frame["y"], features.build(frame["x"])), pd.__version__
    """
    evaluate = define(source, features=features)["evaluate"]
    dependencies = code_dependencies(evaluate)
    assert dependencies == {
        f"module {features.__name__} ({path})": dependencies[
            f"module {features.__name__} ({path})"
        ],
        "library numpy": np.__version__,
        "library pandas": pd.__version__,
        "library scikit-learn": sklearn.__version__,
    }
    assert code_dependencies(features) == {
        f"module {features.__name__} ({path})": dependencies[
            f"module {features.__name__} ({path})"
        ],
        "library numpy": np.__version__,
        "library scikit-learn": sklearn.__version__,
    }
    assert code_dependencies(features.Scaler) == code_dependencies(features)


def test_a_user_module_holding_unhashable_values_still_hashes(modules: Modules) -> None:
    modules.write(
        "state",
        "import threading\nLOCK = threading.Lock()\nLOG = open(__file__)\n\ndef f():\n    return 1\n",
    )
    state = modules.load("state")
    try:
        assert content_hash(state) == content_hash(state)
        assert content_hash(state.f) == content_hash(state.f)
    finally:
        state.LOG.close()


def test_ipythons_autoreload_changes_the_hash_of_what_it_reloads(nb: Any, modules: Modules) -> None:
    path = modules.write("features", FEATURES)
    nb.ok("%load_ext autoreload\n%autoreload 2")
    nb.ok(
        f"import {modules.prefix}features as features\nfrom {modules.prefix}features import build"
    )
    nb.ok("def step(values):\n    return build(values)")
    before = content_hash(nb.ns["step"])
    path.write_text(textwrap.dedent(FEATURES).replace("> THRESHOLD", ">= THRESHOLD"))
    later = path.stat().st_mtime + 5
    os.utime(path, (later, later))
    nb.ok("1")  # autoreload reloads changed modules before each cell
    assert content_hash(nb.ns["step"]) != before
    nb.ok("%autoreload 0")


def test_hashing_a_function_that_uses_a_50_module_package(
    modules: Modules, figures: dict[str, str]
) -> None:
    for number in range(50):
        previous = f"from . import module{number - 1}\n" if number else ""
        modules.write(
            f"package/module{number}",
            previous + FEATURES.replace("THRESHOLD = 0.5", f"THRESHOLD = {number} / 100"),
        )
    modules.write("package/__init__", "".join(f"from . import module{n}\n" for n in range(50)))
    package = modules.load("package")
    step = define(
        "def step(values):\n    return package.module49.build(values)\n", package=package
    )["step"]
    start = time.perf_counter()
    first = content_hash(step)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    repeats = 20
    for _ in range(repeats):
        assert content_hash(step) == first
    warm = (time.perf_counter() - start) / repeats
    assert len(code_dependencies(step)) == 51 + 1  # the package, its 50 modules, numpy
    figure = f"first {cold * 1000:.1f} ms, then {warm * 1000:.2f} ms per hash"
    figures["hashing a function that uses a 50-module package"] = figure
    print(figure)
