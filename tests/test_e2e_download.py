"""Downloads end to end: the real CLI server under uvicorn, real clients.

Expected values come from the source file's bytes, RFC 9110 (§13 conditional
requests, §14 ranges), RFC 6266/8187 (Content-Disposition), and oracles:
`email` reading multipart/byteranges and Content-Disposition back, `gzip` and
`zlib` decoding what was sent, and curl, wget and aria2c themselves.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import hashlib
import json
import os
import re
import socket
import subprocess
import time
import zipfile
import zlib
from collections.abc import Iterator
from email.parser import BytesHeaderParser
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

import pytest

from conftest import need_tool, write_file
from serverproc import ServerProc, start_cli

# A fixed modification time in the past: Last-Modified is then a strong
# validator (RFC 9110 §8.8.2.2) and date preconditions have known answers.
MTIME = 1_700_000_000
MULTIPART_SIZE = 4 << 20  # big enough that a few small ranges stay a 206
_STRONG_ETAG = re.compile(r'^"[\x21\x23-\x7e\x80-\xff]*"$')  # RFC 9110 §8.8.3


def hex_stream(size: int, seed: bytes = b"") -> bytes:
    """Non-periodic ASCII bytes without CR/LF: a misplaced range cannot match
    by accident, and multipart framing is the only CRLF in a response."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).hexdigest().encode()
        counter += 1
    return bytes(out[:size])


