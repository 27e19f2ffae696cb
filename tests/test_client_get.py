"""`asgi-xfer get` end to end: the real server, nginx, a proxy that drops
connections, and tiny servers that ignore Range or If-Range.

The expected bytes are always the source file's (or, after a replace, the
new file's): never the client's own output. Kills are SIGKILL by pid.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import need_tool, write_file
from loopback import LoopbackServer
from serverproc import TOKEN, ServerProc, free_port, start_cli, start_command

from asgi_xfer.client import download

MIB = 1024 * 1024
RUN_TIMEOUT_S = 60
KILL_WAIT_S = 20


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def run_get(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "asgi_xfer", "get", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          env={**os.environ, **(env or {})})


def start_get(*args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "asgi_xfer", "get", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen[str], control: Path, min_done: int) -> dict[str, Any]:
    """SIGKILL `proc` once its control file records `min_done` bytes; return
    the control file as it was at the kill."""
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            state = json.loads(control.read_bytes())
        except (OSError, ValueError):
            state = None
        if state and sum(done for _, _, done in state["segments"]) >= min_done:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
            return state
        time.sleep(0.02)
    proc.kill()
    out, err = proc.communicate(timeout=10)
    raise AssertionError(f"no progress to kill at (rc={proc.returncode}): {err}")


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))


def replace_file(path: Path, data: bytes) -> None:
    """Atomic replace, as an editor or our own PUT would do it."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """The CLI server at 2 MB/s per response: slow enough to kill mid-way."""
    srv = start_cli(tmp_path_factory.mktemp("slow"), "--rate-limit", "2M")
    try:
        yield srv
    finally:
        srv.stop()


# The real server --------------------------------------------------------------------

@pytest.mark.parametrize("segments", [1, 8])
def test_get_is_byte_identical(server: ServerProc, tmp_path: Path, segments: int) -> None:
    data = payload(24 * MIB + 123, seed=segments)
    write_file(server.root, f"g/big{segments}.bin", data)
    out = tmp_path / "out.bin"
    result = run_get(f"{server.url}/files/g/big{segments}.bin", "-o", str(out), "-j", str(segments), "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data
    assert leftovers(out) == []


def test_default_output_name_and_token_from_env(server: ServerProc, tmp_path: Path) -> None:
    data = payload(1000, seed=3)
    write_file(server.root, "g/named file.txt", data)
    result = subprocess.run([sys.executable, "-m", "asgi_xfer", "get", f"{server.url}/files/g/named%20file.txt"],
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path,
                            env={**os.environ, "XFER_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "named file.txt").read_bytes() == data


def test_empty_file(server: ServerProc, tmp_path: Path) -> None:
    write_file(server.root, "g/empty.bin", b"")
    out = tmp_path / "empty.bin"
    result = run_get(f"{server.url}/files/g/empty.bin", "-o", str(out), "-j", "4", "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b"" and leftovers(out) == []


@pytest.mark.parametrize("path, token, code", [("g/missing.bin", TOKEN, 4), ("g/x.bin", "wrong", 4)])
def test_http_errors_exit_4(server: ServerProc, tmp_path: Path, path: str, token: str, code: int) -> None:
    write_file(server.root, "g/x.bin", b"x")
    result = run_get(f"{server.url}/files/{path}", "-o", str(tmp_path / "o"), "--token", token)
    assert result.returncode == code
    assert re.search(r"HTTP (401|404)", result.stderr)
    assert not (tmp_path / "o").exists()


def test_sha256_mismatch_fails_and_leaves_nothing(server: ServerProc, tmp_path: Path) -> None:
    data = payload(3 * MIB, seed=4)
    write_file(server.root, "g/sum.bin", data)
    out = tmp_path / "sum.bin"
    wrong = hashlib.sha256(data + b"!").hexdigest()
    result = run_get(f"{server.url}/files/g/sum.bin", "-o", str(out), "-j", "2", "--sha256", wrong, "--token", TOKEN)
    assert result.returncode == 5, result.stderr
    assert "mismatch" in result.stderr
    assert not out.exists() and leftovers(out) == []
    right = hashlib.sha256(data).hexdigest()
    result = run_get(f"{server.url}/files/g/sum.bin", "-o", str(out), "--sha256", right, "--token", TOKEN)
    assert result.returncode == 0 and "sha-256 verified" in result.stderr
    assert out.read_bytes() == data


def test_python_api_reports_progress(server: ServerProc, tmp_path: Path) -> None:
    data = payload(5 * MIB, seed=5)
    write_file(server.root, "g/api.bin", data)
    seen: list[tuple[int, int | None]] = []
    result = asyncio.run(download(f"{server.url}/files/g/api.bin", tmp_path / "api.bin", segments=3,
                                  token=TOKEN, progress=lambda done, total: seen.append((done, total))))
    assert (tmp_path / "api.bin").read_bytes() == data
    assert result.size == len(data) and result.resumed_bytes == 0
    assert seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


# Kill and resume ------------------------------------------------------------------------

@pytest.mark.parametrize("segments", [1, 4])
def test_sigkill_then_rerun_resumes_every_segment(slow: ServerProc, tmp_path: Path, segments: int) -> None:
    data = payload(3 * segments * MIB if segments > 1 else 6 * MIB, seed=10 + segments)
    write_file(slow.root, f"k/file{segments}.bin", data)
    out = tmp_path / "file.bin"
    url = f"{slow.url}/files/k/file{segments}.bin"
    proc = start_get(url, "-o", str(out), "-j", str(segments), "--token", TOKEN)
    state = kill_when(proc, tmp_path / "file.bin.part.json", min_done=2 * MIB)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    if segments > 1:
        assert sum(1 for _, _, done in state["segments"] if done) == segments  # every segment had started
    result = run_get(url, "-o", str(out), "-j", str(segments), "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    resumed = int(re.search(r"resumed at (\d+) bytes", result.stderr).group(1))  # type: ignore[union-attr]
    assert resumed >= 2 * MIB
    assert out.read_bytes() == data
    assert leftovers(out) == []


@pytest.mark.parametrize("new_size", [8 * MIB, 9 * MIB], ids=["same-size", "bigger"])
def test_file_replaced_between_attempts_gives_the_new_file(slow: ServerProc, tmp_path: Path, new_size: int) -> None:
    """Same size is the case size-only resumers (curl -C -, wget -c, aria2)
    get wrong: they would splice the old head onto the new tail."""
    old, new = payload(8 * MIB, seed=20), payload(new_size, seed=21)
    source = write_file(slow.root, f"r/file{new_size}.bin", old)
    out = tmp_path / "file.bin"
    url = f"{slow.url}/files/r/file{new_size}.bin"
    proc = start_get(url, "-o", str(out), "-j", "2", "--token", TOKEN)
    kill_when(proc, tmp_path / "file.bin.part.json", min_done=MIB)
    replace_file(source, new)
    result = run_get(url, "-o", str(out), "-j", "2", "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == new
    assert "changed" in result.stderr  # it noticed, and started over


# A proxy that drops connections -----------------------------------------------------------

class BackgroundLoop:
    """An event loop in a thread, for servers the test runs beside the client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def background() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    try:
        yield loop
    finally:
        loop.close()


