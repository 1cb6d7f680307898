"""A cached result always equals what a fresh execution gives: random edits, restarts and re-runs
of a small stepped notebook, checked against the same cells run plainly (a hypothesis state machine).

The notebook: a plain cell of inputs, then five ``%%step`` cells. They read a data file
(``--files``), call a helper function from an earlier step (which reads a global of the plain
cell), import the user's own module (which imports another), use a "third-party" package with a
version, and re-bind a name (``score = score + 1``). Each rule edits something the way a user
would, then runs every cell top to bottom through the cache (or restarts the kernel). After each
run, every cell's outputs must equal those of the oracle: the same cells without the magics,
``exec``-ed in a fresh namespace with the modules as the kernel has them loaded (a module file
edited but not reloaded still runs its old code, in the kernel and so in the oracle too). When
nothing changed since the last run, no step may execute.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import shutil
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from IPython import get_ipython
from IPython.testing.globalipapp import start_ipython

from mlops_nb.magics import active_pipeline, load
from mlops_nb.observers import RunObserver


@dataclass(frozen=True)
class Variant:
    """One version of a piece of code; variants with the same ``meaning`` differ only in comments."""

    meaning: int
    code: str


# -- the notebook ------------------------------------------------------------------------------------
# Each step cell's variants. ``{data}`` is the data file's path, filled in per example.
STEP_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "load": (
        Variant(0, "import pathlib\nrows = [int(t) for t in pathlib.Path({data}).read_text().split()][:SIZE]"),
        Variant(0, "import pathlib\n\n# the first SIZE numbers of the file\nrows = [int(t) for t in pathlib.Path({data}).read_text().split()][:SIZE]  # ints"),
        Variant(1, "import pathlib\nrows = sorted(int(t) for t in pathlib.Path({data}).read_text().split())[:SIZE]"),
    ),
    "helpers": (  # a helper a later step calls: its body, default argument and a global it reads
        Variant(0, "def scale(v, k=2):\n    return v * k + OFFSET"),
        Variant(0, "def scale(v, k=2):\n    # linear, shifted by the notebook's OFFSET\n    return v * k + OFFSET  # no rounding"),
        Variant(1, "def scale(v, k=3):\n    return v * k + OFFSET"),
        Variant(2, "def scale(v, k=2):\n    return v * k - OFFSET"),
    ),
    "features": (  # the user's own module, imported two ways
        Variant(0, "import helpers_mod\nfeatures = [helpers_mod.transform(scale(r)) for r in rows]"),
        Variant(0, "import helpers_mod  # our own module\n\nfeatures = [helpers_mod.transform(scale(r)) for r in rows]"),
        Variant(1, "from helpers_mod import transform\nfeatures = [transform(scale(r, 1)) for r in rows]"),
    ),
    "model": (  # a third-party package whose behaviour depends on its version
        Variant(0, "import fakelib\nscore = sum(features) * fakelib.SCALE"),
        Variant(0, "import fakelib\n# weighted by the library's constant\nscore = sum(features) * fakelib.SCALE"),
        Variant(1, "from fakelib import SCALE\nscore = max(features, default=0) * SCALE"),
    ),
    "adjust": (  # re-binds a name an earlier step outputs
        Variant(0, "score = score + 1"),
        Variant(0, "score = score + 1  # one more, in a later cell"),
        Variant(1, "score = score * 2"),
    ),
}
STEPS = tuple(STEP_VARIANTS)
#: What each cell binds: the values compared with the oracle's.
OUTPUTS = {"inputs": ("SIZE", "OFFSET"), "load": ("rows",), "helpers": ("scale",),
           "features": ("features",), "model": ("score",), "adjust": ("score",)}  # fmt: skip

SIZES, OFFSETS = (2, 3, 4), (0, 1, 2)
# The last two differ only after the third number: with SIZE <= 3, `rows` does not change.
DATA_FILES = ("3 1 2 5", "3 1 2 6", "7 0 4 4 9")

MODULE_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "helpers_mod": (
        Variant(0, "import helpers_base\n\n\ndef transform(v):\n    return v + helpers_base.BIAS\n"),
        Variant(0, "# helpers for the features step\nimport helpers_base\n\n\ndef transform(v):\n    # shift by the shared bias\n    return v + helpers_base.BIAS\n"),
        Variant(1, "import helpers_base\n\n\ndef transform(v):\n    return v * 10 + helpers_base.BIAS\n"),
        Variant(2, "import helpers_base\n\nSTRIDE = 3\n\n\ndef transform(v):\n    return v + helpers_base.BIAS * STRIDE\n"),
    ),
    "helpers_base": (  # imported by helpers_mod only: a step depends on it transitively
        Variant(0, "BIAS = 1\n"),
        Variant(0, "# shared by every helper\nBIAS = 1\n"),
        Variant(1, "BIAS = 4\n"),
    ),
}
LIBRARY_VERSIONS = {"1.0": 10, "1.1": 20, "2.0": 30}  # version -> fakelib.SCALE
OUR_MODULES = ("helpers_mod", "helpers_base", "fakelib")


def observe(value: Any) -> Any:
    """A value as compared with the oracle's: a function by its defaults and what it returns."""
    if isinstance(value, types.FunctionType):
        return ("function", value.__defaults__, value(10))
    return value


