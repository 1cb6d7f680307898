"""Decide, by the type of each value, which of a cell's changes alter a value another step made."""

from __future__ import annotations

import ast
import builtins
import inspect
import itertools
import random
import sys
import types
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence, MutableSet, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from .cells import MUTATING_METHODS, AccessPath, CellInfo, MethodCall, Mutation, PathStep

__all__ = ["Finding", "find_mutations"]

# Methods that change a list, a dict, a set, a deque, a bytearray or an array.array.
_CONTAINER_METHODS = frozenset(
    {
        "append", "appendleft", "extend", "extendleft", "insert", "pop", "popleft", "popitem",
        "remove", "clear", "sort", "reverse", "rotate", "update", "setdefault", "add", "discard",
        "intersection_update", "difference_update", "symmetric_difference_update", "move_to_end",
        "subtract", "byteswap", "frombytes", "fromlist", "fromunicode",
    }
)  # fmt: skip
# Methods that change their object, for the types whose methods we know.
_IN_PLACE = {
    # Every other pandas method returns a new object unless it is given inplace=True.
    "frame": frozenset({"insert", "pop", "update"}),
    "index": frozenset(),  # an Index is immutable
    "array": frozenset(
        {"sort", "fill", "resize", "put", "itemset", "partition", "setfield", "setflags"}
    ),
    "container": _CONTAINER_METHODS,
    "estimator": frozenset(
        {"fit", "partial_fit", "fit_transform", "fit_predict", "set_params", "set_output"}
    ),
}
# For a value of unknown type, the names alone. `add` is left out: on a DataFrame or a Series,
# the commonest owners of an `.add()`, it returns a new object (a set's is caught by its type).
_BY_NAME = MUTATING_METHODS - {"add"}
_ESTIMATOR_METHODS = _IN_PLACE["estimator"]

# Artist methods that only look: anything else an Artist is asked to do changes the drawing.
_ARTIST_READERS = frozenset(
    {
        "contains", "convert_xunits", "convert_yunits", "findobj", "format_coord",
        "format_cursor_data", "have_units", "in_axes", "pickable", "properties", "savefig", "show",
    }
)  # fmt: skip
_GENERATOR_READERS = frozenset({"get_state", "getstate", "__getstate__", "__reduce__"})
_RESEEDS = frozenset({"seed", "set_state", "setstate", "__setstate__"})
_IMMUTABLE = (int, float, complex, str, bytes, tuple, frozenset, range, type(None))
_SAMPLE = 20  # elements of a container looked at to learn what it holds
_UNKNOWN: Any = object()


@dataclass(frozen=True)
class Finding:
    """A change a step makes to a value it did not create, and code that does without the change.

    ``name`` is the upstream variable and ``alias`` the name the change went through, if any;
    ``how`` says what the step does to it ("calls .fit() on", "draws into") and ``detail`` ends
    the sentence; ``fix`` is valid code for the value's type, introduced by ``advice``.

    >>> finding = Finding("df", 3, "assigns into", "df_new = df.copy()")
    >>> finding.message("clean", "an output of step 'load'").split(". ")[0]
    "step 'clean' assigns into 'df' (an output of step 'load') in place"
    """

    name: str
    lineno: int
    how: str
    fix: str
    alias: str | None = None
    detail: str = " in place"
    advice: str = "Bind a new name instead"

    def message(self, step: str, whose: str) -> str:
        """The warning for step ``step``; ``whose`` tells where the value comes from."""
        through = f" through {self.alias!r}" if self.alias else ""
        return (
            f"step {step!r} {self.how} {self.name!r} ({whose}){through}{self.detail}. The cache "
            f"cannot see that change and re-running {step!r} would see its own edit. "
            f"{self.advice}, e.g. {self.fix}."
        )


def find_mutations(
    info: CellInfo,
    namespace: Mapping[str, Any],
    is_library: Callable[[Any], bool] | None = None,
) -> list[Finding]:
    """The changes the analysed cell makes to values in ``namespace`` it did not create, by line.

    What a method call does is decided by the type of the value it is called on: ``.add()``
    changes a set but not a DataFrame, ``.plot()`` draws into an Axes. Modules, classes and
    functions are code, never data; ``is_library`` can name more such values.

    >>> from mlops_nb.cells import analyse
    >>> info = analyse("seen.add(key)\\ntotal = counts.add(1)")
    >>> [finding] = find_mutations(info, {"seen": set()})
    >>> finding.name, finding.how, finding.fix
    ('seen', 'calls .add() on', 'seen_new = seen.copy(); seen_new.add(key)')
    """

    def is_code(value: Any) -> bool:
        return _is_code(value) or (is_library is not None and is_library(value))

    findings = [
        finding
        for change in info.mutations
        if not change.by_call and (finding := _judge_change(change, namespace, is_code))
    ]
    findings += [
        finding for call in info.calls if (finding := _judge_call(call, namespace, is_code))
    ]
    return sorted(findings, key=lambda finding: finding.lineno)


def _is_code(value: Any) -> bool:
    """True for modules, classes and functions: what a step imports, not data it produced."""
    return isinstance(
        value,
        (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType),
    )


def _root(name: str, namespace: Mapping[str, Any]) -> Any:
    if name in namespace:
        return namespace[name]
    return getattr(builtins, name, _UNKNOWN)  # `list.append(x, 1)` calls the builtin's method


# -- what a value is -------------------------------------------------------------------------------


def _instance(value: Any, module: str, *names: str) -> bool:
    """isinstance against classes of ``module``, without importing it: not loaded, no instances."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(value, tuple(getattr(loaded, name) for name in names))


def _kind(value: Any) -> str:
    """The family of ``value`` whose methods we know, or "other".

    >>> _kind([1]), _kind("text"), _kind(object())
    ('container', 'immutable', 'other')
    """
    if _instance(value, "pandas", "DataFrame", "Series"):
        return "frame"
    if _instance(value, "pandas", "Index"):
        return "index"
    if _instance(value, "numpy", "ndarray"):
        return "array"
    if isinstance(value, random.Random) or _instance(
        value, "numpy.random", "Generator", "RandomState"
    ):
        return "random"
    if _instance(value, "matplotlib.artist", "Artist"):
        return "artist"
    if isinstance(value, _IMMUTABLE) or _instance(value, "numpy", "generic"):
        return "immutable"
    if not isinstance(value, type) and _has(value, "get_params") and _has(value, "fit"):
        return "estimator"
    if isinstance(value, (MutableSequence, MutableMapping, MutableSet)):
        return "container"
    return "other"


def _has(value: Any, name: str) -> bool:
    """hasattr without running the value's own code (``__getattr__``, properties)."""
    return inspect.getattr_static(value, name, _UNKNOWN) is not _UNKNOWN


def _parts(value: Any, path: AccessPath) -> list[Any] | None:
    """The values ``path`` may lead to from ``value`` (a sample, in a container), None if unknown.

    >>> _parts({"a": [1, 2], "b": [3]}, (("values", None), ("item", 0)))
    [1, 3]
    """
    values = [value]
    for step in path:
        found: list[Any] = []
        for current in values:
            part = _part(current, step)
            if part is None:
                # What hangs off an Artist draws; what hangs off an estimator (its steps) fits.
                return values if all(_kind(v) in ("artist", "estimator") for v in values) else None
            found += part
        values = found[:_SAMPLE]
    return values


def _part(value: Any, step: PathStep) -> list[Any] | None:
    """The values one path step leads to, found without running code of the value's own."""
    how, key = step
    kind = _kind(value)
    if kind in ("frame", "index"):
        return _frame_part(value, how, key)
    if kind == "array" and value.dtype.kind != "O":
        # Indexing with a list copies; indexing with numbers or slices gives a view of the array.
        return [] if how == "item" and isinstance(key, list) else [value]
    if how == "attr":
        if kind == "array" and key == "flat":
            return [value.ravel()]  # the same objects, in one dimension
        found = inspect.getattr_static(value, key, _UNKNOWN)
        # A property or a method would run code to give the part: leave it unknown.
        return None if found is _UNKNOWN or hasattr(type(found), "__get__") else [found]
    if not (kind == "array" or isinstance(value, (Mapping, Sequence, AbstractSet))):
        return None  # iterating anything else (a generator, a file) could consume it
    if how == "item":
        try:
            return [value[key]]
        except Exception:  # noqa: BLE001 - a missing key only means the part is unknown
            return None
    if how == "slice":
        return [value] if kind == "array" else []  # a slice of a list or a tuple is a new one
    if how == "values" and not isinstance(value, Mapping):
        return None
    elements = value.values() if how in ("values", "any") and isinstance(value, Mapping) else value
    return list(itertools.islice(iter(elements), _SAMPLE))


def _frame_part(value: Any, how: str, key: Any) -> list[Any]:
    """A part of a pandas object: the object itself behind an indexer, its metadata, or a copy."""
    if how == "attr" and key in ("loc", "iloc", "at", "iat"):
        return [value]  # `df.loc[m, "b"] = 0` writes into df
    if how == "attr" and key in ("attrs", "flags", "index", "columns"):
        return [getattr(value, key)]  # shared with the frame, and cheap to get
    # With copy-on-write a column or a row behaves as a copy: changing it leaves the frame alone.
    return [] if _copy_on_write() else [value]


