"""The upload measurements, each one transfer against one running server.

Owns the client side of an upload (curl for PUT and multipart, a small
http.client driver for `/uploads` sessions and tus) and the server-side
numbers taken around it: wall time, server CPU from /proc before and after,
peak RSS sampled during. Every function checks that the server stored the
whole file (size, and the sha256 it reports where it reports one) and raises
``MeasurementFailed`` rather than return a number from a failed transfer.
It must not start servers nor choose what runs (run_uploads.py does).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from process_tree import PeakRssSampler, list_tree_pids, read_cpu_s
from scenarios import GB, MB, MIB, MeasurementFailed
from servers import RunningServer

# Bounds on one transfer: generous for the slowest peer (FastAPI multipart)
# at 4 GiB on a loaded machine.
CURL_MAX_TIME_S = 600
# One request of a session or a tus PATCH (8 MiB) plus a commit's fsync.
HTTP_TIMEOUT_S = 120
HASH_READ_BYTES = 8 * MIB
IETF_INTEROP = "8"
TUS_VERSION = "1.0.0"


@dataclass(frozen=True)
class Source:
    """A page-cached local file to upload, with what the server must report."""

    path: Path
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Timed:
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int


def run_timed(server: RunningServer, action: Callable[[], None]) -> Timed:
    """Run ``action`` (the client side) and measure the server around it."""
    pids = list_tree_pids(server.pid)
    with PeakRssSampler(pids) as sampler:
        cpu_before = read_cpu_s(pids)
        started = time.monotonic()
        action()
        wall_s = time.monotonic() - started
        # The tree as it is now: a worker forked during the run counts too.
        cpu_after = read_cpu_s(list_tree_pids(server.pid))
    return Timed(wall_s, cpu_after - cpu_before, sampler.peak_bytes)


def format_rate_metrics(timed: Timed, size: int) -> dict[str, float]:
    return {
        "mb_s": size / timed.wall_s / MB,
        "cpu_s_per_gb": timed.cpu_s / (size / GB),
        "peak_rss_mib": timed.peak_rss_bytes / MIB,
    }


def check_stored(path: Path, source: Source, reported: dict[str, Any] | None = None) -> None:
    """The server stored ``source`` whole at ``path`` (and reported its sha256)."""
    if not path.is_file() or path.stat().st_size != source.size:
        found = path.stat().st_size if path.is_file() else "no file"
        raise MeasurementFailed(f"{path.name}: expected {source.size} bytes stored, found {found}")
    if reported and "sha256" in reported and reported["sha256"] != source.sha256:
        raise MeasurementFailed(f"{path.name}: server reports sha256 {reported['sha256']}")


# --- curl: PUT and multipart -------------------------------------------------

CURL_WRITE_OUT = "\n%{http_code} %{size_upload}"


def run_curl(args: list[str], expected_status: set[int]) -> dict[str, Any] | None:
    """curl with ``args``; the JSON response body, if it was JSON."""
    argv = ["curl", "-s", "-S", "-H", "Expect:", "--max-time", str(CURL_MAX_TIME_S),
            "-o", "-", "-w", CURL_WRITE_OUT, *args]
    result = subprocess.run(argv, capture_output=True, timeout=CURL_MAX_TIME_S + 10)
    body, _, tail = result.stdout.rpartition(b"\n")
    fields = tail.split()
    if result.returncode != 0 or len(fields) != 2 or int(fields[0]) not in expected_status:
        raise MeasurementFailed(f"curl exit {result.returncode}, got {tail.decode(errors='replace')!r}: "
                                f"{(body or result.stderr)[:200]!r}")
    try:
        parsed = json.loads(body) if body.strip() else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def measure_put(server: RunningServer, source: Source, root: Path, *, fsync_after: bool = False,
                store: bool = True) -> dict[str, float]:
    """``curl -T``: MB/s over the PUT (plus an fsync of the stored file when
    ``fsync_after``: the durability our PUT gives before its 201)."""
    target = f"put-{source.name}"
    stored = root / target
    reported: dict[str, Any] | None = None

    def upload() -> None:
        nonlocal reported
        reported = run_curl(["-T", str(source.path), f"{server.base_url}/files/{target}"],
                            {200, 201, 204})
        if fsync_after:
            write_fsync(stored)

    timed = run_timed(server, upload)
    if store:
        check_stored(stored, source, reported)
    return format_rate_metrics(timed, source.size)


def write_fsync(path: Path) -> None:
    """fsync a file someone else wrote: flushes its dirty pages to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def measure_multipart(server: RunningServer, source: Source, root: Path) -> dict[str, float]:
    """``curl -F f=@file`` to ``POST /files/up/``: MB/s."""
    reported: dict[str, Any] | None = None

    def upload() -> None:
        nonlocal reported
        reported = run_curl(["-F", f"f=@{source.path}", f"{server.base_url}/files/up/?overwrite=1"],
                            {200, 201})

    timed = run_timed(server, upload)
    files = (reported or {}).get("files") or [None]
    check_stored(root / "up" / source.name, source, files[0])
    return format_rate_metrics(timed, source.size)


