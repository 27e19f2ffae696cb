"""Regenerate the multipart corpus: bodies written by real clients, plus browser bodies.

Run from the repository root with the system Python (it needs `urllib3`),
`curl` and `node` (18+, for undici's FormData) on PATH:

    python3 tests/corpus/multipart/generate.py

Each `NAME.http` is a whole request as the client put it on the wire (curl's
is captured by a one-shot socket listener) or, for the browser bodies that
cannot be produced here, written out byte for byte in the browsers' format.
`expected.json` lists, for each body, the parts as they were handed to the
client: that, not our parser's output, is what the tests compare against.
Clients pick random boundaries, so regenerating changes the files.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import urllib3

HERE = Path(__file__).resolve().parent

CRLF_DENSE = b"\r\n" * 300 + b"\r\r\n\n\r-\r\n-\r\n--\r\n"
BINARY = bytes(range(256)) * 4
NEAR_PREFIX = b"--\r\n-- \r\n--"  # what precedes "boundary" in a delimiter


def near_boundary(boundary: bytes) -> bytes:
    """Data that comes close to the delimiter without being one."""
    return (
        b"--" + boundary + b" at the start, but no CRLF before it\r\n"
        b"\r\n--" + boundary[:-1] + b"\r\n"  # one byte short
        b"\r\n-" + boundary + b"\r\n"  # one dash
        b"\r\r\n--" + boundary[: len(boundary) // 2] + b"\r\n--\r\n"
        b"x\r\n--" + boundary.swapcase() + b"\r\n"  # case matters
        b"\n--" + boundary + b"\r\n"  # LF alone is not a delimiter
        b"\r\n"
    )


def part(name: str, data: bytes, filename: str | None = None, content_type: str | None = None) -> dict:
    return {
        "name": name,
        "filename": filename,
        "content_type": content_type,
        "data_b64": base64.b64encode(data).decode(),
    }


def capture_curl(args: list[str], cwd: Path) -> bytes:
    """Run curl against a one-shot listener on 127.0.0.1 and return the raw request."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    captured: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            raw = b""
            while b"\r\n\r\n" not in raw:
                raw += conn.recv(65536)
            head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
            while len(raw) - len(head) - 4 < length:
                raw += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            captured.append(raw)

    thread = threading.Thread(target=serve)
    thread.start()
    subprocess.run(
        ["curl", "-sS", "-H", "Expect:", *args, f"http://127.0.0.1:{port}/upload"],
        cwd=cwd,
        check=True,
    )
    thread.join()
    server.close()
    return captured[0]


def curl_bodies(expected: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "crlf.bin").write_bytes(CRLF_DENSE)
        (root / "binary.dat").write_bytes(BINARY)
        (root / "naïve résumé.txt").write_bytes("Grüße, 世界\r\n".encode())
        (root / "empty.dat").write_bytes(b"")
        (root / "plain.txt").write_bytes(b"plain\r\n")
        raw = capture_curl(
            [
                "-F", "text=hello world",
                "-F", "crlf=@crlf.bin",
                "-F", "bin=@binary.dat;type=application/x-raw",
                "-F", "doc=@naïve résumé.txt;type=text/plain",
                "-F", "empty=@empty.dat",
                "-F", 'quote=@plain.txt;filename="say \\"hi\\".txt"',
                "--form-string", "raw=@not a file",
            ],
            root,
        )
        (HERE / "curl_files.http").write_bytes(raw)
        expected["curl_files.http"] = [
            part("text", b"hello world"),
            part("crlf", CRLF_DENSE, "crlf.bin", "application/octet-stream"),
            part("bin", BINARY, "binary.dat", "application/x-raw"),
            part("doc", "Grüße, 世界\r\n".encode(), "naïve résumé.txt", "text/plain"),
            part("empty", b"", "empty.dat", "application/octet-stream"),
            part("quote", b"plain\r\n", 'say "hi".txt', "text/plain"),
            part("raw", b"@not a file"),
        ]
        # --form-escape: backslash-escaped quotes instead of %22.
        raw = capture_curl(
            ["--form-escape", "-F", 'quote=@plain.txt;filename="say \\"hi\\" \\\\o/.txt"'], root
        )
        (HERE / "curl_form_escape.http").write_bytes(raw)
        expected["curl_form_escape.http"] = [part("quote", b"plain\r\n", 'say "hi" \\o/.txt', "text/plain")]


