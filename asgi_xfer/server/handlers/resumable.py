"""`/resumable/`: IETF Resumable Uploads for HTTP (draft-ietf-httpbis-resumable-upload-12,
interop version 8; 3-7 accepted where they differ only in names).

`POST` or `PUT /resumable/` with `Upload-Complete` creates an upload
resource `/resumable/{id}` (announced at once in a `104 Upload Resumption
Supported` where the server can send one) and takes in all or part of the
representation; `HEAD` retrieves its offset, `PATCH` with
`application/partial-upload` appends, `DELETE` cancels, `OPTIONS` tells the
limits. Where the finished upload goes: `?path=` on the creation request,
else the filename of its `Content-Disposition`, else the upload's id, under
the same never-overwrite naming rule as tus. Rules come from
`protocol.resumable`; the sessions (kind 'ietf'), locking, staging, running
hash and commit are tus's, through `offsetappend`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Awaitable, Callable, Mapping

from ...protocol import resumable
from ...protocol.digests import expected_digests, format_digest_field, parse_content_digest, verify_digests, wants_sha256
from ...protocol.disposition import parse_content_disposition
from ...protocol.errors import BadRequest, ChecksumMismatch, Conflict, InsufficientStorage, MethodNotAllowed, NotFound, XferError
from ...protocol.paths import RelPath, parse_rel_path, sanitize_filename
from ...protocol.resumable import InconsistentLength, Limits, Request, UploadState
from ...protocol.sha256state import AVAILABLE as RESUMABLE_HASH
from ...protocol.sha256state import ResumableSha256
from ...storage import committer, sessionhash
from ...storage.filehash import file_digests
from ...storage.state import COMPLETE, OPEN, Session
from ..context import Context
from ..exchange import Exchange
from . import offsetappend
from .chunked import owner_of

KIND = "ietf"
UPLOAD_METHODS = ["HEAD", "PATCH", "DELETE", "OPTIONS"]
CREATE_METHODS = ["POST", "PUT", "OPTIONS"]


def _location(ex: Exchange, sid: str) -> str:
    return offsetappend.upload_location(ex, "/resumable/", sid)


def _upload_id(tail: str) -> str:
    if not tail:
        raise MethodNotAllowed(CREATE_METHODS)  # the creation resource itself
    return offsetappend.upload_id("/resumable/", tail)


async def _session(ctx: Context, sid: str) -> Session:
    session = await ctx.sessions.get(sid, ctx.clock())
    if session is None or session.kind != KIND:
        raise NotFound(f"no upload {sid}")
    return session


def _limits(ctx: Context, session: Session | None) -> Limits:
    """§4.1.4: max-size is our upload limit; max-age the session's remaining
    idle lifetime (it restarts with every append)."""
    age = ctx.sessions.ttl_s if session is None else max(0.0, session.expires - ctx.clock())
    return Limits(max_size=ctx.settings.max_upload_bytes, max_age_s=int(age))


def _limit_header(ctx: Context, ex: Exchange, session: Session | None) -> tuple[str, str]:
    return "upload-limit", resumable.format_limits(_limits(ctx, session), resumable.parse_interop_version(ex.headers))


def _target(ex: Exchange, sid: str) -> RelPath:
    """`?path=dir/name`, else `Content-Disposition: ...; filename=` (§4.2.1:
    "can be used to transmit a filename"), else the upload's id."""
    path = ex.query_value("path")
    if path:
        rel = parse_rel_path(path)
        if rel.trailing_slash or not rel.segments:
            raise BadRequest("?path= must name a file")
        return rel
    disposition = ex.headers.get("content-disposition")
    if disposition:
        filename = parse_content_disposition(disposition)[1].get("filename")
        if filename:
            return RelPath((sanitize_filename(filename),), False)
    return RelPath((sid,), False)


def _repr_digests(headers: Mapping[str, str]) -> dict[str, str]:
    """§9.1: a `Repr-Digest` on creation is checked once the upload is complete."""
    value = headers.get("repr-digest")
    found = parse_content_digest(value) if value else {}
    return {name: base64.b64encode(digest).decode() for name, digest in found.items()}


