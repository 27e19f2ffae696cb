"""The state seam: what the server keeps besides file bytes, as small contracts.

Owns: the `Session` model shared by `/uploads`, tus and `/resumable/`, the session states,
and the interfaces a state backend implements: upload sessions with their
compare-and-set steps, the content index (sha256 <-> stored files), the CRC
cache of archives, and the signing key. `storage.sqlite` implements them in
one SQLite file under `ROOT/.xfer/`; a shared database (PostgreSQL) can
implement them next so that several nodes serve one tree. Must not: hold an
implementation; handlers and the rest of `storage` talk only to these.

Every method that changes a session is a compare-and-set or an idempotent
write, so that several requests, worker processes or nodes may race on one
session: exactly one `begin_commit` wins, a chunk counts once, the running
hash moves only from where it stood.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol.chunking import ChunkPlan

# Idle sessions expire after a day (SPEC), like tusd's default expiration.
SESSION_TTL_S = 24 * 3600
# A 'committing' state older than this was left by a crashed process: the
# commit (a rename and a database write) takes well under a second.
COMMIT_STALE_S = 60.0

OPEN, COMMITTING, COMPLETE = "open", "committing", "complete"
# Session kinds that receive a contiguous prefix (`offset`), not chunks:
# tus and the IETF resumable uploads.
OFFSET_KINDS = frozenset({"tus", "ietf"})
# What `begin_commit` answers: this caller commits, it is done, or another
# request is committing right now.
WON, DONE, BUSY = "won", "done", "busy"


@dataclass(frozen=True)
class Session:
    id: str
    kind: str  # 'chunked' | 'tus' | 'ietf'
    path: str
    size: int | None  # None while a tus length is deferred
    chunk_size: int
    sha256: str | None  # the announced whole-file digest
    owner: str
    metadata: dict[str, Any]
    created: float
    expires: float
    state: str
    state_since: float
    offset: int  # tus: contiguous bytes received
    hashed_upto: int  # bytes covered by hash_state
    hash_state: bytes | None
    result: dict[str, Any] | None  # the commit's answer, once complete
    received: frozenset[int] = field(default_factory=frozenset)

    @property
    def plan(self) -> ChunkPlan:
        return ChunkPlan(self.size or 0, self.chunk_size)

    def hashable_end(self) -> int:
        """Where the bytes received without a gap after `hashed_upto` end:
        how far the running hash can go now (tus receives a contiguous prefix)."""
        if self.kind in OFFSET_KINDS:
            return self.offset
        return self.plan.contiguous_end(self.hashed_upto, self.received)


class SessionStore(Protocol):
    ttl_s: float

    async def create(self, *, kind: str, path: str, size: int | None, chunk_size: int, sha256: str | None,
                     owner: str, now: float, metadata: dict[str, Any] | None = None,
                     hash_state: bytes | None = None) -> Session: ...

    async def get(self, sid: str, now: float | None) -> Session | None:
        """None if missing or expired; now=None sees expired ones too."""

    async def find_open(self, path: str, size: int, sha256: str | None, now: float) -> Session | None:
        """The open `/uploads` session for (path, size, sha256), to resume."""

    async def set_path(self, sid: str, path: str) -> None: ...

    async def has_chunk(self, sid: str, index: int) -> bool: ...

    async def mark_chunk(self, sid: str, index: int, sha256: bytes | None, now: float) -> None:
        """Record a chunk whose bytes are written and synced (idempotent)."""

    async def advance_offset(self, sid: str, old: int, new: int, now: float) -> bool:
        """tus: bytes [old, new) are in; compare-and-set on the offset."""

    async def set_length(self, sid: str, length: int) -> bool:
        """tus creation-defer-length: the length, once."""

    async def request_takeover(self, sid: str, now: float) -> None:
        """tus: a newer request asks the one writing this upload to let go."""

    async def takeover_requested(self, sid: str, since: float) -> bool: ...

    async def waiting_finals(self, partial_id: str) -> list[str]:
        """Open tus final uploads that list `partial_id` among their parts."""

    async def mark_complete(self, sid: str, result: dict[str, Any] | None, now: float) -> None: ...

    async def advance_hash(self, sid: str, old_upto: int, new_upto: int, state: bytes) -> bool:
        """Move the saved running hash from `old_upto`, only if it still stands there."""

    async def begin_commit(self, sid: str, now: float) -> str:
        """WON, DONE or BUSY; a commit left by a crash is taken over."""

    async def finish_commit(self, sid: str, result: dict[str, Any], now: float) -> None: ...

    async def abort_commit(self, sid: str, now: float) -> None: ...

    async def delete(self, sid: str) -> None: ...

    async def expired_ids(self, now: float) -> list[str]: ...

    def count_open(self) -> int:
        """Sessions not yet complete (for /metrics; may block briefly)."""


class ContentIndex(Protocol):
    """sha256 <-> stored files. A row is a hint: callers check that the file
    still has the recorded size and mtime, and `forget` it otherwise."""

    async def record(self, sha256_hex: str, rel_path: str, st: os.stat_result) -> None: ...

    async def candidates(self, sha256_hex: str) -> list[tuple[str, int, int]]:
        """(path, size, mtime_ns) of every file recorded with this digest."""

    async def digest_of(self, rel_path: str, st: os.stat_result) -> str | None: ...

    async def forget(self, sha256_hex: str, rel_path: str) -> None: ...


CrcKey = tuple[str, int, int]  # (path, size, mtime_ns)


class CrcCache(Protocol):
    """CRC-32s of files, for stored zips; a changed file simply misses."""

    async def lookup(self, keys: Sequence[CrcKey]) -> list[int | None]: ...

    async def store(self, rows: Sequence[tuple[CrcKey, int]]) -> None: ...


class StateBackend(Protocol):
    """One backend's whole state, built once per app."""

    sessions: SessionStore
    index: ContentIndex
    crcs: CrcCache

    def signing_key(self) -> bytes:
        """The HMAC key for signed links, the same for every worker and node."""

    def close(self) -> None: ...
