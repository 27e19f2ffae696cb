"""The ASGI `http.response.pathsend` and `http.response.zerocopysend`
extensions for uvicorn, with sendfile(2); and `http.response.informational`
(1xx interim responses).

Owns: a uvicorn HTTP protocol (`--http asgi_xfer.server.uvicornpathsend:PathsendHttpToolsProtocol`,
what `asgi-xfer serve` uses) that advertises both extensions in
`scope["extensions"]` and answers them by sending file bytes from the
kernel's page cache straight to the socket: pathsend a whole file by path,
zerocopysend a span of an open file (`file`, `offset`, `count`,
`more_body`), which may sit between ordinary body messages (the parts of a
multipart/byteranges response, a zip's file data between its headers).
`http.response.informational` (`status` 100-199 but 101, `headers`) writes
an interim response before `http.response.start`, as
draft-ietf-httpbis-resumable-upload's `104 Upload Resumption Supported`
needs (hypercorn's `http.response.early_hint` does the same for 103 only).
Nothing else about the server changes. Must not: know about asgi_xfer's
app; any ASGI app may use it.

Why: reading a file into Python and writing it to the socket copies every
byte twice and costs ~0.25 s of CPU per GB; sendfile costs a tenth of that,
which is what lets one worker keep up with nginx when 64 downloads share
two cores, with no frame buffers in memory.

How: the response headers go out through uvicorn as usual. The body is sent
by a worker thread calling `os.sendfile` on the connection's socket and,
when the socket is full, waiting for it with `poll` in that same thread: the
event loop never blocks and uvloop keeps the fd (reading the next request,
noticing a disconnect) — only the writing is borrowed, while uvicorn has
nothing else to write. Then the cycle completes as for a last body message.
"""

from __future__ import annotations

import asyncio
import os
import select
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

# Threads that may be sending files at once, each mostly asleep in poll():
# one per concurrent whole-file download.
SENDFILE_THREADS = 256
# sendfile(2) call size: big enough to need few calls, small enough that a
# disconnect or shutdown is noticed between calls.
SENDFILE_CALL_BYTES = 8 << 20
# How long one poll() waits before the thread checks whether to give up.
POLL_INTERVAL_MS = 500

# Request body buffered per connection before reading pauses. uvicorn stops
# at 64 KiB, which makes a 1 GiB upload ~16 000 pause/resume/wake-up rounds
# through the event loop; 1 MiB per message cuts that sixteenfold.
BODY_HIGH_WATER_BYTES = 1 << 20

# 1xx codes newer than Python's http.HTTPStatus (uvicorn's status lines come
# from it and would carry no reason phrase).
INFORMATIONAL_PHRASES = {104: b"Upload Resumption Supported"}

_pool = ThreadPoolExecutor(SENDFILE_THREADS, thread_name_prefix="xfer-sendfile")


def _sendfile_span(sock_fd: int, file_fd: int, offset: int, count: int, cycle: PathsendCycle) -> int:
    """Worker thread: send [offset, offset+count) of `file_fd`; returns
    bytes sent, fewer if the peer went away or the file ended early."""
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    sent = 0
    while sent < count and not cycle.disconnected and not cycle.abandoned:
        try:
            n = os.sendfile(sock_fd, file_fd, offset + sent, min(SENDFILE_CALL_BYTES, count - sent))
        except BlockingIOError:
            poller.poll(POLL_INTERVAL_MS)
            continue
        except (BrokenPipeError, ConnectionResetError):
            cycle.peer_gone = True
            break
        if n == 0:
            break  # the file shrank: the caller drops the connection
        sent += n
    return sent


class PathsendCycle(RequestResponseCycle):
    abandoned = False
    peer_gone = False

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.pathsend":
            fd = os.open(message["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                await self._send_span(fd, 0, self.expected_content_length, more_body=False)
            finally:
                os.close(fd)
        elif kind == "http.response.zerocopysend":
            file = message["file"]
            fd = file if isinstance(file, int) else file.fileno()
            offset = message.get("offset")
            offset = os.lseek(fd, 0, os.SEEK_CUR) if offset is None else offset
            count = message.get("count")
            count = os.fstat(fd).st_size - offset if count is None else count
            await self._send_span(fd, offset, count, more_body=message.get("more_body", False))
        elif kind == "http.response.informational":
            self._send_informational(message["status"], message.get("headers", []))
        else:
            await super().send(message)

    def _send_informational(self, status: int, headers: Any) -> None:
        if self.response_started or not 100 <= status < 200 or status == 101:
            raise RuntimeError("an informational response needs a 1xx status (not 101) before the response starts")
        # RFC 9110 §15.2: "A server MUST NOT send a 1xx response to an
        # HTTP/1.0 client."
        if self.disconnected or self.scope["http_version"] == "1.0":
            return
        phrase = INFORMATIONAL_PHRASES.get(status)
        content = [b"HTTP/1.1 %d %s\r\n" % (status, phrase) if phrase else STATUS_LINE[status]]
        for name, value in headers:
            if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header in an informational response.")
            content.extend([name.lower(), b": ", value, b"\r\n"])
        content.append(b"\r\n")
        self.transport.write(b"".join(content))

    async def receive(self) -> Any:
        """As uvicorn's, but the body bytes that arrived before the client
        went away still reach the app before `http.disconnect` (uvicorn drops
        them): a resumable upload keeps every byte that arrived
        (draft-ietf-httpbis-resumable-upload §4.4.2, tus)."""
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected and self.body and not self.response_complete:
            body, self.body = bytes(self.body), bytearray()
            return {"type": "http.request", "body": body, "more_body": self.more_body}
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body, self.body = bytes(self.body), bytearray()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def _send_span(self, fd: int, offset: int, count: int, *, more_body: bool) -> None:
        if not self.response_started or self.response_complete or self.chunked_encoding:
            raise RuntimeError("zero-copy sends need a started response with a Content-Length")
        if count > self.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        # What went before (headers, earlier body messages) goes first.
        while self.transport.get_write_buffer_size() and not self.disconnected:
            await asyncio.sleep(0.001)
        sock = self.transport.get_extra_info("socket")
        if self.disconnected or self.peer_gone or sock is None:
            return  # as uvicorn does after a disconnect: the send is dropped
        try:
            sent = await asyncio.get_running_loop().run_in_executor(
                _pool, _sendfile_span, sock.fileno(), fd, offset, count, self)
        except BaseException:
            self.abandoned = True  # cancelled: the thread stops at its next step
            self.transport.close()
            raise
        if sent != count:
            self.transport.close()  # a short body must not look complete
            if self.disconnected or self.peer_gone:
                return
            raise RuntimeError("file shorter than the bytes promised")
        self.expected_content_length -= count
        if more_body:
            return
        if self.expected_content_length != 0:
            raise RuntimeError("Response content shorter than Content-Length")
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


class PathsendHttpToolsProtocol(HttpToolsProtocol):
    def on_body(self, body: bytes) -> None:
        # As uvicorn's, with a larger threshold before it stops reading.
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        self.cycle.body += body
        if len(self.cycle.body) > BODY_HIGH_WATER_BYTES:
            self.flow.pause_reading()
        self.cycle.message_event.set()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"http.response.pathsend": {}, "http.response.zerocopysend": {},
                                    "http.response.informational": {}}

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The cycle's task has not run yet: give it the pathsend-aware send.
        if isinstance(self.cycle, RequestResponseCycle) and not isinstance(self.cycle, PathsendCycle):
            self.cycle.__class__ = PathsendCycle
