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
import collections
import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

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
# Bytes a feed lets wait for its hash thread before the request feeding it
# waits (as a PUT's writer bounds its queue): memory stays flat.
FEED_QUEUE_BYTES = 16 << 20


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


class HashFeed:
    """This process's running hash of one session, fed by the requests that
    bring its bytes in order, on a thread of its own.

    A request claims the feed when its bytes start where the feed (or the
    saved state) stands, submits its batches as they arrive (hashed while
    still in the CPU cache, and not read back from the file) and is answered
    without waiting for the hash: the feed saves the state at the request's
    end once it gets there, and only once the request's bytes are accepted.
    A request that fails after feeding breaks the feed; hashing then goes on
    from the last saved state by the catch-up, from the file."""

    def __init__(self, sid: str, upto: int, state: bytes) -> None:
        self.sid = sid
        self.fed = upto  # bytes submitted so far
        self.saved = upto  # bytes the saved state covers
        self.busy = False  # a request is feeding it
        self.broken = False
        self._hash = ResumableSha256(state)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="xfer-feed")
        self._queued: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._queued_bytes = 0
        self._last_save: asyncio.Future[None] | None = None

    async def submit(self, batch: list[bytes]) -> None:
        """The next bytes, in order; waits while FEED_QUEUE_BYTES wait to be
        hashed (which paces the sender to the hash, as a PUT's writer does)."""
        while self._queued and self._queued_bytes >= FEED_QUEUE_BYTES:
            nbytes, done = self._queued.popleft()
            self._queued_bytes -= nbytes
            await done
        nbytes = sum(len(piece) for piece in batch)
        self._queued.append((nbytes, asyncio.get_running_loop().run_in_executor(self._thread, self._update, batch)))
        self._queued_bytes += nbytes
        self.fed += nbytes

    def _update(self, batch: list[bytes]) -> None:
        for piece in batch:
            self._hash.update(piece)

    def accept(self, ctx: Context, end: int) -> None:
        """What was fed up to `end` is written, synced and recorded: save the
        state there once the thread has hashed it (saves stay in order)."""
        snapshot = asyncio.get_running_loop().run_in_executor(self._thread, self._hash.state)
        previous = self._last_save
        self._last_save = ctx.background(self._save(ctx, previous, snapshot, end))

    async def _save(self, ctx: Context, previous: asyncio.Future[None] | None,
                    snapshot: asyncio.Future[bytes], end: int) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            state = await snapshot
            if await ctx.sessions.advance_hash(self.sid, self.saved, end, state):
                self.saved = end
            else:
                self.abandon()
        except Exception:  # noqa: BLE001 - the catch-up takes over from the saved state
            self.abandon()
        if not self.busy and self.saved == self.fed:
            self.close()
        schedule_hash_catch_up(ctx, self.sid)  # chunks received beyond the feed, if any

    def abandon(self) -> None:
        """Bytes were fed that will not be accepted: hash nothing more here
        (saves already queued for accepted bytes still happen)."""
        self.broken = True
        self.close()

    def close(self) -> None:
        if _feeds.get(self.sid) is self:
            del _feeds[self.sid]
        self._thread.shutdown(wait=False)

    async def drained(self) -> None:
        """Every save asked for so far is done."""
        if self._last_save is not None:
            await asyncio.gather(asyncio.shield(self._last_save), return_exceptions=True)


_feeds: dict[str, HashFeed] = {}


def claim_feed(session: Session, offset: int) -> HashFeed | None:
    """The feed for bytes that start at `offset`, if they can be hashed as
    they arrive: this process's feed has reached `offset`, or none runs and
    the saved state stands there. None otherwise (the catch-up follows)."""
    if not RESUMABLE_HASH or session.hash_state is None:
        return None
    feed = _feeds.get(session.id)
    if feed is None:
        if session.hashed_upto != offset:
            return None
        feed = _feeds[session.id] = HashFeed(session.id, offset, session.hash_state)
    elif feed.busy or feed.broken or feed.fed != offset:
        return None
    feed.busy = True
    return feed


def release_feed(ctx: Context, feed: HashFeed, accepted_end: int | None) -> None:
    """The request is done feeding: its bytes up to `accepted_end` are
    accepted (None: it failed, or nothing it fed counts)."""
    feed.busy = False
    if accepted_end is None or accepted_end != feed.fed:
        feed.abandon()
        schedule_hash_catch_up(ctx, feed.sid)
    elif accepted_end != feed.saved:
        feed.accept(ctx, accepted_end)
    elif feed._last_save is None or feed._last_save.done():
        feed.close()  # fed nothing and nothing pending


def hash_region(path: str, start: int, end: int, state: bytes | None) -> bytes:
    """Resume `state` over bytes [start, end) of the file; the new state."""
    h = ResumableSha256(state)
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
    return h.state()


async def catch_up_hash(ctx: Context, sid: str, progress: _CatchUp | None = None) -> Session | None:
    """Advance the running hash over every byte received without a gap."""
    loop = asyncio.get_running_loop()
    while True:
        session = await ctx.sessions.get(sid, ctx.clock())
        if session is None or session.hash_state is None or session.state == "complete":
            return session
        if progress is not None:
            progress.advanced(session.hashed_upto)
        if sid in _feeds:
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
    feed = _feeds.get(session.id)
    if feed is not None:
        await feed.drained()
        feed.close()  # the last request has fed; whatever is left the catch-up does
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
