"""A session's running SHA-256 fed in this process by the requests that
bring its bytes, in order, as they arrive.

Owns: one `HashFeed` per session per process: a thread of its own hashing
batches in offset order (while they are still in the CPU cache, and without
reading them back from the staging file), the line that parallel chunks
form to take their turn, taking into the hash the bytes other requests of
this process received without feeding it (read from the staging file), and
saving the state at each accepted end, in order. Must not: parse requests
or decide what a session has received (the handlers say so).

Why a line: SHA-256 runs ~340-390 MB/s here, below what four connections
deliver. Chunks received ahead of the hash must be read back from the file
later, which cost the hash a tenth of its speed on a 2-core machine
(1 GiB, 8 MiB chunks, 4 curl connections: ~290 MB/s, 0.77x our PUT; in
line, ~330 MB/s). So while the hash sets the pace (it has bytes waiting, or
its feeder had to wait for it lately), a chunk whose predecessors are all
on their way waits for its turn before reading its body. When the network
is the slower part, the hash has nothing waiting and chunks are received in
parallel as they come; the feed takes them in from the file.

A request answered before the hash covers its bytes: the state at its end
is saved only once it is accepted (written, synced, recorded), after every
earlier end. A request that fails after feeding breaks the feed: nothing
after the last saved state is saved here, and `sessionhash`'s catch-up goes
on from there, from the file, as it does for bytes another worker received.
"""

from __future__ import annotations

import asyncio
import collections
import errno
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from ..protocol.sha256state import AVAILABLE as RESUMABLE_HASH
from ..protocol.sha256state import ResumableSha256
from .backends import Backends
from .filehash import update_from_file
from .state import Session

# Bytes waiting for the feed's thread before the request feeding it waits
# (as a PUT's writer bounds its queue): memory stays flat, per upload. 16 MiB
# was no faster (tus and 4-connection sessions 0.93x our PUT either way) and
# held ~14 MiB more per upload.
FEED_QUEUE_BYTES = 4 << 20
# The feeder waited for the hash this recently: the hash sets the pace.
FEED_BUSY_S = 0.5
# How far ahead of the hash a request may line up.
LINE_BYTES = 64 << 20
# Longest a request waits for its turn, and for a gap before it to be
# claimed by a request on its way (requests arrive in any order).
TURN_WAIT_S = 10.0
GAP_WAIT_S = 0.05
# An idle feed stays this long for the next request of the same client.
FEED_IDLE_S = 2.0
# Longest a commit waits for the feed's saves (a request that never
# settles) before it gives the feed up.
DRAIN_WAIT_S = 60.0


class _Mark(NamedTuple):
    """The state at `end`, to save once `accepted` says True."""

    end: int
    snapshot: asyncio.Future[bytes]
    accepted: asyncio.Future[bool]


