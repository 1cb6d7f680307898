"""Type-aware mutation findings, checked against what real pandas, numpy, scikit-learn and
matplotlib values do when the cell runs, and fixes checked by running them in the cell's place."""

from __future__ import annotations

import copy
import io
import pickle
import random
import warnings
from collections import deque
from collections.abc import Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import sklearn.base
from hypothesis import given, settings
from matplotlib.artist import Artist
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlops_nb.cells import analyse
from mlops_nb.mutations import Finding, find_mutations

from .test_cells import OWN, generated_cells

# What a fix may use besides the cell's own names: the imports a notebook has.
HELPERS = {
    "np": np,
    "pd": pd,
    "plt": plt,
    "sklearn": sklearn,
    "copy": copy,
    "random": random,
    "Ridge": Ridge,
}


@pytest.fixture
def namespace() -> Iterator[dict[str, Any]]:
    """Fresh values, as earlier steps would have left them."""
    fig, axes = plt.subplots(1, 2)
    _, ax = plt.subplots()
    yield {
        "X": np.array([[0.0], [1.0], [2.0], [3.0]]),
        "y": np.array([0, 1, 0, 1]),
        "e": {"b": 2},
        "buffer": io.BytesIO(),
        "models": {
            "rf": RandomForestClassifier(n_estimators=3, random_state=0),
            "lr": LogisticRegression(),
        },
        "estimators": [Ridge(), Ridge(alpha=2.0)],
        "model": LogisticRegression(),
        "fitted": LogisticRegression().fit([[0.0], [1.0]], [0, 1]),
        "pipe": make_pipeline(StandardScaler(), Ridge()),
        "est": Ridge(),
        "scaler": StandardScaler(),
        "sgd": SGDClassifier(random_state=0),
        "fig": fig,
        "axes": axes,
        "ax": ax,
        "rng": np.random.default_rng(0),
        "rs": np.random.RandomState(0),
        "r": random.Random(0),
        "df": pd.DataFrame({"a": [1.0, None, 3.0], "b": [4, 5, 6]}),
        "A": pd.DataFrame({"a": [1.0, 2.0]}),
        "B": pd.DataFrame({"a": [10.0]}),
        "s": pd.Series([1, 2, 3]),
        "frames": {
            "train": pd.DataFrame({"x": [1.0, None]}),
            "test": pd.DataFrame({"x": [None, 2.0]}),
        },
        "arr": np.array([3, 1, 2]),
        "lst": [1, 2],
        "d": {"a": 1},
        "st": {1, 2},
        "dq": deque([1]),
        "table": {"k": [0]},
        "n": 3,
        "title": "text",
    }
    plt.close("all")


# pandas 3 always copies on write: a column or a row taken from a frame is then a copy.
COPY_ON_WRITE = pytest.mark.skipif(
    int(pd.__version__.split(".")[0]) < 3, reason="a column is a copy only with copy-on-write"
)


def snapshot(value: Any) -> bytes:
    """The state of a value: its pixels for a figure, its pickle for anything else."""
    artists = [v for v in np.asarray(value, dtype=object).flat if isinstance(v, Artist)]
    if isinstance(value, Artist) or artists:
        figure = (value if isinstance(value, Artist) else artists[0]).get_figure(root=True)
        figure.canvas.draw()
        return bytes(np.asarray(figure.canvas.buffer_rgba()))
    return pickle.dumps(value)


