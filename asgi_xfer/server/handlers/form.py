"""`POST /files/{dir}/` with `multipart/form-data`: every file part streamed to
a staging file beside its target, then all committed or none (SPEC)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..context import Context
from ...protocol.digests import Hashers, expected_digests, verify_digests
from ...protocol.errors import BadRequest, Conflict, InsufficientStorage, PayloadTooLarge, translate_os_error
from ..exchange import Exchange
from ..formbody import iter_events
from ...protocol.multipart import PartData, PartEnd, PartStart
from ...protocol.paths import parse_rel_path, sanitize_filename
from ...storage.staging import STAGING_PREFIX, StagedFile, free_bytes, fsync_directory
from ...storage.disktree import format_etag
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
    directory, created = ctx.store.directory_for_write(rel)
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
        await asyncio.get_running_loop().run_in_executor(None, _commit_all, parts, overwrite)
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
        files.append({"name": part.name, "path": path, "size": st.st_size, "sha256": sha256, "etag": format_etag(st)})
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


def _commit_all(parts: list[_Part], overwrite: bool) -> None:
    """Rename every part into place; if one fails, put back what was there."""
    done: list[tuple[_Part, str | None]] = []
    try:
        for part in parts:
            backup = None
            if overwrite and os.path.lexists(part.target):
                backup = os.path.join(os.path.dirname(part.target), f"{STAGING_PREFIX}{secrets.token_hex(8)}")
                os.link(part.target, backup)
                os.replace(part.staged.path, part.target)
            else:
                os.link(part.staged.path, part.target)  # fails if it appeared meanwhile
                os.unlink(part.staged.path)
            done.append((part, backup))
    except BaseException as exc:
        for part, backup in reversed(done):
            if backup is not None:
                os.replace(backup, part.target)
            else:
                os.unlink(part.target)
        for _, backup in done:
            if backup is not None and os.path.lexists(backup):
                os.unlink(backup)
        if isinstance(exc, FileExistsError):
            raise Conflict("a file appeared at a target while the form was uploading") from None
        if isinstance(exc, OSError):
            raise translate_os_error(exc, "form upload") from None
        raise
    for _, backup in done:
        if backup is not None:
            os.unlink(backup)
    for directory in {os.path.dirname(p.target) for p in parts}:
        fsync_directory(directory)
