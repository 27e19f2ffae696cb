"""One HTTP exchange over ASGI: the only module that talks to `receive` and `send`.

Owns: reading the request (headers, query, body stream, disconnect watch),
sending a response (start, body frames with `more_body`, `pathsend`, the JSON
error envelope) and the per-response accounting for metrics. Must not: decide
anything about the protocol (ranges, preconditions, auth): handlers ask the
pure cores and tell this module what to send.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from ..protocol.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, XferError
from ..protocol.mediatypes import is_json
from .metrics import METRICS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A JSON request body (POST /sign, POST /uploads) is a few hundred bytes; 64 KiB
# leaves room for long paths while refusing a body that would sit in memory.
MAX_JSON_BODY_BYTES = 64 * 1024


class ClientDisconnected(Exception):
    """The client went away; the handler stops and nothing more is sent."""


@functools.lru_cache(maxsize=256)
def _encode_name(name: str) -> bytes:
    # Response field names come from a small fixed set: encode each once.
    return name.encode("latin-1")


def _decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    # Field lines with one name are combined with ", " (RFC 9110 §5.3), which
    # is what every list-valued header we read (Range, If-Match, ...) expects.
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _relative_path(scope: Scope) -> str:
    # Servers disagree on whether `path` includes `root_path` (uvicorn and
    # Starlette's Mount do, older servers do not); strip it only when present,
    # as Django's ASGI handler does.
    path: str = scope.get("path") or "/"
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return path


class Exchange:
    """The request as read from `scope`, and the means to answer it."""

    __slots__ = (
        "scope", "method", "path", "headers", "_query", "_receive", "_send",
        "started", "status", "disconnected", "_watch", "extra_headers",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path = _relative_path(scope)
        self.headers = _decode_headers(scope.get("headers") or ())
        self._query: dict[str, list[str]] | None = None
        self._receive = receive
        self._send = send
        self.started = False
        self.status = 0
        self.disconnected = False
        self._watch: asyncio.Task[None] | None = None
        # Added to every response, errors too (tus's Tus-Resumable, CORS).
        self.extra_headers: list[tuple[str, str]] = []

    # -- request ---------------------------------------------------------

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            raw = self.scope.get("query_string") or b""
            self._query = parse_qs(raw.decode("latin-1"), keep_blank_values=True) if raw else {}
        return self._query

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def query_flag(self, name: str) -> bool:
        return (self.query_value(name) or "").lower() in ("1", "true", "yes", "on")

    @property
    def supports_pathsend(self) -> bool:
        return "http.response.pathsend" in (self.scope.get("extensions") or {})

    @property
    def supports_zerocopy(self) -> bool:
        return "http.response.zerocopysend" in (self.scope.get("extensions") or {})

    async def iter_body(self) -> AsyncIterator[bytes]:
        """The request body as it arrives; `ClientDisconnected` if it stops short."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise ClientDisconnected()
            body = message.get("body", b"")
            if body:
                METRICS.bytes_in += len(body)
                yield body
            if not message.get("more_body", False):
                return

    async def read_json(self, limit: int = MAX_JSON_BODY_BYTES) -> Any:
        """The JSON body, or None when there is none; 415 unless it is sent
        as JSON (`mediatypes.is_json`), an empty body with no type aside."""
        content_type = self.headers.get("content-type")
        if content_type is not None and not is_json(content_type):
            raise UnsupportedMediaType("the body must be sent as application/json")
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.iter_body():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"JSON body larger than {limit} bytes")
            chunks.append(chunk)
        if chunks and content_type is None:
            raise UnsupportedMediaType("the body must be sent as application/json")
        try:
            return json.loads(b"".join(chunks) or b"null")
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("request body is not valid JSON") from None

    def watch_disconnect(self) -> None:
        """Notice a client that leaves mid-response (uvicorn's `send` then
        returns silently, so a long download would otherwise read on)."""
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._watch_receive())

    async def _watch_receive(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    # -- response --------------------------------------------------------

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        self.started = True
        self.status = status
        METRICS.count_response(status)
        await self._send({
            "type": "http.response.start",
            "status": status,
            "headers": [(_encode_name(k), v.encode("latin-1")) for k, v in (*headers, *self.extra_headers)],
        })

    async def body(self, data: bytes, more: bool = False) -> None:
        if self.disconnected:
            raise ClientDisconnected()
        METRICS.bytes_out += len(data)
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def wait_writable(self) -> None:
        """Wait until the server has flushed what we sent before.

        An empty body message: servers apply backpressure at the start of
        `send` (uvicorn awaits its drain there), so this returns once the
        previous frame has left. Reading the next frame only after that keeps
        one frame per stream in memory instead of two.
        """
        if self.disconnected:
            raise ClientDisconnected()
        await self._send({"type": "http.response.body", "body": b"", "more_body": True})

    async def zerocopy(self, fd: int, offset: int, count: int, more: bool) -> None:
        """A span of an open file as body bytes, sent by the server from the
        page cache (ASGI zero-copy send extension)."""
        if self.disconnected:
            raise ClientDisconnected()
        METRICS.bytes_out += count
        # The extension passes a file object; closefd=False: the fd stays ours.
        with open(fd, "rb", buffering=0, closefd=False) as file:
            await self._send({"type": "http.response.zerocopysend", "file": file,
                              "offset": offset, "count": count, "more_body": more})

    async def pathsend(self, path: str, size: int) -> None:
        METRICS.pathsend_responses += 1
        METRICS.bytes_out += size
        await self._send({"type": "http.response.pathsend", "path": path})

    async def informational(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """A 1xx interim response before the final one, where the server
        offers the `http.response.informational` extension (ours does:
        `uvicornpathsend`); elsewhere nothing is sent, which every 1xx use
        must tolerate (RFC 9110 §15.2: a client may never see them)."""
        if self.started or "http.response.informational" not in (self.scope.get("extensions") or {}):
            return
        await self._send({"type": "http.response.informational", "status": status,
                          "headers": [(_encode_name(k), v.encode("latin-1")) for k, v in headers]})

    async def respond(self, status: int, headers: Iterable[tuple[str, str]], data: bytes = b"") -> None:
        await self.start(status, headers)
        await self.body(data)

    async def json(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        await self.respond(status, [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("cache-control", "no-store"),
            *headers,
        ], b"" if self.method == "HEAD" else data)

    async def error(self, exc: XferError) -> None:
        payload: dict[str, Any] = {"error": {**exc.details, "code": exc.code, "message": exc.message}}
        problem_type = getattr(exc, "problem_type", None)
        if problem_type is None:
            await self.json(exc.status, payload, exc.headers.items())
            return
        # An RFC 9457 problem type (the resumable upload draft's): its members
        # at the top, our `error` envelope kept as an extension member.
        problem = {"type": problem_type, "title": getattr(exc, "problem_title", exc.code), "status": exc.status,
                   "detail": exc.message, **exc.details, "error": {"code": exc.code, "message": exc.message}}
        data = json.dumps(problem, ensure_ascii=False, separators=(",", ":")).encode()
        await self.respond(exc.status, [
            ("content-type", "application/problem+json"), ("content-length", str(len(data))),
            ("cache-control", "no-store"), *exc.headers.items()], b"" if self.method == "HEAD" else data)
