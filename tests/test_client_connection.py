"""`HTTPConnection` without sockets: a byte-list mock stream, as in httpcore.

Expected framing comes from RFC 9112 (Content-Length, chunked, close-
delimited bodies; §8 incomplete messages) and h11's reading of it; every
response is also fed one byte at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from asgi_xfer.client.connection import ConnectionState, HTTPConnection, Timeouts
from asgi_xfer.client.errors import ReadTimeout, RemoteProtocolError, WriteError


class MockStream:
    """Serves `chunks` to reads (b"" once exhausted: EOF) and records writes."""

    def __init__(self, chunks: list[bytes], *, fail_writes: bool = False, stall: bool = False) -> None:
        self.chunks = list(chunks)
        self.written = bytearray()
        self.closed = False
        self.fail_writes = fail_writes
        self.stall = stall

    async def read(self, max_bytes: int, timeout: float | None) -> bytes:
        if self.stall:
            raise ReadTimeout("stalled")
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if len(chunk) > max_bytes:
            self.chunks.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    async def write(self, data: bytes, timeout: float | None) -> None:
        if self.fail_writes:
            raise WriteError("broken pipe")
        self.written += data

    async def aclose(self) -> None:
        self.closed = True

    def is_readable(self) -> bool:
        return bool(self.chunks)


HEAD = [(b"host", b"example.com")]
OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello"


def split_bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


async def get(connection: HTTPConnection, target: str = "/") -> tuple[int, bytes]:
    response = await connection.send_request("GET", target, HEAD)
    return response.status, await response.read()


@pytest.mark.parametrize("wire", [OK_HELLO, CHUNKED])
@pytest.mark.parametrize("split", [False, True], ids=["whole", "bytewise"])
def test_framed_body_then_idle(wire: bytes, split: bool) -> None:
    stream = MockStream(split_bytewise(wire) if split else [wire])
    connection = HTTPConnection(stream)
    assert asyncio.run(get(connection)) == (200, b"hello")
    assert connection.state is ConnectionState.IDLE
    assert not stream.closed


def test_close_delimited_body_ends_at_eof_and_closes() -> None:
    stream = MockStream([CLOSE_DELIMITED])
    connection = HTTPConnection(stream)
    assert asyncio.run(get(connection)) == (200, b"hello")
    assert connection.state is ConnectionState.CLOSED and stream.closed


def test_keep_alive_serves_two_requests_on_one_stream() -> None:
    stream = MockStream([OK_HELLO, b"HTTP/1.1 204 No Content\r\n\r\n"])
    connection = HTTPConnection(stream)

    async def two() -> list[tuple[int, bytes]]:
        return [await get(connection, "/a"), await get(connection, "/b")]

    assert asyncio.run(two()) == [(200, b"hello"), (204, b"")]
    assert stream.written.count(b"GET /") == 2
    assert connection.requests_sent == 2


def test_request_head_is_http11_with_host_and_length() -> None:
    stream = MockStream([OK_HELLO])
    connection = HTTPConnection(stream)

    async def put() -> None:
        response = await connection.send_request("PUT", "/files/a%20b", HEAD, b"12345")
        await response.read()

    asyncio.run(put())
    head, _, body = bytes(stream.written).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"PUT /files/a%20b HTTP/1.1"
    assert b"host: example.com" in lines and b"content-length: 5" in lines
    assert body == b"12345"


def test_iterable_body_is_sent_chunked() -> None:
    stream = MockStream([OK_HELLO])
    connection = HTTPConnection(stream)

    async def pieces() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cde"

    async def post() -> None:
        response = await connection.send_request("POST", "/", HEAD, pieces())
        await response.read()

    asyncio.run(post())
    assert b"transfer-encoding: chunked" in stream.written
    assert stream.written.endswith(b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")


def test_informational_responses_are_skipped() -> None:
    stream = MockStream([b"HTTP/1.1 100 Continue\r\n\r\n", OK_HELLO])
    assert asyncio.run(get(HTTPConnection(stream))) == (200, b"hello")


@pytest.mark.parametrize("cut", [10, len(OK_HELLO) - 2])
def test_peer_closing_mid_message_is_a_remote_protocol_error(cut: int) -> None:
    stream = MockStream([OK_HELLO[:cut]])
    connection = HTTPConnection(stream)
    with pytest.raises(RemoteProtocolError):
        asyncio.run(get(connection))
    assert connection.state is ConnectionState.CLOSED and stream.closed


def test_no_response_at_all_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        asyncio.run(get(HTTPConnection(MockStream([]))))


@pytest.mark.parametrize("wire", [b"HTTP/1.1 2OO OK\r\n\r\n", b"SSH-2.0-OpenSSH\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"])
def test_malformed_response_is_a_remote_protocol_error(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        asyncio.run(get(HTTPConnection(MockStream([wire]))))


def test_response_head_over_the_limit_is_refused() -> None:
    wire = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (80 * 1024) + b"\r\n\r\n"
    pieces = [wire[i:i + 4096] for i in range(0, len(wire), 4096)]
    with pytest.raises(RemoteProtocolError):
        asyncio.run(get(HTTPConnection(MockStream(pieces))))


def test_read_timeout_closes_the_connection() -> None:
    stream = MockStream([], stall=True)
    connection = HTTPConnection(stream, timeouts=Timeouts(read=0.01))
    with pytest.raises(ReadTimeout):
        asyncio.run(get(connection))
    assert connection.state is ConnectionState.CLOSED


def test_early_response_wins_over_a_failed_body_write() -> None:
    """A server may answer 413/401 and close before reading the body
    (RFC 9110 §15.5.14); the client reports that answer, not EPIPE."""
    stream = MockStream([b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"])
    connection = HTTPConnection(stream)

    async def put() -> int:
        # Head goes out; then the body write fails.
        original = stream.write
        calls = 0

        async def write(data: bytes, timeout: float | None) -> None:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise WriteError("broken pipe")
            await original(data, timeout)

        stream.write = write  # type: ignore[method-assign]
        response = await connection.send_request("PUT", "/", HEAD, b"x" * 100)
        await response.read()
        return response.status

    assert asyncio.run(put()) == 413


def test_write_failure_without_an_answer_raises_write_error() -> None:
    with pytest.raises(WriteError):
        asyncio.run(get(HTTPConnection(MockStream([], fail_writes=True))))


def test_closing_a_half_read_response_closes_the_connection() -> None:
    stream = MockStream([OK_HELLO[:-3], OK_HELLO[-3:]])
    connection = HTTPConnection(stream)

    async def partial() -> bytes:
        response = await connection.send_request("GET", "/", HEAD)
        first = b""
        async for chunk in response.aiter_bytes():
            first = bytes(chunk)
            break
        await response.aclose()
        return first

    assert asyncio.run(partial()) == b"he"
    assert connection.state is ConnectionState.CLOSED and stream.closed


def test_trailing_garbage_after_a_response_is_not_reused() -> None:
    stream = MockStream([OK_HELLO + b"HTTP/1.1 200 OK\r\n"])
    connection = HTTPConnection(stream)
    assert asyncio.run(get(connection)) == (200, b"hello")
    assert not connection.is_reusable()


def test_head_response_has_no_body_even_with_content_length() -> None:
    stream = MockStream([b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", OK_HELLO])
    connection = HTTPConnection(stream)

    async def head_then_get() -> tuple[bytes, tuple[int, bytes]]:
        response = await connection.send_request("HEAD", "/", HEAD)
        body = await response.read()
        return body, await get(connection)

    assert asyncio.run(head_then_get()) == (b"", (200, b"hello"))
