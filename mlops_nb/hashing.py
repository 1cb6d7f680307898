"""Content hashes of values and of code, equal for equal content across store round trips and restarts."""

from __future__ import annotations

import dis
import functools
import importlib.metadata
import io
import os
import pickle
import platform
import random
import site
import sys
import sysconfig
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import xxhash

from .errors import UnhashableValueError

__all__ = ["code_dependencies", "content_hash", "hash_bytes"]


def hash_bytes(data: bytes | memoryview) -> str:
    """xxh3-128 of raw bytes, as hex: a non-cryptographic hash at many GB/s.

    >>> hash_bytes(b"abc") == hash_bytes(b"abc")
    True
    """
    return xxhash.xxh3_128_hexdigest(data)


def content_hash(value: Any) -> str:
    """Return a hex digest of ``value``'s content.

    DataFrames, Series and numeric arrays are hashed straight from their memory buffers, so a
    1 GB frame costs a fraction of a second. Functions and classes are hashed by what they do:
    their code (never its file name or line numbers), defaults, closure and the globals they
    read; a user's own module by its in-memory content; a library by its version. Other objects
    are hashed from their state, or from their pickle as a last resort.

    >>> content_hash([1, 2, 3]) == content_hash([1, 2, 3])
    True
    >>> content_hash({"a": 1}) == content_hash({"a": 2})
    False
    >>> def scale(x):
    ...     return 2 * x
    >>> before = content_hash(scale)
    >>> def scale(x):
    ...     # a comment and a blank line do not change what the function computes
    ...
    ...     return 2 * x
    >>> content_hash(scale) == before
    True
    >>> def scale(x):
    ...     return 3 * x
    >>> content_hash(scale) == before
    False
    """
    state, modules = _walk(value)
    # The user modules met along the way, each once, in an order that does not depend on the walk.
    for name, digest in sorted(modules.items()):
        state.update(f"{name}\x00{digest}".encode())
    return state.digest.hexdigest()


def code_dependencies(value: Any) -> dict[str, str]:
    """Name the code ``value`` depends on, each with its hash or version.

    For a function, class, module or importable object: every user module reached (transitively,
    with the hash of its in-memory content) and every third-party distribution reached (with
    its version). Comparing two results says why a step's code is no longer the same.

    Parameters
    ----------
    value : object
        Usually a function or class defined in a notebook cell, or a module.

    Returns
    -------
    dict of str to str
        ``{"module utils (/abs/path/utils.py)": "<hash>", "library scikit-learn": "1.5.0"}``.

    Examples
    --------
    >>> import numpy
    >>> list(code_dependencies(numpy.mean))
    ['library numpy']
    >>> def mean(values):
    ...     return numpy.mean(values)
    >>> list(code_dependencies(mean))
    ['library numpy']
    """
    state, modules = _walk(value)
    named = {
        f"module {name} ({_location(state.modules[name])})": digest
        for name, digest in sorted(modules.items())
    }
    for top in sorted(state.libraries):
        if not _is_standard(top):
            named[f"library {_distribution(top)}"] = _library_version(top)
    return named


class _State:
    """One digest being computed, with what the walk has met so far.

    ``update`` is the digest's own method, so feeding it bytes costs no extra Python call.
    """

    def __init__(self, parent: _State | None = None, home: types.ModuleType | None = None) -> None:
        self.digest = xxhash.xxh3_128()
        self.update: Callable[[Any], None] = self.digest.update
        # Ids of the functions, classes and instances being hashed: meeting one again is a cycle.
        self.active: set[int] = parent.active if parent else set()
        # User modules met, by name: their content is hashed once, after the walk.
        self.modules: dict[str, types.ModuleType] = parent.modules if parent else {}
        # Top-level names of the libraries met.
        self.libraries: set[str] = parent.libraries if parent else set()
        # Digests of the classes met, by id and the ids being hashed further up.
        self.classes: dict[tuple[int, frozenset[int]], bytes] = parent.classes if parent else {}
        # The user module whose own content is being hashed, if any.
        self.home: types.ModuleType | None = home or (parent.home if parent else None)


