"""POST /files/{dir}/ with multipart/form-data against the real server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

from conftest import need_tool, write_file
from serverproc import TOKEN, ServerProc
from sessionclient import create, show

BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def _form(*parts: tuple[str, str | None, bytes], boundary: str = BOUNDARY, close: bool = True) -> bytes:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        out += data + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return out


def _post(srv: ServerProc, path: str, body: bytes, **headers: str) -> tuple[int, dict]:
    hdrs = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **headers}
    status, _, raw = srv.request("POST", path, hdrs, body)
    return status, json.loads(raw)


def _leftovers(root: Path) -> list[Path]:
    return list(root.rglob(".xfer-tmp-*"))


def test_curl_form_upload(server: ServerProc, tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.txt"
    a.write_bytes(os.urandom(1_500_000) + b"\r\n--" + BOUNDARY.encode())  # a near-delimiter tail
    b.write_bytes(b"hello\r\n")
    out = subprocess.run([need_tool("curl"), "-sf", "-H", f"Authorization: Bearer {TOKEN}",
                          "-F", f"one=@{a}", "-F", f"two=@{b};filename=测试 文件.txt", "-F", "note=just a field",
                          f"{server.url}/files/form/curl/"], capture_output=True, check=True, timeout=60).stdout
    files = json.loads(out)["files"]
    assert [f["name"] for f in files] == ["a.bin", "测试 文件.txt"]
    assert files[0]["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert (server.root / "form/curl/a.bin").read_bytes() == a.read_bytes()
    assert (server.root / "form/curl/测试 文件.txt").read_bytes() == b"hello\r\n"
    assert not (server.root / "form/curl/note").exists()


def test_existing_name_is_409_and_nothing_is_committed(server: ServerProc) -> None:
    write_file(server.root, "form/c/old.txt", b"old")
    status, body = _post(server, "/files/form/c/", _form(("x", "new.txt", b"new"), ("y", "old.txt", b"replaced")))
    assert status == 409 and body["error"]["code"] == "conflict"
    assert not (server.root / "form/c/new.txt").exists()
    assert (server.root / "form/c/old.txt").read_bytes() == b"old"
    status, body = _post(server, "/files/form/c/?overwrite=1", _form(("x", "new.txt", b"new"), ("y", "old.txt", b"replaced")))
    assert status == 201
    assert (server.root / "form/c/old.txt").read_bytes() == b"replaced"
    assert not _leftovers(server.root)


def test_truncated_and_malformed_bodies(server: ServerProc) -> None:
    truncated = _form(("x", "t.bin", b"data" * 1000), close=False)
    status, body = _post(server, "/files/form/t/", truncated)
    assert status == 400 and not (server.root / "form/t").exists()
    status, _ = _post(server, "/files/form/t/", b"--" + BOUNDARY.encode() + b"\r\nBroken header\r\n\r\nx")
    assert status == 400
    status, _ = _post(server, "/files/form/t/", _form(("field", None, b"only a field")))
    assert status == 400
    status, _, _ = server.request("POST", "/files/form/t/", {"Content-Type": "multipart/form-data"}, b"x")
    assert status == 400  # no boundary
    status, _, _ = server.request("POST", "/files/form/t/", {"Content-Type": "application/json"}, b"{}")
    assert status == 415
    status, _ = _post(server, "/files/form/t/", _form(("x", "../../escape.txt", b"e")))
    assert status == 201 and (server.root / "form/t/escape.txt").exists()  # sanitized to its last name
    assert not _leftovers(server.root)


def test_body_digest_mismatch_is_422(server: ServerProc) -> None:
    body = _form(("x", "d.bin", b"payload"))
    wrong = base64.b64encode(hashlib.sha256(body + b"!").digest()).decode()
    status, _ = _post(server, "/files/form/d/", body, **{"Content-Digest": f"sha-256=:{wrong}:"})
    assert status == 422 and not (server.root / "form/d/d.bin").exists()
    right = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert _post(server, "/files/form/d/", body, **{"Content-Digest": f"sha-256=:{right}:"})[0] == 201


def test_chunk_sent_as_a_form_part(server: ServerProc, tmp_path: Path) -> None:
    data = os.urandom(3 * 65536)
    _, session = create(server, "form/chunked.bin", data, 65536)
    for index in range(3):
        part = tmp_path / f"part{index}"
        part.write_bytes(data[index * 65536:(index + 1) * 65536])
        subprocess.run([need_tool("curl"), "-sf", "-X", "PUT", "-H", f"Authorization: Bearer {TOKEN}", "-F", f"chunk=@{part}",
                        f"{server.url}/uploads/{session['id']}/chunks/{index}"], check=True, timeout=60, capture_output=True)
    assert show(server, session["id"])[1]["missing"] == []
