"""The cell runner: executes one step's code and records what it printed and displayed."""

from __future__ import annotations

import ast
import contextlib
import io
import linecache
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .steps import Step

__all__ = ["CellRunner", "run_code", "remember_source", "assign_outputs", "Recording"]

#: The output a step produced, in order, as nbformat-style dicts
#: (``{"output_type": "stream", "name": "stdout", "text": ...}`` or ``display_data``).
Recording = list[dict[str, Any]]


def remember_source(code: str, filename: str) -> None:
    """Let tracebacks and warnings quote ``code`` under ``filename`` (e.g. ``<step clean>``)."""
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)


def run_code(code: str, namespace: dict[str, Any], filename: str) -> Any:
    """Execute cell code in ``namespace`` like a notebook cell; return its last expression's value.

    The source is registered with :mod:`linecache` so tracebacks show the step's own lines.
    A trailing ``;`` hides the last value, as in IPython.

    >>> ns = {}
    >>> run_code("x = 2\\nx * 21", ns, "<step demo>")
    42
    """
    __tracebackhide__ = True  # noqa: F841 -- IPython hides this frame from tracebacks
    tree = ast.parse(code, filename)
    last: ast.Expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
        last = cast(ast.Expr, tree.body.pop())
    remember_source(code, filename)
    exec(compile(tree, filename, "exec"), namespace)  # noqa: S102 -- running the user's cell is the job
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), filename, "eval"), namespace)  # noqa: S307


class _Tee(io.TextIOBase):
    """Writes through to a stream while recording what was written."""

    def __init__(self, target: Any, name: str, recording: Recording) -> None:
        self.target, self.name, self.recording = target, name, recording

    def write(self, text: str) -> int:
        self.target.write(text)
        last = self.recording[-1] if self.recording else None
        if last and last["output_type"] == "stream" and last["name"] == self.name:
            last["text"] += text
        else:
            self.recording.append({"output_type": "stream", "name": self.name, "text": text})
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")


class CellRunner:
    """Runs one step's code in this process, in the pipeline's namespace, recording its output.

    ``execute`` is a Template Method: other front ends override its hooks (``recording``,
    ``finish``, ``show``, ``replay``); the notebook's runner also records rich display output.
    """

    def execute(self, step: Step, namespace: dict[str, Any]) -> Recording:
        """Run ``step``; its outputs land in ``namespace``. Returns what it printed and displayed."""
        __tracebackhide__ = True  # noqa: F841
        recording: Recording = []
        with self.recording(recording):
            value = self.call(step, namespace)
            if value is not None:
                self.show(value)
            self.finish()
        return recording

    @contextlib.contextmanager
    def recording(self, recording: Recording) -> Iterator[None]:
        """While active, what the step writes to stdout and stderr is shown and recorded."""
        saved = sys.stdout, sys.stderr
        sys.stdout = _Tee(saved[0], "stdout", recording)
        sys.stderr = _Tee(saved[1], "stderr", recording)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved

    def finish(self) -> None:
        """Called after the step's code, still recording (front ends flush pending output here)."""

    def call(self, step: Step, namespace: dict[str, Any]) -> Any:
        """Run the step's code or function; return the value to display, if any."""
        __tracebackhide__ = True  # noqa: F841
        if step.func is None:
            return run_code(step.code, namespace, f"<step {step.name}>")
        result = step.func(*(namespace[name] for name in step.reads))
        assign_outputs(step, result, namespace)
        return None

    def show(self, value: Any) -> None:
        """Display a cell's last value: in a script, its repr on stdout."""
        print(repr(value))

    def replay(self, recording: Recording) -> None:
        """Show recorded output again, as text."""
        for output in recording:
            if output["output_type"] == "stream":
                (sys.stderr if output["name"] == "stderr" else sys.stdout).write(output["text"])
            else:
                print(output["data"].get("text/plain", ""))


def assign_outputs(step: Step, result: Any, namespace: dict[str, Any]) -> None:
    """Bind a function step's return value to its output name(s)."""
    if len(step.outputs) == 1:
        namespace[step.outputs[0]] = result
        return
    if not isinstance(result, (tuple, list)) or len(result) != len(step.outputs):
        raise ValueError(
            f"Step {step.name!r} declares outputs {list(step.outputs)} but returned "
            f"{type(result).__qualname__}; return a tuple of {len(step.outputs)} values."
        )
    namespace.update(zip(step.outputs, result))
