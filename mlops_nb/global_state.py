"""Global library settings a step can change (seeds, options, warning filters): read, diff, re-apply, hash."""

from __future__ import annotations

import ast
import inspect
import pickle
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from .cells import parse
from .hashing import hash_bytes

__all__ = ["apply", "changes", "draws_from_global_rng", "settings_hashes", "snapshot"]

# Settings that hold named options: a step's change to them is recorded option by option, and
# they can change what a later step computes or shows, so they enter its fingerprint. The random
# states are not among them (only steps that draw from them depend on them: see
# draws_from_global_rng), nor are the warning filters (they change what a step prints).
OPTION_SETTINGS = ("sklearn", "pandas", "matplotlib", "numpy.printoptions", "numpy.errstate")

# numpy's documented defaults (the same in numpy 1.26 and 2.x, which added `override_repr`).
_NUMPY_DEFAULTS: dict[str, dict[str, Any]] = {
    "numpy.printoptions": {
        "edgeitems": 3, "threshold": 1000, "floatmode": "maxprec", "precision": 8,
        "suppress": False, "linewidth": 75, "nanstr": "nan", "infstr": "inf", "sign": "-",
        "formatter": None, "legacy": False, "override_repr": None,
    },
    "numpy.errstate": {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"},
}  # fmt: skip

# The functions of numpy.random and of random that draw from the module's global generator.
# numpy's legacy API is frozen; a test checks both lists against the installed modules.
NUMPY_DRAWS = frozenset(
    {
        "beta", "binomial", "bytes", "chisquare", "choice", "dirichlet", "exponential", "f",
        "gamma", "geometric", "gumbel", "hypergeometric", "laplace", "logistic", "lognormal",
        "logseries", "multinomial", "multivariate_normal", "negative_binomial",
        "noncentral_chisquare", "noncentral_f", "normal", "pareto", "permutation", "poisson",
        "power", "rand", "randint", "randn", "random", "random_integers", "random_sample", "ranf",
        "rayleigh", "sample", "shuffle", "standard_cauchy", "standard_exponential",
        "standard_gamma", "standard_normal", "standard_t", "triangular", "uniform", "vonmises",
        "wald", "weibull", "zipf",
    }
)  # fmt: skip
RANDOM_DRAWS = frozenset(
    {
        "betavariate", "binomialvariate", "choice", "choices", "expovariate", "gammavariate",
        "gauss", "getrandbits", "lognormvariate", "normalvariate", "paretovariate", "randbytes",
        "randint", "random", "randrange", "sample", "shuffle", "triangular", "uniform",
        "vonmisesvariate", "weibullvariate",
    }
)  # fmt: skip
_DRAWS = {"numpy.random": NUMPY_DRAWS, "random": RANDOM_DRAWS}
_RESETS = {"numpy.random": {"seed", "set_state"}, "random": {"seed", "setstate"}}


def snapshot() -> dict[str, Any]:
    """The current value of each tracked global setting, for the libraries already imported.

    Keys: ``"warnings"`` (the filter list), ``"random"`` and ``"numpy.random"`` (the global
    generators' states), ``"numpy.printoptions"``, ``"numpy.errstate"``, ``"sklearn"``,
    ``"pandas"`` and ``"matplotlib"`` (rcParams), the last five as dicts of options. Nothing
    is imported: a library the session has not imported has no settings to record.

    >>> "warnings" in snapshot()
    True
    """
    snap: dict[str, Any] = {"warnings": list(warnings.filters)}
    if (random := sys.modules.get("random")) is not None:
        snap["random"] = random.getstate()
    if (numpy_random := sys.modules.get("numpy.random")) is not None:  # numpy imports it lazily
        snap["numpy.random"] = numpy_random.get_state()
    if (numpy := sys.modules.get("numpy")) is not None:
        snap["numpy.printoptions"] = numpy.get_printoptions()
        snap["numpy.errstate"] = numpy.geterr()
    if (sklearn := sys.modules.get("sklearn")) is not None:
        snap["sklearn"] = sklearn.get_config()
    if "pandas" in sys.modules:
        snap["pandas"] = _pandas_options()
    if (matplotlib := sys.modules.get("matplotlib")) is not None:
        snap["matplotlib"] = _rc_params(matplotlib.rcParams)
    return snap


def _pandas_options() -> dict[str, Any]:
    """Every registered pandas option, by its full name, read from pandas' own config dict.

    ``pd.get_option`` for each of the ~75 options costs ~8x more (it matches a pattern per call)
    and warns for every deprecated option; the values themselves are immutable, so they need no copy.
    """
    from pandas._config import config

    registered = config._registered_options
    options: dict[str, Any] = {}

    def walk(level: dict[str, Any], prefix: str) -> None:
        for key, value in level.items():
            if prefix + key in registered:  # an option's value may itself be a dict
                options[prefix + key] = value
            elif isinstance(value, dict):
                walk(value, prefix + key + ".")

    walk(config._global_config, "")
    return options


def _rc_params(rc_params: Any) -> dict[str, Any]:
    """matplotlib's rcParams as a plain dict, without the backend choices and interactive mode.

    ``dict.items`` reads the values as stored: no validation, no deprecation warnings, and no
    backend resolution (reading ``rcParams["backend"]`` can import pyplot). The backend and
    interactive mode are the front end's choice (``%matplotlib``; Jupyter's inline backend turns
    interactive mode on when pyplot is imported): neither changes what a step computes, and the
    backend's default is a sentinel that cannot be pickled.
    """
    params = dict(dict.items(rc_params))
    for front_end_choice in ("backend", "backend_fallback", "interactive"):
        params.pop(front_end_choice, None)  # matplotlib.use() turns backend_fallback off
    return params


def _defaults(name: str) -> dict[str, Any]:
    """The import-time values of an option setting, as a fresh kernel would have them."""
    if name in _NUMPY_DEFAULTS:
        return _NUMPY_DEFAULTS[name]
    if name == "sklearn":
        # set_config changes a per-thread copy of this dict, which keeps the import-time values.
        # Were it gone, every option would count as changed: fingerprints less stable, not wrong.
        return dict(getattr(sys.modules.get("sklearn._config"), "_global_config", {}))
    if name == "pandas":
        from pandas._config import config

        return {key: option.defval for key, option in config._registered_options.items()}
    import matplotlib

    return _rc_params(matplotlib.rcParamsOrig)  # the values read from matplotlibrc at import


def _changed_options(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    # Unchanged options hold the very same objects: `is` skips comparing e.g. cyclers, ~5x faster.
    return {
        key: value
        for key, value in new.items()
        if key not in old or (old[key] is not value and old[key] != value)
    }


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What changed between two snapshots: per setting, its new value (only the changed options).

    A library first imported between the snapshots is compared with its import-time defaults,
    so a step that imports pandas and sets one option records that one option.

    >>> changes({"pandas": {"display.max_rows": 60, "display.precision": 6}},
    ...         {"pandas": {"display.max_rows": 5, "display.precision": 6}})
    {'pandas': {'display.max_rows': 5}}
    >>> changes(snapshot(), snapshot())
    {}
    """
    found: dict[str, Any] = {}
    for name, new in after.items():
        if name in OPTION_SETTINGS:
            changed = _changed_options(before[name] if name in before else _defaults(name), new)
            if changed:
                found[name] = changed
        elif name not in before or _differs(name, before[name], new):
            found[name] = new  # a random state or the whole list of warning filters
    return found


def _differs(name: str, old: Any, new: Any) -> bool:
    if name == "numpy.random":  # its state holds an array, whose == compares element by element
        return pickle.dumps(old) != pickle.dumps(new)
    return bool(old != new)


def apply(recorded: Mapping[str, Any]) -> None:
    """Re-apply recorded :func:`changes`, each through its library's public setter.

    Used when a step is restored from the store instead of being executed. A library is only
    imported when there is something to set in it.

    >>> with warnings.catch_warnings():
    ...     before = snapshot()
    ...     warnings.simplefilter("error")
    ...     recorded = changes(before, snapshot())
    >>> sorted(recorded)
    ['warnings']
    >>> with warnings.catch_warnings():
    ...     apply(recorded)
    ...     warnings.filters[0][0]
    'error'
    """
    # Filters first, so that they govern the warnings re-applying the rest may raise
    # (e.g. setting a deprecated pandas option).
    if "warnings" in recorded:
        # The list after the step is the state to reproduce: filters match first-to-last,
        # filterwarnings() moves a duplicate to the front and resetwarnings() empties the list,
        # so replaying calls on another list could not give the same order. resetwarnings()
        # tells the warnings machinery the filters changed, so "once" registries are rebuilt.
        warnings.resetwarnings()
        warnings.filters[:] = recorded["warnings"]  # type: ignore[index]  # typed read-only
    if "random" in recorded:
        import random

        random.setstate(recorded["random"])
    if {"numpy.random", "numpy.printoptions", "numpy.errstate"} & recorded.keys():
        import numpy as np

        if "numpy.random" in recorded:
            np.random.set_state(recorded["numpy.random"])
        if "numpy.printoptions" in recorded:
            # set_printoptions resets the formatter to None unless it is passed: pass them all.
            np.set_printoptions(**{**np.get_printoptions(), **recorded["numpy.printoptions"]})
        if "numpy.errstate" in recorded:
            np.seterr(**recorded["numpy.errstate"])
    if "sklearn" in recorded:
        import sklearn

        sklearn.set_config(**recorded["sklearn"])
    if "pandas" in recorded:
        import pandas as pd

        for key, value in recorded["pandas"].items():
            pd.set_option(key, value)
    if "matplotlib" in recorded:
        import matplotlib

        matplotlib.rcParams.update(recorded["matplotlib"])


# Options that change how fast a result is computed, never the result: pandas' compute.*
# (dask.dataframe turns numexpr off when it is imported, e.g. on a Dask worker).
_SPEED_ONLY = ("compute.",)


def settings_hashes(snap: Mapping[str, Any]) -> dict[str, str]:
    """A short hash per setting that can change a step's result, for the step's fingerprint.

    Only options that differ from the library's import-time defaults are hashed, and a setting
    left at its defaults has no entry: a fingerprint is then the same whether or not the
    library happens to be imported yet (e.g. after a kernel restart). Equal across processes.

    >>> settings_hashes({"numpy.errstate": {"divide": "warn", "over": "warn",
    ...                                     "under": "ignore", "invalid": "warn"}})
    {}
    >>> list(settings_hashes({"numpy.errstate": {"divide": "raise"}}))
    ['numpy.errstate']
    """
    hashes = {}
    for name in OPTION_SETTINGS:
        if name in snap:
            changed = _changed_options(_defaults(name), snap[name])
            for key in [key for key in changed if key.startswith(_SPEED_ONLY)]:
                del changed[key]
            if changed:
                hashes[name] = hash_bytes(_stable_repr(changed).encode())
    return hashes


def _stable_repr(value: Any) -> str:
    """``repr(value)``, but the same in every process: functions by name, dicts sorted.

    A function's repr shows its memory address, so functions are known by their name: a
    formatter whose body changes under the same name (or another lambda) is not noticed.
    """
    if isinstance(value, dict):
        items = sorted((repr(k), _stable_repr(v)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return type(value).__name__ + "(" + ", ".join(map(_stable_repr, value)) + ")"
    if inspect.isroutine(value) or inspect.isclass(value):
        owner = getattr(value, "__self__", None)  # e.g. "{:.2f}".format, a pandas float_format
        bound = "" if owner is None or inspect.ismodule(owner) else repr(owner) + "."
        return f"{getattr(value, '__module__', None)}:{bound}{value.__qualname__}"
    return repr(value)


def draws_from_global_rng(code: str, namespace: Mapping[str, Any]) -> list[str]:
    """Which global random generators (``"numpy.random"``, ``"random"``) a step's code draws from.

    A static check: a name counts when the cell's own imports or ``namespace`` bind it to numpy,
    ``numpy.random``, ``random`` or one of their drawing functions. Seeding is not a draw, and a
    generator the cell seeds (top level, unconditionally) before drawing from it is left out:
    the result does not depend on its state before the step. Draws made inside libraries
    (e.g. scikit-learn with ``random_state=None``) cannot be seen.

    >>> import random
    >>> draws_from_global_rng("x = random.random()", {"random": random})
    ['random']
    >>> draws_from_global_rng("import numpy as np\\nx = np.random.default_rng(0).normal()", {})
    []
    """
    tree = parse(code)
    imported = _imported_paths(tree)
    rebound = _assigned_names(tree)

    def path(node: ast.expr) -> str | None:
        if isinstance(node, ast.Attribute):
            base = path(node.value)
            return f"{base}.{node.attr}" if base else None
        if not isinstance(node, ast.Name):
            return None
        if node.id in imported:
            return imported[node.id]
        if node.id in rebound or node.id not in namespace:
            return None
        return _object_path(namespace[node.id])

    seeded: set[str] = set()
    drawn: set[str] = set()
    for statement in tree.body:
        for node in ast.walk(statement):  # a reference counts too: map(np.random.rand, sizes)
            if isinstance(node, (ast.Attribute, ast.Name)):
                module, _, function = (path(node) or "").rpartition(".")
                if function in _DRAWS.get(module, ()) and module not in seeded:
                    drawn.add(module)
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            module, _, function = (path(statement.value.func) or "").rpartition(".")
            if function in _RESETS.get(module, ()) and module not in drawn:
                seeded.add(module)
    return sorted(drawn)


def _assigned_names(tree: ast.Module) -> set[str]:
    """Names the code binds other than by importing: `random = np.random.default_rng(0)`
    makes `random` no longer mean the module."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


def _imported_paths(tree: ast.Module) -> dict[str, str]:
    """The names the code's own import statements bind, with the dotted path each stands for."""
    paths = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:  # `import numpy.random as npr` binds the submodule
                    paths[alias.asname] = alias.name
                else:  # `import numpy.random` binds `numpy`
                    top = alias.name.partition(".")[0]
                    paths[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                paths[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return paths


def _object_path(value: Any) -> str | None:
    """The dotted path of a module, or of a drawing function of numpy.random or random."""
    if inspect.ismodule(value):
        return value.__name__
    name = getattr(value, "__name__", None)
    for module_name in _DRAWS:
        module = sys.modules.get(module_name)
        # The module holds each of its functions once, e.g. `rand = _rand.rand` in numpy.
        if module is not None and name and getattr(module, name, None) is value:
            return f"{module_name}.{name}"
    return None
