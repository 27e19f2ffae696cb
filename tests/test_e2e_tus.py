"""tus 1.0.0 (SPEC "tus") spoken raw against the real server with http.client
and plain sockets; expected values come from the tus protocol text
(https://tus.io/protocols/resumable-upload). Expiry runs in-process with an
injected clock, so nothing here sleeps for it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_xfer import Settings, XferApp
from serverproc import ServerProc, start_cli, wait_for_workers

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
# A stale PATCH must let go within this long (the tus handler's takeover wait).
TAKEOVER_BOUND_S = 10.0


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def b64digest(algorithm: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


def create(srv: ServerProc, headers: dict[str, str], body: bytes | None = None) -> tuple[int, dict[str, str]]:
    status, hdrs, _ = srv.request("POST", "/tus/", {**TUS, **headers}, body)
    return status, hdrs


def new_upload(srv: ServerProc, length: int | None, **metadata: str) -> str:
    headers = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    if metadata:
        headers["Upload-Metadata"] = meta(**metadata)
    status, hdrs = create(srv, headers)
    assert status == 201, hdrs
    return hdrs["location"]


def patch(srv: ServerProc, loc: str, offset: int, data: bytes, **extra: str) -> tuple[int, dict[str, str], bytes]:
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return srv.request("PATCH", loc, headers, data)


def head(srv: ServerProc, loc: str) -> tuple[int, dict[str, str]]:
    status, hdrs, _ = srv.request("HEAD", loc, TUS)
    return status, hdrs


def offset_of(srv: ServerProc, loc: str) -> int:
    status, hdrs = head(srv, loc)
    assert status == 200, hdrs
    return int(hdrs["upload-offset"])


def download(srv: ServerProc, rel: str) -> bytes:
    status, _, body = srv.request("GET", "/files/" + rel)
    assert status == 200, body
    return body


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- OPTIONS, creation, HEAD, PATCH --------------------------------------------

@pytest.mark.parametrize("path", ["/tus/", "/tus"])
def test_options_advertises_the_server(server: ServerProc, path: str) -> None:
    status, hdrs, body = server.request("OPTIONS", path, auth=False)  # discovery needs no token
    assert status in (200, 204) and body == b""
    assert hdrs["tus-version"].split(",") == ["1.0.0"]
    extensions = set(hdrs["tus-extension"].split(","))
    assert {"creation", "creation-with-upload", "creation-defer-length", "termination", "checksum",
            "expiration", "concatenation", "concatenation-unfinished"} <= extensions
    assert int(hdrs["tus-max-size"]) > 0
    assert {"sha1", "md5", "sha256"} <= set(hdrs["tus-checksum-algorithm"].split(","))


def test_create_head_patch_commit(server: ServerProc) -> None:
    data = os.urandom(300_000)
    status, hdrs = create(server, {"Upload-Length": str(len(data)), "Upload-Metadata": meta(filename="core.bin", kind="x")})
    assert status == 201 and hdrs["tus-resumable"] == "1.0.0"
    loc = hdrs["location"]
    assert loc.startswith("/tus/") and len(loc) > len("/tus/")
    assert parsedate_to_datetime(hdrs["upload-expires"]).timestamp() > time.time()

    status, hdrs = head(server, loc)
    assert status == 200
    assert hdrs["cache-control"] == "no-store"
    assert (hdrs["upload-offset"], hdrs["upload-length"]) == ("0", str(len(data)))
    assert "upload-defer-length" not in hdrs
    parsedate_to_datetime(hdrs["upload-expires"])
    echoed = {p.split(" ")[0]: base64.b64decode(p.split(" ")[1]).decode() if " " in p else "" for p in hdrs["upload-metadata"].split(",")}
    assert echoed == {"filename": "core.bin", "kind": "x"}

    status, hdrs, body = patch(server, loc, 0, data[:100_000])
    assert status == 204 and hdrs["upload-offset"] == "100000" and body == b""
    assert "upload-expires" in hdrs
    assert offset_of(server, loc) == 100_000
    assert not (server.root / "core.bin").exists()  # not committed before the last byte
    status, hdrs, _ = patch(server, loc, 100_000, data[100_000:])
    assert status == 204 and hdrs["upload-offset"] == str(len(data))
    assert download(server, "core.bin") == data
    status, hdrs = head(server, loc)  # a finished upload still answers HEAD
    assert status == 200 and hdrs["upload-offset"] == hdrs["upload-length"] == str(len(data))


def assert_indexed(srv: ServerProc, data: bytes) -> None:
    """The server recorded `data`'s true sha256 for the file it committed:
    an /uploads session announcing that digest completes without a byte."""
    status, _, body = srv.request("POST", "/uploads", {"Content-Type": "application/json"}, json.dumps(
        {"path": f"index-check/{sha(data)[:12]}.bin", "size": len(data), "sha256": sha(data)}).encode())
    assert status == 200 and json.loads(body)["complete"] is True, body


def _hashed_upto(srv: ServerProc, loc: str) -> int:
    with sqlite3.connect(srv.root / ".xfer" / "xfer.db") as conn:
        row = conn.execute("SELECT hashed_upto FROM sessions WHERE id = ?", (loc.rsplit("/", 1)[1],)).fetchone()
    assert row is not None
    return row[0]


def test_whole_file_hash_follows_the_patches(server: ServerProc) -> None:
    """A PATCH is answered before the whole-file SHA-256 covers it; the hash
    catches up in the background (so the last PATCH does not hash the whole
    file) and the committed file enters the content index under its true
    digest: an /uploads session announcing that digest completes at once."""
    data = os.urandom(3 << 20)
    loc = new_upload(server, len(data), path="hashed/big.bin")
    assert patch(server, loc, 0, data[: 2 << 20])[0] == 204
    deadline = time.monotonic() + 10
    while _hashed_upto(server, loc) < (2 << 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _hashed_upto(server, loc) == 2 << 20
    assert patch(server, loc, 2 << 20, data[2 << 20:])[0] == 204
    assert download(server, "hashed/big.bin") == data
    assert_indexed(server, data)


def test_patch_of_unknown_length_is_hashed_as_it_arrives(server: ServerProc) -> None:
    """A PATCH sent with chunked transfer coding (no Content-Length, as a
    streaming client sends a whole file) feeds the whole-file hash inline:
    the digest recorded for the committed file is the true one."""
    data = os.urandom(5 << 20)
    loc = new_upload(server, len(data), path="streamed.bin")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        pieces = (data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20))
        conn.request("PATCH", loc, body=pieces, encode_chunked=True, headers={
            **server.auth, **TUS, "Upload-Offset": "0", "Content-Type": OCTETS, "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 204 and resp.getheader("Upload-Offset") == str(len(data))
    assert download(server, "streamed.bin") == data
    assert_indexed(server, data)


def test_creation_with_upload(server: ServerProc) -> None:
    data = os.urandom(50_000)
    status, hdrs = create(server, {"Upload-Length": str(len(data)), "Content-Type": OCTETS,
                                   "Upload-Metadata": meta(filename="cwu.bin")}, data[:20_000])
    assert status == 201 and hdrs["upload-offset"] == "20000"
    loc = hdrs["location"]
    assert offset_of(server, loc) == 20_000
    assert patch(server, loc, 20_000, data[20_000:])[0] == 204
    assert download(server, "cwu.bin") == data

    whole = os.urandom(1000)
    status, hdrs = create(server, {"Upload-Length": "1000", "Content-Type": OCTETS,
                                   "Upload-Metadata": meta(filename="cwu-whole.bin")}, whole)
    assert status == 201 and hdrs["upload-offset"] == "1000"
    assert download(server, "cwu-whole.bin") == whole


def test_creation_defer_length(server: ServerProc) -> None:
    data = os.urandom(70_000)
    loc = new_upload(server, None, filename="deferred.bin")
    status, hdrs = head(server, loc)
    assert status == 200 and hdrs["upload-defer-length"] == "1" and "upload-length" not in hdrs
    assert patch(server, loc, 0, data[:30_000])[0] == 204
    status, hdrs = head(server, loc)
    assert hdrs["upload-offset"] == "30000" and "upload-length" not in hdrs
    # The length becomes known in a later PATCH: "the Client MUST set the
    # Upload-Length header in the next PATCH request, once the length is known".
    status, hdrs, _ = patch(server, loc, 30_000, data[30_000:50_000], Upload_Length=str(len(data)))
    assert status == 204 and hdrs["upload-offset"] == "50000"
    status, hdrs = head(server, loc)
    assert hdrs["upload-length"] == str(len(data)) and "upload-defer-length" not in hdrs
    status, _, _ = patch(server, loc, 50_000, b"", Upload_Length="999999")  # "it MUST NOT be changed"
    assert status == 400
    assert patch(server, loc, 50_000, data[50_000:])[0] == 204
    assert download(server, "deferred.bin") == data


def test_empty_upload_is_finished_at_creation(server: ServerProc) -> None:
    # No PATCH ever comes for an empty file (tus-js-client sends none).
    loc = new_upload(server, 0, filename="empty.txt")
    assert download(server, "empty.txt") == b""
    status, hdrs = head(server, loc)
    assert status == 200 and hdrs["upload-offset"] == hdrs["upload-length"] == "0"
    status, hdrs = create(server, {"Upload-Length": "0", "Upload-Concat": "partial"})
    empty_part = hdrs["location"]
    data = os.urandom(100)
    full_part = _partial(server, len(data))
    assert patch(server, full_part, 0, data)[0] == 204
    status, hdrs = create(server, {"Upload-Concat": f"final;{empty_part} {full_part}", "Upload-Metadata": meta(filename="empty-part.bin")})
    assert status == 201
    assert download(server, "empty-part.bin") == data


def test_creation_is_validated(server: ServerProc) -> None:
    assert create(server, {})[0] == 400  # neither Upload-Length nor Upload-Defer-Length
    assert create(server, {"Upload-Length": "1", "Upload-Defer-Length": "1"})[0] == 400
    assert create(server, {"Upload-Length": "-1"})[0] == 400
    assert create(server, {"Upload-Length": str(2**60)})[0] == 413  # over Tus-Max-Size
    assert create(server, {"Upload-Length": "1", "Upload-Metadata": "k not*base64"})[0] == 400
    for bad in ("../escape.bin", "/etc/escape.bin", ".xfer/state.bin", "dir/", "a\x00b"):
        # SPEC: such paths are refused (".xfer is unreachable": 404 too), before any byte is sent
        assert create(server, {"Upload-Length": "1", "Upload-Metadata": meta(path=bad)})[0] in (400, 403, 404), bad
    status, hdrs, _ = server.request("POST", "/tus/", {**TUS, "Upload-Length": "1"}, auth=False)
    assert status == 401
    # tuspy sends an empty Upload-Metadata: no metadata, not an error.
    status, hdrs = create(server, {"Upload-Length": "1", "Upload-Metadata": ""})
    assert status == 201 and "upload-metadata" not in head(server, hdrs["location"])[1]


def test_unknown_upload_is_404(server: ServerProc) -> None:
    status, hdrs = head(server, "/tus/0123456789abcdef0123456789abcdef")
    assert status == 404 and hdrs["tus-resumable"] == "1.0.0"
    assert patch(server, "/tus/0123456789abcdef0123456789abcdef", 0, b"x")[0] == 404


def test_patch_preconditions_change_nothing(server: ServerProc) -> None:
    loc = new_upload(server, 100)
    assert patch(server, loc, 0, b"a" * 10)[0] == 204
    status, hdrs, _ = patch(server, loc, 5, b"b" * 10)  # "MUST respond with the 409 Conflict"
    assert status == 409
    status, hdrs, _ = patch(server, loc, 10, b"b" * 10, Content_Type="application/octet-stream")
    assert status == 415
    status, hdrs, _ = patch(server, loc, 10, b"b" * 10, Tus_Resumable="0.2.2")
    assert status == 412 and hdrs["tus-version"] == "1.0.0"
    status, hdrs, _ = server.request("PATCH", loc, {"Upload-Offset": "10", "Content-Type": OCTETS}, b"b" * 10)
    assert status == 412 and hdrs["tus-version"] == "1.0.0"  # no Tus-Resumable at all
    status, hdrs, _ = server.request("HEAD", loc)
    assert status == 412
    assert offset_of(server, loc) == 10
    assert patch(server, loc, 10, b"c" * 91)[0] == 413  # past Upload-Length
    assert offset_of(server, loc) == 10


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_checksum(server: ServerProc, algorithm: str) -> None:
    data = os.urandom(40_000)
    loc = new_upload(server, len(data), filename=f"sum-{algorithm}.bin")
    first, second = data[:25_000], data[25_000:]
    status, hdrs, _ = patch(server, loc, 0, first, Upload_Checksum=f"{algorithm} {b64digest(algorithm, first)}")
    assert status == 204 and hdrs["upload-offset"] == "25000"
    status, hdrs, _ = patch(server, loc, 25_000, second, Upload_Checksum=f"{algorithm} {b64digest(algorithm, b'other')}")
    assert status == 460  # "460 Checksum Mismatch"
    assert offset_of(server, loc) == 25_000  # the chunk was discarded
    status, _, _ = patch(server, loc, 25_000, second, Upload_Checksum=f"crc32 {b64digest('md5', second)}")
    assert status == 400  # "400 Bad Request if the checksum algorithm is not supported"
    assert offset_of(server, loc) == 25_000
    status, hdrs, _ = patch(server, loc, 25_000, second, Upload_Checksum=f"{algorithm} {b64digest(algorithm, second)}")
    assert status == 204 and hdrs["upload-offset"] == str(len(data))
    assert download(server, f"sum-{algorithm}.bin") == data


def test_termination(server: ServerProc) -> None:
    loc = new_upload(server, 100)
    assert patch(server, loc, 0, b"x" * 50)[0] == 204
    staged = list((server.root / ".xfer").rglob(loc.rsplit("/", 1)[1] + "*"))
    status, hdrs, _ = server.request("DELETE", loc, TUS)
    assert status == 204 and hdrs["tus-resumable"] == "1.0.0"
    assert staged and not any(p.exists() for p in staged)
    assert head(server, loc)[0] in (404, 410)
    assert patch(server, loc, 50, b"x" * 50)[0] in (404, 410)
    assert server.request("DELETE", loc, TUS)[0] in (404, 410)


def test_method_override(server: ServerProc) -> None:
    data = os.urandom(2000)
    loc = new_upload(server, len(data), filename="override.bin")
    status, hdrs, _ = server.request("POST", loc, {**TUS, "X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0",
                                                   "Content-Type": OCTETS}, data)
    assert status == 204 and hdrs["upload-offset"] == str(len(data))
    assert download(server, "override.bin") == data
    loc = new_upload(server, 10)
    status, _, _ = server.request("POST", loc, {**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert status == 204
    assert head(server, loc)[0] in (404, 410)


# -- CORS ---------------------------------------------------------------------

ORIGIN = "https://app.example"


def _listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


def test_cors_on_responses(server: ServerProc) -> None:
    status, hdrs = create(server, {"Upload-Length": "10", "Origin": ORIGIN})
    assert status == 201
    assert hdrs["access-control-allow-origin"] in (ORIGIN, "*")
    assert {"location", "upload-offset", "upload-length", "upload-metadata", "upload-expires",
            "tus-resumable", "tus-version", "tus-extension", "tus-max-size"} <= _listed(hdrs["access-control-expose-headers"])
    loc = hdrs["location"]
    status, hdrs, _ = server.request("HEAD", loc, {**TUS, "Origin": ORIGIN})
    assert status == 200 and "upload-offset" in _listed(hdrs["access-control-expose-headers"])
    status, hdrs, _ = patch(server, loc, 3, b"x", Origin=ORIGIN)  # errors are readable by the page too
    assert status == 409 and hdrs["access-control-allow-origin"] in (ORIGIN, "*")


def test_cors_preflight_needs_no_token(server: ServerProc) -> None:
    status, hdrs, _ = server.request("OPTIONS", "/tus/0123456789abcdef0123456789abcdef", {
        "Origin": ORIGIN, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization, tus-resumable, upload-offset, content-type",
    }, auth=False)
    assert status in (200, 204)
    assert hdrs["access-control-allow-origin"] in (ORIGIN, "*")
    assert {"post", "head", "patch", "delete"} <= _listed(hdrs["access-control-allow-methods"])
    assert {"authorization", "tus-resumable", "upload-offset", "upload-length", "upload-metadata",
            "content-type", "upload-concat", "upload-checksum"} <= _listed(hdrs["access-control-allow-headers"])


def test_cors_on_auth_failures(server: ServerProc) -> None:
    status, hdrs, _ = server.request("POST", "/tus/", {**TUS, "Upload-Length": "1", "Origin": ORIGIN}, auth=False)
    assert status == 401
    assert hdrs.get("access-control-allow-origin") in (ORIGIN, "*") and hdrs.get("tus-resumable") == "1.0.0"


# -- committing into the files tree --------------------------------------------

def _upload(srv: ServerProc, data: bytes, **metadata: str) -> str:
    loc = new_upload(srv, len(data), **metadata)
    status, hdrs, _ = patch(srv, loc, 0, data)
    assert status == 204 and hdrs["upload-offset"] == str(len(data))
    return loc


def test_same_name_gets_a_numbered_suffix(server: ServerProc) -> None:
    first, second, third = os.urandom(1000), os.urandom(2000), os.urandom(3000)
    _upload(server, first, filename="report.pdf", filetype="application/pdf")
    _upload(server, second, filename="report.pdf")
    _upload(server, third, filename="report.pdf")
    assert sha(download(server, "report.pdf")) == sha(first)  # never overwritten
    assert sha(download(server, "report%20(1).pdf")) == sha(second)
    assert sha(download(server, "report%20(2).pdf")) == sha(third)


def test_path_metadata_with_directories(server: ServerProc) -> None:
    data = os.urandom(5000)
    _upload(server, data, path="tusdir/sub/deep.bin", filename="ignored.bin")
    assert sha(download(server, "tusdir/sub/deep.bin")) == sha(data)
    assert not (server.root / "ignored.bin").exists()
    again = os.urandom(10)
    _upload(server, again, path="tusdir/sub/deep.bin")
    assert download(server, "tusdir/sub/deep.bin") == data
    assert download(server, "tusdir/sub/deep%20(1).bin") == again


def test_filename_is_reduced_to_a_name(server: ServerProc) -> None:
    data = os.urandom(100)
    _upload(server, data, filename="C:\\Users\\me\\..\\windows-name.txt")
    assert download(server, "windows-name.txt") == data
    _upload(server, data, filename="../../etc/escape-name.txt")
    assert download(server, "escape-name.txt") == data
    assert not (server.root.parent / "escape-name.txt").exists()


# -- concatenation ---------------------------------------------------------------

def _partial(srv: ServerProc, length: int) -> str:
    status, hdrs = create(srv, {"Upload-Length": str(length), "Upload-Concat": "partial"})
    assert status == 201, hdrs
    return hdrs["location"]


def test_concatenation(server: ServerProc) -> None:
    a, b = os.urandom(70_000), os.urandom(33_333)
    loc_a, loc_b = _partial(server, len(a)), _partial(server, len(b))
    assert patch(server, loc_a, 0, a)[0] == 204
    assert patch(server, loc_b, 0, b)[0] == 204
    status, hdrs = head(server, loc_a)
    assert hdrs["upload-concat"] == "partial" and hdrs["upload-offset"] == str(len(a))
    # absolute and relative URLs may be mixed
    status, hdrs = create(server, {"Upload-Concat": f"final;{server.url}{loc_a} {loc_b}",
                                   "Upload-Metadata": meta(filename="joined.bin")})
    assert status == 201, hdrs
    final = hdrs["location"]
    assert sha(download(server, "joined.bin")) == sha(a + b)
    status, hdrs = head(server, final)
    assert status == 200 and hdrs["upload-concat"].startswith("final;")
    assert hdrs["upload-offset"] == hdrs["upload-length"] == str(len(a + b))
    # "The Server MUST respond with the 403 Forbidden status to PATCH requests against a final upload"
    assert patch(server, final, len(a + b), b"x")[0] == 403
    assert patch(server, final, 0, b"x", Content_Type="text/plain")[0] == 403
    # partials are not files of their own
    names = {p.name for p in server.root.iterdir()}
    assert loc_a.rsplit("/", 1)[1] not in names and loc_b.rsplit("/", 1)[1] not in names


def test_concatenation_unfinished(server: ServerProc) -> None:
    parts = [os.urandom(n) for n in (10_000, 20_000, 5)]
    locs = [_partial(server, len(p)) for p in parts]
    assert patch(server, locs[0], 0, parts[0])[0] == 204
    assert patch(server, locs[1], 0, parts[1][:7])[0] == 204
    status, hdrs = create(server, {"Upload-Concat": "final;" + " ".join(locs), "Upload-Metadata": meta(filename="later.bin")})
    assert status == 201, hdrs
    final = hdrs["location"]
    status, hdrs = head(server, final)
    # "SHOULD NOT contain the Upload-Offset header unless the concatenation has been successfully finished"
    assert status == 200 and "upload-offset" not in hdrs
    assert not (server.root / "later.bin").exists()
    assert patch(server, locs[2], 0, parts[2])[0] == 204
    assert patch(server, locs[1], 7, parts[1][7:])[0] == 204  # the last partial finishes the final
    assert sha(download(server, "later.bin")) == sha(b"".join(parts))
    status, hdrs = head(server, final)
    assert hdrs["upload-offset"] == hdrs["upload-length"] == str(sum(map(len, parts)))


def test_concatenation_refuses_non_partials(server: ServerProc) -> None:
    plain = new_upload(server, 10)
    assert create(server, {"Upload-Concat": f"final;{plain}"})[0] == 400
    assert create(server, {"Upload-Concat": "final;/tus/0123456789abcdef0123456789abcdef"})[0] in (400, 404)


# -- interrupted and stale PATCHes --------------------------------------------

def _raw_patch(srv: ServerProc, loc: str, offset: int, length: int, first: bytes) -> socket.socket:
    """A PATCH announcing `length` body bytes of which only `first` is sent."""
    sock = socket.create_connection((srv.host, srv.port), timeout=30)
    sock.sendall(
        f"PATCH {loc} HTTP/1.1\r\nHost: {srv.host}\r\nAuthorization: Bearer {srv.token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: {OCTETS}\r\n"
        f"Content-Length: {length}\r\n\r\n".encode() + first)
    return sock


def _offset_once_settled(srv: ServerProc, loc: str, expected: int) -> int:
    """HEAD until the server has seen the disconnect (bounded)."""
    deadline = time.monotonic() + TAKEOVER_BOUND_S
    while True:
        got = offset_of(srv, loc)
        if got >= expected or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_interrupted_patch_keeps_received_bytes(server: ServerProc) -> None:
    data = os.urandom(3_000_000)  # more than one write batch
    loc = new_upload(server, len(data), filename="interrupted.bin")
    half = len(data) // 2
    sock = _raw_patch(server, loc, 0, len(data), data[:half])
    sock.close()
    assert _offset_once_settled(server, loc, half) == half  # "servers SHOULD" keep them
    status, hdrs, _ = patch(server, loc, half, data[half:])
    assert status == 204 and hdrs["upload-offset"] == str(len(data))
    assert sha(download(server, "interrupted.bin")) == sha(data)
    assert_indexed(server, data)  # the running hash took the kept bytes, once


def test_many_small_patches_and_a_discarded_one_hash_right(server: ServerProc) -> None:
    """Small PATCHes are answered before the hash covers them; one whose
    Upload-Checksum fails was fed to the hash and must not count."""
    data = os.urandom(1_500_000)
    loc = new_upload(server, len(data), filename="small-patches.bin")
    offset = 0
    for i, step in enumerate([100_000] * 5 + [250_000] * 4):
        if i == 3:  # a corrupted chunk: 460, and the hash must forget it
            bad = bytes(b ^ 0xFF for b in data[offset:offset + step])
            status, _, _ = patch(server, loc, offset, bad, Upload_Checksum="sha1 " + b64digest("sha1", data[offset:offset + step]))
            assert status == 460
        status, hdrs, _ = patch(server, loc, offset, data[offset:offset + step])
        assert status == 204, hdrs
        offset += step
    assert offset == len(data)
    assert download(server, "small-patches.bin") == data
    assert_indexed(server, data)


def _connect(srv: ServerProc) -> tuple[http.client.HTTPConnection, str]:
    """A keep-alive connection, and the pid of the worker process serving it
    (from /metrics, whose samples carry it): the requests on it stay there."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    conn.request("GET", "/metrics", headers=srv.auth)
    resp = conn.getresponse()
    text = resp.read().decode()
    assert resp.status == 200, text
    match = re.search(r'pid="(\d+)"', text)
    assert match is not None, text
    return conn, match.group(1)


