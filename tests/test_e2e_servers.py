"""The download path under the other ASGI servers SPEC names: hypercorn and
granian (which offers `http.response.pathsend`, so the zero-copy path runs)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import need_tool, write_file
from serverproc import TOKEN, ServerProc, free_port, start_command

BIN = Path(sys.executable).parent
SIZE = 8 * 1024 * 1024 + 123  # several frames, not a multiple of any


def _env(root: Path) -> dict[str, str]:
    return {"XFER_ROOT": str(root), "XFER_TOKENS": TOKEN}


def _hypercorn(root: Path, port: int) -> list[str]:
    return [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{port}", "asgi_xfer:create_app()"]


def _granian(root: Path, port: int) -> list[str]:
    return [str(BIN / "granian"), "--interface", "asgi", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "asgi_xfer:create_app"]


@pytest.fixture(scope="module", params=["hypercorn", "granian"])
def other_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServerProc]]:
    root = tmp_path_factory.mktemp(request.param)
    write_file(root, "blob.bin", os.urandom(SIZE))
    port = free_port()
    command = {"hypercorn": _hypercorn, "granian": _granian}[request.param](root, port)
    srv = start_command(command, root, port, env=_env(root))
    try:
        yield request.param, srv
    finally:
        srv.stop()


def _metric(srv: ServerProc, name: str) -> int:
    status, _, body = srv.request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + "{"):
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_full_download_with_curl(other_server: tuple[str, ServerProc], tmp_path: Path) -> None:
    name, srv = other_server
    before = _metric(srv, "xfer_pathsend_responses_total")
    out = tmp_path / "out.bin"
    subprocess.run([need_tool("curl"), "-sf", "-H", f"Authorization: Bearer {TOKEN}", "-o", str(out),
                    f"{srv.url}/files/blob.bin"], check=True, timeout=60)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256((srv.root / "blob.bin").read_bytes()).digest()
    used_pathsend = _metric(srv, "xfer_pathsend_responses_total") - before
    # granian advertises the extension in scope["extensions"]; hypercorn does not.
    assert used_pathsend == (1 if name == "granian" else 0)


def test_range_and_resume_with_curl(other_server: tuple[str, ServerProc], tmp_path: Path) -> None:
    _, srv = other_server
    data = (srv.root / "blob.bin").read_bytes()
    status, headers, body = srv.request("GET", "/files/blob.bin", {"Range": "bytes=1000-2999999"})
    assert status == 206 and body == data[1000:3000000]
    assert headers["content-range"] == f"bytes 1000-2999999/{SIZE}"
    partial = tmp_path / "partial.bin"
    partial.write_bytes(data[:5_000_000])
    subprocess.run([need_tool("curl"), "-sf", "-C", "-", "-H", f"Authorization: Bearer {TOKEN}", "-o", str(partial),
                    f"{srv.url}/files/blob.bin"], check=True, timeout=60)
    assert partial.read_bytes() == data


def test_conditional_and_errors(other_server: tuple[str, ServerProc]) -> None:
    _, srv = other_server
    status, headers, _ = srv.request("HEAD", "/files/blob.bin")
    assert status == 200 and headers["content-length"] == str(SIZE)
    status, _, body = srv.request("GET", "/files/blob.bin", {"If-None-Match": headers["etag"]})
    assert status == 304 and body == b""
    status, headers, body = srv.request("GET", "/files/missing.bin")
    assert status == 404 and headers["content-type"] == "application/json"
    status, headers, _ = srv.request("GET", "/files/blob.bin", auth=False)
    assert status == 401
