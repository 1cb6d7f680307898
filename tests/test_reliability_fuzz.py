"""Bad input, generated: magic options, cell bodies, names and hostile DataFrames either work or
raise a clear error (ours, a usage error, or the user's own), and never damage the store."""

from __future__ import annotations

import datetime
import decimal
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from sklearn.preprocessing import StandardScaler

import mlops_nb
from mlops_nb import FeatureStore, FeatureView, MlopsNbError, Pipeline, Store, TransformRegistry

from .conftest import Notebook

PACKAGE = str(Path(mlops_nb.__file__).parent)
# The file names a cell's own code runs under (the body of a magic, or the cell itself).
USER_CODE = ("<step ", "<features ", "<transform ", "<ipython-input-")


def clear(error: BaseException | None) -> bool:
    """Whether a cell's error (None: it worked) tells the user what to do: an error of ours, a
    usage error from the magic layer, or the user's own code failing. Anything raised inside
    mlops_nb (or a library it called) is an internal error: a bug."""
    if error is None or isinstance(error, (MlopsNbError, UsageError)):
        return True
    if isinstance(error, SyntaxError):  # mlops_nb compiles no code but the cell's own
        return True
    frames = [
        frame.filename
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename.startswith((PACKAGE, *USER_CODE))
    ]
    return bool(frames) and frames[-1].startswith(USER_CODE)


def described(error: BaseException | None) -> str:
    return "".join(traceback.format_exception(error)) if error else ""


