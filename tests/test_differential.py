"""Differential test of the cache on real code written by others: scikit-learn's example gallery.

Every script in ``tests/corpus/`` (see its README for provenance) is split into notebook cells at
its ``# %%`` markers and run in real Jupyter kernels, four ways:

1. plain: the cells as they are, twice, each in a new kernel (outputs that differ between the two
   plain runs are nondeterministic and are left out of every comparison, and counted);
2. stepped: ``%load_ext mlops_nb``, then every code cell as ``%%step cell_N``, on a fresh store;
3. restarted: a new kernel on the same store runs the stepped notebook again; every step must say
   ``up to date, cached`` and no cell may fail;
4. restore: a new kernel on the same store (a copy of it taken when the stepped run ended, so
   that the restarted run's writes cannot change what it finds) runs ``%pipeline use`` and
   ``%pipeline run``: every step must be restored without running.

The stepped and restarted runs must print and display what the plain run did (stream text, the
text of rich outputs, PNG figures by content; mlops_nb's own status lines and warnings aside, and
volatile text such as timings, addresses and temporary paths normalised), and after every way the
notebook's variables must equal the plain run's (a content digest of values, arrays, frames,
fitted estimators; modules and functions by name).

Every kernel starts with the global NumPy and ``random`` generators seeded the same way, so
notebooks that draw from them unseeded can be compared too. The corpus items run one after the
other (within an item, independent runs share the two cores); a summary table and a line
``differential corpus: N/M clean (P%)`` close the run.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

CORPUS = Path(__file__).parent / "corpus"
ITEMS = sorted(CORPUS.glob("plot_*.py"))

KERNEL_START_TIMEOUT = 120  # seconds; a loaded machine can be slow to start a kernel
CELL_TIMEOUT = 180  # seconds per cell; the slowest corpus cell takes about a second on its own
INLINE = "module://matplotlib_inline.backend_inline"  # figures become image/png outputs
#: Run unseen in every kernel before the notebook: the global random generators start from the same
#: state in every run (as in a reproducible set-up), so a notebook that draws from them unseeded
#: (GaussianProcessRegressor restarts, silhouette_score samples) can still be compared; a step
#: that changes what the next step draws is then a visible difference. It binds no name.
PREAMBLE = "__import__('numpy').random.seed(0); __import__('random').seed(0)"


# -- the corpus: sphinx-gallery scripts as notebooks -----------------------------------------------
@dataclass
class Cell:
    kind: str  # "markdown" or "code"
    source: str


_SEPARATOR = re.compile(r"^#\s?%%")


def gallery_cells(text: str) -> list[Cell]:
    """Split a sphinx-gallery script into notebook cells, as sphinx-gallery and jupytext do.

    The module docstring and the comment block opening each ``# %%`` block are text (markdown
    cells); the code after it is a code cell. Comments inside code stay in the code.
    """
    lines = text.splitlines()
    module = ast.parse(text)
    first = module.body[0] if module.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        assert first.end_lineno is not None
        docstring, lines = lines[: first.end_lineno], lines[first.end_lineno :]
        cells = [Cell("markdown", "\n".join(docstring))]
    else:
        cells = []
    blocks: list[list[str]] = [[]]
    for line in lines:
        if _SEPARATOR.match(line):
            blocks.append([line])
        else:
            blocks[-1].append(line)
    for block in blocks:
        end = 0  # the leading comment (and blank) lines are the block's text
        while end < len(block) and (not block[end].strip() or block[end].lstrip().startswith("#")):
            end += 1
        prose, code = "\n".join(block[:end]).strip(), "\n".join(block[end:]).strip("\n")
        if prose:
            cells.append(Cell("markdown", prose))
        if code.strip():
            cells.append(Cell("code", code))
    return cells


def code_cells(item: Path) -> list[str]:
    return [cell.source for cell in gallery_cells(item.read_text()) if cell.kind == "code"]


def pipeline_name(item: Path) -> str:
    return f"corpus_{item.stem}"


# -- real kernels ----------------------------------------------------------------------------------
@dataclass
class CellRun:
    """What one cell printed and displayed, and how it ended."""

    status: str
    outputs: list[dict[str, Any]]
    reply: dict[str, Any] = field(default_factory=dict)  # the execute_reply's content

    def stream(self, name: str) -> str:
        return "".join(
            o["text"] for o in self.outputs if o["type"] == "stream" and o["name"] == name
        )

    @property
    def error(self) -> str | None:
        if self.status == "ok":
            return None
        for source in [self.reply] + [o for o in self.outputs if o["type"] == "error"]:
            if source.get("ename"):
                return f"{source['ename']}: {source.get('evalue', '')}"
        return f"status {self.status}"


@dataclass
class NotebookRun:
    cells: list[CellRun] = field(default_factory=list)
    digest: dict[str, str] | None = field(default_factory=dict)
    pipeline: str | None = None  # the active mlops_nb pipeline at the end, where loaded

    @property
    def first_error(self) -> tuple[int, str] | None:
        for index, cell in enumerate(self.cells):
            if cell.error is not None:
                return index, cell.error
        return None


class Kernel:
    """A new kernel on the store ``home``, started as Jupyter starts one for ``cwd/notebook``.

    What the kernel process itself prints (not cell output) goes to a log file in ``cwd``.
    """

    def __init__(self, home: Path, cwd: Path, notebook: str) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MLOPS_NB_HOME": str(home),
            "JPY_SESSION_NAME": str(cwd / notebook),
            "MPLBACKEND": INLINE,
        }
        self.log = (cwd / "kernel.log").open("ab")
        # Unix sockets in the kernel's own directory: no TCP port to race for when several
        # kernels (here, or from other processes on the machine) start at the same moment.
        self.manager = KernelManager(transport="ipc", ip=str(cwd / "ipc"))
        self.manager.start_kernel(env=env, cwd=str(cwd), stdout=self.log, stderr=self.log)
        self.client = self.manager.client()
        self.client.start_channels()
        try:
            self.client.wait_for_ready(timeout=KERNEL_START_TIMEOUT)
        except RuntimeError as error:
            self.close()
            log = (cwd / "kernel.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{error}; the kernel's log ends with:\n{log}") from error
        reply = self.client.execute_interactive(
            PREAMBLE, silent=True, store_history=False, timeout=CELL_TIMEOUT
        )
        assert reply["content"]["status"] == "ok", f"the preamble failed: {reply['content']}"

    def run(self, cells: list[str]) -> NotebookRun:
        try:
            return run_notebook(self.client, cells)
        finally:
            self.close()

    def close(self) -> None:
        if self.log.closed:
            return
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
        self.log.close()


@contextmanager
def kernels(homes: list[Path], root: Path, notebook: str) -> Iterator[list[Kernel]]:
    """New kernels, started side by side, one per store in ``homes``, each in its own directory."""
    with ThreadPoolExecutor(max_workers=len(homes)) as pool:
        futures = [
            pool.submit(Kernel, home, root / f"kernel-{n}", notebook)
            for n, home in enumerate(homes)
        ]
    started = [future.result() for future in futures if future.exception() is None]
    try:
        for future in futures:
            future.result()  # re-raise a failed start, after the others are known
        yield started
    finally:
        for one in started:
            one.close()


def execute(client: Any, code: str) -> CellRun:
    """Run ``code`` as a notebook cell; its outputs as a notebook would store them."""
    outputs: list[dict[str, Any]] = []

    def keep(message: dict[str, Any]) -> None:
        kind, content = message["msg_type"], message["content"]
        if kind in ("stream", "display_data", "execute_result", "error"):
            outputs.append({"type": kind, **content})

    try:
        reply = client.execute_interactive(code, timeout=CELL_TIMEOUT, output_hook=keep)
    except TimeoutError:
        outputs.append(
            {"type": "error", "ename": "Timeout", "evalue": f"no reply in {CELL_TIMEOUT} s"}
        )
        return CellRun("timeout", outputs)
    return CellRun(reply["content"]["status"], outputs, reply["content"])


#: Run in the kernel after a notebook: a digest of every variable whose content can be compared
#: (values of simple types, arrays, frames, fitted scikit-learn attributes; modules and functions
#: by name). It binds no name: the helper deletes itself.
DIGEST_CODE = r"""
def _differential_digest():
    import hashlib, json, sys, types
    np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
    ip = get_ipython()

    def sha(*parts):
        h = hashlib.sha256()
        for part in parts:
            h.update(part if isinstance(part, bytes) else str(part).encode())
            h.update(b"\0")
        return h.hexdigest()[:16]

    def digest(value, depth=0):
        if depth > 6:
            return None
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
            return f"{type(value).__name__}:{value!r}"
        if isinstance(value, types.ModuleType):
            return f"module:{value.__name__}"
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
            return f"callable:{getattr(value, '__module__', '?')}.{value.__qualname__}"
        if np is not None and isinstance(value, np.generic):
            return f"{value.dtype.str}:{value.item()!r}"
        if np is not None and isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                inner = digest(value.tolist(), depth + 1)
                return None if inner is None else f"ndarray-object{value.shape}:{inner}"
            data = np.ascontiguousarray(value).tobytes()
            return f"ndarray:{value.dtype.str}{value.shape}:" + sha(data)
        if pd is not None and isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
            try:
                hashed = pd.util.hash_pandas_object(value, index=not isinstance(value, pd.Index))
            except TypeError:
                return None
            names = list(value.columns) if isinstance(value, pd.DataFrame) else [value.name]
            dtypes = value.dtypes if isinstance(value, pd.DataFrame) else value.dtype
            content = sha(names, dtypes, hashed.values.tobytes())
            return f"{type(value).__name__}{value.shape}:{content}"
        if isinstance(value, (list, tuple, set, frozenset)) and len(value) <= 100_000:
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            parts = [digest(item, depth + 1) for item in items]
            return None if None in parts else f"{type(value).__name__}[{len(parts)}]:" + sha(*parts)
        if isinstance(value, dict) and len(value) <= 100_000:
            parts = [(digest(k, depth + 1), digest(v, depth + 1)) for k, v in value.items()]
            if any(None in pair for pair in parts):
                return None
            return f"dict[{len(parts)}]:" + sha(*sorted(f"{k}={v}" for k, v in parts))
        if type(value).__module__.startswith("sklearn.") and hasattr(value, "get_params"):
            fitted = {
                k: digest(v, depth + 1) for k, v in sorted(vars(value).items())
                if k.endswith("_") and not k.startswith("_")
            }
            kept = sorted(f"{k}={v}" for k, v in fitted.items() if v is not None)
            return f"estimator:{type(value).__qualname__}:" + sha(*kept)
        return None

    hidden = set(ip.user_ns_hidden)
    found = {}
    for name, value in list(ip.user_ns.items()):
        if name.startswith("_") or name in hidden:
            continue
        try:
            value_digest = digest(value)
        except Exception as error:
            value_digest = f"digest failed: {type(error).__name__}"
        if value_digest is not None:
            found[name] = value_digest
    pipeline = None
    if "mlops_nb" in sys.modules:
        try:
            pipeline = sys.modules["mlops_nb"].pipeline().name
        except Exception:
            pass
    print("@@DIGEST@@" + json.dumps({"digest": found, "pipeline": pipeline}))

