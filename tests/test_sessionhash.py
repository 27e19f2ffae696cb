"""The feed that hashes a session's bytes as requests bring them, in line
(hashfeed), without a server."""

from __future__ import annotations

import asyncio
import hashlib
import os
from types import SimpleNamespace
from typing import Any

import pytest

from asgi_xfer.storage import hashfeed
from asgi_xfer.protocol.sha256state import AVAILABLE, ResumableSha256

MIB = 1 << 20


def _session(sid: str, hashed_upto: int, received_end: int, **metadata: Any) -> Any:
    return SimpleNamespace(id=sid, hashed_upto=hashed_upto, hashable_end=lambda: received_end,
                           hash_state=ResumableSha256().state() if AVAILABLE else b"", metadata=metadata)


class _FakeSessions:
    """advance_hash as the database does it: compare-and-set on hashed_upto."""

    def __init__(self, upto: int, state: bytes, staging: str = "/nonexistent") -> None:
        self.upto, self.state, self.staging = upto, state, staging

    async def advance_hash(self, sid: str, old: int, new: int, state: bytes) -> bool:
        if old != self.upto:
            return False
        self.upto, self.state = new, state
        return True

    async def get(self, sid: str, now: float) -> None:
        return None  # the catch-up a closing feed schedules finds nothing to do

    def staging_path(self, sid: str) -> str:
        return self.staging


def _ctx(sessions: _FakeSessions) -> Any:
    return SimpleNamespace(sessions=sessions, tree=SimpleNamespace(session_staging_path=sessions.staging_path),
                           background=asyncio.ensure_future, clock=lambda: 0.0)


def _fresh(sid: str, staging: str = "/nonexistent") -> tuple[_FakeSessions, Any, Any]:
    db = _FakeSessions(0, ResumableSha256().state(), staging)
    session = _session(sid, 0, 0)
    session.hash_state = db.state
    return db, _ctx(db), session


async def _feed_request(ctx: Any, session: Any, data: bytes, start: int, end: int, *, line_up: bool = True,
                        accept: bool = True) -> Any:
    """A request for [start, end) as the handlers make one: claim, feed, release."""
    feed = await hashfeed.claim(ctx, session, start, end, line_up=line_up)
    if feed is not None:
        await feed.submit([data[start:min(start + 1000, end)], data[min(start + 1000, end):end]])
        feed.done_feeding(end)
    hashfeed.release(session.id, feed, start, end, accept)
    return feed


def _saved_digest(db: _FakeSessions) -> bytes:
    return ResumableSha256(db.state).digest()


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_feed_hashes_requests_in_order_and_saves_at_accepted_ends() -> None:
    data = os.urandom(5 * MIB + 123)
    cuts = [0, 2 * MIB, 2 * MIB + 7, 5 * MIB + 123]

    async def scenario() -> None:
        db, ctx, session = _fresh("feed-order")
        first = None
        for start, end in zip(cuts, cuts[1:]):
            # The session as a request read it before the last save: the
            # feed, still there, says where the hash stands.
            feed = await _feed_request(ctx, session, data, start, end)
            assert feed is not None and feed is (first or feed)
            first = feed
            await feed.drained()
            assert db.upto == end and _saved_digest(db) == hashlib.sha256(data[:end]).digest()
        assert hashfeed.active("feed-order") is first  # idle, it stays a while for the next request

    asyncio.run(scenario())


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_an_idle_feed_closes_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashfeed, "FEED_IDLE_S", 0.05)

    async def scenario() -> None:
        db, ctx, session = _fresh("feed-idle")
        feed = await _feed_request(ctx, session, os.urandom(MIB), 0, MIB)
        assert feed is not None
        await feed.drained()
        assert hashfeed.active("feed-idle") is feed
        await asyncio.sleep(0.2)
        assert hashfeed.active("feed-idle") is None and db.upto == MIB

    asyncio.run(scenario())


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_a_failed_request_breaks_the_feed_and_saves_nothing_of_its_bytes() -> None:
    data = os.urandom(3 * MIB)

    async def scenario() -> None:
        db, ctx, session = _fresh("feed-fail")
        first = await _feed_request(ctx, session, data, 0, MIB)
        second = await _feed_request(ctx, session, b"\0" * (2 * MIB), MIB, 2 * MIB, accept=False)
        assert second is first and first.broken  # it went on from the first, then failed
        assert hashfeed.active("feed-fail") is None
        await first.drained()
        assert db.upto == MIB and _saved_digest(db) == hashlib.sha256(data[:MIB]).digest()

    asyncio.run(scenario())


