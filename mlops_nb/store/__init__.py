"""The local store: a SQLite catalog plus content-addressed object files that survive kernel restarts."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import mmap
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import xxhash

from ..errors import CorruptObjectError, UnhashableValueError, UnstorableValueError
from ..hashing import content_hash
from .catalog import connect
from .serializers import by_name, serializer_for

__all__ = ["Store", "ObjectRef", "default_home"]

# Small values live inside the catalog: one SQLite transaction is much cheaper than a file + fsync.
INLINE_LIMIT = 64 * 1024


def default_home() -> Path:
    """``$MLOPS_NB_HOME`` if set, else ``.mlops_nb`` in the current directory (next to the notebook)."""
    return Path(os.environ.get("MLOPS_NB_HOME") or ".mlops_nb")


@dataclass(frozen=True)
class ObjectRef:
    """Where a stored value lives: the sha256 of its bytes and the content hash of the value."""

    sha256: str
    value_hash: str


class _HashingWriter(io.RawIOBase):
    """A write-only file that computes the sha256 and size of what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.xxh3 = xxhash.xxh3_128()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.target.write(view)
        self.sha256.update(view)
        self.xxh3.update(view)
        self.size += len(view)
        return len(view)


class Store:
    """A folder holding ``catalog.sqlite`` and ``objects/``, shared safely by several kernels.

    Parameters
    ----------
    root : path, optional
        The store folder; default ``$MLOPS_NB_HOME`` or ``./.mlops_nb``.

    Examples
    --------
    >>> import tempfile
    >>> store = Store(tempfile.mkdtemp())
    >>> ref = store.put({"accuracy": 0.93})
    >>> store.get(ref.sha256)
    {'accuracy': 0.93}
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_home()
        self.objects_dir = self.root / "objects"
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        self.catalog_path = self.root / "catalog.sqlite"
        self._db = connect(self.catalog_path)
        self._lock = threading.RLock()
        self._remove_abandoned_writes()

    @classmethod
    def at(cls, path: str | os.PathLike[str] | Store | None) -> Store:
        """``path`` itself if it is already a Store, else the Store in that folder."""
        return path if isinstance(path, Store) else cls(path)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A store is its folder: pickling (and so content hashing) keeps just the path.
        return (Store, (str(self.root),))

    def _remove_abandoned_writes(self, older_than: float = 3600) -> None:
        """Delete temporary files of writers that died (an hour old: no live writer is that slow)."""
        cutoff = time.time() - older_than
        for leftover in self.objects_dir.glob(".incoming-*"):
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def close(self) -> None:
        """Close the catalog connection."""
        self._db.close()

    # -- catalog access ------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: all of it is committed, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query on the catalog."""
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    # -- objects -------------------------------------------------------------------------------
    def find(self, value_hash: str, serializer: str | None = None) -> ObjectRef | None:
        """The stored object holding a value with this content hash (in that format), if any."""
        rows = self.query(
            "SELECT sha256 FROM objects WHERE value_hash = ? AND serializer = COALESCE(?, serializer) "
            "LIMIT 1",
            (value_hash, serializer),
        )
        return ObjectRef(rows[0][0], value_hash) if rows else None

    def put(
        self,
        value: Any,
        value_hash: str | None = None,
        *,
        label: str = "value",
        inline: bool = True,
        serializer: str | None = None,
    ) -> ObjectRef:
        """Store ``value`` (once per distinct content) and return its reference.

        The bytes go to a temporary file that is fsync'ed and renamed into place before the catalog
        row is committed, so a crash at any point leaves every committed object intact. Small
        values live in the catalog itself unless ``inline=False`` (files other tools must read).
        ``serializer`` forces a format by name (e.g. ``"parquet"`` for files DuckDB will query).
        """
        if value_hash is None:
            try:
                value_hash = content_hash(value)
            except UnhashableValueError as error:
                raise UnstorableValueError(
                    f"Cannot store {label} (a {type(value).__qualname__}): {error}"
                ) from None
        existing = self.find(value_hash, serializer)
        if existing is not None and (inline or self._is_file(existing.sha256)):
            return existing
        errors = []
        candidates = [by_name(serializer)] if serializer else serializer_for(value)
        for candidate in candidates:
            try:
                return self._put_with(candidate, value, value_hash, inline)
            except Exception as error:  # the next serializer may cope (pickle copes with most)
                errors.append(f"{candidate.name}: {error}")
        raise UnstorableValueError(
            f"Cannot store {label} (a {type(value).__qualname__}): {'; '.join(errors)}. "
            f"Keep such objects inside one step (bind them to a _private name, or close them), "
            f"or convert them to data."
        )

    def _is_file(self, sha256: str) -> bool:
        return bool(self.query("SELECT 1 FROM objects WHERE sha256 = ? AND inline IS NULL", (sha256,)))

    def _put_with(self, serializer: Any, value: Any, value_hash: str, inline_ok: bool) -> ObjectRef:
        temporary = tempfile.NamedTemporaryFile(
            dir=self.objects_dir, prefix=".incoming-", suffix=serializer.suffix, delete=False
        )
        try:
            with temporary as raw:
                writer = _HashingWriter(raw)
                buffered = io.BufferedWriter(writer, buffer_size=1 << 20)
                serializer.dump(value, buffered)
                buffered.flush()
                sha256, size, fast_sum = writer.sha256.hexdigest(), writer.size, writer.xxh3.hexdigest()
                trusted = json.dumps(serializer.untrusted_types(raw.name) if size else [])
                inline = None
                if inline_ok and size <= INLINE_LIMIT:
                    raw.seek(0)
                    inline = raw.read()
                else:
                    raw.flush()
                    os.fsync(raw.fileno())
            if inline is None:
                final = self.object_path(sha256, serializer.suffix)
                final.parent.mkdir(exist_ok=True)
                os.replace(temporary.name, final)
                _fsync_directory(final.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary.name)
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sha256, value_hash, serializer.name, size, inline, trusted, time.time(), fast_sum),
            )
        return ObjectRef(sha256, value_hash)

    # -- maintenance ---------------------------------------------------------------------------
    def referenced(self) -> set[str]:
        """Objects something still points to: step results, feature parts, saved transforms."""
        found = {row[0] for row in self.query("SELECT sha256 FROM feature_parts")}
        found |= {row[0] for row in self.query("SELECT sha256 FROM transforms")}
        for (outputs,) in self.query("SELECT outputs FROM results"):
            found |= {sha256 for sha256, _ in json.loads(outputs).values()}
        return found

    def verify_all(self) -> list[str]:
        """Check every object against its checksum; return one message per problem (none: fine)."""
        problems = []
        for (sha256,) in self.query("SELECT sha256 FROM objects ORDER BY sha256"):
            try:
                self._open_checked(sha256, f"object {sha256[:12]}")[0].close()
            except CorruptObjectError as error:
                problems.append(str(error))
        return problems

    def garbage_collect(self, dry_run: bool = False, older_than: float = 600) -> tuple[int, int]:
        """Delete objects nothing references; return how many and how many bytes (to be) freed.

        Objects younger than ``older_than`` seconds are kept: a kernel may have written one a
        moment ago and be about to commit the result that refers to it.
        """
        keep = self.referenced()
        rows = self.query(
            "SELECT sha256, serializer, size, inline IS NULL FROM objects WHERE created < ?",
            (time.time() - older_than,),
        )
        unused = [row for row in rows if row[0] not in keep]
        if not dry_run:
            with self.transaction() as db:
                db.executemany("DELETE FROM objects WHERE sha256 = ?", [(row[0],) for row in unused])
            for sha256, serializer, _, is_file in unused:  # files go after the rows: never dangling
                if is_file:
                    with contextlib.suppress(FileNotFoundError):
                        self.object_path(sha256, by_name(serializer).suffix).unlink()
        return len(unused), sum(row[2] for row in unused)

    def object_path(self, sha256: str, suffix: str) -> Path:
        """Where the file of a large object lives: ``objects/ab/abcdef....suffix``."""
        return self.objects_dir / sha256[:2] / f"{sha256}{suffix}"

    def verify(self, sha256: str, *, label: str = "value", fast: bool = False) -> None:
        """Check a stored object's bytes against their checksum without loading it.

        ``fast`` checks the xxh3 sum recorded at write time instead of the sha256: it catches
        corruption at memory speed, for large files that other tools (DuckDB) then read.
        """
        rows = self.query("SELECT serializer, xxh3 FROM objects WHERE sha256 = ? AND inline IS NULL", (sha256,))
        if not (fast and rows and rows[0][1]):
            self._open_checked(sha256, label)[0].close()
            return
        path = self.object_path(sha256, by_name(rows[0][0]).suffix)
        try:
            with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                matches = xxhash.xxh3_128_hexdigest(data) == rows[0][1]
        except (FileNotFoundError, ValueError):  # ValueError: an empty file cannot be mapped
            matches = False
        if not matches:
            raise CorruptObjectError(
                f"The file {str(path)!r} holding {label} is missing, corrupt or was modified: its "
                f"checksum does not match the catalog. Ingest the data again."
            )

    def generation(self) -> tuple[int, int]:
        """Changes when anything commits to the catalog (this connection or another process)."""
        with self._lock:
            return self._db.execute("PRAGMA data_version").fetchone()[0], self._db.total_changes

    def get(self, sha256: str, *, label: str = "value") -> Any:
        """Load a stored object, after checking its bytes against their sha256."""
        file, serializer, trusted = self._open_checked(sha256, label)
        with file:
            return serializer.load(file, trusted)

    def _open_checked(self, sha256: str, label: str) -> tuple[IO[bytes], Any, list[str]]:
        """The object's bytes as an open file at position 0 (after the checksum passed), the
        serializer that wrote it, and the types its loader must accept."""
        rows = self.query("SELECT serializer, inline, trusted FROM objects WHERE sha256 = ?", (sha256,))
        if not rows:
            raise CorruptObjectError(
                f"The store at {str(self.root)!r} has no object {sha256[:12]}... for {label}: "
                f"its catalog and files are out of step. Re-run the step that produces it."
            )
        name, inline, trusted = rows[0]
        serializer = by_name(name)
        if inline is not None:
            file: IO[bytes] = io.BytesIO(bytes(inline))
            where = f"The catalog row of object {sha256[:12]}..."
        else:
            path = self.object_path(sha256, serializer.suffix)
            where = f"The file {str(path)!r}"
            try:
                file = open(path, "rb")
            except FileNotFoundError:
                raise CorruptObjectError(
                    f"{where} holding {label} is missing. Write it again: re-run the step that "
                    f"produces it (with --force), or save or ingest it again."
                ) from None
            if serializer.name == "pickle":  # unpickle exactly the bytes that were checked
                with file:
                    file = io.BytesIO(file.read())
        if hashlib.file_digest(cast(Any, file), "sha256").hexdigest() != sha256:
            file.close()
            raise CorruptObjectError(
                f"{where} holding {label} is corrupt or was modified: its sha256 "
                f"does not match the catalog, so it was not loaded. Write a good copy: re-run the "
                f"step that produces it (with --force), or save or ingest it again."
            )
        file.seek(0)
        return file, serializer, json.loads(trusted)


def _fsync_directory(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds the new name."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