# --- http.client: /uploads sessions and tus ----------------------------------

def open_connection(server: RunningServer) -> http.client.HTTPConnection:
    parts = urlsplit(server.base_url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=HTTP_TIMEOUT_S)


def send_request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
                 headers: dict[str, str], expected_status: set[int]) -> http.client.HTTPResponse:
    """One request on a keep-alive connection; the response, body read."""
    conn.request(method, path, body=body if body is not None else b"", headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status not in expected_status:
        raise MeasurementFailed(f"{method} {path}: HTTP {response.status}: {data[:200]!r}")
    response.body = data  # type: ignore[attr-defined]
    return response


def send_json(conn: http.client.HTTPConnection, method: str, path: str, payload: object,
              expected_status: set[int]) -> dict[str, Any]:
    response = send_request(conn, method, path, json.dumps(payload).encode(),
                            {"Content-Type": "application/json"}, expected_status)
    return json.loads(response.body)  # type: ignore[attr-defined]


def list_chunks(size: int, chunk_bytes: int) -> list[tuple[int, int, int]]:
    """(index, offset, length) of every chunk."""
    return [(i, offset, min(chunk_bytes, size - offset))
            for i, offset in enumerate(range(0, size, chunk_bytes))]


def format_content_digest(data: bytes) -> str:
    """RFC 9530 ``Content-Digest: sha-256=:<base64>:``."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def plan_chunk_digests(source: Source, chunk_bytes: int) -> list[str]:
    """The Content-Digest of every chunk, computed once before any timing."""
    with open(source.path, "rb") as f:
        return [format_content_digest(os.pread(f.fileno(), length, offset))
                for _, offset, length in list_chunks(source.size, chunk_bytes)]


def open_session(server: RunningServer, source: Source, target: str, chunk_bytes: int) -> str:
    """POST /uploads on a connection of its own: uvicorn closes a keep-alive
    connection idle for 5 s, as this one would be while the chunks go up."""
    conn = open_connection(server)
    try:
        session = send_json(conn, "POST", "/uploads", {
            "path": target, "size": source.size, "chunk_size": chunk_bytes, "sha256": source.sha256,
        }, {201})
    finally:
        conn.close()
    if session.get("complete"):
        raise MeasurementFailed("the session completed at once: the file was already on the server")
    return str(session["id"])


def send_chunks(server: RunningServer, source: Source, session_id: str, chunk_bytes: int,
                connections: int, digests: list[str] | None) -> None:
    """PUT every chunk, ``connections`` keep-alive connections taking the
    next index in turn (so chunks arrive roughly, not strictly, in order)."""
    chunks: Iterator[tuple[int, int, int]] = iter(list_chunks(source.size, chunk_bytes))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def next_chunk() -> tuple[int, int, int] | None:
        with lock:
            return None if errors else next(chunks, None)

    def work(fd: int) -> None:
        conn = open_connection(server)
        try:
            while (chunk := next_chunk()) is not None:
                index, offset, length = chunk
                headers = {"Content-Type": "application/octet-stream"}
                if digests is not None:
                    headers["Content-Digest"] = digests[index]
                send_request(conn, "PUT", f"/uploads/{session_id}/chunks/{index}",
                             os.pread(fd, length, offset), headers, {200})
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            conn.close()

    fd = os.open(source.path, os.O_RDONLY)
    try:
        threads = [threading.Thread(target=work, args=(fd,), daemon=True) for _ in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HTTP_TIMEOUT_S * (source.size // chunk_bytes + 1))
    finally:
        os.close(fd)
    if errors:
        raise MeasurementFailed(f"chunk upload failed: {errors[0]}")
    if any(t.is_alive() for t in threads):
        raise MeasurementFailed("a chunk upload thread did not finish")


def write_chunk_files(source: Source, chunk_bytes: int, directory: Path) -> list[Path]:
    """The source cut into one file per chunk (for curl, which uploads whole
    files), written once and reused while the source is unchanged."""
    stamp = directory / "source.mtime"
    wanted = f"{source.path.stat().st_mtime_ns} {chunk_bytes}"
    paths = [directory / f"{index:05d}" for index, _, _ in list_chunks(source.size, chunk_bytes)]
    if not (stamp.exists() and stamp.read_text() == wanted and all(p.exists() for p in paths)):
        directory.mkdir(parents=True, exist_ok=True)
        with open(source.path, "rb") as f:
            for path, (_, offset, length) in zip(paths, list_chunks(source.size, chunk_bytes)):
                path.write_bytes(os.pread(f.fileno(), length, offset))
        stamp.write_text(wanted)
    for path in paths:  # page-cached, as the source is for every other row
        path.read_bytes()
    return paths


def send_chunks_with_curl(server: RunningServer, chunk_files: list[Path], session_id: str,
                          connections: int) -> None:
    """PUT every chunk with ``connections`` curl processes, one keep-alive
    connection each; process w sends chunks w, w+connections, ... in order."""
    procs = []
    for worker in range(min(connections, len(chunk_files))):
        args: list[str] = []
        for index in range(worker, len(chunk_files), connections):
            args += ["-T", str(chunk_files[index]), f"{server.base_url}/uploads/{session_id}/chunks/{index}"]
        procs.append(subprocess.Popen(
            ["curl", "-s", "-S", "-H", "Expect:", "--max-time", str(CURL_MAX_TIME_S),
             "-w", "\n%{http_code}\n", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    failures = []
    for worker, proc in enumerate(procs):
        out, err = proc.communicate(timeout=CURL_MAX_TIME_S + 10)
        statuses = [line for line in out.decode(errors="replace").splitlines() if line.isdigit()]
        expected = len(range(worker, len(chunk_files), connections))
        if proc.returncode != 0 or statuses != ["200"] * expected:
            failures.append(f"curl {worker}: exit {proc.returncode}, statuses {statuses[:5]}, {err[:200]!r}")
    if failures:
        raise MeasurementFailed("; ".join(failures))


def measure_chunked(server: RunningServer, source: Source, root: Path, *, chunk_bytes: int,
                    connections: int, digests: list[str] | None = None,
                    chunk_files: list[Path] | None = None) -> dict[str, float]:
    """A whole `/uploads` session, create → chunks in parallel → complete:
    MB/s. The chunks go up with curl when ``chunk_files`` are given, else
    with http.client threads."""
    target = f"chunked-{source.name}"
    result: dict[str, Any] = {}

    def upload() -> None:
        session_id = open_session(server, source, target, chunk_bytes)
        if chunk_files is not None:
            send_chunks_with_curl(server, chunk_files, session_id, connections)
        else:
            send_chunks(server, source, session_id, chunk_bytes, connections, digests)
        conn = open_connection(server)
        try:
            result.update(send_json(conn, "POST", f"/uploads/{session_id}/complete", {}, {201}))
        finally:
            conn.close()

    timed = run_timed(server, upload)
    check_stored(root / target, source, result)
    return format_rate_metrics(timed, source.size)


def measure_complete(server: RunningServer, source: Source, root: Path, *,
                     chunk_bytes: int) -> dict[str, float]:
    """Chunks sent in order on one connection (timed as an upload), then
    `POST /complete` timed alone: seconds, and server CPU seconds."""
    target = f"complete-{source.name}"
    session_id = open_session(server, source, target, chunk_bytes)
    uploaded = run_timed(server, lambda: send_chunks(
        server, source, session_id, chunk_bytes, connections=1, digests=None))
    result: dict[str, Any] = {}
    conn = open_connection(server)
    try:
        conn.connect()  # outside the timed span: only the request is timed
        completed = run_timed(server, lambda: result.update(
            send_json(conn, "POST", f"/uploads/{session_id}/complete", {}, {201})))
    finally:
        conn.close()
    check_stored(root / target, source, result)
    return {
        **format_rate_metrics(uploaded, source.size),
        "complete_s": completed.wall_s,
        "complete_cpu_s": completed.cpu_s,
    }


def send_patches_with_curl(url: str, patch_files: list[Path], headers_at: Callable[[int, bool], list[str]],
                           reply_header: str, ok_status: Callable[[bool], str], what: str) -> None:
    """One curl sending ``patch_files`` (the source cut in order) as
    sequential PATCHes on one keep-alive connection; each reply must carry
    ``ok_status(last)`` and the offset after it in ``reply_header``."""
    args: list[str] = []
    expected: list[str] = []
    offset = 0
    for index, path in enumerate(patch_files):
        last = index == len(patch_files) - 1
        if args:
            args.append("--next")
        headers = [item for header in headers_at(offset, last) for item in ("-H", header)]
        args += ["-s", "-S", "-o", "/dev/null", "-X", "PATCH", "-H", "Expect:", *headers, "--max-time",
                 str(CURL_MAX_TIME_S), "-w", f"%{{http_code}} %header{{{reply_header}}}\\n", "-T", str(path), url]
        offset += path.stat().st_size
        expected += [ok_status(last), str(offset)]
    result = subprocess.run(["curl", *args], capture_output=True, timeout=CURL_MAX_TIME_S + 10)
    replies = result.stdout.decode(errors="replace").split()
    if result.returncode != 0 or replies != expected:
        raise MeasurementFailed(f"{what} PATCHes: curl exit {result.returncode}, replies "
                                f"{replies[:6]}..., {result.stderr[:200]!r}")


def measure_tus(server: RunningServer, source: Source, root: Path, *, patch_files: list[Path]) -> dict[str, float]:
    """tus creation, then ``patch_files`` as sequential PATCHes: MB/s."""
    target = f"tus-{source.name}"
    metadata = "path " + base64.b64encode(target.encode()).decode()

    def upload() -> None:
        conn = open_connection(server)
        try:
            created = send_request(conn, "POST", "/tus/", None, {
                "Tus-Resumable": TUS_VERSION, "Upload-Length": str(source.size),
                "Upload-Metadata": metadata,
            }, {201})
        finally:
            conn.close()
        url = server.base_url + urlsplit(created.getheader("Location", "")).path
        send_patches_with_curl(url, patch_files, lambda offset, last: [
            f"Tus-Resumable: {TUS_VERSION}", f"Upload-Offset: {offset}",
            "Content-Type: application/offset+octet-stream"], "upload-offset", lambda last: "204", "tus")

    timed = run_timed(server, upload)
    check_stored(root / target, source)
    return format_rate_metrics(timed, source.size)


def measure_ietf_whole(server: RunningServer, source: Source, root: Path) -> dict[str, float]:
    """IETF resumable uploads: the whole file in the creation request
    (``curl -T`` to ``/resumable/`` with ``Upload-Complete: ?1``): MB/s."""
    target = f"ietf-{source.name}"

    def upload() -> None:
        run_curl(["-T", str(source.path), "-H", f"Upload-Draft-Interop-Version: {IETF_INTEROP}",
                  "-H", "Upload-Complete: ?1", "-H", f"Upload-Length: {source.size}",
                  f"{server.base_url}/resumable?path={target}"], {201})  # no slash: curl -T would append the name

    timed = run_timed(server, upload)
    check_stored(root / target, source)
    return format_rate_metrics(timed, source.size)


def measure_ietf(server: RunningServer, source: Source, root: Path, *, patch_files: list[Path]) -> dict[str, float]:
    """IETF resumable uploads: an empty creation (``Upload-Complete: ?0``),
    then ``patch_files`` as sequential ``application/partial-upload``
    appends, the last with ``?1``: MB/s."""
    target = f"ietf-{source.name}"

    def upload() -> None:
        conn = open_connection(server)
        try:
            # No interop version: no 104, which http.client would take for
            # the final response (it skips 100 only).
            created = send_request(conn, "POST", f"/resumable/?path={target}", b"", {
                "Upload-Complete": "?0", "Upload-Length": str(source.size)}, {201})
        finally:
            conn.close()
        url = server.base_url + urlsplit(created.getheader("Location", "")).path
        send_patches_with_curl(url, patch_files, lambda offset, last: [
            f"Upload-Draft-Interop-Version: {IETF_INTEROP}", f"Upload-Offset: {offset}",
            f"Upload-Complete: {'?1' if last else '?0'}", "Content-Type: application/partial-upload"],
            "upload-offset", lambda last: "201" if last else "204", "ietf")

    timed = run_timed(server, upload)
    check_stored(root / target, source)
    return format_rate_metrics(timed, source.size)


def measure_sha256_mb_s(size_bytes: int = 64 * MIB) -> float:
    """This machine's single-thread hashlib SHA-256 speed, for context."""
    block = os.urandom(HASH_READ_BYTES)
    digest = hashlib.sha256()
    started = time.perf_counter()
    for _ in range(size_bytes // HASH_READ_BYTES):
        digest.update(block)
    return size_bytes / (time.perf_counter() - started) / MB


def read_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(HASH_READ_BYTES):
            digest.update(block)
    return digest.hexdigest()
