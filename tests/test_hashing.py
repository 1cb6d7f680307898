"""Content hashes: equal content gives an equal hash whatever the identity; any change gives another."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import textwrap
import threading
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
from mlops_nb.hashing import content_hash, hash_bytes


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
