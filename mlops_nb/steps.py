"""Step: one cell's (or function's) code, the names it reads and writes, and what it imports."""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import xxhash

from .cells import CellInfo, analyse, normalise, parse
from .errors import validate_name

__all__ = ["Step", "analysed"]

# A notebook re-runs the same cells again and again: analyse each code text once (both results
# are immutable, so sharing them is safe).
analysed = functools.lru_cache(maxsize=1024)(analyse)
_normalised = functools.lru_cache(maxsize=1024)(normalise)


@functools.lru_cache(maxsize=1024)
def _import_statements(code: str) -> tuple[str, ...]:
    found: list[str] = []
    pending: list[ast.stmt] = list(parse(code).body)
    while pending:
        statement = pending.pop(0)
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            found.append(ast.unparse(statement))
        elif isinstance(statement, (ast.If, ast.Try, ast.With)):
            inner = [*statement.body, *getattr(statement, "orelse", [])]
            for handler in getattr(statement, "handlers", []):
                inner.extend(handler.body)
            pending[:0] = [*inner, *getattr(statement, "finalbody", [])]  # keep their order
    return tuple(found)


@dataclass
class Step:
    """One unit of work: code (or a function), the names it reads and the names it outputs.

    ``imports`` maps names the step reads that are modules or importable library objects to
    ``[module, qualname]``; ``defines_imports`` does the same for the names its own import
    statements bind. Imports are never data: they are re-done, not stored.

    >>> step = Step("load", "import math\\nx = math.pi")
    >>> step.import_statements()
    ['import math']
    """

    name: str
    code: str
    source: str = ""
    reads: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    no_cache: bool = False
    kind: str = "cell"  # or "function", for @step
    imports: dict[str, list[str]] = field(default_factory=dict)
    defines_imports: dict[str, list[str]] = field(default_factory=dict)
    #: Inputs the step was seen changing in place when it ran (e.g. a random generator passed to
    #: a library function): outputs too, learned at run time, so not part of the definition.
    learned: tuple[str, ...] = ()
    func: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_name(self.name)
        self.source = self.source or self.code

    @functools.cached_property
    def code_hash(self) -> str:
        """Hash of what defines the step: normalised code and options, not comments or spacing."""
        declared = [name for name in self.outputs if name not in self.learned]
        options = json.dumps([declared, self.needs, self.files, sorted(self.reads)])
        return xxhash.xxh3_128_hexdigest((_normalised(self.code) + options).encode())

    @functools.cached_property
    def info(self) -> CellInfo:
        """What static analysis finds in the step's code (names read, bound, imported)."""
        return analysed(self.code) if self.kind == "cell" else CellInfo((), (), ())

    def import_statements(self) -> list[str]:
        """The step's top-level import statements (also inside top-level if/try blocks).

        A cached step is not executed, but the modules it imports must still be there for the
        cells after it, as after a plain run: these statements are re-done on restore.
        """
        return list(_import_statements(self.code)) if self.kind == "cell" else []

    def to_json(self) -> str:
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "func"}
        return json.dumps(record)

    @classmethod
    def from_json(cls, text: str) -> Step:
        record = json.loads(text)
        for key in ("reads", "outputs", "needs", "files", "learned"):
            record[key] = tuple(record[key])
        return cls(**record)
