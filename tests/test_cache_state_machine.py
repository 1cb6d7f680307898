"""A cached result always equals what a fresh execution gives: random edits, restarts and re-runs
of a small stepped notebook, checked against the same cells run plainly (a hypothesis state machine).

The notebook: a plain cell of inputs, then five ``%%step`` cells. They read a data file
(``--files``), call a helper function from an earlier step (which reads a global of the plain
cell), import the user's own modules (one imports the other), use an installed package whose
behaviour depends on its version, and re-bind a name (``score = score + 1``). Each step of the
machine changes something the way a user would (a cell, a file, a module, a library version, or
restarts the kernel), then runs the notebook through the cache. After each run, every cell's
outputs must equal the oracle's: the same cells without the magics, ``exec``-ed in a fresh
namespace with the modules as the kernel has them loaded (a module file edited but not reloaded
still runs its old code, in the kernel and so in the oracle too). And when nothing changed since
the last run, no step may execute.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import os
import shutil
import site
import sys
import tempfile
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from IPython import get_ipython
from IPython.testing.globalipapp import start_ipython

from mlops_nb.magics import active_pipeline, load
from mlops_nb.observers import RunObserver


@dataclass(frozen=True)
class Variant:
    """One version of some code; variants with the same ``meaning`` differ only in comments."""

    meaning: int
    code: str


def code(text: str) -> str:
    """Code written indented in this file, as a cell or a module file holds it."""
    return textwrap.dedent(text).strip("\n") + "\n"


# -- the notebook ---------------------------------------------------------------------------------
# Each step cell's variants, in notebook order. ``{data}`` is the data file's path.
STEP_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "load": (
        Variant(0, code("""
            import pathlib
            rows = [int(t) for t in pathlib.Path({data}).read_text().split()][:SIZE]
        """)),
        Variant(0, code("""
            import pathlib

            # the first SIZE numbers of the file
            rows = [int(t) for t in pathlib.Path({data}).read_text().split()][:SIZE]  # ints
        """)),
        Variant(1, code("""
            import pathlib
            rows = sorted(int(t) for t in pathlib.Path({data}).read_text().split())[:SIZE]
        """)),
    ),
    "helpers": (  # a helper a later step calls: body, default argument, closure, a global it reads
        Variant(0, code("""
            def scale(v, k=2):
                return v * k + OFFSET
        """)),
        Variant(0, code("""
            def scale(v, k=2):
                # linear, shifted by the notebook's OFFSET
                return v * k + OFFSET  # no rounding
        """)),
        Variant(1, code("""
            def scale(v, k=3):
                return v * k + OFFSET
        """)),
        Variant(2, code("""
            def scale(v, k=2):
                return v * k - OFFSET
        """)),
        Variant(3, code("""
            def _shifted(k):
                def scale(v):
                    return v * k + OFFSET
                return scale

            scale = _shifted(2)
        """)),
        Variant(4, code("""
            def _shifted(k):
                def scale(v):
                    return v * k + OFFSET
                return scale

            scale = _shifted(3)
        """)),
    ),
    "features": (  # the user's own modules: a module, a function and a constant imported by name
        Variant(0, code("""
            import helpers_mod
            features = [helpers_mod.transform(scale(r)) for r in rows]
        """)),
        Variant(0, code("""
            import helpers_mod  # our own module

            features = [helpers_mod.transform(scale(r)) for r in rows]
        """)),
        Variant(1, code("""
            from helpers_mod import transform
            features = [transform(scale(r) - 1) for r in rows]
        """)),
        Variant(2, code("""
            from helpers_base import BIAS
            features = [scale(r) * BIAS for r in rows]
        """)),
    ),
    "model": (  # an installed package whose behaviour depends on its version
        Variant(0, code("""
            import fakelib
            score = sum(features) * fakelib.SCALE
        """)),
        Variant(0, code("""
            import fakelib
            # weighted by the library's constant
            score = sum(features) * fakelib.SCALE
        """)),
        Variant(1, code("""
            from fakelib import SCALE
            score = max(features, default=0) * SCALE
        """)),
    ),
    "adjust": (  # re-binds a name an earlier step outputs
        Variant(0, code("score = score + 1")),
        Variant(0, code("score = score + 1  # one more, in a later cell")),
        Variant(1, code("score = score * 2")),
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
        Variant(0, code("""
            import helpers_base


            def transform(v):
                return v + helpers_base.BIAS
        """)),
        Variant(0, code("""
            # helpers for the features step
            import helpers_base


            def transform(v):
                # shift by the shared bias
                return v + helpers_base.BIAS
        """)),
        Variant(1, code("""
            import helpers_base


            def transform(v):
                return v * 10 + helpers_base.BIAS
        """)),
        Variant(2, code("""
            import helpers_base

            STRIDE = 3


            def transform(v):
                return v + helpers_base.BIAS * STRIDE
        """)),
    ),
    "helpers_base": (  # helpers_mod imports it: a step using helpers_mod depends on it too
        Variant(0, code("BIAS = 1")),
        Variant(0, code("# shared by every helper\nBIAS = 1")),
        Variant(1, code("BIAS = 4")),
    ),
}
LIBRARY_VERSIONS = {"1.0": 10, "1.1": 20, "2.0": 30}  # version -> fakelib.SCALE
OUR_MODULES = ("helpers_mod", "helpers_base", "fakelib")


def observe(value: Any) -> Any:
    """A value as compared with the oracle's: a function by its defaults and what it returns."""
    if isinstance(value, types.FunctionType):
        return ("function", value.__defaults__, value(10))
    return value


