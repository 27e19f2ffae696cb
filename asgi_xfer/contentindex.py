"""The content index: sha256 → a stored file with that content (instant upload).

Owns: recording every committed upload's digest and finding a file by digest.
A row is only a hint: the caller checks that the file still has the recorded
size and mtime before trusting it, and `forget`s it otherwise. Must not: read
files.
"""

from __future__ import annotations

import os
import sqlite3

from .database import Database


class ContentIndex:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, sha256_hex: str, rel_path: str, st: os.stat_result) -> None:
        await self.db.run(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO content (sha256, path, size, mtime_ns) VALUES (?, ?, ?, ?)",
            (sha256_hex, rel_path, st.st_size, st.st_mtime_ns)))

    async def lookup(self, sha256_hex: str) -> tuple[str, int, int] | None:
        """(path, size, mtime_ns) last recorded for this digest, if any."""
        def find(conn: sqlite3.Connection) -> tuple[str, int, int] | None:
            row = conn.execute("SELECT path, size, mtime_ns FROM content WHERE sha256 = ?", (sha256_hex,)).fetchone()
            return None if row is None else (row[0], row[1], row[2])

        return await self.db.run(find)

    async def forget(self, sha256_hex: str, rel_path: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM content WHERE sha256 = ? AND path = ?", (sha256_hex, rel_path)))
