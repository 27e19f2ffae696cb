"""Memory stays flat whatever the file size and however slow the reader.

A 512 MiB file (sparse: no disk used, read like any other) is downloaded by
slow readers while the server's RSS is sampled. Backpressure must hold the
server to about one frame per stream, and the frame budget must shrink frames
when many streams run at once.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from serverproc import TOKEN, ServerProc, free_port, start_cli, start_command

BIG_BYTES = 512 * 1024 * 1024
SLOW_READ_BYTES = 16 * 1024
SLOW_READ_PAUSE_S = 0.002
SLOW_RUN_S = 3.0


@pytest.fixture(scope="module", params=["sendfile", "frames"])
def mem_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """`asgi-xfer serve` (uvicorn with the zero-copy extensions), and stock
    uvicorn, where every byte goes through the app's frames."""
    root = tmp_path_factory.mktemp(request.param)
    with open(root / "big.sparse", "wb") as f:
        f.truncate(BIG_BYTES)
    if request.param == "sendfile":
        srv = start_cli(root)
    else:
        port = free_port()
        srv = start_command([sys.executable, "-m", "uvicorn", "--factory", "asgi_xfer:create_app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], root, port,
                            env={"XFER_ROOT": str(root), "XFER_TOKENS": TOKEN})
    try:
        yield srv
    finally:
        srv.stop()


def _slow_reader(srv: ServerProc, stop: threading.Event, received: list[int], ranged: bool) -> None:
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    # A small receive buffer makes the kernel push back on the server early.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        extra = "Range: bytes=1-\r\n" if ranged else ""
        sock.sendall(f"GET /files/big.sparse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n{extra}\r\n".encode())
        total = 0
        while not stop.is_set():
            chunk = sock.recv(SLOW_READ_BYTES)
            if not chunk:
                break
            total += len(chunk)
            time.sleep(SLOW_READ_PAUSE_S)
        received.append(total)
    finally:
        sock.close()


def _peak_rss_during(srv: ServerProc, readers: int, ranged: bool) -> tuple[int, int, list[int]]:
    baseline = srv.rss_bytes()
    stop, received = threading.Event(), []
    threads = [threading.Thread(target=_slow_reader, args=(srv, stop, received, ranged)) for _ in range(readers)]
    for t in threads:
        t.start()
    peak = baseline
    deadline = time.monotonic() + SLOW_RUN_S
    while time.monotonic() < deadline:
        peak = max(peak, srv.rss_bytes())
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    return baseline, peak, received


@pytest.mark.parametrize("ranged", [False, True], ids=["whole", "range"])
def test_one_slow_reader_keeps_memory_flat(mem_server: ServerProc, ranged: bool) -> None:
    baseline, peak, received = _peak_rss_during(mem_server, readers=1, ranged=ranged)
    assert received and received[0] > 1024 * 1024  # it really was streaming
    assert received[0] < BIG_BYTES  # and really was slow: not all buffered
    assert peak - baseline < 16 * 1024 * 1024, (baseline, peak)


@pytest.mark.parametrize("ranged", [False, True], ids=["whole", "range"])
def test_many_slow_readers_share_the_frame_budget(mem_server: ServerProc, ranged: bool) -> None:
    server = mem_server
    baseline, peak, received = _peak_rss_during(server, readers=32, ranged=ranged)
    assert len(received) == 32 and min(received) > 0
    # 32 streams x 1 MiB frames would be 32 MiB+ of frames; the budget holds
    # frames in flight to 16 MiB in total.
    assert peak - baseline < 40 * 1024 * 1024, (baseline, peak)
    # The server recovers: every stream ended, nothing left active.
    status, _, body = server.request("GET", "/metrics")
    deadline = time.monotonic() + 10
    while b"xfer_active_transfers{" in body and not any(
        line.startswith("xfer_active_transfers{") and line.endswith(" 0") for line in body.decode().splitlines()
    ):
        assert time.monotonic() < deadline, body.decode()
        time.sleep(0.1)
        status, _, body = server.request("GET", "/metrics")