class OutputsPerStep(RunObserver):
    """Notes each step's outputs as ``%pipeline run`` finishes it (later steps may re-bind them)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.outputs: dict[str, dict[str, Any]] = {}

    def step_finished(self, report: Any) -> None:
        self.outputs[report.step] = {n: observe(self.namespace[n]) for n in OUTPUTS[report.step]}


class CachedNotebook(RuleBasedStateMachine):
    """Edits a stepped notebook at random; after each edit, runs it and compares with the oracle."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="mlops_nb_machine_"))
        self.modules_dir, self.site_dir = self.root / "modules", self.root / "site-packages"
        self.data, self.log = self.root / "data.txt", self.root / "executions.log"
        self.modules_dir.mkdir()
        self.site_dir.mkdir()
        os.environ["MLOPS_NB_HOME"] = str(self.root / "store")
        sys.path[:0] = [str(self.modules_dir), str(self.site_dir)]
        self.forget_modules()
        self.forget_autoreload_state()
        # The notebook as it is now (the model's state).
        self.variant = dict.fromkeys(STEPS, 0)
        self.inputs = {"SIZE": 3, "OFFSET": 1}
        self.module_variant = dict.fromkeys(MODULE_VARIANTS, 0)
        self.version = "1.0"
        self.file_clock = 1_000_000_000.0  # mtimes we set, always increasing (autoreload compares them)
        self.write_data(0)
        for module in MODULE_VARIANTS:
            self.write_module(module, 0)
        self.write_library("1.0")
        # Whether something that may change a result happened since the last run, and which
        # edited files the kernel has not loaded yet (a restart loads them).
        self.changed = True
        self.not_loaded: set[str] = set()
        self.autoreload = False
        self.runs = 0
        start_ipython()  # once per process; later calls are no-ops
        self.shell = get_ipython()
        self.shell.reset(new_session=True)
        load(self.shell)

    def teardown(self) -> None:
        if self.autoreload:
            self.shell.run_cell("%autoreload 0")
        self.shell.reset(new_session=True)
        self.forget_modules()
        self.forget_autoreload_state()
        for folder in (self.modules_dir, self.site_dir):
            sys.path.remove(str(folder))
        shutil.rmtree(self.root, ignore_errors=True)

    # -- files the notebook uses ---------------------------------------------------------------
    def touch(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.file_clock += 1
        os.utime(path, (self.file_clock, self.file_clock))
        importlib.invalidate_caches()

    def write_data(self, index: int) -> None:
        self.touch(self.data, DATA_FILES[index] + "\n")

    def write_module(self, module: str, index: int) -> None:
        self.touch(self.modules_dir / f"{module}.py", MODULE_VARIANTS[module][index].code)

    def write_library(self, version: str) -> None:
        """Install fakelib ``version`` as pip would: the package and its dist-info metadata."""
        for old in self.site_dir.glob("fakelib-*.dist-info"):
            shutil.rmtree(old)
        code = f"__version__ = {version!r}\nSCALE = {LIBRARY_VERSIONS[version]}\n"
        self.touch(self.site_dir / "fakelib" / "__init__.py", code)
        info = self.site_dir / f"fakelib-{version}.dist-info"
        self.touch(info / "METADATA", f"Metadata-Version: 2.1\nName: fakelib\nVersion: {version}\n")
        self.touch(info / "top_level.txt", "fakelib\n")
        self.touch(info / "RECORD", "fakelib/__init__.py,,\n")

    @staticmethod
    def forget_modules() -> None:
        """What a new kernel process does not have: our modules."""
        for module in OUR_MODULES:
            sys.modules.pop(module, None)

    @staticmethod
    def forget_autoreload_state() -> None:
        """A new kernel's autoreload has seen none of our modules. IPython keeps what it saw (file
        times, sources) per process, so a simulated restart, or the next example, clears it."""
        shell = get_ipython()
        magics = shell.magics_manager.registry.get("AutoreloadMagics") if shell else None
        if magics is None:
            return
        for module in OUR_MODULES:
            magics.loaded_modules.discard(module)
            magics._reloader.modules_mtimes.pop(module, None)
            magics._reloader.deduper_reloader.source_by_modname.pop(module, None)

    # -- the cells ------------------------------------------------------------------------------
    def inputs_cell(self) -> str:
        return "".join(f"{name} = {value}\n" for name, value in self.inputs.items())

    def body(self, step: str) -> str:
        return STEP_VARIANTS[step][self.variant[step]].code.format(data=repr(str(self.data)))

    def step_cell(self, step: str) -> str:
        """The %%step cell: its body, after a line that notes each real execution in the log."""
        options = f" --files {self.data}" if step == "load" else ""
        note = f"with open({str(self.log)!r}, 'a') as _log: _log.write('{step}\\n')\n"
        return f"%%step {step}{options}\n{note}{self.body(step)}"

    def run_cell(self, cell: str) -> None:
        result = self.shell.run_cell(cell, store_history=True)
        error = result.error_before_exec or result.error_in_exec
        assert error is None, f"cell failed with {error!r}:\n{cell}"

    def executions(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    # -- running and checking -------------------------------------------------------------------
    def run_all(self) -> dict[str, dict[str, Any]]:
        """Run All, as a notebook does: each cell in order; returns each cell's outputs."""
        outputs = {}
        self.run_cell(self.inputs_cell())
        outputs["inputs"] = {n: observe(self.shell.user_ns[n]) for n in OUTPUTS["inputs"]}
        for step in STEPS:
            self.run_cell(self.step_cell(step))
            outputs[step] = {n: observe(self.shell.user_ns[n]) for n in OUTPUTS[step]}
        return outputs

    def pipeline_run(self) -> dict[str, dict[str, Any]]:
        """After a restart: the plain cell (not a step), then ``%pipeline run`` for every step."""
        self.run_cell(self.inputs_cell())
        outputs = {"inputs": {n: observe(self.shell.user_ns[n]) for n in OUTPUTS["inputs"]}}
        recorder = OutputsPerStep(self.shell.user_ns)
        active_pipeline().observers.append(recorder)
        try:
            self.run_cell("%pipeline run")
        finally:
            active_pipeline().observers.remove(recorder)
        return outputs | recorder.outputs

    def oracle(self) -> dict[str, dict[str, Any]]:
        """The same cells run plainly, in a fresh namespace, with the modules as loaded now."""
        namespace: dict[str, Any] = {"__name__": "__main__"}
        outputs = {}
        exec(self.inputs_cell(), namespace)  # noqa: S102
        outputs["inputs"] = {n: observe(namespace[n]) for n in OUTPUTS["inputs"]}
        for step in STEPS:
            exec(compile(self.body(step), f"<oracle {step}>", "exec"), namespace)  # noqa: S102
            outputs[step] = {n: observe(namespace[n]) for n in OUTPUTS[step]}
        return outputs

    def check(self, how: str = "run all") -> None:
        """Run the notebook through the cache and compare it with the oracle, cell by cell."""
        before = len(self.executions())
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown):
            cached = self.pipeline_run() if how == "pipeline run" else self.run_all()
        executed = self.executions()[before:]
        expected = self.oracle()
        self.runs += 1
        for cell, values in expected.items():
            assert cached.get(cell) == values, (
                f"run {self.runs} ({how}): cell {cell!r} gave {cached.get(cell)!r} from the cache, "
                f"but {values!r} when run plainly. Executed: {executed}. Status lines:\n{shown.getvalue()}"
            )
        if not self.changed:
            assert executed == [], (
                f"run {self.runs} ({how}): nothing changed since the last run, yet {executed} "
                f"executed. Status lines:\n{shown.getvalue()}"
            )
        self.changed = False

    # -- rules ----------------------------------------------------------------------------------
    @initialize(autoreload=st.booleans())
    def first_run(self, autoreload: bool) -> None:
        """The notebook's first Run All (optionally with ``%autoreload 2`` on, as many users do)."""
        self.autoreload = autoreload
        if autoreload:
            if "AutoreloadMagics" not in self.shell.magics_manager.registry:
                self.run_cell("%load_ext autoreload")
            self.run_cell("%autoreload 2")
        self.check()

    @rule(step=st.sampled_from(STEPS), index=st.integers(0, 3))
    def edit_step(self, step: str, index: int) -> None:
        """Edit a step cell: a new meaning, or only its comments (which must never re-run it)."""
        variants = STEP_VARIANTS[step]
        index %= len(variants)
        if variants[index].meaning != variants[self.variant[step]].meaning:
            self.changed = True
        self.variant[step] = index
        self.check()

    @rule(name=st.sampled_from(["SIZE", "OFFSET"]), index=st.integers(0, 2))
    def edit_input(self, name: str, index: int) -> None:
        """Change a plain cell's variable: SIZE is read by a step, OFFSET by the helper function."""
        value = (SIZES if name == "SIZE" else OFFSETS)[index]
        self.changed |= value != self.inputs[name]
        self.inputs[name] = value
        self.check()

    @rule(index=st.integers(0, len(DATA_FILES) - 1))
    def edit_data_file(self, index: int) -> None:
        """Rewrite the file the ``load`` step reads (declared with ``--files``)."""
        self.write_data(index)
        self.changed = True
        self.check()

    @rule(
        module=st.sampled_from(list(MODULE_VARIANTS)),
        index=st.integers(0, 3),
        reload=st.booleans(),
    )
    def edit_module(self, module: str, index: int, reload: bool) -> None:
        """Edit the user's own module; then reload it (or autoreload does), or leave the kernel
        running its old code."""
        self.write_module(module, index % len(MODULE_VARIANTS[module]))
        self.changed = True
        self.load_edited(module, reload)
        self.check()

    @rule(version=st.sampled_from(list(LIBRARY_VERSIONS)), reload=st.booleans())
    def install_library_version(self, version: str, reload: bool) -> None:
        """Install another version of fakelib; it is used once reloaded, or after a restart."""
        self.write_library(version)
        self.version = version
        self.changed = True
        self.load_edited("fakelib", reload)
        self.check()

    def load_edited(self, module: str, reload: bool) -> None:
        if self.autoreload:
            return  # the next cell reloads it
        if reload:
            self.run_cell(f"import importlib\nimport {module}\nimportlib.reload({module});")
            self.not_loaded.discard(module)
        else:
            self.not_loaded.add(module)

    @rule(then=st.sampled_from(["run all", "pipeline run"]))
    def restart(self, then: str) -> None:
        """Restart the kernel (the store stays), then Run All or ``%pipeline run``."""
        self.run_cell("%reset -f")
        self.forget_modules()
        self.forget_autoreload_state()
        load(self.shell)  # a new extension instance: nothing carried over in memory
        if self.not_loaded:  # a new process imports the files as they are now
            self.changed = True
            self.not_loaded.clear()
        self.check(then)

    @rule()
    def run_all_again(self) -> None:
        """Run All with no edit at all: every step is restored, none executes."""
        self.check()


def test_a_cached_result_always_equals_a_fresh_execution(
    monkeypatch: pytest.MonkeyPatch, heavy: bool
) -> None:
    monkeypatch.setenv("MLOPS_NB_HOME", "")  # each example sets its own store; restored after
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # edited modules never reload stale .pyc
    run_state_machine_as_test(
        CachedNotebook,
        settings=settings(
            max_examples=100 if heavy else 12,
            stateful_step_count=12,
            derandomize=not heavy,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