def _walk(value: Any) -> tuple[_State, dict[str, str]]:
    """Hash ``value``, then the content of every user module it reaches (by name)."""
    state = _State()
    try:
        _update(state, value)
        return state, _module_digests(state)
    except RecursionError:
        raise UnhashableValueError(
            f"Cannot hash a {type(value).__qualname__} value: it is nested too deeply or contains "
            f"itself (e.g. a list appended to itself). Steps fingerprint their inputs by content: "
            f"flatten it, or keep it inside one step."
        ) from None


def _digest(state: _State, value: Any) -> str:
    """The hash of one part of a value, computed on its own but sharing what the walk met."""
    part = _State(state)
    _update(part, value)
    return part.digest.hexdigest()


_SCALARS = (bool, int, float, complex, str, bytes, type(None), types.EllipsisType)


def _update(state: _State, value: Any) -> None:
    if isinstance(value, _SCALARS):
        _update_scalar(state, value)
    elif isinstance(value, (list, tuple)):
        _update_sequence(state, value)
    elif isinstance(value, dict):
        _update_mapping(state, value)
    elif isinstance(value, (set, frozenset)):
        _update_set(state, value)
    elif type(value).__module__.startswith(("numpy", "pandas")):
        _update_numeric(state, value)
    elif type(value).__module__.startswith("sklearn."):
        _update_estimator(state, value)
    else:
        _update_object(state, value)


def _update_numeric(state: _State, value: Any) -> None:
    # numpy and pandas are only imported when such a value is actually hashed.
    import numpy as np
    import pandas as pd

    if isinstance(value, np.ndarray):
        _update_array(state, value)
    elif isinstance(value, np.generic):
        _update_scalar(state, value)
    elif isinstance(value, pd.DataFrame):
        _update_frame(state, value)
    elif isinstance(value, pd.Series):
        _update_series(state, value)
    elif isinstance(value, pd.Index):
        _update_index(state, value)
    elif isinstance(value, (np.random.RandomState, np.random.Generator, np.random.BitGenerator)):
        _update_generator(state, value)
    else:
        _update_object(state, value)


def _tag(state: _State, value: Any) -> None:
    state.update(type(value).__qualname__.encode())
    state.update(b"\x00")


def _update_scalar(state: _State, value: Any) -> None:
    _tag(state, value)
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python converts to decimal: hex has no limit
        text = hex(value)
    state.update(text.encode("utf-8", "surrogatepass"))
    state.update(b"\x01")


def _update_sequence(state: _State, value: list[Any] | tuple[Any, ...]) -> None:
    _tag(state, value)
    state.update(len(value).to_bytes(8, "little"))
    for item in value:
        _update(state, item)


def _update_mapping(state: _State, value: dict[Any, Any]) -> None:
    _tag(state, value)
    state.update(len(value).to_bytes(8, "little"))
    for key, item in value.items():
        _update(state, key)
        _update(state, item)


def _update_set(state: _State, value: set[Any] | frozenset[Any]) -> None:
    _tag(state, value)
    for digest in sorted(_digest(state, item) for item in value):  # sets have no order
        state.update(digest.encode())


def _update_array(state: _State, array: Any) -> None:
    import numpy as np

    _tag(state, array)
    state.update(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype.hasobject:
        _update_sequence(state, array.ravel().tolist())
    elif array.dtype.names:  # structured: hash field by field, never the padding between them
        for name in array.dtype.names:
            _update_array(state, array[name])
    else:
        # A flat byte view works for every fixed-size dtype (datetimes too) and copies nothing
        # when the array is already contiguous.
        state.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def _update_series(state: _State, series: Any) -> None:
    _tag(state, series)
    _update(state, series.name)
    _update_index(state, series.index)
    _update_column(state, series)


def _update_frame(state: _State, frame: Any) -> None:
    _tag(state, frame)
    _update_index(state, frame.columns)
    _update_index(state, frame.index)
    for position in range(frame.shape[1]):
        _update_column(state, frame.iloc[:, position])


def _update_index(state: _State, index: Any) -> None:
    import pandas as pd

    _tag(state, index)
    _update(state, list(index.names))
    if isinstance(index, pd.RangeIndex):
        _update(state, (index.start, index.stop, index.step))
    else:
        _update_column(state, index.to_series(index=pd.RangeIndex(len(index))))


def _update_column(state: _State, column: Any) -> None:
    """Hash one column's dtype and values, straight from its memory buffers where possible."""
    import numpy as np
    import pandas as pd

    state.update(str(column.dtype).encode())
    values = column.array
    numpy_values = getattr(values, "_ndarray", None)  # numbers, datetimes, object columns
    if isinstance(column.dtype, pd.CategoricalDtype):
        _update(state, column.dtype.ordered)
        _update_index(state, column.dtype.categories)
        _update_array(state, values.codes)
    elif numpy_values is not None:
        _update_array(state, numpy_values)
    elif hasattr(values, "_mask") and hasattr(values, "_data"):  # nullable Int64, boolean...
        mask = values._mask
        _update_array(state, mask)
        _update_array(state, np.where(mask, values._data.dtype.type(0), values._data))
    elif hasattr(values, "_pa_array"):  # Arrow-backed, e.g. pandas' default str columns
        _update_arrow(state, values._pa_array)
    else:
        hashes = pd.util.hash_pandas_object(column, index=False, categorize=True)
        _update_array(state, hashes.to_numpy())


def _update_arrow(state: _State, chunked: Any) -> None:
    """Hash an Arrow column from its buffers, independently of how it is split into chunks."""
    import numpy as np
    import pyarrow as pa

    state.update(str(chunked.type).encode())
    chunks = chunked.chunks
    for chunk in chunks:  # validity, as one byte per value
        state.update(np.asarray(chunk.is_null()).view(np.uint8).tobytes())
    if pa.types.is_string(chunked.type) or pa.types.is_large_string(chunked.type) or pa.types.is_binary(
        chunked.type
    ) or pa.types.is_large_binary(chunked.type):
        offset_type = np.int64 if "large" in str(chunked.type) else np.int32
        spans = []
        for chunk in chunks:
            buffers = chunk.buffers()
            offsets = np.frombuffer(buffers[1], dtype=offset_type)[chunk.offset : chunk.offset + len(chunk) + 1]
            state.update(np.diff(offsets).astype(np.int64).tobytes())  # value lengths
            spans.append((buffers[2], int(offsets[0]), int(offsets[-1])))
        for data, start, end in spans:
            if data is not None:
                state.update(memoryview(data)[start:end])
    else:
        for chunk in chunks:
            _update_sequence(state, chunk.to_pylist())


def _update_estimator(state: _State, value: Any) -> None:
    """scikit-learn objects by their state (parameters and fitted arrays), not by pickle bytes.

    Pickle bytes can differ for equal models (e.g. padding inside a tree's node array).
    """
    try:
        contents = value.__getstate__()
    except Exception:  # noqa: BLE001 -- anything unusual is hashed by its pickle recipe instead
        contents = None
    if not isinstance(contents, dict):  # e.g. the compiled loss of a gradient boosting model
        _update_reduced(state, value)
        return
    _tag(state, value)
    _update(state, {k: v for k, v in contents.items() if k != "_sklearn_version"})


def _update_pickle(state: _State, value: Any) -> None:
    _tag(state, value)
    try:
        if isinstance(value, io.IOBase):  # pickling would read or lose the stream's position
            raise TypeError("open files and streams are not data")
        import cloudpickle

        data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise UnhashableValueError(
            f"Cannot hash a {type(value).__qualname__} value ({error}). Steps fingerprint their "
            f"inputs by content: convert it to data (a list, DataFrame, array...) before passing "
            f"it between steps, or keep it inside one step."
        ) from None
    state.update(data)


# -- code: functions, classes, modules ------------------------------------------------------------


def _update_object(state: _State, value: Any) -> None:
    """Anything that is not plain data: code, modules, generators, figures, instances."""
    if isinstance(value, types.ModuleType):
        _update_module(state, value)
    elif isinstance(value, types.CodeType):
        state.update(_code_facts(value).digest)
    elif (home := _importable_from(value)) is not None and home is not state.home:
        _update_reference(state, value, home)
    elif isinstance(value, types.FunctionType):
        _update_function(state, value)
    elif isinstance(value, type):
        _update_class(state, value)
    elif isinstance(value, types.MethodType):
        _tag(state, value)
        _update(state, (value.__func__, value.__self__))
    elif _is_artist(value):
        _update_display_only(state, value)
    elif isinstance(value, random.Random) and not isinstance(value, random.SystemRandom):
        _update_generator(state, value)
    elif _is_users_class(type(value)):
        _update(state, type(value))
        _update_reduced(state, value)
    elif (wrapped := _wrapped_function(value)) is not None:  # e.g. functools.lru_cache
        _tag(state, value)
        _update(state, wrapped)
    elif isinstance(value, functools.partial):  # e.g. partial(train, learning_rate=0.1)
        _tag(state, value)
        _update(state, (value.func, value.args, value.keywords))
    else:
        _update_pickle(state, value)


def _importable_from(value: Any) -> types.ModuleType | None:
    """The module that ``value`` can be imported from by its qualified name, if any.

    Objects of the notebook itself (``__main__``) are left out: they are hashed by their code.
    """
    try:
        module_name, qualname = value.__module__, value.__qualname__
        if not isinstance(qualname, str) or "<" in qualname or module_name == "__main__":
            return None
        module = sys.modules.get(module_name)
        found: Any = module
        for part in qualname.split("."):
            found = getattr(found, part, None)
    except Exception:  # noqa: BLE001 -- most objects have no qualified name; odd ones raise
        return None
    return module if found is value else None


def _update_reference(state: _State, value: Any, home: types.ModuleType) -> None:
    """An object importable by name: the name, plus its module's version or in-memory content."""
    _tag(state, value)
    state.update(value.__qualname__.encode())
    _update_module(state, home)


def _update_module(state: _State, module: types.ModuleType) -> None:
    """A library module as its name and version; a user module as its name, its content later."""
    _tag(state, module)
    state.update(module.__name__.encode())
    kind = _module_kind(module)
    if kind == "library":
        top = module.__name__.partition(".")[0]
        state.update(_library_version(top).encode())
        state.libraries.add(top)
    elif kind == "user":
        state.modules[module.__name__] = module
    # "main", the notebook's own namespace, is never hashed whole: steps hash the values they read.


class _CodeFacts(NamedTuple):
    digest: bytes
    globals: tuple[str, ...]  # global names the code and its nested code read, sorted


# Facts per code object, which never changes. Keeping the code object alive in the value keeps
# its id from being reused by another one.
_CODE_FACTS: dict[int, tuple[types.CodeType, _CodeFacts]] = {}
_CODE_FACTS_LIMIT = 100_000
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})


