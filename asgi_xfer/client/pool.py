"""A bounded keep-alive pool of HTTP/1.1 connections, per origin.

Owns: how many connections exist (a semaphore: at most `max_connections`,
waiting at most `timeouts.pool`), which idle one a request reuses, retrying
once on a fresh connection when a reused one turns out to be stale, and
closing everything on exit. Must not: retry on errors of the server's making
(`retry` decides those) or interpret responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping

from .connection import Body, HTTPConnection, Response, Timeouts
from .errors import NetworkError, PoolTimeout, RemoteProtocolError, map_exceptions
from .models import URL, format_request_headers, parse_url
from .streams import open_stream

# Defaults: enough for `-j 16` segments with a spare, like aria2's -x 16 cap.
MAX_CONNECTIONS = 17
MAX_IDLE_PER_ORIGIN = 17
USER_AGENT = "asgi-xfer/0.1"

Origin = tuple[str, str, int]


class ConnectionPool:
    """`async with pool.stream("GET", url) as response:`; the connection goes
    back to the pool when the body was read to the end, else it is closed."""

    def __init__(self, *, max_connections: int = MAX_CONNECTIONS, timeouts: Timeouts | None = None,
                 ssl_context: ssl.SSLContext | None = None, headers: Mapping[str, str] | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self._ssl_context = ssl_context
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, list[HTTPConnection]] = {}
        self._default_headers = {"user-agent": USER_AGENT, **{k.lower(): v for k, v in (headers or {}).items()}}

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await connection.aclose()

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: URL | str, *, headers: Mapping[str, str] | None = None,
                     body: Body = None) -> AsyncIterator[Response]:
        """One exchange; the response head is ready inside the block."""
        url = parse_url(url) if isinstance(url, str) else url
        fields = format_request_headers(url, {**self._default_headers, **{k.lower(): v for k, v in (headers or {}).items()}})
        with map_exceptions({asyncio.TimeoutError: PoolTimeout}):
            async with asyncio.timeout(self.timeouts.pool):
                await self._slots.acquire()
        try:
            connection, response = await self._send(url, method, fields, body)
            try:
                yield response
            finally:
                await response.aclose()
                await self._release(url.origin, connection)
        finally:
            self._slots.release()

    async def request(self, method: str, url: URL | str, *, headers: Mapping[str, str] | None = None,
                      body: Body = None) -> tuple[Response, bytes]:
        """One exchange with the body read whole (for small JSON answers)."""
        async with self.stream(method, url, headers=headers, body=body) as response:
            return response, await response.read()

    async def _send(self, url: URL, method: str, fields: list[tuple[bytes, bytes]],
                    body: Body) -> tuple[HTTPConnection, Response]:
        connection = await self._take_idle(url.origin)
        if connection is not None:
            try:
                return connection, await connection.send_request(method, url.target, fields, body)
            except (NetworkError, RemoteProtocolError):
                # A keep-alive connection the server closed while idle: the
                # request never reached it, so one retry on a fresh one is
                # safe when the body can be sent again.
                if not (body is None or isinstance(body, bytes)):
                    raise
        connection = await self._open(url)
        return connection, await connection.send_request(method, url.target, fields, body)

    async def _take_idle(self, origin: Origin) -> HTTPConnection | None:
        idle = self._idle.get(origin, [])
        while idle:
            connection = idle.pop()
            if connection.is_reusable():
                return connection
            await connection.aclose()
        return None

    async def _open(self, url: URL) -> HTTPConnection:
        stream = await open_stream(url.scheme, url.host, url.port, timeout=self.timeouts.connect,
                                   ssl_context=self._ssl_context)
        return HTTPConnection(stream, timeouts=self.timeouts)

    async def _release(self, origin: Origin, connection: HTTPConnection) -> None:
        idle = self._idle.setdefault(origin, [])
        if connection.is_reusable() and len(idle) < MAX_IDLE_PER_ORIGIN:
            idle.append(connection)
        else:
            await connection.aclose()
