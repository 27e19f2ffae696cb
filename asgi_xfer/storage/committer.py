"""Session files: allocating staging space, committing a finished session
into the tree, instant uploads, sweeping (the running hash: sessionhash).

Owns: every I/O step between "all bytes received" and "a file at its path",
shared by `/uploads` and tus: the staging file (`ROOT/.xfer/uploads/ID.part`,
preallocated so chunk writes never meet ENOSPC), the atomic commit, and the
content index. Must not: parse requests.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import os
import secrets
import shutil
from dataclasses import replace
from typing import Any

from ..protocol.errors import ChecksumMismatch, InsufficientStorage, XferError, translate_os_error
from ..protocol.paths import RelPath, parse_rel_path
from ..protocol.tus import numbered_name
from . import sessionhash
from .backends import Backends
from .filehash import sha256_file
from .staging import STAGING_PREFIX, fsync_directory
from .state import Session

# Bytes read per step when copying partials into a concatenation.
COPY_READ_BYTES = 4 << 20
# Expired sessions are swept at most this often per process, on the next
# session request (no background timer needed when mounted without lifespan).
SWEEP_INTERVAL_S = 300.0


def _load_fallocate() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return fn


# fallocate(2) itself, not posix_fallocate(3): glibc's emulation writes
# zeros over the whole file where the filesystem lacks support.
_fallocate = _load_fallocate()


def _allocate(path: str, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if size and (_fallocate is None or _fallocate(fd, 0, 0, size) != 0):
            err = ctypes.get_errno() if _fallocate is not None else errno.EOPNOTSUPP
            if err in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(err, "no space")
            os.ftruncate(fd, size)  # no reservation on this filesystem: sparse
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


async def allocate_staging(path: str, size: int) -> None:
    try:
        await asyncio.get_running_loop().run_in_executor(None, _allocate, path, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(f"not enough disk space for {size} bytes") from None
        raise translate_os_error(exc, "upload staging") from None


async def commit_session(ctx: Backends, session: Session, claimed: str | None = None) -> Session:
    """All chunks are in and this caller holds the commit claim: verify,
    rename into place, record. On failure the session is open again."""
    try:
        staging = ctx.tree.session_staging_path(session.id)
        rel = parse_rel_path(session.path)
        target, _ = ctx.tree.target_for_write(rel)
        if os.path.exists(staging):
            digest = await sessionhash.final_digest(ctx, session)
            for expected in (session.sha256, claimed):
                if expected is not None and expected != digest:
                    raise ChecksumMismatch("the uploaded file's sha256 does not match the one announced")
            await asyncio.get_running_loop().run_in_executor(None, _rename_durably, staging, target)
        else:
            # A crash after the rename, before the database said so: the file
            # is in place; its digest is whatever it holds.
            digest = await asyncio.get_running_loop().run_in_executor(None, sha256_file, target)
        st = os.stat(target)
        result = {"path": session.path, "size": st.st_size, "sha256": digest, "etag": ctx.tree.etag(st)}
        await ctx.index.record(digest, session.path, st)
        await ctx.sessions.finish_commit(session.id, result, ctx.clock())
    except BaseException:
        await asyncio.shield(ctx.sessions.abort_commit(session.id, ctx.clock()))
        raise
    return replace(session, state="complete", result=result)


def _rename_durably(staging: str, target: str) -> None:
    fd = os.open(staging, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(staging, target)
    fsync_directory(os.path.dirname(target))


async def drop_session(ctx: Backends, sid: str) -> None:
    try:
        os.unlink(ctx.tree.session_staging_path(sid))
    except FileNotFoundError:
        pass
    await ctx.sessions.delete(sid)


async def instant_commit(ctx: Backends, sha256: str, size: int, rel: Any) -> dict[str, Any] | None:
    """If a stored file has this content, put it at `rel` without a byte
    sent (a hard link: both names share the bytes, and since every write
    here replaces a file by rename, neither can change the other)."""
    src = None
    for src_rel, src_size, src_mtime in await ctx.index.candidates(sha256):
        try:
            path = ctx.tree.resolve(parse_rel_path(src_rel))
            st: os.stat_result | None = os.stat(path)
        except (OSError, XferError):
            st = None
        if st is not None and st.st_size == src_size == size and st.st_mtime_ns == src_mtime:
            src = path
            break
        await ctx.index.forget(sha256, src_rel)  # changed or gone since: not that content any more
    if src is None:
        return None
    target, _ = ctx.tree.target_for_write(rel)
    try:
        await asyncio.get_running_loop().run_in_executor(None, _link_into_place, src, target)
    except OSError as exc:
        raise translate_os_error(exc, rel.text) from None
    tst = os.stat(target)
    await ctx.index.record(sha256, rel.text, tst)
    return {"path": rel.text, "size": tst.st_size, "sha256": sha256, "etag": ctx.tree.etag(tst)}


def _link_into_place(src: str, target: str) -> None:
    if os.path.exists(target) and os.path.samefile(src, target):
        return
    tmp = os.path.join(os.path.dirname(target), f"{STAGING_PREFIX}{secrets.token_hex(8)}")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)  # another filesystem or no hard links
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    try:
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    fsync_directory(os.path.dirname(target))


_last_sweep = 0.0


async def sweep_expired(ctx: Backends) -> int:
    expired = await ctx.sessions.expired_ids(ctx.clock())
    for sid in expired:
        await drop_session(ctx, sid)
    return len(expired)


def maybe_sweep(ctx: Backends) -> None:
    global _last_sweep
    now = ctx.clock()
    if now - _last_sweep >= SWEEP_INTERVAL_S:
        _last_sweep = now
        ctx.background(sweep_expired(ctx))


def _link_new_name(staging: str, directory: str, name: str) -> str:
    """Link `staging` into `directory` under `name`, or `name (1)`, `(2)`...:
    a create-only link, so a concurrent upload of the same name is never
    overwritten. Returns the name used."""
    for n in range(10_000):
        candidate = numbered_name(name, n)
        try:
            os.link(staging, os.path.join(directory, candidate))
        except FileExistsError:
            continue
        os.unlink(staging)
        fsync_directory(directory)
        return candidate
    raise FileExistsError(name)


async def commit_new_file(ctx: Backends, session: Session, staging: str, rel: Any, digest: str) -> dict[str, Any]:
    """Commit a finished tus upload at `rel` (or a numbered variant of its
    name); record it; return the result the session keeps."""
    directory, _ = ctx.tree.directory_for_write(RelPath(rel.segments[:-1], True))
    try:
        await asyncio.get_running_loop().run_in_executor(None, _fsync_path, staging)
        name = await asyncio.get_running_loop().run_in_executor(None, _link_new_name, staging, directory, rel.name)
    except OSError as exc:
        raise translate_os_error(exc, rel.text) from None
    path = "/".join((*rel.segments[:-1], name))
    st = os.stat(os.path.join(directory, name))
    await ctx.index.record(digest, path, st)
    return {"path": path, "size": st.st_size, "sha256": digest, "etag": ctx.tree.etag(st)}


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _concatenate(parts: list[str], target: str) -> str:
    """Copy the partials, in order, into a new staging file and return its
    sha256 (the bytes are read once anyway for the digest)."""
    h = hashlib.sha256()
    fd_out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        offset = 0
        for part in parts:
            fd_in = os.open(part, os.O_RDONLY | os.O_CLOEXEC)
            try:
                size = os.fstat(fd_in).st_size
                pos = 0
                while pos < size:
                    data = os.pread(fd_in, min(COPY_READ_BYTES, size - pos), pos)
                    if not data:
                        break
                    h.update(data)
                    os.pwrite(fd_out, data, offset + pos)
                    pos += len(data)
                offset += pos
            finally:
                os.close(fd_in)
        os.fdatasync(fd_out)
    finally:
        os.close(fd_out)
    return h.hexdigest()


async def concatenate(parts: list[str], target: str) -> str:
    try:
        return await asyncio.get_running_loop().run_in_executor(None, _concatenate, parts, target)
    except OSError as exc:
        raise translate_os_error(exc, "concatenated upload") from None
