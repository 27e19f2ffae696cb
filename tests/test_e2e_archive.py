"""Archives end to end: the real CLI server under uvicorn, real readers.

Oracles: Python `zipfile` and `tarfile`, `unzip -t`, `7z t`, `bsdtar -tf`,
Java's streaming `java.util.zip.ZipInputStream`, curl (`-C -` resume, exit
codes for a truncated transfer), and the source files' own bytes. Big inputs
are sparse files: gigabytes to read, no disk used.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import sqlite3
import subprocess
import tarfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from conftest import need_tool, write_file
from serverproc import TOKEN, ServerProc

MTIME = 1_700_000_000
SPARSE_BYTES = 80 << 20  # past CRC_UPFRONT_MAX_BYTES: the data-descriptor layout
JAVA_READER = """
import java.io.*;
import java.util.zip.*;

public class ZipStreamRead {
    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(System.out, true, "UTF-8");
        byte[] buf = new byte[1 << 16];
        try (ZipInputStream zin = new ZipInputStream(new BufferedInputStream(new FileInputStream(args[0])))) {
            ZipEntry e;
            while ((e = zin.getNextEntry()) != null) {
                CRC32 crc = new CRC32();
                long n = 0;
                int r;
                while ((r = zin.read(buf)) > 0) { n += r; crc.update(buf, 0, r); }
                out.println(e.getName() + "\\t" + n + "\\t" + crc.getValue());
            }
        }
    }
}
"""


# -- helpers ---------------------------------------------------------------------


def put(server: ServerProc, rel: str, data: bytes) -> Path:
    path = write_file(server.root, rel, data)
    os.utime(path, (MTIME, MTIME))
    return path


def sparse(server: ServerProc, rel: str, size: int) -> Path:
    path = server.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    os.utime(path, (MTIME, MTIME))
    return path


def curl(server: ServerProc, path: str, out: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    cmd = [need_tool("curl"), "-sS", "-o", str(out), *args, "-H", f"Authorization: Bearer {TOKEN}", server.url + path]
    return subprocess.run(cmd, check=check, capture_output=True, timeout=120)


def get(server: ServerProc, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return server.request("GET", path, headers, timeout=120)


def read_partial(server: ServerProc, path: str, nbytes: int) -> bytes:
    """The first `nbytes` of a response body, then the connection is cut:
    a download broken midway."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        while len(body) < nbytes:
            chunk = sock.recv(1 << 20)
            assert chunk
            body += chunk
        return body[:nbytes]


def run_tool(*cmd: str) -> str:
    result = subprocess.run([need_tool(cmd[0]), *cmd[1:]], capture_output=True, timeout=300)
    assert result.returncode == 0, result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    return result.stdout.decode("utf-8", errors="replace")


def java_read(archive: Path) -> subprocess.CompletedProcess[str]:
    source = archive.with_name("ZipStreamRead.java")
    source.write_text(JAVA_READER)
    # Java 11+ runs a single source file directly.
    return subprocess.run([need_tool("java"), str(source), str(archive)], capture_output=True, text=True, timeout=120)


# -- the tree ----------------------------------------------------------------------


TREE = {
    "a.txt": b"hello\n",
    "sub/ünï cødé.txt": "Grüße\n".encode(),
    "sub/deeper/random.bin": os.urandom(3 << 20),
    "empty.bin": b"",
}
EXPECTED_NAMES = [
    "tree/", "tree/a.txt", "tree/empty.bin", "tree/emptydir/", "tree/inside-link.txt",
    "tree/sub/", "tree/sub/deeper/", "tree/sub/deeper/random.bin", "tree/sub/ünï cødé.txt",
]