def settings_for(heavy: bool, examples: int) -> Callable[[Any], Any]:
    """The same cases on every run by default (reproducible figures); ten times as many, new
    ones each run, in the heavy variant."""
    return settings(
        max_examples=examples * 10 if heavy else examples,
        derandomize=not heavy,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture
def checked(
    nb: Notebook, store_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], None]]:
    """Runs in an empty working folder; the returned check says the store is whole and that
    nothing was written outside the store."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def outside() -> set[Path]:
        return {p for p in tmp_path.rglob("*") if p != store_home and store_home not in p.parents}

    before = outside()

    def check() -> None:
        store = Store(store_home)
        try:
            assert store.query("PRAGMA integrity_check") == [("ok",)]
            assert store.verify_all() == []
        finally:
            store.close()
        assert outside() == before

    yield check


def report(figures: dict[str, str], name: str, outcomes: Counter[str]) -> None:
    figures[f"fuzz: {name}"] = (
        f"{sum(outcomes.values())} generated cases ({', '.join(f'{n} {k}' for k, n in outcomes.most_common())})"
    )


# -- magic options ------------------------------------------------------------------------------------
WORDS = ["a", "clean", "x.y", "_p", "9", "../up", "/abs", "a b", "é", "x" * 80, "a,b", ",", "-", "k", "ts",
         "v", "'", '"', "'two words'"]  # fmt: skip
FLAGS = ["--needs", "--outputs", "--files", "--force", "--no-cache", "--entities", "--timestamp",
         "--created", "--ttl", "--description", "--data", "--source", "--tags", "--direction", "-h",
         "--", "--unknown", "-x", "2h", "-5", "99999999999d", "LR"]  # fmt: skip
# Free text never holds '/', '\' or '.': a generated --files can only name a missing or tiny path.
FREE = st.text(st.characters(exclude_characters="/\\.", exclude_categories=["Cs"]), max_size=10)
OPTIONS = st.lists(st.one_of(st.sampled_from(FLAGS), st.sampled_from(WORDS), FREE), max_size=6).map(
    " ".join
)
BODIES = {
    "%%step": "fuzzed = 1",
    "%%features": "import pandas as pd\npd.DataFrame({'k': [1], 'ts': ['2024-01-01'], 'v': [1.0]})",
    "%%transform": "from sklearn.preprocessing import StandardScaler\nStandardScaler().fit([[1.0], [2.0]])",
    "%pipeline": None,
    "%dag": None,
}


def test_magic_options_work_or_are_usage_errors(
    nb: Notebook, checked: Callable[[], None], heavy: bool, figures: dict[str, str]
) -> None:
    outcomes: Counter[str] = Counter()

    @settings_for(heavy, 150)
    @given(st.sampled_from(sorted(BODIES)), OPTIONS)
    def case(magic: str, options: str) -> None:
        if magic == "%pipeline" and "exp" in options:
            return  # `%pipeline export PATH` writes wherever it is told: not for random paths
        nb.pipeline.remove()
        body = BODIES[magic]
        cell = f"{magic} {options}" + (f"\n{body}" if body else "")
        result = nb.run(cell)
        error = result.error_before_exec or result.error_in_exec
        outcomes["worked" if error is None else type(error).__name__] += 1
        assert clear(error), f"{cell!r} failed inside mlops_nb:\n{described(error)}"
        checked()

    try:
        case()
    finally:
        report(figures, "magic options", outcomes)


@pytest.mark.parametrize(
    "cell",
    [
        "%%step 'unclosed\nx = 1",
        "%%features readings --description 'unclosed\nimport pandas as pd\npd.DataFrame()",
        '%%transform "unclosed\nfrom sklearn.preprocessing import StandardScaler\nStandardScaler()',
        "%pipeline use 'unclosed",
        "%dag --direction 'LR",
    ],
    ids=["step", "features", "transform", "pipeline", "dag"],
)
def test_an_unclosed_quote_in_magic_options_is_a_usage_error(nb: Notebook, cell: str) -> None:
    error = nb.error(cell)
    assert isinstance(error, UsageError), described(error)
    assert "No closing quotation" in str(error)


@pytest.mark.parametrize(
    "cell, kind",
    [
        (
            "%%features bad\x00name --entities k\nimport pandas as pd\npd.DataFrame({'k': [1]})",
            "feature view",
        ),
        (
            "%%transform bad\x00name\nfrom sklearn.preprocessing import StandardScaler\nStandardScaler()",
            "transform",
        ),
    ],
    ids=["features", "transform"],
)
def test_a_nul_character_in_a_magic_name_is_an_invalid_name(
    nb: Notebook, cell: str, kind: str
) -> None:
    error = nb.error(cell)
    assert isinstance(error, UsageError), described(error)
    assert f"Invalid {kind} name 'bad\\x00name'" in str(error)


# -- cell bodies --------------------------------------------------------------------------------------
VALUES = ["1", "[1, 2]", "{'k': 1}", "None", "10**5000", "float('nan')", "(i for i in range(3))",
          "lambda: 1", "__import__('threading').Lock()", "pd.DataFrame({'x': [1]})", "np.arange(3)",
          "a", "undefined_name", "1/0", "'text'", "b'bytes'", "{1, 2}", "(1, 2)", "...", "print"]  # fmt: skip
TEMPLATES = [
    "{n} = {v}", "({n} := {v})", "global {n}", "del {n}", "from math import *", "import numpy as np",
    "import pandas as pd", "async def f():\n    await {v}", "await {v}", "[{n} for {n} in range(3)]",
    "[({n} := i) for i in range(3)]", "{{k: {v} for k in 'ab'}}", "{n}: int = {v}", "x, *{n} = [1, 2, 3]",
    "class C:\n    {n} = {v}\n    def m(self):\n        return {n}", "f = lambda: {n}", "{n} += 1",
    "def f(x={v}):\n    global {n}\n    {n} = x\n    return {n}", "{n}.append({v})", "{n}[0] = {v}",
    "try:\n    {n} = {v}\nexcept Exception as e:\n    {n} = None", "if {v}:\n    {n} = 1\nelse:\n    pass",
    "for {n} in range(2):\n    pass", "while False:\n    {n} = {v}", "nonlocal {n}", "return {v}",
    "yield {v}", "raise ValueError({v!r})", "print({n})", "{n}", "{v}", "{n} = {n} = {v}",
    "match {v}:\n    case [x, *rest]:\n        {n} = x\n    case _:\n        pass", "l = []\nl.append(l)",
    "from os import path as {n}", "@staticmethod\ndef g():\n    pass", "{n} = [[[[]]]]\nfor _ in range(3000):\n    {n} = [{n}]",
]  # fmt: skip
# Random lines hold no '!', '%' or '?': IPython would turn those into shell commands and magics.
NOISE = st.text(st.sampled_from(list("abxy01 ()[]{}:=+-*,'\"#\t@&|<>~^") + ["\n"]), max_size=20)
STATEMENT = st.one_of(
    st.builds(
        lambda t, n, v: t.format(n=n, v=v),
        st.sampled_from(TEMPLATES), st.sampled_from(["a", "b", "df", "_p", "total", "print"]), st.sampled_from(VALUES),
    ),
    NOISE,
)  # fmt: skip


def test_cell_bodies_run_as_steps_or_fail_clearly(
    nb: Notebook, checked: Callable[[], None], heavy: bool, figures: dict[str, str]
) -> None:
    outcomes: Counter[str] = Counter()
    nb.ok("import numpy as np\nimport pandas as pd\na = [1, 2]")

    @settings_for(heavy, 200)
    @given(
        st.lists(STATEMENT, min_size=1, max_size=5),
        st.sampled_from(["", " --force", " --no-cache"]),
    )
    def case(statements: list[str], options: str) -> None:
        nb.pipeline.remove()
        cell = f"%%step fuzz{options}\n" + "\n".join(statements)
        result = nb.run(cell)
        error = result.error_before_exec or result.error_in_exec
        outcomes["worked" if error is None else type(error).__name__] += 1
        assert clear(error), f"{cell!r} failed inside mlops_nb:\n{described(error)}"
        checked()

    try:
        case()
    finally:
        report(figures, "cell bodies", outcomes)


# -- names ---------------------------------------------------------------------------------------------
NAMES = st.one_of(
    st.text(max_size=70),
    st.sampled_from(["../x", "..", ".", "/etc/passwd", "a/b", "C:\\x", "x" * 65, "x" * 10_000, "", " ",
                     "é", "名前", "\x00", "con", "NUL", "a.b", "-a", "_", "ok_name", "v1.2"]),
)  # fmt: skip


def fitted() -> StandardScaler:
    return StandardScaler().fit(np.arange(6.0).reshape(3, 2))


NAME_USES: dict[str, Callable[[Notebook, str], BaseException | None]] = {}


def name_use(function: Callable[[Store, str], Any]) -> Callable[[Store, str], Any]:
    """An API call taking a name; it must work or raise an error of ours."""

    def run(nb: Notebook, name: str) -> BaseException | None:
        try:
            function(nb.pipeline.store, name)
        except MlopsNbError as error:
            return error
        return None

    NAME_USES[function.__name__] = run
    return function


@name_use
def pipeline(store: Store, name: str) -> None:
    Pipeline(name, store).define_cell("step", "y = 1")


@name_use
def step(store: Store, name: str) -> None:
    Pipeline("names", store, {}).define_cell(name, "y = 1")


@name_use
def view(store: Store, name: str) -> None:
    features = FeatureStore(store)
    features.apply(FeatureView(name, entities=["k"], timestamp="ts"))
    features.ingest(name, pd.DataFrame({"k": [1], "ts": ["2024-01-01"], "v": [1.0]}))


@name_use
def view_lookup(store: Store, name: str) -> None:
    FeatureStore(store).get_online_features([{"k": 1}], [f"{name}:v"])


@name_use
def transform(store: Store, name: str) -> None:
    TransformRegistry(store).save(name, fitted())


@name_use
def transform_lookup(store: Store, name: str) -> None:
    TransformRegistry(store).load(name)


def magic_use(template: str) -> Callable[[Notebook, str], BaseException | None]:
    def run(nb: Notebook, name: str) -> BaseException | None:
        result = nb.run(template.format(name=name))
        return result.error_before_exec or result.error_in_exec  # type: ignore[no-any-return]

    return run


NAME_USES.update(
    {
        "%%step": magic_use("%%step {name}\ny = 1"),
        "%pipeline use": magic_use("%pipeline use {name}"),
        "%pipeline clear": magic_use("%pipeline clear {name}"),
        "%%features": magic_use("%%features {name} --entities k --timestamp ts\n"
                                "import pandas as pd\npd.DataFrame({{'k': [1], 'ts': ['2024-01-01'], 'v': [1.0]}})"),
        "%%transform": magic_use("%%transform {name}\nfrom sklearn.preprocessing import StandardScaler\n"
                                 "StandardScaler().fit([[1.0], [2.0]])"),
    }
)  # fmt: skip


def test_names_are_used_or_refused_and_never_leave_the_store(
    nb: Notebook, checked: Callable[[], None], heavy: bool, figures: dict[str, str]
) -> None:
    outcomes: Counter[str] = Counter()

    @settings_for(heavy, 150)
    @given(st.sampled_from(sorted(NAME_USES)), NAMES)
    def case(use: str, name: str) -> None:
        error = NAME_USES[use](nb, name)
        outcomes["worked" if error is None else type(error).__name__] += 1
        assert clear(error), f"{use} with {name!r} failed inside mlops_nb:\n{described(error)}"
        checked()

    try:
        case()
    finally:
        report(figures, "names", outcomes)


# -- hostile DataFrames for ingest ------------------------------------------------------------------------
class Opaque:
    """A user's own object inside a column."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque)

    __hash__ = object.__hash__


