"""PUT and DELETE /files/{path} against the real server (SPEC "Simple uploads")."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import need_tool, write_file
from serverproc import TOKEN, ServerProc, start_cli


def _staging_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".xfer-tmp-*")]


def _curl_put(srv: ServerProc, src: Path, path: str, *headers: str) -> tuple[int, dict]:
    args = [need_tool("curl"), "-s", "-o", "-", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {TOKEN}", "-T", str(src)]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run([*args, f"{srv.url}/files/{path}"], capture_output=True, check=True, timeout=60).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), json.loads(body) if body else {}


def _digest_header(alg: str, data: bytes) -> str:
    name = {"sha-256": "sha256", "sha-512": "sha512", "md5": "md5"}[alg]
    return f"Content-Digest: {alg}=:{base64.b64encode(hashlib.new(name, data).digest()).decode()}:"


def test_put_creates_then_replaces(server: ServerProc, tmp_path: Path) -> None:
    data = os.urandom(3_000_001)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    status, body = _curl_put(server, src, "up/new/file.bin")
    assert status == 201
    assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (server.root / "up/new/file.bin").read_bytes() == data
    status, headers, _ = server.request("HEAD", "/files/up/new/file.bin")
    assert headers["etag"] == body["etag"]
    src.write_bytes(data[::-1])
    status, body = _curl_put(server, src, "up/new/file.bin")
    assert status == 200 and (server.root / "up/new/file.bin").read_bytes() == data[::-1]
    assert not _staging_leftovers(server.root)


def test_put_preconditions(server: ServerProc) -> None:
    status, _, body = server.request("PUT", "/files/pre/a.txt", body=b"one")
    assert status == 201
    etag = json.loads(body)["etag"]
    status, _, _ = server.request("PUT", "/files/pre/a.txt", {"If-None-Match": "*"}, b"two")
    assert status == 412 and (server.root / "pre/a.txt").read_bytes() == b"one"
    status, _, _ = server.request("PUT", "/files/pre/a.txt", {"If-Match": '"stale"'}, b"two")
    assert status == 412 and (server.root / "pre/a.txt").read_bytes() == b"one"
    status, _, _ = server.request("PUT", "/files/pre/a.txt", {"If-Match": etag}, b"two")
    assert status == 200 and (server.root / "pre/a.txt").read_bytes() == b"two"
    status, _, _ = server.request("PUT", "/files/pre/b.txt", {"If-Match": "*"}, b"x")
    assert status == 412 and not (server.root / "pre/b.txt").exists()
    status, _, _ = server.request("PUT", "/files/pre/b.txt", {"If-None-Match": "*"}, b"x")
    assert status == 201


@pytest.mark.parametrize("alg", ["sha-256", "sha-512", "md5"])
def test_content_digest_verified(server: ServerProc, tmp_path: Path, alg: str) -> None:
    data = os.urandom(100_000)
    write_file(server.root, f"dig/{alg}.bin", b"original")
    src = tmp_path / "src"
    src.write_bytes(data)
    status, body = _curl_put(server, src, f"dig/{alg}.bin", _digest_header(alg, data[:-1] + b"!"))
    assert status == 422 and body["error"]["code"] == "checksum_mismatch"
    assert (server.root / f"dig/{alg}.bin").read_bytes() == b"original"
    status, _ = _curl_put(server, src, f"dig/{alg}.bin", _digest_header(alg, data))
    assert status == 200 and (server.root / f"dig/{alg}.bin").read_bytes() == data
    assert not _staging_leftovers(server.root)


def test_content_md5_and_malformed_digest(server: ServerProc) -> None:
    good = base64.b64encode(hashlib.md5(b"hello").digest()).decode()
    status, _, _ = server.request("PUT", "/files/md5/a.txt", {"Content-MD5": good}, b"hellO")
    assert status == 422 and not (server.root / "md5/a.txt").exists()
    status, _, _ = server.request("PUT", "/files/md5/a.txt", {"Content-MD5": good}, b"hello")
    assert status == 201
    status, _, body = server.request("PUT", "/files/md5/b.txt", {"Content-Digest": "sha-256=not-base64"}, b"x")
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"


def test_delete(server: ServerProc) -> None:
    write_file(server.root, "del/a.txt", b"a")
    (server.root / "del/empty").mkdir()
    assert server.request("DELETE", "/files/del/a.txt", {"If-Match": '"nope"'})[0] == 412
    assert server.request("DELETE", "/files/del/a.txt")[0] == 204
    assert server.request("GET", "/files/del/a.txt")[0] == 404
    assert server.request("DELETE", "/files/del/a.txt")[0] == 404
    write_file(server.root, "del/b.txt", b"b")
    assert server.request("DELETE", "/files/del")[0] == 409
    assert server.request("DELETE", "/files/del/empty/")[0] == 204
    assert server.request("DELETE", "/files/del/b.txt", auth=False)[0] == 401


def test_put_conflicts_with_directories(server: ServerProc) -> None:
    write_file(server.root, "conf/file", b"x")
    assert server.request("PUT", "/files/conf/file/child.txt", body=b"y")[0] == 409
    (server.root / "conf/dir").mkdir()
    assert server.request("PUT", "/files/conf/dir", body=b"y")[0] == 409
    assert server.request("PUT", "/files/conf/dir/", body=b"y")[0] == 400


def _raw_put(srv: ServerProc, path: str, length: int, send_bytes: int, chunked: bool = False) -> bytes:
    """Send a PUT's headers and part of its body, then return what came back
    (or b"" if nothing did before we hung up)."""
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    try:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
        sock.sendall(f"PUT /files/{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n{framing}\r\n\r\n".encode())
        block = b"z" * 65536
        sent = 0
        while sent < send_bytes:
            piece = block[: min(len(block), send_bytes - sent)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
        if send_bytes:
            return b""
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < _content_length(reply):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply
    finally:
        sock.close()


def _content_length(reply: bytes) -> int:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    srv = start_cli(tmp_path_factory.mktemp("limited"), "--max-upload", "1M")
    try:
        yield srv
    finally:
        srv.stop()


def test_declared_length_over_limit_is_413_before_the_body(limited: ServerProc) -> None:
    reply = _raw_put(limited, "big.bin", 10 * 1024 * 1024, 0)
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'"payload_too_large"' in reply


def test_body_outgrowing_the_limit_is_413(limited: ServerProc) -> None:
    status, _, body = limited.request("PUT", "/files/grow/x.bin", body=iter([b"a" * 600_000, b"b" * 600_000]))  # type: ignore[arg-type]
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert not (limited.root / "grow").exists() and not _staging_leftovers(limited.root)


def test_disconnect_mid_body_leaves_no_trace(server: ServerProc) -> None:
    _raw_put(server, "gone/deep/x.bin", 50 * 1024 * 1024, 3 * 1024 * 1024)
    deadline = time.monotonic() + 10
    while (_staging_leftovers(server.root) or (server.root / "gone").exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (server.root / "gone").exists()
    assert not _staging_leftovers(server.root)


def test_staging_file_invisible_while_uploading(server: ServerProc) -> None:
    write_file(server.root, "vis/keep.txt", b"k")
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        sock.sendall(f"PUT /files/vis/new.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 9000000\r\n\r\n".encode())
        sock.sendall(b"q" * 2_000_000)
        deadline = time.monotonic() + 10
        while not _staging_leftovers(server.root / "vis") and time.monotonic() < deadline:
            time.sleep(0.02)
        staged = _staging_leftovers(server.root / "vis")
        assert staged, "the upload should be staged beside its target"
        status, _, body = server.request("GET", "/files/vis/")
        assert [e["name"] for e in json.loads(body)["entries"]] == ["keep.txt"]
        assert server.request("GET", f"/files/vis/{staged[0].name}")[0] == 404
        assert server.request("GET", "/files/vis/new.bin")[0] == 404
    finally:
        sock.close()


def test_parallel_puts_never_splice(server: ServerProc) -> None:
    versions = [bytes([i]) * 4_000_000 for i in range(4)]
    threads = [threading.Thread(target=server.request, args=("PUT", "/files/race.bin", None, v)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert (server.root / "race.bin").read_bytes() in versions
    assert not _staging_leftovers(server.root)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_enospc_is_507_and_keeps_the_old_file(tiny_disk: Path) -> None:
    srv = start_cli(tiny_disk)
    try:
        write_file(tiny_disk, "keep.bin", b"precious" * 1000)
        big = os.urandom(12 * 1024 * 1024)
        # Declared too large for the disk: refused before the body.
        status, _, body = srv.request("PUT", "/files/keep.bin", body=big)
        assert status == 507 and json.loads(body)["error"]["code"] == "insufficient_storage"
        # Undeclared (chunked): the disk fills up mid-body.
        status, _, body = srv.request("PUT", "/files/keep.bin", body=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]))  # type: ignore[arg-type]
        assert status == 507
        assert (tiny_disk / "keep.bin").read_bytes() == b"precious" * 1000
        assert not _staging_leftovers(tiny_disk)
    finally:
        srv.stop()


def test_repr_digest_when_asked_and_known(server: ServerProc) -> None:
    data = os.urandom(200_000)
    assert server.request("PUT", "/files/rd/a.bin", body=data)[0] == 201
    want = {"Want-Repr-Digest": "sha-256=9"}
    expected = "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"
    status, headers, body = server.request("GET", "/files/rd/a.bin", want)
    assert status == 200 and body == data and headers["repr-digest"] == expected
    status, headers, _ = server.request("GET", "/files/rd/a.bin", {**want, "Range": "bytes=0-9"})
    assert status == 206 and headers["repr-digest"] == expected  # of the whole representation
    assert "repr-digest" not in server.request("GET", "/files/rd/a.bin")[1]  # not asked
    assert "repr-digest" not in server.request("GET", "/files/rd/a.bin", {"Want-Repr-Digest": "sha-256=0"})[1]
    write_file(server.root, "rd/a.bin", b"changed behind the server's back")
    assert "repr-digest" not in server.request("GET", "/files/rd/a.bin", want)[1]  # unknown: never guessed
