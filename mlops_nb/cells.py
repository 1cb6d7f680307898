"""Static analysis of one cell: the names it reads, the names it defines, the names it mutates."""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from .errors import StepSyntaxError

__all__ = [
    "AccessPath",
    "CellInfo",
    "MethodCall",
    "Mutation",
    "PathStep",
    "analyse",
    "normalise",
    "parse",
]

# Methods that change their object in place, judged by name alone. `fit` is here on purpose:
# fitting an estimator that an upstream step produced silently changes that step's output.
# mlops_nb.mutations refines this list with the type of the value the name holds.
MUTATING_METHODS = frozenset(
    {
        "append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "sort",
        "reverse", "setdefault", "add", "discard", "fit", "partial_fit", "fit_transform",
        "fit_predict", "set_params", "resize", "fill", "put", "itemset",
    }
)  # fmt: skip

# One step from a value to a part of it: ("attr", "steps") for `.steps`, ("item", 0) for `[0]`
# or `.get(0)`, ("any", None) for `[i]` with a key only known at run time, ("slice", None) for
# `[a:b]`, ("iter", None) for an element met by iterating, ("values", None) for one of `.values()`.
PathStep = tuple[str, Any]
AccessPath = tuple[PathStep, ...]

# Magics whose code IPython runs in the user namespace, and their getopt-style options.
_MAGIC_OPTIONS = {"time": "", "prun": "D:l:rs:T:q", "timeit": "n:r:tcp:qov:"}


@dataclass(frozen=True)
class Mutation:
    """An in-place change of a variable the cell did not define itself.

    ``name`` is the upstream variable; ``alias`` the cell's own name the change went through
    (``clf`` in ``for clf in models.values(): clf.n_jobs = 2``), ``via`` how the alias is reached
    from ``name`` and ``path`` how the changed object is reached from the alias (or from ``name``).
    """

    name: str
    lineno: int
    how: str
    alias: str | None = None
    via: AccessPath = ()
    path: AccessPath = ()

    @property
    def by_call(self) -> bool:
        """True when a method call made the change, judged by the method's name only."""
        return self.how.startswith("calls .")


@dataclass(frozen=True)
class MethodCall:
    """A method called on an upstream value or on an alias of one; the type decides if it mutates.

    ``receiver`` and ``arguments`` are source code (``df["a"]``, ``0, axis=1``; an ``inplace``
    keyword is left out of ``arguments`` and told by ``inplace``), ``result`` the target the call's
    value is assigned to, and ``loop`` the ``for`` clause that bound the alias, if one did.
    """

    name: str
    method: str
    lineno: int
    inplace: bool = False
    alias: str | None = None
    via: AccessPath = ()
    path: AccessPath = ()
    receiver: str = ""
    arguments: str = ""
    result: str = ""
    loop: str = ""


@dataclass(frozen=True)
class CellInfo:
    """What a cell reads (in first-read order), defines (in binding order) and mutates.

    ``calls`` lists every method call on an upstream value or an alias of one, mutating or not.
    """

    reads: tuple[str, ...]
    defines: tuple[str, ...]
    mutations: tuple[Mutation, ...]
    imports: frozenset[str] = frozenset()
    calls: tuple[MethodCall, ...] = ()


def parse(code: str, filename: str = "<cell>") -> ast.Module:
    """Parse ``code``, turning a SyntaxError into a :class:`StepSyntaxError` that says where.

    >>> parse("x = 1").body[0].__class__.__name__
    'Assign'
    """
    try:
        tree = ast.parse(code, filename=filename)
        # Compiling finds what parsing lets through: `return`, `await` or `nonlocal` at top level.
        # Its warnings (e.g. `x is 1`) are left for the run of the code to show, once.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(tree, filename, "exec", dont_inherit=True)
        return tree
    except SyntaxError as error:
        raise StepSyntaxError(
            f"{error.msg} in {filename}. Fix the code and run the cell again.",
            (filename, error.lineno, error.offset, error.text, error.end_lineno, error.end_offset),
        ) from None


