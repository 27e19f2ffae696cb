from __future__ import annotations

import hashlib
import random

import pytest

from asgi_xfer.protocol import sha256state
from asgi_xfer.protocol.sha256state import ResumableSha256

pytestmark = pytest.mark.skipif(not sha256state.AVAILABLE, reason="no libcrypto")


def test_matches_hashlib_across_saves() -> None:
    rng = random.Random(7)
    data = rng.randbytes(1_000_003)
    h = ResumableSha256()
    pos = 0
    while pos < len(data):
        step = rng.randint(0, 100_000)
        h.update(data[pos:pos + step])
        h = ResumableSha256(h.state())  # save and resume after every piece
        pos += step
    assert h.digest() == hashlib.sha256(data).digest()


def test_digest_does_not_disturb_state() -> None:
    h = ResumableSha256()
    h.update(b"abc")
    assert h.digest() == hashlib.sha256(b"abc").digest()
    h.update(b"def")
    assert h.digest() == hashlib.sha256(b"abcdef").digest()


def test_empty_and_bad_state() -> None:
    assert ResumableSha256().digest() == hashlib.sha256(b"").digest()
    with pytest.raises(ValueError):
        ResumableSha256(b"short")


def test_update_from_hashes_only_the_filled_part_of_a_reused_buffer() -> None:
    rng = random.Random(11)
    data = rng.randbytes(300_001)
    buffer = bytearray(65_536)
    h = ResumableSha256()
    for pos in range(0, len(data), len(buffer)):
        piece = data[pos:pos + len(buffer)]
        buffer[: len(piece)] = piece  # the last read leaves stale bytes after it
        h.update_from(buffer, len(piece))
    assert h.digest() == hashlib.sha256(data).digest()