class DroppingProxy(LoopbackServer):
    """Relays to `upstream`, cutting a connection after a random number of
    bytes, `max_drops` times in all (then it relays faithfully). Cuts the
    server→client direction, or client→server with `cut_uploads`;
    `upload_rate_bytes_per_s` throttles client→server (to kill mid-upload)."""

    def __init__(self, upstream_port: int, *, seed: int, max_drops: int, max_bytes_before_drop: int,
                 cut_uploads: bool = False, upload_rate_bytes_per_s: float | None = None) -> None:
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.drops_left = self.max_drops = max_drops
        self.max_bytes = max_bytes_before_drop
        self.cut_uploads = cut_uploads
        self.rate = upload_rate_bytes_per_s
        super().__init__()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.transport.abort()
            return
        budget = None
        if self.drops_left > 0:
            self.drops_left -= 1
            budget = self.rng.randrange(0, self.max_bytes)
        up_budget, down_budget = (budget, None) if self.cut_uploads else (None, budget)
        tasks = [asyncio.create_task(self._pipe(client_r, up_w, up_budget, self.rate)),
                 asyncio.create_task(self._pipe(up_r, client_w, down_budget, None))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (client_w, up_w):
                writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: int | None,
                    rate: float | None) -> None:
        while data := await reader.read(64 * 1024):
            if budget is not None:
                if len(data) >= budget:
                    writer.write(data[:budget])
                    await writer.drain()
                    return  # cut: the caller aborts both sides
                budget -= len(data)
            writer.write(data)
            await writer.drain()
            if rate:
                await asyncio.sleep(len(data) / rate)