def _on(conn: http.client.HTTPConnection, srv: ServerProc, method: str, path: str,
        headers: dict[str, str], body: bytes | None = None) -> tuple[int, dict[str, str]]:
    conn.request(method, path, body=body, headers={**srv.auth, **headers})
    resp = conn.getresponse()
    resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}


def test_interrupted_patch_with_a_checksum_is_discarded(server: ServerProc) -> None:
    data = os.urandom(200_000)
    loc = new_upload(server, len(data), filename="interrupted-sum.bin")
    assert patch(server, loc, 0, data[:1000])[0] == 204
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.sendall(
        f"PATCH {loc} HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: Bearer {server.token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 1000\r\nContent-Type: {OCTETS}\r\n"
        f"Upload-Checksum: sha1 {b64digest('sha1', data[1000:])}\r\n"
        f"Content-Length: {len(data) - 1000}\r\n\r\n".encode() + data[1000:50_000])
    sock.close()
    time.sleep(0.3)  # the server notices the disconnect; HEAD then waits for the lock
    assert offset_of(server, loc) == 1000  # half a chunk cannot be verified: none of it counts
    assert patch(server, loc, 1000, data[1000:], Upload_Checksum=f"sha1 {b64digest('sha1', data[1000:])}")[0] == 204
    assert download(server, "interrupted-sum.bin") == data


def _stale_patch_is_taken_over(srv: ServerProc, name: str, size: int, *, other_process: bool) -> None:
    data = os.urandom(size)
    loc = new_upload(srv, len(data), filename=name)
    sent = size // 3
    stale, stale_pid = _connect(srv)
    stale.putrequest("PATCH", loc)
    for key, value in {**srv.auth, **TUS, "Upload-Offset": "0", "Content-Type": OCTETS,
                       "Content-Length": str(len(data))}.items():
        stale.putheader(key, value)
    stale.endheaders()
    stale.send(data[:sent])  # then stalls, its connection open
    fresh: http.client.HTTPConnection | None = None
    try:
        for _ in range(40):  # one worker accepts each connection; bounded
            fresh, pid = _connect(srv)
            if not other_process or pid != stale_pid:
                break
            fresh.close()
        else:
            pytest.fail("every connection landed on the stale request's worker")
        time.sleep(0.2)  # let the stale request reach the handler and take the upload
        started = time.monotonic()
        status, hdrs = _on(fresh, srv, "HEAD", loc, TUS)
        assert status == 200 and time.monotonic() - started < TAKEOVER_BOUND_S
        offset = int(hdrs["upload-offset"])
        assert offset == sent  # what the stale request received was kept
        status, hdrs = _on(fresh, srv, "PATCH", loc, {**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS},
                           data[offset:])
        assert status == 204 and hdrs["upload-offset"] == str(len(data))
        assert sha(download(srv, name)) == sha(data)
    finally:
        stale.close()
        if fresh is not None:
            fresh.close()


