"""Static analysis of cells: reads, defines, mutations, syntax errors and the normalised fingerprint."""

from __future__ import annotations

import builtins
import itertools
import random
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlops_nb import MlopsNbError, MutationWarning, Pipeline, StepSyntaxError, Store
from mlops_nb.cells import Mutation, analyse, normalise, parse

from .conftest import Notebook


def reads(code: str) -> tuple[str, ...]:
    return analyse(code).reads


def defines(code: str) -> tuple[str, ...]:
    return analyse(code).defines


def mutated(code: str) -> list[tuple[str, int]]:
    return [(m.name, m.lineno) for m in analyse(code).mutations]


# -- reads and defines ------------------------------------------------------------------------------


def test_names_read_before_being_defined_are_reads_in_first_read_order() -> None:
    info = analyse("total = price * quantity\nlabel = name\nagain = price")
    assert info.reads == ("price", "quantity", "name")
    assert info.defines == ("total", "label", "again")


def test_a_name_defined_earlier_in_the_cell_is_not_a_read() -> None:
    assert reads("x = 1\ny = x + 1") == ()
    assert defines("x = 1\ny = x + 1") == ("x", "y")


def test_a_name_read_before_its_definition_in_the_same_cell_is_a_read() -> None:
    assert reads("y = x + 1\nx = 2") == ("x",)


def test_rebinding_reads_the_old_value() -> None:
    info = analyse("x = x + 1")
    assert info.reads == ("x",)
    assert info.defines == ("x",)


def test_augmented_assignment_reads_and_defines_its_target() -> None:
    info = analyse("counter += step")
    assert set(info.reads) == {"counter", "step"}
    assert info.defines == ("counter",)
    assert reads("counter = 0\ncounter += 1") == ()


def test_rebinding_moves_a_name_to_the_end_of_defines() -> None:
    assert defines("a = 1\nb = 2\na = 3") == ("b", "a")


def test_attribute_and_subscript_reads_read_the_root_name() -> None:
    assert reads("lr = config.optim['lr'].value") == ("config",)


def test_f_strings_read_their_names() -> None:
    assert reads('message = f"{user}: {score:.{digits}f}"') == ("user", "score", "digits")


def test_annotated_assignment_defines_only_with_a_value() -> None:
    assert defines("x: int = 5") == ("x",)
    assert defines("y: int") == ()
    assert "int" in reads("x: int = 5")


def test_tuple_and_starred_targets_are_all_defined() -> None:
    info = analyse("first, *rest = items\n(a, b), c = pair, 3")
    assert info.defines == ("first", "rest", "a", "b", "c")
    assert info.reads == ("items", "pair")


def test_private_names_are_still_reported_as_defined() -> None:
    # The pipeline, not the analysis, leaves `_private` names out of a step's outputs.
    assert defines("_tmp = load()\nresult = _tmp * 2") == ("_tmp", "result")


def test_an_empty_or_comment_only_cell_reads_and_defines_nothing() -> None:
    for code in ["", "# just a note\n", "\n\n"]:
        info = analyse(code)
        assert (info.reads, info.defines, info.mutations) == ((), (), ())


# -- imports -------------------------------------------------------------------------------------------


def test_imports_bind_names_and_are_listed_in_imports() -> None:
    info = analyse(
        "import os.path\nimport numpy as np\nfrom collections import OrderedDict as OD, deque\n"
        "x = np.zeros(3)"
    )
    assert info.defines == ("os", "np", "OD", "deque", "x")
    assert info.imports == frozenset({"os", "np", "OD", "deque"})
    assert info.reads == ()


def test_star_imports_bind_no_name() -> None:
    info = analyse("from math import *\ny = sqrt(x)")
    assert info.defines == ("y",)
    assert info.imports == frozenset()
    assert info.reads == ("sqrt", "x")


def test_imports_inside_a_function_are_not_cell_names() -> None:
    info = analyse("def f():\n    import json\n    return json.dumps(data)\n")
    assert info.defines == ("f",)
    assert info.imports == frozenset()
    assert info.reads == ("data",)


# -- del -----------------------------------------------------------------------------------------------


def test_del_removes_a_name_from_defines() -> None:
    assert defines("tmp = 1\nkeep = 2\ndel tmp") == ("keep",)


def test_a_name_read_after_del_comes_from_outside() -> None:
    assert reads("x = 1\ndel x\ny = x") == ("x",)


def test_del_of_an_item_reads_the_container() -> None:
    assert reads("del cache['old']") == ("cache",)


# -- compound statements --------------------------------------------------------------------------------


def test_for_loop_target_is_defined_and_iterable_is_read() -> None:
    info = analyse("for i, row in enumerate(rows):\n    total = row\nelse:\n    done = True\n")
    assert set(info.reads) == {"enumerate", "rows"}
    assert info.defines == ("i", "row", "total", "done")


def test_a_loop_body_reading_a_name_bound_later_in_the_body_reads_it() -> None:
    # On the first iteration `last` comes from outside the cell.
    assert "last" in reads("for x in xs:\n    prev = last\n    last = x\n")


