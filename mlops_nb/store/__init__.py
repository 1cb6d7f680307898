"""The local store: a SQLite catalog plus content-addressed object files that survive kernel restarts."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import mmap
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import xxhash

from ..errors import (
    CorruptObjectError,
    DiskFullError,
    UnhashableValueError,
    UnstorableValueError,
    ValueTooLargeError,
)
from ..hashing import content_hash
from .catalog import connect
from .serializers import by_name, serializer_for

__all__ = ["Store", "ObjectRef", "default_home"]

# Small values live inside the catalog: one SQLite transaction is much cheaper than a file + fsync.
INLINE_LIMIT = 64 * 1024
# What an object's name in the catalog must look like: anything else could lead outside objects/.
_SHA256 = re.compile(r"[0-9a-f]{64}")


def default_home() -> Path:
    """``$MLOPS_NB_HOME`` if set, else ``.mlops_nb`` in the current directory (next to the notebook)."""
    return Path(os.environ.get("MLOPS_NB_HOME") or ".mlops_nb")


@dataclass(frozen=True)
class ObjectRef:
    """Where a stored value lives: the sha256 of its bytes and the content hash of the value."""

    sha256: str
    value_hash: str


class _HashingWriter(io.RawIOBase):
    """A write-only file on a descriptor that computes the sha256, xxh3 and size of what it writes.

    It writes with ``os.write`` itself, so a full disk surfaces as ``OSError(ENOSPC)`` right here.
    """

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.sha256 = hashlib.sha256()
        self.xxh3 = xxhash.xxh3_128()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = os.write(self.descriptor, view)  # may be short: BufferedWriter writes the rest
        self.sha256.update(view[:written])
        self.xxh3.update(view[:written])
        self.size += written
        return written

    def close(self) -> None:
        if not self.closed:
            os.close(self.descriptor)
        super().close()


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
        self._depth = 0  # transactions open in the thread holding the lock
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
    def transaction(self, what: str = "the change") -> Iterator[sqlite3.Connection]:
        """A write transaction: all of it is committed, or none of it.

        A transaction opened inside another one joins it: the outer one commits both.
        """
        with self._lock, self._full_disk_is_clear(what):
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk): never mask them.
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    @contextlib.contextmanager
    def _full_disk_is_clear(self, what: str) -> Iterator[None]:
        """Turn "no space left" from the OS or SQLite into a DiskFullError saying what to do."""
        try:
            yield
        except (OSError, sqlite3.OperationalError) as error:
            full = (
                error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
                if isinstance(error, OSError)
                else error.sqlite_errorcode == sqlite3.SQLITE_FULL
            )
            if not full:
                raise
            raise DiskFullError(
                f"The disk holding the store {str(self.root)!r} is full ({error}): {what} was not "
                f"saved and the store is unchanged. Free some space (`mlops-nb store gc` deletes "
                f"objects nothing uses) or set MLOPS_NB_HOME to a folder on a bigger disk, then "
                f"run it again."
            ) from None

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
        kind = type(value).__qualname__
        try:
            if value_hash is None:
                value_hash = content_hash(value)
            existing = self.find(value_hash, serializer)
            # A copy that was damaged or deleted is written again: re-running a step repairs it.
            reusable = existing is not None and (inline or self._is_file(existing.sha256))
            if existing is not None and reusable and self._intact(existing):
                with self.transaction(label) as db:  # just used: garbage collection keeps it a while
                    touched = db.execute(
                        "UPDATE objects SET created = ? WHERE sha256 = ?",
                        (time.time(), existing.sha256),
                    ).rowcount
                if touched:  # else garbage collection deleted it a moment ago: write it again
                    return existing
            errors = []
            candidates = [by_name(serializer)] if serializer else serializer_for(value)
            for candidate in candidates:
                try:
                    return self._put_with(candidate, value, value_hash, inline, label)
                except (DiskFullError, MemoryError):
                    raise  # no other format helps
                except Exception as error:  # the next serializer may cope (pickle copes with most)
                    errors.append(f"{candidate.name}: {error}")
        except UnhashableValueError as error:
            raise UnstorableValueError(f"Cannot store {label} (a {kind}): {error}") from None
        except MemoryError:
            raise ValueTooLargeError(
                f"Cannot store {label} (a {kind}): there is not enough memory to write it, so "
                f"nothing was stored. Free memory (del large values you no longer need), or keep "
                f"this value out of the store: bind it to a _private name, or leave it out of the "
                f"step's --outputs."
            ) from None
        raise UnstorableValueError(
            f"Cannot store {label} (a {type(value).__qualname__}): {'; '.join(errors)}. "
            f"Keep such objects inside one step (bind them to a _private name, or close them), "
            f"or convert them to data."
        )

    def _is_file(self, sha256: str) -> bool:
        return bool(self.query("SELECT 1 FROM objects WHERE sha256 = ? AND inline IS NULL", (sha256,)))

    def _intact(self, ref: ObjectRef) -> bool:
        try:
            self.verify(ref.sha256, fast=True)
        except CorruptObjectError:
            return False
        return True

    def _put_with(
        self, serializer: Any, value: Any, value_hash: str, inline_ok: bool, label: str
    ) -> ObjectRef:
        descriptor, temporary = tempfile.mkstemp(
            dir=self.objects_dir, prefix=".incoming-", suffix=serializer.suffix
        )
        writer = _HashingWriter(descriptor)
        buffered = io.BufferedWriter(writer, buffer_size=1 << 20)
        try:
            with self._full_disk_is_clear(label):
                serializer.dump(value, buffered)
                buffered.flush()
                sha256, size, fast_sum = writer.sha256.hexdigest(), writer.size, writer.xxh3.hexdigest()
                trusted = json.dumps(serializer.untrusted_types(temporary) if size else [])
                inline = None
                if inline_ok and size <= INLINE_LIMIT:
                    os.lseek(descriptor, 0, os.SEEK_SET)
                    inline = b"".join(iter(lambda: os.read(descriptor, size), b""))
                else:
                    os.fsync(descriptor)
            # The file lands and its row commits under one lock, so garbage collection in another
            # kernel never sees the file without its row (and deletes it) in between.
            with self.transaction(label) as db:
                if inline is None:
                    final = self.object_path(sha256, serializer.suffix)
                    final.parent.mkdir(exist_ok=True)
                    os.replace(temporary, final)
                    _fsync_directory(final.parent)
                db.execute(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (sha256, value_hash, serializer.name, size, inline, trusted, time.time(), fast_sum),
                )
        finally:
            with contextlib.suppress(OSError):  # after a failed write: drop what is still buffered
                buffered.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return ObjectRef(sha256, value_hash)

    # -- maintenance ---------------------------------------------------------------------------
    def referenced(self) -> set[str]:
        """Objects something still points to: step results, feature parts, saved transforms."""
        found = {row[0] for row in self.query("SELECT sha256 FROM feature_parts")}
        found |= {row[0] for row in self.query("SELECT sha256 FROM transforms")}
        for outputs, state in self.query("SELECT outputs, state FROM results"):
            found |= {sha256 for sha256, _ in json.loads(outputs).values()}
            found |= {state} - {""}  # the global settings the step changed
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

        Objects stored (or stored again) less than ``older_than`` seconds ago are kept: a kernel
        may be about to commit the result that refers to one. Files that no catalog row
        lists (left by a kernel that died between writing a file and committing its row) go too.
        """
        cutoff = time.time() - older_than
        with self.transaction() as db:
            keep = self.referenced()
            rows = db.execute("SELECT sha256, size FROM objects WHERE created < ?", (cutoff,))
            unused = {sha256: size for sha256, size in rows if sha256 not in keep}
            if not dry_run:
                db.executemany("DELETE FROM objects WHERE sha256 = ?", [(sha,) for sha in unused])
        # Files go after their rows, so no row ever names a missing file. Another kernel may
        # have stored the same content again meanwhile: only files no row lists are deleted.
        with self.transaction() as db:
            listed = {row[0] for row in db.execute("SELECT sha256 FROM objects WHERE inline IS NULL")}
            if dry_run:
                listed -= set(unused)
            orphans = {}
            for path in self.objects_dir.glob("??/*"):
                sha256 = path.name.split(".")[0]
                with contextlib.suppress(FileNotFoundError):
                    status = path.stat()
                    if sha256 not in listed and status.st_mtime < cutoff and path.name[0] != ".":
                        orphans[sha256] = status.st_size
                        if not dry_run:
                            path.unlink()
        freed = {**orphans, **unused}
        return len(freed), sum(freed.values())

    def object_path(self, sha256: str, suffix: str) -> Path:
        """Where the file of a large object lives: ``objects/ab/abcdef....suffix``.

        The name comes from the catalog; anything but a sha256 (``../..``, an absolute path) is
        refused, so a modified catalog can never make the store read or delete a file elsewhere.
        """
        if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
            raise CorruptObjectError(
                f"The catalog of the store at {str(self.root)!r} names an object {sha256!r}, which "
                f"is not a sha256: the catalog was modified. No file outside "
                f"{str(self.objects_dir)!r} is read or deleted. Restore catalog.sqlite from a "
                f"backup, or start a new store (set MLOPS_NB_HOME to an empty folder)."
            )
        return self.objects_dir / sha256[:2] / f"{sha256}{suffix}"

    def verify(
        self, sha256: str, *, label: str = "value", fast: bool = False, expect: str | None = None
    ) -> None:
        """Check a stored object's bytes against their checksum without loading it.

        ``fast`` checks the xxh3 sum recorded at write time instead of the sha256: it catches
        corruption at memory speed, for large files that other tools (DuckDB) then read.
        ``expect`` names the only format accepted, e.g. ``"parquet"``.
        """
        rows = self.query("SELECT serializer, xxh3 FROM objects WHERE sha256 = ? AND inline IS NULL", (sha256,))
        if not (fast and rows and rows[0][1]):
            self._open_checked(sha256, label, expect)[0].close()
            return
        self._check_format(sha256, rows[0][0], expect, label)
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

    def get(self, sha256: str, *, label: str = "value", expect: str | None = None) -> Any:
        """Load a stored object, after checking its bytes against their sha256.

        ``expect`` names the only format accepted: a feature part must be ``"parquet"``, a
        transform ``"bytes"`` (its skops file), so a modified catalog cannot make them unpickle.
        """
        file, serializer, trusted = self._open_checked(sha256, label, expect)
        with file:
            return serializer.load(file, trusted)

    def _check_format(self, sha256: str, name: str, expect: str | None, label: str) -> None:
        if expect is not None and name != expect:
            raise CorruptObjectError(
                f"The store at {str(self.root)!r} records {label} (object {sha256[:12]}...) as "
                f"{name!r} data, but it must be {expect!r}: the catalog was modified, so it was not "
                f"loaded. Save or ingest it again."
            )

    def _open_checked(
        self, sha256: str, label: str, expect: str | None = None
    ) -> tuple[IO[bytes], Any, list[str]]:
        """The object's bytes as an open file at position 0 (after the checksum passed), the
        serializer that wrote it, and the types its loader must accept."""
        rows = self.query("SELECT serializer, inline, trusted FROM objects WHERE sha256 = ?", (sha256,))
        if not rows:
            raise CorruptObjectError(
                f"The store at {str(self.root)!r} has no object {str(sha256)[:12]}... for {label}: "
                f"its catalog and files are out of step. Re-run the step that produces it."
            )
        name, inline, trusted = rows[0]
        self._check_format(sha256, name, expect, label)
        serializer = by_name(name)
        if inline is not None:
            file: IO[bytes] = io.BytesIO(inline if isinstance(inline, bytes) else repr(inline).encode())
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
