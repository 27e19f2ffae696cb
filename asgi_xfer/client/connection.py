"""One HTTP/1.1 connection: the h11 state machine driven over an AsyncStream.

Owns: sending a request (head, then a bytes or async-iterable body), reading
the response head, streaming the body as h11 Data events, keep-alive
bookkeeping and the read/write timeouts. h11's errors become ours here and
only here (`map_exceptions`, as httpcore does). Must not: open sockets
(`streams`), pick connections (`pool`) or interpret statuses.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

import h11

from .errors import ClientError, LocalProtocolError, NetworkError, RemoteProtocolError, map_exceptions
from .models import Headers
from .streams import READ_BUFFER_BYTES, AsyncStream

# A response head larger than this is refused: 64 KiB, 4x h11's default and
# what nginx accepts for a whole request head (large_client_header_buffers).
MAX_RESPONSE_HEAD_BYTES = 64 * 1024
# Content-Length bodies at least this large bypass h11 after the head: h11
# copies every byte twice (into its buffer, out into a new Data object, each
# a fresh MiB-sized allocation), which halved throughput at ~1 GB/s. The
# raw path hands the caller a view of the socket buffer instead. The
# connection is then closed after the body (h11 never saw it end), a fair
# price for a body this large; small bodies keep h11 and keep-alive.
RAW_BODY_MIN_BYTES = 4 * 1024 * 1024
Body = bytes | AsyncIterable[bytes] | None


@dataclass(frozen=True)
class Timeouts:
    """Seconds; None waits forever. `read` and `write` apply per socket call,
    so a long transfer never times out while bytes keep flowing."""

    connect: float | None = 10.0
    read: float | None = 60.0
    write: float | None = 60.0
    pool: float | None = 60.0


class ConnectionState(enum.Enum):
    IDLE = "idle"
    ACTIVE = "active"
    CLOSED = "closed"


_REMOTE = {h11.RemoteProtocolError: RemoteProtocolError, h11.LocalProtocolError: LocalProtocolError}


class Response:
    """Status and head now, body on demand. Closing it before the body ends
    closes the connection (a half-read response cannot be reused)."""

    def __init__(self, connection: HTTPConnection, status: int, reason: str, headers: Headers) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._connection = connection
        self._consumed = False

    async def aiter_bytes(self) -> AsyncIterator[bytes | bytearray | memoryview]:
        """The body in pieces as they arrive. A piece may be a view of the
        read buffer: use (or copy) it before asking for the next."""
        if self._consumed:
            raise LocalProtocolError("response body already consumed")
        self._consumed = True
        while (chunk := await self._connection.receive_body_chunk()) is not None:
            yield chunk

    async def read(self) -> bytes:
        return b"".join([bytes(chunk) async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        await self._connection.response_closed()


class HTTPConnection:
    """A single connection; one request at a time, reused while both sides
    agree to keep it alive (h11 decides from Connection and framing)."""

    def __init__(self, stream: AsyncStream, *, timeouts: Timeouts | None = None,
                 read_size: int = READ_BUFFER_BYTES, raw_body_min_bytes: int = RAW_BODY_MIN_BYTES) -> None:
        self._stream = stream
        self._raw_body_min_bytes = raw_body_min_bytes
        self._raw_remaining: int | None = None  # body bytes left on the raw path
        self._timeouts = timeouts or Timeouts()
        self._read_size = read_size
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD_BYTES)
        self.state = ConnectionState.IDLE
        self.requests_sent = 0

    def is_reusable(self) -> bool:
        leftover, closed = self._h11.trailing_data
        return self.state is ConnectionState.IDLE and not leftover and not closed and not self._stream.is_readable()

    async def send_request(self, method: str, target: str, headers: list[tuple[bytes, bytes]],
                           body: Body = None) -> Response:
        """Send the request and read up to the final response head."""
        if self.state is not ConnectionState.IDLE:
            raise LocalProtocolError(f"connection is {self.state.value}, not idle")
        self.state = ConnectionState.ACTIVE
        self._raw_remaining = None
        self.requests_sent += 1
        try:
            head = self._format_head(method, target, headers, body)
            try:
                await self._send_event(head)
                await self._send_body(body)
            except NetworkError as write_error:
                # The server may have answered early (401, 413) and closed:
                # that answer is worth more than our write error.
                try:
                    return await self._receive_head()
                except ClientError:
                    raise write_error from None
            return await self._receive_head()
        except BaseException:
            await self.aclose()
            raise

    def _format_head(self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: Body) -> h11.Request:
        fields = list(headers)
        names = {name.lower() for name, _ in fields}
        if isinstance(body, bytes) and b"content-length" not in names:
            fields.append((b"content-length", str(len(body)).encode()))
        elif body is not None and b"content-length" not in names and b"transfer-encoding" not in names:
            fields.append((b"transfer-encoding", b"chunked"))
        with map_exceptions(_REMOTE):
            return h11.Request(method=method.encode("ascii"), target=target.encode("ascii"), headers=fields)

    async def _send_body(self, body: Body) -> None:
        if isinstance(body, bytes):
            if body:
                await self._send_event(h11.Data(data=body))
        elif body is not None:
            async for chunk in body:
                if chunk:
                    await self._send_event(h11.Data(data=chunk))
        await self._send_event(h11.EndOfMessage())

    async def _send_event(self, event: h11.Event) -> None:
        with map_exceptions(_REMOTE):
            data = self._h11.send(event)
        if data:
            await self._stream.write(data, self._timeouts.write)

    async def _receive_head(self) -> Response:
        while True:
            event = await self._next_event()
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and friends: the final answer follows
            if isinstance(event, h11.Response):
                headers = Headers(event.headers)
                self._raw_remaining = self._plan_raw_body(headers)
                return Response(self, event.status_code, event.reason.decode("latin-1"), headers)
            raise RemoteProtocolError(f"unexpected {type(event).__name__} before the response head")

    def _plan_raw_body(self, headers: Headers) -> int | None:
        """The body length if it may take the raw path: h11 accepted the head,
        so Content-Length is valid; h11 also knows when there is no body
        (HEAD, 204, 304), which is when it is not in SEND_BODY."""
        length = headers.get("content-length", "")
        if self._h11.their_state is not h11.SEND_BODY or "transfer-encoding" in headers or not length.isdigit():
            return None
        return int(length) if int(length) >= self._raw_body_min_bytes else None

    async def receive_body_chunk(self) -> bytes | bytearray | memoryview | None:
        """The next piece of the body, None at its end (the connection is then
        idle again or closed). A memoryview is valid only until the next
        call. Any failure closes the connection."""
        if self._raw_remaining is not None:
            return await self._receive_raw_chunk()
        try:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                return event.data
            if not isinstance(event, h11.EndOfMessage):
                raise RemoteProtocolError(f"unexpected {type(event).__name__} in a response body")
        except BaseException:
            await self.aclose()
            raise
        await self.response_closed()
        return None

    async def _receive_raw_chunk(self) -> bytes | bytearray | memoryview | None:
        assert self._raw_remaining is not None
        try:
            # What h11 buffered with the head goes first, through h11.
            with map_exceptions(_REMOTE):
                event = self._h11.next_event()
            if isinstance(event, h11.Data):
                self._raw_remaining -= len(event.data)
                return event.data
            if self._raw_remaining == 0:
                self._raw_remaining = None
                await self.aclose()  # h11 never saw the end: not reusable
                return None
            data = await self._stream.read(min(self._read_size, self._raw_remaining), self._timeouts.read)
            if not data:
                raise RemoteProtocolError(f"peer closed the connection with {self._raw_remaining} body bytes missing")
        except BaseException:
            await self.aclose()
            raise
        self._raw_remaining -= len(data)
        return data

    async def _next_event(self) -> h11.Event:
        while True:
            with map_exceptions(_REMOTE):
                event = self._h11.next_event()
            if event is h11.NEED_DATA:
                data = await self._stream.read(self._read_size, self._timeouts.read)
                # b"" tells h11 the peer closed; it then raises if a message
                # was cut short (RFC 9112 §8: an incomplete message).
                with map_exceptions(_REMOTE):
                    self._h11.receive_data(data)
                continue
            if event is h11.PAUSED:
                raise RemoteProtocolError("data after the response before the next request")
            if isinstance(event, h11.ConnectionClosed):
                raise RemoteProtocolError("server closed the connection without a complete response")
            return event

    async def response_closed(self) -> None:
        """After a response: back to IDLE if h11 can start a new cycle, else close."""
        if self.state is not ConnectionState.ACTIVE:
            return
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self.state = ConnectionState.IDLE
        else:
            await self.aclose()

    async def aclose(self) -> None:
        if self.state is not ConnectionState.CLOSED:
            self.state = ConnectionState.CLOSED
            await self._stream.aclose()
