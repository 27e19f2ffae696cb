"""multipart/byteranges framing, read back with the stdlib email parser."""

from __future__ import annotations

import random
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

import pytest

from asgi_xfer.protocol.byteranges import MultipartPlan, new_boundary, plan_byteranges
from asgi_xfer.protocol.ranges import ByteRange

DATA = bytes(random.Random(9110).randrange(256) for _ in range(8000)) + b"\r\n--x\r\n"


def assemble(plan: MultipartPlan, data: bytes) -> bytes:
    """What the handler sends: each part header, then that range's bytes."""
    chunks = []
    for header, r in plan.parts:
        chunks += [header, data[r.start : r.end + 1]]
    return b"".join(chunks) + plan.trailer


def parse_back(plan: MultipartPlan, body: bytes) -> list[Message]:
    head = f"Content-Type: {plan.content_type}\r\n\r\n".encode("ascii")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    assert message.is_multipart()
    assert message.get_content_type() == "multipart/byteranges"
    assert not message.defects
    return list(message.iter_parts())


def test_rfc_9110_section_14_6_example_framing() -> None:
    # The §14.6 example: two ranges of an 8000-byte PDF, this boundary.
    ranges = (ByteRange(500, 999), ByteRange(7000, 7999))
    plan = plan_byteranges(ranges, 8000, "application/pdf", "THIS_STRING_SEPARATES")
    assert plan.content_type == "multipart/byteranges; boundary=THIS_STRING_SEPARATES"
    assert plan.parts[0] == (
        b"--THIS_STRING_SEPARATES\r\n"
        b"Content-Type: application/pdf\r\n"
        b"Content-Range: bytes 500-999/8000\r\n"
        b"\r\n",
        ByteRange(500, 999),
    )
    # The CRLF that ends the first part's data belongs to the delimiter
    # (RFC 2046 §5.1.1).
    assert plan.parts[1] == (
        b"\r\n--THIS_STRING_SEPARATES\r\n"
        b"Content-Type: application/pdf\r\n"
        b"Content-Range: bytes 7000-7999/8000\r\n"
        b"\r\n",
        ByteRange(7000, 7999),
    )
    assert plan.trailer == b"\r\n--THIS_STRING_SEPARATES--\r\n"


@pytest.mark.parametrize(
    "spans",
    [
        [(0, 0)],
        [(0, 9), (20, 29)],
        [(0, 0), (len(DATA) - 1, len(DATA) - 1)],
        [(100, 4999), (5001, 5002), (7990, len(DATA) - 1)],
        [(3, 3), (5, 5), (7, 7), (1000, 1999)],
    ],
)
def test_body_reads_back_with_email_parser(spans: list[tuple[int, int]]) -> None:
    size = len(DATA)
    ranges = tuple(ByteRange(a, b) for a, b in spans)
    plan = plan_byteranges(ranges, size, "application/octet-stream", new_boundary())
    body = assemble(plan, DATA)
    assert len(body) == plan.content_length
    parts = parse_back(plan, body)
    assert len(parts) == len(ranges)
    for part, r in zip(parts, ranges):
        assert part["Content-Type"] == "application/octet-stream"
        assert part["Content-Range"] == f"bytes {r.start}-{r.end}/{size}"
        assert part.get_payload(decode=True) == DATA[r.start : r.end + 1]


def test_boundary_is_not_in_content_range() -> None:
    boundary = new_boundary()
    plan = plan_byteranges((ByteRange(0, 1), ByteRange(5, 6)), 10, "text/plain", boundary)
    for header, _ in plan.parts:
        content_range = [line for line in header.split(b"\r\n") if line.startswith(b"Content-Range")]
        assert content_range and boundary.encode() not in content_range[0]


def test_new_boundary_is_fresh_and_usable() -> None:
    boundaries = {new_boundary() for _ in range(100)}
    assert len(boundaries) == 100
    for boundary in boundaries:
        assert 1 <= len(boundary) <= 70  # RFC 2046 §5.1.1
        plan_byteranges((ByteRange(0, 0),), 1, "text/plain", boundary)


@pytest.mark.parametrize("boundary", ["", "a" * 71, "has space", "semi;colon", "crlf\r\n", "quo\"te"])
def test_invalid_boundary_is_refused(boundary: str) -> None:
    with pytest.raises(ValueError):
        plan_byteranges((ByteRange(0, 0),), 1, "text/plain", boundary)


@pytest.mark.parametrize("content_type", ["text/plain\r\nX-Injected: 1", "text/plain\n", "text/plän"])
def test_header_injection_is_refused(content_type: str) -> None:
    with pytest.raises(ValueError):
        plan_byteranges((ByteRange(0, 0),), 1, content_type, "b")


def test_no_ranges_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_byteranges((), 1, "text/plain", "b")
