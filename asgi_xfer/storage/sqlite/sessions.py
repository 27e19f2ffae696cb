"""Upload sessions in SQLite: the `SessionStore` of `storage.state`.

Owns: the session and chunk rows and the compare-and-set steps that make
sessions safe across worker processes (claiming the commit, advancing the
hash), each one statement or one `BEGIN IMMEDIATE` transaction. Must not:
speak HTTP or touch the staging file's bytes.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Any

from ..state import BUSY, COMMIT_STALE_S, COMMITTING, COMPLETE, DONE, OPEN, SESSION_TTL_S, WON, Session
from .database import Database, transaction

_COLUMNS = ("id, kind, path, size, chunk_size, sha256, owner, metadata, created, expires, "
            "state, state_since, offset_bytes, hashed_upto, hash_state, result")



def _row_to_session(row: tuple[Any, ...], received: frozenset[int]) -> Session:
    (sid, kind, path, size, chunk_size, sha256, owner, metadata, created, expires,
     state, state_since, offset, hashed_upto, hash_state, result) = row
    return Session(sid, kind, path, size, chunk_size, sha256, owner, json.loads(metadata), created, expires,
                   state, state_since, offset, hashed_upto, hash_state, json.loads(result) if result else None, received)


def _load(conn: sqlite3.Connection, sid: str, now: float | None) -> Session | None:
    """The session, or None if missing or (unless `now` is None) expired."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (sid,)).fetchone()
    if row is None or (now is not None and row[9] <= now):
        return None
    received = frozenset(i for (i,) in conn.execute("SELECT idx FROM chunks WHERE session_id = ?", (sid,)))
    return _row_to_session(row, received)


