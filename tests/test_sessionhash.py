"""The running hash's pacing (sessionhash.wait_for_hash) and the tus choice
of hashing a PATCH inline or behind it, without a server."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from asgi_xfer import sessionhash
from asgi_xfer.handlers import tus as tus_handler
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


@pytest.mark.skipif(not AVAILABLE, reason="no libcrypto")
@pytest.mark.parametrize(("content_length", "hashed_upto", "metadata", "inline"), [
    (None, 0, {}, True),  # unknown length: may be the whole file
    (str(tus_handler.INLINE_HASH_MIN_BYTES), 0, {}, True),
    (str(8 * MIB), 0, {}, False),  # small: answered first, hashed behind
    (None, 4 * MIB, {}, False),  # the hash is not where this PATCH starts
    (None, 0, {"concat": "partial"}, False),  # hashed when concatenated
])
def test_which_patches_hash_inline(content_length: str | None, hashed_upto: int,
                                   metadata: dict[str, str], inline: bool) -> None:
    headers = {} if content_length is None else {"content-length": content_length}
    session = _session("s", hashed_upto, hashed_upto, **metadata)
    chosen = tus_handler._inline_hash(SimpleNamespace(headers=headers), session, 0)
    assert (chosen is not None) is inline
