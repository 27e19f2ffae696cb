"""multipart/byteranges framing (RFC 9110 §14.6) for multi-range 206s.

Owns the exact bytes around each part and the exact Content-Length, computed
before any data is read. It must not read files or send anything: the handler
writes ``part header, data of range, ...`` then ``trailer``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .ranges import ByteRange, format_content_range

# 16 random bytes as 32 hex characters: 128 bits makes a collision with the
# file's own bytes negligible, and hex only uses RFC 2046 bchars (no CR, no
# space, no quoting needed in the Content-Type parameter).
BOUNDARY_RANDOM_BYTES = 16

# RFC 2046 §5.1.1: a boundary is 1 to 70 characters. We accept only the
# bchars that are also RFC 9110 §5.6.2 tchars, so the Content-Type parameter
# never needs quoting.
MAX_BOUNDARY_LENGTH = 70
_BOUNDARY_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'+_-."
)

_CRLF = b"\r\n"  # RFC 2046 §5.1.1 and RFC 9110 §14.6: CRLF line breaks


@dataclass(frozen=True)
class MultipartPlan:
    """A multipart/byteranges body: write each header then its range's bytes."""

    content_type: str  # 'multipart/byteranges; boundary=...'
    parts: tuple[tuple[bytes, ByteRange], ...]  # (part header bytes, range)
    trailer: bytes
    content_length: int


def new_boundary() -> str:
    """A fresh random boundary (the only impure function here)."""
    return secrets.token_hex(BOUNDARY_RANDOM_BYTES)


def _check_boundary(boundary: str) -> None:
    if not 0 < len(boundary) <= MAX_BOUNDARY_LENGTH or not set(boundary) <= _BOUNDARY_CHARS:
        raise ValueError(f"invalid multipart boundary {boundary!r}")


def _check_header_value(value: str) -> None:
    # A CR or LF in a header value would let it inject headers into the part.
    if "\r" in value or "\n" in value or not value.isascii():
        raise ValueError(f"invalid part Content-Type {value!r}")


def _part_header(index: int, boundary: str, content_type: str, r: ByteRange, size: int) -> bytes:
    # RFC 2046 §5.1.1: the CRLF before "--boundary" belongs to the delimiter,
    # so every part but the first starts with it; the first delimiter may
    # begin the body directly.
    lead = b"" if index == 0 else _CRLF
    lines = (
        f"--{boundary}",
        f"Content-Type: {content_type}",
        f"Content-Range: {format_content_range(r, size)}",
        "",
        "",
    )
    return lead + "\r\n".join(lines).encode("ascii")


def plan_byteranges(
    ranges: tuple[ByteRange, ...], size: int, part_content_type: str, boundary: str
) -> MultipartPlan:
    """Frame ``ranges`` of a ``size``-byte representation as one body."""
    _check_boundary(boundary)
    _check_header_value(part_content_type)
    if not ranges:
        raise ValueError("multipart/byteranges needs at least one range")
    parts = tuple(
        (_part_header(i, boundary, part_content_type, r, size), r)
        for i, r in enumerate(ranges)
    )
    trailer = _CRLF + f"--{boundary}--".encode("ascii") + _CRLF
    content_length = sum(len(h) + r.length for h, r in parts) + len(trailer)
    return MultipartPlan(
        content_type=f"multipart/byteranges; boundary={boundary}",
        parts=parts,
        trailer=trailer,
        content_length=content_length,
    )