def test_stale_patch_is_taken_over(server: ServerProc) -> None:
    _stale_patch_is_taken_over(server, "stale.bin", 1_500_000, other_process=False)


def test_stale_patch_on_a_running_upload_is_taken_over_by_patch(server: ServerProc) -> None:
    data = os.urandom(200_000)
    loc = new_upload(server, len(data), filename="stale-patch.bin")
    stale = _raw_patch(server, loc, 0, len(data), data[:1000])
    try:
        time.sleep(0.2)
        # A client resuming without a HEAD: its PATCH at the offset it knew waits
        # for the stale one to let go, then finds the offset moved: 409.
        status, hdrs, _ = patch(server, loc, 0, data)
        assert status == 409
        assert offset_of(server, loc) == 1000
        assert patch(server, loc, 1000, data[1000:])[0] == 204
        assert download(server, "stale-patch.bin") == data
    finally:
        stale.close()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    srv = start_cli(tmp_path_factory.mktemp("root2"), "--workers", "2")
    try:
        wait_for_workers(srv, 2)
        yield srv
    finally:
        srv.stop()


def test_stale_patch_is_taken_over_across_workers(two_workers: ServerProc) -> None:
    # The new request is sent on a connection served by the other process.
    _stale_patch_is_taken_over(two_workers, "stale-across.bin", 1_500_000, other_process=True)