_differential_digest()
del _differential_digest
"""


def run_notebook(client: Any, cells: list[str]) -> NotebookRun:
    """Run the cells in order, stopping at the first failing cell as "Run All" does; then digest."""
    run = NotebookRun()
    for code in cells:
        run.cells.append(execute(client, code))
        if run.cells[-1].error is not None:
            break
    if run.cells and run.cells[-1].status == "timeout":
        run.digest = None  # the kernel is stuck: its variables cannot be read
        return run
    probe = execute(client, DIGEST_CODE)
    marker = [line for line in probe.stream("stdout").splitlines() if line.startswith("@@DIGEST@@")]
    assert probe.error is None and marker, f"the digest probe failed: {probe.outputs}"
    found = json.loads(marker[0].removeprefix("@@DIGEST@@"))
    run.digest, run.pipeline = found["digest"], found["pipeline"]
    return run


def stepped_cells(codes: list[str]) -> list[str]:
    return ["%load_ext mlops_nb"] + [f"%%step cell_{n}\n{code}" for n, code in enumerate(codes, 1)]


# -- comparing outputs -----------------------------------------------------------------------------
_STATUS_LINE = re.compile(r"^[✓✗] cell_\d+: .*(?:\n|$)", re.MULTILINE)
_TOOLKIT_WARNING = re.compile(r"^.*MutationWarning: .*\n(?:  .*\n)?", re.MULTILINE)
_VOLATILE = [
    (re.compile(r"0x[0-9a-fA-F]{6,}"), "0x?"),  # memory addresses in reprs
    (re.compile(r"/tmp/ipykernel_\d+/\d+\.py|<ipython-input-[^>]*>|<step cell_\d+>"), "<cell>"),
    (re.compile(re.escape(tempfile.gettempdir()) + r"/[^\s'\":]+"), "<tmp>"),  # temp paths
    (re.compile(r"\b\d+\.\d+ ?(?:s|sec|secs|seconds|ms)\b"), "<time>"),  # timings
]


def normalise(text: str) -> str:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


@dataclass
class Observed:
    """One cell's outputs in comparable units, per channel: stdout lines, stderr lines, displays."""

    channels: dict[str, list[str]]
    toolkit_lines: list[str]  # mlops_nb's own status lines and warnings, left out of the channels


