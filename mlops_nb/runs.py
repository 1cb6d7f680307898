"""What a step's fingerprint is made of (its basis), why two bases differ, and the run records."""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import xxhash

from .runners import Recording
from .store import Store

__all__ = ["Basis", "RunRecords", "StepReport"]


@dataclass
class Basis:
    """Everything a step's result depends on, each part kept apart so a change can be named.

    ``inputs`` maps each name read to ``[content hash, producing step or None]``; ``deps`` holds
    the code it uses (modules, libraries, by version or content); ``settings`` global library
    settings (``sklearn.set_config``, ``pd.set_option``, rcParams...) and the global random
    generators it draws from.
    """

    code: str
    source: str = ""
    inputs: dict[str, list[Any]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    deps: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """One hash of every part except the source text (comments and spacing never count)."""
        parts = [
            self.code, sorted((name, pair[0]) for name, pair in self.inputs.items()),
            sorted(self.files.items()), sorted(self.deps.items()), sorted(self.settings.items()),
        ]  # fmt: skip
        return xxhash.xxh3_128_hexdigest(json.dumps(parts).encode())

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> Basis | None:
        if not text or text == "{}":
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})

    def differences(self, before: Basis) -> list[str]:
        """What changed since ``before``, in words, most telling first.

        >>> old = Basis("c1", "x = 1", inputs={"df": ["h1", "load"]})
        >>> Basis("c1", "x = 1", inputs={"df": ["h2", "load"]}).differences(old)
        ["input 'df' changed (from step 'load')"]
        """
        reasons: list[str] = []
        if self.code != before.code:
            reasons.append("its code changed:\n" + _diff(before.source, self.source))
        for name in sorted(set(self.inputs) | set(before.inputs)):
            now, then = self.inputs.get(name), before.inputs.get(name)
            where = f" (from step {now[1]!r})" if now and now[1] else ""
            if then is None:
                reasons.append(f"it reads a new input {name!r}{where}")
            elif now is None:
                reasons.append(f"it no longer reads {name!r}")
            elif now[0] != then[0]:
                reasons.append(f"input {name!r} changed{where}")
        for path in sorted(set(self.files) | set(before.files)):
            if self.files.get(path) != before.files.get(path):
                reasons.append(f"file {path!r} changed")
        for label in sorted(set(self.deps) | set(before.deps)):
            now_dep, then_dep = self.deps.get(label), before.deps.get(label)
            if now_dep != then_dep:
                if label.startswith("library ") and now_dep and then_dep:
                    reasons.append(f"{label} changed version: {then_dep} → {now_dep}")
                else:
                    reasons.append(f"{label} changed" if now_dep and then_dep else
                                   f"{label} is {'new' if now_dep else 'no longer used'}")
        for label in sorted(set(self.settings) | set(before.settings)):
            if self.settings.get(label) != before.settings.get(label):
                if label.endswith("random state"):
                    reasons.append(f"the global {label} changed (something drew from or seeded it)")
                else:
                    reasons.append(f"the global {label} settings changed (e.g. set_option, set_config, rcParams)")
        return reasons


@dataclass
class StepReport:
    """What happened when a step was asked to run."""

    step: str
    action: str  # "ran", "cached" or "failed"
    seconds: float
    outputs: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    stored: bool = True
    #: What the step printed and displayed (when it ran, or when the cached run did).
    recording: Recording = field(default_factory=list, repr=False)
    #: When the report was made (``time.time()``): for a step that ran, when it finished.
    finished: float = field(default_factory=time.time)
    #: The address of the Dask worker that ran or restored the step; "" for this process.
    worker: str = ""
    #: Why a step ran instead of being restored (the first reason), e.g. "input 'X' changed".
    reason: str = ""

    def summary(self, force_hint: str) -> str:
        """The one status line shown after a step."""
        names = ", ".join(self.outputs) or "no outputs"
        if self.action == "ran":
            kept = "stored" if self.stored else "not stored: --no-cache"
            because = f"; ran because {self.reason}" if self.reason and self.reason != "never run" else ""
            return f"✓ {self.step}: ran in {self.seconds:.2f} s → {names} ({kept}){because}"
        if self.action == "cached":
            how = f"restored {', '.join(self.restored)} from the store" if self.restored else "outputs already in memory"
            return (
                f"✓ {self.step}: up to date, cached: {how}, saving {self.seconds:.2f} s. "
                f"To re-run anyway: {force_hint}"
            )
        return f"✗ {self.step}: failed after {self.seconds:.2f} s; nothing was stored"


def _diff(before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), "stored", "now", lineterm="", n=1
    )
    return "\n".join(f"    {line}" for line in list(lines)[2:]) or "    (options changed)"


class RunRecords:
    """The ``runs`` and ``results`` rows of one pipeline: the last attempt and stored results.

    A failed attempt is recorded as failed but keeps the outputs of the last good run, so the
    steps after it still know which values are the right ones.
    """

    def __init__(self, store: Store, pipeline: str) -> None:
        self.store, self.pipeline = store, pipeline

    def result(self, step: str, fingerprint: str) -> tuple[Any, ...] | None:
        """``(outputs, display, seconds, lineage, state)`` of the stored result, or None."""
        rows = self.store.query(
            "SELECT outputs, display, seconds, lineage, state FROM results "
            "WHERE pipeline = ? AND step = ? AND fingerprint = ?",
            (self.pipeline, step, fingerprint),
        )
        return rows[0] if rows else None

    def last(self) -> dict[str, dict[str, Any]]:
        """Per step, its last run: action, code hash, inputs, outputs, seconds, error, basis.

        The basis stays JSON text until someone asks (:meth:`basis`): most callers only need
        the outputs, and a notebook can have hundreds of steps.
        """
        rows = self.store.query(
            "SELECT step, action, code_hash, inputs, outputs, seconds, error, basis FROM runs "
            "WHERE pipeline = ?",
            (self.pipeline,),
        )
        return {
            row[0]: {
                "action": row[1], "code_hash": row[2], "inputs": json.loads(row[3]),
                "outputs": json.loads(row[4]), "seconds": row[5], "error": row[6],
                "basis": row[7],
            }
            for row in rows
        }  # fmt: skip

    @staticmethod
    def basis(record: dict[str, Any] | None) -> Basis | None:
        """The basis of a run from :meth:`last`, or None."""
        return Basis.from_json(record["basis"]) if record else None

    def record(
        self, db: Any, step: str, action: str, basis: Basis, outputs: dict[str, str], seconds: float
    ) -> None:
        """A successful run or restore, inside the caller's transaction."""
        inputs = {name: pair[0] for name, pair in basis.inputs.items()}
        inputs.update((f"file:{path}", digest) for path, digest in basis.files.items())
        db.execute(
            "INSERT OR REPLACE INTO runs (pipeline, step, action, fingerprint, code_hash, inputs, "
            "outputs, seconds, error, finished, basis) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            (
                self.pipeline, step, action, basis.fingerprint, basis.code, json.dumps(inputs),
                json.dumps(outputs), seconds, time.time(), basis.to_json(),
            ),
        )  # fmt: skip

    def record_failure(self, step: str, code_hash: str, seconds: float, error: str) -> None:
        """A failed attempt: the outputs of the last good run, if any, are kept."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO runs (pipeline, step, action, fingerprint, code_hash, inputs, outputs, "
                "seconds, error, finished) VALUES (?, ?, 'failed', NULL, ?, '{}', '{}', ?, ?, ?) "
                "ON CONFLICT (pipeline, step) DO UPDATE SET action = 'failed', "
                "seconds = excluded.seconds, error = excluded.error, finished = excluded.finished",
                (self.pipeline, step, code_hash, seconds, error, time.time()),
            )
