"""`POST /files/{dir}/` with `multipart/form-data`: every file part streamed to
a staging file beside its target, then all committed or none (SPEC)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ...protocol.digests import Hashers, expected_digests, verify_digests
from ...protocol.errors import BadRequest, Conflict, InsufficientStorage, PayloadTooLarge
from ...protocol.multipart import PartData, PartEnd, PartStart
from ...protocol.paths import parse_rel_path, sanitize_filename
from ...storage.staging import StagedFile, commit_all, free_bytes
from ..context import Context
from ..exchange import Exchange
from ..formbody import iter_events
from .upload import declared_length


@dataclass
class _Part:
    name: str
    target: str
    staged: StagedFile


async def post_form(ctx: Context, ex: Exchange, tail: str) -> None:
    rel = parse_rel_path(tail)
    overwrite = ex.query_flag("overwrite")
    limit = ctx.settings.max_upload_bytes
    declared = declared_length(ex.headers)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the {limit}-byte limit")
    expected = expected_digests(ex.headers)
    body_hash = Hashers(expected) if expected else None
    directory, created = ctx.tree.directory_for_write(rel)
    if declared is not None and declared > free_bytes(directory):
        raise InsufficientStorage(f"not enough disk space for {declared} bytes")
    parts: list[_Part] = []
    try:
        await _stage_parts(ex, _counted(ex, limit, body_hash), directory, rel.text, overwrite, parts)
        if body_hash is not None:
            verify_digests(expected, body_hash.digests())
        if not parts:
            raise BadRequest("the form has no file part")
        digests = [await part.staged.finish() for part in parts]
        await asyncio.get_running_loop().run_in_executor(
            None, commit_all, [(part.staged, part.target) for part in parts], overwrite)
    except BaseException:
        for part in parts:
            await part.staged.abort()
        for path in created:
            try:
                os.rmdir(path)
            except OSError:
                break
        raise
    files = []
    for part, digest in zip(parts, digests):
        st = os.stat(part.target)
        sha256 = digest["sha-256"].hex()
        path = f"{rel.text}/{part.name}" if rel.text else part.name
        await ctx.index.record(sha256, path, st)
        files.append({"name": part.name, "path": path, "size": st.st_size, "sha256": sha256, "etag": ctx.tree.etag(st)})
    await ex.json(201, {"files": files})


async def _counted(ex: Exchange, limit: int, body_hash: Hashers | None) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in ex.iter_body():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
        if body_hash is not None:
            body_hash.update(chunk)
        yield chunk


async def _stage_parts(ex: Exchange, raw: AsyncIterator[bytes], directory: str, where: str, overwrite: bool, parts: list[_Part]) -> None:
    current: _Part | None = None
    async for event in iter_events(ex, raw):
        if isinstance(event, PartStart):
            current = None
            if event.filename is None:
                continue  # a plain field: nothing to store
            name = sanitize_filename(event.filename)
            target = os.path.join(directory, name)
            if any(p.name == name for p in parts):
                raise Conflict(f"the form names {name} twice")
            if os.path.isdir(target) or (not overwrite and os.path.lexists(target)):
                raise Conflict(f"{name} already exists in {where or '/'} (use ?overwrite=1)")
            current = _Part(name, target, StagedFile(directory, name))
            parts.append(current)
        elif isinstance(event, PartData) and current is not None:
            await current.staged.write(event.data)
        elif isinstance(event, PartEnd):
            current = None