def observe(cell: CellRun) -> Observed:
    toolkit: list[str] = []
    channels: dict[str, list[str]] = {}
    for name in ("stdout", "stderr"):
        text = cell.stream(name)
        toolkit += [m.group(0).rstrip("\n") for m in _STATUS_LINE.finditer(text)]
        toolkit += [m.group(0).rstrip("\n") for m in _TOOLKIT_WARNING.finditer(text)]
        text = _TOOLKIT_WARNING.sub("", _STATUS_LINE.sub("", text))
        channels[name] = normalise(text).splitlines()
    displays = []
    for output in cell.outputs:
        if output["type"] not in ("display_data", "execute_result"):
            continue
        data = output.get("data", {})
        unit = normalise(data.get("text/plain", ""))
        if "image/png" in data:
            png = base64.b64decode(data["image/png"])
            unit += f" [png {hashlib.sha256(png).hexdigest()[:12]}]"
        displays.append(unit)
    channels["display"] = displays
    return Observed(channels, toolkit)


@dataclass
class Reference:
    """The plain run's outputs and variables, minus what differed between two plain runs."""

    cells: list[Observed]
    volatile: list[dict[str, set[int] | None]]  # per cell, per channel: positions (None: all)
    digest: dict[str, str]
    excluded: list[str]  # the outputs and variables left out as nondeterministic

    @classmethod
    def from_runs(cls, first: NotebookRun, second: NotebookRun) -> Reference:
        cells = [observe(cell) for cell in first.cells]
        again = [observe(cell) for cell in second.cells]
        volatile: list[dict[str, set[int] | None]] = []
        excluded: list[str] = []
        for index, (one, two) in enumerate(zip(cells, again, strict=True), 1):
            per_channel: dict[str, set[int] | None] = {}
            for channel, units in one.channels.items():
                other = two.channels[channel]
                if len(units) != len(other):
                    per_channel[channel] = None
                    excluded += [f"cell_{index} {channel} (all {len(units)})"] * len(units)
                else:
                    differ = {i for i, (a, b) in enumerate(zip(units, other)) if a != b}
                    per_channel[channel] = differ
                    excluded += [
                        f"cell_{index} {channel}: {_short(units[i], 60)}" for i in sorted(differ)
                    ]
            volatile.append(per_channel)
        assert first.digest is not None and second.digest is not None
        digest = {k: v for k, v in first.digest.items() if second.digest.get(k) == v}
        excluded += [f"variable {k}" for k in sorted(set(first.digest) - set(digest))]
        return cls(cells, volatile, digest, excluded)

    def output_differences(self, run: NotebookRun) -> list[str]:
        """How ``run``'s cells differ from the plain run: a line per differing cell and channel."""
        found = []
        for index, (expected, cell) in enumerate(zip(self.cells, run.cells), 1):
            if cell.error is not None:
                break  # the failure is the news; what it did not print is not
            got = observe(cell)
            for channel, units in expected.channels.items():
                skip = self.volatile[index - 1][channel]
                if skip is None:
                    continue
                actual = got.channels[channel]
                if len(actual) != len(units):
                    extra = [u for u in actual if u not in units] or [
                        u for u in units if u not in actual
                    ]
                    found.append(
                        f"cell_{index} {channel}: {len(units)} outputs in the plain run, "
                        f"{len(actual)} "
                        f"here; e.g. {_short(extra[0]) if extra else '(same lines, other order)'}"
                    )
                    continue
                for position, (want, have) in enumerate(zip(units, actual)):
                    if position not in skip and want != have:
                        found.append(
                            f"cell_{index} {channel}: plain {_short(want)} but here {_short(have)}"
                        )
                        break
        return found

    def variable_differences(self, digest: dict[str, str]) -> list[str]:
        missing = [name for name in self.digest if name not in digest]
        changed = [
            name for name in self.digest if name in digest and digest[name] != self.digest[name]
        ]
        found = []
        if missing:
            found.append(f"variables not defined: {', '.join(sorted(missing))}")
        if changed:
            examples = "; ".join(
                f"{n}: plain {_short(self.digest[n], 50)} vs {_short(digest[n], 50)}"
                for n in sorted(changed)[:3]
            )
            found.append(f"variables with other values: {', '.join(sorted(changed))} ({examples})")
        return found


