"""Writing an upload: a temporary file beside its target, committed atomically.

Owns: the staging file (`.xfer-tmp-*`, invisible to listings and downloads),
writing and hashing batches in a worker thread so the event loop keeps
receiving, starting writeback early so the final fsync is short, fsync and
the atomic rename (or create-only link), and leaving no trace on failure.
Must not: parse HTTP or decide status codes beyond translating OSError.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
from collections.abc import Iterable
from typing import Protocol

from .digests import Hashers
from .errors import PreconditionFailed, translate_os_error

STAGING_PREFIX = ".xfer-tmp-"
# Received chunks (uvicorn hands over ~64 KiB at a time) are gathered into
# batches of this size per thread hop: the ~60-90 us hop becomes noise, and
# two batches (one being written, one filling) bound memory per upload.
WRITE_BATCH_BYTES = 1 << 20
# Every this many bytes, ask the kernel to start writing back what we wrote
# (sync_file_range WRITE, asynchronous): the final fdatasync then has only the
# tail to flush instead of the whole file.
WRITEBACK_STEP_BYTES = 16 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()
# The write primitive; tests may replace it to inject faults.
pwritev = os.pwritev


class _Updatable(Protocol):
    def update(self, data: bytes) -> None: ...


def _write_all(fd: int, chunks: list[bytes], offset: int) -> None:
    while chunks:
        written = pwritev(fd, chunks, offset)
        offset += written
        # pwritev may write part of the batch; drop what went out and retry.
        while chunks and written >= len(chunks[0]):
            written -= len(chunks[0])
            chunks.pop(0)
        if written and chunks:
            chunks[0] = chunks[0][written:]


class BatchWriter:
    """Writes a stream of chunks at `offset` of an open file, hashing them,
    one batch at a time in a worker thread while the next batch fills.

    `extra` is any object with `update(bytes)` fed the same bytes in order
    (the resumable whole-file SHA-256 of an upload session)."""

    def __init__(self, fd: int, offset: int, hashers: Hashers, display: str, extra: _Updatable | None = None) -> None:
        self.fd = fd
        self.start = offset
        self.hashers = hashers
        self.extra = extra
        self.display = display
        self.size = 0  # bytes handed to write()
        self.written = 0  # bytes known to be in the file
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._pending: asyncio.Future[None] | None = None
        self._synced_to = offset

    async def write(self, data: bytes) -> None:
        self._batch.append(data)
        self._batch_bytes += len(data)
        self.size += len(data)
        if self._batch_bytes >= WRITE_BATCH_BYTES:
            await self._flush_batch()

    async def flush(self) -> None:
        """Every byte handed to `write` is in the file (not yet fsynced)."""
        await self._flush_batch()
        await self._wait_pending()

    async def _flush_batch(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        await self._wait_pending()
        if batch:
            end = self.start + self.size
            offset = end - sum(len(c) for c in batch)
            self._pending = asyncio.get_running_loop().run_in_executor(None, self._write_batch, batch, offset, end)

    async def _wait_pending(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                await pending
            except OSError as exc:
                raise translate_os_error(exc, self.display) from None

    def _write_batch(self, batch: list[bytes], offset: int, end: int) -> None:
        """Worker thread: hash and write; hashlib and pwritev release the GIL."""
        for chunk in batch:
            self.hashers.update(chunk)
            if self.extra is not None:
                self.extra.update(chunk)
        _write_all(self.fd, batch, offset)
        self.written = end - self.start
        if _sync_file_range is not None and end - self._synced_to >= WRITEBACK_STEP_BYTES:
            _sync_file_range(self.fd, self._synced_to, end - self._synced_to, _SYNC_FILE_RANGE_WRITE)
            self._synced_to = end

    async def settle(self) -> None:
        """Let an in-flight batch finish (its thread still uses the fd) before
        the caller closes it; never raises."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await asyncio.shield(pending)
            except BaseException:
                pass


class StagedFile:
    """One PUT being written; `await write()` chunks, `await finish()`,
    then `await commit()` or `await abort()`."""

    def __init__(self, directory: str, display: str, algorithms: Iterable[str] = (), created_dirs: Iterable[str] = ()) -> None:
        self.display = display  # the path as the client knows it, for errors
        self.directory = directory
        # Parents made for this upload (deepest first): removed if it fails.
        self.created_dirs = list(created_dirs)
        self.path = os.path.join(directory, f"{STAGING_PREFIX}{secrets.token_hex(8)}")
        self.fd = -1
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise translate_os_error(exc, display) from None
        self.writer = BatchWriter(self.fd, 0, Hashers({"sha-256", *algorithms}), display)

    @property
    def size(self) -> int:
        return self.writer.size

    async def write(self, data: bytes) -> None:
        await self.writer.write(data)

    async def finish(self) -> dict[str, bytes]:
        """Everything written and on stable storage; the body's digests."""
        await self.writer.flush()
        try:
            await asyncio.get_running_loop().run_in_executor(None, os.fdatasync, self.fd)
        except OSError as exc:
            raise translate_os_error(exc, self.display) from None
        return self.writer.hashers.digests()

    async def commit(self, target: str, *, create_only: bool) -> None:
        """Atomically put the staged file at `target` and make that durable."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._commit, target, create_only)
        except FileExistsError:
            raise PreconditionFailed(f"{self.display} already exists (If-None-Match: *)") from None
        except OSError as exc:
            raise translate_os_error(exc, self.display) from None
        finally:
            self.discard()

    def _commit(self, target: str, create_only: bool) -> None:
        if create_only:
            os.link(self.path, target)  # fails if target exists: no check-then-act race
        else:
            os.replace(self.path, target)
        fsync_directory(os.path.dirname(target))

    async def abort(self) -> None:
        """Give up: let an in-flight batch finish (its thread still holds the
        fd), then remove everything. Never raises."""
        await self.writer.settle()
        self.discard()
        for directory in self.created_dirs:
            try:
                os.rmdir(directory)  # only if still empty: another upload may use it
            except OSError:
                break

    def discard(self) -> None:
        """Close and remove the staging file if still there; never raises."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.path)
        except OSError:
            pass


def fsync_directory(path: str) -> None:
    """A rename is durable only once its directory is fsynced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_bytes(directory: str) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize
