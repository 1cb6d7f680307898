"""Static analysis of one cell: the names it reads, the names it defines, the names it mutates."""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass

from .errors import StepSyntaxError

__all__ = ["CellInfo", "Mutation", "analyse", "normalise", "parse"]

# Methods that change their object in place. `fit` is here on purpose: fitting an estimator
# that an upstream step produced silently changes that step's output.
MUTATING_METHODS = frozenset(
    {
        "append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "sort",
        "reverse", "setdefault", "add", "discard", "fit", "partial_fit", "fit_transform",
        "fit_predict", "set_params", "resize", "fill", "put", "itemset",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Mutation:
    """An in-place change of a variable the cell did not define itself."""

    name: str
    lineno: int
    how: str


@dataclass(frozen=True)
class CellInfo:
    """What a cell reads (in first-read order), defines (in binding order) and mutates."""

    reads: tuple[str, ...]
    defines: tuple[str, ...]
    mutations: tuple[Mutation, ...]
    imports: frozenset[str] = frozenset()


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
    """
    visitor = _TopLevel()
    visitor.visit(parse(code))
    bound_anywhere = set(visitor.bound)
    late_reads = [name for name in visitor.nested_reads if name not in bound_anywhere]
    reads = list(dict.fromkeys([*visitor.reads, *late_reads]))
    return CellInfo(
        tuple(reads), tuple(visitor.bound), tuple(visitor.mutations), frozenset(visitor.imported)
    )


def _root_name(node: ast.expr) -> str | None:
    """``df`` for ``df``, ``df.x``, ``df["a"].loc[0]``; None for anything else."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _TopLevel(ast.NodeVisitor):
    """Walks top-level code in evaluation order; nested scopes are summarised by their free names."""

    def __init__(self) -> None:
        self.defined: set[str] = set()
        self.reads: dict[str, None] = {}
        self.nested_reads: dict[str, None] = {}
        self.bound: dict[str, None] = {}
        self.mutations: list[Mutation] = []
        self.imported: set[str] = set()

    # -- names -------------------------------------------------------------------------------
    def _read(self, name: str) -> None:
        if name not in self.defined:
            self.reads.setdefault(name)

    def _bind(self, name: str) -> None:
        self.defined.add(name)
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

    # -- statements in evaluation order ---------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._check_target(target, "assigns into")
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        self._check_target(node.target, "assigns into")
        if node.value is not None or not isinstance(node.target, ast.Name):
            self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):  # x += y reads x first, then y, then binds x
            if node.target.id not in self.defined:
                self.mutations.append(Mutation(node.target.id, node.lineno, "updates (+= etc.)"))
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

    # A name bound in a block that may not run (an if branch, a loop body, a try body) is an
    # output, but a later read of it may still see the value from before the cell: an input too.
    def _visit_block(self, statements: list[ast.stmt], start: set[str]) -> set[str]:
        self.defined = set(start)
        for statement in statements:
            self.visit(statement)
        return self.defined

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        before = set(self.defined)
        after_body = self._visit_block(node.body, before)
        after_else = self._visit_block(node.orelse, before)
        self.defined = after_body & after_else

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        before = set(self.defined)
        self.visit(node.target)
        self._visit_block(node.body, self.defined)
        self._visit_block(node.orelse, before)
        self.defined = before

    visit_AsyncFor = visit_For

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        before = set(self.defined)
        self._visit_block(node.body, before)
        self._visit_block(node.orelse, before)
        self.defined = before

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        before = set(self.defined)
        self._visit_block(node.body, before)
        for handler in node.handlers:
            self.defined = set(before)
            self.visit(handler)
        self._visit_block(node.orelse, before)
        self.defined = self._visit_block(node.finalbody, before)

    visit_TryStar = visit_Try

    def visit_Match(self, node: ast.Match) -> None:
        self.visit(node.subject)
        before = set(self.defined)
        paths = []
        for case in node.cases:
            self.defined = set(before)
            self.visit(case.pattern)
            if case.guard is not None:
                self.visit(case.guard)
            paths.append(self._visit_block(case.body, self.defined))
        paths.append(before)  # no case may match
        self.defined = set.intersection(*paths)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name.split(".")[0])
                self.imported.add(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute):
            name = _root_name(node.func.value)
            inplace = any(
                k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            if name and name not in self.defined and (inplace or node.func.attr in MUTATING_METHODS):
                self.mutations.append(Mutation(name, node.lineno, f"calls .{node.func.attr}() on"))
        self.generic_visit(node)

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

    def _visit_comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        self.visit(node.generators[0].iter)  # the first iterable is evaluated in the cell's scope
        for name in _free_names(node):
            self._read(name)
        for inner in ast.walk(node):  # (x := ...) inside a comprehension binds x in the cell
            if isinstance(inner, ast.NamedExpr) and isinstance(inner.target, ast.Name):
                self._bind(inner.target.id)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension

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
            name = _root_name(target)
            if name and name not in self.defined:
                self.mutations.append(Mutation(name, target.lineno, how))


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