def test_with_binds_its_as_name() -> None:
    info = analyse("with open(path) as fh:\n    text = fh.read()\n")
    assert set(info.reads) == {"open", "path"}
    assert info.defines == ("fh", "text")


def test_except_as_name_is_local_to_the_handler() -> None:
    # Python deletes `err` when the handler ends, so the cell does not output it.
    info = analyse(
        "try:\n    value = int(text)\nexcept ValueError as err:\n    message = str(err)\n"
    )
    assert "err" not in info.reads
    assert set(info.reads) == {"int", "text", "ValueError", "str"}
    assert info.defines == ("value", "message")


def test_match_binds_capture_names_and_reads_the_subject_and_classes() -> None:
    info = analyse(
        "match command:\n"
        "    case {'k': v, **others}:\n        pass\n"
        "    case [first, *tail]:\n        pass\n"
        "    case Point(x=px) as point:\n        pass\n"
        "    case Color.RED:\n        pass\n"
    )
    assert info.reads == ("command", "Point", "Color")
    assert info.defines == ("v", "others", "first", "tail", "px", "point")


def test_while_and_if_bodies_are_analysed_in_order() -> None:
    info = analyse("while n > 0:\n    n = n - 1\nif flag:\n    seen = n\n")
    assert info.reads == ("n", "flag")
    assert info.defines == ("n", "seen")


# -- nested scopes ---------------------------------------------------------------------------------------


def test_free_names_of_a_function_body_are_reads() -> None:
    info = analyse("def scale(v, factor=2):\n    local = v * factor * gain\n    return local\n")
    assert info.reads == ("gain",)
    assert info.defines == ("scale",)


def test_free_names_of_a_function_bound_anywhere_in_the_cell_are_not_reads() -> None:
    assert reads("gain = 3\ndef scale(v):\n    return v * gain\n") == ()
    # The body runs when called, after the cell has bound `gain`.
    assert reads("def scale(v):\n    return v * gain\ngain = 3\ny = scale(2)\n") == ()


def test_defaults_and_decorators_are_evaluated_when_the_function_is_defined() -> None:
    info = analyse("@cache(size)\ndef f(x=default, *, y=other):\n    return x\n")
    assert info.reads == ("cache", "size", "default", "other")


def test_nested_functions_report_the_free_names_of_inner_scopes() -> None:
    code = "def outer(a):\n    def inner(b):\n        return a + b + offset\n    return inner\n"
    assert reads(code) == ("offset",)


def test_global_declared_in_a_function_is_read_from_outside() -> None:
    assert reads("def bump():\n    global counter\n    return counter + 1\n") == ("counter",)


def test_free_names_of_a_lambda_are_reads() -> None:
    assert reads("f = lambda row: row * factor") == ("factor",)
    assert reads("factor = 2\nf = lambda row: row * factor") == ()


def test_lambda_and_def_follow_the_same_rule_for_names_bound_later_in_the_cell() -> None:
    as_def = "def f(row):\n    return row * factor\nfactor = 2\nout = f(3)\n"
    as_lambda = "f = lambda row: row * factor\nfactor = 2\nout = f(3)\n"
    assert reads(as_def) == ()
    assert reads(as_lambda) == ()


def test_comprehension_variables_are_neither_reads_nor_defines() -> None:
    info = analyse("big = [x * k for x in xs if x > low]")
    assert set(info.reads) == {"xs", "k", "low"}
    assert info.defines == ("big",)


def test_nested_and_dict_comprehensions() -> None:
    assert reads("flat = [y for row in grid for y in row]") == ("grid",)
    assert reads("inv = {v: k for k, v in pairs.items()}") == ("pairs",)


def test_comprehension_variables_do_not_leak() -> None:
    assert reads("squares = [x * x for x in xs]\nlast = x") == ("xs", "x")


def test_comprehension_reads_a_name_the_cell_binds_only_later() -> None:
    # Comprehensions run immediately, unlike function bodies.
    assert "k" in reads("ys = [x * k for x in xs]\nk = 2")


def test_class_body_defines_only_the_class() -> None:
    info = analyse(
        "class Model(Base, metaclass=Meta):\n    rate = 0.1\n    scaled = rate * 2\n"
        "    def predict(self, x):\n        return helper(x, self.rate)\n"
    )
    assert info.defines == ("Model",)
    assert set(info.reads) == {"Base", "Meta", "helper"}


def test_a_class_body_that_shadows_an_upstream_name_reads_it() -> None:
    # A class body runs when the class is defined: `n_estimators = n_estimators` reads the outer value.
    assert reads("class Params:\n    n_estimators = n_estimators\n") == ("n_estimators",)


def test_a_class_body_runs_immediately_so_later_bindings_do_not_hide_its_reads() -> None:
    assert reads("class Settings:\n    threshold = limit * 2\nlimit = 10\n") == ("limit",)


# -- walrus ----------------------------------------------------------------------------------------------


def test_walrus_defines_its_target() -> None:
    info = analyse("if (n := len(xs)) > 3:\n    big = n\n")
    assert set(info.reads) == {"len", "xs"}
    assert info.defines == ("n", "big")


