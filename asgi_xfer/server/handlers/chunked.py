"""`/uploads`: resumable chunked upload sessions (SPEC).

`POST /uploads` opens (or finds, or instantly completes) a session;
`PUT /uploads/{id}/chunks/{i}` writes chunk i in place in the staging file;
`GET` shows it; `POST /uploads/{id}/complete` commits it; `DELETE` drops it.
The rules live in `chunking`; rows in `sessions`; bytes in `staging`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

from ...protocol.chunking import parse_chunk_index, parse_sha256, plan_session
from ...protocol.digests import Hashers, expected_digests, verify_digests
from ...protocol.errors import BadRequest, ChecksumMismatch, Conflict, InsufficientStorage, NotFound, XferError
from ...protocol.sha256state import AVAILABLE as RESUMABLE_HASH
from ...protocol.sha256state import ResumableSha256
from ...storage import committer, hashfeed, sessionhash
from ...storage.filelocks import lock_region
from ...storage.staging import BatchWriter
from ...storage.state import BUSY, COMPLETE, DONE, OPEN, Session
from ..context import Context
from ..exchange import Exchange
from ..formbody import is_form_data, single_file_data
from .upload import declared_length, file_target

# How long a request waits for another request writing the same chunk (a
# duplicate sent in parallel) before answering 409.
CHUNK_LOCK_WAIT_S = 30.0
# How long a `complete` waits for a parallel `complete` of the same session.
COMMIT_WAIT_S = 120.0
COMMIT_POLL_S = 0.05


def owner_of(ex: Exchange) -> str:
    """Who opened a session: a digest of the bearer token, never the token."""
    auth = ex.headers.get("authorization", "")
    return hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else "anonymous"


def session_view(session: Session, root_path: str) -> dict[str, Any]:
    plan = session.plan
    view: dict[str, Any] = {
        "id": session.id,
        "location": f"{root_path}/uploads/{session.id}",
        "path": session.path,
        "size": session.size,
        "chunk_size": session.chunk_size,
        "chunks": plan.chunks,
        "received": sorted(session.received),
        "missing": plan.missing(session.received),
        "expires": int(session.expires),
        "complete": session.state == COMPLETE,
    }
    if session.result:
        view.update(session.result)
    return view


async def create(ctx: Context, ex: Exchange, tail: str) -> None:
    body = await ex.read_json()
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    if not isinstance(body.get("path"), str):
        raise BadRequest("'path' must be a string")
    rel = file_target(body["path"])
    plan = plan_session(body.get("size"), body.get("chunk_size"))
    sha256 = parse_sha256(body.get("sha256"))
    now = ctx.clock()
    root_path = ex.scope.get("root_path") or ""
    if sha256 is not None:
        result = await committer.instant_commit(ctx, sha256, plan.size, rel)
        if result is not None:
            await ex.json(200, {**result, "complete": True})
            return
    committer.maybe_sweep(ctx)
    existing = await ctx.sessions.find_open(rel.text, plan.size, sha256, now)
    if existing is not None:
        await ex.json(200, session_view(existing, root_path), [("location", f"{root_path}/uploads/{existing.id}")])
        return
    if plan.size > ctx.tree.free_bytes():
        raise InsufficientStorage(f"not enough disk space for {plan.size} bytes")
    session = await ctx.sessions.create(
        kind="chunked", path=rel.text, size=plan.size, chunk_size=plan.chunk_size, sha256=sha256,
        owner=owner_of(ex), now=now, hash_state=ResumableSha256().state() if RESUMABLE_HASH else None,
    )
    try:
        await committer.allocate_staging(ctx.tree.session_staging_path(session.id), plan.size)
    except XferError:
        await ctx.sessions.delete(session.id)
        raise
    location = f"{root_path}/uploads/{session.id}"
    await ex.json(201, session_view(session, root_path), [("location", location)])


def _split(tail: str, shape: str) -> list[str]:
    """`{id}`, `{id}/chunks/{n}` or `{id}/complete`, or 404."""
    parts = tail.split("/")
    expected = {"id": 1, "chunk": 3, "complete": 2}[shape]
    if len(parts) != expected or not parts[0] or (shape == "chunk" and parts[1] != "chunks") or (shape == "complete" and parts[1] != "complete"):
        raise NotFound(f"no resource at /uploads/{tail}")
    return parts


async def _session(ctx: Context, sid: str) -> Session:
    session = await ctx.sessions.get(sid, ctx.clock())
    if session is None or session.kind != "chunked":
        raise NotFound(f"upload session {sid} not found or expired")
    return session


async def show(ctx: Context, ex: Exchange, tail: str) -> None:
    (sid,) = _split(tail, "id")
    await ex.json(200, session_view(await _session(ctx, sid), ex.scope.get("root_path") or ""))


async def remove(ctx: Context, ex: Exchange, tail: str) -> None:
    (sid,) = _split(tail, "id")
    session = await _session(ctx, sid)
    if session.state != OPEN and session.state != COMPLETE:
        raise Conflict("the session is being committed")
    await committer.drop_session(ctx, session.id)
    await ex.respond(204, [])


async def put_chunk(ctx: Context, ex: Exchange, tail: str) -> None:
    sid, _, raw_index = _split(tail, "chunk")
    index = parse_chunk_index(raw_index)
    session = await _session(ctx, sid)
    if session.state != OPEN:
        raise Conflict("the session is already complete" if session.state == COMPLETE else "the session is being committed")
    offset, length = session.plan.span(index)
    declared = declared_length(ex.headers)
    as_form = is_form_data(ex)
    if declared is not None and declared != length and not as_form:
        raise BadRequest(f"chunk {index} must be {length} bytes, not {declared}")
    body = single_file_data(ex) if as_form else ex.iter_body()
    expected = expected_digests(ex.headers)
    try:
        fd = os.open(ctx.tree.session_staging_path(sid), os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"upload session {sid} not found") from None
    try:
        if not await lock_region(fd, offset, length, CHUNK_LOCK_WAIT_S):
            raise Conflict(f"chunk {index} is being written by another request")
        if await ctx.sessions.has_chunk(sid, index):
            # Idempotent: the first complete write stands; check the body is whole and intact.
            digests = await _consume(body, Hashers(expected), length, index)
        else:
            digests = await _write_chunk(ctx, body, fd, session, index, expected)
        verify_digests(expected, digests)
    finally:
        os.close(fd)  # also releases the range lock
    if RESUMABLE_HASH:
        sessionhash.schedule_hash_catch_up(ctx, sid)
    await ex.json(200, {"id": sid, "index": index, "size": length})


async def _consume(body: AsyncIterator[bytes], hashers: Hashers, length: int, index: int) -> dict[str, bytes]:
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > length:
            raise BadRequest(f"chunk {index} longer than {length} bytes")
        hashers.update(chunk)
    if size != length:
        raise BadRequest(f"chunk {index} must be {length} bytes, got {size}")
    return hashers.digests()


async def _write_chunk(ctx: Context, body: AsyncIterator[bytes], fd: int, session: Session, index: int, expected: dict[str, bytes]) -> dict[str, bytes]:
    offset, length = session.plan.span(index)
    # In order (the hash has reached this chunk): fed to the running hash
    # as it arrives, so nobody reads these bytes back to hash them.
    feed = await sessionhash.claim_feed(ctx, session, offset, offset + length, line_up=True)
    accepted = False
    try:
        writer = BatchWriter(fd, offset, Hashers(expected), f"chunk {index}", feed=feed)
        try:
            async for chunk in body:
                if writer.size + len(chunk) > length:
                    raise BadRequest(f"chunk {index} longer than {length} bytes")
                await writer.write(chunk)
        except BaseException:
            await writer.settle()
            raise
        await writer.finish()
        if writer.size != length:
            raise BadRequest(f"chunk {index} must be {length} bytes, got {writer.size}")
        digests = writer.hashers.digests()
        verify_digests(expected, digests)
        # Durability default: a chunk is acknowledged only once fdatasync says
        # its bytes are on stable storage (costs one flush per chunk; with 8 MiB
        # chunks that is the disk's write time, overlapped across connections).
        await asyncio.get_running_loop().run_in_executor(None, os.fdatasync, fd)
        await ctx.sessions.mark_chunk(session.id, index, digests.get("sha-256"), ctx.clock())
        accepted = True
    finally:
        hashfeed.release(session.id, feed, offset, offset + length, accepted)
    return digests


async def complete(ctx: Context, ex: Exchange, tail: str) -> None:
    sid, _ = _split(tail, "complete")
    body = await ex.read_json()
    if body is not None and not isinstance(body, dict):
        raise BadRequest("expected a JSON object or no body")
    claimed = parse_sha256((body or {}).get("sha256"))
    session = await _session(ctx, sid)
    missing = session.plan.missing(session.received)
    if missing and session.state == OPEN:
        exc = Conflict(f"{len(missing)} chunks missing")
        exc.details = {"missing": missing}
        raise exc
    loop = asyncio.get_running_loop()
    deadline = loop.time() + COMMIT_WAIT_S
    while True:
        outcome = await ctx.sessions.begin_commit(sid, ctx.clock())
        if outcome != BUSY:
            break
        if loop.time() > deadline:
            raise Conflict("another request is still committing this session")
        await asyncio.sleep(COMMIT_POLL_S)
    if outcome == DONE:
        session = await _session(ctx, sid)
        assert session.result is not None
        if claimed is not None and claimed != session.result["sha256"]:
            raise ChecksumMismatch("the committed file's sha256 does not match the one given")
    else:
        session = await committer.commit_session(ctx, await _session(ctx, sid), claimed)
    assert session.result is not None
    await ex.json(201, session.result)