class HashFeed:
    def __init__(self, ctx: Backends, sid: str, upto: int, state: bytes,
                 on_close: Callable[[str], None] | None = None) -> None:
        self.ctx, self.sid = ctx, sid
        self._on_close = on_close
        self.path = ctx.tree.session_staging_path(sid)
        self.fed = upto  # bytes handed to the thread
        self.saved = upto  # bytes the saved state covers
        self.feeding_end: int | None = None  # the end of the request feeding now
        self.broken = False
        self.coming: dict[int, int] = {}  # start -> end of this process's requests on their way
        self.received: dict[int, int] = {}  # start -> end received without feeding, not yet taken in
        self._turn = asyncio.Event()
        self._hash = ResumableSha256(state)
        self._failed = False  # a job on the thread failed: the hash is no longer whole
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="xfer-feed")
        self._queued: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._queued_bytes = 0
        self._waited_at = float("-inf")
        self._marks: collections.deque[_Mark] = collections.deque()
        self._saver: asyncio.Future[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    # -- the request feeding it --------------------------------------------

    async def submit(self, batch: list[bytes]) -> None:
        """The next bytes, in order."""
        if self.broken:
            return
        loop = asyncio.get_running_loop()
        while self._queued and self._queued_bytes >= FEED_QUEUE_BYTES:
            self._waited_at = loop.time()
            nbytes, done = self._queued.popleft()
            self._queued_bytes -= nbytes
            await done
        nbytes = sum(len(piece) for piece in batch)
        self._queued.append((nbytes, loop.run_in_executor(self._thread, self._update, batch)))
        self._queued_bytes += nbytes
        self.fed += nbytes

    def done_feeding(self, end: int) -> None:
        """The feeding request has submitted all its bytes (up to `end`)."""
        self.feeding_end = None
        if not self.broken:
            if end == self.fed:
                self._mark(end, asyncio.get_running_loop().create_future())
            else:
                self.abandon()
        self._take_in_received()
        self._notify()

    def settle(self, start: int, end: int, accepted: bool, fed: bool) -> None:
        """A request for [start, end) is over; `fed` if it fed the hash."""
        self.coming.pop(start, None)
        if fed:
            for mark in self._marks:
                if mark.end == end and not mark.accepted.done():
                    # Earlier ends are still saved once accepted; the saver
                    # stops at this one if it failed.
                    mark.accepted.set_result(accepted)
                    break
            else:
                self.abandon()  # no state taken at its end: it fed other bytes than it claims
            if not accepted:
                self.abandon()
        elif accepted and end > self.fed:
            self.received[start] = end
            self._take_in_received()
        self._notify()
        self._maybe_close()

    # -- the line ----------------------------------------------------------

    def hash_bound(self) -> bool:
        while self._queued and self._queued[0][1].done():
            self._queued_bytes -= self._queued.popleft()[0]
        return self._queued_bytes > 0 or asyncio.get_running_loop().time() - self._waited_at < FEED_BUSY_S

    def _covered(self, offset: int) -> bool:
        """Whether requests on their way (or received) fill [fed, offset)."""
        pos = self.feeding_end if self.feeding_end is not None else self.fed
        while pos < offset:
            nxt = self.coming.get(pos) or self.received.get(pos)
            if nxt is None:
                return False
            pos = nxt
        return pos == offset

    def my_turn(self, offset: int) -> bool:
        return not self.broken and self.feeding_end is None and self.fed == offset

    async def wait_turn(self, offset: int) -> bool:
        """Wait until the bytes before `offset` are fed: False if the wait
        runs out, the feed breaks, the hash stops setting the pace, or
        nobody here brings the bytes of a gap before `offset` (for
        GAP_WAIT_S: requests arrive in any order)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TURN_WAIT_S
        uncovered_since: float | None = None
        while not self.broken and _feeds.get(self.sid) is self:
            if self.my_turn(offset):
                return True
            now = loop.time()
            if self._covered(offset):
                uncovered_since, timeout = None, deadline - now
            else:
                uncovered_since = now if uncovered_since is None else uncovered_since
                timeout = min(deadline, uncovered_since + GAP_WAIT_S) - now
            if timeout <= 0:
                return False
            try:
                await asyncio.wait_for(self._turn.wait(), min(timeout, FEED_BUSY_S / 2))
            except asyncio.TimeoutError:
                if not self.hash_bound():
                    return False  # the feeder's client slowed down: no point waiting for the hash
        return False

    # -- hashing and saving ------------------------------------------------

    def _update(self, batch: list[bytes]) -> None:
        for piece in batch:
            self._hash.update(piece)

    def _update_from_file(self, start: int, end: int) -> None:
        try:
            update_from_file(self._hash, self.path, start, end)
        except BaseException:
            self._failed = True  # the hash holds part of [start, end): no state after this is good
            raise

    def _state(self) -> bytes:
        """The thread's state now (after every job queued before this one)."""
        if self._failed:
            raise OSError(errno.EIO, "the running hash missed bytes")
        return self._hash.state()

    def _take_in_received(self) -> None:
        """Bytes received here without feeding that the hash has reached."""
        loop = asyncio.get_running_loop()
        while not self.broken and self.feeding_end is None and self.fed in self.received:
            end = self.received.pop(self.fed)
            read = loop.run_in_executor(self._thread, self._update_from_file, self.fed, end)
            read.add_done_callback(lambda f: f.cancelled() or f.exception())  # the next state reports it
            self._queued.append((0, read))
            self.fed = end
            accepted = loop.create_future()
            accepted.set_result(True)
            self._mark(end, accepted)

    def _mark(self, end: int, accepted: asyncio.Future[bool]) -> None:
        snapshot = asyncio.get_running_loop().run_in_executor(self._thread, self._state)
        self._marks.append(_Mark(end, snapshot, accepted))
        if self._saver is None or self._saver.done():
            self._saver = self.ctx.background(self._save_marks())

    async def _save_marks(self) -> None:
        """Save each mark's state in order, once it is accepted; stop at the
        first that is not (what comes after it cannot be saved either)."""
        while self._marks:
            mark = self._marks[0]
            try:
                ok = await mark.accepted and await self.ctx.sessions.advance_hash(
                    self.sid, self.saved, mark.end, await mark.snapshot)
            except Exception:  # noqa: BLE001 - the catch-up takes over from the saved state
                ok = False
            if not ok:
                self.abandon()
                self._marks.clear()
                break
            self.saved = mark.end
            self._marks.popleft()
            self._notify()
        self._maybe_close()

    async def drained(self) -> None:
        """Every accepted byte fed or taken in here is saved, or the feed
        is given up after DRAIN_WAIT_S (the catch-up then does the rest)."""
        try:
            while self._saver is not None and not self._saver.done():
                await asyncio.wait_for(asyncio.shield(self._saver), DRAIN_WAIT_S)
        except asyncio.TimeoutError:
            self.abandon()

    # -- lifetime ----------------------------------------------------------

    def abandon(self) -> None:
        """Bytes were fed that will not be accepted: hash and save nothing
        more here."""
        if self.broken:
            return
        self.broken = True
        self.close()

    def _idle(self) -> bool:
        return self.feeding_end is None and not self.coming and not self._marks

    def _maybe_close(self) -> None:
        """Close once idle for FEED_IDLE_S: the next request of a client
        sending in order finds the feed where its bytes start, where the
        session it read a moment ago may not show the last save yet."""
        if self._idle() and self._idle_timer is None and _feeds.get(self.sid) is self:
            self._idle_timer = asyncio.get_running_loop().call_later(FEED_IDLE_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._idle_timer = None
        if self._idle():
            self.close()

    def touch(self) -> None:
        """A request came: the feed is not idle."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def close(self) -> None:
        self.touch()
        if _feeds.get(self.sid) is self:
            del _feeds[self.sid]
            self._thread.shutdown(wait=False)
            self._notify()
            # Bytes beyond what the feed took in (another worker's, a gap
            # that closed later) are the catch-up's (sessionhash).
            if self._on_close is not None:
                self._on_close(self.sid)

    def _notify(self) -> None:
        turn, self._turn = self._turn, asyncio.Event()
        turn.set()


_feeds: dict[str, HashFeed] = {}


def active(sid: str) -> HashFeed | None:
    return _feeds.get(sid)


async def claim(ctx: Backends, session: Session, start: int, end: int, *, line_up: bool,
                on_close: Callable[[str], None] | None = None) -> HashFeed | None:
    """Announce a request for [start, end) and, if it can feed the hash as
    its bytes arrive, return the feed it must feed (then `done_feeding`),
    after waiting for its turn when `line_up`. Either way the request must
    call `release` when it is over."""
    if not RESUMABLE_HASH or session.hash_state is None or end <= start:
        return None
    feed = _feeds.get(session.id)
    if feed is None:
        if session.hashed_upto != start:
            return None
        feed = _feeds[session.id] = HashFeed(ctx, session.id, start, session.hash_state, on_close)
    if feed.broken:
        return None
    feed.touch()
    feed.coming[start] = end
    if not feed.my_turn(start):
        behind = 0 < start - feed.fed <= LINE_BYTES
        if not (line_up and behind and feed.hash_bound() and await feed.wait_turn(start)):
            return None
    feed.coming.pop(start, None)
    feed.feeding_end = end
    return feed


def release(session_id: str, feed: HashFeed | None, start: int, end: int, accepted: bool) -> None:
    """The request for [start, end) is over, its bytes `accepted` or not."""
    current = feed or _feeds.get(session_id)
    if current is None:
        return
    if feed is not None and feed.feeding_end == end:
        feed.feeding_end = None  # failed before it was done feeding
        feed.abandon()
        return
    current.settle(start, end, accepted, fed=feed is not None)