def test_walrus_inside_a_comprehension_binds_in_the_cell() -> None:
    # PEP 572: the target of := in a comprehension is bound in the enclosing scope.
    assert "hit" in defines("found = any((hit := v) > 2 for v in values)")
    assert "last" in defines("doubled = [last := v * 2 for v in values]")


# -- mutation of upstream variables ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name", "how"),
    [
        ('df["x"] = 1', "df", "assigns into"),
        ('df.loc[df.a > 0, "b"] = 0', "df", "assigns into"),
        ("model.alpha = 0.5", "model", "assigns into"),
        ('a, df["b"] = 1, 2', "df", "assigns into"),
        ('df["a"] += 1', "df", "updates"),
        ('del df["a"]', "df", "deletes from"),
        ('df.drop(columns=["a"], inplace=True)', "df", "calls .drop() on"),
        ('df["a"].fillna(0, inplace=True)', "df", "calls .fillna() on"),
        ("lst.append(1)", "lst", "calls .append() on"),
        ("model.fit(X, y)", "model", "calls .fit() on"),
        ("seen.add(key)", "seen", "calls .add() on"),
        ("config.update(extra)", "config", "calls .update() on"),
    ],
)
def test_in_place_changes_of_upstream_names_are_reported(code: str, name: str, how: str) -> None:
    (mutation,) = analyse(code).mutations
    assert (mutation.name, mutation.lineno, mutation.how) == (name, 1, how)


def test_mutations_are_reported_with_their_line_numbers() -> None:
    code = 'x = 1\n\ndf["y"] = x\nfor item in new:\n    items.append(item)\n'
    assert analyse(code).mutations == (
        Mutation("df", 3, "assigns into"),
        Mutation("items", 5, "calls .append() on"),
    )


@pytest.mark.parametrize(
    "code",
    [
        'df = raw.copy()\ndf["x"] = 1',
        "lst = []\nlst.append(1)",
        "from sklearn.linear_model import Ridge\nmodel = Ridge()\nmodel.fit(X, y)",
        "df = load()\ndf.drop(columns=['a'], inplace=True)",
    ],
)
def test_changing_a_name_defined_earlier_in_the_cell_is_not_a_mutation(code: str) -> None:
    assert analyse(code).mutations == ()


@pytest.mark.parametrize(
    "code",
    [
        "top = df.head()",
        "df2 = df.drop(columns=['a'])",
        "df.drop(columns=['a'], inplace=False)",
        "print(df.shape)",
        "pred = model.predict(X)",
    ],
)
def test_non_mutating_uses_are_not_mutations(code: str) -> None:
    assert analyse(code).mutations == ()


@pytest.mark.parametrize(
    ("code", "name", "method"),
    [
        ("fitted = model.fit(X, y)", "model", "fit"),
        ("last = queue.pop()", "queue", "pop"),
        ("Xt = scaler.fit_transform(X)", "scaler", "fit_transform"),
    ],
)
def test_mutating_calls_whose_result_is_used_are_reported(
    code: str, name: str, method: str
) -> None:
    # fit() returns self and pop() removes the item: the upstream object changes either way.
    assert [(m.name, m.lineno) for m in analyse(code).mutations] == [(name, 1)]
    assert method in analyse(code).mutations[0].how


# -- syntax errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "lineno", "message"),
    [
        ("x = 1\ny = (2 +\n", 2, r"'\(' was never closed"),
        ("x = 1\n  y = 2\n", 2, "unexpected indent"),
        ("a = 1\nb = 2\nif a\n    pass\n", 3, "expected ':'"),
    ],
)
def test_bad_code_raises_step_syntax_error_with_the_line(
    code: str, lineno: int, message: str
) -> None:
    with pytest.raises(StepSyntaxError, match=message + r" in step clean\. Fix the code") as caught:
        parse(code, filename="step clean")
    error = caught.value
    assert isinstance(error, SyntaxError)
    assert isinstance(error, MlopsNbError)
    assert error.lineno == lineno
    assert error.filename == "step clean"
    assert f"line {lineno}" in str(error)


def test_analyse_and_normalise_raise_step_syntax_error_too() -> None:
    with pytest.raises(StepSyntaxError, match=r"in <cell>\. Fix the code and run the cell again"):
        analyse("def f(:\n")
    with pytest.raises(StepSyntaxError):
        normalise("x = = 1")


# -- normalise -------------------------------------------------------------------------------------------


def test_normalise_ignores_comments_blank_lines_and_spacing() -> None:
    plain = "x = a + b\ny = f(x, 2)\n"
    noisy = "# load\n\nx=a+b   # sum\n\n\ny = f( x ,2 )\n"
    assert normalise(plain) == normalise(noisy)


def test_normalise_ignores_quote_style_and_redundant_parentheses() -> None:
    assert normalise("s = 'a'\nt = (x)") == normalise('s = "a"\nt = x')


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("x = 1", "x = 2"),
        ("x = 1", "x = 1.0"),
        ("x = a - b", "x = b - a"),
        ("x = a", "y = a"),
        ("x = f(a, b)", "x = f(b, a)"),
        ("x = 's'", "x = 'S'"),
        ("if a:\n    x = 1\ny = 2", "if a:\n    x = 1\n    y = 2"),
    ],
)
def test_normalise_changes_with_any_semantic_edit(before: str, after: str) -> None:
    assert normalise(before) != normalise(after)


