"""Appending a request body at an upload's contiguous offset: what tus and
the IETF resumable uploads share.

Owns: the one-writer-at-a-time lock on an upload's staging file (a
whole-file open-file-description lock, which a newer request may take over
from a stale one, in any worker process: it asks through the database, and
the holder, checking every `TAKEOVER_CHECK_S`, saves what it has and lets
go), writing the body through `staging.BatchWriter` with the running hash
fed, keeping every byte that arrived from an interrupted body (tus: servers
SHOULD; draft-ietf-httpbis-resumable-upload §4.4.2 too) unless a digest of
the body was promised, the commit of a finished upload into the tree and
cancellation. Must not: know either protocol's headers; each handler passes
its rules in as values and callbacks.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ...protocol.digests import Hashers
from ...protocol.errors import Conflict, NotFound, PayloadTooLarge, XferError
from ...protocol.paths import parse_rel_path
from ...storage import committer, hashfeed, sessionhash
from ...storage.filelocks import lock_region, try_lock_region
from ...storage.staging import BatchWriter
from ...storage.state import WON, Session
from ..context import Context
from ..exchange import ClientDisconnected, Exchange

# How long a new request waits for a stale writer to let go of an upload.
TAKEOVER_WAIT_S = 10.0
# How often an append looks whether a newer request wants the upload: a
# database read each time, so not on every chunk.
TAKEOVER_CHECK_S = 0.5

Loader = Callable[[str], Awaitable[Session]]


def upload_location(ex: Exchange, route: str, sid: str) -> str:
    """The upload resource's URL path, under wherever the app is mounted."""
    return f"{ex.scope.get('root_path') or ''}{route}{sid}"


def upload_id(route: str, tail: str) -> str:
    """The id in `{route}{id}`; anything deeper is no upload."""
    if not tail or "/" in tail:
        raise NotFound(f"no upload at {route}{tail}")
    return tail


def _past_length() -> XferError:
    return PayloadTooLarge("the body goes past the upload's length")


@dataclass(frozen=True)
class BodyRules:
    """How one request's body is taken in."""

    algorithms: tuple[str, ...] = ()  # digests computed over the body (Hashers names)
    # Raises when the body does not match what the request promised; a body
    # cut short is then discarded, since it cannot be checked.
    verify: Callable[[dict[str, bytes]], None] | None = None
    hashed: bool = True  # feed the upload's whole-file SHA-256
    too_long: Callable[[], XferError] = _past_length
    max_bytes: int | None = None  # this request's content may not be longer


async def acquire(ctx: Context, fd: int, sid: str) -> None:
    if try_lock_region(fd, 0, 0):
        return
    await ctx.sessions.request_takeover(sid, ctx.clock())
    if not await lock_region(fd, 0, 0, TAKEOVER_WAIT_S):
        raise Conflict(f"upload {sid} is being written by another request")