# Reading the metadata of every installed distribution takes half a second, and no change made
# here alters which distribution a module comes from: that memo is kept.
KEPT_MEMOS = {"_packages_distributions"}


def forget_memoised_facts(keep: set[str] = KEPT_MEMOS) -> None:
    """What a new kernel process has not learned yet: mlops_nb memoises facts about installed
    packages (where they live, their versions) for the life of the process."""
    for name, module in list(sys.modules.items()):
        if name == "mlops_nb" or name.startswith("mlops_nb."):
            for attribute, value in list(vars(module).items()):
                if callable(getattr(value, "cache_clear", None)) and attribute not in keep:
                    value.cache_clear()


class OutputsPerStep(RunObserver):
    """Notes each step's outputs as ``%pipeline run`` finishes it (later steps may re-bind them)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.outputs: dict[str, dict[str, Any]] = {}

    def step_finished(self, report: Any) -> None:
        self.outputs[report.step] = {n: observe(self.namespace[n]) for n in OUTPUTS[report.step]}


# -- what a user changes between two runs (each one a rule's argument) ---------------------------
@dataclass(frozen=True)
class EditStep:
    """Give a step cell another variant: a new meaning, or only new comments (never re-run)."""

    step: str
    index: int

    def apply(self, notebook: CachedNotebook) -> None:
        variants = STEP_VARIANTS[self.step]
        notebook.changed |= variants[self.index].meaning != variants[notebook.variant[self.step]].meaning
        notebook.variant[self.step] = self.index


@dataclass(frozen=True)
class EditInput:
    """Change a plain cell's variable: SIZE is read by a step, OFFSET by the helper function."""

    name: str
    value: int

    def apply(self, notebook: CachedNotebook) -> None:
        notebook.changed |= self.value != notebook.inputs[self.name]
        notebook.inputs[self.name] = self.value


@dataclass(frozen=True)
class EditDataFile:
    """Rewrite the file the ``load`` step reads (``--files``); the same content re-runs nothing."""

    index: int

    def apply(self, notebook: CachedNotebook) -> None:
        notebook.changed |= self.index != notebook.data_index
        notebook.write_data(self.index)


@dataclass(frozen=True)
class EditModule:
    """Edit the user's own module, then reload it (``%autoreload 2`` does it for us), or not:
    the kernel keeps running its old code."""

    module: str
    index: int
    reload: bool

    def apply(self, notebook: CachedNotebook) -> None:
        # Unlike a cell's, a module's comments may count: any new text may re-run its steps.
        notebook.changed |= self.index != notebook.module_variant[self.module]
        notebook.write_module(self.module, self.index)
        notebook.load_edited(self.module, self.reload)


