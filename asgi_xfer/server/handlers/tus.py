"""`/tus/`: the tus 1.0.0 server on the shared session store.

Rules come from `tus` (pure); state from `sessions`; bytes through
`staging.BatchWriter` into the session's staging file; commits through
`committer`. One request writes an upload at a time: a whole-file
open-file-description lock, which a newer request may take over from a
stale one (a PATCH whose client vanished without the server noticing), in
any worker process: it asks through the database, and the holder, checking
every `TAKEOVER_CHECK_S`, saves what it has and lets go.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from ...protocol import tus
from ...protocol.conditional import format_http_date
from ...protocol.digests import Hashers
from ...protocol.errors import (
    BadRequest,
    Conflict,
    InsufficientStorage,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    XferError,
)
from ...protocol.paths import RelPath, parse_rel_path, sanitize_filename
from ...protocol.sha256state import AVAILABLE as RESUMABLE_HASH
from ...protocol.sha256state import ResumableSha256
from ...storage import committer, hashfeed, sessionhash
from ...storage.filelocks import lock_region, try_lock_region
from ...storage.staging import BatchWriter
from ...storage.state import COMPLETE, OPEN, WON, Session
from ..context import Context
from ..exchange import ClientDisconnected, Exchange
from .chunked import owner_of

# How long a new request waits for a stale writer to let go of an upload.
TAKEOVER_WAIT_S = 10.0
# How often a PATCH looks whether a newer request wants the upload: a
# database read each time, so not on every chunk.
TAKEOVER_CHECK_S = 0.5
UPLOAD_METHODS = ["HEAD", "PATCH", "DELETE", "OPTIONS"]


def set_response_headers(ex: Exchange) -> None:
    """Tus-Resumable and CORS on every response of the route, the app's own
    401/405 included: a browser client can read no status without them."""
    ex.extra_headers = tus.response_headers(ex.headers.get("origin"))


def _prepare(ex: Exchange) -> None:
    set_response_headers(ex)
    tus.check_version(ex.method, ex.headers)


def _location(ex: Exchange, sid: str) -> str:
    return f"{ex.scope.get('root_path') or ''}/tus/{sid}"


def _upload_id(tail: str) -> str:
    if not tail or "/" in tail:
        raise NotFound(f"no upload at /tus/{tail}")
    return tail


async def _tus_session(ctx: Context, sid: str) -> Session:
    session = await ctx.sessions.get(sid, None)
    if session is None or session.kind != "tus":
        raise NotFound(f"no upload {sid}")
    if session.expires <= ctx.clock():
        raise tus.Gone(f"upload {sid} has expired")
    return session


def _target(meta: dict[str, str], sid: str) -> RelPath:
    """Where the finished upload goes: metadata `path`, else `filename`, else its id."""
    if meta.get("path"):
        rel = parse_rel_path(meta["path"])
        if rel.trailing_slash or not rel.segments:
            raise BadRequest("metadata 'path' must name a file")
        return rel
    return RelPath((sanitize_filename(meta["filename"]) if meta.get("filename") else sid,), False)


async def options(ctx: Context, ex: Exchange, tail: str) -> None:
    origin = ex.headers.get("origin")
    ex.extra_headers = tus.response_headers(origin)
    await ex.respond(204, tus.options_headers(ctx.settings.max_upload_bytes, origin))


async def create(ctx: Context, ex: Exchange, tail: str) -> None:
    _prepare(ex)
    if tail:
        raise MethodNotAllowed(UPLOAD_METHODS)
    concat = tus.parse_concat(ex.headers.get("upload-concat"))
    meta = tus.parse_metadata(ex.headers.get("upload-metadata"))
    max_size = ctx.settings.max_upload_bytes
    metadata: dict[str, Any] = {"meta": meta, "concat": concat.kind, "concat_header": concat.header}
    now = ctx.clock()
    if concat.kind == "final":
        session = await _create_final(ctx, ex, concat, metadata, max_size)
    else:
        length = tus.parse_creation_length(ex.headers, max_size)
        if length.value and length.value > ctx.tree.free_bytes():
            raise InsufficientStorage(f"not enough disk space for {length.value} bytes")
        session = await ctx.sessions.create(
            kind="tus", path="", size=length.value, chunk_size=0, sha256=None, owner=owner_of(ex), now=now,
            metadata=metadata, hash_state=ResumableSha256().state() if RESUMABLE_HASH else None)
        path = _target(meta, session.id).text if concat.kind is None else ""
        try:
            await committer.allocate_staging(ctx.tree.session_staging_path(session.id), length.value or 0)
        except XferError:
            await ctx.sessions.delete(session.id)
            raise
        session = await _with_path(ctx, session, path)
    headers = [("location", _location(ex, session.id)), ("upload-expires", format_http_date(session.expires))]
    if ex.headers.get("content-type", "").split(";")[0].strip().lower() == tus.OFFSET_CONTENT_TYPE and concat.kind != "final":
        # creation-with-upload: the body is the first PATCH, at offset 0.
        offset = await _locked_append(ctx, ex, session.id, lambda s: 0)
        headers.append(("upload-offset", str(offset)))
    elif concat.kind != "final" and session.size == 0:
        # Fix: an empty upload is finished at creation (as tusd does): no
        # PATCH ever comes for it (tus-js-client sends none for an empty
        # file), so it was never committed and an empty partial kept its
        # final waiting forever.
        await _finish(ctx, session.id)
    await ex.respond(201, [*headers, ("content-length", "0")])


async def _with_path(ctx: Context, session: Session, path: str) -> Session:
    await ctx.sessions.set_path(session.id, path)
    refreshed = await ctx.sessions.get(session.id, None)
    assert refreshed is not None
    return refreshed


async def _create_final(ctx: Context, ex: Exchange, concat: tus.Concat, metadata: dict[str, Any], max_size: int) -> Session:
    total = 0
    for pid in concat.parts:
        part = await ctx.sessions.get(pid, ctx.clock())
        if part is None or part.kind != "tus" or part.metadata.get("concat") != "partial":
            raise BadRequest(f"{pid} is not a partial upload of this server")
        if part.size is None:
            raise BadRequest(f"partial upload {pid} has no length yet")
        total += part.size
    if total > max_size:
        raise PayloadTooLarge(f"the concatenation exceeds Tus-Max-Size {max_size}")
    metadata["parts"] = list(concat.parts)
    session = await ctx.sessions.create(
        kind="tus", path="", size=total, chunk_size=0, sha256=None, owner=owner_of(ex), now=ctx.clock(), metadata=metadata)
    session = await _with_path(ctx, session, _target(metadata["meta"], session.id).text)
    await _try_assemble(ctx, session.id)
    return session


async def _try_assemble(ctx: Context, final_id: str) -> None:
    """Build a final upload once every partial is complete (now, or when the
    last partial finishes: concatenation-unfinished)."""
    final = await ctx.sessions.get(final_id, ctx.clock())
    if final is None or final.state != OPEN:
        return
    parts = [await ctx.sessions.get(pid, ctx.clock()) for pid in final.metadata["parts"]]
    if any(p is None or p.state != COMPLETE for p in parts):
        return
    staging = ctx.tree.session_staging_path(final_id)
    await _commit_as_file(ctx, final, staging, lambda: committer.concatenate(
        [ctx.tree.session_staging_path(p.id) for p in parts if p], staging))


async def _commit_as_file(ctx: Context, session: Session, staging: str, digest_of: Callable[[], Awaitable[str]]) -> None:
    """If this request wins the commit claim, put the staging file into the
    tree at the session's path; on any failure the claim is released."""
    if await ctx.sessions.begin_commit(session.id, ctx.clock()) != WON:
        return
    try:
        digest = await digest_of()
        result = await committer.commit_new_file(ctx, session, staging, parse_rel_path(session.path), digest)
        await ctx.sessions.finish_commit(session.id, result, ctx.clock())
    except BaseException:
        await asyncio.shield(ctx.sessions.abort_commit(session.id, ctx.clock()))
        raise