async def settled(ctx: Context, session: Session, load: Loader) -> Session:
    """The upload as it stands once no other request is writing it: a stale
    append is asked to stop first, so the offset reported is final."""
    try:
        fd = os.open(ctx.tree.session_staging_path(session.id), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return session
    try:
        await acquire(ctx, fd, session.id)
        return await load(session.id)
    finally:
        os.close(fd)


async def locked_append(ctx: Context, ex: Exchange, sid: str, load: Loader,
                        prepare: Callable[[Session], Awaitable[tuple[Session, int]]], rules: BodyRules,
                        done: Callable[[Session, int], Awaitable[None]]) -> int:
    """Under the upload's lock: `prepare` checks the request against the
    upload as it is now (returns it, maybe updated, and the offset to write
    at), the body is appended, and `done` runs with the new offset (to
    finish the upload) before the lock is let go."""
    try:
        fd = os.open(ctx.tree.session_staging_path(sid), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"no upload {sid}") from None
    try:
        await acquire(ctx, fd, sid)
        session, offset = await prepare(await load(sid))
        new_offset = await _append(ctx, ex, fd, session, offset, rules)
        await done(session, new_offset)
        return new_offset
    finally:
        os.close(fd)  # releases the lock


async def _append(ctx: Context, ex: Exchange, fd: int, session: Session, offset: int, rules: BodyRules) -> int:
    """Write the body at `offset`; keep every byte that arrived, even from an
    interrupted request, unless a digest of the body was promised."""
    limit = session.size if session.size is not None else ctx.settings.max_upload_bytes
    # The whole-file SHA-256 is fed as the bytes arrive and not waited for:
    # a client sends its next append only after this one's answer, and a
    # reply that waited for the hash left it idle between appends (8 MiB
    # PATCHes: 0.56-0.71x our PUT).
    feed = await sessionhash.claim_feed(ctx, session, offset, limit, line_up=False) if rules.hashed else None
    accepted = None
    try:
        writer = BatchWriter(fd, offset, Hashers(rules.algorithms), f"upload {session.id}", feed=feed)
        room = limit - offset if rules.max_bytes is None else min(limit - offset, rules.max_bytes)
        stop = await _receive(ctx, ex, writer, session.id, room, rules.too_long)
        await writer.finish()
        if rules.verify is not None:
            if stop is not None:
                raise stop  # a partial body cannot be checked: discard it
            rules.verify(writer.hashers.digests())
        new_offset = offset + writer.written
        if writer.written:
            await asyncio.get_running_loop().run_in_executor(None, os.fdatasync, fd)
            if not await ctx.sessions.advance_offset(session.id, offset, new_offset, ctx.clock()):
                raise Conflict(f"upload {session.id} changed while this request wrote it")
        accepted = new_offset
    finally:
        hashfeed.release(session.id, feed, offset, accepted if accepted is not None else limit, accepted is not None)
        if feed is None and accepted is not None and accepted > offset and rules.hashed:
            sessionhash.schedule_hash_catch_up(ctx, session.id)
    if stop is not None:
        raise stop
    return new_offset


async def _receive(ctx: Context, ex: Exchange, writer: BatchWriter, sid: str, room: int,
                   too_long: Callable[[], XferError]) -> XferError | ClientDisconnected | None:
    """Feed the body to `writer`; return why it stopped early, if it did.

    Fix: the takeover check used to run only when a chunk arrived, so an
    append whose client stalled without closing (no more body, no
    disconnect) held the upload forever and every request after it got 409.
    Now a watchdog here asks every TAKEOVER_CHECK_S while `_Pump` receives; a
    pump waiting for the client is cancelled (nothing of it is in flight),
    one busy writing stops at its next chunk. Per chunk this costs two flag
    writes, not a task, so appending stays as fast as a PUT."""
    started = ctx.clock()
    pump = _Pump(ex, writer, room, too_long)
    task = asyncio.ensure_future(pump.run())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=TAKEOVER_CHECK_S)
            if done:
                return task.result()
            if await ctx.sessions.takeover_requested(sid, started):
                if not pump.receiving:
                    pump.stop = True  # writing: it stops before its next receive
                    return await task
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return Conflict("a newer request took over this upload")
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class _Pump:
    """Receives the body into the writer; `receiving` says it waits for the
    client (safe to cancel), `stop` asks it to end before the next chunk."""

    def __init__(self, ex: Exchange, writer: BatchWriter, room: int, too_long: Callable[[], XferError]) -> None:
        self.ex, self.writer, self.room, self.too_long = ex, writer, room, too_long
        self.receiving = True
        self.stop = False

    async def run(self) -> XferError | ClientDisconnected | None:
        try:
            async for chunk in self.ex.iter_body():
                self.receiving = False
                if self.writer.size + len(chunk) > self.room:
                    return self.too_long()
                await self.writer.write(chunk)
                if self.stop:
                    return Conflict("a newer request took over this upload")
                self.receiving = True
        except ClientDisconnected as exc:
            return exc
        finally:
            self.receiving = False
        return None


async def commit_as_file(ctx: Context, session: Session, staging: str, digest_of: Callable[[], Awaitable[str]]) -> None:
    """If this request wins the commit claim, put the staging file into the
    tree at the session's path (a numbered name if taken); on any failure the
    claim is released."""
    if await ctx.sessions.begin_commit(session.id, ctx.clock()) != WON:
        return
    try:
        digest = await digest_of()
        result = await committer.commit_new_file(ctx, session, staging, parse_rel_path(session.path), digest)
        await ctx.sessions.finish_commit(session.id, result, ctx.clock())
    except BaseException:
        await asyncio.shield(ctx.sessions.abort_commit(session.id, ctx.clock()))
        raise


async def cancel(ctx: Context, session: Session) -> None:
    """Termination: a request still writing is asked to let go, then the
    session and its staging data are gone."""
    if session.state == "committing":
        raise Conflict(f"upload {session.id} is being committed")
    await ctx.sessions.request_takeover(session.id, ctx.clock())
    await committer.drop_session(ctx, session.id)