@pytest.fixture(scope="module")
def tree(server: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> Path:
    for rel, data in TREE.items():
        put(server, f"tree/{rel}", data)
    (server.root / "tree/emptydir").mkdir()
    put(server, "tree/.xfer-staging", b"internal")  # staging names are never archived
    put(server, "tree/sub/.xfer", b"internal")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_bytes(b"secret")
    os.symlink(outside / "secret.txt", server.root / "tree/escape.txt")
    os.symlink(outside, server.root / "tree/escape-dir")
    os.symlink(server.root / ".xfer", server.root / "tree/state-link")
    os.symlink("a.txt", server.root / "tree/inside-link.txt")
    os.symlink("..", server.root / "tree/sub/loop")  # inside ROOT, but a cycle
    for rel in ("tree", "tree/sub", "tree/sub/deeper", "tree/emptydir"):
        os.utime(server.root / rel, (MTIME, MTIME))
    return server.root / "tree"


def expected_content(name: str) -> bytes:
    rel = name.removeprefix("tree/")
    return TREE.get(rel, TREE["a.txt"] if rel == "inside-link.txt" else b"")


# -- reading back ---------------------------------------------------------------------


def test_stored_zip_reads_back_everywhere(server: ServerProc, tree: Path, tmp_path: Path) -> None:
    status, headers, body = get(server, "/archive/tree")
    assert status == 200
    assert int(headers["content-length"]) == len(body)  # exact, up front
    assert headers["content-type"] == "application/zip"
    assert headers["accept-ranges"] == "bytes"
    assert 'filename="tree.zip"' in headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == EXPECTED_NAMES
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            if not info.is_dir():
                assert zf.read(info) == expected_content(info.filename), info.filename
    archive = tmp_path / "tree.zip"
    archive.write_bytes(body)
    assert "No errors detected" in run_tool("unzip", "-t", str(archive))
    assert "Everything is Ok" in run_tool("7z", "t", str(archive))
    listed = run_tool("bsdtar", "-tf", str(archive)).splitlines()
    assert sorted(listed) == sorted(EXPECTED_NAMES)


@pytest.mark.parametrize(("fmt", "mode"), [("tar", "r:"), ("tar.gz", "r:gz")])
def test_tar_and_tar_gz_read_back(server: ServerProc, tree: Path, tmp_path: Path, fmt: str, mode: str) -> None:
    status, headers, body = get(server, f"/archive/tree?format={fmt}")
    assert status == 200
    if fmt == "tar":
        assert int(headers["content-length"]) == len(body)
    else:
        assert "content-length" not in headers and headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(body), mode=mode) as tf:
        members = tf.getmembers()
        assert [m.name + "/" * m.isdir() for m in members] == EXPECTED_NAMES
        for m in members:
            if m.isfile():
                assert tf.extractfile(m).read() == expected_content(m.name)  # type: ignore[union-attr]
            assert m.mtime == MTIME or m.name == "tree/inside-link.txt"
    archive = tmp_path / f"tree.{fmt}"
    archive.write_bytes(body)
    assert sorted(run_tool("bsdtar", "-tf", str(archive)).splitlines()) == sorted(EXPECTED_NAMES)


def test_deflated_zip_reads_back(server: ServerProc, tree: Path, tmp_path: Path) -> None:
    status, headers, body = get(server, "/archive/tree?compress=deflate")
    assert status == 200 and headers["etag"].startswith("W/")
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None and zf.namelist() == EXPECTED_NAMES
        assert zf.getinfo("tree/sub/deeper/random.bin").compress_type == zipfile.ZIP_DEFLATED
        assert zf.read("tree/sub/ünï cødé.txt") == TREE["sub/ünï cødé.txt"]
    (tmp_path / "d.zip").write_bytes(body)
    assert "No errors detected" in run_tool("unzip", "-t", str(tmp_path / "d.zip"))


def test_path_list_from_the_root(server: ServerProc, tree: Path) -> None:
    status, headers, body = get(server, "/archive/?path=tree/sub/deeper&path=tree/a.txt&path=tree/sub/deeper/random.bin")
    assert status == 200
    assert 'filename="archive.zip"' in headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        # Sorted, the overlap given once.
        assert zf.namelist() == ["tree/a.txt", "tree/sub/deeper/", "tree/sub/deeper/random.bin"]


def test_head_matches_get(server: ServerProc, tree: Path) -> None:
    status, head_fields, body = server.request("HEAD", "/archive/tree")
    assert status == 200 and body == b""
    _, get_fields, get_body = get(server, "/archive/tree")
    assert int(head_fields["content-length"]) == len(get_body)
    for name in ("etag", "content-length", "content-type", "last-modified", "accept-ranges"):
        assert head_fields[name] == get_fields[name]


@pytest.mark.parametrize(("path", "status"), [
    ("/archive/.xfer", 404), ("/archive/?path=.xfer", 404), ("/archive/tree/escape-dir", 403),
    ("/archive/missing", 404), ("/archive/tree?format=rar", 400), ("/archive/tree?path=../x", 400),
])
def test_refused_requests(server: ServerProc, tree: Path, path: str, status: int) -> None:
    got, headers, body = get(server, path)
    assert got == status and headers["content-type"] == "application/json", body
    assert set(json.loads(body)) == {"error"}