def normalise(code: str) -> str:
    """Return a canonical form of ``code`` that ignores comments, blank lines and spacing.

    >>> normalise("x=1  # one") == normalise("x = 1\\n\\n")
    True
    """
    return ast.dump(parse(code))


def analyse(code: str) -> CellInfo:
    """Find the names a cell reads before defining them, the names it binds, and its mutations.

    >>> info = analyse("import math\\ny = math.sqrt(x)\\nz = y + 1")
    >>> info.reads, info.defines
    (('x',), ('math', 'y', 'z'))

    A change through an alias is reported against the upstream name it comes from:

    >>> (change,) = analyse("for clf in models.values():\\n    clf.fit(X, y)").mutations
    >>> change.name, change.alias, change.how
    ('models', 'clf', 'calls .fit() on')
    """
    visitor = _TopLevel()
    visitor.visit(parse(code))
    bound_anywhere = set(visitor.bound)
    late_reads = [name for name in visitor.nested_reads if name not in bound_anywhere]
    reads = list(dict.fromkeys([*visitor.reads, *late_reads]))
    return CellInfo(
        tuple(reads),
        tuple(visitor.bound),
        tuple(visitor.mutations),
        frozenset(visitor.imported),
        tuple(visitor.calls),
    )


@dataclass(frozen=True)
class _Ref:
    """Where a value comes from: a path from an upstream ``root``, maybe through an alias."""

    root: str
    path: AccessPath = ()
    alias: str | None = None
    via: AccessPath = ()
    loop: str = ""

    def then(self, step: PathStep) -> _Ref:
        return replace(self, path=(*self.path, step))


# What iterating a value yields: one reference for each element, or a tuple of them for the
# pairs that `.items()`, `enumerate()` and `zip()` yield (None where the element is new).
_Shape: TypeAlias = "_Ref | tuple[_Shape | None, ...]"


def _subscript_step(index: ast.expr) -> PathStep:
    """The path step for ``x[index]`` (or ``x.get(index)``)."""
    if isinstance(index, ast.Slice):
        return ("slice", None)
    try:
        return ("item", ast.literal_eval(index))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ("any", None)  # a key only known when the cell runs


def _aliasing_call(node: ast.expr) -> tuple[PathStep, ast.expr] | None:
    """The step and the object for calls that return a part of it: ``x.get(k)``, ``x.ravel()``."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)) or node.keywords:
        return None
    if node.func.attr == "get" and 1 <= len(node.args) <= 2:
        return _subscript_step(node.args[0]), node.func.value
    if node.func.attr == "ravel" and not node.args:
        return ("attr", "flat"), node.func.value  # a view of the same array
    return None


def _loop(target: ast.expr, iterable: ast.expr) -> str:
    """The ``for`` clause as a comprehension would write it: ``for name, clf in models.items()``."""
    if isinstance(target, ast.Tuple) and target.elts:
        return f"for {', '.join(map(ast.unparse, target.elts))} in {ast.unparse(iterable)}"
    return f"for {ast.unparse(target)} in {ast.unparse(iterable)}"


def _magic(node: ast.Call) -> tuple[str, str, str | None] | None:
    """``(name, line, cell)`` for what IPython makes of ``%time``, ``%prun`` and ``%timeit``.

    >>> _magic(ast.parse("get_ipython().run_line_magic('time', 'x = f()')").body[0].value)
    ('time', 'x = f()', None)
    """
    func = node.func
    if not (
        isinstance(func, ast.Attribute)
        and func.attr in ("run_line_magic", "run_cell_magic")
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
    ):
        return None
    texts = [
        arg.value
        for arg in node.args
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    ]
    expected = 2 if func.attr == "run_line_magic" else 3
    if (
        len(node.args) != expected
        or len(texts) != expected
        or node.keywords
        or texts[0] not in _MAGIC_OPTIONS
    ):
        return None
    return texts[0], texts[1], texts[2] if expected == 3 else None


def _split_options(line: str, spec: str) -> tuple[dict[str, str], str]:
    """The options at the start of a magic's line (``spec`` as for getopt) and the code after them.

    >>> _split_options("-n 10 -r3 -qo f(x, -1)", "n:r:tcp:qov:")
    ({'n': '10', 'r': '3', 'q': '', 'o': ''}, 'f(x, -1)')
    >>> _split_options("--no-raise-error -x + 1", "")
    ({'no-raise-error': ''}, '-x + 1')
    """
    options: dict[str, str] = {}
    rest = line.strip()
    while rest.startswith("-"):
        word, *after = rest.split(maxsplit=1)
        rest = after[0] if after else ""
        # A long option: %time's --no-raise-error, the only one these magics have, takes no value.
        if word.startswith("--") and len(word) > 2:
            options[word[2:]] = ""
            continue
        found: dict[str, str] = {}
        for position, letter in enumerate(word[1:], start=1):
            if letter == ":" or letter not in spec:
                return options, f"{word} {rest}".strip()  # not an option: the code starts here
            if f"{letter}:" in spec:
                value = word[position + 1 :]
                if not value:
                    value, *after = rest.split(maxsplit=1) or [""]
                    rest = after[0] if after else ""
                found[letter] = value
                break
            found[letter] = ""
        options.update(found)
    return options, rest


def _magic_statements(code: str, lineno: int) -> list[ast.stmt]:
    """The statements of a magic's code, all at the line of the magic; none if it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []  # the magic itself reports the error when the cell runs
    for node in ast.walk(tree):  # in the code that runs, the magic's code is one string on one line
        if isinstance(node, (ast.stmt, ast.expr)):
            node.lineno = node.end_lineno = lineno
    return tree.body


