"""`asgi-xfer serve` runs uvicorn with the pathsend extension (sendfile)."""

from __future__ import annotations

import http.client
import os
import socket
import time

from conftest import write_file
from serverproc import TOKEN, ServerProc


def _pathsend_count(srv: ServerProc) -> int:
    body = srv.request("GET", "/metrics")[2].decode()
    return sum(int(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith("xfer_pathsend_responses_total{"))


def test_whole_files_go_by_sendfile_and_keep_alive_holds(server: ServerProc) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    write_file(server.root, "ps/a.bin", data)
    before = _pathsend_count(server)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        for _ in range(3):  # the same connection serves again after a sendfile body
            conn.request("GET", "/files/ps/a.bin", headers={"Authorization": f"Bearer {TOKEN}"})
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == data
        conn.request("GET", "/files/ps/a.bin", headers={"Authorization": f"Bearer {TOKEN}", "Range": "bytes=5-9"})
        resp = conn.getresponse()
        assert resp.status == 206 and resp.read() == data[5:10]
    finally:
        conn.close()
    assert _pathsend_count(server) - before == 3


def test_file_that_shrinks_mid_send_drops_the_connection(server: ServerProc) -> None:
    path = server.root / "ps/shrink.bin"
    path.parent.mkdir(exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(512 * 1024 * 1024)
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        sock.sendall(f"GET /files/ps/shrink.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        received = len(sock.recv(65536))
        os.truncate(path, 1024 * 1024)  # now shorter than its Content-Length
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
        assert not chunk, "the connection should have been closed"
        assert received < 512 * 1024 * 1024  # short, and the client can tell
    finally:
        sock.close()
