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
from collections.abc import Callable

from ..protocol.sha256state import AVAILABLE as RESUMABLE_HASH
from ..protocol.sha256state import ResumableSha256
from . import hashfeed
from .backends import Backends
from .filehash import hash_region, sha256_file
from .state import Session

# The catch-up records its progress after this many bytes: a crash loses
# at most this much hashing.
HASH_STEP_BYTES = 32 << 20


# Background catch-ups running in this process, by session.
_catching_up: dict[str, asyncio.Future[None]] = {}


async def catch_up_hash(ctx: Backends, sid: str) -> Session | None:
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
            None, hash_region, ctx.tree.session_staging_path(sid), start, end, session.hash_state)
        # Lost the race: someone else moved the hash on; look again (their
        # progress bounds the loop), unless nothing moved at all.
        if not await ctx.sessions.advance_hash(sid, start, end, state):
            latest = await ctx.sessions.get(sid, ctx.clock())
            if latest is None or latest.hashed_upto == session.hashed_upto:
                return latest


def schedule_hash_catch_up(ctx: Backends, sid: str) -> None:
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


async def claim_feed(ctx: Backends, session: Session, start: int, end: int, *, line_up: bool) -> hashfeed.HashFeed | None:
    """`hashfeed.claim` for a request's bytes; bytes the feed does not take
    in before it closes are this module's catch-up's."""
    on_close: Callable[[str], None] = lambda sid: schedule_hash_catch_up(ctx, sid)
    return await hashfeed.claim(ctx, session, start, end, line_up=line_up, on_close=on_close)


async def final_digest(ctx: Backends, session: Session) -> str:
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
    return await asyncio.get_running_loop().run_in_executor(None, sha256_file, ctx.tree.session_staging_path(session.id))