def test_no_feed_where_the_hash_does_not_stand() -> None:
    async def scenario() -> None:
        session = _session("feed-gap", 4 * MIB, 8 * MIB)
        ctx = _ctx(_FakeSessions(4 * MIB, session.hash_state))
        assert await hashfeed.claim(ctx, session, 0, MIB, line_up=True) is None
        assert await hashfeed.claim(ctx, session, 8 * MIB, 9 * MIB, line_up=True) is None
        assert hashfeed.active("feed-gap") is None

    asyncio.run(scenario())


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_parallel_chunks_line_up_while_the_hash_is_the_bottleneck() -> None:
    data = os.urandom(3 * MIB)

    async def scenario() -> None:
        db, ctx, session = _fresh("feed-line")
        first = await hashfeed.claim(ctx, session, 0, MIB, line_up=True)
        assert first is not None
        first._waited_at = asyncio.get_running_loop().time()  # as if the hash thread had been full
        third = asyncio.ensure_future(hashfeed.claim(ctx, session, 2 * MIB, 3 * MIB, line_up=True))
        await asyncio.sleep(0.01)  # arrives before the second: waits for the gap to be claimed
        second = asyncio.ensure_future(hashfeed.claim(ctx, session, MIB, 2 * MIB, line_up=True))
        await asyncio.sleep(0.1)
        assert not second.done() and not third.done()
        await first.submit([data[:MIB]])
        first.done_feeding(MIB)
        assert await asyncio.wait_for(second, 1) is first and not third.done()
        await first.submit([data[MIB:2 * MIB]])
        first.done_feeding(2 * MIB)
        assert await asyncio.wait_for(third, 1) is first
        await first.submit([data[2 * MIB:]])
        first.done_feeding(3 * MIB)
        for start in (MIB, 0, 2 * MIB):  # accepted in any order; saved in order
            hashfeed.release("feed-line", first, start, start + MIB, True)
        await first.drained()
        assert db.upto == 3 * MIB and _saved_digest(db) == hashlib.sha256(data).digest()

    asyncio.run(scenario())


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_chunks_received_without_the_feed_are_taken_in_from_the_file(tmp_path: Any) -> None:
    data = os.urandom(3 * MIB)
    staging = tmp_path / "staging.part"
    staging.write_bytes(data)

    async def scenario() -> None:
        db, ctx, session = _fresh("feed-file", str(staging))
        first = await hashfeed.claim(ctx, session, 0, MIB, line_up=True)
        assert first is not None
        # The hash keeps up: the next chunk is received at once, without the feed.
        assert await asyncio.wait_for(_feed_request(ctx, session, data, MIB, 2 * MIB), 1) is None
        await first.submit([data[:MIB]])
        first.done_feeding(MIB)
        hashfeed.release("feed-file", first, 0, MIB, True)
        third = await _feed_request(ctx, session, data, 2 * MIB, 3 * MIB)  # the feed stands there again
        assert third is first
        await first.drained()
        assert db.upto == 3 * MIB and _saved_digest(db) == hashlib.sha256(data).digest()

    asyncio.run(scenario())


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_the_line_breaks_up_when_a_request_fails() -> None:
    async def scenario() -> None:
        _, ctx, session = _fresh("feed-break")
        first = await hashfeed.claim(ctx, session, 0, MIB, line_up=True)
        assert first is not None
        first._waited_at = asyncio.get_running_loop().time()
        second = asyncio.ensure_future(hashfeed.claim(ctx, session, MIB, 2 * MIB, line_up=True))
        third = asyncio.ensure_future(hashfeed.claim(ctx, session, 2 * MIB, 3 * MIB, line_up=True))
        await asyncio.sleep(0.1)
        hashfeed.release("feed-break", first, 0, MIB, False)  # the first chunk failed while feeding
        assert await asyncio.wait_for(second, 1) is None
        assert await asyncio.wait_for(third, 1) is None
        assert hashfeed.active("feed-break") is None

    asyncio.run(scenario())


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_a_failed_read_of_the_staging_file_saves_no_state_after_it(tmp_path: Any) -> None:
    data = os.urandom(2 * MIB)

    async def scenario() -> None:
        db, ctx, session = _fresh("feed-read-fails", str(tmp_path / "gone.part"))
        first = await hashfeed.claim(ctx, session, 0, MIB, line_up=True)
        assert first is not None
        assert await _feed_request(ctx, session, data, MIB, 2 * MIB) is None  # received without the feed
        await first.submit([data[:MIB]])
        first.done_feeding(MIB)  # the hash goes on into [1 MiB, 2 MiB) from the file, which is gone
        hashfeed.release("feed-read-fails", first, 0, MIB, True)
        await first.drained()
        assert first.broken
        assert db.upto == MIB and _saved_digest(db) == hashlib.sha256(data[:MIB]).digest()

    asyncio.run(scenario())


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_the_line_breaks_up_when_the_feeder_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashfeed, "FEED_BUSY_S", 0.2)

    async def scenario() -> None:
        _, ctx, session = _fresh("feed-stall")
        first = await hashfeed.claim(ctx, session, 0, MIB, line_up=True)
        assert first is not None
        first._waited_at = asyncio.get_running_loop().time()
        second = asyncio.ensure_future(hashfeed.claim(ctx, session, MIB, 2 * MIB, line_up=True))
        # The first request's client sends nothing more: once the hash has had
        # nothing to do for FEED_BUSY_S, the second is received in parallel.
        assert await asyncio.wait_for(second, 2) is None
        hashfeed.release("feed-stall", None, MIB, 2 * MIB, False)
        hashfeed.release("feed-stall", first, 0, MIB, False)

    asyncio.run(scenario())