class SqliteSessionStore:
    def __init__(self, db: Database, ttl_s: float = SESSION_TTL_S) -> None:
        self.db = db
        self.ttl_s = ttl_s

    async def create(self, *, kind: str, path: str, size: int | None, chunk_size: int, sha256: str | None,
                     owner: str, now: float, metadata: dict[str, Any] | None = None, hash_state: bytes | None = None) -> Session:
        sid = secrets.token_hex(16)

        def insert(conn: sqlite3.Connection) -> Session:
            conn.execute(
                f"INSERT INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, NULL)",
                (sid, kind, path, size, chunk_size, sha256, owner, json.dumps(metadata or {}), now, now + self.ttl_s,
                 OPEN, now, hash_state),
            )
            session = _load(conn, sid, now)
            assert session is not None
            return session

        return await self.db.run(insert)

    async def get(self, sid: str, now: float | None) -> Session | None:
        """None if missing or expired; pass now=None to see expired ones too."""
        return await self.db.run(lambda conn: _load(conn, sid, now))

    # -- tus: a contiguous offset instead of chunks ------------------------

    async def advance_offset(self, sid: str, old: int, new: int, now: float) -> bool:
        """Bytes [old, new) are written and synced (the running hash follows:
        sessionhash). Compare-and-set on the offset, so two writers cannot
        both count."""
        return await self.db.run(lambda conn: conn.execute(
            "UPDATE sessions SET offset_bytes = ?, expires = ? WHERE id = ? AND offset_bytes = ? AND state = ?",
            (new, now + self.ttl_s, sid, old, OPEN)).rowcount == 1)

    async def set_path(self, sid: str, path: str) -> None:
        await self.db.run(lambda conn: conn.execute("UPDATE sessions SET path = ? WHERE id = ?", (path, sid)))

    async def set_length(self, sid: str, length: int) -> bool:
        """creation-defer-length: the length, once, when it becomes known."""
        return await self.db.run(lambda conn: conn.execute(
            "UPDATE sessions SET size = ? WHERE id = ? AND size IS NULL", (length, sid)).rowcount == 1)

    async def request_takeover(self, sid: str, now: float) -> None:
        await self.db.run(lambda conn: conn.execute("UPDATE sessions SET takeover = ? WHERE id = ?", (now, sid)))

    async def takeover_requested(self, sid: str, since: float) -> bool:
        """Whether a newer request asked, after `since`, for this upload."""
        return await self.db.run(lambda conn: (conn.execute(
            "SELECT takeover FROM sessions WHERE id = ?", (sid,)).fetchone() or (None,))[0] or 0) > since

    async def waiting_finals(self, partial_id: str) -> list[str]:
        """Open tus final uploads that list `partial_id` among their parts."""
        def find(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT id, metadata FROM sessions WHERE kind = 'tus' AND state = ? AND metadata LIKE ?",
                (OPEN, f'%"{partial_id}"%'))
            return [sid for sid, md in rows if partial_id in json.loads(md).get("parts", [])]

        return await self.db.run(find)

    async def mark_complete(self, sid: str, result: dict[str, Any] | None, now: float) -> None:
        """A tus upload whose bytes are all in (a partial is never committed)."""
        await self.finish_commit(sid, result or {}, now)

    async def find_open(self, path: str, size: int, sha256: str | None, now: float) -> Session | None:
        """The open session for the same (path, size, sha256), so a client
        that lost its id resumes instead of starting over."""
        def find(conn: sqlite3.Connection) -> Session | None:
            row = conn.execute(
                "SELECT id FROM sessions WHERE kind = 'chunked' AND path = ? AND size = ? AND sha256 IS ? "
                "AND state = ? AND expires > ? ORDER BY created DESC LIMIT 1",
                (path, size, sha256, OPEN, now),
            ).fetchone()
            return None if row is None else _load(conn, row[0], now)

        return await self.db.run(find)

    async def has_chunk(self, sid: str, index: int) -> bool:
        return await self.db.run(lambda conn: conn.execute(
            "SELECT 1 FROM chunks WHERE session_id = ? AND idx = ?", (sid, index)).fetchone() is not None)

    async def mark_chunk(self, sid: str, index: int, sha256: bytes | None, now: float) -> None:
        """Record a chunk whose bytes are written and synced; idle expiry
        restarts."""
        def mark(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO chunks (session_id, idx, sha256) VALUES (?, ?, ?)", (sid, index, sha256))
            conn.execute("UPDATE sessions SET expires = ? WHERE id = ?", (now + self.ttl_s, sid))

        await self.db.run(lambda conn: transaction(conn, mark))

    async def advance_hash(self, sid: str, old_upto: int, new_upto: int, state: bytes) -> bool:
        """Move the running hash from `old_upto` to `new_upto` bytes, only if
        no other request or process moved it meanwhile."""
        def advance(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE sessions SET hashed_upto = ?, hash_state = ? WHERE id = ? AND hashed_upto = ? AND state != ?",
                (new_upto, state, sid, old_upto, COMPLETE),
            )
            return cur.rowcount == 1

        return await self.db.run(advance)

    async def begin_commit(self, sid: str, now: float) -> str:
        """WON: this caller commits. DONE: already complete. BUSY: another
        request is committing right now. A commit left by a crash is taken over."""
        def claim(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT state, state_since FROM sessions WHERE id = ?", (sid,)).fetchone()
            if row is None:
                return BUSY
            state, since = row
            if state == COMPLETE:
                return DONE
            if state == COMMITTING and now - since < COMMIT_STALE_S:
                return BUSY
            conn.execute("UPDATE sessions SET state = ?, state_since = ? WHERE id = ?", (COMMITTING, now, sid))
            return WON

        return await self.db.run(lambda conn: transaction(conn, claim))

    async def finish_commit(self, sid: str, result: dict[str, Any], now: float) -> None:
        await self.db.run(lambda conn: conn.execute(
            "UPDATE sessions SET state = ?, state_since = ?, result = ?, expires = ? WHERE id = ?",
            (COMPLETE, now, json.dumps(result), now + self.ttl_s, sid)))

    async def abort_commit(self, sid: str, now: float) -> None:
        await self.db.run(lambda conn: conn.execute(
            "UPDATE sessions SET state = ?, state_since = ? WHERE id = ? AND state = ?", (OPEN, now, sid, COMMITTING)))

    async def delete(self, sid: str) -> None:
        await self.db.run(lambda conn: transaction(conn, lambda c: (
            c.execute("DELETE FROM chunks WHERE session_id = ?", (sid,)),
            c.execute("DELETE FROM sessions WHERE id = ?", (sid,)))))

    async def expired_ids(self, now: float) -> list[str]:
        return await self.db.run(lambda conn: [
            sid for (sid,) in conn.execute("SELECT id FROM sessions WHERE expires <= ?", (now,))])

    def count_open(self) -> int:
        return self.db.run_sync(lambda conn: conn.execute(
            "SELECT count(*) FROM sessions WHERE state != ?", (COMPLETE,)).fetchone()[0])
