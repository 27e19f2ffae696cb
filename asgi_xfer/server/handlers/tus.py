"""`/tus/`: the tus 1.0.0 server on the shared session store.

Rules come from `tus` (pure); state from `sessions`; bytes through
`offsetappend` (shared with the IETF resumable uploads: one writer at a
time, takeover of a stale PATCH, the running hash, the commit).
"""

from __future__ import annotations

from typing import Any

from ...protocol import tus
from ...protocol.conditional import format_http_date
from ...protocol.errors import (
    BadRequest,
    InsufficientStorage,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    XferError,
)
from ...protocol.paths import RelPath, parse_rel_path, sanitize_filename
from ...protocol.sha256state import AVAILABLE as RESUMABLE_HASH
from ...protocol.sha256state import ResumableSha256
from ...storage import committer, sessionhash
from ...storage.state import COMPLETE, OPEN, Session
from ..context import Context
from ..exchange import Exchange
from . import offsetappend
from .chunked import owner_of

UPLOAD_METHODS = ["HEAD", "PATCH", "DELETE", "OPTIONS"]


def set_response_headers(ex: Exchange) -> None:
    """Tus-Resumable and CORS on every response of the route, the app's own
    401/405 included: a browser client can read no status without them."""
    ex.extra_headers = tus.response_headers(ex.headers.get("origin"))


def _prepare(ex: Exchange) -> None:
    set_response_headers(ex)
    tus.check_version(ex.method, ex.headers)


def _location(ex: Exchange, sid: str) -> str:
    return offsetappend.upload_location(ex, "/tus/", sid)


def _upload_id(tail: str) -> str:
    return offsetappend.upload_id("/tus/", tail)


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
    await offsetappend.commit_as_file(ctx, final, staging, lambda: committer.concatenate(
        [ctx.tree.session_staging_path(p.id) for p in parts if p], staging))


async def head(ctx: Context, ex: Exchange, tail: str) -> None:
    _prepare(ex)
    session = await _tus_session(ctx, _upload_id(tail))
    is_final = session.metadata.get("concat") == "final"
    if session.state == OPEN and not is_final:
        session = await offsetappend.settled(ctx, session, lambda s: _tus_session(ctx, s))
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
    session = await _tus_session(ctx, sid)

    async def prepare(current: Session) -> tuple[Session, int]:
        offset = check(current)
        return await _apply_deferred_length(ctx, ex, current, offset), offset

    async def done(current: Session, new_offset: int) -> None:
        if current.size is not None and new_offset == current.size:
            await _finish(ctx, sid)

    return await offsetappend.locked_append(
        ctx, ex, sid, lambda s: _tus_session(ctx, s), prepare, _body_rules(ex, session), done)


def _body_rules(ex: Exchange, session: Session) -> offsetappend.BodyRules:
    """Upload-Checksum (checksum extension: 460, the chunk discarded); the
    body may not pass Upload-Length (413). Partials are hashed when
    concatenated, not as they arrive."""
    checksum = tus.parse_checksum(ex.headers.get("upload-checksum"))

    def verify(digests: dict[str, bytes]) -> None:
        assert checksum is not None
        if digests[checksum[0]] != checksum[1]:
            raise tus.TusChecksumMismatch("the chunk does not match its Upload-Checksum; it was discarded")

    return offsetappend.BodyRules(
        algorithms=(checksum[0],) if checksum else (), verify=verify if checksum else None,
        hashed=session.metadata.get("concat") != "partial",
        too_long=lambda: PayloadTooLarge("the body goes past Upload-Length"))


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


async def _finish(ctx: Context, sid: str) -> None:
    session = await _tus_session(ctx, sid)
    if session.metadata.get("concat") == "partial":
        await ctx.sessions.mark_complete(sid, {"size": session.size}, ctx.clock())
        for final_id in await ctx.sessions.waiting_finals(sid):
            await _try_assemble(ctx, final_id)
        return
    await offsetappend.commit_as_file(ctx, session, ctx.tree.session_staging_path(sid), lambda: sessionhash.final_digest(ctx, session))


async def delete(ctx: Context, ex: Exchange, tail: str) -> None:
    _prepare(ex)
    await offsetappend.cancel(ctx, await _tus_session(ctx, _upload_id(tail)))
    await ex.respond(204, [])
