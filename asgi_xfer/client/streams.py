"""Byte streams under an HTTP connection: plain TCP, TLS, and the interface.

Owns: opening a socket (or TLS session) to an origin, reading and writing
with timeouts, and translating socket errors to `errors` at this boundary.
Must not: know about HTTP; `connection` drives h11 over any `AsyncStream`,
which is what lets the tests feed it a list of bytes instead of a socket.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from typing import Protocol

from .errors import (
    ConnectError,
    ConnectTimeout,
    ReadError,
    ReadTimeout,
    WriteError,
    WriteTimeout,
    map_exceptions,
)

# One recv may return this much. Large reads mean fewer trips through the
# event loop and h11 per MiB (curl uses 100 KiB-512 KiB, aria2 16 KiB-1 MiB);
# the buffer is reused, so a large size costs no allocation per read.
READ_BUFFER_BYTES = 1024 * 1024
# StreamReader's buffer limit for TLS: pause the transport past this.
TLS_STREAM_LIMIT_BYTES = 1024 * 1024


class AsyncStream(Protocol):
    """What `HTTPConnection` needs from a transport."""

    async def read(self, max_bytes: int, timeout: float | None) -> bytes | memoryview:
        """Up to `max_bytes`, b"" at EOF. A memoryview is only valid until the next read."""
        ...

    async def write(self, data: bytes, timeout: float | None) -> None: ...

    async def aclose(self) -> None: ...

    def is_readable(self) -> bool:
        """True when an idle connection has data or EOF waiting: the server
        closed it (or broke protocol), so it must not be reused."""
        ...


class SocketStream:
    """A plain TCP socket driven through the loop's sock_* calls into one
    reused buffer: no StreamReader copy, no allocation per read."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray(READ_BUFFER_BYTES)
        self._view = memoryview(self._buffer)

    async def read(self, max_bytes: int, timeout: float | None) -> memoryview:
        with map_exceptions({asyncio.TimeoutError: ReadTimeout, OSError: ReadError}):
            async with asyncio.timeout(timeout):
                n = await self._loop.sock_recv_into(self._sock, self._view[: min(max_bytes, len(self._buffer))])
        return self._view[:n]

    async def write(self, data: bytes, timeout: float | None) -> None:
        if not data:
            return
        with map_exceptions({asyncio.TimeoutError: WriteTimeout, OSError: WriteError}):
            async with asyncio.timeout(timeout):
                await self._loop.sock_sendall(self._sock, data)

    async def aclose(self) -> None:
        self._view.release()
        self._sock.close()

    def is_readable(self) -> bool:
        if self._sock.fileno() < 0:
            return True
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)


class TLSStream:
    """TLS through asyncio's SSL transport (sock_* calls cannot do TLS)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None) -> bytes:
        with map_exceptions({asyncio.TimeoutError: ReadTimeout, OSError: ReadError}):
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, data: bytes, timeout: float | None) -> None:
        with map_exceptions({asyncio.TimeoutError: WriteTimeout, OSError: WriteError}):
            async with asyncio.timeout(timeout):
                self._writer.write(data)
                await self._writer.drain()

    async def aclose(self) -> None:
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 5)
        except (OSError, asyncio.TimeoutError):
            pass

    def is_readable(self) -> bool:
        if self._reader.at_eof() or self._writer.is_closing():
            return True
        sock = self._writer.get_extra_info("socket")
        if sock is None:
            return True
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)


async def _connect_socket(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError = OSError(f"no address for {host}")
    for family, type_, proto, _, address in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    raise last


async def open_stream(scheme: str, host: str, port: int, *, timeout: float | None,
                      ssl_context: ssl.SSLContext | None = None) -> AsyncStream:
    """A connected stream to `host:port`, TLS when `scheme` is https."""
    with map_exceptions({asyncio.TimeoutError: ConnectTimeout, OSError: ConnectError}):
        async with asyncio.timeout(timeout):
            if scheme == "https":
                context = ssl_context or ssl.create_default_context()
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host, limit=TLS_STREAM_LIMIT_BYTES)
                return TLSStream(reader, writer)
            return SocketStream(await _connect_socket(host, port))
