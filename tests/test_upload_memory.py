"""Big uploads keep server memory flat: a 2 GiB raw PUT and multipart POST,
a 1 GiB tus PATCH, a 512 MiB session over 4 parallel connections."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from conftest import need_tool
from serverproc import TOKEN, ServerProc

SIZE = 2 * 1024 ** 3
MAX_GROWTH = 32 * 1024 * 1024


def _upload_sampling_rss(srv: ServerProc, args: list[str]) -> tuple[int, int]:
    baseline = srv.rss_bytes()
    peak = baseline
    done = threading.Event()

    def run() -> None:
        try:
            subprocess.run(args, check=True, timeout=240, capture_output=True)
        finally:
            done.set()

    t = threading.Thread(target=run)
    t.start()
    while not done.is_set():
        peak = max(peak, srv.rss_bytes())
        time.sleep(0.05)
    t.join()
    return baseline, peak


def test_two_gib_put_and_post_stay_flat(server: ServerProc, tmp_path: Path) -> None:
    src = tmp_path / "two-gib.bin"
    with open(src, "wb") as f:
        f.truncate(SIZE)  # sparse: the client reads zeros at memory speed
    curl = [need_tool("curl"), "-sf", "-o", "/dev/null", "-H", f"Authorization: Bearer {TOKEN}"]
    try:
        baseline, peak = _upload_sampling_rss(server, [*curl, "-T", str(src), f"{server.url}/files/mem/put.bin"])
        assert (server.root / "mem/put.bin").stat().st_size == SIZE
        assert peak - baseline < MAX_GROWTH, (baseline, peak)
        (server.root / "mem/put.bin").unlink()
        baseline, peak = _upload_sampling_rss(server, [*curl, "-F", f"f=@{src}", f"{server.url}/files/mem/"])
        assert (server.root / "mem/two-gib.bin").stat().st_size == SIZE
        assert peak - baseline < MAX_GROWTH, (baseline, peak)
    finally:
        for p in (server.root / "mem").glob("*"):
            p.unlink()


def test_tus_and_parallel_session_uploads_stay_flat(server: ServerProc, tmp_path: Path) -> None:
    """The running hash's feed (hashfeed) holds a bounded queue per upload:
    a 1 GiB tus upload in one PATCH, and a 512 MiB /uploads session over 4
    parallel curl connections, keep server memory flat too."""
    curl = [need_tool("curl"), "-sf", "-o", "/dev/null", "-H", f"Authorization: Bearer {TOKEN}", "-H", "Expect:"]
    size = SIZE // 2
    src = tmp_path / "one-gib.bin"
    with open(src, "wb") as f:
        f.truncate(size)
    status, headers, _ = server.request("POST", "/tus/", {
        "Tus-Resumable": "1.0.0", "Upload-Length": str(size), "Upload-Metadata": "filename bWVtLXR1cy5iaW4="})
    assert status == 201, headers
    baseline, peak = _upload_sampling_rss(server, [
        *curl, "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
        "-H", "Content-Type: application/offset+octet-stream", "-T", str(src), server.url + headers["location"]])
    assert (server.root / "mem-tus.bin").stat().st_size == size
    assert peak - baseline < MAX_GROWTH, (baseline, peak)
    (server.root / "mem-tus.bin").unlink()
    src.unlink()

    chunk = tmp_path / "chunk.bin"
    with open(chunk, "wb") as f:
        f.truncate(8 << 20)
    chunks = (SIZE // 4) // (8 << 20)
    status, _, body = server.request("POST", "/uploads", {"Content-Type": "application/json"},
                                     json.dumps({"path": "mem/session.bin", "size": chunks * (8 << 20)}).encode())
    assert status == 201, body
    sid = json.loads(body)["id"]
    baseline = peak = server.rss_bytes()
    senders = []
    for worker in range(4):
        args = []
        for index in range(worker, chunks, 4):
            args += ["-T", str(chunk), f"{server.url}/uploads/{sid}/chunks/{index}"]
        senders.append(subprocess.Popen([*curl, *args]))
    deadline = time.monotonic() + 240
    while any(p.poll() is None for p in senders) and time.monotonic() < deadline:
        peak = max(peak, server.rss_bytes())
        time.sleep(0.05)
    for p in senders:
        if p.poll() is None:
            p.kill()
    assert [p.wait() for p in senders] == [0] * 4
    status, _, body = server.request("POST", f"/uploads/{sid}/complete", {"Content-Type": "application/json"}, b"")
    assert status == 201, body
    assert peak - baseline < MAX_GROWTH, (baseline, peak)
    (server.root / "mem/session.bin").unlink()
