"""The bytes of an archive response: executing an `ArchivePlan`.

A stored zip is sent straight from its layout (`ZipLayout.pieces` of the
planned span: headers, file bytes, descriptors, central directory), so a
Range costs no more than the bytes it asks for plus the CRCs it lacks. The
other kinds stream through their sans-I/O writer (deflate zip, tar) and the
gzip encoder (tar.gz). Every file is reopened and checked against its planned
size and mtime, before, during (each frame) and after its bytes; a change
raises `ArchiveError` after the response began, and the app's error boundary
then drops the connection: the client sees a truncated transfer, never an
archive that looks whole but is not.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence

from ...protocol.archiveerrors import ArchiveError
from ...protocol.archiveplan import KIND_TAR_GZ, KIND_ZIP_DEFLATE, ArchivePlan, plan_crc_needs, tar_entries, zip_entries
from ...protocol.crc32 import FAST as FAST_CRC32
from ...protocol.crc32 import crc32
from ...protocol.gzipcodec import GZIP_LEVEL_DEFAULT, GzipEncoder
from ...protocol.tarwriter import TarWriter
from ...protocol.zipwriter import ZipLayout, ZipPiece, ZipWriter, plan_stored_zip
from ...storage.archivesource import SourceFile, check_unchanged, open_source, read_crc32s
from ...storage.filestream import FRAME_MAX_BYTES, iter_frames, read_at
from ...storage.state import CrcCache
from ..context import Context
from ..exchange import Exchange
from .pacing import Pacer

log = logging.getLogger("asgi_xfer")

# Headers, descriptors and small files are gathered into messages of about
# this size: one ASGI message per 80-byte header would cost more than the
# bytes. Data at least this big goes out as read, uncopied.
COALESCE_BYTES = 256 << 10
# Below this, deflate or gzip work (and a zlib CRC, when ISA-L's is not
# installed, see `crc32`) runs on the event loop; above, in a thread, where
# zlib releases the GIL and the work overlaps with sending.
INLINE_WORK_BYTES = 128 << 10
# Cache misses are read for their CRC in batches of about this many bytes
# per thread hop, so a cancelled response stops soon and small files do not
# each pay a hop.
CRC_BATCH_BYTES = 64 << 20
# Same level as gzip on the fly (gzipcodec): keeping up with the link matters
# more than the last few percent.
DEFLATE_LEVEL = GZIP_LEVEL_DEFAULT


async def _in_thread_if_big(fn: Callable[[bytes], bytes], data: bytes) -> bytes:
    if len(data) < INLINE_WORK_BYTES:
        return fn(data)
    return await asyncio.get_running_loop().run_in_executor(None, fn, data)


class ArchiveOutput:
    """The response body: small pieces coalesced, big ones sent as they are,
    optionally through a gzip encoder; backpressure after every message."""

    def __init__(self, ex: Exchange, encoder: GzipEncoder | None = None, pacer: Pacer | None = None) -> None:
        self.ex, self.encoder, self.pacer = ex, encoder, pacer
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    async def add(self, data: bytes) -> None:
        if len(data) >= COALESCE_BYTES:
            await self.flush()
            if len(data) <= FRAME_MAX_BYTES:
                await self._send(data)
                return
            view = memoryview(data)  # a big central directory: in frames
            for at in range(0, len(data), FRAME_MAX_BYTES):
                await self._send(bytes(view[at:at + FRAME_MAX_BYTES]))
            return
        if data:
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes >= COALESCE_BYTES:
                await self.flush()

    async def flush(self) -> None:
        if self.pending:
            data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
            self.pending, self.pending_bytes = [], 0
            await self._send(data)

    async def _send(self, data: bytes) -> None:
        if self.encoder is not None:
            data = await _in_thread_if_big(self.encoder.encode, data)
            if not data:
                return
        if self.pacer is not None:
            await self.pacer.pace(len(data))
        await self.ex.body(data, more=True)
        await self.ex.wait_writable()

    @property
    def zero_copy(self) -> bool:
        # Paced bodies go in frames: sendfile would send a whole file at once.
        return self.encoder is None and self.pacer is None and self.ex.supports_zerocopy

    async def send_file_span(self, fd: int, offset: int, count: int) -> None:
        """File bytes by sendfile, in order after what was added before."""
        await self.flush()
        await self.ex.zerocopy(fd, offset, count, more=True)

    async def close(self) -> None:
        await self.flush()
        if self.encoder is not None:
            await self.ex.body(self.encoder.finish(), more=True)
        await self.ex.body(b"", more=False)


class CrcBook:
    """The CRCs one stored-zip response knows: from the cache, computed by
    reading (before the first byte, or in the background while it sends), or
    learned from the bytes it streams; new ones go to the cache at the end."""

    def __init__(self, cache: CrcCache, sources: Sequence[SourceFile]) -> None:
        self.cache, self.sources = cache, sources
        self.known: dict[int, int] = {}
        self.learned: list[int] = []
        self.task: asyncio.Future[None] | None = None

    async def load(self, indices: frozenset[int]) -> list[int]:
        """Fill from the cache; return the indices still missing, in order."""
        wanted = sorted(indices)
        found = await self.cache.lookup([self.sources[i].cache_key for i in wanted])
        for i, crc in zip(wanted, found):
            if crc is not None:
                self.known[i] = crc
        return [i for i in wanted if i not in self.known]

    async def compute(self, indices: Sequence[int]) -> None:
        loop = asyncio.get_running_loop()
        for batch in _batches(indices, self.sources):
            crcs = await loop.run_in_executor(None, read_crc32s, [self.sources[i] for i in batch])
            for i, crc in zip(batch, crcs):
                self.learn(i, crc)

    def compute_in_background(self, indices: Sequence[int]) -> None:
        if indices:
            self.task = asyncio.ensure_future(self.compute(indices))

    async def get(self, index: int) -> int:
        if index not in self.known and self.task is not None:
            await self.task
        return self.known[index]

    async def all(self) -> dict[int, int]:
        if self.task is not None:
            await self.task
        return self.known

    def learn(self, index: int, crc: int) -> None:
        before = self.known.get(index)
        if before is None:
            self.known[index] = crc
            self.learned.append(index)
        elif before != crc:
            name = self.sources[index].member.name
            raise ArchiveError(f"{name!r} changed while the archive was being sent (CRC differs)")

    async def finish(self) -> None:
        if self.task is not None:
            if not self.task.done():
                self.task.cancel()
            elif not self.task.cancelled():
                self.task.exception()  # retrieved: a failure was reported where it mattered
        rows = [(self.sources[i].cache_key, self.known[i]) for i in self.learned]
        try:
            await self.cache.store(rows)
        except Exception:  # a cache that cannot be written only costs a re-read later
            log.warning("could not store %d archive CRCs", len(rows), exc_info=True)


def _batches(indices: Sequence[int], sources: Sequence[SourceFile]) -> list[list[int]]:
    batches: list[list[int]] = [[]]
    size = 0
    for i in indices:
        if batches[-1] and size >= CRC_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(i)
        size += sources[i].member.size
    return [b for b in batches if b]


async def send_stored_zip(ctx: Context, ex: Exchange, plan: ArchivePlan, sources: Sequence[SourceFile],
                          pacer: Pacer | None = None) -> None:
    assert plan.layout is not None
    start, stop = plan.span
    needs = plan_crc_needs(plan.layout, start, stop, upfront=plan.crc_upfront)
    book = CrcBook(ctx.crcs, sources)
    try:
        missing = await book.load(needs.ahead)
        # Files sent whole would teach us their CRC, but a cached one spares
        # reading them at all: their bytes can then go by zero-copy send.
        await book.load(needs.streamed)
        layout = plan.layout
        if plan.crc_upfront:
            await book.compute(missing)  # the headers carry them: before the first byte
            members = [s.member for s in sources]
            layout = plan_stored_zip(zip_entries(members, book.known, upfront=True))
            assert layout.size == plan.layout.size
        else:
            book.compute_in_background(missing)
        await ex.start(plan.status, plan.headers)
        out = ArchiveOutput(ex, pacer=pacer)
        for piece in layout.pieces(start, stop):
            await _send_piece(out, layout, piece, sources, book, piece.index in needs.streamed and piece.index not in book.known)
        await out.close()
    finally:
        await book.finish()


async def _send_piece(out: ArchiveOutput, layout: ZipLayout, piece: ZipPiece, sources: Sequence[SourceFile],
                      book: CrcBook, whole: bool) -> None:
    i, lo, hi = piece.index, piece.start, piece.stop
    if piece.kind == "header":
        await out.add(layout.local_header(i)[lo:hi])
    elif piece.kind == "data":
        if hi > lo:
            crc = await send_file_bytes(out, sources[i], lo, hi, whole)
            if crc is not None:
                book.learn(i, crc)
    elif piece.kind == "descriptor":
        await out.add(layout.data_descriptor(i, await book.get(i))[lo:hi])
    else:
        known = await book.all()
        crcs = [known.get(j) for j in range(len(sources))]
        await out.add(layout.central_directory(crcs)[lo:hi])


async def send_file_bytes(out: ArchiveOutput, src: SourceFile, start: int, stop: int, whole: bool) -> int | None:
    """Send file bytes [start, stop); with `whole`, return the file's CRC."""
    fd = open_source(src)
    try:
        if stop - start < COALESCE_BYTES:
            data = await read_at(fd, start, stop - start)
            check_unchanged(fd, src)
            await out.add(data)
            return crc32(data, 0) if whole else None
        loop = asyncio.get_running_loop()
        if out.zero_copy:
            # The bytes by sendfile while a thread reads the same span for its
            # CRC (needed only by the descriptor and directory after it): the
            # two overlap. A change in between shows in the size/mtime check
            # after the send and drops the connection.
            # The thread reads through its own dup of the fd and closes it, so
            # an early return or error here never pulls the fd from under it.
            crc_job = loop.run_in_executor(None, _crc_of_span, os.dup(fd), start, stop) if whole else None
            if crc_job is not None:
                crc_job.add_done_callback(_retrieve)
            await out.send_file_span(fd, start, stop - start)
            check_unchanged(fd, src)
            return await crc_job if crc_job is not None else None
        crc, pending = 0, None
        async for frame in iter_frames(fd, start, stop - start):
            check_unchanged(fd, src)
            if whole and FAST_CRC32:
                crc = crc32(frame, crc)
            elif whole:
                if pending is not None:
                    crc = await pending
                # In a thread, overlapping with the send of this very frame.
                pending = loop.run_in_executor(None, crc32, frame, crc)
            await out.add(frame)
        if pending is not None:
            crc = await pending
        check_unchanged(fd, src)
        return crc if whole else None
    finally:
        os.close(fd)