# -- property: analyse against an oracle that runs the code ------------------------------------------------

NAMES = ("a", "b", "c", "d", "e")


class TrackingDict(dict):  # type: ignore[type-arg]
    """Locals that record every name looked up before the cell itself has set it."""

    def __init__(self) -> None:
        super().__init__()
        self.outside_reads: dict[str, None] = {}

    def __getitem__(self, key: str) -> Any:
        if not dict.__contains__(self, key):
            self.outside_reads.setdefault(key)
        return dict.__getitem__(self, key)


def oracle(code: str, value: int) -> tuple[set[str], set[str]]:
    """Run ``code`` with every candidate name set to ``value`` outside the cell."""
    outside = {"__builtins__": builtins, **dict.fromkeys(NAMES, value)}
    local = TrackingDict()
    exec(compile(code, "<oracle>", "exec"), outside, local)  # noqa: S102
    return set(local.outside_reads), set(local)


@st.composite
def atoms(draw: st.DrawFn) -> str:
    return draw(st.one_of(st.sampled_from(NAMES), st.integers(0, 9).map(str)))


@st.composite
def expressions(draw: st.DrawFn, walrus: set[str]) -> str:
    kind = draw(st.sampled_from(["atom", "binary", "call", "walrus"]))
    if kind == "atom":
        return draw(atoms())
    if kind == "binary":
        return f"{draw(atoms())} {draw(st.sampled_from('+-'))} {draw(atoms())}"
    if kind == "call":
        return f"max({draw(atoms())}, {draw(atoms())})"
    target = draw(st.sampled_from(NAMES))
    value = draw(atoms())
    walrus.add(target)
    return f"({target} := {value}) + {draw(atoms())}"


@st.composite
def blocks(draw: st.DrawFn, bound: set[str], depth: int, compound: bool) -> list[str]:
    """Lines of a block; ``bound`` is the set of names certainly bound by the cell so far."""
    lines: list[str] = []
    pad = "    " * depth
    for _ in range(draw(st.integers(1, 5 if depth == 0 else 3))):
        kinds = ["assign", "assign", "augmented", "swap", "expression"]
        if depth == 0 and bound:
            kinds.append("del")
        if compound and depth < 2:
            kinds += ["if", "for"]
        kind = draw(st.sampled_from(kinds))
        if kind in ("assign", "expression"):
            walrus: set[str] = set()
            value = draw(expressions(walrus))
            if kind == "assign":
                target = draw(st.sampled_from(NAMES))
                lines.append(f"{pad}{target} = {value}")
                walrus.add(target)
            else:
                lines.append(f"{pad}{value}")
            bound |= walrus
        elif kind == "augmented":
            target = draw(st.sampled_from(NAMES))
            lines.append(f"{pad}{target} {draw(st.sampled_from('+-'))}= {draw(atoms())}")
            bound.add(target)
        elif kind == "swap":
            first, second = draw(
                st.lists(st.sampled_from(NAMES), min_size=2, max_size=2, unique=True)
            )
            lines.append(f"{pad}{first}, {second} = {draw(atoms())}, {draw(atoms())}")
            bound |= {first, second}
        elif kind == "del":
            target = draw(st.sampled_from(sorted(bound)))
            lines.append(f"{pad}del {target}")
            bound.discard(target)
        elif kind == "if":
            lines.append(f"{pad}if {draw(st.sampled_from(NAMES))} > {draw(st.integers(0, 6))}:")
            body_bound = set(bound)
            lines += draw(blocks(body_bound, depth + 1, compound))
            if draw(st.booleans()):
                else_bound = set(bound)
                lines.append(f"{pad}else:")
                lines += draw(blocks(else_bound, depth + 1, compound))
                bound |= body_bound & else_bound
        else:
            target = draw(st.sampled_from(NAMES))
            lines.append(f"{pad}for {target} in range({draw(atoms())} % 3):")
            lines += draw(blocks(set(bound), depth + 1, compound))
    return lines


def programs(compound: bool) -> st.SearchStrategy[str]:
    return (
        st.builds(set)
        .flatmap(lambda bound: blocks(bound, 0, compound))
        .map(lambda lines: "\n".join(lines) + "\n")
    )


@settings(max_examples=300, deadline=None)
@given(programs(compound=False))
def test_straight_line_reads_and_defines_match_execution(code: str) -> None:
    outside_reads, final_names = oracle(code, 1)
    info = analyse(code)
    assert set(info.reads) == outside_reads
    assert set(info.defines) == final_names


@settings(max_examples=300, deadline=None)
@given(programs(compound=True))
def test_every_name_a_run_reads_from_outside_is_a_read(code: str) -> None:
    """Whatever branch or number of loop turns a run takes, its outside reads are inputs."""
    info = analyse(code)
    for value in (0, 1, 2, 4, 7):
        outside_reads, final_names = oracle(code, value)
        assert outside_reads <= set(info.reads), f"with every input = {value}"
        assert final_names <= set(info.defines), f"with every input = {value}"


# -- property: the normalised form ignores layout and sees every semantic edit -----------------

