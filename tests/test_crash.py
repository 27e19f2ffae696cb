"""Sessions survive kill -9 and work across two worker processes."""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import signal
import threading
import time
from pathlib import Path

from serverproc import ServerProc, start_cli, wait_for_workers
from sessionclient import chunk_of, complete, create, put_chunk, show

CHUNK = 2 * 1024 * 1024
KILLS = 10


def _upload_quietly(srv: ServerProc, sid: str, data: bytes, indexes: list[int]) -> None:
    for index in indexes:
        try:
            put_chunk(srv, sid, index, chunk_of(data, CHUNK, index))
        except (OSError, http.client.HTTPException, ValueError):
            return  # the server was killed under us, maybe mid-response


def _assert_received_chunks_whole(staging: Path, data: bytes, received: list[int]) -> None:
    with open(staging, "rb") as f:
        for index in received:
            f.seek(index * CHUNK)
            assert f.read(CHUNK) == chunk_of(data, CHUNK, index), f"chunk {index} listed but not whole"


def test_kill_9_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(9)
    data = rng.randbytes(48 * CHUNK + 777)
    srv = start_cli(tmp_path)
    _, session = create(srv, "crash/big.bin", data, CHUNK)
    sid = session["id"]
    staging = tmp_path / ".xfer/uploads" / f"{sid}.part"
    try:
        for _ in range(KILLS):
            missing = show(srv, sid)[1]["missing"]
            rng.shuffle(missing)
            uploader = threading.Thread(target=_upload_quietly, args=(srv, sid, data, missing[:6]))
            uploader.start()
            time.sleep(rng.uniform(0.01, 0.15))  # a random point in the middle of chunk writes
            srv.stop(signal.SIGKILL)
            uploader.join(timeout=30)
            srv = start_cli(tmp_path)
            status, state = show(srv, sid)
            assert status == 200
            _assert_received_chunks_whole(staging, data, state["received"])
        _upload_quietly(srv, sid, data, show(srv, sid)[1]["missing"])
        status, result = complete(srv, sid, hashlib.sha256(data).hexdigest())
        assert status == 201, result
        assert (tmp_path / "crash/big.bin").read_bytes() == data
    finally:
        srv.stop()


def test_two_workers_share_sessions(tmp_path: Path) -> None:
    srv = start_cli(tmp_path, "--workers", "2")
    try:
        wait_for_workers(srv, 2)
        data = os.urandom(32 * 256 * 1024)
        chunk = 256 * 1024
        _, session = create(srv, "two/w.bin", data, chunk)
        sid = session["id"]

        def send(indexes: list[int]) -> None:
            for i in indexes:
                assert put_chunk(srv, sid, i, data[i * chunk:(i + 1) * chunk])[0] == 200
                put_chunk(srv, sid, i, data[i * chunk:(i + 1) * chunk])  # duplicates land anywhere

        threads = [threading.Thread(target=send, args=(list(range(32))[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        results: list[tuple[int, dict]] = []
        completers = [threading.Thread(target=lambda: results.append(complete(srv, sid, hashlib.sha256(data).hexdigest())))
                      for _ in range(8)]
        for t in completers:
            t.start()
        for t in completers:
            t.join(timeout=60)
        assert [status for status, _ in results] == [201] * 8, results
        assert all(body == results[0][1] for _, body in results)
        assert (tmp_path / "two/w.bin").read_bytes() == data
    finally:
        srv.stop()
