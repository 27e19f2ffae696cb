"""The whole-file SHA-256 of an upload session: the catch-up and the final
digest.

Owns: advancing a session's saved hash state, from the staging file, over
the bytes received without a gap that no feed (hashfeed) took in: another
worker's chunks, chunks received in parallel while the network set the pace,
bytes from before a restart. One catch-up per session per process, in steps
recorded as they go (a crash loses at most a step); compare-and-set in the
database keeps workers from counting a byte twice. And the digest a commit
reports. Must not: parse requests or commit files.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os

from . import hashfeed
from ..server.context import Context
from .sqlite.sessions import Session
from ..protocol.sha256state import AVAILABLE as RESUMABLE_HASH, ResumableSha256

# Bytes read per step when hashing from the staging file.
HASH_READ_BYTES = 4 << 20
# The catch-up records its progress after this many bytes: a crash loses
# at most this much hashing.
HASH_STEP_BYTES = 32 << 20


# Background catch-ups running in this process, by session.
_catching_up: dict[str, asyncio.Future[None]] = {}


def hash_region(path: str, start: int, end: int, state: bytes | None) -> bytes:
    """Resume `state` over bytes [start, end) of the file; the new state."""
    h = ResumableSha256(state)
    update_from_file(h, path, start, end)
    return h.state()


def update_from_file(h: ResumableSha256, path: str, start: int, end: int) -> None:
    """Feed bytes [start, end) of the file to `h`."""
    # One buffer reused for every read: a fresh 4 MiB bytes object per read
    # made glibc raise its mmap threshold and keep ~40 MiB more resident.
    buffer = bytearray(min(HASH_READ_BYTES, max(end - start, 1)))
    view = memoryview(buffer)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pos = start
        while pos < end:
            n = os.preadv(fd, [view[: min(len(buffer), end - pos)]], pos)
            if not n:
                raise OSError(errno.EIO, "staging file shorter than its session")
            h.update_from(buffer, n)
            pos += n
    finally:
        os.close(fd)


async def catch_up_hash(ctx: Context, sid: str) -> Session | None:
    """Advance the running hash over every byte received without a gap."""
    loop = asyncio.get_running_loop()
    while True:
        session = await ctx.sessions.get(sid, ctx.clock())
        if session is None or session.hash_state is None or session.state == "complete":
            return session
        if hashfeed.active(sid) is not None:
            return session  # the feed leads; it schedules a catch-up when it stops
        start, limit = session.hashed_upto, session.hashable_end()
        if limit <= start:
            return session
        end = min(limit, start + HASH_STEP_BYTES)
        state = await loop.run_in_executor(
            None, hash_region, ctx.sessions.staging_path(sid), start, end, session.hash_state)
        # Lost the race: someone else moved the hash on; look again (their
        # progress bounds the loop), unless nothing moved at all.
        if not await ctx.sessions.advance_hash(sid, start, end, state):
            latest = await ctx.sessions.get(sid, ctx.clock())
            if latest is None or latest.hashed_upto == session.hashed_upto:
                return latest


def schedule_hash_catch_up(ctx: Context, sid: str) -> None:
    """In the background, one per session per process; a failure here only
    means the commit hashes more itself."""
    running = _catching_up.get(sid)
    if running is not None and not running.done():
        return

    async def run() -> None:
        try:
            await catch_up_hash(ctx, sid)
        except Exception:  # noqa: BLE001 - best effort by design
            pass
        finally:
            _catching_up.pop(sid, None)

    _catching_up[sid] = ctx.background(run())


async def final_digest(ctx: Context, session: Session) -> str:
    """The session's sha256 once every byte is in: what the running hash
    has not covered yet is hashed now."""
    feed = hashfeed.active(session.id)
    if feed is not None:
        await feed.drained()
        feed.close()  # every byte is in; what the feed did not take, the catch-up does
    running = _catching_up.get(session.id)
    if running is not None:
        await asyncio.shield(running)  # it never raises; then little is left to hash
    if RESUMABLE_HASH:
        caught = await catch_up_hash(ctx, session.id) or session
        if caught.hashed_upto == (caught.size or 0) and caught.hash_state is not None:
            return ResumableSha256(caught.hash_state).digest().hex()
    # No resumable state: one full read of the staging file.
    return await asyncio.get_running_loop().run_in_executor(None, sha256_file, ctx.sessions.staging_path(session.id))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_READ_BYTES):
            h.update(chunk)
    return h.hexdigest()