def column(kind: str, rows: int, seed: int) -> Any:
    """``rows`` values of one awkward kind."""
    rng = np.random.default_rng(seed)
    numbers = rng.integers(-5, 5, rows)
    makers: dict[str, Callable[[], Any]] = {
        "int": lambda: numbers,
        "uint64-max": lambda: np.full(rows, np.iinfo(np.uint64).max, dtype=np.uint64),
        "bool": lambda: numbers > 0,
        "float-nan-inf": lambda: np.where(
            numbers > 2, np.inf, np.where(numbers < -2, np.nan, numbers / 3)
        ),
        "float16": lambda: numbers.astype(np.float16),
        "float32": lambda: numbers.astype(np.float32),
        "complex": lambda: numbers + 1j,
        "text": lambda: [["", "é", "a\x00b", "名", "x" * 300, "'\""][n % 6] for n in numbers],
        "bytes": lambda: [bytes([n % 256]) for n in numbers],
        "mixed": lambda: [[1, "a", None, 2.5][n % 4] for n in numbers],
        "lists": lambda: [[n, n] for n in numbers],
        "dicts": lambda: [{"n": int(n)} for n in numbers],
        "decimal": lambda: [decimal.Decimal(int(n)) / 3 for n in numbers],
        "objects": lambda: [Opaque() for _ in numbers],
        "none": lambda: [None] * rows,
        "datetime-tz": lambda: pd.date_range("2024-01-01", periods=rows, freq="h", tz="Asia/Tokyo"),
        "datetime-naive": lambda: pd.date_range("2024-01-01", periods=rows, freq="D"),
        "datetime-seconds": lambda: pd.date_range("2024-01-01", periods=rows, freq="D").as_unit(
            "s"
        ),
        "date-objects": lambda: [
            datetime.date(1, 1, 1) if n > 3 else datetime.date(2024, 1, 1) for n in numbers
        ],
        "timedelta": lambda: pd.to_timedelta(numbers, unit="s"),
        "period": lambda: pd.period_range("2024-01", periods=rows, freq="M"),
        "interval": lambda: pd.interval_range(0, rows) if rows else pd.IntervalIndex([]),
        "category": lambda: pd.Categorical(
            [["a", "b"][n % 2] for n in numbers], categories=["a", "b", "unused"]
        ),
        "Int64-na": lambda: pd.array([None if n < 0 else int(n) for n in numbers], dtype="Int64"),
        "boolean-na": lambda: pd.array(
            [None if n < 0 else n > 2 for n in numbers], dtype="boolean"
        ),
        "string-na": lambda: pd.array([None if n < 0 else str(n) for n in numbers], dtype="string"),
        "arrow-int": lambda: pd.array(numbers, dtype="int64[pyarrow]"),
        "sparse": lambda: pd.arrays.SparseArray(numbers.astype(float)),
        "text-times": lambda: [
            ["2024-01-01", "2024-01-02T03:04:05+02:00", "2024-01-03 10:00"][n % 3] for n in numbers
        ],
        "bad-times": lambda: [
            ["2024-01-01", "soon", "2024-02-30", "1e9", ""][n % 5] for n in numbers
        ],
        "far-times": lambda: [
            ["9999-12-31", "0001-01-01", "2024-01-01T00:00:00+05:00"][n % 3] for n in numbers
        ],
    }
    return makers[kind]()


