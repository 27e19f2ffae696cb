"""Writing an upload: a temporary file beside its target, committed atomically.

Owns: the staging file (`.xfer-tmp-*`, invisible to listings and downloads),
writing and hashing batches in a worker thread so the event loop keeps
receiving, starting writeback early so the final fsync is short, fsync and
the atomic rename (or create-only link), and leaving no trace on failure.
Must not: parse HTTP or decide status codes beyond translating OSError.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import os
import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ..protocol.digests import Hashers
from ..protocol.errors import Conflict, PreconditionFailed, translate_os_error

STAGING_PREFIX = ".xfer-tmp-"
# Received chunks are gathered into batches of this size per thread hop, so
# the ~60-90 us hop is noise.
WRITE_BATCH_BYTES = 1 << 20
# Bytes handed to threads and not yet written and hashed, per upload.
MAX_IN_FLIGHT_BYTES = 4 << 20
# Every this many bytes, ask the kernel to start writing back what we wrote
# (sync_file_range WRITE, asynchronous): the final fdatasync then has only the
# tail to flush instead of the whole file. 4 MiB, below the 8 MiB of a typical
# chunk or tus PATCH, each of which ends in its own fdatasync (measured: tus
# 8 MiB PATCHes 197 -> 215-230 MB/s against a 16 MiB step).
WRITEBACK_STEP_BYTES = 4 << 20
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


class _Feed(Protocol):
    async def submit(self, batch: list[bytes]) -> None: ...

    def done_feeding(self, end: int) -> None: ...


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
    """Writes a stream of chunks at `offset` of an open file, hashing them.

    Batches of ~1 MiB leave the event loop: each is written with pwritev at
    its own offset by the thread pool, and hashed, in order, by a thread of
    this writer's own. Hashing is the dearest step (SHA-256 runs a few
    hundred MB/s on CPUs without SHA instructions), so it must run without
    pause on one core while the loop receives on the other: batches flow
    until `MAX_IN_FLIGHT_BYTES` wait on either, which also bounds memory.

    `feed` (a session's running hash, sessionhash.HashFeed) gets each
    batch in order too and hashes it on its own thread; `flush()` does not
    wait for it."""

    def __init__(self, fd: int, offset: int, hashers: Hashers, display: str, feed: _Feed | None = None) -> None:
        self.fd = fd
        self.feed = feed
        self.start = offset
        self.hashers = hashers
        self.display = display
        self.size = 0  # bytes handed to write()
        self.written = 0  # bytes known to be in the file (all of them after flush())
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._in_flight: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._in_flight_bytes = 0
        self._synced_to = offset
        hashing = hashers.active
        # One thread per writer keeps its hash updates in order.
        self._hash_thread = ThreadPoolExecutor(1, thread_name_prefix="xfer-hash") if hashing else None

    async def write(self, data: bytes) -> None:
        self._batch.append(data)
        self._batch_bytes += len(data)
        self.size += len(data)
        if self._batch_bytes >= WRITE_BATCH_BYTES:
            await self._submit_batch()

    async def flush(self) -> None:
        """Every byte handed to `write` is in the file (not yet fsynced)."""
        await self._submit_batch()
        while self._in_flight:
            await self._wait_oldest()
        self.written = self.size
        self._close_hash_thread()

    async def finish(self) -> None:
        """`flush()`, letting batches in flight settle if it fails; then
        tell the feed, if any, that this writer has handed it everything."""
        try:
            await self.flush()
        except BaseException:
            await self.settle()
            raise
        if self.feed is not None:
            self.feed.done_feeding(self.start + self.size)

    async def _submit_batch(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        while self._in_flight and self._in_flight_bytes >= MAX_IN_FLIGHT_BYTES:
            await self._wait_oldest()
        end = self.start + self.size
        nbytes = sum(len(c) for c in batch)
        loop = asyncio.get_running_loop()
        work = [loop.run_in_executor(None, self._write_batch, list(batch), end - nbytes, end)]
        if self._hash_thread is not None:
            work.append(loop.run_in_executor(self._hash_thread, self._hash_batch, batch))
        self._in_flight.append((nbytes, asyncio.gather(*work)))
        self._in_flight_bytes += nbytes
        if self.feed is not None:
            await self.feed.submit(batch)

    async def _wait_oldest(self) -> None:
        nbytes, done = self._in_flight.popleft()
        self._in_flight_bytes -= nbytes
        try:
            await done
        except OSError as exc:
            raise translate_os_error(exc, self.display) from None

    def _hash_batch(self, batch: list[bytes]) -> None:
        """The writer's hash thread; hashlib and OpenSSL release the GIL."""
        for chunk in batch:
            self.hashers.update(chunk)

    def _write_batch(self, batch: list[bytes], offset: int, end: int) -> None:
        """A pool thread: write the batch at its offset; start writeback."""
        _write_all(self.fd, batch, offset)
        if _sync_file_range is not None and end - self._synced_to >= WRITEBACK_STEP_BYTES:
            start, self._synced_to = self._synced_to, end
            _sync_file_range(self.fd, start, end - start, _SYNC_FILE_RANGE_WRITE)

    def _close_hash_thread(self) -> None:
        if self._hash_thread is not None:
            self._hash_thread.shutdown(wait=False)
            self._hash_thread = None

    async def settle(self) -> None:
        """Let batches in flight finish (their threads still use the fd)
        before the caller closes it; never raises."""
        while self._in_flight:
            _, done = self._in_flight.popleft()
            try:
                await asyncio.shield(done)
            except BaseException:
                pass
        self._in_flight_bytes = 0
        self._close_hash_thread()


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


def commit_all(parts: list[tuple[StagedFile, str]], overwrite: bool) -> None:
    """Rename every staged file to its target, all or nothing: if one fails,
    put back what was there (a multipart POST commits no part or every part)."""
    done: list[tuple[str, str | None]] = []
    try:
        for staged, target in parts:
            backup = None
            if overwrite and os.path.lexists(target):
                backup = os.path.join(os.path.dirname(target), f"{STAGING_PREFIX}{secrets.token_hex(8)}")
                os.link(target, backup)
                os.replace(staged.path, target)
            else:
                os.link(staged.path, target)  # fails if it appeared meanwhile
                os.unlink(staged.path)
            done.append((target, backup))
    except BaseException as exc:
        for target, backup in reversed(done):
            if backup is not None:
                os.replace(backup, target)
            else:
                os.unlink(target)
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
    for directory in {os.path.dirname(target) for _, target in parts}:
        fsync_directory(directory)