# ("name", str) | ("const", int) | ("binary", op, Expr, Expr) | ("call", [Expr])
Expr = tuple[Any, ...]
# ("assign", target, Expr) | ("augmented", target, op, Expr) | ("expression", Expr)
Stmt = tuple[Any, ...]


def expression_trees() -> st.SearchStrategy[Expr]:
    leaves = st.one_of(
        st.sampled_from(NAMES).map(lambda n: ("name", n)),
        st.integers(0, 99).map(lambda c: ("const", c)),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.tuples(st.just("binary"), st.sampled_from("+-*"), inner, inner),
            st.tuples(st.just("call"), st.lists(inner, min_size=1, max_size=3)),
        ),
        max_leaves=6,
    )


statements = st.one_of(
    st.tuples(st.just("assign"), st.sampled_from(NAMES), expression_trees()),
    st.tuples(
        st.just("augmented"), st.sampled_from(NAMES), st.sampled_from("+-"), expression_trees()
    ),
    st.tuples(st.just("expression"), expression_trees()),
)
trees = st.lists(statements, min_size=1, max_size=5)


class Layout:
    """Renders a program tree as code; with a seed, with random comments, spacing and parentheses."""

    COMMENTS = ("# note", "# x = 1 (old)", "#: a - b", "# TODO: check 'this'", "#")

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed) if seed is not None else None

    def space(self) -> str:
        return self.rng.choice(["", " ", "  ", "\t"]) if self.rng else " "

    def maybe_parens(self, text: str) -> str:
        return (
            f"({self.space()}{text}{self.space()})"
            if self.rng and self.rng.random() < 0.2
            else text
        )

    def expression(self, node: Expr) -> str:
        if node[0] == "name":
            return self.maybe_parens(node[1])
        if node[0] == "const":
            return self.maybe_parens(str(node[1]))
        if node[0] == "binary":
            _, op, left, right = node
            text = f"({self.expression(left)}){self.space()}{op}{self.space()}({self.expression(right)})"
            return self.maybe_parens(text)
        separator = "," + (self.rng.choice([" ", "", "\n    ", " \n"]) if self.rng else " ")
        return f"max({self.space()}{separator.join(self.expression(a) for a in node[1])}{self.space()})"

    def statement(self, node: Stmt) -> str:
        if node[0] == "assign":
            return f"{node[1]}{self.space()}={self.space()}{self.expression(node[2])}"
        if node[0] == "augmented":
            return f"{node[1]}{self.space()}{node[2]}={self.space()}{self.expression(node[3])}"
        return self.expression(node[1])

    def program(self, tree: list[Stmt]) -> str:
        if self.rng is None:
            return "\n".join(self.statement(s) for s in tree) + "\n"
        lines = []
        for node in tree:
            for _ in range(self.rng.randint(0, 2)):
                lines.append(self.rng.choice(["", "    ", *self.COMMENTS]))
            line = self.statement(node)
            if self.rng.random() < 0.4:
                line += self.space() + "  " + self.rng.choice(self.COMMENTS)
            lines.append(line)
        return "\n".join(lines) + self.rng.choice(["", "\n", "\n\n# end\n"])


def constants(node: Any) -> int:
    if isinstance(node, tuple) and node and node[0] == "const":
        return 1
    if isinstance(node, (tuple, list)):
        return sum(constants(child) for child in node)
    return 0


def edit_constant(node: Any, index: list[int]) -> Any:
    """Add 1 to the ``index[0]``-th constant."""
    if isinstance(node, tuple) and node and node[0] == "const":
        index[0] -= 1
        return ("const", node[1] + 1) if index[0] == -1 else node
    if isinstance(node, tuple):
        return tuple(edit_constant(child, index) for child in node)
    if isinstance(node, list):
        return [edit_constant(child, index) for child in node]
    return node


def first_subtraction_swapped(node: Any, done: list[bool]) -> Any:
    is_subtraction = isinstance(node, tuple) and node and node[:2] == ("binary", "-")
    if is_subtraction and not done[0] and node[2] != node[3]:
        done[0] = True
        return ("binary", "-", node[3], node[2])
    if isinstance(node, tuple):
        return tuple(first_subtraction_swapped(child, done) for child in node)
    if isinstance(node, list):
        return [first_subtraction_swapped(child, done) for child in node]
    return node


@settings(max_examples=200, deadline=None)
@given(trees, st.integers(0, 2**32))
def test_normalise_ignores_comments_blank_lines_and_spacing_property(
    tree: list[Stmt], seed: int
) -> None:
    plain, noisy = Layout().program(tree), Layout(seed).program(tree)
    assert normalise(plain) == normalise(noisy), noisy