@dataclass(frozen=True)
class InstallLibrary:
    """Install another version of fakelib, as pip would; the kernel uses it once reloaded (or
    autoreloaded), else after a restart."""

    version: str
    reload: bool

    def apply(self, notebook: CachedNotebook) -> None:
        notebook.changed |= self.version != notebook.version
        notebook.write_library(self.version)
        notebook.load_edited("fakelib", self.reload)


@dataclass(frozen=True)
class PatchModule:
    """Set a module's constant from a cell: the kernel runs it, the module's file does not say it."""

    bias: int

    def apply(self, notebook: CachedNotebook) -> None:
        notebook.run_cell(f"import helpers_base\nhelpers_base.BIAS = {self.bias}")
        notebook.changed = True
        notebook.differs_from_files.add("helpers_base")


@dataclass(frozen=True)
class Restart:
    """Restart the kernel (the store stays), then Run All or ``%pipeline run``."""

    then: str

    def apply(self, notebook: CachedNotebook) -> None:
        notebook.run_cell("%reset -f")
        notebook.forget_process_state()
        load(notebook.shell)  # a new extension instance: nothing carried over in memory
        if notebook.differs_from_files:  # a new process imports the files as they are now
            notebook.changed = True
            notebook.differs_from_files.clear()


@dataclass(frozen=True)
class NoChange:
    """Change nothing: the next Run All restores every step and executes none."""

    def apply(self, notebook: CachedNotebook) -> None:
        pass


Change = (
    EditStep | EditInput | EditDataFile | EditModule | InstallLibrary | PatchModule | Restart | NoChange
)
# One strategy per kind of change, so that a kind with many variants is not drawn more often.
CHANGES = st.one_of(
    st.sampled_from([
        EditModule(module, index, reload)
        for module, variants in MODULE_VARIANTS.items()
        for index in range(len(variants))
        for reload in (True, False)
    ]),
    st.sampled_from([Restart("run all"), Restart("pipeline run")]),
    st.sampled_from([InstallLibrary(v, reload) for v in LIBRARY_VERSIONS for reload in (True, False)]),
    st.sampled_from([EditStep(step, i) for step in STEPS for i in range(len(STEP_VARIANTS[step]))]),
    st.sampled_from([EditInput("SIZE", v) for v in SIZES] + [EditInput("OFFSET", v) for v in OFFSETS]),
    st.sampled_from([EditDataFile(i) for i in range(len(DATA_FILES))]),
    st.sampled_from([PatchModule(bias) for bias in range(4)]),
    st.just(NoChange()),
)