def _short(text: str, width: int = 110) -> str:
    text = text.replace("\n", "⏎")
    return repr(text if len(text) <= width else text[: width - 1] + "…")


# -- one corpus item, four ways --------------------------------------------------------------------
@dataclass
class ItemResult:
    item: str
    cells: int
    problems: dict[str, list[str]] = field(default_factory=dict)  # way -> problems, first first
    excluded: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # mlops_nb's warnings in the stepped run
    stepped_stopped: int | None = None  # the cell where the stepped run failed
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not any(self.problems.values())

    def report(self) -> str:
        lines = [f"{self.item}: " + "; ".join(
            f"{way}: {problems[0]}" for way, problems in self.problems.items() if problems
        )]  # fmt: skip
        for way, problems in self.problems.items():
            lines += [f"  [{way}] {problem}" for problem in problems]
        if self.stepped_stopped is not None:
            lines.append(
                f"  (the stepped run stopped at cell_{self.stepped_stopped}: the restarted and "
                f"restore runs had only the steps before it)"
            )
        if self.excluded:
            volatile = "; ".join(sorted(set(self.excluded)))
            lines.append(f"  (not compared, they differ between two plain runs: {volatile})")
        if self.warnings:
            lines.append(
                f"  (mlops_nb warned {len(self.warnings)} times, e.g. {_short(self.warnings[0])})"
            )
        return "\n".join(lines)


