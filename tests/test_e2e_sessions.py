"""Resumable chunked uploads (SPEC "/uploads") against the real server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import threading
from pathlib import Path

import pytest

from conftest import write_file
from serverproc import ServerProc
from sessionclient import chunk_of, complete, create, put_chunk, show

CHUNK = 256 * 1024


def _upload_all(srv: ServerProc, sid: str, data: bytes, order: list[int]) -> None:
    for index in order:
        status, body = put_chunk(srv, sid, index, chunk_of(data, CHUNK, index))
        assert status == 200, body


def test_chunks_in_any_order_then_complete(server: ServerProc) -> None:
    data = os.urandom(10 * CHUNK + 12345)
    status, session = create(server, "sess/a.bin", data, CHUNK)
    assert status == 201
    assert (session["size"], session["chunk_size"], session["chunks"]) == (len(data), CHUNK, 11)
    assert session["received"] == [] and session["expires"] > 0
    order = list(range(11))
    random.Random(3).shuffle(order)
    _upload_all(server, session["id"], data, order)
    status, result = complete(server, session["id"], hashlib.sha256(data).hexdigest())
    assert status == 201, result
    assert result["sha256"] == hashlib.sha256(data).hexdigest() and result["size"] == len(data)
    assert (server.root / "sess/a.bin").read_bytes() == data
    assert complete(server, session["id"]) == (201, result)  # again: the same result
    status, headers, _ = server.request("HEAD", "/files/sess/a.bin")
    assert headers["etag"] == result["etag"]


def test_parallel_chunks(server: ServerProc) -> None:
    data = os.urandom(24 * CHUNK)
    _, session = create(server, "sess/par.bin", data, CHUNK)
    indexes = list(range(24))
    threads = [threading.Thread(target=_upload_all, args=(server, session["id"], data, indexes[i::6])) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert show(server, session["id"])[1]["missing"] == []
    assert complete(server, session["id"])[0] == 201
    assert (server.root / "sess/par.bin").read_bytes() == data


def test_same_chunk_in_parallel_is_written_once(server: ServerProc) -> None:
    data = os.urandom(2 * CHUNK)
    _, session = create(server, "sess/dup.bin", data, CHUNK)
    results: list[int] = []
    chunk = chunk_of(data, CHUNK, 0)
    threads = [threading.Thread(target=lambda: results.append(put_chunk(server, session["id"], 0, chunk)[0])) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [200] * 6
    put_chunk(server, session["id"], 1, chunk_of(data, CHUNK, 1))
    assert complete(server, session["id"], hashlib.sha256(data).hexdigest())[0] == 201


def test_lost_id_finds_the_open_session(server: ServerProc) -> None:
    data = os.urandom(3 * CHUNK)
    _, first = create(server, "sess/lost.bin", data, CHUNK)
    put_chunk(server, first["id"], 1, chunk_of(data, CHUNK, 1))
    status, again = create(server, "sess/lost.bin", data, CHUNK)
    assert status == 200 and again["id"] == first["id"] and again["received"] == [1]
    assert again["missing"] == [0, 2]


def test_bad_chunks_are_refused_and_not_counted(server: ServerProc) -> None:
    data = os.urandom(3 * CHUNK + 100)
    _, session = create(server, "sess/bad.bin", data, CHUNK)
    sid = session["id"]
    assert put_chunk(server, sid, 0, chunk_of(data, CHUNK, 0)[:-1])[0] == 400  # short
    assert put_chunk(server, sid, 3, chunk_of(data, CHUNK, 3) + b"x")[0] == 400  # long last chunk
    assert put_chunk(server, sid, 4, b"x")[0] == 400  # out of range
    status, _, raw = server.request("PUT", f"/uploads/{sid}/chunks/-1", body=b"x")
    assert status == 400
    bad = {"Content-Digest": "sha-256=:" + "A" * 43 + "=:"}
    status, _, _ = server.request("PUT", f"/uploads/{sid}/chunks/1", bad, chunk_of(data, CHUNK, 1))
    assert status == 422
    assert show(server, sid)[1]["received"] == []
    assert put_chunk(server, sid, 1, chunk_of(data, CHUNK, 1))[0] == 200
    assert put_chunk(server, sid, 1, chunk_of(data, CHUNK, 1))[0] == 200  # again: idempotent
    assert show(server, sid)[1]["received"] == [1]


def test_complete_rules(server: ServerProc) -> None:
    data = os.urandom(2 * CHUNK)
    _, session = create(server, "sess/done.bin", data, CHUNK, sha256=False)
    sid = session["id"]
    put_chunk(server, sid, 1, chunk_of(data, CHUNK, 1))
    status, body = complete(server, sid)
    assert status == 409 and body["error"]["missing"] == [0]
    put_chunk(server, sid, 0, chunk_of(data, CHUNK, 0))
    status, body = complete(server, sid, "0" * 64)
    assert status == 422 and body["error"]["code"] == "checksum_mismatch"
    assert not (server.root / "sess/done.bin").exists()
    assert show(server, sid)[0] == 200  # the session is kept
    assert complete(server, sid, hashlib.sha256(data).hexdigest())[0] == 201
    assert put_chunk(server, sid, 0, chunk_of(data, CHUNK, 0))[0] == 409  # closed


def test_delete_drops_staging(server: ServerProc) -> None:
    data = os.urandom(CHUNK)
    _, session = create(server, "sess/del.bin", data, CHUNK)
    staging = server.root / ".xfer/uploads" / f"{session['id']}.part"
    assert staging.exists()
    assert server.request("DELETE", f"/uploads/{session['id']}")[0] == 204
    assert not staging.exists()
    assert show(server, session["id"])[0] == 404


def test_instant_upload_sends_no_bytes(server: ServerProc) -> None:
    data = os.urandom(100_000)
    assert server.request("PUT", "/files/sess/orig.bin", body=data)[0] == 201
    status, body = create(server, "sess/copy/of.bin", data)
    assert status == 200 and body["complete"] is True
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (server.root / "sess/copy/of.bin").read_bytes() == data
    # A changed source is no longer trusted: a normal session opens.
    write_file(server.root, "sess/orig.bin", b"changed")
    (server.root / "sess/copy/of.bin").unlink()
    status, body = create(server, "sess/third.bin", data)
    assert status == 201 and body["complete"] is False


def test_invalid_requests(server: ServerProc) -> None:
    for payload in (b"[]", b"{", b'{"path": "x"}', b'{"path": "../x", "size": 1}', b'{"path": "a", "size": -1}',
                    b'{"path": "a", "size": 10, "chunk_size": 1}', b'{"path": "a", "size": 1, "sha256": "zz"}'):
        status, headers, _ = server.request("POST", "/uploads", {"Content-Type": "application/json"}, payload)
        assert status == 400, payload
        assert headers["content-type"] == "application/json"
    assert server.request("GET", "/uploads/nope")[0] == 404
    assert server.request("PUT", "/uploads/nope/chunks/0", body=b"x")[0] == 404
    assert server.request("POST", "/uploads/nope/other")[0] == 404
    assert server.request("POST", "/uploads", body=b"{}", auth=False)[0] == 401


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", None])
@pytest.mark.parametrize("path", ["/uploads", "/sign"])
def test_json_body_not_sent_as_json_is_415(server: ServerProc, path: str, content_type: str | None) -> None:
    # A JSON body as text/plain or a form (curl -d) is what a cross-site page
    # may send without a CORS preflight: refused, nothing opened.
    payload = json.dumps({"path": "sess/typed.bin", "size": 3}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    before = set((server.root / ".xfer/uploads").glob("*.part"))
    status, hdrs, raw = server.request("POST", path, headers, payload)
    assert status == 415 and json.loads(raw)["error"]["code"] == "unsupported_media_type"
    assert set((server.root / ".xfer/uploads").glob("*.part")) == before


def test_complete_without_body_needs_no_type(server: ServerProc) -> None:
    status, body = create(server, "sess/empty-complete.bin", b"abc")
    assert status == 201
    assert server.request("PUT", f"/uploads/{body['id']}/chunks/0", body=b"abc")[0] == 200
    assert server.request("POST", f"/uploads/{body['id']}/complete")[0] == 201


def test_not_enough_disk_is_507(server: ServerProc) -> None:
    huge = 60 << 40  # 60 TiB: within the session limit, beyond this disk
    status, _, raw = server.request("POST", "/uploads", {"Content-Type": "application/json"},
                                    f'{{"path": "sess/huge.bin", "size": {huge}}}'.encode())
    assert status == 507 and b"insufficient_storage" in raw


def test_session_survives_restart(tmp_path: Path) -> None:
    from serverproc import start_cli

    data = os.urandom(4 * CHUNK)
    srv = start_cli(tmp_path)
    try:
        _, session = create(srv, "r.bin", data, CHUNK)
        _upload_all(srv, session["id"], data, [0, 2])
    finally:
        srv.stop()
    srv = start_cli(tmp_path)
    try:
        status, again = show(srv, session["id"])
        assert status == 200 and again["received"] == [0, 2]
        _upload_all(srv, session["id"], data, [1, 3])
        assert complete(srv, session["id"], hashlib.sha256(data).hexdigest())[0] == 201
        assert (tmp_path / "r.bin").read_bytes() == data
    finally:
        srv.stop()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parallel_chunks_with_rejected_attempts_hash_right(server: ServerProc, seed: int) -> None:
    """Large chunks over 4 connections (the hash sets the pace, so they line
    up for the running hash), some first sent corrupted (422): the sha256 the
    server computes on its own (none announced) counts only accepted bytes."""
    chunk = 2 << 20
    data = os.urandom(20 * chunk + 777)
    _, session = create(server, f"sess/stress{seed}.bin", data, chunk, sha256=False)
    sid = session["id"]
    rng = random.Random(seed)
    corrupt_first = set(rng.sample(range(21), 4))
    errors: list[str] = []

    def send(indexes: list[int]) -> None:
        for index in indexes:
            piece = chunk_of(data, chunk, index)
            if index in corrupt_first:
                digest = "sha-256=:" + base64.b64encode(hashlib.sha256(piece).digest()).decode() + ":"
                status, _, _ = server.request("PUT", f"/uploads/{sid}/chunks/{index}", {"Content-Digest": digest},
                                              bytes([piece[0] ^ 1]) + piece[1:])
                if status != 422:
                    errors.append(f"corrupted chunk {index}: {status}")
            status, body = put_chunk(server, sid, index, piece, digest=False)
            if status != 200:
                errors.append(f"chunk {index}: {status} {body}")

    threads = [threading.Thread(target=send, args=(list(range(i, 21, 4)),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    status, result = complete(server, sid)
    assert status == 201, result
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert (server.root / f"sess/stress{seed}.bin").read_bytes() == data