def run(code: str, namespace: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns about chained assignment, as it should
        exec(compile(code, "<cell>", "exec"), {**HELPERS, **namespace})  # noqa: S102


def findings(code: str, namespace: dict[str, Any], **options: Any) -> list[Finding]:
    """What find_mutations reports for ``code`` in a notebook that imported HELPERS earlier."""
    return find_mutations(analyse(code), {**HELPERS, **namespace}, **options)


def with_fix(code: str, finding: Finding) -> str:
    """The cell with the reported line replaced by the fix, at the same indentation."""
    lines = code.splitlines()
    line = lines[finding.lineno - 1]
    lines[finding.lineno - 1] = line[: len(line) - len(line.lstrip())] + finding.fix
    return "\n".join(lines) + "\n"


CHANGES = [
    # estimators, directly and through loops and aliases
    ("for name, clf in models.items():\n    clf.fit(X, y)", "models", "clf", "calls .fit() on"),
    ("for clf in models.values():\n    clf.fit(X, y)", "models", "clf", "calls .fit() on"),
    ("for clf in estimators:\n    clf.fit(X, y)", "estimators", "clf", "calls .fit() on"),
    ('clf = models["rf"]\nclf.fit(X, y)', "models", "clf", "calls .fit() on"),
    ("m = model\nm.fit(X, y)", "model", "m", "calls .fit() on"),
    ("fitted_model = model.fit(X, y)", "model", None, "calls .fit() on"),
    ("est = pipe.steps[-1][1]\nest.fit(X, y)", "pipe", "est", "calls .fit() on"),
    ("pipe.named_steps['ridge'].fit(X, y)", "pipe", None, "calls .fit() on"),
    ("est.set_params(alpha=2.0)", "est", None, "calls .set_params() on"),
    (
        "sc = pipe.steps[0][1]\nsc.set_output(transform='pandas')",
        "pipe",
        "sc",
        "calls .set_output() on",
    ),
    ("scaled = scaler.fit_transform(X)", "scaler", None, "calls .fit_transform() on"),
    ("sgd.partial_fit(X, y, classes=[0, 1])", "sgd", None, "calls .partial_fit() on"),
    # matplotlib: drawing into another step's figure
    ("a0 = axes[0]\na0.plot([1, 2])", "axes", "a0", "draws into"),
    ("ax1, ax2 = axes\nax2.set_title('right')", "axes", "ax2", "draws into"),
    ("for a in axes.flat:\n    a.plot([1, 2])", "axes", "a", "draws into"),
    ("for a in axes.flatten():\n    a.bar([1], [2])", "axes", "a", "draws into"),
    ("ax.plot([1, 2])", "ax", None, "draws into"),
    ("ax.spines['top'].set_visible(False)", "ax", None, "draws into"),
    ("fig.suptitle('title')", "fig", None, "draws into"),
    # random generators
    ("draw = rng.integers(0, 10)", "rng", None, "draws from"),
    ("noise = rng.normal()", "rng", None, "draws from"),
    ("u = rs.rand()", "rs", None, "draws from"),
    ("v = r.random()", "r", None, "draws from"),
    ("rs.seed(1)", "rs", None, "re-seeds"),
    # pandas: in-place methods, inplace=True and assignments
    ("column = df.pop('a')", "df", None, "calls .pop() on"),
    ("df.insert(0, 'c', 1)", "df", None, "calls .insert() on"),
    ("s.update(pd.Series([9], index=[0]))", "s", None, "calls .update() on"),
    ("df.dropna(inplace=True)", "df", None, "calls .dropna() on"),
    (
        "for name, frame in frames.items():\n    frame.dropna(inplace=True)",
        "frames",
        "frame",
        "calls .dropna() on",
    ),
    ("df['c'] = 1", "df", None, "assigns into"),
    ("df.loc[0, 'a'] = 5.0", "df", None, "assigns into"),
    ("df.attrs['source'] = 'x'", "df", None, "assigns into"),
    # numpy
    ("arr.sort()", "arr", None, "calls .sort() on"),
    ("arr.fill(0)", "arr", None, "calls .fill() on"),
    ("arr.byteswap(inplace=True)", "arr", None, "calls .byteswap() on"),
    ("head = arr[0:2]\nhead.fill(0)", "arr", "head", "calls .fill() on"),
    ("arr += 1", "arr", None, "updates (+= etc.)"),
    # builtin containers
    ("lst.append(3)", "lst", None, "calls .append() on"),
    ("lst += [3]", "lst", None, "updates (+= etc.)"),
    ("d.update(e)", "d", None, "calls .update() on"),
    ("st.add(3)", "st", None, "calls .add() on"),
    ("dq.appendleft(0)", "dq", None, "calls .appendleft() on"),
    ("row = table['k']\nrow.append(1)", "table", "row", "calls .append() on"),
    ("table['k'].append(1)", "table", None, "calls .append() on"),
]


@pytest.mark.parametrize(("code", "name", "alias", "how"), CHANGES)
def test_a_change_is_found_with_a_fix_that_runs_and_leaves_the_value_alone(
    namespace: dict[str, Any], code: str, name: str, alias: str | None, how: str
) -> None:
    (finding,) = findings(code, namespace)
    assert (finding.name, finding.alias, finding.how) == (name, alias, how)
    assert finding.lineno == len(code.splitlines())
    before = snapshot(namespace[name])
    run(with_fix(code, finding), namespace)
    assert snapshot(namespace[name]) == before, f"the fix {finding.fix!r} changed {name!r}"
    run(code, namespace)
    assert snapshot(namespace[name]) != before, "the cell itself does not change the value"


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("total = A.add(B, fill_value=0)", "A"),
        pytest.param("df['a'].fillna(0, inplace=True)", "df", marks=COPY_ON_WRITE),
        pytest.param("col = df['a']\ncol.fillna(0, inplace=True)", "df", marks=COPY_ON_WRITE),
        pytest.param("sub = df[df.b > 4]\nsub.dropna(inplace=True)", "df", marks=COPY_ON_WRITE),
        pytest.param("df['a'][0] = 5.0", "df", marks=COPY_ON_WRITE),
        ("flagged = df.set_flags(allows_duplicate_labels=False)", "df"),
        ("index = df.index.insert(0, 9)", "df"),
        ("frame = df.copy()\nframe.dropna(inplace=True)", "df"),
        ("total = np.add(arr, 1)", "arr"),
        ("picked = arr[[0, 1]]\npicked.sort()", "arr"),
        ("ordered = np.sort(arr)", "arr"),
        ("score = fitted.score(X, y)", "fitted"),
        ("clf = models['rf']\nclf = Ridge()\nclf.fit(X, y)", "models"),
        ("lim = ax.get_xlim()\nlabel = ax.get_title()", "ax"),
        ("fig.savefig(buffer)", "fig"),
        ("state = rs.get_state()", "rs"),
        ("part = lst[1:]\npart.append(1)", "lst"),
        ("first, *rest = lst\nrest.append(9)", "lst"),
        ("n += 1", "n"),
        ("loud = title.upper()", "title"),
        ("keys = list(d.keys())", "d"),
    ],
)
def test_what_leaves_the_value_alone_is_not_reported(
    namespace: dict[str, Any], code: str, name: str
) -> None:
    assert findings(code, namespace) == []
    before = snapshot(namespace[name])
    run(code, namespace)
    assert snapshot(namespace[name]) == before, (
        "the cell does change the value: it must be reported"
    )


