"""`PUT` and `DELETE /files/{path}`: a raw body streamed to disk, verified,
committed atomically; removal honouring preconditions."""

from __future__ import annotations

import os

from ...protocol.conditional import Outcome, Validators, evaluate_preconditions, requires_absent
from ...protocol.digests import expected_digests, verify_digests
from ...protocol.errors import BadRequest, InsufficientStorage, PayloadTooLarge, PreconditionFailed
from ...protocol.paths import RelPath, parse_rel_path
from ...storage.staging import StagedFile, free_bytes
from ..context import Context
from ..exchange import Exchange

# Digits in a Content-Length: 20 covers 2**64; more is no length.
MAX_LENGTH_DIGITS = 20


def declared_length(headers: dict[str, str]) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > MAX_LENGTH_DIGITS:
        raise BadRequest("invalid Content-Length")
    return int(raw)


def file_target(tail: str) -> RelPath:
    rel = parse_rel_path(tail)
    if rel.trailing_slash or not rel.segments:
        raise BadRequest("a file path is needed here, not a directory")
    return rel


def _validators(ctx: Context, st: os.stat_result | None) -> Validators | None:
    return None if st is None else Validators(ctx.tree.etag(st), int(st.st_mtime))


def _check_preconditions(ctx: Context, method: str, ex: Exchange, st: os.stat_result | None) -> None:
    if evaluate_preconditions(method, ex.headers, _validators(ctx, st)) is not Outcome.PROCEED:
        raise PreconditionFailed("a precondition in the request does not hold")


async def put_file(ctx: Context, ex: Exchange, tail: str) -> None:
    rel = file_target(tail)
    limit = ctx.settings.max_upload_bytes
    declared = declared_length(ex.headers)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the {limit}-byte limit")
    expected = expected_digests(ex.headers)
    target, created = ctx.tree.target_for_write(rel)
    staged = StagedFile(os.path.dirname(target), rel.text, expected, created)
    try:
        before = ctx.tree.stat_file(target)
        _check_preconditions(ctx, "PUT", ex, before)
        if declared is not None and declared > free_bytes(staged.directory):
            raise InsufficientStorage(f"not enough disk space for {declared} bytes")
        async for chunk in ex.iter_body():
            if staged.size + len(chunk) > limit:
                raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
            await staged.write(chunk)
        digests = await staged.finish()
        verify_digests(expected, digests)
        # Re-check against the file as it is now: another upload may have
        # replaced it while this body streamed in (§13.1.1: If-Match guards
        # against lost updates only if checked at the moment of the write).
        _check_preconditions(ctx, "PUT", ex, ctx.tree.stat_file(target))
        await staged.commit(target, create_only=requires_absent(ex.headers))
    except BaseException:
        await staged.abort()
        raise
    st = os.stat(target)
    etag = ctx.tree.etag(st)
    sha256 = digests["sha-256"].hex()
    await ctx.index.record(sha256, rel.text, st)
    payload = {"path": rel.text, "size": staged.size, "sha256": sha256, "etag": etag}
    await ex.json(200 if before is not None else 201, payload, [("etag", etag)])


async def delete_file(ctx: Context, ex: Exchange, tail: str) -> None:
    rel = parse_rel_path(tail)
    if not rel.segments:
        raise BadRequest("the root cannot be deleted")
    ctx.tree.delete(rel, lambda st: _check_preconditions(ctx, "DELETE", ex, st))
    await ex.respond(204, [])
