"""gzip encoder read back by the stdlib; Accept-Encoding per RFC 9110 §12.5.3."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest

from asgi_xfer.protocol.gzipcodec import GzipEncoder, accepts_gzip, is_compressible

TEXT = b"".join(b"line %d: the quick brown fox\r\n" % i for i in range(2000))
NOISE = random.Random(1952).randbytes(50_000)


def encode_pieces(pieces: list[bytes], level: int | None = None) -> bytes:
    encoder = GzipEncoder() if level is None else GzipEncoder(level)
    return b"".join(encoder.encode(p) for p in pieces) + encoder.finish()


def assert_one_gzip_member(blob: bytes, original: bytes) -> None:
    assert gzip.decompress(blob) == original
    # Exactly one member, nothing after it (RFC 1952 §2.2).
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert reader.decompress(blob) == original
    assert reader.eof and reader.unused_data == b""


@pytest.mark.parametrize("data", [b"", b"x", TEXT, NOISE])
def test_whole(data: bytes) -> None:
    assert_one_gzip_member(encode_pieces([data]), data)


@pytest.mark.parametrize("data", [b"abc", TEXT[:3000]])
def test_one_byte_at_a_time(data: bytes) -> None:
    assert_one_gzip_member(encode_pieces([data[i : i + 1] for i in range(len(data))]), data)


def test_every_two_way_split() -> None:
    data = TEXT[:700] + NOISE[:300]
    for split in range(len(data) + 1):
        assert_one_gzip_member(encode_pieces([data[:split], data[split:]]), data)


@pytest.mark.parametrize("seed", range(5))
def test_seeded_random_pieces(seed: int) -> None:
    rng = random.Random(seed)
    data = TEXT + NOISE
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.randint(0, 9000)
        pieces.append(data[pos : pos + step])
        pos += step
    assert_one_gzip_member(encode_pieces(pieces), data)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_levels(level: int) -> None:
    assert_one_gzip_member(encode_pieces([TEXT], level), TEXT)


def test_default_level_compresses_text() -> None:
    assert len(encode_pieces([TEXT])) < len(TEXT) // 4


def test_use_after_finish_is_an_error() -> None:
    encoder = GzipEncoder()
    encoder.finish()
    with pytest.raises(ValueError):
        encoder.encode(b"x")
    with pytest.raises(ValueError):
        encoder.finish()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # RFC 9110 §12.5.3 examples.
        ("compress, gzip", True),
        ("", False),  # only identity is acceptable
        ("*", True),
        ("compress;q=0.5, gzip;q=1.0", True),
        ("gzip;q=1.0, identity; q=0.5, *;q=0", True),
        # No header: compress only when asked (nginx behaviour).
        (None, False),
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),  # §8.4.1.3
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;Q=0", False),
        ("gzip;q=0.001", True),
        ("gzip ; q=0.5", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # an explicit refusal beats "*"
        ("*;q=0, x-gzip", True),
        ("identity", False),
        ("br, deflate", False),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("deflate, , gzip", True),  # §5.6.1 empty elements
        # Invalid weights make the element meaningless, not a yes.
        ("gzip;q=2", False),
        ("gzip;q=abc", False),
        ("gzip;q=1.0001", False),
        ("gzip;level=9", False),
        ("gzip;q=0.5, br", True),
    ],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain", True),
        ("text/html; charset=utf-8", True),
        ("Text/CSV", True),
        ("application/json", True),
        ("application/ld+json", True),
        ("application/javascript", True),
        ("application/xml", True),
        ("image/svg+xml", True),
        ("application/wasm", True),
        ("application/x-tar", True),
        ("image/png", False),
        ("image/jpeg", False),
        ("video/mp4", False),
        ("audio/mpeg", False),
        ("application/zip", False),
        ("application/gzip", False),
        ("application/zstd", False),
        ("font/woff2", False),
        ("application/pdf", False),
        ("application/octet-stream", False),
        ("", False),
    ],
)
def test_is_compressible(content_type: str, expected: bool) -> None:
    assert is_compressible(content_type) is expected