async def head(ctx: Context, ex: Exchange, tail: str) -> None:
    _prepare(ex)
    session = await _tus_session(ctx, _upload_id(tail))
    is_final = session.metadata.get("concat") == "final"
    if session.state == OPEN and not is_final:
        session = await _settled(ctx, session)
    headers = [("cache-control", "no-store"), ("upload-expires", format_http_date(session.expires))]
    meta = session.metadata.get("meta") or {}
    if meta:
        headers.append(("upload-metadata", tus.format_metadata(meta)))
    if session.metadata.get("concat_header"):
        headers.append(("upload-concat", session.metadata["concat_header"]))
    if session.size is None:
        headers.append(("upload-defer-length", "1"))
    else:
        headers.append(("upload-length", str(session.size)))
    if not is_final:
        headers.append(("upload-offset", str(session.offset)))
    elif session.state == COMPLETE:
        headers.append(("upload-offset", str(session.size)))  # §concatenation: only once finished
    await ex.respond(200, [*headers, ("content-length", "0")])


async def _settled(ctx: Context, session: Session) -> Session:
    """The upload as it stands once no other request is writing it: a stale
    PATCH is asked to stop first, so the offset reported is final."""
    try:
        fd = os.open(ctx.tree.session_staging_path(session.id), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return session
    try:
        await _acquire(ctx, fd, session.id)
        return await _tus_session(ctx, session.id)
    finally:
        os.close(fd)


async def _acquire(ctx: Context, fd: int, sid: str) -> None:
    if try_lock_region(fd, 0, 0):
        return
    await ctx.sessions.request_takeover(sid, ctx.clock())
    if not await lock_region(fd, 0, 0, TAKEOVER_WAIT_S):
        raise Conflict(f"upload {sid} is being written by another request")


async def patch(ctx: Context, ex: Exchange, tail: str) -> None:
    _prepare(ex)
    sid = _upload_id(tail)
    session = await _tus_session(ctx, sid)
    if session.state != OPEN or session.metadata.get("concat") == "final":
        tus.check_patch(ex.headers, session.size if session.size is not None else session.offset,
                        session.metadata.get("concat") == "final")
        offset = session.size or session.offset  # complete: an empty PATCH at the end is fine
    else:
        offset = await _locked_append(ctx, ex, sid, lambda s: tus.check_patch(ex.headers, s.offset, False))
    session = await _tus_session(ctx, sid)
    await ex.respond(204, [("upload-offset", str(offset)), ("upload-expires", format_http_date(session.expires))])


async def _locked_append(ctx: Context, ex: Exchange, sid: str, check: Any) -> int:
    try:
        fd = os.open(ctx.tree.session_staging_path(sid), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"no upload {sid}") from None
    try:
        await _acquire(ctx, fd, sid)
        session = await _tus_session(ctx, sid)  # as it is now that we hold it
        offset = check(session)
        session = await _apply_deferred_length(ctx, ex, session, offset)
        return await _append(ctx, ex, fd, session, offset)
    finally:
        os.close(fd)  # releases the lock


async def _apply_deferred_length(ctx: Context, ex: Exchange, session: Session, offset: int) -> Session:
    length = tus.parse_non_negative(ex.headers.get("upload-length"), "Upload-Length")
    if length is None:
        return session
    if session.size is not None:
        if length != session.size:
            raise BadRequest("Upload-Length cannot change once set")
        return session
    if length < offset or length > ctx.settings.max_upload_bytes:
        raise BadRequest(f"Upload-Length {length} is below the offset or above Tus-Max-Size")
    await ctx.sessions.set_length(session.id, length)
    return await _tus_session(ctx, session.id)


async def _append(ctx: Context, ex: Exchange, fd: int, session: Session, offset: int) -> int:
    """Write the body at `offset`; keep every byte that arrived, even from an
    interrupted request (tus: servers SHOULD), unless a checksum was promised."""
    checksum = tus.parse_checksum(ex.headers.get("upload-checksum"))
    limit = session.size if session.size is not None else ctx.settings.max_upload_bytes
    # The whole-file SHA-256 is fed as the bytes arrive and not waited for:
    # a tus client sends its next PATCH only after this one's 204, and a reply
    # that waited for the hash left it idle between PATCHes (8 MiB PATCHes:
    # 0.56-0.71x our PUT). Partials are hashed when concatenated.
    hashed = session.metadata.get("concat") != "partial"
    feed = await sessionhash.claim_feed(ctx, session, offset, limit, line_up=False) if hashed else None
    accepted = None
    try:
        writer = BatchWriter(fd, offset, Hashers([checksum[0]] if checksum else []), f"upload {session.id}", feed=feed)
        stop = await _receive(ctx, ex, writer, session.id, limit - offset)
        await writer.finish()
        received = writer.written
        if checksum is not None:
            if stop is not None:
                raise stop  # a partial chunk cannot be checked: discard it
            if writer.hashers.digests()[checksum[0]] != checksum[1]:
                raise tus.TusChecksumMismatch("the chunk does not match its Upload-Checksum; it was discarded")
        new_offset = offset + received
        if received:
            await asyncio.get_running_loop().run_in_executor(None, os.fdatasync, fd)
            if not await ctx.sessions.advance_offset(session.id, offset, new_offset, ctx.clock()):
                raise Conflict(f"upload {session.id} changed while this request wrote it")
        accepted = new_offset
    finally:
        hashfeed.release(session.id, feed, offset, accepted if accepted is not None else limit, accepted is not None)
        if feed is None and accepted is not None and accepted > offset and hashed:
            sessionhash.schedule_hash_catch_up(ctx, session.id)
    if stop is not None:
        raise stop
    if session.size is not None and new_offset == session.size:
        await _finish(ctx, session.id)
    return new_offset


async def _receive(ctx: Context, ex: Exchange, writer: BatchWriter, sid: str, room: int) -> XferError | ClientDisconnected | None:
    """Feed the body to `writer`; return why it stopped early, if it did.

    Fix: the takeover check used to run only when a chunk arrived, so a PATCH
    whose client stalled without closing (no more body, no disconnect) held
    the upload forever and every HEAD/PATCH after it got 409. Now a watchdog
    here asks every TAKEOVER_CHECK_S while `_Pump` receives; a pump waiting
    for the client is cancelled (nothing of it is in flight), one busy
    writing stops at its next chunk. Per chunk this costs two flag writes,
    not a task, so the PATCH path stays as fast as a PUT."""
    started = ctx.clock()
    pump = _Pump(ex, writer, room)
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

    def __init__(self, ex: Exchange, writer: BatchWriter, room: int) -> None:
        self.ex, self.writer, self.room = ex, writer, room
        self.receiving = True
        self.stop = False

    async def run(self) -> XferError | ClientDisconnected | None:
        try:
            async for chunk in self.ex.iter_body():
                self.receiving = False
                if self.writer.size + len(chunk) > self.room:
                    return PayloadTooLarge("the body goes past Upload-Length")
                await self.writer.write(chunk)
                if self.stop:
                    return Conflict("a newer request took over this upload")
                self.receiving = True
        except ClientDisconnected as exc:
            return exc
        finally:
            self.receiving = False
        return None


async def _finish(ctx: Context, sid: str) -> None:
    session = await _tus_session(ctx, sid)
    if session.metadata.get("concat") == "partial":
        await ctx.sessions.mark_complete(sid, {"size": session.size}, ctx.clock())
        for final_id in await ctx.sessions.waiting_finals(sid):
            await _try_assemble(ctx, final_id)
        return
    await _commit_as_file(ctx, session, ctx.tree.session_staging_path(sid), lambda: sessionhash.final_digest(ctx, session))


async def delete(ctx: Context, ex: Exchange, tail: str) -> None:
    _prepare(ex)
    sid = _upload_id(tail)
    session = await _tus_session(ctx, sid)
    if session.state == "committing":
        raise Conflict(f"upload {sid} is being committed")
    await ctx.sessions.request_takeover(sid, ctx.clock())
    await committer.drop_session(ctx, sid)
    await ex.respond(204, [])
