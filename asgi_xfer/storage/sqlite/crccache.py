"""The CRC-32 cache for archives: one row per file, keyed by (path, size, mtime_ns).

Owns: its table in the shared SQLite database (created here, on first use)
and looking up and storing CRCs. A row counts only while the file still has
the size and mtime it had when its CRC was computed; a changed file simply
misses. Must not: read files; `archivesource` computes CRCs.

Why a cache: a stored zip's central directory lists every entry's CRC, so a
Range that resumes an archive at 3 GiB would otherwise re-read the 3 GiB
before it. The first download fills the cache as its bytes go out.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Sequence

from ..state import CrcKey
from .database import Database, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS archive_crcs (
    path     TEXT PRIMARY KEY,   -- real path relative to ROOT
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    crc32    INTEGER NOT NULL
) WITHOUT ROWID;
"""
# SQLite's default SQLITE_MAX_VARIABLE_NUMBER was 999 before 3.32.
_LOOKUP_BATCH = 500


_ready: weakref.WeakSet[Database] = weakref.WeakSet()


class SqliteCrcCache:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def _ensure_schema(self) -> None:
        if self._db not in _ready:
            await self._db.run(lambda conn: conn.executescript(SCHEMA))
            _ready.add(self._db)

    async def lookup(self, keys: Sequence[CrcKey]) -> list[int | None]:
        """The cached CRC of each key, None where there is none."""
        if not keys:
            return []
        await self._ensure_schema()
        return await self._db.run(lambda conn: _lookup(conn, keys))

    async def store(self, rows: Sequence[tuple[CrcKey, int]]) -> None:
        if not rows:
            return
        await self._ensure_schema()
        await self._db.run(lambda conn: _store(conn, rows))


def _lookup(conn: sqlite3.Connection, keys: Sequence[CrcKey]) -> list[int | None]:
    found: dict[str, tuple[int, int, int]] = {}
    paths = sorted({path for path, _, _ in keys})
    for at in range(0, len(paths), _LOOKUP_BATCH):
        batch = paths[at:at + _LOOKUP_BATCH]
        marks = ",".join("?" * len(batch))
        query = f"SELECT path, size, mtime_ns, crc32 FROM archive_crcs WHERE path IN ({marks})"
        for path, size, mtime_ns, crc in conn.execute(query, batch):
            found[path] = (size, mtime_ns, crc)
    out: list[int | None] = []
    for path, size, mtime_ns in keys:
        row = found.get(path)
        out.append(row[2] if row is not None and row[:2] == (size, mtime_ns) else None)
    return out


def _store(conn: sqlite3.Connection, rows: Sequence[tuple[CrcKey, int]]) -> None:
    # One transaction for the lot: each commit is an fsync (synchronous=FULL).
    values = [(path, size, mtime_ns, crc) for (path, size, mtime_ns), crc in rows]
    transaction(conn, lambda c: c.executemany(
        "INSERT OR REPLACE INTO archive_crcs (path, size, mtime_ns, crc32) VALUES (?, ?, ?, ?)", values,
    ))
