"""Pipeline -> a standalone Python module: one function per step and a ``main()`` that runs them."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path
from typing import Any

from .errors import MlopsNbError
from .pipeline import Pipeline, Step

__all__ = ["export_pipeline", "pipeline_source"]


def export_pipeline(pipeline: Pipeline, path: str | Path) -> Path:
    """Write :func:`pipeline_source` to ``path`` (a ``.py`` file) and return the path."""
    path = Path(path)
    if path.suffix != ".py":
        raise MlopsNbError(f"Export to a .py file, e.g. 'pipeline.py'; got {str(path)!r}.")
    source = pipeline_source(pipeline, filename=path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def _function_name(step: Step) -> str:
    return "step_" + re.sub(r"\W", "_", step.name)


def pipeline_source(pipeline: Pipeline, filename: str | None = None) -> str:
    """Python source that runs the pipeline's steps in order, without notebooks or mlops_nb.

    Values that steps read but no step produces (constants from plain cells) are written as
    literals when they are simple enough; anything else is an error that names it.
    """
    order = pipeline.order()
    produced = {n for name in order for n in pipeline.steps[name].outputs}
    imports: dict[str, str] = {}
    constants: dict[str, str] = {}
    functions: list[str] = []
    calls: list[str] = []
    for name in order:
        step = pipeline.steps[name]
        for alias, (module, qualname) in step.imports.items():
            imports[alias] = _import_line(alias, module, qualname)
        functions.append(_step_function(step))
        for read in step.reads:
            if read not in produced and read not in constants:
                constants[read] = _literal(read, pipeline.namespace, step)
        arguments = ", ".join(step.reads)
        call = f"{_function_name(step)}({arguments})"
        targets = ", ".join(step.outputs)
        calls.append(f"    {targets} = {call}" if targets else f"    {call}")
    outputs = ", ".join(f"{n!r}: {n}" for name in order for n in pipeline.steps[name].outputs)
    body = "\n".join(calls) or "    pass"
    module = "\n".join(
        [
            f'"""Pipeline {pipeline.name!r}: one function per step, in dependency order.',
            "",
            f"Run it with: python {filename or pipeline.name + '.py'}",
            '"""',
            "",
            *sorted(set(imports.values())),
            "",
            *(f"{name} = {value}" for name, value in constants.items()),
            "",
            *functions,
            "def main():",
            '    """Run every step in order and return their outputs."""',
            body,
            f"    return {{{outputs}}}",
            "",
            "",
            'if __name__ == "__main__":',
            "    main()",
            "",
        ]
    )
    compile(module, f"{pipeline.name}.py", "exec")  # never write a file that cannot run
    return re.sub(r"\n{3,}(?=\S)", "\n\n\n", module).lstrip("\n")


def _import_line(alias: str, module: str, qualname: str) -> str:
    if not qualname:
        return f"import {module}" if alias == module else f"import {module} as {alias}"
    return f"from {module} import {qualname}" + ("" if alias == qualname else f" as {alias}")


def _literal(name: str, namespace: dict[str, Any], step: Step) -> str:
    if name in namespace:
        text = repr(namespace[name])
        try:
            if ast.literal_eval(text) == namespace[name]:
                return text
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    raise MlopsNbError(
        f"Cannot export: step {step.name!r} reads {name!r}, which no step produces"
        + (" and which is not a simple literal." if name in namespace else " and which is not defined.")
        + f" Compute {name!r} inside a step (e.g. %%step config), then export again."
    )


def _step_function(step: Step) -> str:
    if "get_ipython()" in step.code:
        raise MlopsNbError(
            f"Cannot export step {step.name!r}: it uses IPython syntax (a %magic or !command). "
            f"Replace it with plain Python, then export again."
        )
    if step.kind == "function":
        tree = ast.parse(step.code)
        function = tree.body[0]
        assert isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        function.decorator_list = []
        function.name = _function_name(step)
        return ast.unparse(function) + "\n\n"
    parameters = ", ".join(step.reads)
    body = textwrap.indent(step.code.strip() or "pass", "    ")
    returns = ", ".join(step.outputs)
    lines = [
        f"def {_function_name(step)}({parameters}):",
        f'    """Step {step.name!r}."""',
        body,
    ]
    if returns:
        lines.append(f"    return {returns}")
    return "\n".join(lines) + "\n\n"