KINDS = [
    "int", "uint64-max", "bool", "float-nan-inf", "float16", "float32", "complex", "text", "bytes",
    "mixed", "lists", "dicts", "decimal", "objects", "none", "datetime-tz", "datetime-naive",
    "datetime-seconds", "date-objects", "timedelta", "period", "interval", "category", "Int64-na",
    "boolean-na", "string-na", "arrow-int", "sparse", "text-times", "bad-times", "far-times",
]  # fmt: skip
COLUMN_NAMES = st.sampled_from(
    ["v", 'quo"te', "sp ace", "_part", "", "k", "é", "x" * 200, "a:b", "0"]
)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    """Mostly a usable key and time, so that hostile feature columns get as far as they can."""
    hostile = draw(st.sampled_from(["features", "features", "features", "key", "time", "labels"]))
    rows = draw(st.sampled_from([1, 2, 3, 5, 6, 0]))
    seed = draw(st.integers(0, 1000))
    key = draw(st.sampled_from(KINDS if hostile == "key" else ["int", "text"]))
    time = draw(
        st.sampled_from(
            KINDS if hostile == "time" else ["datetime-naive", "datetime-tz", "text-times"]
        )
    )
    data: dict[Any, Any] = {"k": column(key, rows, seed), "ts": column(time, rows, seed + 1)}
    for number in range(draw(st.sampled_from([1, 2, 3, 0]))):
        name = draw(COLUMN_NAMES) if hostile == "labels" else f"f{number}"
        data[name] = column(draw(st.sampled_from(KINDS)), rows, seed + 2 + number)
    frame = pd.DataFrame(data)
    if hostile == "labels" and draw(st.booleans()) and frame.shape[1] > 2:  # duplicate or not text
        frame.columns = [*frame.columns[:-1], draw(st.sampled_from(["k", 0, ("a", "b")]))]
    return frame


