"""Peer: the ceiling. An HTTP/1.1 server that reads each body and drops it.

It answers every request 204 once the whole ``Content-Length`` body has been
received (into one reused buffer, nothing kept), so a curl upload to it
measures the client and loopback alone. One blocking thread per connection;
no chunked bodies (curl -T sends a Content-Length). Harness use only.
"""

from __future__ import annotations

import argparse
import socket
import socketserver

RECV_BUFFER_BYTES = 1 << 20
# Request heads are a few hundred bytes; anything larger is not our client.
MAX_HEAD_BYTES = 64 * 1024
RESPONSE = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


def parse_content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class DiscardHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray(RECV_BUFFER_BYTES)
        view = memoryview(buffer)
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                if len(pending) > MAX_HEAD_BYTES:
                    return
                data = sock.recv(RECV_BUFFER_BYTES)
                if not data:
                    return
                pending += data
            head, _, rest = pending.partition(b"\r\n\r\n")
            remaining = parse_content_length(head) - len(rest)
            pending = b"" if remaining >= 0 else rest[len(rest) + remaining:]
            while remaining > 0:
                got = sock.recv_into(view, min(remaining, RECV_BUFFER_BYTES))
                if not got:
                    return
                remaining -= got
            sock.sendall(RESPONSE)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with Server((args.host, args.port), DiscardHandler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