@pytest.mark.parametrize("segments", [1, 4])
def test_completes_through_a_proxy_that_drops_connections(server: ServerProc, tmp_path: Path,
                                                          background: BackgroundLoop, segments: int) -> None:
    data = payload(16 * MIB, seed=30 + segments)
    write_file(server.root, f"p/file{segments}.bin", data)
    proxy = DroppingProxy(server.port, seed=segments, max_drops=8, max_bytes_before_drop=4 * MIB)
    background.run(proxy.start())
    try:
        out = tmp_path / "file.bin"
        result = run_get(f"http://127.0.0.1:{proxy.port}/files/p/file{segments}.bin", "-o", str(out),
                         "-j", str(segments), "--token", TOKEN)
    finally:
        background.run(proxy.stop())
    assert result.returncode == 0, result.stderr
    assert proxy.drops_left == 0  # it did drop connections
    assert out.read_bytes() == data


# Servers that bend the rules ----------------------------------------------------------------

class TinyServer(LoopbackServer):
    """HTTP/1.1 over asyncio serving one mutable body with a strong ETag.
    `ranges=False` always answers 200 (Range ignored, RFC 9110 §14.2 allows
    it); `if_range=False` honours Range but ignores If-Range (a broken
    server: only the ETag on the 206 reveals the new version)."""

    def __init__(self, body: bytes, *, ranges: bool, if_range: bool = True) -> None:
        self.body, self.version = body, 1
        self.ranges, self.if_range = ranges, if_range
        super().__init__()
        self.requests: list[dict[str, str]] = []

    def replace(self, body: bytes) -> None:
        self.body, self.version = body, self.version + 1

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                self.requests.append(fields)
                writer.write(self._respond(fields))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.transport.abort()

    def _respond(self, fields: dict[str, str]) -> bytes:
        etag = f'"v{self.version}"'
        body, status, extra = self.body, "200 OK", ""
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", fields.get("range", ""))
        pinned = "if-range" not in fields or not self.if_range or fields["if-range"] == etag
        if self.ranges and match and pinned and int(match.group(1)) < len(self.body):
            first = int(match.group(1))
            last = min(int(match.group(2) or len(body) - 1), len(body) - 1)
            body, status = self.body[first:last + 1], "206 Partial Content"
            extra = f"Content-Range: bytes {first}-{last}/{len(self.body)}\r\n"
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nETag: {etag}\r\n{extra}\r\n"
        return head.encode() + body


def test_server_ignoring_range_gets_a_plain_download(tmp_path: Path, background: BackgroundLoop) -> None:
    data = payload(3 * MIB + 7, seed=40)
    tiny = TinyServer(data, ranges=False)
    background.run(tiny.start())
    try:
        out = tmp_path / "plain.bin"
        result = run_get(f"http://127.0.0.1:{tiny.port}/files/plain.bin", "-o", str(out), "-j", "8")
    finally:
        background.run(tiny.stop())
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data
    assert len(tiny.requests) == 1  # one stream, no pointless segment requests


def test_server_ignoring_if_range_is_caught_by_the_etag(tmp_path: Path, background: BackgroundLoop) -> None:
    old, new = payload(2 * MIB, seed=41), payload(2 * MIB, seed=42)
    tiny = TinyServer(old, ranges=True, if_range=False)
    background.run(tiny.start())
    out = tmp_path / "f.bin"
    url = f"http://127.0.0.1:{tiny.port}/files/f.bin"
    try:
        # A partial of the old version, as a killed run would leave it.
        part = tmp_path / "f.bin.part"
        part.write_bytes(old[:MIB])
        control = {"version": 1, "url": url, "size": len(old), "etag": '"v1"', "last_modified": None,
                   "ranges": True, "digests": {}, "segments": [[0, len(old), MIB]]}
        (tmp_path / "f.bin.part.json").write_text(json.dumps(control))
        tiny.replace(new)
        result = run_get(url, "-o", str(out))
    finally:
        background.run(tiny.stop())
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == new
    assert "ETag changed" in result.stderr


# nginx ----------------------------------------------------------------------------------------