@settings(max_examples=200, deadline=None)
@given(trees, st.data())
def test_normalise_differs_for_every_semantic_edit(tree: list[Stmt], data: st.DataObject) -> None:
    edits = ["rename"]
    if constants(tree):
        edits.append("constant")
    swapped = first_subtraction_swapped(tree, [False])
    if swapped != tree:
        edits.append("swap")
    edit = data.draw(st.sampled_from(edits))
    if edit == "constant":
        edited = edit_constant(tree, [data.draw(st.integers(0, constants(tree) - 1))])
    elif edit == "swap":
        edited = swapped
    else:
        position = data.draw(st.integers(0, len(tree) - 1))
        node = tree[position]
        if node[0] == "expression":
            node = ("assign", "z", node[1])  # binding a new name is an edit too
        else:
            new_target = data.draw(st.sampled_from([n for n in (*NAMES, "z") if n != node[1]]))
            node = (node[0], new_target, *node[2:])
        edited = [*tree[:position], node, *tree[position + 1 :]]
    assert normalise(Layout().program(tree)) != normalise(Layout().program(edited))


# -- property: a step's fingerprint -----------------------------------------------------------------------


STORE_NUMBERS = itertools.count()


@pytest.fixture(scope="module")
def fingerprint_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fingerprints")


def define(pipe: Pipeline, code: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MutationWarning)
        pipe.define_cell("compute", code)


@settings(max_examples=60, deadline=None)
@given(trees, st.integers(0, 2**32), st.data())
def test_step_fingerprint_ignores_layout_and_follows_input_values(
    fingerprint_root: Path, tree: list[Stmt], seed: int, data: st.DataObject
) -> None:
    plain, noisy = Layout().program(tree), Layout(seed).program(tree)
    namespace: dict[str, Any] = {name: index for index, name in enumerate(NAMES)}
    store = Store(fingerprint_root / f"store-{next(STORE_NUMBERS)}")
    pipe = Pipeline("fingerprints", store=store, namespace=namespace)
    define(pipe, plain)
    before = pipe.fingerprint("compute")
    define(pipe, noisy)
    assert pipe.fingerprint("compute") == before
    inputs = pipe.steps["compute"].reads
    assume(inputs)
    changed = data.draw(st.sampled_from(inputs))
    namespace[changed] = data.draw(st.integers().filter(lambda v: v != namespace[changed]))
    assert pipe.fingerprint("compute") != before
    store.close()


def test_step_fingerprint_changes_when_one_cell_of_an_input_frame_changes(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    namespace: dict[str, Any] = {"raw": frame}
    pipe = Pipeline("frames", store=Store(tmp_path / "store"), namespace=namespace)
    pipe.define_cell("clean", "clean = raw.dropna()  # drop gaps")
    before = pipe.fingerprint("clean")
    namespace["raw"] = frame.copy()
    assert pipe.fingerprint("clean") == before
    changed = frame.copy()
    changed.loc[1, "b"] = "Y"
    namespace["raw"] = changed
    assert pipe.fingerprint("clean") != before
    pipe.define_cell("clean", "clean = raw.dropna()\n\n# drop rows with gaps\n")
    namespace["raw"] = frame
    assert pipe.fingerprint("clean") == before
    pipe.define_cell("clean", "clean = raw.dropna(how='all')")
    assert pipe.fingerprint("clean") != before


# -- aliases: names bound to a part of an upstream value ------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name", "alias", "lineno"),
    [
        ("for name, clf in models.items():\n    clf.fit(X, y)", "models", "clf", 2),
        ("for clf in models.values():\n    clf.fit(X, y)", "models", "clf", 2),
        ("for clf in estimators:\n    clf.fit(X, y)", "estimators", "clf", 2),
        ("for i, clf in enumerate(estimators):\n    clf.fit(X, y)", "estimators", "clf", 2),
        (
            "for clf, grid in zip(estimators, grids):\n    clf.set_params(**grid)",
            "estimators",
            "clf",
            2,
        ),
        ("for clf in sorted(estimators, key=str):\n    clf.fit(X, y)", "estimators", "clf", 2),
        ('clf = models["rf"]\nclf.fit(X, y)', "models", "clf", 2),
        ('clf = models.get("rf")\nclf.fit(X, y)', "models", "clf", 2),
        ("est = pipe.steps[0][1]\nest.fit(X)", "pipe", "est", 2),
        ("head, tail = pair\ntail.append(1)", "pair", "tail", 2),
        ("first, *middle, last = items\nlast.append(1)", "items", "last", 2),
        ("m = model\nm.fit(X, y)", "model", "m", 2),
        ('clf = models["rf"]\nclf.n_jobs = 2', "models", "clf", 2),
        ("row = rows[0]\nrow += [1]", "rows", "row", 2),
        ("fitted = [m.fit(X, y) for m in models.values()]", "models", "m", 1),
        ('if (clf := models.get("rf")) is not None:\n    clf.fit(X, y)', "models", "clf", 2),
        ("clf = Ridge()\nif refit:\n    clf = models['rf']\nclf.fit(X, y)", "models", "clf", 4),
    ],
)
def test_a_change_through_an_alias_is_reported_against_the_upstream_name(
    code: str, name: str, alias: str, lineno: int
) -> None:
    changes = [(m.name, m.alias, m.lineno) for m in analyse(code).mutations]
    assert changes == [(name, alias, lineno)]