def test_token_needed(server: ServerProc, tree: Path) -> None:
    status, headers, _ = server.request("GET", "/archive/tree", auth=False)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")


# -- streaming readers: the local-header decision -------------------------------------


@pytest.fixture(scope="module")
def big_tree(server: ServerProc) -> dict[str, bytes | int]:
    """Over CRC_UPFRONT_MAX_BYTES in total: the data-descriptor layout."""
    files: dict[str, bytes | int] = {
        "big/a-first.bin": os.urandom(2 << 20),
        "big/b-sparse.bin": SPARSE_BYTES,
        "big/c-last.bin": os.urandom((1 << 20) + 7),
        "big/d-small.txt": b"small\n",
    }
    for rel, data in files.items():
        if isinstance(data, int):
            sparse(server, rel, data)
        else:
            put(server, rel, data)
    os.utime(server.root / "big", (MTIME, MTIME))
    return files


def test_java_streaming_reader_reads_small_stored_zips(server: ServerProc, tree: Path, tmp_path: Path) -> None:
    curl(server, "/archive/tree", tmp_path / "t.zip")
    result = java_read(tmp_path / "t.zip")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == EXPECTED_NAMES
    for name, size, crc in rows:
        assert (int(size), int(crc)) == (len(expected_content(name)), zlib.crc32(expected_content(name)))


def test_java_streaming_reader_and_big_archives(server: ServerProc, big_tree: dict, tmp_path: Path) -> None:
    """The documented trade-off: a big stored zip defers CRCs to data
    descriptors, which ZipInputStream refuses for STORED entries; the
    deflated form of the same tree is what streaming readers get."""
    curl(server, "/archive/big", tmp_path / "stored.zip")
    stored = java_read(tmp_path / "stored.zip")
    assert stored.returncode != 0 and "only DEFLATED entries can have EXT descriptor" in stored.stderr
    curl(server, "/archive/big?compress=deflate", tmp_path / "deflated.zip")
    deflated = java_read(tmp_path / "deflated.zip")
    assert deflated.returncode == 0, deflated.stderr
    sizes = {line.split("\t")[0]: int(line.split("\t")[1]) for line in deflated.stdout.splitlines()}
    assert sizes["big/b-sparse.bin"] == SPARSE_BYTES and sizes["big/c-last.bin"] == (1 << 20) + 7


# -- Range and resume ---------------------------------------------------------------


def clear_crc_cache(server: ServerProc) -> None:
    with sqlite3.connect(server.root / ".xfer" / "xfer.db", timeout=30) as conn:
        conn.execute("DELETE FROM archive_crcs")