def _code_facts(code: types.CodeType) -> _CodeFacts:
    """Hash a code object by its structure, and list the global names it reads.

    The file name, first line number and line table are left out: a cell runs from a new file
    name in every kernel, and a comment or a blank line above a function moves its lines.
    """
    cached = _CODE_FACTS.get(id(code))
    if cached is not None:
        return cached[1]
    state = _State()
    state.update(code.co_code)
    _update(state, code.co_consts)  # nested code objects (lambdas, inner functions) recurse here
    _update(state, (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars))
    _update(state, (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount))
    _update(state, (code.co_flags, code.co_qualname))
    state.update(code.co_exceptiontable)
    names = {i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_LOADS}
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names.update(_code_facts(constant).globals)
    facts = _CodeFacts(state.digest.hexdigest().encode(), tuple(sorted(names)))
    if len(_CODE_FACTS) >= _CODE_FACTS_LIMIT:  # a kernel defining functions for days
        _CODE_FACTS.clear()
    _CODE_FACTS[id(code)] = (code, facts)
    return facts


def _update_function(state: _State, func: types.FunctionType) -> None:
    """A function by what it computes: code, defaults, closure values and the globals it reads."""
    _tag(state, func)
    state.update(func.__qualname__.encode())
    if id(func) in state.active:  # (mutual) recursion: it is already being hashed further up
        state.update(b"<back reference>")
        return
    state.active.add(id(func))
    try:
        facts = _code_facts(func.__code__)
        state.update(facts.digest)
        if func.__defaults__ is None and func.__kwdefaults__ is None:
            state.update(b"<no defaults>")
        else:
            _update(state, (func.__defaults__, func.__kwdefaults__))
        _update_closure(state, func)
        # Inside a user module's own content, its globals are hashed once, as that content.
        if state.home is None or func.__globals__ is not vars(state.home):
            _update_globals(state, func.__globals__, facts.globals)
        _update_home(state, func.__module__)
    finally:
        state.active.discard(id(func))


def _update_closure(state: _State, func: types.FunctionType) -> None:
    for cell in func.__closure__ or ():
        contents = _cell_contents(cell)
        if contents is _EMPTY_CELL:
            state.update(b"<empty cell>")
        else:
            _update(state, contents)