def test_fixes_read_like_the_lesson(namespace: dict[str, Any]) -> None:
    def fix(code: str) -> str:
        (finding,) = findings(code, namespace)
        return finding.fix

    assert fix("for name, clf in models.items():\n    clf.fit(X, y)") == (
        "models_fitted = {name: sklearn.base.clone(clf).fit(X, y) for name, clf in models.items()}"
    )
    assert fix("for clf in estimators:\n    clf.fit(X, y)") == (
        "estimators_fitted = [sklearn.base.clone(clf).fit(X, y) for clf in estimators]"
    )
    assert (
        fix("clf = models['rf']\nclf.fit(X, y)") == "clf_fitted = sklearn.base.clone(clf).fit(X, y)"
    )
    assert (
        fix("fitted_model = model.fit(X, y)")
        == "fitted_model = sklearn.base.clone(model).fit(X, y)"
    )
    assert (
        fix("est.set_params(alpha=2.0)")
        == "est_new = sklearn.base.clone(est).set_params(alpha=2.0)"
    )
    assert fix("scaled = scaler.fit_transform(X)") == (
        "scaler_fitted = sklearn.base.clone(scaler); scaled = scaler_fitted.fit_transform(X)"
    )
    assert fix("df.dropna(inplace=True)") == "df_new = df.dropna()"
    assert fix("df['c'] = 1") == "df_new = df.copy()"
    assert (
        fix("table['k'].append(1)") == "table_new = copy.deepcopy(table); table_new['k'].append(1)"
    )
    assert fix("ax.plot([1, 2])") == "fig, ax = plt.subplots()"
    assert fix("a0 = axes[0]\na0.plot([1, 2])") == "fig, axes = plt.subplots(2)"
    assert fix("fig.suptitle('title')") == "fig, ax = plt.subplots()"
    assert fix("noise = rng.normal()") == "rng = np.random.default_rng(42)"
    assert fix("u = rs.rand()") == "rs = np.random.RandomState(42)"


