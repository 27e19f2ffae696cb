"""Rules of a chunked upload session: sizes, indexes, what is missing. Pure.

Owns: validating a session request (size, chunk size, sha256), the byte span
of chunk i, the list of missing chunks, and the contiguous run of received
chunks that the running whole-file hash may advance over. Must not: do I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from .errors import BadRequest

# 8 MiB: large enough that per-chunk overhead (a request, an fsync, a
# database row) is < 1% at disk speed, small enough that a retried chunk
# costs little. S3's multipart minimum part is 5 MiB for the same reasons.
CHUNK_SIZE_DEFAULT_BYTES = 8 << 20
# A chunk is one request body held in flight: 1 GiB at most.
CHUNK_SIZE_MAX_BYTES = 1 << 30
CHUNK_SIZE_MIN_BYTES = 64 << 10
# The received list is returned whole in every session response; 100 000
# chunks (S3 allows 10 000 parts) keeps that bounded.
MAX_CHUNKS = 100_000
# The largest file a session may announce (64 TiB), before the disk check.
MAX_SESSION_BYTES = 64 << 40

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ChunkPlan:
    size: int
    chunk_size: int

    @property
    def chunks(self) -> int:
        return -(-self.size // self.chunk_size)

    def span(self, index: int) -> tuple[int, int]:
        """(offset, length) of chunk `index`; BadRequest if out of range."""
        if not 0 <= index < self.chunks:
            raise BadRequest(f"chunk index {index} out of range 0..{self.chunks - 1}")
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.size - offset)

    def missing(self, received: Collection[int]) -> list[int]:
        return [i for i in range(self.chunks) if i not in received]

    def contiguous_end(self, start: int, received: Collection[int]) -> int:
        """The byte offset where the run of received chunks starting at byte
        `start` (a chunk boundary) ends: how far an in-order hash may go."""
        index = start // self.chunk_size
        while index < self.chunks and index in received:
            index += 1
        return min(self.size, index * self.chunk_size)


def parse_sha256(value: object, field: str = "sha256") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256_HEX.match(value.lower()):
        raise BadRequest(f"'{field}' must be 64 hex digits")
    return value.lower()


def plan_session(size: object, chunk_size: object) -> ChunkPlan:
    """Validate the numbers of `POST /uploads`."""
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SESSION_BYTES:
        raise BadRequest(f"'size' must be an integer from 0 to {MAX_SESSION_BYTES}")
    if chunk_size is None:
        chunk = CHUNK_SIZE_DEFAULT_BYTES
        while -(-size // chunk) > MAX_CHUNKS:
            chunk *= 2  # a huge file gets bigger chunks rather than a refusal
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not CHUNK_SIZE_MIN_BYTES <= chunk_size <= CHUNK_SIZE_MAX_BYTES:
        raise BadRequest(f"'chunk_size' must be an integer from {CHUNK_SIZE_MIN_BYTES} to {CHUNK_SIZE_MAX_BYTES}")
    else:
        chunk = chunk_size
    plan = ChunkPlan(size, chunk)
    if plan.chunks > MAX_CHUNKS:
        raise BadRequest(f"{plan.chunks} chunks is more than {MAX_CHUNKS}; use a larger chunk_size")
    return plan


def parse_chunk_index(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise BadRequest(f"chunk index {text!r} is not a non-negative integer")
    return int(text)