_EMPTY_CELL = object()


def _cell_contents(cell: types.CellType) -> Any:
    """A closure variable's value, or ``_EMPTY_CELL`` while its function has not bound it yet."""
    try:
        return cell.cell_contents
    except ValueError:
        return _EMPTY_CELL


def _update_globals(state: _State, namespace: dict[str, Any], names: Iterable[str]) -> None:
    # Builtins (len, print...) are not in the namespace, so they are skipped here.
    for name in names:
        if name in namespace:
            state.update(f"{name}\x00".encode())
            _update(state, namespace[name])


def _update_home(state: _State, module_name: Any) -> None:
    """Count the user module that defines a function or class among what the walk met."""
    module = sys.modules.get(module_name) if isinstance(module_name, str) else None
    if module is not None and module is not state.home and _module_kind(module) == "user":
        _update_module(state, module)


# Entries of a class body that say nothing about what it computes, or that change by themselves:
# pickling adds ``__slotnames__``, ``_abc_impl`` is ABC's cache, and the methods a dataclass
# generates already reflect its fields.
_CLASS_BOOKKEEPING = frozenset(
    {"__module__", "__dict__", "__weakref__", "__doc__", "__annotations__", "__slotnames__",
     "_abc_impl", "__dataclass_fields__", "__dataclass_params__"}
)  # fmt: skip
_SLOT_DESCRIPTORS = (types.MemberDescriptorType, types.GetSetDescriptorType)


def _update_class(state: _State, cls: type) -> None:
    """A class by its definition, hashed once per walk: 10,000 instances have just one class."""
    # Its digest depends on which objects are being hashed further up (back references).
    key = (id(cls), frozenset(state.active))
    digest = state.classes.get(key)
    if digest is None:
        part = _State(state)
        _update_class_body(part, cls)
        digest = state.classes[key] = part.digest.digest()
    state.update(digest)


def _update_class_body(state: _State, cls: type) -> None:
    """A class by its definition: names, bases, methods by their code and values by content."""
    _tag(state, cls)  # the metaclass
    state.update(f"{cls.__name__}\x00{cls.__qualname__}".encode())
    if id(cls) in state.active:  # a method that refers to its own class
        state.update(b"<back reference>")
        return
    state.active.add(id(cls))
    try:
        _update(state, cls.__bases__)
        for name, member in _sorted_items(vars(cls)):
            # Slot descriptors are already described by __slots__.
            if name not in _CLASS_BOOKKEEPING and not isinstance(member, _SLOT_DESCRIPTORS):
                state.update(f"{name}\x00".encode())
                _update_member(state, member)
        _update_home(state, cls.__module__)
    finally:
        state.active.discard(id(cls))


def _update_member(state: _State, member: Any) -> None:
    """One entry of a class body."""
    _tag(state, member)
    if isinstance(member, (staticmethod, classmethod)):
        _update(state, member.__func__)
    elif isinstance(member, property):
        _update(state, (member.fget, member.fset, member.fdel))
    elif isinstance(member, functools.cached_property):
        _update(state, member.func)
    elif isinstance(member, (types.FunctionType, type)):
        _update(state, member)
    else:
        try:
            state.update(_digest(state, member).encode())
        except UnhashableValueError:
            pass  # e.g. a lock shared by all instances: not part of what the class computes


def _is_users_class(cls: type) -> bool:
    """Whether a class was defined in the notebook or in one of the user's own modules."""
    module = sys.modules.get(cls.__module__)
    return module is not None and _module_kind(module) in ("main", "user")


def _update_reduced(state: _State, value: Any) -> None:
    """An object by what pickling saves of it, hashed value by value instead of as pickle bytes.

    That is ``__reduce_ex__``: how to rebuild it (for most objects, its class) and its state
    (for most objects, ``__getstate__()``). Unlike ``__getstate__()`` alone, it also gives the
    items of a subclass of ``bytearray`` or ``deque``, and the state of compiled objects.
    """
    try:
        recipe = value.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 -- e.g. it holds a lock: pickle's own error says so
        _update_pickle(state, value)
        return
    if not isinstance(recipe, tuple):  # the name of a global object
        _update(state, recipe)
        return
    _tag(state, value)
    _update(state, recipe[:2])  # the function and arguments that rebuild it
    if id(value) in state.active:  # e.g. a node whose child points back to it
        state.update(b"<back reference>")
        return
    state.active.add(id(value))
    try:
        # The items of list and dict subclasses come as iterators.
        _update(state, [list(part) if isinstance(part, Iterator) else part for part in recipe[2:]])
    finally:
        state.active.discard(id(value))


def _wrapped_function(value: Any) -> types.FunctionType | None:
    """The function inside a decorator object such as ``functools.lru_cache``, if any."""
    try:
        wrapped = value.__wrapped__
    except Exception:  # noqa: BLE001 -- most objects have none; odd ones raise
        return None
    return wrapped if isinstance(wrapped, types.FunctionType) else None


def _sorted_items(namespace: Any) -> list[tuple[str, Any]]:
    """A namespace's items by name: equal content in any insertion order hashes equal."""
    return sorted(((str(name), item) for name, item in namespace.items()), key=lambda p: p[0])


# -- user modules, libraries ------------------------------------------------------------------------


def _module_digests(state: _State) -> dict[str, str]:
    """Hash every user module the walk met, and the ones they reach, transitively."""
    digests: dict[str, str] = {}
    while pending := sorted(state.modules.keys() - digests.keys()):
        for name in pending:
            digests[name] = _module_digest(state, state.modules[name])
    return digests


class _ModuleDigest(NamedTuple):
    objects: list[Any]  # what the digest was computed from, kept alive so that ids stay unique
    ids: tuple[int, ...]
    digest: str
    modules: dict[str, types.ModuleType]  # the user modules it refers to
    libraries: frozenset[str]  # and the libraries


# One entry per user module: hashing a step that uses a large package of the user's own costs
# a comparison of object ids per module, until one of its objects changes.
_MODULE_DIGESTS: dict[str, _ModuleDigest] = {}


def _module_digest(state: _State, module: types.ModuleType) -> str:
    """A user module by its in-memory content: what the kernel runs, whatever its file says now.

    Other user modules it refers to count by name here: ``_module_digests`` hashes each of them
    once, which keeps import cycles finite and the result independent of the walk's order.
    """
    objects = _module_objects(module)
    ids = tuple(map(id, objects))
    cached = _MODULE_DIGESTS.get(module.__name__)
    if cached is None or cached.ids != ids:
        own = _State(home=module)
        for name, value in _sorted_items(vars(module)):
            # Dunders are import bookkeeping (__file__...); data loaded at import is skipped.
            if not _is_dunder(name) and _is_module_content(value):
                try:
                    digest = _digest(own, value)
                except UnhashableValueError:
                    continue  # e.g. a decorator whose closure holds a lock: not code to compare
                own.update(f"{name}\x00{digest}".encode())
        cached = _ModuleDigest(
            objects, ids, own.digest.hexdigest(), own.modules, frozenset(own.libraries)
        )
        _MODULE_DIGESTS[module.__name__] = cached
    state.modules.update(cached.modules)
    state.libraries.update(cached.libraries)
    return cached.digest


def _module_objects(module: types.ModuleType) -> list[Any]:
    """The objects a user module's digest is computed from, to compare by identity.

    ``importlib.reload``, ``%autoreload``, assigning a module name, patching a method onto one
    of its classes, appending to one of its lists: each replaces or adds one of these objects.
    This runs for every user module a step reaches, each time the step runs: keep it lean.
    """
    objects: list[Any] = []
    for name, value in vars(module).items():
        if not (name[:2] == "__" and name[-2:] == "__"):
            objects.append(name)
            _add_objects(objects, value)
    return objects


_END = object()  # closes a container's items: [[1], 2] and [[1, 2]] give different lists
_CONTAINERS = (list, tuple, set, frozenset, dict)