def test_an_alias_records_the_path_from_the_upstream_value() -> None:
    (change,) = analyse(
        "for name, pipe in pipes.items():\n    pipe.steps[-1][1].fit(X, y)"
    ).mutations
    assert change.via == (("values", None),)
    assert change.path == (("attr", "steps"), ("item", -1), ("item", 1))
    (change,) = analyse("est = pipe.steps[0][1]\nest.fit(X)").mutations
    assert change.via == (("attr", "steps"), ("item", 0), ("item", 1))
    assert change.path == ()


@pytest.mark.parametrize(
    "code",
    [
        'clf = models["rf"]\nclf = Ridge()\nclf.fit(X, y)',
        'clf = models["rf"].copy()\nclf.fit(X, y)',
        "first, *rest = items\nrest.append(1)",
        "for clf in make_models():\n    clf.fit(X, y)",
        "for clf in models.values():\n    pass\nclf = Ridge()\nclf.fit(X, y)",
        "fitted = [Ridge().fit(X, y) for _ in range(3)]",
        "pairs = [a, b]\npairs.append(c)",
    ],
)
def test_a_name_rebound_to_a_new_value_is_no_alias(code: str) -> None:
    assert analyse(code).mutations == ()


def test_del_ends_an_alias_and_the_name_is_read_from_outside_again() -> None:
    (change,) = analyse('clf = models["rf"]\ndel clf\nclf.fit(X, y)').mutations
    assert (change.name, change.alias) == ("clf", None)


def test_every_method_call_on_an_upstream_value_or_alias_is_recorded() -> None:
    info = analyse(
        "ax1, ax2 = axes\n"
        "ax2.plot(x, label='a')\n"
        "fitted = clf.fit(X, y)\n"
        "df.dropna(subset=['a'], inplace=True)\n"
        "local = []\n"
        "local.append(1)\n"
        "for ax in axes.ravel():\n"
        "    ax.set_title('t')\n"
    )
    calls = {(c.name, c.method): c for c in info.calls}
    assert set(calls) == {
        ("axes", "plot"),
        ("clf", "fit"),
        ("df", "dropna"),
        ("axes", "ravel"),
        ("axes", "set_title"),
    }
    plot = calls["axes", "plot"]
    assert (plot.alias, plot.via, plot.lineno, plot.arguments) == (
        "ax2",
        (("item", 1),),
        2,
        "x, label='a'",
    )
    assert calls["clf", "fit"].result == "fitted"
    dropna = calls["df", "dropna"]
    assert (dropna.inplace, dropna.arguments, dropna.receiver) == (True, "subset=['a']", "df")
    title = calls["axes", "set_title"]
    assert title.via == (("attr", "flat"), ("iter", None))
    assert title.loop == "for ax in axes.ravel()"
    # Only the calls that today's list of method names knows are mutations by themselves.
    assert [(m.name, m.how) for m in info.mutations] == [
        ("clf", "calls .fit() on"),
        ("df", "calls .dropna() on"),
    ]


# -- line and cell magics: the code IPython runs ------------------------------------------------------


@pytest.fixture(scope="module")
def transform() -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.testing.globalipapp import start_ipython

    start_ipython()  # the tests' one shell, which InteractiveShell.instance() then returns
    return InteractiveShell.instance().transform_cell


@pytest.mark.parametrize(
    ("cell", "defined", "read"),
    [
        ("%time x = f(a)", ("x",), ("f", "a")),
        ("%time --no-raise-error x = f(a)", ("x",), ("f", "a")),
        ("%time -a + b", (), ("a", "b")),
        ("y = %time f(a)", ("y",), ("f", "a")),
        ("%prun -s cumulative -l 10 -q z = g(b)", ("z",), ("g", "b")),
        ("%timeit -n 10 -r 3 -o -q h(c)", (), ("h", "c")),
        ("%timeit -n10 x = h(c)", (), ("h", "c")),
        ("t = %timeit -o h(c)", ("t",), ("h", "c")),
        ("%timeit -q -v result h(c)", ("result",), ("h", "c")),
        ("x = %sql SELECT 1", ("x",), ()),
        ("%%time\nx = 1\ny = x + a\n", ("x", "y"), ("a",)),
        ("%%timeit -n1 data = prepare()\nrun(data)\n", (), ("prepare", "run")),
        ("%%prun -q\nz = g(b)\n", ("z",), ("g", "b")),
        ("for i in r:\n    %time x = f(i)", ("i", "x"), ("r", "f")),
    ],
)
def test_magics_that_run_code_are_analysed_as_that_code(
    transform: Any, cell: str, defined: tuple[str, ...], read: tuple[str, ...]
) -> None:
    info = analyse(transform(cell))
    assert info.defines == defined
    assert [name for name in info.reads if name != "get_ipython"] == list(read)


def test_a_change_inside_a_magic_is_reported_at_the_magic_line(transform: Any) -> None:
    code = transform(
        'x = 1\n%time df.drop(columns=["a"], inplace=True)\n%timeit -n1 log.append(x)\n'
    )
    assert [(m.name, m.lineno, m.how) for m in analyse(code).mutations] == [
        ("df", 2, "calls .drop() on"),
        ("log", 3, "calls .append() on"),
    ]


@pytest.mark.parametrize("cell", ["%time x = (", "%prun -s", "%timeit -n", "%time", "%time x ="])
def test_magic_code_that_does_not_parse_is_left_to_the_magic(transform: Any, cell: str) -> None:
    info = analyse(transform(cell))
    assert (info.defines, info.reads) == ((), ("get_ipython",))


