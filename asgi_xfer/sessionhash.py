"""The whole-file SHA-256 of an upload session, kept up while it arrives.

Owns: advancing a session's saved hash state over the bytes received without
a gap (a background catch-up, one per session per process, in steps that
are recorded as they go), the final digest at commit, and the back-pressure
that keeps receiving from outrunning the hash. Must not: parse requests or
commit files.

Why back-pressure: SHA-256 runs ~340-390 MB/s here (no SHA instructions),
slower than four connections deliver chunks, and the hash is what `complete`
(or the last tus PATCH) waits for. Receiving ahead of it does not finish the
upload sooner; it only moves the wait to the end (1 GiB over 4 curl
connections: chunks in 2.2 s, then `complete` waiting 1.7 s for the hash).
So a chunk or PATCH waits before reading its body while this process's
catch-up is more than `HASH_BACKLOG_BYTES` behind: the same total time, but
`complete` answers in ~0.25 s, and a server never holds gigabytes it has not
yet verified. A PUT gets the same pacing from its writer's bounded queue.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os

from . import hashfeed
from .context import Context
from .sessions import Session
from .sha256state import AVAILABLE as RESUMABLE_HASH, ResumableSha256

# Bytes read per step when hashing from the staging file.
HASH_READ_BYTES = 4 << 20
# The catch-up records its progress after this many bytes: waiters see it
# move, and a crash loses at most this much hashing.
HASH_STEP_BYTES = 32 << 20
# Received bytes a request lets wait for the hash before it holds back its
# body (two steps: the hash thread never runs dry while requests wait).
HASH_BACKLOG_BYTES = 2 * HASH_STEP_BYTES
# Longest a request holds back for the hash: pacing, never a stall.
HASH_WAIT_S = 10.0


class _CatchUp:
    """This process's catch-up of one session: its task, how far it has
    hashed, and an event set (then replaced) each time that moves."""

    def __init__(self) -> None:
        self.task: asyncio.Future[None] | None = None
        self.upto = 0
        self.moved = asyncio.Event()

    def advanced(self, upto: int) -> None:
        self.upto = upto
        moved, self.moved = self.moved, asyncio.Event()
        moved.set()


_catching_up: dict[str, _CatchUp] = {}


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


async def catch_up_hash(ctx: Context, sid: str, progress: _CatchUp | None = None) -> Session | None:
    """Advance the running hash over every byte received without a gap."""
    loop = asyncio.get_running_loop()
    while True:
        session = await ctx.sessions.get(sid, ctx.clock())
        if session is None or session.hash_state is None or session.state == "complete":
            return session
        if progress is not None:
            progress.advanced(session.hashed_upto)
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
    if running is not None and running.task is not None and not running.task.done():
        return
    progress = _CatchUp()

    async def run() -> None:
        try:
            await catch_up_hash(ctx, sid, progress)
        except Exception:  # noqa: BLE001 - best effort by design
            pass
        finally:
            if _catching_up.get(sid) is progress:
                del _catching_up[sid]
            progress.advanced(progress.upto)  # wake any waiter: nothing more comes

    _catching_up[sid] = progress
    progress.task = ctx.background(run())


async def wait_for_hash(session: Session) -> None:
    """Hold back (before reading a body) while this process's catch-up of
    the session is more than HASH_BACKLOG_BYTES behind what it may hash."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HASH_WAIT_S
    end = session.hashable_end()
    while True:
        running = _catching_up.get(session.id)
        if running is None or running.task is None or running.task.done():
            return
        if end - max(running.upto, session.hashed_upto) <= HASH_BACKLOG_BYTES:
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(running.moved.wait(), remaining)
        except asyncio.TimeoutError:
            return


async def final_digest(ctx: Context, session: Session) -> str:
    """The session's sha256 once every byte is in: what the running hash
    has not covered yet is hashed now."""
    feed = hashfeed.active(session.id)
    if feed is not None:
        await feed.drained()
        feed.close()  # every byte is in; what the feed did not take, the catch-up does
    running = _catching_up.get(session.id)
    if running is not None and running.task is not None:
        await asyncio.shield(running.task)  # it never raises; then little is left to hash
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
