"""The content index in SQLite: sha256 ↔ stored files (instant upload, Repr-Digest).

Owns: recording every committed upload's digest, finding a file by digest,
and a file's digest by its path.
A row is only a hint: the caller checks that the file still has the recorded
size and mtime before trusting it, and `forget`s it otherwise. Must not: read
files.
"""

from __future__ import annotations

import os
import sqlite3

from .database import Database, transaction


class SqliteContentIndex:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, sha256_hex: str, rel_path: str, st: os.stat_result) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            # A path holds one content: rows of what it held before go.
            conn.execute("DELETE FROM content WHERE path = ? AND sha256 != ?", (rel_path, sha256_hex))
            conn.execute("INSERT OR REPLACE INTO content (sha256, path, size, mtime_ns) VALUES (?, ?, ?, ?)",
                         (sha256_hex, rel_path, st.st_size, st.st_mtime_ns))

        await self.db.run(lambda conn: transaction(conn, insert))

    async def candidates(self, sha256_hex: str) -> list[tuple[str, int, int]]:
        """(path, size, mtime_ns) of every file recorded with this digest."""
        return await self.db.run(lambda conn: [
            (path, size, mtime_ns) for path, size, mtime_ns in conn.execute(
                "SELECT path, size, mtime_ns FROM content WHERE sha256 = ?", (sha256_hex,))])

    async def digest_of(self, rel_path: str, st: os.stat_result) -> str | None:
        """The sha256 of the file at `rel_path` if it is still exactly what was
        recorded (same size and mtime), else None."""
        def find(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT sha256 FROM content WHERE path = ? AND size = ? AND mtime_ns = ?",
                               (rel_path, st.st_size, st.st_mtime_ns)).fetchone()
            return None if row is None else str(row[0])

        return await self.db.run(find)

    async def forget(self, sha256_hex: str, rel_path: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM content WHERE sha256 = ? AND path = ?", (sha256_hex, rel_path)))