def _copy_on_write() -> bool:
    """True when pandas has copy-on-write on (always, from pandas 3)."""
    pandas = sys.modules["pandas"]
    major = int(pandas.__version__.split(".")[0])
    return major >= 3 or pandas.get_option("mode.copy_on_write") is True


# -- judging a method call -------------------------------------------------------------------------


def _judge_call(
    call: MethodCall, namespace: Mapping[str, Any], is_code: Callable[[Any], bool]
) -> Finding | None:
    root = _root(call.name, namespace)
    if root is not _UNKNOWN and is_code(root):
        return None
    known = None if root is _UNKNOWN else _parts(root, (*call.via, *call.path))
    subjects = None if root is _UNKNOWN else _parts(root, call.via)
    subject_value = subjects[0] if subjects else _UNKNOWN
    for value in [_UNKNOWN] if known is None else known:
        finding = _call_finding(call, value, root, subject_value)
        if finding is not None:
            return finding
    return None


def _call_finding(call: MethodCall, value: Any, root: Any, subject_value: Any) -> Finding | None:
    """What ``call`` does to ``value``, one of the values its receiver may be, if it changes it.

    ``root`` is the upstream value and ``subject_value`` the value of the alias, if any.
    """
    kind, method, subject = _kind(value), call.method, call.alias or call.name
    if kind == "artist":
        if method.startswith(("get_", "is_", "has_", "can_")) or method in _ARTIST_READERS:
            return None
        fix = _figure_fix(call.name, root)
        return _finding(
            call, "draws into", fix, f" with .{method}()", "Make the figure in this step instead"
        )
    if kind == "random":
        if method in _GENERATOR_READERS:
            return None
        reseeds = method in _RESEEDS
        return _finding(
            call,
            "re-seeds" if reseeds else "draws from",
            _generator_fix(subject, value),
            f" with .{method}()" + ("" if reseeds else ", which advances it"),
            "Create the generator in this step from a seed instead",
        )
    if kind == "immutable":
        return None
    estimator = kind == "estimator" or (kind == "other" and method in _ESTIMATOR_METHODS)
    in_place = _IN_PLACE.get(kind, _BY_NAME)
    if not (call.inplace or method in in_place or (estimator and method.startswith("set_"))):
        return None
    if estimator:
        fix = _estimator_fix(call)
    elif call.inplace:
        fix = _inplace_fix(call, subject_value)
    else:
        fix = _copy_fix(call, subject_value)
    return _finding(call, f"calls .{method}() on", fix)


def _finding(
    source: MethodCall | Mutation,
    how: str,
    fix: str,
    detail: str = " in place",
    advice: str = "Bind a new name instead",
) -> Finding:
    return Finding(source.name, source.lineno, how, fix, source.alias, detail, advice)


# -- fixes: valid code for the type at hand --------------------------------------------------------


def _estimator_fix(call: MethodCall) -> str:
    """``clf_fitted = sklearn.base.clone(clf).fit(X, y)``, or a comprehension over the loop."""
    method, subject = call.method, call.alias or call.name
    # partial_fit goes on from what the estimator has learnt: copy it, do not start afresh.
    maker = "copy.deepcopy" if method == "partial_fit" else "sklearn.base.clone"
    if method == "partial_fit":
        suffix = "_updated"
    elif method.startswith("set_"):
        suffix = "_new"
    else:
        suffix = "_fitted"
    made = f"{maker}({call.receiver})"
    if call.loop:
        return _comprehension(call.loop, f"{made}.{method}({call.arguments})", call.name + suffix)
    result = call.result if call.result not in ("", call.name, subject) else ""
    if method in ("fit_transform", "fit_predict"):  # keep the fitted estimator, not only its output
        fitted = f"{subject}_fitted"
        return f"{fitted} = {made}; {result or 'result'} = {fitted}.{method}({call.arguments})"
    return f"{result or subject + suffix} = {made}.{method}({call.arguments})"


def _inplace_fix(call: MethodCall, subject_value: Any) -> str:
    """The call without ``inplace=True``, its result bound to a new name."""
    subject = call.alias or call.name
    expression = f"{call.receiver}.{call.method}({call.arguments})"
    if call.receiver == subject:
        if call.loop:
            return _comprehension(call.loop, expression, f"{call.name}_new")
        return f"{subject}_new = {expression}"
    receiver = _renamed(call.receiver, subject, f"{subject}_new")
    copied = _copy_of(subject, subject_value, nested=True)
    if isinstance(ast.parse(receiver, mode="eval").body, (ast.Attribute, ast.Subscript)):
        # A column: with copy-on-write an in-place call on it would not reach the copy.
        return f"{subject}_new = {copied}; {receiver} = {receiver}.{call.method}({call.arguments})"
    arguments = ", ".join(filter(None, [call.arguments, "inplace=True"]))
    return f"{subject}_new = {copied}; {receiver}.{call.method}({arguments})"


