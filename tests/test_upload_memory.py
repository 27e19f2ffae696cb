"""A 2 GiB upload (raw PUT, then multipart POST) keeps server memory flat."""

from __future__ import annotations

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
