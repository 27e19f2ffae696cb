"""`GET|HEAD /files/{path}`: a file (whole, ranges, gzip) or a directory listing.

Parses the request, lets `representation.plan_download` decide, and executes
the plan: pathsend, frames read by `filestream`, or gzip frames.
"""

from __future__ import annotations

import asyncio
import os
import stat as stat_mod

from ...protocol.byteranges import new_boundary
from ...protocol.digests import format_digest_field, wants_sha256
from ...protocol.errors import NotFound
from ...protocol.gzipcodec import GzipEncoder
from ...protocol.paths import RelPath, format_url_path, is_utf8_name, parse_rel_path
from ...protocol.representation import (
    BODY_FULL,
    BODY_GZIP,
    BODY_MULTIPART,
    BODY_NONE,
    BODY_RANGE,
    DownloadPlan,
    DownloadRequest,
    FileFacts,
    plan_download,
)
from ...storage.filestream import BUDGET, iter_frames, read_at
from ..context import Context
from ..exchange import Exchange
from ..metrics import METRICS
from .pacing import Pacer

# gzip reads: big enough that the thread hop per frame is noise next to
# compressing it, small enough to keep latency to the first byte low.
GZIP_READ_BYTES = 256 << 10


async def get_file(ctx: Context, ex: Exchange, tail: str) -> None:
    rel = parse_rel_path(tail)
    fd, st = ctx.tree.open_read(rel)
    try:
        if stat_mod.S_ISDIR(st.st_mode):
            await _directory(ctx, ex, rel)
            return
        if rel.trailing_slash:
            raise NotFound(f"{rel.text} is a file, not a directory")
        # RFC 9110 §8.8.2.1: a modification time in the future by our clock
        # MUST be replaced by the message origination date.
        facts = FileFacts(rel.name, st.st_size, min(st.st_mtime, ctx.clock()), ctx.tree.etag(st))
        req = DownloadRequest(
            ex.method, ex.headers,
            inline=ex.query_flag("inline"),
            compress=ex.query_value("compress"),
            gzip_enabled=ctx.settings.gzip,
            boundary=new_boundary() if "," in ex.headers.get("range", "") else "",
        )
        plan = plan_download(req, facts)
        if plan.status in (200, 206) and wants_sha256(ex.headers.get("want-repr-digest")):
            plan = await _with_repr_digest(ctx, plan, rel, st)
        await _execute(ctx, ex, fd, plan, facts, rel)
    finally:
        os.close(fd)


async def _with_repr_digest(ctx: Context, plan: DownloadPlan, rel: RelPath, st: os.stat_result) -> DownloadPlan:
    """Repr-Digest (RFC 9530) when asked for and known: the sha256 recorded
    when this exact file (same size and mtime) was uploaded. Never computed
    on the spot: that would read the whole file before the first byte."""
    if plan.body == BODY_GZIP:
        return plan  # the digest is of the identity bytes
    digest = await ctx.index.digest_of(rel.text, st)
    if digest is None:
        return plan
    return plan._replace(headers=(*plan.headers, ("repr-digest", format_digest_field("sha-256", bytes.fromhex(digest)))))


async def _execute(ctx: Context, ex: Exchange, fd: int, plan: DownloadPlan, facts: FileFacts, rel: RelPath) -> None:
    if plan.body == BODY_NONE:
        await ex.respond(plan.status, plan.headers)
        return
    rate = ctx.settings.rate_limit_bytes_per_s
    pacer = Pacer(rate) if rate > 0 else None
    if plan.body == BODY_FULL and pacer is None:
        if facts.size <= BUDGET.frame_size():
            # Small files: one read, one message; no disconnect watcher needed.
            await ex.respond(plan.status, plan.headers, await read_at(fd, 0, facts.size))
            return
    METRICS.active_transfers += 1
    try:
        await ex.start(plan.status, plan.headers)
        if plan.body == BODY_FULL and pacer is None and ex.supports_pathsend:
            # Zero-copy: the server sends the file itself (sendfile).
            await ex.pathsend(ctx.tree.resolve(rel), facts.size)
            return
        ex.watch_disconnect()
        if plan.body == BODY_FULL:
            await _send_span(ex, fd, 0, facts.size, pacer)
        elif plan.body == BODY_RANGE:
            await _send_span(ex, fd, plan.ranges[0].start, plan.ranges[0].length, pacer)
        elif plan.body == BODY_MULTIPART:
            assert plan.multipart is not None
            for header, span in plan.multipart.parts:
                await ex.body(header, more=True)
                await _send_span(ex, fd, span.start, span.length, pacer)
            await ex.body(plan.multipart.trailer, more=True)
        elif plan.body == BODY_GZIP:
            await _send_gzip(ex, fd, facts.size, pacer)
        await ex.body(b"", more=False)
    finally:
        METRICS.active_transfers -= 1


async def _send_span(ex: Exchange, fd: int, offset: int, length: int, pacer: Pacer | None) -> None:
    if pacer is None and ex.supports_zerocopy:
        await ex.zerocopy(fd, offset, length, more=True)  # sendfile: no frames at all
        return
    max_frame = pacer.max_frame if pacer else length
    async for frame in iter_frames(fd, offset, length, max_frame or 1):
        if pacer:
            await pacer.pace(len(frame))
        await ex.body(frame, more=True)
        await ex.wait_writable()


async def _send_gzip(ex: Exchange, fd: int, size: int, pacer: Pacer | None) -> None:
    encoder = GzipEncoder()
    loop = asyncio.get_running_loop()
    async for frame in iter_frames(fd, 0, size, GZIP_READ_BYTES):
        # zlib releases the GIL: compressing in a thread keeps the loop free.
        out = await loop.run_in_executor(None, encoder.encode, frame)
        if out:
            if pacer:
                await pacer.pace(len(out))
            await ex.body(out, more=True)
    await ex.body(encoder.finish(), more=True)


async def _directory(ctx: Context, ex: Exchange, rel: RelPath) -> None:
    if not rel.trailing_slash:
        # Relative links inside a listing need the slash form (as nginx does).
        root = ex.scope.get("root_path") or ""
        location = format_url_path(root + "/files/", rel, directory=True)
        query = ex.scope.get("query_string") or b""
        if query:
            location += "?" + query.decode("latin-1")
        await ex.json(308, {"location": location}, [("location", location)])
        return
    entries = await asyncio.get_running_loop().run_in_executor(None, ctx.tree.list_dir, rel)
    # A name that is not valid UTF-8 (kept by os.scandir as surrogate escapes)
    # can be neither sent in a JSON listing (it made a 500) nor reached by a
    # URL, whose percent-escapes are decoded as UTF-8: leave it out.
    entries = [e for e in entries if is_utf8_name(e.name)]
    await ex.json(200, {
        "path": "/" + (rel.text + "/" if rel.segments else ""),
        "entries": [
            {"name": e.name, "type": "dir" if e.is_dir else "file", "size": e.size, "mtime": e.mtime, "etag": e.etag}
            for e in entries
        ],
    })