# -- expiration, with an injected clock ------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def _call(app: XferApp, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, str]]:
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"authorization", b"Bearer t"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }
    comm = ApplicationCommunicator(app, scope)
    await comm.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await comm.receive_output(5)
    while (await comm.receive_output(5)).get("more_body"):
        pass
    await comm.wait(5)
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_expiration(tmp_path: Path) -> None:
    clock = Clock()
    ttl = 3600
    app = XferApp(settings=Settings(root=tmp_path, tokens=("t",), session_ttl_s=ttl), clock=clock)

    def expires(hdrs: dict[str, str]) -> float:
        return parsedate_to_datetime(hdrs["upload-expires"]).timestamp()

    async def scenario() -> None:
        status, hdrs = await _call(app, "POST", "/tus/", {**TUS, "Upload-Length": "10"})
        assert status == 201 and expires(hdrs) == clock.now + ttl
        loc = hdrs["location"]
        clock.now += ttl - 100
        status, hdrs = await _call(app, "HEAD", loc, TUS)
        assert status == 200 and expires(hdrs) == clock.now + 100
        status, hdrs = await _call(app, "PATCH", loc, {**TUS, "Upload-Offset": "0", "Content-Type": OCTETS}, b"12345")
        assert status == 204 and expires(hdrs) == clock.now + ttl  # activity extends it
        clock.now += ttl + 1
        # "the Server SHOULD respond with 404 Not Found or 410 Gone" once expired
        status, hdrs = await _call(app, "HEAD", loc, TUS)
        assert status in (404, 410) and hdrs["tus-resumable"] == "1.0.0"
        status, _ = await _call(app, "PATCH", loc, {**TUS, "Upload-Offset": "5", "Content-Type": OCTETS}, b"67890")
        assert status in (404, 410)

    asyncio.run(scenario())
    assert not (tmp_path / "10").exists()