def _crc_of_span(fd: int, start: int, stop: int) -> int:
    """Worker thread: the CRC-32 of [start, stop) of `fd`, which it closes."""
    try:
        crc, pos = 0, start
        while pos < stop:
            data = os.pread(fd, min(FRAME_MAX_BYTES * 4, stop - pos), pos)
            if not data:
                raise ArchiveError("file shrank while it was being archived")
            crc = crc32(data, crc)
            pos += len(data)
        return crc
    finally:
        os.close(fd)


def _retrieve(job: asyncio.Future[int]) -> None:
    """A CRC job nobody awaited (the send failed first) must not log as an
    unretrieved exception: the send's failure is the one reported."""
    if not job.cancelled():
        job.exception()


async def send_streamed(ex: Exchange, plan: ArchivePlan, sources: Sequence[SourceFile], pacer: Pacer | None = None) -> None:
    """Deflated zip, tar and tar.gz: through the writers, front to back."""
    members = [s.member for s in sources]
    writer: ZipWriter | TarWriter
    if plan.kind == KIND_ZIP_DEFLATE:
        writer, entries = ZipWriter(compress=True, level=DEFLATE_LEVEL), list(zip_entries(members))
    else:
        writer, entries = TarWriter(), list(tar_entries(members))
    await ex.start(plan.status, plan.headers)
    out = ArchiveOutput(ex, GzipEncoder() if plan.kind == KIND_TAR_GZ else None, pacer)
    for src, entry in zip(sources, entries):
        await out.add(writer.start_entry(entry))  # type: ignore[arg-type]
        if src.member.size:
            await _stream_file(out, writer, src)
        await out.add(writer.end_entry())
    await out.add(writer.finish())
    await out.close()


async def _stream_file(out: ArchiveOutput, writer: ZipWriter | TarWriter, src: SourceFile) -> None:
    fd = open_source(src)
    try:
        async for frame in iter_frames(fd, 0, src.member.size):
            check_unchanged(fd, src)
            # ZipWriter CRCs and deflates (in a thread when big); TarWriter
            # hands the frame back as it is.
            data = await _in_thread_if_big(writer.entry_data, frame) if isinstance(writer, ZipWriter) else writer.entry_data(frame)
            await out.add(data)
        check_unchanged(fd, src)
    finally:
        os.close(fd)