async def options(ctx: Context, ex: Exchange, tail: str) -> None:
    # §4.1.4: "the server MUST include the Accept-Patch header field".
    await ex.respond(204, [("accept-patch", resumable.PARTIAL_UPLOAD_TYPE), _limit_header(ctx, ex, None),
                           ("allow", ", ".join(CREATE_METHODS if not tail else UPLOAD_METHODS))])


async def create(ctx: Context, ex: Exchange, tail: str) -> None:
    if tail:
        raise MethodNotAllowed(UPLOAD_METHODS)
    plan = resumable.plan_creation(ex.headers, _limits(ctx, None))
    metadata = {"repr": _repr_digests(ex.headers)}
    if plan.length and plan.length > ctx.tree.free_bytes():
        raise InsufficientStorage(f"not enough disk space for {plan.length} bytes")
    committer.maybe_sweep(ctx)
    session = await ctx.sessions.create(
        kind=KIND, path="", size=plan.length, chunk_size=0, sha256=None, owner=owner_of(ex), now=ctx.clock(),
        metadata=metadata, hash_state=ResumableSha256().state() if RESUMABLE_HASH else None)
    try:
        await ctx.sessions.set_path(session.id, _target(ex, session.id).text)
        await committer.allocate_staging(ctx.tree.session_staging_path(session.id), plan.length or 0)
    except XferError:
        await ctx.sessions.delete(session.id)
        raise

    async def announce(current: Session) -> None:
        """§4.2.2: the 104 (only to a client naming an interop version we
        speak, echoing it: Appendix "Draft Version Identification"), sent
        holding the upload, so an offset retrieval the client makes after
        seeing it waits for this request's bytes."""
        interop = resumable.parse_interop_version(ex.headers)
        if interop is not None:
            await ex.informational(resumable.UPLOAD_RESUMPTION_SUPPORTED, [
                ("location", _location(ex, current.id)), _limit_header(ctx, ex, current),
                ("upload-draft-interop-version", str(interop))])

    await _transfer(ctx, ex, session.id, lambda current: plan, created=True, announce=announce)


async def head(ctx: Context, ex: Exchange, tail: str) -> None:
    session = await _session(ctx, _upload_id(tail))
    if session.state == OPEN:
        session = await offsetappend.settled(ctx, session, functools.partial(_session, ctx))
    # §4.3.2: offset, completeness, length if known, limits, no-store.
    headers = [("upload-complete", resumable.format_sf_boolean(session.state == COMPLETE)),
               ("upload-offset", str(session.offset)), _limit_header(ctx, ex, session), ("cache-control", "no-store")]
    if session.size is not None:
        headers.append(("upload-length", str(session.size)))
    await ex.respond(204, headers)


async def patch(ctx: Context, ex: Exchange, tail: str) -> None:
    sid = _upload_id(tail)
    session = await _session(ctx, sid)
    if session.state != OPEN:
        if session.state != COMPLETE:
            raise Conflict(f"upload {sid} is being committed")
        # Its staging file is in the tree now: the rules say why nothing fits.
        resumable.plan_append(ex.headers, UploadState(session.offset, session.size, True), _limits(ctx, session))
    await _transfer(ctx, ex, sid, lambda current: resumable.plan_append(
        ex.headers, UploadState(current.offset, current.size, False), _limits(ctx, current)), created=False)


async def delete(ctx: Context, ex: Exchange, tail: str) -> None:
    await offsetappend.cancel(ctx, await _session(ctx, _upload_id(tail)))
    await ex.respond(204, [])


async def _transfer(ctx: Context, ex: Exchange, sid: str, check: Callable[[Session], Request], *, created: bool,
                    announce: Callable[[Session], Awaitable[None]] | None = None) -> None:
    """Take in a creation's or an append's content under the upload's lock,
    complete the upload if the request says so, and answer."""
    decided: list[Request] = []
    past_length: list[bool] = []
    expected = expected_digests(ex.headers)

    async def prepare(current: Session) -> tuple[Session, int]:
        request = check(current)
        decided.append(request)
        if request.length is not None and current.size is None:
            await ctx.sessions.set_length(sid, request.length)  # §4.1.3: "MUST record the length"
            current = await _session(ctx, sid)
        if announce is not None:
            await announce(current)
        return current, request.offset

    async def done(current: Session, new_offset: int) -> None:
        if decided[0].complete:
            length = resumable.resolve_completion(current.size, new_offset)
            if current.size is None:
                await ctx.sessions.set_length(sid, length)
            await _finish(ctx, sid)

    def too_long() -> XferError:
        # §4.1.4: the server "might also deactivate the upload resource if
        # the offset exceeds the maximum size"; past a known length it must.
        past_length.append(True)
        if decided and decided[0].length is None:
            return resumable.too_large("the upload exceeds max-size", _limits(ctx, None),
                                       resumable.parse_interop_version(ex.headers))
        return InconsistentLength("the content goes past the upload's length")

    rules = offsetappend.BodyRules(
        algorithms=tuple(expected), verify=(lambda got: verify_digests(expected, got)) if expected else None,
        too_long=too_long)
    try:
        offset = await offsetappend.locked_append(ctx, ex, sid, functools.partial(_session, ctx), prepare, rules, done)
    except XferError:
        if past_length:
            # §4.4.2: "rejecting the request once the offset exceeds the
            # length, marking the upload resource invalid".
            await asyncio.shield(committer.drop_session(ctx, sid))
        raise
    session = await _session(ctx, sid)
    if session.state == COMPLETE:
        await _respond_complete(ctx, ex, session, created)
    elif created:
        # §4.2.2: ?0 and all processed: Location and limits, 201 recommended.
        await ex.respond(201, [("location", _location(ex, sid)), _limit_header(ctx, ex, session),
                               ("upload-complete", "?0"), ("upload-offset", str(offset)), ("content-length", "0")])
    else:
        await ex.respond(204, [("upload-complete", "?0"), ("upload-offset", str(offset))])


async def _respond_complete(ctx: Context, ex: Exchange, session: Session, created: bool) -> None:
    """What a PUT of the whole file answers (201 and the stored file), with
    `Upload-Complete: ?1` (§4.4.2: "MUST include")."""
    result = session.result or {}
    headers = [("upload-complete", "?1"), ("upload-offset", str(session.offset)), ("etag", str(result.get("etag", "")))]
    if created:
        headers.append(("location", _location(ex, session.id)))
    if wants_sha256(ex.headers.get("want-repr-digest")) and result.get("sha256"):
        headers.append(("repr-digest", format_digest_field("sha-256", bytes.fromhex(result["sha256"]))))
    await ex.json(201, result, headers)


async def _finish(ctx: Context, sid: str) -> None:
    session = await _session(ctx, sid)
    staging = ctx.tree.session_staging_path(sid)

    async def digest_of() -> str:
        digest = await sessionhash.final_digest(ctx, session)
        wanted = {name: base64.b64decode(value) for name, value in session.metadata.get("repr", {}).items()}
        others = [name for name in wanted if name != "sha-256"]
        got = {"sha-256": bytes.fromhex(digest)}
        if others:  # not kept running: one read of the upload
            got.update(await asyncio.get_running_loop().run_in_executor(None, file_digests, staging, others))
        for name, value in wanted.items():
            if got[name] != value:
                # A response to the completing request: Upload-Complete: ?1.
                raise ChecksumMismatch(f"the upload does not match its Repr-Digest {name}",
                                       headers={"upload-complete": "?1"})
        return digest

    try:
        await offsetappend.commit_as_file(ctx, session, staging, digest_of)
    except ChecksumMismatch:
        # §9.1: "the server SHOULD consider the upload failed, not process
        # the representation further": it is gone.
        await asyncio.shield(committer.drop_session(ctx, sid))
        raise
