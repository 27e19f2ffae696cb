"""tus (SPEC "tus") with the real clients: tuspy (PyPI), tus-js-client under
Node and Uppy (@uppy/core + @uppy/tus) under Node. `.ci/install-tools.sh`
installs the npm packages of tests/js; the `test` extra brings tuspy.

Resumes are real: the client process is SIGKILLed mid-upload, then run again
with the same URL storage, and must carry on from the server's offset."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tusclient import client as tus_client

from conftest import need_tool
from serverproc import ServerProc

JS_DIR = Path(__file__).parent / "js"
TUS = {"Tus-Resumable": "1.0.0"}
CLIENT_TIMEOUT_S = 60
# Enough output from a client to tell where it is, however slow the machine.
LINE_TIMEOUT_S = 30


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def server_offset(srv: ServerProc, url: str) -> int:
    status, hdrs, _ = srv.request("HEAD", url.replace(srv.url, ""), TUS)
    assert status == 200, hdrs
    return int(hdrs["upload-offset"])


def committed(srv: ServerProc, rel: str) -> bytes:
    status, _, body = srv.request("GET", "/files/" + rel)
    assert status == 200, body
    return body


class Lines:
    """A child's stdout as lines, read by a thread so every wait is bounded."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.queue.put(line)
        finally:
            self.proc.stdout.close()
            self.queue.put(None)

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                line = self.queue.get(timeout=LINE_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError("client printed nothing for too long:\n" + "".join(self.seen)) from None
            if line is None:
                return
            self.seen.append(line)
            yield line.strip()


def _kill(proc: subprocess.Popen[str], lines: Lines) -> None:
    """SIGKILL the client if it still runs, and let its output reader end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    lines.thread.join(timeout=10)


# -- tuspy ----------------------------------------------------------------------

@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(1_500_000)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data


def test_tuspy_upload_with_checksums(server: ServerProc, payload: tuple[Path, bytes]) -> None:
    path, data = payload
    tc = tus_client.TusClient(server.url + "/tus/", headers=server.auth)
    with path.open("rb") as stream:  # given a path, tuspy leaves files open
        uploader = tc.uploader(file_stream=stream, chunk_size=200_000, metadata={"filename": "tuspy.bin"}, upload_checksum=True)
        uploader.upload()
    assert uploader.offset == len(data)
    assert sha(committed(server, "tuspy.bin")) == sha(data)
    assert server_offset(server, uploader.url) == len(data)


def test_tuspy_without_metadata(server: ServerProc, tmp_path: Path) -> None:
    # tuspy then sends `Upload-Metadata:` empty; the file is kept under its id.
    data = os.urandom(1234)
    (tmp_path / "anon.bin").write_bytes(data)
    with (tmp_path / "anon.bin").open("rb") as stream:
        uploader = tus_client.TusClient(server.url + "/tus/", headers=server.auth).uploader(file_stream=stream, chunk_size=1000)
        uploader.upload()
    assert committed(server, uploader.url.rsplit("/", 1)[1]) == data


def test_tuspy_async_uploader(server: ServerProc, payload: tuple[Path, bytes]) -> None:
    path, data = payload
    tc = tus_client.TusClient(server.url + "/tus/", headers=server.auth)
    with path.open("rb") as stream:
        uploader = tc.async_uploader(file_stream=stream, chunk_size=500_000, metadata={"filename": "tuspy-async.bin"},
                                     upload_checksum=True)
        asyncio.run(uploader.upload())
    assert sha(committed(server, "tuspy-async.bin")) == sha(data)


TUSPY_SCRIPT = textwrap.dedent("""
    import sys, time
    from tusclient import client
    from tusclient.storage.filestorage import FileStorage

    url, token, path, storage, chunk, delay = sys.argv[1:]
    tc = client.TusClient(url, headers={"Authorization": "Bearer " + token})
    up = tc.uploader(path, chunk_size=int(chunk), metadata={"filename": "tuspy-resumed.bin"},
                     store_url=True, url_storage=FileStorage(storage), upload_checksum=True)
    print("start", up.offset if up.url else -1, flush=True)
    up.stop_at = up.get_file_size()
    while up.offset < up.stop_at:
        up.upload_chunk()
        print("offset", up.offset, up.url, flush=True)
        time.sleep(float(delay))  # a slow link, so the test can kill it mid-upload
    print("done", up.url, flush=True)
""")


def test_tuspy_resumes_after_being_killed(server: ServerProc, tmp_path: Path) -> None:
    data = os.urandom(2_000_000)
    chunk = 64 * 1024
    path, storage, script = tmp_path / "big.bin", tmp_path / "urls.json", tmp_path / "tuspy_upload.py"
    path.write_bytes(data)
    script.write_text(TUSPY_SCRIPT)

    def run(delay: float) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(script), server.url + "/tus/", server.token or "", str(path),
                                 str(storage), str(chunk), str(delay)], stdout=subprocess.PIPE, text=True)

    proc = run(0.1)
    output = Lines(proc)
    acknowledged, url = 0, ""
    try:
        for line in output:
            if line.startswith("offset"):
                _, offset, url = line.split()
                acknowledged = int(offset)
                if acknowledged >= 3 * chunk:
                    break
    finally:
        _kill(proc, output)
    assert acknowledged >= 3 * chunk and acknowledged < len(data), "the client finished before it was killed"
    kept = server_offset(server, url)
    assert kept >= acknowledged

    proc = run(0)
    output = Lines(proc)
    try:
        lines = list(output)
        assert proc.wait(timeout=CLIENT_TIMEOUT_S) == 0
    finally:
        _kill(proc, output)
    assert lines[0] == f"start {kept}"  # it resumed at the server's offset, not at 0
    assert lines[-1] == f"done {url}"
    assert sha(committed(server, "tuspy-resumed.bin")) == sha(data)


# -- tus-js-client and Uppy under Node ----------------------------------------------

@pytest.fixture(scope="module")
def node() -> str:
    path = need_tool("node")
    if not (JS_DIR / "node_modules" / "tus-js-client").is_dir():
        pytest.fail("tests/js/node_modules is missing (run .ci/install-tools.sh)")
    return path


def _tus_js(node: str, srv: ServerProc, path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([node, str(JS_DIR / "tus_upload.mjs"), "--endpoint", srv.url + "/tus/", "--file", str(path),
                             "--token", srv.token or "", *args], stdout=subprocess.PIPE, text=True)


def _tus_js_events(node: str, srv: ServerProc, path: Path, *args: str) -> list[dict[str, object]]:
    proc = _tus_js(node, srv, path, *args)
    output = Lines(proc)
    try:
        events = [json.loads(line) for line in output]
        assert proc.wait(timeout=CLIENT_TIMEOUT_S) == 0, events
    finally:
        _kill(proc, output)
    assert events and events[-1]["event"] == "success", events
    return events


@pytest.mark.parametrize(("name", "args"), [
    ("js-whole.bin", []),
    ("js-chunked.bin", ["--chunk-size", "300000"]),
    ("js-during-creation.bin", ["--chunk-size", "700000", "--data-during-creation"]),
    ("js-deferred.bin", ["--chunk-size", "600000", "--defer-length"]),  # creation-defer-length
    ("js-parallel.bin", ["--parallel", "3"]),  # three partials and a final: concatenation
])
def test_tus_js_client(node: str, server: ServerProc, payload: tuple[Path, bytes], name: str, args: list[str]) -> None:
    path, data = payload
    events = _tus_js_events(node, server, path, "--metadata", json.dumps({"filename": name, "filetype": "x/y"}), *args)
    assert sha(committed(server, name)) == sha(data)
    url = str(events[-1]["url"])
    status, hdrs, _ = server.request("HEAD", url.replace(server.url, ""), TUS)
    assert status == 200 and hdrs["upload-offset"] == hdrs["upload-length"] == str(len(data))
    if "--parallel" in args:
        assert hdrs["upload-concat"].startswith("final;") and len(hdrs["upload-concat"].split()) == 3


def test_tus_js_client_empty_file(node: str, server: ServerProc, tmp_path: Path) -> None:
    # tus-js-client sends no PATCH for an empty file: creation must finish it.
    (tmp_path / "empty.txt").write_bytes(b"")
    _tus_js_events(node, server, tmp_path / "empty.txt", "--metadata", json.dumps({"filename": "js-empty.txt"}))
    assert committed(server, "js-empty.txt") == b""


def test_tus_js_client_resumes_after_being_killed(node: str, server: ServerProc, tmp_path: Path) -> None:
    data = os.urandom(2_000_000)
    chunk = 64 * 1024
    path, storage = tmp_path / "resume.bin", tmp_path / "tus-urls.json"
    path.write_bytes(data)
    args = ["--metadata", json.dumps({"filename": "js-resumed.bin"}), "--chunk-size", str(chunk), "--storage", str(storage)]

    proc = _tus_js(node, server, path, *args, "--delay-ms", "100")
    output = Lines(proc)
    url, acknowledged = "", 0
    try:
        for line in output:
            event = json.loads(line)
            if event["event"] == "url":
                url = str(event["url"])
            elif event["event"] == "chunk":
                acknowledged = int(event["accepted"])
                if acknowledged >= 3 * chunk:
                    break
    finally:
        _kill(proc, output)
    assert url and 3 * chunk <= acknowledged < len(data), "the client finished before it was killed"
    assert server_offset(server, url) >= acknowledged  # kept across the client's death

    events = _tus_js_events(node, server, path, *args)
    assert {"event": "resume", "url": url} in events  # found in its URL storage
    assert events[-1] == {"event": "success", "url": url}
    first = next(e for e in events if e["event"] == "chunk")
    assert int(str(first["accepted"])) > acknowledged  # it did not start again at 0
    assert sha(committed(server, "js-resumed.bin")) == sha(data)


def test_uppy(node: str, server: ServerProc, payload: tuple[Path, bytes]) -> None:
    path, data = payload
    proc = subprocess.run([node, str(JS_DIR / "uppy_upload.mjs"), server.url + "/tus/", str(path), server.token or "",
                           "uppy.bin", "400000"], capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failed"] == [] and len(result["successful"]) == 1, result
    assert sha(committed(server, "uppy.bin")) == sha(data)
