"""The ASGI `http.response.pathsend` extension for uvicorn, with sendfile(2).

Owns: a uvicorn HTTP protocol (`--http asgi_xfer.uvicornpathsend:PathsendHttpToolsProtocol`,
what `asgi-xfer serve` uses) that advertises the extension in
`scope["extensions"]` and answers a pathsend message by sending the file
from the kernel's page cache straight to the socket. Nothing else about the
server changes. Must not: know about asgi_xfer's app; any ASGI app may use it.

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

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

# Threads that may be sending files at once, each mostly asleep in poll():
# one per concurrent whole-file download.
SENDFILE_THREADS = 256
# sendfile(2) call size: big enough to need few calls, small enough that a
# disconnect or shutdown is noticed between calls.
SENDFILE_CALL_BYTES = 8 << 20
# How long one poll() waits before the thread checks whether to give up.
POLL_INTERVAL_MS = 500

_pool = ThreadPoolExecutor(SENDFILE_THREADS, thread_name_prefix="xfer-sendfile")


def _send_file(sock_fd: int, path: str, length: int, cycle: PathsendCycle) -> int:
    """Worker thread: send `length` bytes of `path`; returns bytes sent."""
    file_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    sent = 0
    try:
        while sent < length and not cycle.disconnected and not cycle.abandoned:
            try:
                n = os.sendfile(sock_fd, file_fd, sent, min(SENDFILE_CALL_BYTES, length - sent))
            except BlockingIOError:
                poller.poll(POLL_INTERVAL_MS)
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if n == 0:
                break  # the file shrank: the caller drops the connection
            sent += n
    finally:
        os.close(file_fd)
    return sent


class PathsendCycle(RequestResponseCycle):
    abandoned = False

    async def send(self, message: Any) -> None:
        if message["type"] != "http.response.pathsend":
            await super().send(message)
            return
        if not self.response_started or self.response_complete or self.chunked_encoding:
            raise RuntimeError("pathsend needs a started response with a Content-Length")
        length = self.expected_content_length
        # The headers may still sit in the transport's buffer; they go first.
        while self.transport.get_write_buffer_size() and not self.disconnected:
            await asyncio.sleep(0.001)
        sock = self.transport.get_extra_info("socket")
        if self.disconnected or sock is None:
            return
        try:
            sent = await asyncio.get_running_loop().run_in_executor(_pool, _send_file, sock.fileno(), message["path"], length, self)
        except BaseException:
            self.abandoned = True  # cancelled: the thread stops at its next step
            self.transport.close()
            raise
        if sent != length:
            self.transport.close()  # a short body must not look complete
            if not self.disconnected:
                raise RuntimeError("file shorter than its Content-Length")
            return
        self.expected_content_length = 0
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


class PathsendHttpToolsProtocol(HttpToolsProtocol):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"http.response.pathsend": {}}

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The cycle's task has not run yet: give it the pathsend-aware send.
        if isinstance(self.cycle, RequestResponseCycle) and not isinstance(self.cycle, PathsendCycle):
            self.cycle.__class__ = PathsendCycle