def _add_objects(objects: list[Any], value: Any, depth: int = 0) -> None:
    objects.append(value)
    kind = type(value)
    if depth >= 3 or kind in _SCALARS or kind is types.ModuleType:
        return
    if kind is types.FunctionType:
        objects += (value.__code__, value.__defaults__, value.__kwdefaults__)
        if value.__closure__:
            objects += (_cell_contents(cell) for cell in value.__closure__)
    elif isinstance(value, type):
        objects.append(value.__bases__)
        for member in vars(value).values():
            _add_objects(objects, member, depth + 1)
    elif (kind in _CONTAINERS or isinstance(value, _CONTAINERS)) and len(value) <= 200:
        for item in [*value.keys(), *value.values()] if isinstance(value, dict) else value:
            _add_objects(objects, item, depth + 1)
        objects.append(_END)


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _is_module_content(value: Any, depth: int = 0) -> bool:
    """Definitions, and plain values small enough to be settings rather than data."""
    if isinstance(value, (*_SCALARS, types.ModuleType, types.FunctionType, type)):
        return True
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        small = depth < 3 and len(items) <= 200
        return small and all(_is_module_content(item, depth + 1) for item in items)
    return _importable_from(value) is not None or _wrapped_function(value) is not None


def _module_kind(module: types.ModuleType | None) -> str:
    """``"main"`` (the notebook itself), ``"library"`` or ``"user"`` (the user's own code)."""
    if module is None or module.__name__ == "__main__":
        return "main"
    return _kind(module.__name__.partition(".")[0], _module_file(module))


def _module_file(module: types.ModuleType) -> str | None:
    """Where a module was loaded from: its file, a namespace package's first folder, or None."""
    file = getattr(module, "__file__", None)
    if file is None:
        file = next(iter(getattr(module, "__path__", None) or ()), None)
    return file


@functools.cache
def _kind(top: str, file: str | None) -> str:
    """Decide once per module whether it belongs to a library or to the user."""
    if file is None:  # built into Python, or made in memory
        if _is_standard(top):
            return "library"
    elif os.path.realpath(file).startswith(_library_folders()):
        return "library"
    # Anything else is the user's own code, an editable install (`pip install -e .`) included:
    # its files change without its version changing. The one exception is this toolkit itself,
    # a library to its users, which may sit in an editable install of its own repository.
    return "library" if top == __name__.partition(".")[0] else "user"


def _is_standard(top: str) -> bool:
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


@functools.cache
def _library_folders() -> tuple[str, ...]:
    """The standard library and site-packages folders, each ending with a separator."""
    paths = sysconfig.get_paths()
    folders = {paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]}
    folders.update(getattr(site, "getsitepackages", list)())
    folders.add(site.getusersitepackages())
    return tuple(os.path.join(os.path.realpath(folder), "") for folder in folders)


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    # Reads the metadata of every installed distribution (a few hundred ms): once per process.
    return dict(importlib.metadata.packages_distributions())


def _library_version(top: str) -> str:
    """The version of the distribution a top-level module comes from (Python's for the stdlib).

    ``__version__`` is read each time, so a library upgraded and reloaded in a running kernel
    counts by its new version; only the slower metadata lookup is remembered.
    """
    if _is_standard(top):
        return f"python {platform.python_version()}"
    version = getattr(sys.modules.get(top), "__version__", None)
    return version if isinstance(version, str) else _installed_version(top)


@functools.cache
def _installed_version(top: str) -> str:
    try:
        return importlib.metadata.version(_distribution(top))
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _distribution(top: str) -> str:
    return _packages_distributions().get(top, [top])[0]


def _location(module: types.ModuleType) -> str:
    file = _module_file(module)
    return os.path.abspath(file) if file else "in memory"


# -- state that pickles unstably --------------------------------------------------------------------


def _update_generator(state: _State, value: Any) -> None:
    """Random number generators by their state: equal states draw equal numbers."""
    _tag(state, value)
    contents: Any
    if isinstance(value, random.Random):
        contents = value.getstate()
    else:
        import numpy as np

        if isinstance(value, np.random.RandomState):
            contents = value.get_state(legacy=False)
        elif isinstance(value, np.random.Generator):
            contents = value.bit_generator.state
        else:
            contents = value.state
    _update(state, contents)


def _is_artist(value: Any) -> bool:
    # A figure can only exist if matplotlib is loaded: never import it just to ask.
    artist = sys.modules.get("matplotlib.artist")
    return artist is not None and isinstance(value, artist.Artist)


def _update_display_only(state: _State, value: Any) -> None:
    """Figures, axes and other matplotlib artists hash as their type only.

    A figure is shown, not computed with, and its pickle differs after every round trip
    (callbacks, renderer caches), so hashing its content would only make cached steps re-run.
    """
    _tag(state, value)
    state.update(b"<display only>")