def test_the_message_names_the_alias_and_teaches_the_fix(namespace: dict[str, Any]) -> None:
    (finding,) = findings("for clf in models.values():\n    clf.fit(X, y)", namespace)
    assert finding.message("train", "an output of step 'make'") == (
        "step 'train' calls .fit() on 'models' (an output of step 'make') through 'clf' in place. "
        "The cache cannot see that change and re-running 'train' would see its own edit. Bind a new "
        "name instead, e.g. models_fitted = [sklearn.base.clone(clf).fit(X, y) for clf in models.values()]."
    )
    (finding,) = findings("draw = rng.integers(0, 10)", namespace)
    assert finding.message("sample", "an output of step 'seed'").startswith(
        "step 'sample' draws from 'rng' (an output of step 'seed') with .integers(), which advances it."
    )
    assert (
        "Create the generator in this step from a seed instead, e.g. rng = np.random.default_rng(42)."
        in (finding.message("sample", "x"))
    )
    (finding,) = findings("ax.plot([1, 2])", namespace)
    assert "draws into 'ax' (x) with .plot(). " in finding.message("plot", "x")
    assert (
        "Make the figure in this step instead, e.g. fig, ax = plt.subplots()."
        in finding.message("plot", "x")
    )


# -- values the namespace does not hold, and code that is not data -------------------------------------


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("other.append(1)", "other_new = copy.deepcopy(other); other_new.append(1)"),
        ("other.fit(X, y)", "other_fitted = sklearn.base.clone(other).fit(X, y)"),
        ("other.drop(columns=['a'], inplace=True)", "other_new = other.drop(columns=['a'])"),
        ("other['a'] = 1", "other_new = copy.deepcopy(other)"),
    ],
)
def test_a_value_of_unknown_type_is_judged_by_the_method_name(code: str, fix: str) -> None:
    (finding,) = findings(code, {})
    assert (finding.name, finding.fix) == ("other", fix)


@pytest.mark.parametrize(
    "code", ["total = other.add(more, fill_value=0)", "top = other.head()", "other.plot()"]
)
def test_names_that_are_pure_on_common_types_are_not_reported_for_unknown_values(code: str) -> None:
    assert findings(code, {}) == []


@pytest.mark.parametrize(
    "code",
    [
        "np.random.shuffle(arr)",
        "Ridge.fit(est, X, y)",
        "list.append(lst, 1)",
        "plt.plot([1, 2])",
        "np.linalg.norm(arr)",
    ],
)
def test_modules_classes_and_builtins_are_code_not_data(
    namespace: dict[str, Any], code: str
) -> None:
    assert findings(code, namespace) == []


def test_is_library_names_more_values_that_are_not_data(namespace: dict[str, Any]) -> None:
    namespace["registry"] = []
    assert len(findings("registry.append(1)", namespace)) == 1
    assert (
        findings(
            "registry.append(1)", namespace, is_library=lambda value: value is namespace["registry"]
        )
        == []
    )


def test_values_are_inspected_without_running_their_code() -> None:
    class Lazy:
        @property
        def data(self) -> list[int]:
            raise AssertionError("the analysis ran a property")

    stream = iter([1, 2, 3])
    found = findings(
        "part = lazy.data\npart.append(1)\nfor item in stream:\n    item.append(2)",
        {"lazy": Lazy(), "stream": stream},
    )
    # Both are unknown, so the method name decides; and nothing was run or consumed.
    assert [(f.name, f.alias) for f in found] == [("lazy", "part"), ("stream", "item")]
    assert list(stream) == [1, 2, 3]


# -- property: whatever the cell, no crash, valid fixes, and the cell's own values are never blamed ------


@settings(max_examples=100, deadline=None)
@given(generated_cells())
def test_findings_never_crash_give_valid_fixes_and_never_blame_the_cells_own_values(
    code: str,
) -> None:
    namespace = {
        "a": pd.DataFrame({"x": [1.0]}),
        "b": [[1], {"k": Ridge()}],
        "models": {"rf": Ridge(), "lr": [np.zeros(2)]},
        "axes": np.array([object(), "text", None], dtype=object),
        "v": iter([1, 2]),
        **{name: [] for name in OWN},  # an earlier cell's values with the same names
    }
    for finding in find_mutations(analyse(code), namespace):
        assert finding.name not in OWN and finding.alias not in OWN, code
        compile(finding.fix, "<fix>", "exec")
    assert list(namespace["v"]) == [1, 2], "the analysis consumed an iterator"