NGINX_CONF = """
{user_line}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /healthz {{ return 200 "ok"; }}
        location /files/ {{ alias {root}/; }}
        location /slow/ {{ alias {root}/; limit_rate 2m; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    binary = need_tool("nginx")
    work = tmp_path_factory.mktemp("nginx")
    root = work / "root"
    root.mkdir()
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, root=root, port=port,
                                      user_line="user root;" if os.geteuid() == 0 else ""))
    srv = start_command([binary, "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf)],
                        root, port, token=None)
    try:
        yield srv
    finally:
        srv.stop(signal.SIGQUIT)


@pytest.mark.parametrize("segments", [1, 8])
def test_nginx_download_is_byte_identical(nginx: ServerProc, tmp_path: Path, segments: int) -> None:
    data = payload(12 * MIB + 5, seed=50 + segments)
    write_file(nginx.root, f"n{segments}.bin", data)
    out = tmp_path / "n.bin"
    result = run_get(f"{nginx.url}/files/n{segments}.bin", "-o", str(out), "-j", str(segments))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data


def test_nginx_kill_resume_and_replace(nginx: ServerProc, tmp_path: Path) -> None:
    """nginx pins with its strong ETag (mtime-size): kill, rerun resumes; kill,
    replace with same-size content, rerun gives the new file."""
    first, second = payload(12 * MIB, seed=60), payload(12 * MIB, seed=61)
    source = write_file(nginx.root, "k.bin", first)
    out = tmp_path / "k.bin"
    url = f"{nginx.url}/slow/k.bin"
    proc = start_get(url, "-o", str(out), "-j", "3")
    kill_when(proc, tmp_path / "k.bin.part.json", min_done=MIB)
    result = run_get(url, "-o", str(out), "-j", "3")
    assert result.returncode == 0, result.stderr
    assert "resumed at" in result.stderr and out.read_bytes() == first

    proc = start_get(url, "-o", str(out), "-j", "3")
    kill_when(proc, tmp_path / "k.bin.part.json", min_done=MIB)
    replace_file(source, second)
    os.utime(source, (time.time() + 5, time.time() + 5))  # nginx's ETag has 1 s mtime resolution
    result = run_get(url, "-o", str(out), "-j", "3")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == second


@pytest.mark.parametrize("changed", [False, True], ids=["unchanged", "changed"])
def test_a_complete_partial_is_revalidated_before_the_rename(tmp_path: Path, background: BackgroundLoop,
                                                             changed: bool) -> None:
    """Killed after the last byte, before the rename: the rerun asks the
    server (one byte with If-Range) before presenting the old bytes."""
    old, new = payload(MIB, seed=43), payload(MIB, seed=44)
    tiny = TinyServer(old, ranges=True)
    background.run(tiny.start())
    out = tmp_path / "f.bin"
    url = f"http://127.0.0.1:{tiny.port}/files/f.bin"
    try:
        (tmp_path / "f.bin.part").write_bytes(old)
        control = {"version": 1, "url": url, "size": len(old), "etag": '"v1"', "last_modified": None,
                   "ranges": True, "digests": {}, "segments": [[0, MIB // 2, MIB // 2], [MIB // 2, MIB, MIB // 2]]}
        (tmp_path / "f.bin.part.json").write_text(json.dumps(control))
        if changed:
            tiny.replace(new)
        result = run_get(url, "-o", str(out), "-j", "2")
    finally:
        background.run(tiny.stop())
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (new if changed else old)
    assert tiny.requests[0].get("if-range") == '"v1"'


def test_get_verifies_the_servers_repr_digest(server: ServerProc, tmp_path: Path) -> None:
    """The client asks for Repr-Digest (the server knows it for files uploaded
    through it) and refuses bytes that do not match it."""
    import subprocess
    import sys

    data = os.urandom(3 * 1024 * 1024 + 1)
    assert server.request("PUT", "/files/rd/known.bin", body=data)[0] == 201
    get = [sys.executable, "-m", "asgi_xfer", "get", f"{server.url}/files/rd/known.bin", "--token", server.token or ""]
    out = tmp_path / "known.bin"
    subprocess.run([*get, "-o", str(out)], check=True, timeout=60, capture_output=True)
    assert out.read_bytes() == data
    # Damage the stored bytes behind the server's back, keeping size and
    # mtime: the server still announces the digest of what was uploaded.
    stored = server.root / "rd/known.bin"
    st = stored.stat()
    with open(stored, "r+b") as f:
        f.seek(1000)
        f.write(b"\xff" * 16)
    os.utime(stored, ns=(st.st_atime_ns, st.st_mtime_ns))
    bad = tmp_path / "bad.bin"
    result = subprocess.run([*get, "-o", str(bad)], timeout=60, capture_output=True)
    assert result.returncode == 5, result.stderr
    assert not bad.exists()