def _copy_fix(call: MethodCall, subject_value: Any) -> str:
    """The same call, made on a copy bound to a new name."""
    subject = call.alias or call.name
    receiver = _renamed(call.receiver, subject, f"{subject}_new")
    statement = f"{receiver}.{call.method}({call.arguments})"
    if call.result:
        statement = f"{call.result} = {statement}"
    copied = _copy_of(subject, subject_value, nested=bool(call.path))
    return f"{subject}_new = {copied}; {statement}"


def _copy_of(subject: str, value: Any, nested: bool) -> str:
    """Code for a copy of ``subject`` that takes the change: deep where the change is deep.

    >>> _copy_of("names", ["a"], nested=False), _copy_of("table", {"a": [1]}, nested=True)
    ('names.copy()', 'copy.deepcopy(table)')
    """
    kind = _kind(value)
    if kind in ("frame", "array") or (
        kind == "container" and not nested and hasattr(value, "copy")
    ):
        return f"{subject}.copy()"  # pandas and numpy copies are deep
    return f"copy.deepcopy({subject})"


def _comprehension(loop: str, element: str, name: str) -> str:
    """``name = {key: element <loop>}`` for a loop over ``.items()``, else a list comprehension.

    >>> _comprehension("for k, m in models.items()", "f(m)", "out")
    'out = {k: f(m) for k, m in models.items()}'
    """
    header = ast.parse(f"{loop}:\n    pass").body[0]
    assert isinstance(header, ast.For)  # cells.analyse wrote `loop` as a for clause
    target, iterable = header.target, header.iter
    over_items = (
        isinstance(iterable, ast.Call)
        and isinstance(iterable.func, ast.Attribute)
        and iterable.func.attr == "items"
    )
    if over_items and isinstance(target, ast.Tuple) and len(target.elts) == 2:
        return f"{name} = {{{ast.unparse(target.elts[0])}: {element} {loop}}}"
    return f"{name} = [{element} {loop}]"


def _renamed(source: str, old: str, new: str) -> str:
    """``source`` with the name it starts from changed: ``df["a"]`` -> ``df_new["a"]``.

    >>> _renamed("df['a'].str", "df", "df_new")
    "df_new['a'].str"
    """
    tree = ast.parse(source, mode="eval")
    node = tree.body
    while True:
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value  # `models.get("rf")`
        else:
            break
    if isinstance(node, ast.Name) and node.id == old:
        node.id = new
    return ast.unparse(tree)


def _figure_fix(name: str, root: Any) -> str:
    """Code that makes, in this step, the figure (or axes) that ``name`` holds."""
    if _instance(root, "matplotlib.figure", "Figure"):
        return f"{name}, ax = plt.subplots()"
    if _kind(root) == "array":
        return f"fig, {name} = plt.subplots({', '.join(map(str, root.shape))})"
    if isinstance(root, Mapping):  # what plt.subplot_mosaic returns
        return f"fig, {name} = plt.subplot_mosaic({[list(root)]!r})"
    if isinstance(root, (list, tuple)):
        return f"fig, {name} = plt.subplots({len(root)})"
    return f"fig, {name} = plt.subplots()"


def _generator_fix(subject: str, value: Any) -> str:
    """Code that makes a seeded generator of the same type as ``value``."""
    if isinstance(value, random.Random):
        return f"{subject} = random.Random(42)"
    if _instance(value, "numpy.random", "RandomState"):
        return f"{subject} = np.random.RandomState(42)"
    return f"{subject} = np.random.default_rng(42)"


# -- judging an assignment, a del or a += ----------------------------------------------------------


def _judge_change(
    change: Mutation, namespace: Mapping[str, Any], is_code: Callable[[Any], bool]
) -> Finding | None:
    root = _root(change.name, namespace)
    if root is not _UNKNOWN and is_code(root):
        return None
    changed = None if root is _UNKNOWN else _parts(root, (*change.via, *change.path))
    if changed is not None and all(_kind(value) == "immutable" for value in changed):
        return None  # `n += 1` binds a new number, `df["a"][0] = 1` changes a copy
    subjects = None if root is _UNKNOWN else _parts(root, change.via)
    value = subjects[0] if subjects else _UNKNOWN
    subject = change.alias or change.name
    if _kind(value) == "artist":
        fix = _figure_fix(change.name, root)
        return _finding(change, change.how, fix, advice="Make the figure in this step instead")
    return _finding(
        change, change.how, f"{subject}_new = {_copy_of(subject, value, bool(change.path))}"
    )