def urllib3_bodies(expected: dict) -> None:
    boundary = "urllib3-7f3c9b0e5d2a41c8b6e0f1a2d3c4b5a6"
    fields = [
        ("comment", "line one\r\nline two"),
        ("near", ("near.bin", near_boundary(boundary.encode()), "application/octet-stream")),
        ("quoted", ('a "quoted"\nname.txt', b"q", "text/plain")),
        ("unicode", ("Ωμέγα €.bin", BINARY, "application/octet-stream")),
    ]
    body, content_type = urllib3.encode_multipart_formdata(fields, boundary=boundary)
    head = (
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    (HERE / "urllib3_fields.http").write_bytes(head.encode() + body)
    expected["urllib3_fields.http"] = [
        part("comment", b"line one\r\nline two"),
        part("near", near_boundary(boundary.encode()), "near.bin", "application/octet-stream"),
        part("quoted", b"q", 'a "quoted"\nname.txt', "text/plain"),
        part("unicode", BINARY, "Ωμέγα €.bin", "application/octet-stream"),
    ]


UNDICI_SCRIPT = r"""
const fd = new FormData();
fd.append('name "with" quotes', 'value');
fd.append('unicode field ✓', 'ünïcødé value');
fd.append('crlf', new Blob([Buffer.from(process.argv[2], 'base64')]), 'crlf.bin');
fd.append('odd', new Blob(['x'], {type: 'text/plain'}), 'line\nbreak "q".txt');
fd.append('empty', new Blob([]), '');
const request = new Request('http://127.0.0.1/upload', {method: 'POST', body: fd});
const body = Buffer.from(await request.arrayBuffer());
const head = 'POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ' +
  request.headers.get('content-type') + '\r\nContent-Length: ' + body.length + '\r\n\r\n';
process.stdout.write(Buffer.concat([Buffer.from(head), body]));
"""


def undici_bodies(expected: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "form.mjs"
        script.write_text(UNDICI_SCRIPT)
        raw = subprocess.run(
            ["node", str(script), base64.b64encode(CRLF_DENSE).decode()],
            check=True,
            capture_output=True,
        ).stdout
    (HERE / "undici_fetch.http").write_bytes(raw)
    expected["undici_fetch.http"] = [
        part('name "with" quotes', b"value"),
        part("unicode field ✓", "ünïcødé value".encode()),
        part("crlf", CRLF_DENSE, "crlf.bin", "application/octet-stream"),
        part("odd", b"x", 'line\nbreak "q".txt', "text/plain"),
        # undici leaves out a filename that is empty (Chrome sends filename="").
        part("empty", b"", None, "application/octet-stream"),
    ]


def request_bytes(content_type: str, body: bytes, user_agent: str) -> bytes:
    head = (
        f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: {user_agent}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def lines(*items: bytes) -> bytes:
    return b"\r\n".join(items)


def browser_bodies(expected: dict) -> None:
    # Chrome: "----WebKitFormBoundary" + 16 letters/digits; names and
    # filenames in raw UTF-8 with ", CR, LF as %22, %0D, %0A; an empty file
    # input is sent as filename="" with an empty octet-stream part.
    b = b"----WebKitFormBoundaryrGKCBY7qhFd3TrwA"
    body = lines(
        b"--" + b, b'Content-Disposition: form-data; name="title"', b"", b"My \xe2\x80\x9cnotes\xe2\x80\x9d",
        b"--" + b, b'Content-Disposition: form-data; name="upload"; filename="r\xc3\xa9sum\xc3\xa9 %22final%22.pdf"',
        b"Content-Type: application/pdf", b"", b"%PDF-1.4\r\n" + CRLF_DENSE,
        b"--" + b, b'Content-Disposition: form-data; name="near"; filename="near.bin"',
        b"Content-Type: application/octet-stream", b"", near_boundary(b),
        b"--" + b, b'Content-Disposition: form-data; name="attachment"; filename=""',
        b"Content-Type: application/octet-stream", b"", b"",
        b"--" + b + b"--", b"",
    )
    ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
    (HERE / "chrome_form.http").write_bytes(request_bytes("multipart/form-data; boundary=" + b.decode(), body, ua))
    expected["chrome_form.http"] = [
        part("title", "My “notes”".encode()),
        part("upload", b"%PDF-1.4\r\n" + CRLF_DENSE, 'résumé "final".pdf', "application/pdf"),
        part("near", near_boundary(b), "near.bin", "application/octet-stream"),
        part("attachment", b"", "", "application/octet-stream"),
    ]

    # Firefox before 121: "---------------------------" + decimal digits.
    # The well-known capture from "What does enctype='multipart/form-data' mean?".
    b = b"---------------------------735323031399963166993862150"
    body = lines(
        b"--" + b, b'Content-Disposition: form-data; name="text1"', b"", b"text default",
        b"--" + b, b'Content-Disposition: form-data; name="text2"', b"", "aωb".encode(),
        b"--" + b, b'Content-Disposition: form-data; name="file1"; filename="a.txt"',
        b"Content-Type: text/plain", b"", b"Content of a.txt.\r\n",
        b"--" + b, b'Content-Disposition: form-data; name="file2"; filename="a.html"',
        b"Content-Type: text/html", b"", b"<!DOCTYPE html><title>Content of a.html.</title>\r\n",
        b"--" + b, b'Content-Disposition: form-data; name="file3"; filename="binary"',
        b"Content-Type: application/octet-stream", b"", "aωb".encode(),
        b"--" + b + b"--", b"",
    )
    ua = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:40.0) Gecko/20100101 Firefox/40.0"
    (HERE / "firefox_legacy.http").write_bytes(request_bytes("multipart/form-data; boundary=" + b.decode(), body, ua))
    expected["firefox_legacy.http"] = [
        part("text1", b"text default"),
        part("text2", "aωb".encode()),
        part("file1", b"Content of a.txt.\r\n", "a.txt", "text/plain"),
        part("file2", b"<!DOCTYPE html><title>Content of a.html.</title>\r\n", "a.html", "text/html"),
        part("file3", "aωb".encode(), "binary", "application/octet-stream"),
    ]

    # Firefox 121+: "----geckoformboundary" + 32 hex digits.
    b = b"----geckoformboundary9c2f5a0e7b1d48e6a3f0c5d2b8e1f4a7"
    body = lines(
        b"--" + b, b'Content-Disposition: form-data; name="q%22uote"', b"", b"v",
        b"--" + b, b'Content-Disposition: form-data; name="photo"; filename="\xe5\x86\x99\xe7\x9c\x9f %0A.jpg"',
        b"Content-Type: image/jpeg", b"", b"\xff\xd8\xff\xe0" + BINARY + b"\xff\xd9",
        b"--" + b + b"--", b"",
    )
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    (HERE / "firefox_gecko.http").write_bytes(request_bytes("multipart/form-data; boundary=" + b.decode(), body, ua))
    expected["firefox_gecko.http"] = [
        part('q"uote', b"v"),
        part("photo", b"\xff\xd8\xff\xe0" + BINARY + b"\xff\xd9", "写真 \n.jpg", "image/jpeg"),
    ]


def rfc_bodies(expected: dict) -> None:
    # RFC 2046 §5.1.1's example: a quoted boundary with a space, a preamble,
    # transport padding after a delimiter, an epilogue; RFC 8187 filename*.
    b = b"simple boundary"
    body = lines(
        b"This is the preamble.  It is to be ignored, though it",
        b"is a handy place for composition agents to include an",
        b"explanatory note to non-MIME conformant readers.",
        b"",
        b"--" + b + b" \t ",
        b'Content-Disposition: form-data; name="implicit"',
        b"",
        b"This is implicitly typed plain US-ASCII text.",
        b"It does NOT end with a linebreak.",
        b"--" + b,
        b"content-disposition: FORM-DATA; name=\"rates\"; filename*=UTF-8''%e2%82%ac%20rates.txt;"
        b' filename="EUR rates.txt"',
        b"Content-type: text/plain; charset=us-ascii",
        b"",
        b"This is explicitly typed plain US-ASCII text.",
        b"It DOES end with a linebreak.",
        b"",
        b"--" + b,
        b"Content-Disposition: form-data; name=pounds; filename*=iso-8859-1'en'%A3%20rates.txt",
        b"",
        b"",
        b"--" + b + b"--",
        b"",
        b"This is the epilogue.  It is also to be ignored.",
        b"--" + b,
    )
    (HERE / "rfc2046_preamble_epilogue.http").write_bytes(
        request_bytes('multipart/form-data; boundary="simple boundary"', body, "handwritten")
    )
    expected["rfc2046_preamble_epilogue.http"] = [
        part("implicit", b"This is implicitly typed plain US-ASCII text.\r\nIt does NOT end with a linebreak."),
        part(
            "rates",
            b"This is explicitly typed plain US-ASCII text.\r\nIt DOES end with a linebreak.\r\n",
            "€ rates.txt",
            "text/plain; charset=us-ascii",
        ),
        part("pounds", b"", "£ rates.txt"),
    ]


def main() -> None:
    expected: dict = {}
    curl_bodies(expected)
    urllib3_bodies(expected)
    undici_bodies(expected)
    browser_bodies(expected)
    rfc_bodies(expected)
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