def ingest_and_read(features: FeatureStore, name: str, frames: list[pd.DataFrame]) -> Counter[str]:
    """Ingest each frame; what was ingested must read back offline, online and point-in-time."""
    outcomes: Counter[str] = Counter()
    features.apply(FeatureView(name, entities=["k"], timestamp="ts"))
    ingested = 0
    for frame in frames:
        try:
            features.ingest(name, frame)
        except MlopsNbError:
            outcomes["refused with a clear error"] += 1
            continue
        except Exception as error:  # noqa: BLE001 -- the assertion shows it
            raise AssertionError(
                f"ingest of\n{frame!r}\nfailed inside mlops_nb:\n{described(error)}"
            ) from None
        outcomes["ingested"] += 1
        ingested += len(frame)
    if ingested:
        read = features.read(name)
        assert len(read) == ingested
        wanted = [f"{name}:{feature}" for feature in features.get_view(name).features]
        keys = read["k"].drop_duplicates().tolist()
        assert len(features.get_online_features([{"k": key} for key in keys], wanted)) == len(keys)
        entities = pd.DataFrame({"k": read["k"], "event_timestamp": pd.Timestamp("2200-01-01")})
        assert len(features.get_historical_features(entities, wanted)) == len(read)
    return outcomes


# Parquet has no type for these; every other kind is stored, twice, and read back.
UNSTORABLE = {"complex", "mixed", "objects"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_awkward_dtype_as_a_feature_is_ingested_or_refused_clearly(
    tmp_path: Path, kind: str
) -> None:
    frame = pd.DataFrame(
        {"k": [1, 2, 1], "ts": pd.date_range("2024-01-01", periods=3), "f": column(kind, 3, 0)}
    )
    store = Store(tmp_path / "store")
    later = frame.assign(ts=frame["ts"] + pd.Timedelta("1D"))
    outcomes = ingest_and_read(FeatureStore(store), "awkward", [frame, later])
    expected = "refused with a clear error" if kind in UNSTORABLE else "ingested"
    assert outcomes == {expected: 2}
    assert store.verify_all() == []


def test_hostile_frames_are_ingested_or_refused_clearly(
    nb: Notebook, checked: Callable[[], None], heavy: bool, figures: dict[str, str]
) -> None:
    outcomes: Counter[str] = Counter()
    features = FeatureStore(nb.pipeline.store)
    number = iter(range(10**6))

    @settings_for(heavy, 80)
    @given(st.lists(frames(), min_size=1, max_size=2))
    def case(batches: list[pd.DataFrame]) -> None:
        outcomes.update(ingest_and_read(features, f"hostile{next(number)}", batches))
        checked()

    try:
        case()
    finally:
        report(figures, "hostile DataFrames", outcomes)


# -- what the generated cases found, pinned -------------------------------------------------------------
GOOD = pd.DataFrame({"k": [1, 2], "ts": ["2024-01-01", "2024-01-02"], "rate": [0.5, 0.7]})


@pytest.mark.parametrize(
    "frame, message",
    [
        (GOOD.iloc[:0], r"the data has no rows\. Ingest at least one row\.$"),
        (
            pd.concat([GOOD, GOOD[["rate"]]], axis=1),
            r"the data has several columns named \['rate'\]\. Give each column its own name, or "
            r"drop the copies: df\.loc\[:, ~df\.columns\.duplicated\(\)\]\.$",
        ),
        (
            GOOD.rename(columns={"rate": "_part"}),
            r"the column name\(s\) \['_part'\] are used by the feature store itself\. Rename them, "
            r"e\.g\. df\.rename\(columns=\{'_part': 'part'\}\)\.$",
        ),
        (
            GOOD.set_axis(pd.MultiIndex.from_tuples([("k", ""), ("ts", ""), ("rate", "")]), axis=1),
            r"the data has column levels \[None, None\]; give it one level of names",
        ),
        (
            GOOD.assign(k=[b"a", b"b"]),
            r"entity column 'k' holds bytes values \(object\), but keys must be integers or "
            r"strings\. Convert it, e\.g\. df\['k'\]\.astype\(str\)\.$",
        ),
        (GOOD.assign(k=[1.5, 2.0]), r"entity column 'k' holds floating values \(float64\)"),
        (GOOD.assign(k=[1, "b"]), r"entity column 'k' holds mixed-integer values \(object\)"),
        (GOOD.rename(columns={"rate": ""}), r"Feature column names must be non-empty strings; got \[''\]"),
    ],
    ids=["no-rows", "same-name", "reserved-name", "column-levels", "bytes-key", "float-key",
         "mixed-key", "empty-name"],
)  # fmt: skip
def test_ingest_refuses_what_it_cannot_store_faithfully(
    tmp_path: Path, frame: pd.DataFrame, message: str
) -> None:
    features = FeatureStore(tmp_path / "store")
    features.apply(FeatureView("v", entities=["k"], timestamp="ts"))
    with pytest.raises(mlops_nb.FeatureValidationError, match=message):
        features.ingest("v", frame)
    assert features.get_view("v").schema is None  # nothing inferred from refused data was kept
    assert features.store.query("SELECT COUNT(*) FROM objects") == [(0,)]


def test_a_column_of_objects_keeps_its_kind_across_ingests(tmp_path: Path) -> None:
    features = FeatureStore(tmp_path / "store")
    features.apply(FeatureView("v", entities=["k"], timestamp="ts"))
    features.ingest("v", GOOD.assign(rate=[[1, 2], [3]]))
    features.ingest("v", GOOD.assign(rate=[[4], [5, 6]], ts=["2024-02-01", "2024-02-02"]))
    with pytest.raises(
        mlops_nb.FeatureValidationError,
        match=r"^Cannot ingest into 'v': column 'rate' holds binary values but earlier ingests "
        r"stored list<element: int64>\. Give it values of the same kind, or apply the view with a new "
        r"schema to start a new version\.$",
    ):
        features.ingest("v", GOOD.assign(rate=[b"x", b"y"]))
    wanted = pd.DataFrame({"k": [1, 2], "event_timestamp": pd.Timestamp("2025-01-01")})
    rates = features.get_historical_features(wanted, ["v:rate"])["rate"]
    assert [list(rate) for rate in rates] == [[4], [5, 6]]


def test_online_values_are_the_offline_values(tmp_path: Path) -> None:
    features = FeatureStore(tmp_path / "store")
    features.apply(FeatureView("v", entities=["k"], timestamp="ts"))
    big = int(np.iinfo(np.uint64).max)  # a key beyond int64
    floats = [0.1 + 0.2, 1 / 3, np.pi * 1e300, -0.0]
    frame = pd.DataFrame(
        {
            "k": np.array([1, 2, 3, big], dtype=np.uint64),
            "ts": pd.Timestamp("2024-01-01"),
            "x": floats,
            "vector": [[1.5, 2.5], [3.5, 4.5], [0.0, 0.0], [1.0, 1.0]],
        }
    )
    features.ingest("v", frame)
    online = features.get_online_features(
        [{"k": 1}, {"k": 2}, {"k": 3}, {"k": big}], ["v:x", "v:vector"], now="2024-01-02"
    )
    assert [repr(v) for v in online["x"]] == [repr(v) for v in floats]  # not rounded to 10 digits
    assert online["vector"].tolist() == frame["vector"].tolist()  # one list per row
    assert online["k"].tolist() == [1, 2, 3, big]


def test_values_that_cannot_be_hashed_and_huge_integers(nb: Notebook) -> None:
    nb.ok("%%step big\nhuge = 10**5000")
    nb.ok("del huge")
    nb.ok("%%step big\nhuge = 10**5000")  # restored from the store
    assert nb.ns["huge"] == 10**5000
    error = nb.error("%%step loop\nitems = []\nitems.append(items)")
    assert isinstance(error, UsageError)
    assert str(error).startswith(
        "Cannot store output 'items' of step 'loop' (a list): Cannot hash a list value: it is "
        "nested too deeply or contains itself (e.g. a list appended to itself)."
    )


@pytest.mark.parametrize(
    "code, problem",
    [("await ready", "'await' outside function"), ("return 1", "'return' outside function"),
     ("nonlocal x", "nonlocal declaration not allowed at module level")],
)  # fmt: skip
def test_code_that_only_compiling_rejects_is_a_step_syntax_error(
    nb: Notebook, code: str, problem: str
) -> None:
    error = nb.error(f"%%step broken\n{code}")
    assert isinstance(error, UsageError)
    assert str(error).startswith(f"{problem} in <cell>. Fix the code and run the cell again.")
    assert "broken" not in nb.pipeline.steps  # nothing was saved


def test_a_ttl_too_long_for_a_timedelta_is_refused() -> None:
    with pytest.raises(
        mlops_nb.FeatureValidationError, match=r"^ttl='99999999999d' is not a positive duration"
    ):
        FeatureView("v", entities=["k"], ttl="99999999999d")
