"""Hashing a region of a file from disk, with one reused buffer.

Owns: reading bytes [start, end) of a staging file into a SHA-256 (resumable
or plain). Used by the session feed (bytes it must take in from the file)
and the catch-up. Must not: know about sessions.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterable

from ..protocol.digests import Hashers
from ..protocol.sha256state import ResumableSha256

# Bytes read per step when hashing from the staging file.
HASH_READ_BYTES = 4 << 20


def hash_region(path: str, start: int, end: int, state: bytes | None) -> bytes:
    """Resume `state` over bytes [start, end) of the file; the new state."""
    h = ResumableSha256(state)
    update_from_file(h, path, start, end)
    return h.state()


def update_from_file(h: ResumableSha256, path: str, start: int, end: int) -> None:
    """Feed bytes [start, end) of the file to `h`."""
    # One buffer reused for every read: a fresh 4 MiB bytes object per read
    # made glibc raise its mmap threshold and keep ~40 MiB more resident.
    buffer = bytearray(min(HASH_READ_BYTES, max(end - start, 1)))
    view = memoryview(buffer)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pos = start
        while pos < end:
            n = os.preadv(fd, [view[: min(len(buffer), end - pos)]], pos)
            if not n:
                raise OSError(errno.EIO, "staging file shorter than its session")
            h.update_from(buffer, n)
            pos += n
    finally:
        os.close(fd)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_READ_BYTES):
            h.update(chunk)
    return h.hexdigest()


def file_digests(path: str, algorithms: Iterable[str]) -> dict[str, bytes]:
    """The named digests (RFC 9530 names) of a whole file, in one read."""
    hashers = Hashers(algorithms)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_READ_BYTES):
            hashers.update(chunk)
    return hashers.digests()