def put(server: ServerProc, rel: str, data: bytes, mtime: int | None = None) -> Path:
    path = write_file(server.root, rel, data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict:
    assert status == expected, body
    assert headers["content-type"].split(";")[0] == "application/json"
    payload = json.loads(body)
    assert set(payload) == {"error"}
    assert isinstance(payload["error"]["code"], str) and payload["error"]["code"]
    assert isinstance(payload["error"]["message"], str)
    return payload["error"]


def read_header_file(path: Path) -> tuple[int, dict[str, str]]:
    """The last response in a `curl -D` / `wget -S` dump: status and fields."""
    blocks = [b for b in path.read_bytes().replace(b"\r\n", b"\n").split(b"\n\n") if b.strip()]
    status_line, _, fields = blocks[-1].partition(b"\n")
    parsed = BytesHeaderParser().parsebytes(fields)
    return int(status_line.split()[1]), {k.lower(): v for k, v in parsed.items()}


def curl(server: ServerProc, path: str, out: Path, *args: str) -> tuple[int, dict[str, str]]:
    """curl one URL into `out`; returns the status and header fields it saw."""
    dump = out.with_name(out.name + ".headers")
    cmd = [need_tool("curl"), "-sS", "-D", str(dump), "-o", str(out), *args]
    if server.token:
        cmd += ["-H", f"Authorization: Bearer {server.token}"]
    subprocess.run([*cmd, server.url + path], check=True, capture_output=True, timeout=60)
    return read_header_file(dump)


def metric(server: ServerProc, name: str, label: str = "") -> int:
    status, _, body = server.request("GET", "/metrics")
    assert status == 200
    pattern = re.compile(rf"^{name}\{{[^}}]*{label}[^}}]*\}} (\d+)$", re.M)
    return sum(int(m) for m in pattern.findall(body.decode()))


@pytest.fixture(scope="module")
def big(server: ServerProc) -> bytes:
    data = hex_stream(MULTIPART_SIZE, b"big")
    put(server, "ranges/big.bin", data)
    return data


# -- whole downloads -----------------------------------------------------------


def test_curl_full_download_is_identical_with_download_headers(server: ServerProc, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    put(server, "full/data.bin", data, MTIME)
    status, headers = curl(server, "/files/full/data.bin", tmp_path / "out")
    assert status == 200
    assert (tmp_path / "out").read_bytes() == data
    assert headers["content-length"] == str(len(data))
    assert headers["content-type"] == "application/octet-stream"
    assert _STRONG_ETAG.match(headers["etag"])
    assert headers["last-modified"].endswith(" GMT")  # IMF-fixdate, §5.6.7
    assert parsedate_to_datetime(headers["last-modified"]).timestamp() == MTIME
    assert headers["accept-ranges"] == "bytes"
    assert headers["content-disposition"].startswith("attachment;")
    assert 'filename="data.bin"' in headers["content-disposition"]


def test_http_client_full_download_is_identical(server: ServerProc) -> None:
    data = os.urandom(5 << 20)
    put(server, "full/stdlib.bin", data)
    status, headers, body = server.request("GET", "/files/full/stdlib.bin")
    assert status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert int(headers["content-length"]) == len(data)


def test_empty_file_downloads_as_empty_200(server: ServerProc) -> None:
    put(server, "full/empty.bin", b"")
    status, headers, body = server.request("GET", "/files/full/empty.bin")
    assert (status, body, headers["content-length"]) == (200, b"", "0")


def test_future_mtime_is_not_sent_as_last_modified(server: ServerProc) -> None:
    future = time.time() + 365 * 86400
    put(server, "full/future.txt", b"from the future", int(future))
    status, headers, _ = server.request("GET", "/files/full/future.txt")
    assert status == 200
    last_modified = parsedate_to_datetime(headers["last-modified"]).timestamp()
    sent = parsedate_to_datetime(headers["date"]).timestamp()
    # §8.8.2.1: never later than Date. uvicorn refreshes its Date field once a
    # second, so it may trail the clock the app read by up to a second.
    assert last_modified <= sent + 1


@pytest.mark.parametrize(("name", "media_type"), [
    ("notes.txt", "text/plain"),
    ("data.json", "application/json"),
    ("page.html", "text/html"),
    ("pic.png", "image/png"),
    ("archive.zip", "application/zip"),
    ("no_extension", "application/octet-stream"),
    ("odd.unknownext42", "application/octet-stream"),
])
def test_content_type_is_guessed_from_the_name(server: ServerProc, name: str, media_type: str) -> None:
    put(server, f"types/{name}", b"x")
    status, headers, _ = server.request("GET", f"/files/types/{name}")
    assert status == 200
    assert headers["content-type"].split(";")[0].strip() == media_type


def _ext_value(disposition: str, name: str) -> str:
    """RFC 8187 §3.2 ext-value `charset'lang'pct-encoded`, decoded."""
    m = re.search(rf"(?:^|;)\s*{name}\*=([^;]+)", disposition)
    assert m, disposition
    charset, _, rest = m.group(1).strip().partition("'")
    _, _, encoded = rest.partition("'")
    assert charset.lower() == "utf-8"
    # §3.2.1 value-chars: attr-char / pct-encoded, nothing else.
    assert re.fullmatch(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!#$&+\-.^_`|~])*", encoded)
    return unquote_to_bytes(encoded).decode("utf-8")


def test_non_ascii_name_in_content_disposition(server: ServerProc, tmp_path: Path) -> None:
    name = "测试 文件.txt"
    put(server, f"names/{name}", b"hello")
    status, headers = curl(server, "/files/names/" + quote(name), tmp_path / "out")
    assert status == 200
    disposition = headers["content-disposition"]
    assert disposition.split(";")[0] == "attachment"
    assert _ext_value(disposition, "filename") == name
    fallback = re.search(r'filename="([^"]*)"', disposition)
    assert fallback and fallback.group(1).isascii()
    # The stdlib's RFC 2231 reader (same ext-value syntax) agrees. It takes the
    # first "filename" it meets rather than preferring filename* (RFC 6266
    # §4.3), so it is given the ext-value alone.
    ext = re.search(r"filename\*=([^;]+)", disposition).group(1).strip()
    msg = email.message_from_string(f"Content-Disposition: attachment; filename*={ext}\n\n", policy=email.policy.default)
    assert msg.get_filename() == name


def test_inline_query_gives_inline_disposition(server: ServerProc) -> None:
    put(server, "names/show.txt", b"hi")
    status, headers, body = server.request("GET", "/files/names/show.txt?inline=1")
    assert (status, body) == (200, b"hi")
    assert headers["content-disposition"].split(";")[0] == "inline"
    assert _ext_value(headers["content-disposition"], "filename") == "show.txt"


def test_head_returns_the_get_headers_and_no_body(server: ServerProc) -> None:
    data = os.urandom(70_000)
    put(server, "head/h.bin", data)
    _, get_headers, _ = server.request("GET", "/files/head/h.bin")
    status, headers, body = server.request("HEAD", "/files/head/h.bin")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(len(data))
    for field in ("etag", "last-modified", "content-type", "accept-ranges", "content-disposition"):
        assert headers[field] == get_headers[field]


def test_curl_head_shows_size(server: ServerProc) -> None:
    put(server, "head/c.bin", b"12345")
    done = subprocess.run(
        [need_tool("curl"), "-sS", "-I", "-H", f"Authorization: Bearer {server.token}", server.url + "/files/head/c.bin"],
        check=True, capture_output=True, timeout=30,
    )
    assert done.stdout.startswith(b"HTTP/1.1 200")
    assert re.search(rb"(?im)^content-length: 5\r$", done.stdout)


# -- single ranges ---------------------------------------------------------------


@pytest.mark.parametrize(("spec", "start", "end"), [
    ("0-99", 0, 99),
    ("-500", MULTIPART_SIZE - 500, MULTIPART_SIZE - 1),  # suffix: the last 500
    ("1000-", 1000, MULTIPART_SIZE - 1),  # open ended
    ("4000000-99999999", 4000000, MULTIPART_SIZE - 1),  # last-pos past the end
])
def test_curl_single_range(server: ServerProc, big: bytes, tmp_path: Path, spec: str, start: int, end: int) -> None:
    status, headers = curl(server, "/files/ranges/big.bin", tmp_path / "out", "-r", spec)
    assert status == 206
    assert (tmp_path / "out").read_bytes() == big[start:end + 1]
    assert headers["content-range"] == f"bytes {start}-{end}/{len(big)}"
    assert headers["content-length"] == str(end - start + 1)
    assert headers["content-type"] == "application/octet-stream"


# -- multiple ranges ---------------------------------------------------------------


def _multipart(headers: dict[str, str], body: bytes) -> list[tuple[str, str, bytes]]:
    """(Content-Type, Content-Range, data) of each part, read by `email`."""
    msg = email.message_from_bytes(
        b"Content-Type: " + headers["content-type"].encode() + b"\r\n\r\n" + body,
        policy=email.policy.HTTP,
    )
    assert msg.get_content_type() == "multipart/byteranges"
    assert not msg.defects, msg.defects
    return [
        (part["Content-Type"], part["Content-Range"], part.get_payload(decode=True))
        for part in msg.iter_parts()
    ]


def test_multiple_ranges_give_multipart_byteranges(server: ServerProc, big: bytes) -> None:
    size = len(big)
    status, headers, body = server.request("GET", "/files/ranges/big.bin", {"Range": "bytes=0-99,2000-2999,-100"})
    assert status == 206
    assert headers["content-type"].startswith("multipart/byteranges;")
    assert "content-range" not in headers  # §14.6: only inside the parts
    assert int(headers["content-length"]) == len(body)
    parts = _multipart(headers, body)
    assert parts == [
        ("application/octet-stream", f"bytes 0-99/{size}", big[0:100]),
        ("application/octet-stream", f"bytes 2000-2999/{size}", big[2000:3000]),
        ("application/octet-stream", f"bytes {size - 100}-{size - 1}/{size}", big[size - 100:]),
    ]


def test_multiple_ranges_come_in_request_order(server: ServerProc, big: bytes) -> None:
    # RFC 9110 §15.3.7.2: parts SHOULD be sent in the order the range-specs
    # were requested, coalesced ones (here 0-9 and 5-19) where the first stood.
    size = len(big)
    status, headers, body = server.request("GET", "/files/ranges/big.bin", {"Range": "bytes=-100,5-19,2000-2999,0-9"})
    assert status == 206
    assert [(r, d) for _, r, d in _multipart(headers, body)] == [
        (f"bytes {size - 100}-{size - 1}/{size}", big[size - 100:]),
        (f"bytes 0-19/{size}", big[0:20]),
        (f"bytes 2000-2999/{size}", big[2000:3000]),
    ]


def test_multipart_framing_is_crlf(server: ServerProc, big: bytes) -> None:
    status, headers, body = server.request("GET", "/files/ranges/big.bin", {"Range": "bytes=10-19,500-509"})
    assert status == 206
    boundary = re.search(r"boundary=\"?([^\";]+)\"?", headers["content-type"]).group(1)
    delimiter = b"--" + boundary.encode()
    # RFC 2046 §5.1.1 / RFC 9110 §14.6: CRLF line breaks, a close delimiter.
    assert body.endswith(b"\r\n" + delimiter + b"--\r\n")
    assert body.count(delimiter + b"\r\n") == 2
    assert body.count(b"\n") == body.count(b"\r\n")  # the data holds no CR/LF
    assert body.count(b"\r\n\r\n") == 2  # one blank line after each part's fields


def test_overlapping_ranges_are_coalesced(server: ServerProc, big: bytes) -> None:
    size = len(big)
    status, headers, body = server.request(
        "GET", "/files/ranges/big.bin", {"Range": "bytes=0-499,200-799,5000-5099,5050-5199"})
    assert status == 206
    parts = _multipart(headers, body)
    assert [(p[1], p[2]) for p in parts] == [
        (f"bytes 0-799/{size}", big[0:800]),
        (f"bytes 5000-5199/{size}", big[5000:5200]),
    ]


@pytest.mark.parametrize("value", [
    "bytes=abc", "bytes=5-2", "bytes=0-10,x", "bytes 0-10", "bytes=--5",
    "items=0-10", "pages=1-2", "bytes=", "0-10",
])
def test_invalid_range_or_other_unit_is_ignored(server: ServerProc, value: str) -> None:
    data = hex_stream(10_000, b"ign")
    put(server, "ranges/ignored.bin", data)
    status, headers, body = server.request("GET", "/files/ranges/ignored.bin", {"Range": value})
    assert (status, body) == (200, data)
    assert "content-range" not in headers


@pytest.mark.parametrize("spec", ["{size}-", "{size}-{more}", "-0", "{more}-{more}"])
def test_unsatisfiable_range_is_416(server: ServerProc, spec: str) -> None:
    size = 1000
    put(server, "ranges/small.bin", hex_stream(size, b"small"))
    value = "bytes=" + spec.format(size=size, more=size + 50)
    status, headers, body = server.request("GET", "/files/ranges/small.bin", {"Range": value})
    assert_json_error(status, headers, body, 416)
    assert headers["content-range"] == f"bytes */{size}"  # §15.5.17


def test_abusive_range_set_is_never_amplified(server: ServerProc) -> None:
    size = 10_000
    put(server, "ranges/abuse.bin", hex_stream(size, b"abuse"))
    tiny = ",".join(f"{i}-{i}" for i in range(0, 1000, 2))  # 500 one-byte ranges
    status, _, body = server.request("GET", "/files/ranges/abuse.bin", {"Range": f"bytes={tiny}"})
    assert status in (200, 416)
    assert len(body) <= size


def test_overlapping_whole_file_ranges_are_not_repeated(server: ServerProc) -> None:
    size = 10_000
    put(server, "ranges/abuse2.bin", hex_stream(size, b"abuse2"))
    status, _, body = server.request("GET", "/files/ranges/abuse2.bin", {"Range": "bytes=" + ",".join(["0-"] * 50)})
    assert status in (200, 206, 416)
    assert len(body) <= size


def test_multi_range_costing_more_than_the_file_gets_the_file(server: ServerProc) -> None:
    data = hex_stream(1000, b"amp")
    put(server, "ranges/amp.bin", data)
    value = "bytes=0-99,200-299,400-499,600-699,800-899"  # 500 bytes plus 5 part headers
    status, _, body = server.request("GET", "/files/ranges/amp.bin", {"Range": value})
    assert status in (200, 416)
    assert len(body) <= len(data)


# -- resuming clients ---------------------------------------------------------------


def test_curl_resumes_a_truncated_file(server: ServerProc, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    put(server, "resume/curl.bin", data)
    out = tmp_path / "curl.bin"
    out.write_bytes(data[:1_234_567])
    status, headers = curl(server, "/files/resume/curl.bin", out, "-C", "-")
    assert status == 206
    assert headers["content-range"] == f"bytes 1234567-{len(data) - 1}/{len(data)}"
    assert out.read_bytes() == data


def test_wget_continues_a_truncated_file(server: ServerProc, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    put(server, "resume/wget.bin", data)
    out = tmp_path / "wget.bin"
    out.write_bytes(data[:777_777])
    done = subprocess.run(
        [need_tool("wget"), "-q", "-S", "-c", "--header", f"Authorization: Bearer {server.token}",
         "-O", str(out), server.url + "/files/resume/wget.bin"],
        capture_output=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert b"206 Partial Content" in done.stderr  # -S prints the response
    assert out.read_bytes() == data


def test_aria2c_parallel_segments_are_identical(server: ServerProc, tmp_path: Path) -> None:
    data = os.urandom(32 << 20)
    put(server, "resume/aria.bin", data)
    before = metric(server, "xfer_responses_total", 'status="206"')
    done = subprocess.run(
        [need_tool("aria2c"), "-q", "-x", "8", "-s", "8", "-k", "1M", "--file-allocation=none",
         "--allow-overwrite=true", "--auto-file-renaming=false", "--max-tries=1",
         f"--header=Authorization: Bearer {server.token}",
         "-d", str(tmp_path), "-o", "aria.bin", server.url + "/files/resume/aria.bin"],
        capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got = (tmp_path / "aria.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    # aria2c really split the download into several ranged requests.
    assert metric(server, "xfer_responses_total", 'status="206"') - before >= 2


# -- conditional requests (RFC 9110 §13) --------------------------------------------------


@pytest.fixture()
def validators(server: ServerProc) -> dict[str, str]:
    """A file with a past mtime, and the header values the table refers to."""
    put(server, "cond/c.txt", b"0123456789abcdefghij", MTIME)
    status, headers, _ = server.request("HEAD", "/files/cond/c.txt")
    assert status == 200
    etag = headers["etag"]
    return {
        "etag": etag,
        "weak": "W/" + etag,
        "other": '"not-the-current-tag"',
        "lm": headers["last-modified"],
        "before": http_date(MTIME - 3600),
        "after": http_date(MTIME + 3600),
    }


# (method, request fields with {placeholders}, expected status)
PRECONDITION_CASES = [
    # §13.1.2 If-None-Match: weak comparison, "*" matches any current representation.
    ("GET", {"If-None-Match": "{etag}"}, 304),
    ("GET", {"If-None-Match": "{weak}"}, 304),
    ("GET", {"If-None-Match": "{other}, {etag}"}, 304),
    ("GET", {"If-None-Match": "*"}, 304),
    ("GET", {"If-None-Match": "{other}"}, 200),
    ("HEAD", {"If-None-Match": "{etag}"}, 304),
    # §13.1.3 If-Modified-Since.
    ("GET", {"If-Modified-Since": "{lm}"}, 304),
    ("GET", {"If-Modified-Since": "{after}"}, 304),
    ("GET", {"If-Modified-Since": "{before}"}, 200),
    ("GET", {"If-Modified-Since": "not a date"}, 200),
    ("HEAD", {"If-Modified-Since": "{lm}"}, 304),
    # §13.1.1 If-Match: strong comparison.
    ("GET", {"If-Match": "{etag}"}, 200),
    ("GET", {"If-Match": "*"}, 200),
    ("GET", {"If-Match": "{other}"}, 412),
    ("GET", {"If-Match": "{weak}"}, 412),
    ("HEAD", {"If-Match": "{other}"}, 412),
    # §13.1.4 If-Unmodified-Since.
    ("GET", {"If-Unmodified-Since": "{before}"}, 412),
    ("GET", {"If-Unmodified-Since": "{lm}"}, 200),
    ("GET", {"If-Unmodified-Since": "{after}"}, 200),
    # §13.2.2 order: If-None-Match makes If-Modified-Since ignored ...
    ("GET", {"If-None-Match": "{other}", "If-Modified-Since": "{after}"}, 200),
    ("GET", {"If-None-Match": "{etag}", "If-Modified-Since": "{before}"}, 304),
    # ... If-Match makes If-Unmodified-Since ignored ...
    ("GET", {"If-Match": "{etag}", "If-Unmodified-Since": "{before}"}, 200),
    # ... and steps 1-2 (412) come before steps 3-4 (304).
    ("GET", {"If-Match": "{other}", "If-None-Match": "{etag}"}, 412),
    ("GET", {"If-Unmodified-Since": "{before}", "If-None-Match": "{etag}"}, 412),
    ("GET", {"If-Unmodified-Since": "{before}", "If-Modified-Since": "{after}"}, 412),
    ("GET", {"If-Match": "{etag}", "If-None-Match": "{etag}"}, 304),
    # Preconditions (steps 1-4) before Range (step 5).
    ("GET", {"If-None-Match": "{etag}", "Range": "bytes=0-4"}, 304),
    ("GET", {"If-Match": "{other}", "Range": "bytes=0-4"}, 412),
    ("GET", {"If-Match": "{etag}", "Range": "bytes=0-4"}, 206),
]


@pytest.mark.parametrize(("method", "fields", "expected"), PRECONDITION_CASES)
def test_preconditions_in_rfc_9110_order(server: ServerProc, validators: dict[str, str],
                                         method: str, fields: dict[str, str], expected: int) -> None:
    request = {name: value.format(**validators) for name, value in fields.items()}
    status, headers, body = server.request(method, "/files/cond/c.txt", request)
    if expected == 412 and method == "HEAD":
        assert (status, body) == (412, b"")  # HEAD: the error's fields, no body
        assert headers["content-type"].split(";")[0] == "application/json"
        return
    if expected == 412:
        assert_json_error(status, headers, body, 412)
        return
    assert status == expected, body
    if expected == 304:
        assert body == b""
        assert headers["etag"] == validators["etag"]  # §15.4.5
    elif expected == 206:
        assert body == b"01234"
    elif method == "GET":
        assert body == b"0123456789abcdefghij"


@pytest.mark.parametrize(("if_range", "expected"), [
    ("{etag}", 206),
    ("{weak}", 200),  # §13.1.5: a weak tag never matches
    ("{other}", 200),
    ("{lm}", 206),  # the exact Last-Modified date
    ("{before}", 200),
    ("{after}", 200),  # only an exact date match counts
])
def test_if_range_decides_between_206_and_200(server: ServerProc, validators: dict[str, str],
                                              if_range: str, expected: int) -> None:
    request = {"Range": "bytes=5-9", "If-Range": if_range.format(**validators)}
    status, headers, body = server.request("GET", "/files/cond/c.txt", request)
    assert status == expected
    if expected == 206:
        assert (body, headers["content-range"]) == (b"56789", "bytes 5-9/20")
    else:
        assert body == b"0123456789abcdefghij"


def test_if_range_with_an_old_etag_sends_the_new_file(server: ServerProc) -> None:
    put(server, "cond/changing.bin", b"old contents", MTIME)
    _, headers, _ = server.request("HEAD", "/files/cond/changing.bin")
    old_etag = headers["etag"]
    put(server, "cond/changing.bin", b"new contents!", MTIME + 60)
    status, headers, body = server.request(
        "GET", "/files/cond/changing.bin", {"Range": "bytes=0-2", "If-Range": old_etag})
    assert (status, body) == (200, b"new contents!")
    assert headers["etag"] != old_etag


# -- directories ------------------------------------------------------------------


def test_directory_listing_json(server: ServerProc) -> None:
    put(server, "listing/a.txt", b"hello")
    put(server, "listing/sub/b.txt", b"x")
    put(server, "listing/.xfer-staging-1234", b"partial upload")
    put(server, "listing/.xfertmp", b"internal")
    status, headers, body = server.request("GET", "/files/listing/")
    assert status == 200
    assert headers["content-type"].split(";")[0] == "application/json"
    payload = json.loads(body)
    assert "path" in payload
    entries = {e["name"]: e for e in payload["entries"]}
    assert set(entries) == {"a.txt", "sub"}
    assert (entries["a.txt"]["type"], entries["a.txt"]["size"]) == ("file", 5)
    assert entries["sub"]["type"] == "dir"
    for entry in payload["entries"]:
        assert {"name", "type", "size", "mtime", "etag"} <= set(entry)


def test_root_listing_never_shows_internal_state(server: ServerProc) -> None:
    assert (server.root / ".xfer").is_dir()
    status, _, body = server.request("GET", "/files/")
    assert status == 200
    names = [e["name"] for e in json.loads(body)["entries"]]
    assert names and not any(n.startswith(".xfer") for n in names)


@pytest.mark.parametrize(("path", "location"), [
    ("/files/redir/inner", "/files/redir/inner/"),
    ("/files/redir/inner?inline=1", "/files/redir/inner/?inline=1"),
    ("/files", "/files/"),
])
def test_directory_without_slash_redirects_308(server: ServerProc, path: str, location: str) -> None:
    put(server, "redir/inner/f.txt", b"x")
    status, headers, _ = server.request("GET", path)
    assert status == 308
    assert headers["location"] == location


# -- compression ------------------------------------------------------------------


def test_compress_gzip_query_gives_a_gz_resource(server: ServerProc) -> None:
    data = hex_stream(600_000, b"gz") + os.urandom(300_000)
    put(server, "gz/report.csv", data)
    status, headers, body = server.request("GET", "/files/gz/report.csv?compress=gzip")
    assert status == 200
    assert headers["content-type"] == "application/gzip"
    assert "content-encoding" not in headers  # a resource of its own, not a coding
    assert _ext_value(headers["content-disposition"], "filename") == "report.csv.gz"
    # One gzip member (RFC 1952) with nothing after it.
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    assert inflater.decompress(body) == data
    assert inflater.eof and inflater.unused_data == b""
    assert gzip.decompress(body) == data


@pytest.fixture(scope="module")
def gzip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    srv = start_cli(tmp_path_factory.mktemp("gzroot"), "--gzip")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("name", ["notes.txt", "data.json"])
def test_gzip_server_encodes_for_curl_compressed(gzip_server: ServerProc, tmp_path: Path, name: str) -> None:
    data = (hex_stream(200_000, name.encode()) + b"\n") * 3
    put(gzip_server, f"text/{name}", data)
    _, identity, _ = gzip_server.request("GET", f"/files/text/{name}")
    assert "content-encoding" not in identity
    status, headers = curl(gzip_server, f"/files/text/{name}", tmp_path / name, "--compressed")
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert "accept-encoding" in headers["vary"].lower()
    assert headers["etag"] != identity["etag"]
    assert (tmp_path / name).read_bytes() == data  # curl decoded it


def test_gzip_server_body_is_one_gzip_stream(gzip_server: ServerProc) -> None:
    data = b'{"k": "' + hex_stream(100_000, b"j") + b'"}'
    put(gzip_server, "text/raw.json", data)
    status, headers, body = gzip_server.request("GET", "/files/text/raw.json", {"Accept-Encoding": "gzip"})
    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert len(body) < len(data)
    assert gzip.decompress(body) == data


def test_gzip_server_keeps_identity_for_range(gzip_server: ServerProc) -> None:
    data = hex_stream(50_000, b"r")
    put(gzip_server, "text/range.txt", data)
    status, headers, body = gzip_server.request(
        "GET", "/files/text/range.txt", {"Accept-Encoding": "gzip", "Range": "bytes=100-199"})
    assert status == 206
    assert "content-encoding" not in headers
    assert body == data[100:200]


def test_gzip_server_keeps_identity_for_head(gzip_server: ServerProc) -> None:
    data = hex_stream(50_000, b"h")
    put(gzip_server, "text/head.txt", data)
    status, headers, body = gzip_server.request("HEAD", "/files/text/head.txt", {"Accept-Encoding": "gzip"})
    assert (status, body) == (200, b"")
    assert "content-encoding" not in headers
    assert headers["content-length"] == str(len(data))


@pytest.mark.parametrize("name", ["bundle.zip", "photo.png"])
def test_gzip_server_skips_compressed_types(gzip_server: ServerProc, name: str) -> None:
    data = hex_stream(50_000, name.encode())  # compressible bytes; the type decides
    put(gzip_server, f"bin/{name}", data)
    status, headers, body = gzip_server.request("GET", f"/files/bin/{name}", {"Accept-Encoding": "gzip"})
    assert (status, body) == (200, data)
    assert "content-encoding" not in headers


# -- rate limit and disconnects ------------------------------------------------------


def test_rate_limit_slows_a_download(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = os.urandom(3 << 20)
    write_file(root, "slow.bin", data)
    srv = start_cli(root, "--rate-limit", "1M")
    try:
        started = time.monotonic()
        status, _ = curl(srv, "/files/slow.bin", tmp_path / "out")
        elapsed = time.monotonic() - started
        # An archive of the same bytes is capped too (zip: stored, exact size).
        started = time.monotonic()
        archive_status, _ = curl(srv, "/archive/", tmp_path / "out.zip")
        archive_elapsed = time.monotonic() - started
    finally:
        srv.stop()
    assert status == 200
    assert (tmp_path / "out").read_bytes() == data
    # 3 MiB at 1 MiB/s is about 3 s; a lower bound only, never an upper one.
    assert elapsed >= 2.0
    assert archive_status == 200 and archive_elapsed >= 2.0
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert zf.read("slow.bin") == data


def test_client_disconnect_stops_the_transfer(server: ServerProc) -> None:
    # Sparse, so no disk is used. Big enough that a server which ignored the
    # disconnect (uvicorn's send() then returns silently) would still be
    # reading it long after the deadline below: reads run at ~0.5-2 GB/s.
    big = server.root / "sparse" / "huge.bin"
    big.parent.mkdir(parents=True, exist_ok=True)
    with open(big, "wb") as f:
        f.truncate(32 << 30)
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        sock.sendall(
            f"GET /files/sparse/huge.bin HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: Bearer {server.token}\r\n\r\n".encode())
        received = 0
        while received < 1 << 20:
            chunk = sock.recv(1 << 16)
            assert chunk
            received += len(chunk)
        assert metric(server, "xfer_active_transfers") >= 1
    finally:
        sock.close()
    deadline = time.monotonic() + 10
    while metric(server, "xfer_active_transfers") != 0:
        assert time.monotonic() < deadline, "the server kept sending to a closed connection"
        time.sleep(0.1)
