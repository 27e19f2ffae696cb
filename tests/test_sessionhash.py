"""The running hash of a session without a server: pacing (wait_for_hash)
and the feed that hashes requests' bytes as they arrive (claim_feed)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from types import SimpleNamespace
from typing import Any

import pytest

from asgi_xfer import sessionhash
from asgi_xfer.sha256state import AVAILABLE, ResumableSha256

MIB = 1 << 20


def _session(sid: str, hashed_upto: int, received_end: int, **metadata: Any) -> Any:
    return SimpleNamespace(id=sid, hashed_upto=hashed_upto, hashable_end=lambda: received_end,
                           hash_state=ResumableSha256().state() if AVAILABLE else b"", metadata=metadata)


def _running(sid: str, upto: int) -> tuple[Any, asyncio.Future[None]]:
    progress = sessionhash._CatchUp()
    progress.upto = upto
    progress.task = asyncio.get_running_loop().create_future()
    sessionhash._catching_up[sid] = progress
    return progress, progress.task


def test_a_request_waits_while_the_hash_is_far_behind() -> None:
    async def scenario() -> None:
        sid = "far-behind"
        progress, task = _running(sid, 0)
        try:
            session = _session(sid, 0, sessionhash.HASH_BACKLOG_BYTES + 8 * MIB)
            waiter = asyncio.ensure_future(sessionhash.wait_for_hash(session))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            progress.advanced(4 * MIB)  # still more than the backlog behind
            await asyncio.sleep(0.05)
            assert not waiter.done()
            progress.advanced(8 * MIB)  # now within it
            await asyncio.wait_for(waiter, 1)
        finally:
            task.cancel()
            sessionhash._catching_up.pop(sid, None)

    asyncio.run(scenario())


def test_no_wait_when_close_behind_or_no_catch_up_runs() -> None:
    async def scenario() -> None:
        await asyncio.wait_for(sessionhash.wait_for_hash(_session("none-running", 0, 10 << 30)), 1)
        sid = "close-behind"
        _, task = _running(sid, 0)
        try:
            await asyncio.wait_for(sessionhash.wait_for_hash(_session(sid, 0, sessionhash.HASH_BACKLOG_BYTES)), 1)
            task.set_result(None)  # a finished catch-up never holds anyone back
            await asyncio.wait_for(sessionhash.wait_for_hash(_session(sid, 0, 10 << 30)), 1)
        finally:
            sessionhash._catching_up.pop(sid, None)

    asyncio.run(scenario())


def test_the_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessionhash, "HASH_WAIT_S", 0.1)

    async def scenario() -> None:
        sid = "stuck"
        _, task = _running(sid, 0)
        try:
            await asyncio.wait_for(sessionhash.wait_for_hash(_session(sid, 0, 10 << 30)), 2)
        finally:
            task.cancel()
            sessionhash._catching_up.pop(sid, None)

    asyncio.run(scenario())


class _FakeSessions:
    """advance_hash as the database does it: compare-and-set on hashed_upto."""

    def __init__(self, upto: int, state: bytes) -> None:
        self.upto, self.state = upto, state

    async def advance_hash(self, sid: str, old: int, new: int, state: bytes) -> bool:
        if old != self.upto:
            return False
        self.upto, self.state = new, state
        return True

    async def get(self, sid: str, now: float) -> None:
        return None  # the catch-up a save schedules finds nothing to do


def _ctx(sessions: _FakeSessions) -> Any:
    return SimpleNamespace(sessions=sessions, background=asyncio.ensure_future, clock=lambda: 0.0)


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_feed_hashes_requests_in_order_and_saves_at_accepted_ends() -> None:
    data = os.urandom(5 * MIB + 123)
    cuts = [0, 2 * MIB, 2 * MIB + 7, 5 * MIB + 123]

    async def scenario() -> None:
        db = _FakeSessions(0, ResumableSha256().state())
        ctx = _ctx(db)
        for start, end in zip(cuts, cuts[1:]):
            session = _session("feed-order", db.upto, end)
            session.hash_state = db.state
            feed = sessionhash.claim_feed(session, start)
            assert feed is not None and feed.fed == start
            assert sessionhash.claim_feed(session, start) is None  # one feeder at a time
            middle = min(start + 1000, end)
            await feed.submit([data[start:middle], data[middle:end]])
            sessionhash.release_feed(ctx, feed, end)  # answered before the hash gets there
            await feed.drained()
            assert db.upto == end
            assert ResumableSha256(db.state).digest() == hashlib.sha256(data[:end]).digest()
        assert "feed-order" not in sessionhash._feeds  # idle feeds close

    asyncio.run(scenario())


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
def test_a_failed_request_breaks_the_feed_and_saves_nothing_of_its_bytes() -> None:
    data = os.urandom(3 * MIB)

    async def scenario() -> None:
        db = _FakeSessions(0, ResumableSha256().state())
        ctx = _ctx(db)
        session = _session("feed-fail", 0, 3 * MIB)
        session.hash_state = db.state
        first = sessionhash.claim_feed(session, 0)
        assert first is not None
        await first.submit([data[:MIB]])
        sessionhash.release_feed(ctx, first, MIB)
        second = sessionhash.claim_feed(session, MIB)
        assert second is first  # still hashing the first request: the second goes on from it
        await second.submit([b"\0" * MIB])  # bytes that will not be accepted
        sessionhash.release_feed(ctx, second, None)
        assert second.broken and "feed-fail" not in sessionhash._feeds
        await first.drained()
        assert db.upto == MIB  # the accepted request's state is saved, nothing after it
        assert ResumableSha256(db.state).digest() == hashlib.sha256(data[:MIB]).digest()

    asyncio.run(scenario())


def test_no_feed_where_the_hash_does_not_stand() -> None:
    session = _session("feed-gap", 4 * MIB, 8 * MIB)
    assert sessionhash.claim_feed(session, 0) is None
    assert sessionhash.claim_feed(session, 8 * MIB) is None
    assert "feed-gap" not in sessionhash._feeds