def test_other_magics_are_not_analysed(transform: Any) -> None:
    info = analyse(transform("%matplotlib inline\n%env x = 1\n"))
    assert (info.defines, info.reads) == ((), ("get_ipython",))


def test_a_step_timed_with_percent_time_stores_its_output(nb: Notebook) -> None:
    nb.ok("%%step timed\n%time answer = 40 + 2")
    assert nb.pipeline.steps["timed"].outputs == ("answer",)
    assert nb.ns["answer"] == 42


# -- property: analysis never crashes, and a cell's own values are never its mutations ------------------

UPSTREAM = ("a", "b", "models", "axes")
ALIASES = ("v", "w")
OWN = ("p", "q")
METHODS = ("fit(X, y)", "append(1)", "plot()", "add(B, fill_value=0)", "sort()", "update(e)")
PARTS = (".x", ".steps", "[0]", "[-1]", "['k']", "[i]", "[1:]", ".get('k')", ".ravel()", ".copy()")
SIMPLE = ("alias", "unpack", "call", "inplace", "assign", "augment", "own", "del", "comprehension")
COMPOUND = ("magic", "for", "while", "if", "try", "with", "def")


@st.composite
def references(draw: st.DrawFn, roots: tuple[str, ...]) -> str:
    """An expression that may be a part of a value: `a`, `a.x`, `a[0]`, `a.get('k')`, `a[1:]`..."""
    parts = draw(st.lists(st.sampled_from(PARTS), max_size=3))
    return draw(st.sampled_from(roots)) + "".join(parts)


@st.composite
def iterables(draw: st.DrawFn, roots: tuple[str, ...]) -> str:
    ref = draw(references(roots))
    forms = [ref, f"{ref}.items()", f"{ref}.values()", f"enumerate({ref})", f"zip({ref}, b)"]
    return draw(st.sampled_from([*forms, f"sorted({ref}, key=str)", f"{ref}.flatten()"]))


@st.composite
def cell_lines(draw: st.DrawFn, depth: int = 0) -> list[str]:
    """Statements that alias upstream values into ALIASES and call methods on every name."""
    every = (*UPSTREAM, *ALIASES, *OWN)
    ref, method = draw(references(every)), draw(st.sampled_from(METHODS))
    alias, other = draw(st.sampled_from(ALIASES)), draw(st.sampled_from(ALIASES))
    kind = draw(st.sampled_from(SIMPLE + (COMPOUND if depth < 2 else ())))
    simple = {
        "alias": f"{alias} = {ref}",
        "unpack": f"{alias}, *rest, {other} = {ref}",
        "call": f"{ref}.{method}",
        "inplace": f"{ref}.dropna(inplace=True)",
        "assign": f"{ref}{draw(st.sampled_from(['.x', '[0]']))} = {draw(references(every))}",
        "augment": f"{draw(st.sampled_from(every))} += {ref}",
        "own": f"{draw(st.sampled_from(OWN))} = {draw(st.sampled_from(['[]', 'Ridge()', '{}']))}",
        "del": f"del {alias}",
        "comprehension": f"out = [{alias}.{method} for {alias} in {draw(iterables(every))}]",
    }
    if kind in simple:
        return [simple[kind]]
    if kind == "magic":  # what IPython makes of %time, %timeit and %prun; the code may not parse
        inner = draw(cell_lines(depth + 1))[0]
        magic, options = draw(
            st.sampled_from([("time", ""), ("timeit", "-n1 -q "), ("prun", "-q ")])
        )
        return [f"get_ipython().run_line_magic({magic!r}, {options + inner!r})"]
    body = [
        "    " + line
        for _ in range(draw(st.integers(1, 3)))
        for line in draw(cell_lines(depth + 1))
    ]
    headers = {
        "for": [f"for {alias} in {draw(iterables(every))}:"],
        "while": [f"while {ref}:"],
        "if": [f"if {ref}:"],
        "try": ["try:"],
        "with": [f"with {ref} as {alias}:"],
        "def": [f"def helper({alias}):"],
    }
    handler = ["except Exception as error:", "    pass"] if kind == "try" else []
    return [*headers[kind], *body, *handler]


def generated_cells() -> st.SearchStrategy[str]:
    own = "".join(f"{name} = make()\n" for name in OWN)  # the cell makes its own values first
    return st.lists(cell_lines(), min_size=1, max_size=8).map(
        lambda blocks: own + "\n".join(line for block in blocks for line in block) + "\n"
    )


@settings(max_examples=150, deadline=None)
@given(generated_cells())
def test_analysis_never_crashes_and_never_blames_the_cells_own_values(code: str) -> None:
    info = analyse(code)
    # The own names are only ever bound to new values, never deleted or aliased, so every
    # method call on them and every change through them stays inside the cell.
    assert not [m for m in info.mutations if m.name in OWN or m.alias in OWN], code
    assert not [c for c in info.calls if c.name in OWN or c.alias in OWN], code
    assert set(info.reads).isdisjoint(OWN), code
