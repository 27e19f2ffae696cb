"""IETF Resumable Uploads (draft-ietf-httpbis-resumable-upload-12, interop 8)
against the live `asgi-xfer serve`, over raw sockets so that the 104
interim responses and cut-off bodies are seen as they are on the wire.

The draft's example exchanges (§4.2, §4.3, §4.4, §4.5, §8) are replayed
with their header fields as written, their sizes scaled down (123456789
bytes becomes 123456, and so on, keeping each example's relations), and the
draft's `/project/123/files` and `/upload/...` paths become ours
(`/resumable/`). Expected status lines and fields are the draft's; where the
draft answers "whatever the resource would produce", ours is what a PUT
of the file answers (201 and the stored file's JSON)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_xfer import XferApp
from rawhttp import RawConnection, Response, request_head
from serverproc import TOKEN, ServerProc, start_cli

V8 = {"Upload-Draft-Interop-Version": "8"}
PROBLEMS = "https://iana.org/assignments/http-problem-types#"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    server = start_cli(tmp_path_factory.mktemp("resumable"))
    try:
        yield server
    finally:
        server.stop()


def connect(srv: ServerProc) -> RawConnection:
    return RawConnection(srv.host, srv.port)


def send(srv: ServerProc, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> tuple[list[Response], Response]:
    conn = connect(srv)
    try:
        conn.send(request_head(method, target, {"Host": "example.com", "Authorization": f"Bearer {TOKEN}", **headers}) + body)
        exchange = conn.read_exchange(method)
        assert exchange.final is not None
        return exchange.interim, exchange.final
    finally:
        conn.close()


def create_partial(srv: ServerProc, data: bytes, length: int | None, query: str = "") -> str:
    headers = {**V8, "Upload-Complete": "?0", "Content-Length": str(len(data))}
    if length is not None:
        headers["Upload-Length"] = str(length)
    _, final = send(srv, "POST", f"/resumable/{query}", headers, data)
    assert final.status == 201, final
    return final.headers["location"]


def append(srv: ServerProc, location: str, offset: int, data: bytes, complete: bool, **extra: str) -> Response:
    headers = {**V8, "Upload-Complete": "?1" if complete else "?0", "Upload-Offset": str(offset),
               "Content-Length": str(len(data)), "Content-Type": "application/partial-upload"}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return send(srv, "PATCH", location, headers, data)[1]


def head(srv: ServerProc, location: str) -> Response:
    return send(srv, "HEAD", location, {})[1]


def problem(response: Response) -> dict[str, object]:
    assert response.headers["content-type"] == "application/problem+json"
    return json.loads(response.body)


# -- §4.2 Upload Creation examples ------------------------------------------

def test_creation_example_a_whole_upload_in_one_request(srv: ServerProc) -> None:
    data = os.urandom(123456)
    interim, final = send(srv, "POST", "/resumable/", {
        **V8, "Content-Disposition": "inline; filename=\"file name.jpg\"; filename*=UTF-8''file%20name.jpg",
        "Content-Length": "123456", "Upload-Length": "123456", "Upload-Complete": "?1"}, data)
    # "HTTP/1.1 104 Upload Resumption Supported / Location: ... / Upload-Limit: max-size=..."
    assert interim[0].raw_head.startswith(b"HTTP/1.1 104 Upload Resumption Supported\r\n")
    location = interim[0].headers["location"]
    assert location.startswith("/resumable/")
    assert "max-size=" in interim[0].headers["upload-limit"]
    assert interim[0].headers["upload-draft-interop-version"] == "8"
    assert final.status == 201 and final.headers["upload-complete"] == "?1"
    result = json.loads(final.body)
    assert result["path"] == "file name.jpg" and result["sha256"] == hashlib.sha256(data).hexdigest()
    assert (srv.root / "file name.jpg").read_bytes() == data


def test_creation_example_b_partial_then_appends(srv: ServerProc) -> None:
    data = os.urandom(123456)
    interim, final = send(srv, "POST", "/resumable/?path=ex/b.bin", {
        **V8, "Upload-Complete": "?0", "Content-Length": "23456", "Upload-Length": "123456"}, data[:23456])
    assert [r.status for r in interim] == [104]
    # "HTTP/1.1 201 Created / Location: (the same) / Upload-Limit: max-size=..."
    assert final.status == 201
    location = final.headers["location"]
    assert location == interim[0].headers["location"]  # "MUST contain an identical Location value"
    assert "max-size=" in final.headers["upload-limit"]

    # §4.3 example A: "204 No Content / Upload-Complete: ?0 / Upload-Offset /
    # Upload-Length / Upload-Limit: max-age=... / Cache-Control: no-store"
    state = head(srv, location)
    assert state.status == 204
    assert (state.headers["upload-complete"], state.headers["upload-offset"], state.headers["upload-length"]) == \
        ("?0", "23456", "123456")
    assert "max-age=" in state.headers["upload-limit"] and state.headers["cache-control"] == "no-store"

    # §4.4 example A: "204 No Content / Upload-Complete: ?0".
    more = append(srv, location, 23456, data[23456:80000], False)
    assert more.status == 204 and more.headers["upload-complete"] == "?0"
    # §4.4 example B: the remaining bytes with ?1; the response carries Upload-Complete: ?1.
    last = append(srv, location, 80000, data[80000:], True)
    assert last.status == 201 and last.headers["upload-complete"] == "?1"
    assert (srv.root / "ex/b.bin").read_bytes() == data

    # §4.3 example B: a completed upload: "Upload-Complete: ?1", offset = length.
    done = head(srv, location)
    assert (done.status, done.headers["upload-complete"], done.headers["upload-offset"], done.headers["upload-length"]) == \
        (204, "?1", "123456", "123456")


def test_creation_without_an_interop_version_gets_no_104(srv: ServerProc) -> None:
    # Appendix: servers "MUST NOT send a 104 [...] when the interop version
    # [...] is missing or mismatching".
    for version in ({}, {"Upload-Draft-Interop-Version": "2"}):
        interim, final = send(srv, "POST", "/resumable/", {**version, "Upload-Complete": "?0", "Content-Length": "0"})
        assert interim == [] and final.status == 201


def test_interop_6_gets_the_expires_limit(srv: ServerProc) -> None:
    interim, _ = send(srv, "POST", "/resumable/", {"Upload-Draft-Interop-Version": "6", "Upload-Complete": "?0",
                                                    "Content-Length": "0"})
    assert interim[0].headers["upload-draft-interop-version"] == "6"
    assert "expires=" in interim[0].headers["upload-limit"] and "max-age" not in interim[0].headers["upload-limit"]


def test_creation_rejected_for_another_method(srv: ServerProc) -> None:
    # §4.2 example D: a resource that does not allow the upload: 405.
    _, final = send(srv, "DELETE", "/resumable/", {**V8, "Upload-Complete": "?1", "Content-Length": "0"})
    assert final.status == 405 and "allow" in final.headers


# -- Problem types (§8) and the append rules (§4.4.2) ---------------------------

def test_mismatching_offset(srv: ServerProc) -> None:
    location = create_partial(srv, b"x" * 125, None)
    response = append(srv, location, 250, b"y", False)
    # §8.1: 409, application/problem+json, the type, expected/provided offsets;
    # §4.4.2: "The response MUST include the correct offset".
    assert response.status == 409 and response.headers["upload-offset"] == "125"
    body = problem(response)
    assert body["type"] == PROBLEMS + "mismatching-upload-offset"
    assert (body["expected-offset"], body["provided-offset"]) == (125, 250)


def test_completed_upload_and_inconsistent_length(srv: ServerProc) -> None:
    location = create_partial(srv, b"abc", None)
    assert append(srv, location, 3, b"", True).status == 201  # an empty ?1 append completes it
    empty = append(srv, location, 3, b"", True)
    assert empty.status == 400 and problem(empty)["type"] == PROBLEMS + "completed-upload"
    more = append(srv, location, 3, b"zz", False)
    assert more.status == 400 and problem(more)["type"] == PROBLEMS + "inconsistent-upload-length"
    _, final = send(srv, "POST", "/resumable/", {**V8, "Upload-Complete": "?1", "Content-Length": "5",
                                                  "Upload-Length": "6"}, b"12345")
    assert final.status == 400 and problem(final)["type"] == PROBLEMS + "inconsistent-upload-length"


def test_append_needs_the_partial_upload_media_type(srv: ServerProc) -> None:
    location = create_partial(srv, b"", None)
    assert append(srv, location, 0, b"x", False, content_type="application/octet-stream").status == 415


def test_client_that_never_sends_complete_finishes_with_a_later_append(srv: ServerProc) -> None:
    data = os.urandom(50000)
    location = create_partial(srv, data[:20000], None, "?path=never/complete.bin")
    assert append(srv, location, 20000, data[20000:], False).status == 204
    assert head(srv, location).headers["upload-complete"] == "?0"  # all bytes in, still incomplete
    assert not (srv.root / "never/complete.bin").exists()
    final = append(srv, location, 50000, b"", True)
    assert final.status == 201 and final.headers["upload-complete"] == "?1"
    assert (srv.root / "never/complete.bin").read_bytes() == data


def test_cancellation(srv: ServerProc) -> None:
    location = create_partial(srv, b"abc", 10)
    # §4.5 example: "HTTP/1.1 204 No Content".
    assert send(srv, "DELETE", location, {})[1].status == 204
    assert head(srv, location).status == 404


def test_options_announces_limits(srv: ServerProc) -> None:
    _, final = send(srv, "OPTIONS", "/resumable/", {})
    # §4.1.4: "MUST include the Accept-Patch header field [...] application/partial-upload".
    assert final.status == 204 and "application/partial-upload" in final.headers["accept-patch"]
    assert "max-size=" in final.headers["upload-limit"]


def test_names_are_never_overwritten(srv: ServerProc) -> None:
    for data in (b"first", b"second"):
        send(srv, "POST", "/resumable/?path=same/name.txt", {**V8, "Upload-Complete": "?1",
                                                              "Content-Length": str(len(data))}, data)
    assert (srv.root / "same/name.txt").read_bytes() == b"first"
    assert (srv.root / "same/name (1).txt").read_bytes() == b"second"


# -- Digests (§9) ------------------------------------------------------------

def digest_field(data: bytes, algorithm: str = "sha256", name: str = "sha-256") -> str:
    return f"{name}=:{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}:"


def test_content_digest_of_an_append_is_checked(srv: ServerProc) -> None:
    location = create_partial(srv, b"abc", None)
    bad = append(srv, location, 3, b"def", False, content_digest=digest_field(b"xyz"))
    assert bad.status == 422
    assert head(srv, location).headers["upload-offset"] == "3"  # "not append the content"
    assert append(srv, location, 3, b"def", False, content_digest=digest_field(b"def")).status == 204


@pytest.mark.parametrize(("algorithm", "name"), [("sha256", "sha-256"), ("sha512", "sha-512")])
def test_repr_digest_is_checked_at_completion(srv: ServerProc, algorithm: str, name: str) -> None:
    data = os.urandom(4000)
    good, bad = digest_field(data, algorithm, name), digest_field(b"other", algorithm, name)
    _, final = send(srv, "POST", f"/resumable/?path=repr/{name}.bin", {
        **V8, "Upload-Complete": "?1", "Content-Length": "4000", "Repr-Digest": good,
        "Want-Repr-Digest": "sha-256=1"}, data)
    assert final.status == 201 and final.headers["repr-digest"] == digest_field(data)
    interim, final = send(srv, "POST", f"/resumable/?path=repr/bad-{name}.bin", {
        **V8, "Upload-Complete": "?0", "Content-Length": "2000", "Repr-Digest": bad}, data[:2000])
    location = final.headers["location"]
    last = append(srv, location, 2000, data[2000:], True)
    assert last.status == 422 and last.headers["upload-complete"] == "?1"
    assert not (srv.root / f"repr/bad-{name}.bin").exists()


# -- Interrupted bodies -------------------------------------------------------

@pytest.mark.parametrize("creation", [True, False])
def test_interrupted_body_keeps_every_byte_that_arrived(srv: ServerProc, creation: bool) -> None:
    data = os.urandom(300000)
    sent = 123457
    location = None if creation else create_partial(srv, data[:1000], None)
    conn = connect(srv)
    auth = {"Host": "x", "Authorization": f"Bearer {TOKEN}", **V8, "Content-Length": str(len(data))}
    if creation:
        conn.send(request_head("POST", "/resumable/", {**auth, "Upload-Complete": "?1"}))
        announced = conn.read_response()  # the 104 comes before the body is sent
        assert announced.status == 104
        location = announced.headers["location"]
        conn.send(data[:sent])
    else:
        conn.send(request_head("PATCH", location, {**auth, "Content-Length": str(len(data) - 1000),
                                                   "Upload-Complete": "?1", "Upload-Offset": "1000",
                                                   "Content-Type": "application/partial-upload"}) + data[1000:sent])
    conn.close()  # cut off mid-body
    assert location is not None
    state = head(srv, location)  # waits for the interrupted request to let go
    assert (state.status, state.headers["upload-offset"], state.headers["upload-complete"]) == (204, str(sent), "?0")
    if creation:
        # ?1 with Content-Length on creation recorded the length (§4.1.3).
        assert state.headers["upload-length"] == str(len(data))
    final = append(srv, location, sent, data[sent:], True)
    assert final.status == 201
    assert json.loads(final.body)["sha256"] == hashlib.sha256(data).hexdigest()


def test_content_past_the_length_deactivates_the_upload(srv: ServerProc) -> None:
    location = create_partial(srv, b"abc", 5)
    conn = connect(srv)
    # Chunked, so that no Content-Length tells in advance.
    conn.send(request_head("PATCH", location, {"Host": "x", "Authorization": f"Bearer {TOKEN}", **V8,
                                               "Upload-Complete": "?0", "Upload-Offset": "3",
                                               "Content-Type": "application/partial-upload",
                                               "Transfer-Encoding": "chunked"}) + b"5\r\n12345\r\n0\r\n\r\n")
    response = conn.read_response()
    conn.close()
    assert response.status == 400 and problem(response)["type"] == PROBLEMS + "inconsistent-upload-length"
    # "marking the upload resource invalid and rejecting any further interaction with it"
    assert head(srv, location).status == 404



# -- kill -9 mid-append, restart, resume with `asgi-xfer put --ietf` ------------

def _ietf_offset(root: Path) -> int | None:
    try:
        with sqlite3.connect(f"file:{root / '.xfer' / 'xfer.db'}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT offset_bytes FROM sessions WHERE kind = 'ietf'").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else int(row[0])


def test_kill_9_mid_append_then_the_client_resumes(tmp_path: Path) -> None:
    root, source = tmp_path / "root", tmp_path / "big.bin"
    data = os.urandom(64 << 20)
    source.write_bytes(data)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    srv = start_cli(root)
    cmd = [sys.executable, "-m", "asgi_xfer", "put", "--ietf", "--chunk-size", "1M", str(source),
           f"{srv.url}/files/crash/big.bin", "--token", TOKEN]
    client = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (_ietf_offset(root) or 0) > 0:  # the appends have begun
            assert time.monotonic() < deadline and client.poll() is None, "no append began"
            time.sleep(0.005)
        os.kill(client.pid, signal.SIGSTOP)  # frozen with its next PATCH in flight
        srv.stop(signal.SIGKILL)
    finally:
        client.kill()
        client.wait()
    kept = _ietf_offset(root)
    assert kept is not None and 0 < kept < len(data)
    # The same port: the client remembers the upload by its URL.
    srv = start_cli(root, "--port", str(srv.port))
    try:
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        resumed = int(re.search(r"resumed: (\d+) bytes", rerun.stderr).group(1))  # type: ignore[union-attr]
        assert resumed >= kept  # nothing acknowledged was lost
        assert f"sha256 {hashlib.sha256(data).hexdigest()}" in rerun.stderr
        assert (root / "crash/big.bin").read_bytes() == data
    finally:
        srv.stop()


# -- The 104 where the server cannot send one, and to HTTP/1.0 --------------------

async def _create_in_process(root: Path, extensions: dict[str, dict[str, object]]) -> list[dict[str, object]]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/resumable/", "raw_path": b"/resumable/", "query_string": b"path=in.txt",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "extensions": extensions,
             "headers": [(b"authorization", b"Bearer t"), (b"upload-draft-interop-version", b"8"),
                         (b"upload-complete", b"?1"), (b"content-length", b"3")]}
    comm = ApplicationCommunicator(XferApp(root=root, tokens=["t"]), scope)
    await comm.send_input({"type": "http.request", "body": b"abc", "more_body": False})
    messages = []
    while not messages or messages[-1]["type"] != "http.response.body" or messages[-1].get("more_body"):
        messages.append(await comm.receive_output(10))
    await comm.wait(5)
    return messages


@pytest.mark.parametrize("offered", [True, False])
def test_104_only_where_the_server_offers_it(tmp_path: Path, offered: bool) -> None:
    extensions = {"http.response.informational": {}} if offered else {}
    messages = asyncio.run(_create_in_process(tmp_path, extensions))
    kinds = [m["type"] for m in messages]
    if offered:
        assert kinds[0] == "http.response.informational" and messages[0]["status"] == 104
        assert dict(messages[0]["headers"])[b"location"].startswith(b"/resumable/")  # type: ignore[call-overload]
    else:
        assert "http.response.informational" not in kinds  # other servers: simply no 104
    assert kinds[-2] == "http.response.start" and messages[-2]["status"] == 201
    assert (tmp_path / "in.txt").read_bytes() == b"abc"


def test_no_104_to_an_http_1_0_client(srv: ServerProc) -> None:
    # RFC 9110 §15.2: "A server MUST NOT send a 1xx response to an HTTP/1.0 client".
    conn = connect(srv)
    try:
        conn.send(f"POST /resumable/ HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\nUpload-Draft-Interop-Version: 8\r\n"
                  "Upload-Complete: ?0\r\nContent-Length: 0\r\n\r\n".encode())
        data = b""
        while chunk := conn.sock.recv(65536):
            data += chunk
    finally:
        conn.close()
    assert data.startswith(b"HTTP/1.1 201 ")


def test_max_size_is_announced_and_enforced(tmp_path: Path) -> None:
    small = start_cli(tmp_path, "--max-upload", "1000")
    try:
        # §4.1.4: a 413 "as a result of its upload limits MUST include the Upload-Limit header".
        _, final = send(small, "POST", "/resumable/", {**V8, "Upload-Complete": "?0", "Content-Length": "0",
                                                        "Upload-Length": "1001"})
        assert final.status == 413 and final.headers["upload-limit"].startswith("max-size=1000")
        # No length declared: content past max-size deactivates the upload.
        location = create_partial(small, b"x" * 600, None)
        too_much = append(small, location, 600, b"y" * 401, False)
        assert too_much.status == 413 and "max-size=1000" in too_much.headers["upload-limit"]
        assert head(small, location).status == 404
    finally:
        small.stop()