class CachedNotebook(RuleBasedStateMachine):
    """Edits a stepped notebook at random; after each edit, runs it and compares with the oracle."""

    #: A folder Python counts as site-packages (see the ``site_packages`` fixture).
    site_dir: Path

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="mlops_nb_machine_"))
        self.modules_dir = self.root / "modules"
        self.data, self.log = self.root / "data.txt", self.root / "executions.log"
        self.modules_dir.mkdir()
        os.environ["MLOPS_NB_HOME"] = str(self.root / "store")
        sys.path.insert(0, str(self.modules_dir))
        # The notebook as it is now: the model's state.
        self.variant = dict.fromkeys(STEPS, 0)
        self.inputs = {"SIZE": 3, "OFFSET": 1}
        self.module_variant: dict[str, int] = {}
        self.file_clock = 1_000_000_000.0  # mtimes we set, always increasing (autoreload compares them)
        self.write_data(0)
        for module in MODULE_VARIANTS:
            self.write_module(module, 0)
        self.write_library("1.0")
        # Whether anything that may change a result happened since the last run, and the
        # modules the kernel runs differently from their files (edited and not reloaded, or
        # patched in a cell): a restart changes those.
        self.changed = True
        self.differs_from_files: set[str] = set()
        self.autoreload = False
        self.runs = 0
        start_ipython()  # once per process; later calls are no-ops
        self.shell = get_ipython()
        self.forget_process_state()
        self.shell.reset(new_session=True)
        load(self.shell)

    def teardown(self) -> None:
        if self.autoreload:
            self.shell.run_cell("%autoreload 0")
        self.shell.reset(new_session=True)
        self.forget_process_state()
        sys.path.remove(str(self.modules_dir))
        shutil.rmtree(self.root, ignore_errors=True)

    # -- files the notebook uses ------------------------------------------------------------------
    def touch(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.file_clock += 1
        os.utime(path, (self.file_clock, self.file_clock))
        importlib.invalidate_caches()

    def write_data(self, index: int) -> None:
        self.touch(self.data, DATA_FILES[index] + "\n")
        self.data_index = index

    def write_module(self, module: str, index: int) -> None:
        self.touch(self.modules_dir / f"{module}.py", MODULE_VARIANTS[module][index].code)
        self.module_variant[module] = index

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
        self.version = version

    # -- the kernel process -----------------------------------------------------------------------
    def forget_process_state(self) -> None:
        """What a new kernel process starts without: our modules, what autoreload saw of them
        (IPython keeps their file times and sources per process) and mlops_nb's memoised facts."""
        for module in OUR_MODULES:
            sys.modules.pop(module, None)
        magics = self.shell.magics_manager.registry.get("AutoreloadMagics")
        for module in OUR_MODULES if magics is not None else ():
            magics.loaded_modules.discard(module)
            magics._reloader.modules_mtimes.pop(module, None)
            magics._reloader.deduper_reloader.source_by_modname.pop(module, None)
        forget_memoised_facts()

    def run_cell(self, cell: str) -> None:
        result = self.shell.run_cell(cell, store_history=True)
        error = result.error_before_exec or result.error_in_exec
        assert error is None, f"cell failed with {error!r}:\n{cell}"

    def executions(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    # -- the cells --------------------------------------------------------------------------------
    def inputs_cell(self) -> str:
        return "".join(f"{name} = {value}\n" for name, value in self.inputs.items())

    def body(self, step: str) -> str:
        return STEP_VARIANTS[step][self.variant[step]].code.format(data=repr(str(self.data)))

    def step_cell(self, step: str) -> str:
        """The %%step cell: its body after a line that notes each real execution in the log."""
        options = f" --files {self.data}" if step == "load" else ""
        note = f"with open({str(self.log)!r}, 'a') as _log: _log.write('{step}\\n')\n"
        return f"%%step {step}{options}\n{note}{self.body(step)}"

    # -- running and checking ---------------------------------------------------------------------
    def run_all(self) -> dict[str, dict[str, Any]]:
        """Run All, as a notebook does: each cell in order; returns each cell's outputs."""
        self.run_cell(self.inputs_cell())
        outputs = {"inputs": {n: observe(self.shell.user_ns[n]) for n in OUTPUTS["inputs"]}}
        for step in STEPS:
            self.run_cell(self.step_cell(step))
            outputs[step] = {n: observe(self.shell.user_ns[n]) for n in OUTPUTS[step]}
        return outputs

    def pipeline_run(self) -> dict[str, dict[str, Any]]:
        """The plain cell (not a step, so not in the pipeline), then ``%pipeline run``."""
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
        exec(self.inputs_cell(), namespace)  # noqa: S102
        outputs = {"inputs": {n: observe(namespace[n]) for n in OUTPUTS["inputs"]}}
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
                f"run {self.runs} ({how}): cell {cell!r} gave {cached.get(cell)!r} through the "
                f"cache but {values!r} when run plainly. Executed: {executed}. Status lines:\n"
                f"{shown.getvalue()}"
            )
        if not self.changed:
            assert executed == [], (
                f"run {self.runs} ({how}): nothing changed since the last run, yet {executed} "
                f"executed. Status lines:\n{shown.getvalue()}"
            )
        self.changed = False

    # -- rules ------------------------------------------------------------------------------------
    @initialize(
        autoreload=st.booleans(),
        variants=st.fixed_dictionaries(
            {step: st.integers(0, len(variants) - 1) for step, variants in STEP_VARIANTS.items()}
        ),
    )
    def first_run(self, autoreload: bool, variants: dict[str, int] | None = None) -> None:
        """The notebook's first Run All, from any variant of its cells, with ``%autoreload 2``
        on or off."""
        self.variant.update(variants or {})
        self.autoreload = autoreload
        if autoreload:
            if "AutoreloadMagics" not in self.shell.magics_manager.registry:
                self.run_cell("%load_ext autoreload")
            self.run_cell("%autoreload 2")
        self.check()

    @rule(change=CHANGES)
    def edit(self, change: Change) -> None:
        """Change the notebook, a file or a module as a user would (or restart), then run it."""
        change.apply(self)
        self.check(change.then if isinstance(change, Restart) else "run all")

    def load_edited(self, module: str, reload: bool) -> None:
        """After a module's file changed: the kernel runs the new file once reloaded, else only
        after a restart. A reload also undoes an edit the file did not have."""
        if self.autoreload:
            # It reloads at the next cell, but may patch only what it sees changed in the file,
            # so the kernel may still run something else than the file says.
            self.changed |= module in self.differs_from_files
            self.differs_from_files.add(module)
        elif reload:
            self.run_cell(f"import importlib\nimport {module}\nimportlib.reload({module});")
            self.changed |= module in self.differs_from_files
            self.differs_from_files.discard(module)
        else:
            self.differs_from_files.add(module)


@pytest.fixture
def site_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder Python counts as site-packages, where the machine installs fakelib."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    real = site.getsitepackages
    monkeypatch.setattr(site, "getsitepackages", lambda *args: [*real(*args), str(folder)])
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(CachedNotebook, "site_dir", folder, raising=False)
    monkeypatch.setenv("MLOPS_NB_HOME", "")  # each notebook sets its own store; restored after
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a reload never reads a stale .pyc
    yield folder
    forget_memoised_facts(keep=set())  # the folder and fakelib are gone


def test_a_cached_result_always_equals_a_fresh_execution(site_packages: Path, heavy: bool) -> None:
    run_state_machine_as_test(
        CachedNotebook,
        settings=settings(
            max_examples=200 if heavy else 16,
            stateful_step_count=10,
            derandomize=not heavy,
            # Shrinking replays hundreds of notebooks (minutes): the heavy variant does it.
            phases=list(Phase) if heavy else [p for p in Phase if p is not Phase.shrink],
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_variants_of_one_meaning_differ_only_in_comments() -> None:
    """The machine expects no step to re-run after a comment-only edit: check its variants are."""
    for variants in [*STEP_VARIANTS.values(), *MODULE_VARIANTS.values()]:
        trees = {(v.meaning, ast.dump(ast.parse(v.code.format(data="'data.txt'")))) for v in variants}
        assert len(trees) == len({meaning for meaning, _ in trees})


# -- sequences the machine found failing, replayed as plain tests ------------------------------------------
def replay(*changes: Change, autoreload: bool = False) -> None:
    """Run one sequence of changes through the machine, as hypothesis prints a failing one."""
    notebook = CachedNotebook()
    try:
        notebook.first_run(autoreload)
        for change in changes:
            notebook.edit(change)
    finally:
        notebook.teardown()


def test_a_module_edited_then_reloaded_later_runs_its_new_code(site_packages: Path) -> None:
    """Fingerprinting a module by its file would store the old code's result under the new file."""
    replay(EditModule("helpers_mod", 2, reload=False), EditModule("helpers_mod", 2, reload=True))


def test_a_library_upgraded_and_reloaded_in_a_running_kernel_counts_by_its_new_version(
    site_packages: Path,
) -> None:
    """``%pip install -U fakelib`` then ``importlib.reload(fakelib)``, without a restart."""
    replay(InstallLibrary("2.0", reload=True))


def test_a_constant_imported_by_name_from_a_library_is_part_of_the_fingerprint(
    site_packages: Path,
) -> None:
    """``from fakelib import SCALE``: another version, another SCALE, after a restart."""
    replay(EditStep("model", 2), InstallLibrary("1.1", reload=False), Restart("run all"))


def test_a_constant_imported_by_name_from_the_users_module_is_part_of_the_fingerprint(
    site_packages: Path,
) -> None:
    """``from helpers_base import BIAS``: the module edited, then the kernel restarted."""
    replay(EditStep("features", 3), EditModule("helpers_base", 2, reload=False), Restart("run all"))