def check_item(item: Path, root: Path) -> ItemResult:
    started = time.perf_counter()
    codes = code_cells(item)
    name = pipeline_name(item)
    result = ItemResult(item.stem, len(codes))
    home = root / "store"  # the store of the stepped run, then of the restarted run
    # The restore run gets an exact copy of that store as the stepped run left it: the restarted
    # run writes to the store too (e.g. a step that failed), and what the restore finds must not
    # depend on how far the restarted run got.
    home_copy = root / "store-for-restore"
    stores = [root / "plain-store-1", root / "plain-store-2", home, home, home_copy]
    # Every kernel is new (nothing in memory); starting them together saves waiting for each.
    # The plain runs are independent of the others; the restarted and restore runs start when
    # the stepped run is over (its kernel shut down), side by side.
    notebook = f"{name}.ipynb"
    with (
        kernels(stores, root, notebook) as (plain_1, plain_2, stepped_kernel, again, restorer),
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        stepped_future = pool.submit(stepped_kernel.run, stepped_cells(codes))
        plain_futures = [pool.submit(plain.run, codes) for plain in (plain_1, plain_2)]
        stepped = stepped_future.result()
        if home.exists():
            shutil.copytree(home, home_copy)
        restarted_future = pool.submit(again.run, stepped_cells(codes))
        restore_future = pool.submit(
            restorer.run, ["%load_ext mlops_nb", f"%pipeline use {name}", "%pipeline run"]
        )
        first, second = (future.result() for future in plain_futures)
        restarted, restore = restarted_future.result(), restore_future.result()
    for label, plain in (("plain", first), ("plain again", second)):
        if plain.first_error is not None or len(plain.cells) != len(codes) or plain.digest is None:
            index, error = plain.first_error or (len(plain.cells), "stopped early")
            result.problems["plain"] = [
                f"the corpus item itself fails ({label}, cell_{index + 1}): {error}"
            ]
            return result
    reference = Reference.from_runs(first, second)
    result.excluded = reference.excluded
    result.warnings = [
        line for cell in stepped.cells for line in observe(cell).toolkit_lines if "Warning" in line
    ]
    if stepped.first_error is not None:
        result.stepped_stopped = stepped.first_error[0]
    result.problems["stepped"] = check_notebook(reference, stepped, name)
    restarted_problems = check_notebook(reference, restarted, name) + check_cached(restarted)
    result.problems["restarted"] = restarted_problems
    result.problems["restore"] = check_restore(reference, restore, name, len(codes))
    result.seconds = time.perf_counter() - started
    return result


def check_notebook(reference: Reference, run: NotebookRun, pipeline: str) -> list[str]:
    """A stepped notebook's run against the plain run: errors, outputs, variables."""
    problems = []
    if run.first_error is not None:
        index, error = run.first_error
        problems.append(f"cell_{index} failed: {error}" if index else f"%load_ext failed: {error}")
    problems += reference.output_differences(NotebookRun(run.cells[1:]))
    if run.digest is not None and run.first_error is None:
        problems += reference.variable_differences(run.digest)
        if run.pipeline != pipeline:
            problems.append(f"the notebook's pipeline is {run.pipeline!r}, expected {pipeline!r}")
    return problems


def check_cached(run: NotebookRun) -> list[str]:
    """After a restart, every step must be restored from the store, not run (a step that failed
    is reported as such by :func:`check_notebook`)."""
    for index, cell in enumerate(run.cells[1:], 1):
        if cell.error is not None:
            break
        status = [
            line for line in observe(cell).toolkit_lines
            if line.startswith((f"✓ cell_{index}:", f"✗ cell_{index}:"))
        ]  # fmt: skip
        if not status or not status[0].startswith(f"✓ cell_{index}: up to date, cached"):
            found = _short(normalise(status[0])) if status else "no status line"
            return [f"cell_{index} was not cached: {found}"]
    return []


def check_restore(reference: Reference, run: NotebookRun, pipeline: str, steps: int) -> list[str]:
    """``%pipeline use`` + ``%pipeline run`` in a new kernel: every step restored, not run."""
    problems = []
    if run.first_error is not None:
        index, error = run.first_error
        problems.append(f"{['%load_ext', '%pipeline use', '%pipeline run'][index]} failed: {error}")
    if len(run.cells) > 1:
        used = run.cells[1].stream("stdout").strip()
        if f"({steps} steps stored)" not in used:
            problems.append(f"expected {steps} stored steps: {_short(used)}")
    if len(run.cells) > 2:
        lines = observe(run.cells[2]).toolkit_lines
        ran = [line for line in lines if line[:1] in "✓✗" and "up to date, cached" not in line]
        if ran:
            first = _short(normalise(ran[0]))
            problems.append(f"%pipeline run executed {len(ran)} of {steps} steps; first: {first}")
    if run.digest is not None and run.first_error is None:
        problems += reference.variable_differences(run.digest)
    return problems


RESULTS: dict[str, ItemResult] = {}


@pytest.mark.parametrize("item", ITEMS, ids=[item.stem for item in ITEMS])
def test_stepped_notebook_matches_plain(item: Path, record_property: Any) -> None:
    try:
        with tempfile.TemporaryDirectory(prefix="mlops_nb_differential_") as root:
            result = check_item(item, Path(root))
    except BaseException as error:  # e.g. a kernel that did not start: not clean either
        RESULTS[item.stem] = ItemResult(item.stem, 0, {"harness": [repr(error)]})
        raise
    RESULTS[item.stem] = result
    record_property("differential_problems", json.dumps(result.problems))
    record_property("differential_excluded", len(result.excluded))
    if not result.clean:
        pytest.fail(result.report(), pytrace=False)


def test_corpus_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """The fraction of corpus items that are clean all four ways; fails unless all are."""
    if not RESULTS:
        pytest.skip("no corpus item ran in this session")
    clean = sum(result.clean for result in RESULTS.values())
    line = f"differential corpus: {clean}/{len(RESULTS)} clean ({100 * clean // len(RESULTS)}%)"
    ways = ("stepped", "restarted", "restore")
    header = (
        f"{'item':<36} {'cells':>5} {'stepped':>8} {'restarted':>9} {'restore':>8} "
        f"{'excluded':>8} {'warnings':>8} {'seconds':>7}"
    )
    rows = [header]
    for result in RESULTS.values():
        if set(result.problems) - set(ways):  # the plain run or the harness failed
            marks = ["-"] * 3
        else:
            marks = ["FAIL" if result.problems.get(way) else "ok" for way in ways]
        rows.append(
            f"{result.item:<36} {result.cells:>5} {marks[0]:>8} {marks[1]:>9} {marks[2]:>8} "
            f"{len(result.excluded):>8} {len(result.warnings):>8} {result.seconds:>7.1f}"
        )
    excluded = sum(len(result.excluded) for result in RESULTS.values())
    with capsys.disabled():
        print("\n" + "\n".join(rows))
        print(
            f"excluded: outputs and variables that differ between two plain runs, not compared "
            f"({excluded} in all); warnings: mlops_nb warnings in the stepped runs (not compared)"
        )
        print(line)
    if clean != len(RESULTS):
        pytest.fail(line, pytrace=False)