class _TopLevel(ast.NodeVisitor):
    """Walks top-level code in evaluation order; nested scopes are summarised by their free names."""

    def __init__(self) -> None:
        self.defined: set[str] = set()
        self.reads: dict[str, None] = {}
        self.nested_reads: dict[str, None] = {}
        self.bound: dict[str, None] = {}
        self.mutations: list[Mutation] = []
        self.calls: list[MethodCall] = []
        self.imported: set[str] = set()
        # A name bound to a part of an upstream value: changing it changes the upstream value.
        self.aliases: dict[str, _Ref] = {}
        self.results: dict[ast.AST, str] = {}  # call -> the target its value is assigned to

    # -- names -------------------------------------------------------------------------------
    def _read(self, name: str) -> None:
        if name not in self.defined:
            self.reads.setdefault(name)

    def _bind(self, name: str) -> None:
        self.defined.add(name)
        self.aliases.pop(name, None)
        self.bound.pop(name, None)  # re-binding moves it to the end: outputs follow binding order
        self.bound[name] = None

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._bind(node.id)
        else:  # del x: the cell no longer outputs x
            self.defined.discard(node.id)
            self.bound.pop(node.id, None)
            self.aliases.pop(node.id, None)

    # -- aliases -----------------------------------------------------------------------------------
    def _reference(self, node: ast.expr) -> _Ref | None:
        """Where ``node``'s value comes from, if it is an upstream value or a part of one."""
        steps: list[PathStep] = []
        while True:
            if isinstance(node, ast.Attribute):
                steps.append(("attr", node.attr))
                node = node.value
            elif isinstance(node, ast.Subscript):
                steps.append(_subscript_step(node.slice))
                node = node.value
            elif (part := _aliasing_call(node)) is not None:
                steps.append(part[0])
                node = part[1]
            else:
                break
        if not isinstance(node, ast.Name):
            return None
        path = tuple(reversed(steps))
        alias = self.aliases.get(node.id)
        if alias is not None:
            return _Ref(alias.root, path, node.id, (*alias.via, *alias.path), alias.loop)
        return None if node.id in self.defined else _Ref(node.id, path)

    def _elements(self, node: ast.expr) -> _Shape | None:
        """The :data:`_Shape` of what iterating ``node`` yields, or None if it yields new values."""
        if isinstance(node, ast.Call):  # keywords such as `key=` or `start=` keep the elements
            func, args = node.func, node.args
            if isinstance(func, ast.Attribute) and func.attr in ("items", "values") and not args:
                ref = self._reference(func.value)
                value = ref.then(("values", None)) if ref else None
                return (None, value) if func.attr == "items" and value else value
            if isinstance(func, ast.Attribute) and func.attr == "flatten" and not args:
                ref = self._reference(func.value)  # a copy, but of the same objects
                return ref.then(("attr", "flat")).then(("iter", None)) if ref else None
            if isinstance(func, ast.Name) and func.id not in self.defined and args:
                if func.id == "enumerate":
                    inner = self._elements(args[0])
                    return (None, inner) if inner else None
                if func.id == "zip":
                    shapes = tuple(self._elements(arg) for arg in args)
                    return shapes if any(shapes) else None
                if func.id in ("list", "tuple", "sorted", "reversed") and len(args) == 1:
                    return self._elements(args[0])
        ref = self._reference(node)
        return ref.then(("iter", None)) if ref else None

    def _value_shape(self, node: ast.expr) -> _Shape | None:
        """The :data:`_Shape` of an assigned value: ``a, b = x, y`` pairs names with values."""
        if isinstance(node, (ast.Tuple, ast.List)) and not any(
            isinstance(e, ast.Starred) for e in node.elts
        ):
            return tuple(self._reference(element) for element in node.elts)
        return self._reference(node)

    def _alias(self, target: ast.expr, shape: _Shape | None, loop: str = "") -> None:
        """Make the names in ``target`` aliases of the upstream parts that ``shape`` describes."""
        if isinstance(target, ast.Name) and isinstance(shape, _Ref):
            self.aliases[target.id] = _Ref(shape.root, (*shape.via, *shape.path), loop=loop)
        elif isinstance(target, (ast.Tuple, ast.List)) and shape is not None:
            elements = target.elts
            star = next((i for i, e in enumerate(elements) if isinstance(e, ast.Starred)), None)
            for index, element in enumerate(elements):
                if isinstance(shape, tuple):
                    if star is None and len(shape) == len(elements):
                        self._alias(element, shape[index], loop)
                elif not isinstance(element, ast.Starred):  # `*rest` is a new list
                    position = index if star is None or index < star else index - len(elements)
                    self._alias(element, shape.then(("item", position)), loop)

    # -- statements in evaluation order ---------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        if len(node.targets) == 1 and isinstance(node.value, ast.Call):
            self.results[node.value] = ast.unparse(node.targets[0])
        self.visit(node.value)
        shape = self._value_shape(node.value)
        for target in node.targets:
            self._check_target(target, "assigns into")
            self.visit(target)
            self._alias(target, shape)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.value, ast.Call):
            self.results[node.value] = ast.unparse(node.target)
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        self._check_target(node.target, "assigns into")
        if node.value is not None or not isinstance(node.target, ast.Name):
            self.visit(node.target)
        if node.value is not None:
            self._alias(node.target, self._value_shape(node.value))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):  # x += y reads x first, then y, then binds x
            ref = self._reference(node.target)
            if ref is not None:  # += changes lists, arrays and frames in place
                self.mutations.append(
                    Mutation(ref.root, node.lineno, "updates (+= etc.)", ref.alias, ref.via)
                )
            self._read(node.target.id)
            self.visit(node.value)
            self._bind(node.target.id)
        else:
            self._check_target(node.target, "updates")
            self.visit(node.target)
            self.visit(node.value)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target, "deletes from")
            self.visit(target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)
        self._alias(node.target, self._reference(node.value))

    # A name bound in a block that may not run (an if branch, a loop body, a try body) is an
    # output, but a later read of it may still see the value from before the cell: an input too.
    # Aliases are kept if any path made them: a change through a possible alias is worth a warning.
    def _visit_block(self, statements: list[ast.stmt], start: set[str]) -> set[str]:
        self.defined = set(start)
        for statement in statements:
            self.visit(statement)
        return self.defined

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        before, aliases = set(self.defined), dict(self.aliases)
        after_body = self._visit_block(node.body, before)
        body_aliases, self.aliases = self.aliases, aliases
        after_else = self._visit_block(node.orelse, before)
        self.defined = after_body & after_else
        self.aliases = {**self.aliases, **body_aliases}

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        before, aliases = set(self.defined), dict(self.aliases)
        shape = self._elements(node.iter)
        self.visit(node.target)
        self._alias(node.target, shape, _loop(node.target, node.iter))
        self._visit_block(node.body, self.defined)
        self._visit_block(node.orelse, before)
        self.defined = before
        self.aliases = {**aliases, **self.aliases}

    visit_AsyncFor = visit_For

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        before, aliases = set(self.defined), dict(self.aliases)
        self._visit_block(node.body, before)
        self._visit_block(node.orelse, before)
        self.defined = before
        self.aliases = {**aliases, **self.aliases}

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        before, aliases = set(self.defined), dict(self.aliases)
        self._visit_block(node.body, before)
        for handler in node.handlers:
            self.defined = set(before)
            self.visit(handler)
        self._visit_block(node.orelse, before)
        self.defined = self._visit_block(node.finalbody, before)
        self.aliases = {**aliases, **self.aliases}

    visit_TryStar = visit_Try

    def visit_Match(self, node: ast.Match) -> None:
        self.visit(node.subject)
        before, aliases = set(self.defined), dict(self.aliases)
        paths, all_aliases = [], dict(aliases)
        for case in node.cases:
            self.defined, self.aliases = set(before), dict(aliases)
            self.visit(case.pattern)
            if case.guard is not None:
                self.visit(case.guard)
            paths.append(self._visit_block(case.body, self.defined))
            all_aliases.update(self.aliases)
        paths.append(before)  # no case may match
        self.defined = set.intersection(*paths)
        self.aliases = all_aliases

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name.split(".")[0])
                self.imported.add(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute):
            ref = self._reference(node.func.value)
            if ref is not None:
                self._record_call(node, node.func, ref)
        self.generic_visit(node)
        magic = _magic(node)
        if magic is not None:
            self._run_magic(*magic, node.lineno)

    def _record_call(self, node: ast.Call, func: ast.Attribute, ref: _Ref) -> None:
        inplace = any(
            k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
        arguments = [*node.args, *(k for k in node.keywords if k.arg != "inplace")]
        self.calls.append(
            MethodCall(
                ref.root, func.attr, node.lineno, inplace, ref.alias, ref.via, ref.path,
                receiver=ast.unparse(func.value),
                arguments=", ".join(ast.unparse(argument) for argument in arguments),
                result=self.results.get(node, ""),
                loop=ref.loop,
            )
        )  # fmt: skip
        if inplace or func.attr in MUTATING_METHODS:
            how = f"calls .{func.attr}() on"
            self.mutations.append(
                Mutation(ref.root, node.lineno, how, ref.alias, ref.via, ref.path)
            )

    def _run_magic(self, name: str, line: str, cell: str | None, lineno: int) -> None:
        """Analyse the code ``%time``, ``%prun`` or ``%timeit`` runs, where the magic runs it."""
        options, rest = _split_options(line, _MAGIC_OPTIONS[name])
        # A cell magic's line holds options (and, for %%timeit, setup code); its cell the code.
        code = rest if cell is None else f"{rest}\n{cell}"
        statements = _magic_statements(code, lineno)
        if name != "timeit":  # %time and %prun run the code in the user namespace
            for statement in statements:
                self.visit(statement)
            return
        inner = self._child()  # %timeit runs it in a function of its own: it binds nothing here
        for statement in statements:
            inner.visit(statement)
        for read in inner.reads:
            self._read(read)
        self.nested_reads.update(inner.nested_reads)
        self._adopt_changes(inner)
        if "v" in options:  # %timeit -v NAME stores its result in the user namespace
            self._bind(options["v"])

    def _child(self) -> _TopLevel:
        """A visitor that sees this one's names but binds its own (a comprehension, %timeit)."""
        child = _TopLevel()
        child.defined, child.aliases = set(self.defined), dict(self.aliases)
        return child

    def _adopt_changes(self, child: _TopLevel) -> None:
        self.mutations.extend(child.mutations)
        self.calls.extend(child.calls)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._bind(node.name)
        for statement in node.body:
            self.visit(statement)
        if node.name:  # Python deletes the exception name when the handler ends
            self.defined.discard(node.name)
            self.bound.pop(node.name, None)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self.generic_visit(node)
        if node.name:
            self._bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self._bind(node.rest)

    # -- nested scopes: evaluated now are decorators, defaults, bases; the body runs later -------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        self._bind(node.name)
        self.nested_reads.update(dict.fromkeys(_free_names(node)))

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        body = _TopLevel()  # a class body runs right away, statement by statement
        for statement in node.body:
            body.visit(statement)
        for name in body.reads:
            self._read(name)
        self.nested_reads.update(body.nested_reads)  # methods see the cell's names, not the class's
        self._bind(node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in [*node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        self.nested_reads.update(dict.fromkeys(_free_names(node)))  # its body runs later

    def _visit_comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        self.visit(node.generators[0].iter)  # the first iterable is evaluated in the cell's scope
        for name in _free_names(node):
            self._read(name)
        for inner in ast.walk(node):  # (x := ...) inside a comprehension binds x in the cell
            if isinstance(inner, ast.NamedExpr) and isinstance(inner.target, ast.Name):
                self._bind(inner.target.id)
        self._adopt_changes(self._comprehension_changes(node))

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension

    def _comprehension_changes(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> _TopLevel:
        """The changes a comprehension makes: ``[m.fit(X, y) for m in models]`` fits the models."""
        inner = self._child()
        for index, generator in enumerate(node.generators):
            if index:  # the cell's visitor has seen the first iterable
                inner.visit(generator.iter)
            shape = inner._elements(generator.iter)
            inner.visit(generator.target)
            inner._alias(generator.target, shape, _loop(generator.target, generator.iter))
            for condition in generator.ifs:
                inner.visit(condition)
        for part in (node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,):
            inner.visit(part)
        return inner

    # -- mutation of upstream variables -----------------------------------------------------------
    def _check_target(self, target: ast.expr, how: str) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._check_target(element, how)
            return
        if isinstance(target, ast.Starred):
            self._check_target(target.value, how)
            return
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            ref = self._reference(target.value)
            if ref is not None:
                self.mutations.append(
                    Mutation(ref.root, target.lineno, how, ref.alias, ref.via, ref.path)
                )


class _ScopeNames(ast.NodeVisitor):
    """Collects the names loaded and bound inside one nested scope (function, class, lambda...)."""

    def __init__(self) -> None:
        self.loads: set[str] = set()
        self.locals: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        (self.loads if isinstance(node.ctx, ast.Load) else self.locals).add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        self.locals.add(node.arg)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            self.locals.add(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.locals.add(node.name)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.loads.update(node.names)

    def _nested(self, node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.locals.add(node.name)
            for expr in node.decorator_list:
                self.visit(expr)
        self.loads.update(_free_names(node))

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _nested
    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _nested


def _free_names(node: ast.AST) -> set[str]:
    """Names a nested scope reads from outside itself."""
    scope = _ScopeNames()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        scope.visit(node.args)
        body = node.body if isinstance(node.body, list) else [node.body]
    elif isinstance(node, ast.ClassDef):
        body = node.body
    else:  # a comprehension: generators bind their targets, then the element is evaluated
        for generator in getattr(node, "generators", []):
            scope.visit(generator)
        elements = ("key", "value") if isinstance(node, ast.DictComp) else ("elt",)
        body = [getattr(node, field) for field in elements]
    for statement in body:
        scope.visit(statement)
    return scope.loads - scope.locals
