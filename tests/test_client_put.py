"""`asgi-xfer put` end to end: `/uploads` sessions, tus, and the plain PUT
fallback. The oracle is the source file's bytes as the server stored them
(read from its root, and downloaded back), and the server's own session
view for what it holds after a kill."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopback import LoopbackServer
from serverproc import TOKEN, ServerProc
from test_client_get import BackgroundLoop, DroppingProxy

from asgi_xfer.client import upload

MIB = 1024 * 1024
RUN_TIMEOUT_S = 60
KILL_WAIT_S = 30


@pytest.fixture
def background() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture
def cache_env(tmp_path: Path) -> dict[str, str]:
    """A private XDG cache, where `--tus` remembers its upload URLs."""
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def local_file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def put_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "asgi_xfer", "put", *args]


def run_put(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(put_cmd(*args), capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          env={**os.environ, **(env or {})})


def open_session(server: ServerProc, path: str, data: bytes) -> dict[str, object]:
    """What the server holds for (path, size, sha256): the SPEC returns the
    open session for the same triple, which is how a client finds it again."""
    body = json.dumps({"path": path, "size": len(data), "chunk_size": MIB,  # as the client asks
                       "sha256": hashlib.sha256(data).hexdigest()}).encode()
    status, _, raw = server.request("POST", "/uploads", {"content-type": "application/json"}, body)
    assert status in (200, 201), raw
    return json.loads(raw)


@pytest.mark.parametrize("parallel", [1, 4])
def test_put_through_an_upload_session(server: ServerProc, tmp_path: Path, parallel: int) -> None:
    data = payload(10 * MIB + 17, seed=parallel)
    source = local_file(tmp_path, "f.bin", data)
    result = run_put(str(source), f"{server.url}/files/u/f{parallel}.bin", "-j", str(parallel),
                     "--chunk-size", "1M", "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    assert "via uploads" in result.stderr
    assert (server.root / f"u/f{parallel}.bin").read_bytes() == data
    status, _, body = server.request("GET", f"/files/u/f{parallel}.bin")
    assert status == 200 and body == data


def test_same_content_again_is_an_instant_upload(server: ServerProc, tmp_path: Path) -> None:
    data = payload(3 * MIB, seed=7)
    source = local_file(tmp_path, "same.bin", data)
    assert run_put(str(source), f"{server.url}/files/u/same1.bin", "--token", TOKEN).returncode == 0
    result = run_put(str(source), f"{server.url}/files/u/dir/", "--token", TOKEN)  # keeps the local name
    assert result.returncode == 0, result.stderr
    assert "already on the server" in result.stderr
    assert (server.root / "u/dir/same.bin").read_bytes() == data


def test_empty_file(server: ServerProc, tmp_path: Path) -> None:
    source = local_file(tmp_path, "empty.bin", b"")
    result = run_put(str(source), f"{server.url}/files/u/empty.bin", "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    assert (server.root / "u/empty.bin").read_bytes() == b""


@pytest.mark.parametrize("args, code", [
    (["missing.bin", "{url}/files/u/x.bin", "--token", TOKEN], 6),
    (["{src}", "{url}/files/u/x.bin", "--token", "wrong"], 4),
    (["{src}", "{url}/elsewhere/x.bin", "--token", TOKEN], 2),
])
def test_put_errors(server: ServerProc, tmp_path: Path, args: list[str], code: int) -> None:
    source = local_file(tmp_path, "src.bin", b"abc")
    argv = [a.format(url=server.url, src=source) for a in args]
    result = subprocess.run(put_cmd(*argv), capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("asgi-xfer: error:")


def test_sigkill_mid_upload_then_rerun_resumes(server: ServerProc, tmp_path: Path, background: BackgroundLoop) -> None:
    data = payload(12 * MIB, seed=11)
    source = local_file(tmp_path, "k.bin", data)
    proxy = DroppingProxy(server.port, seed=0, max_drops=0, max_bytes_before_drop=1,
                          upload_rate_bytes_per_s=4 * MIB)
    background.run(proxy.start())
    try:
        proc = subprocess.Popen(put_cmd(str(source), f"http://127.0.0.1:{proxy.port}/files/u/k.bin", "-j", "2",
                                        "--chunk-size", "1M", "--token", TOKEN),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        received = wait_for_chunks(server, proc, "u/k.bin", data, at_least=3)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        background.run(proxy.stop())
    assert not (server.root / "u/k.bin").exists()
    result = run_put(str(source), f"{server.url}/files/u/k.bin", "-j", "4", "--chunk-size", "1M", "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    resumed = int(re.search(r"resumed: (\d+) bytes", result.stderr).group(1))  # type: ignore[union-attr]
    assert resumed >= received * MIB
    assert (server.root / "u/k.bin").read_bytes() == data


def wait_for_chunks(server: ServerProc, proc: subprocess.Popen[str], path: str, data: bytes, at_least: int) -> int:
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        received = open_session(server, path, data).get("received") or []
        if len(received) >= at_least:  # type: ignore[arg-type]
            return len(received)  # type: ignore[arg-type]
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"no chunks arrived before the kill (rc={proc.returncode}): {err}")


def test_upload_survives_dropped_connections(server: ServerProc, tmp_path: Path, background: BackgroundLoop) -> None:
    data = payload(8 * MIB, seed=12)
    source = local_file(tmp_path, "d.bin", data)
    proxy = DroppingProxy(server.port, seed=3, max_drops=6, max_bytes_before_drop=3 * MIB, cut_uploads=True)
    background.run(proxy.start())
    try:
        result = run_put(str(source), f"http://127.0.0.1:{proxy.port}/files/u/d.bin", "-j", "4",
                         "--chunk-size", "1M", "--token", TOKEN)
    finally:
        background.run(proxy.stop())
    assert result.returncode == 0, result.stderr
    assert proxy.drops_left == 0
    assert (server.root / "u/d.bin").read_bytes() == data


# tus -------------------------------------------------------------------------------------------

def test_put_tus(server: ServerProc, tmp_path: Path, cache_env: dict[str, str]) -> None:
    data = payload(5 * MIB + 3, seed=13)
    source = local_file(tmp_path, "t.bin", data)
    result = run_put(str(source), f"{server.url}/files/tus/t.bin", "--tus", "--chunk-size", "1M",
                     "--token", TOKEN, env=cache_env)
    assert result.returncode == 0, result.stderr
    assert "via tus" in result.stderr
    assert (server.root / "tus/t.bin").read_bytes() == data


def test_sigkill_mid_tus_upload_then_rerun_resumes(server: ServerProc, tmp_path: Path, background: BackgroundLoop,
                                                    cache_env: dict[str, str]) -> None:
    data = payload(12 * MIB, seed=14)
    source = local_file(tmp_path, "tk.bin", data)
    proxy = DroppingProxy(server.port, seed=0, max_drops=0, max_bytes_before_drop=1,
                          upload_rate_bytes_per_s=4 * MIB)
    background.run(proxy.start())
    store = Path(cache_env["XDG_CACHE_HOME"]) / "asgi-xfer" / "tus-uploads.json"
    try:
        proc = subprocess.Popen(put_cmd(str(source), f"http://127.0.0.1:{proxy.port}/files/tus/tk.bin", "--tus",
                                        "--chunk-size", "1M", "--token", TOKEN),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **cache_env})
        offset = wait_for_tus_offset(server, proc, store, at_least=2 * MIB)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        # The upload is remembered by its endpoint too (as tus clients do), so
        # the rerun goes the same way, now at full speed.
        proxy.rate = None
        result = run_put(str(source), f"http://127.0.0.1:{proxy.port}/files/tus/tk.bin", "--tus",
                         "--chunk-size", "1M", "--token", TOKEN, env=cache_env)
    finally:
        background.run(proxy.stop())
    assert result.returncode == 0, result.stderr
    resumed = int(re.search(r"resumed: (\d+) bytes", result.stderr).group(1))  # type: ignore[union-attr]
    assert resumed >= offset
    assert (server.root / "tus/tk.bin").read_bytes() == data


def wait_for_tus_offset(server: ServerProc, proc: subprocess.Popen[str], store: Path, at_least: int) -> int:
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            (location,) = json.loads(store.read_text()).values()
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        path = "/" + location.split("/", 3)[3]  # the proxy's URL; ask the server itself
        status, headers, _ = server.request("HEAD", path, {"tus-resumable": "1.0.0"})
        if status == 200 and int(headers.get("upload-offset", "0")) >= at_least:
            return int(headers["upload-offset"])
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"no tus progress before the kill (rc={proc.returncode}): {err}")


# A server without /uploads: one plain PUT ------------------------------------------------------

class PutOnlyServer(LoopbackServer):
    """404 for everything but `PUT /files/...`, whose body and Content-Digest it keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[str, tuple[bytes, str]] = {}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ")
                fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in head[1:] if ln)}
                body = await reader.readexactly(int(fields.get("content-length", "0")))
                if method == "PUT" and target.startswith("/files/"):
                    self.stored[target] = (body, fields.get("content-digest", ""))
                    reply = json.dumps({"path": target[7:], "size": len(body),
                                        "sha256": hashlib.sha256(body).hexdigest()}).encode()
                    writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply))
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.transport.abort()


def test_server_without_uploads_gets_a_plain_put(tmp_path: Path, background: BackgroundLoop) -> None:
    data = payload(3 * MIB + 1, seed=15)
    source = local_file(tmp_path, "p.bin", data)
    plain = PutOnlyServer()
    background.run(plain.start())
    try:
        seen: list[int] = []
        result = asyncio.run(upload(source, f"http://127.0.0.1:{plain.port}/files/a/p.bin",
                                    progress=lambda done, total: seen.append(done)))
    finally:
        background.run(plain.stop())
    body, digest = plain.stored["/files/a/p.bin"]
    assert body == data
    # RFC 9530 §2: sha-256 as a byte sequence, base64 between colons.
    assert digest == f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"
    assert result.method == "put" and result.path == "a/p.bin"
    assert seen[-1] == len(data)
