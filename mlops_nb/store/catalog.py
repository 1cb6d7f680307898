"""The SQLite catalog: opening it safely for several processes, and its schema migrations."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ..errors import StoreVersionError

__all__ = ["SCHEMA_VERSION", "connect"]

# Each entry upgrades the schema by one version. Never edit a released entry: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE objects (
        sha256     TEXT PRIMARY KEY,
        value_hash TEXT,
        serializer TEXT NOT NULL,
        size       INTEGER NOT NULL,
        inline     BLOB,
        trusted    TEXT NOT NULL DEFAULT '[]',
        created    REAL NOT NULL
    );
    CREATE INDEX objects_by_value ON objects (value_hash);
    CREATE TABLE steps (
        pipeline   TEXT NOT NULL,
        name       TEXT NOT NULL,
        definition TEXT NOT NULL,
        position   INTEGER NOT NULL,
        PRIMARY KEY (pipeline, name)
    );
    CREATE TABLE results (
        pipeline    TEXT NOT NULL,
        step        TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        outputs     TEXT NOT NULL,
        display     TEXT NOT NULL,
        seconds     REAL NOT NULL,
        created     REAL NOT NULL,
        PRIMARY KEY (pipeline, step, fingerprint)
    );
    CREATE TABLE runs (
        pipeline    TEXT NOT NULL,
        step        TEXT NOT NULL,
        action      TEXT NOT NULL,
        fingerprint TEXT,
        code_hash   TEXT NOT NULL,
        inputs      TEXT NOT NULL,
        outputs     TEXT NOT NULL,
        seconds     REAL NOT NULL,
        error       TEXT,
        finished    REAL NOT NULL,
        PRIMARY KEY (pipeline, step)
    );
    """,
    # 2: the feature store (views, offline parts, online values) and lineage of step results.
    """
    CREATE TABLE feature_views (
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        definition TEXT NOT NULL,
        created    REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE feature_parts (
        view      TEXT NOT NULL,
        version   INTEGER NOT NULL,
        part      INTEGER NOT NULL,
        sha256    TEXT NOT NULL,
        rows      INTEGER NOT NULL,
        first_ts  TEXT,
        last_ts   TEXT,
        ingested  REAL NOT NULL,
        PRIMARY KEY (view, version, part)
    );
    CREATE TABLE online_features (
        view     TEXT NOT NULL,
        version  INTEGER NOT NULL,
        entity   TEXT NOT NULL,
        sort_key TEXT NOT NULL,
        event_us INTEGER NOT NULL,
        features TEXT NOT NULL,
        PRIMARY KEY (view, version, entity)
    ) WITHOUT ROWID;
    ALTER TABLE results ADD COLUMN lineage TEXT NOT NULL DEFAULT '[]';
    """,
    # 3: a fast (xxh3) checksum too, to verify large files other tools read (Parquet parts).
    """
    ALTER TABLE objects ADD COLUMN xxh3 TEXT;
    """,
    # 4: feature rows that lose a tie (same entity and event time) to another row: the
    # point-in-time join leaves them out, so it can order rows by event time alone.
    """
    CREATE TABLE feature_losers (
        view    TEXT NOT NULL,
        version INTEGER NOT NULL,
        part    INTEGER NOT NULL,
        row     INTEGER NOT NULL,
        PRIMARY KEY (view, version, part, row)
    ) WITHOUT ROWID;
    """,
    # 5: fitted transforms: the skops file is an object; the record holds schema, statistics,
    # library versions, source and tags as JSON.
    """
    CREATE TABLE transforms (
        name    TEXT NOT NULL,
        version INTEGER NOT NULL,
        sha256  TEXT NOT NULL,
        record  TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    """,
    # 6: what each run's fingerprint was made of (to say why a step re-runs), and the global
    # settings a step changed (an object), re-applied when the step is restored.
    """
    ALTER TABLE runs ADD COLUMN basis TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE results ADD COLUMN state TEXT NOT NULL DEFAULT '';
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating or upgrading) the catalog at ``path``.

    WAL lets readers and one writer work at the same time; the busy timeout makes a second kernel
    wait for the lock instead of failing; synchronous=NORMAL is crash-safe in WAL mode.
    """
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    for attempt in range(100):
        try:  # switching to WAL can report "locked" at once while another process creates the file
            connection.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 99:
                raise
            time.sleep(0.05)
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=30000")
    connection.execute("PRAGMA cache_size=-65536")  # 64 MB: online lookups hit many pages
    connection.execute("PRAGMA mmap_size=268435456")
    _migrate(connection, path)
    return connection


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"The store at {str(path)!r} has schema version {version}, newer than this mlops_nb "
            f"understands ({SCHEMA_VERSION}). Upgrade mlops_nb, or set MLOPS_NB_HOME to another folder."
        )
    connection.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