@pytest.mark.parametrize(("archive", "cached"), [("tree", True), ("big", True), ("big", False)])
def test_broken_download_resumes_with_curl(server: ServerProc, tree: Path, big_tree: dict, tmp_path: Path,
                                           archive: str, cached: bool) -> None:
    full = tmp_path / "full.zip"
    curl(server, f"/archive/{archive}", full)
    size = full.stat().st_size
    part = tmp_path / "part.zip"
    part.write_bytes(read_partial(server, f"/archive/{archive}", size // 2))  # inside the biggest file
    if not cached:
        clear_crc_cache(server)  # the resume must then read the CRCs it lacks
    result = curl(server, f"/archive/{archive}", part, "-C", "-", "-w", "%{http_code}")
    assert result.stdout == b"206"
    assert part.read_bytes() == full.read_bytes()
    assert "No errors detected" in run_tool("unzip", "-t", str(part))


def test_if_range_protects_a_resume(server: ServerProc, tmp_path: Path) -> None:
    put(server, "ifrange/a.bin", os.urandom(100_000))
    status, headers, body = get(server, "/archive/ifrange")
    etag = headers["etag"]
    status, headers, tail = get(server, "/archive/ifrange", {"range": "bytes=1000-", "if-range": etag})
    assert status == 206 and tail == body[1000:]
    assert headers["content-range"] == f"bytes 1000-{len(body) - 1}/{len(body)}"
    put(server, "ifrange/b.bin", b"new")  # the archive changed: a new ETag
    status, headers, whole = get(server, "/archive/ifrange", {"range": "bytes=1000-", "if-range": etag})
    assert status == 200 and headers["etag"] != etag
    with zipfile.ZipFile(io.BytesIO(whole)) as zf:
        assert zf.namelist() == ["ifrange/", "ifrange/a.bin", "ifrange/b.bin"]


def test_unsatisfiable_range_is_416(server: ServerProc, tree: Path) -> None:
    _, headers, _ = server.request("HEAD", "/archive/tree")
    size = int(headers["content-length"])
    status, headers, _ = get(server, "/archive/tree", {"range": f"bytes={size}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{size}"


def test_conditional_get_is_304(server: ServerProc, tree: Path) -> None:
    _, headers, _ = server.request("HEAD", "/archive/tree")
    status, _, body = get(server, "/archive/tree", {"if-none-match": headers["etag"]})
    assert (status, body) == (304, b"")


# -- failing loudly and staying small -----------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_a_file_changed_mid_transfer_fails_loudly(server: ServerProc, tmp_path: Path, fmt: str) -> None:
    target = put(server, f"changing-{fmt}/data.bin", os.urandom(32 << 20))
    put(server, f"changing-{fmt}/z.txt", b"after")
    cmd = [need_tool("curl"), "-sS", "--limit-rate", "4M", "-o", str(tmp_path / "out"),
           "-H", f"Authorization: Bearer {TOKEN}", f"{server.url}/archive/changing-{fmt}?format={fmt}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    with open(target, "ab") as f:
        f.write(b"appended while being archived")
    _, stderr = proc.communicate(timeout=60)
    # curl 18: "transfer closed with outstanding read data remaining".
    assert proc.returncode == 18, stderr
    status, _, _ = server.request("GET", "/healthz")
    assert status == 200


def _slow_reader(server: ServerProc, path: str, stop: threading.Event, received: list[int]) -> None:
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        total = 0
        while not stop.is_set():
            chunk = sock.recv(16 * 1024)
            if not chunk:
                break
            total += len(chunk)
            time.sleep(0.002)
        received.append(total)
    finally:
        sock.close()


def test_memory_stays_flat_for_a_gigabyte_archive(server: ServerProc) -> None:
    sparse(server, "gig/one.bin", 1 << 30)
    sparse(server, "gig/two.bin", 8 << 20)
    baseline = server.rss_bytes()
    stop, received = threading.Event(), []
    reader = threading.Thread(target=_slow_reader, args=(server, "/archive/gig", stop, received))
    reader.start()
    peak = baseline
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        peak = max(peak, server.rss_bytes())
        time.sleep(0.05)
    stop.set()
    reader.join(timeout=30)
    assert received and 1 << 20 < received[0] < 1 << 30  # streaming, and slowly
    assert peak - baseline < 32 << 20, (baseline, peak)


# -- zip64 ---------------------------------------------------------------------------


def download_sparse(server: ServerProc, path: str, out: Path) -> int:
    """Stream a response into `out`, seeking over zero runs so that a
    multi-GiB archive of sparse files stays sparse on disk too."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    zero = bytes(1 << 20)
    try:
        conn.request("GET", path, headers=server.auth)
        resp = conn.getresponse()
        assert resp.status == 200
        length = int(resp.getheader("content-length"))
        with open(out, "wb") as f:
            while chunk := resp.read(1 << 20):
                if chunk == zero[:len(chunk)]:
                    f.seek(len(chunk), os.SEEK_CUR)
                else:
                    f.write(chunk)
            f.truncate(f.tell())
        return length
    finally:
        conn.close()


def test_zip64_archive_over_4_gib(server: ServerProc, tmp_path: Path) -> None:
    """SLOW-ish (~20 s on an idle machine): a 4 GiB + 64 MiB sparse file, then a small one whose local
    header lies past 4 GiB, so both zip64 sizes and offsets are exercised."""
    huge = (4 << 30) + (64 << 20)
    sparse(server, "z64/a-huge.bin", huge)
    put(server, "z64/b-after.txt", b"after the 4 GiB mark\n")
    out = tmp_path / "z64.zip"
    length = download_sparse(server, "/archive/z64", out)
    assert out.stat().st_size == length > huge
    with zipfile.ZipFile(out) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert infos["z64/a-huge.bin"].file_size == huge
        assert infos["z64/b-after.txt"].header_offset > 0xFFFFFFFF
        assert zf.read("z64/b-after.txt") == b"after the 4 GiB mark\n"
    assert "No errors detected" in run_tool("unzip", "-t", str(out))
