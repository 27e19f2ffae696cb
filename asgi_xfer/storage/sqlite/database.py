"""The SQLite database under `ROOT/.xfer/`: upload sessions and the content index.

Owns: opening it (WAL, so readers never block the writer and several worker
processes share it safely), the schema, and running queries on one thread
per process so the event loop never waits on a disk or a lock. Must not: know
what the rows mean; `sessions` and `contentindex` do.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

DB_FILE = "xfer.db"
# How long a writer waits for another process's transaction: they are all a
# few rows long, so seconds of waiting means something is stuck.
BUSY_TIMEOUT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,             -- 'chunked' | 'tus'
    path         TEXT NOT NULL,             -- target, relative to ROOT
    size         INTEGER,                   -- NULL while a tus length is deferred
    chunk_size   INTEGER NOT NULL,
    sha256       TEXT,                      -- announced whole-file digest
    owner        TEXT NOT NULL,
    metadata     TEXT NOT NULL DEFAULT '{}',
    created      REAL NOT NULL,
    expires      REAL NOT NULL,
    state        TEXT NOT NULL,             -- open | committing | complete
    state_since  REAL NOT NULL,
    offset_bytes INTEGER NOT NULL DEFAULT 0,-- tus: contiguous bytes received
    hashed_upto  INTEGER NOT NULL DEFAULT 0,-- bytes covered by hash_state
    hash_state   BLOB,
    result       TEXT,                      -- JSON of the commit, once complete
    takeover     REAL                       -- tus: a newer request asked the writer to stop
);
CREATE INDEX IF NOT EXISTS sessions_lookup ON sessions (path, size, sha256, state);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires);
CREATE TABLE IF NOT EXISTS chunks (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    sha256     BLOB,                      -- the client's sha-256 Content-Digest, if sent
    PRIMARY KEY (session_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS content (
    sha256   TEXT NOT NULL,
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    PRIMARY KEY (sha256, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS content_by_path ON content (path);
"""


class Database:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / DB_FILE
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="xfer-db")
        self._conn: sqlite3.Connection | None = None
        # Create the schema now, from the constructing thread, so a bad disk
        # or permission fails at start-up rather than on the first upload.
        self._executor.submit(self._connect).result()

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a chunk acknowledged as received survives a power cut, like its bytes.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        self._conn = conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._executor.submit(self._call, fn).result()

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None
        return fn(self._conn)

    def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(_close).result()
        self._executor.shutdown(wait=True)


def transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn` inside BEGIN IMMEDIATE: takes the write lock up front, so two
    processes' read-then-write sequences cannot interleave."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
