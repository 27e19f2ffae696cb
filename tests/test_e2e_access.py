"""Access control, signed links, path safety and the error envelope, end to end.

The real CLI server under uvicorn; requests from stdlib http.client (which
sends a path exactly as given) and curl. Expected statuses come from SPEC.md
("Access", "Errors") and RFC 9110 (§11.6.1 WWW-Authenticate, §15.5.6 Allow).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from asgi_xfer.protocol.signing import sign_link
from conftest import need_tool, write_file
from serverproc import ServerProc, start_cli

SECRET_PATH = Path(".xfer") / "secret.key"


def assert_json_error(status: int, headers: dict[str, str], body: bytes, *expected: int) -> dict:
    """SPEC "Errors": `{"error": {"code", "message"}}` as application/json."""
    assert status in expected, (status, body)
    assert headers["content-type"].split(";")[0].strip() == "application/json"
    payload = json.loads(body)
    assert list(payload) == ["error"]
    error = payload["error"]
    assert {"code", "message"} <= set(error)
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.fixture(scope="module")
def public_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    srv = start_cli(tmp_path_factory.mktemp("public"), "--public-read")
    try:
        yield srv
    finally:
        srv.stop()


def sign(server: ServerProc, path: str, method: str = "GET", expires_in: int = 300) -> str:
    body = json.dumps({"path": path, "expires_in": expires_in, "method": method}).encode()
    status, headers, data = server.request("POST", "/sign", {"Content-Type": "application/json"}, body)
    assert status == 200, data
    url = json.loads(data)["url"]
    assert url.startswith("/files/")
    return url


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


# -- bearer tokens ---------------------------------------------------------------


@pytest.mark.parametrize("authorization", [
    None,
    "Bearer wrong-token",
    "Bearer ",
    "Basic dGVzdDp0ZXN0",
    "test-token-0123456789",  # the right token without the scheme
])
def test_missing_or_wrong_token_is_401_with_bearer_challenge(server: ServerProc, authorization: str | None) -> None:
    write_file(server.root, "auth/a.txt", b"secret")
    headers = {"Authorization": authorization} if authorization is not None else {}
    status, resp, body = server.request("GET", "/files/auth/a.txt", headers, auth=False)
    assert_json_error(status, resp, body, 401)
    assert resp["www-authenticate"].split()[0] == "Bearer"  # RFC 6750 §3
    assert b"secret" not in body


def test_right_token_reads(server: ServerProc) -> None:
    write_file(server.root, "auth/b.txt", b"content")
    status, _, body = server.request("GET", "/files/auth/b.txt")
    assert (status, body) == (200, b"content")


def test_bearer_scheme_is_case_insensitive(server: ServerProc) -> None:
    write_file(server.root, "auth/c.txt", b"abc")
    status, _, body = server.request("GET", "/files/auth/c.txt", {"Authorization": f"bearer {server.token}"}, auth=False)
    assert (status, body) == (200, b"abc")  # RFC 9110 §11.1: auth-scheme is case-insensitive


def test_healthz_is_public(server: ServerProc) -> None:
    status, headers, body = server.request("GET", "/healthz", auth=False)
    assert status == 200
    assert json.loads(body) == {"status": "ok"}


def test_metrics_needs_the_token(server: ServerProc) -> None:
    status, headers, body = server.request("GET", "/metrics", auth=False)
    assert_json_error(status, headers, body, 401)
    status, headers, body = server.request("GET", "/metrics")
    assert status == 200
    assert b"xfer_active_transfers" in body


# -- --public-read -----------------------------------------------------------------


def test_public_read_serves_get_and_head_without_token(public_server: ServerProc) -> None:
    write_file(public_server.root, "pub/a.txt", b"open data")
    status, _, body = public_server.request("GET", "/files/pub/a.txt", auth=False)
    assert (status, body) == (200, b"open data")
    status, headers, body = public_server.request("HEAD", "/files/pub/a.txt", auth=False)
    assert (status, body, headers["content-length"]) == (200, b"", "9")
    status, _, body = public_server.request("GET", "/files/pub/", auth=False)
    assert status == 200 and json.loads(body)["entries"][0]["name"] == "a.txt"


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_public_read_does_not_open_writes(public_server: ServerProc, method: str) -> None:
    target = write_file(public_server.root, f"pub/keep-{method}.txt", b"original")
    status, headers, body = public_server.request(method, f"/files/pub/keep-{method}.txt", body=b"evil", auth=False)
    assert_json_error(status, headers, body, 401)
    assert headers["www-authenticate"].split()[0] == "Bearer"
    assert target.read_bytes() == b"original"
    status, _, _ = public_server.request("PUT", "/files/pub/new-file.txt", body=b"evil", auth=False)
    assert status == 401
    assert not (public_server.root / "pub" / "new-file.txt").exists()


def test_public_read_does_not_open_sign_or_metrics(public_server: ServerProc) -> None:
    body = json.dumps({"path": "pub/a.txt"}).encode()
    status, headers, data = public_server.request("POST", "/sign", {"Content-Type": "application/json"}, body, auth=False)
    assert_json_error(status, headers, data, 401)
    status, headers, data = public_server.request("GET", "/metrics", auth=False)
    assert_json_error(status, headers, data, 401)


def test_public_read_still_refuses_a_tampered_link(public_server: ServerProc) -> None:
    write_file(public_server.root, "pub/s.txt", b"x")
    url = sign(public_server, "pub/s.txt")
    status, headers, body = public_server.request("GET", with_query(url, sig="A" * 43), auth=False)
    assert_json_error(status, headers, body, 403)


# -- signed links ------------------------------------------------------------------


@pytest.fixture()
def signed_file(server: ServerProc) -> bytes:
    data = os.urandom(10_000)
    write_file(server.root, "signed/a.bin", data)
    write_file(server.root, "signed/b.bin", b"another file")
    return data


def test_signed_link_works_without_token(server: ServerProc, signed_file: bytes) -> None:
    url = sign(server, "signed/a.bin")
    status, _, body = server.request("GET", url, auth=False)
    assert (status, body) == (200, signed_file)


def test_signed_link_works_with_curl(server: ServerProc, signed_file: bytes, tmp_path: Path) -> None:
    url = sign(server, "signed/a.bin")
    out = tmp_path / "out"
    subprocess.run([need_tool("curl"), "-sSf", "-o", str(out), server.url + url], check=True, timeout=30)
    assert out.read_bytes() == signed_file


def test_signed_link_honours_range(server: ServerProc, signed_file: bytes) -> None:
    url = sign(server, "signed/a.bin")
    status, headers, body = server.request("GET", url, {"Range": "bytes=100-199"}, auth=False)
    assert (status, body) == (206, signed_file[100:200])
    assert headers["content-range"] == f"bytes 100-199/{len(signed_file)}"


def test_get_link_also_answers_head(server: ServerProc, signed_file: bytes) -> None:
    url = sign(server, "signed/a.bin")
    status, headers, body = server.request("HEAD", url, auth=False)
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(len(signed_file))


def test_head_link_does_not_grant_get(server: ServerProc, signed_file: bytes) -> None:
    url = sign(server, "signed/a.bin", method="HEAD")
    assert server.request("HEAD", url, auth=False)[0] == 200
    status, headers, body = server.request("GET", url, auth=False)
    assert_json_error(status, headers, body, 403)


def test_signed_link_for_a_non_ascii_name(server: ServerProc) -> None:
    write_file(server.root, "signed/测试 文件.txt", b"unicode")
    url = sign(server, "signed/测试 文件.txt")
    status, _, body = server.request("GET", url, auth=False)
    assert (status, body) == (200, b"unicode")


def _tamper_sig(url: str) -> str:
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    return with_query(url, sig=flipped)


def _tamper_path(url: str) -> str:
    return url.replace("/files/signed/a.bin", "/files/signed/b.bin", 1)


def _tamper_expires(url: str) -> str:
    expires = parse_qs(urlsplit(url).query)["expires"][0]
    return with_query(url, expires=str(int(expires) + 1))


def _drop_sig(url: str) -> str:
    return url.split("&sig=")[0]


@pytest.mark.parametrize("tamper", [_tamper_sig, _tamper_path, _tamper_expires])
def test_tampered_link_is_403(server: ServerProc, signed_file: bytes, tamper: Callable[[str], str]) -> None:
    url = tamper(sign(server, "signed/a.bin"))
    status, headers, body = server.request("GET", url, auth=False)
    assert_json_error(status, headers, body, 403)


def test_link_without_sig_is_just_unauthenticated(server: ServerProc, signed_file: bytes) -> None:
    status, headers, body = server.request("GET", _drop_sig(sign(server, "signed/a.bin")), auth=False)
    assert_json_error(status, headers, body, 401, 403)


@pytest.mark.parametrize("method", ["DELETE", "PUT"])
def test_link_is_only_for_its_method(server: ServerProc, signed_file: bytes, method: str) -> None:
    url = sign(server, "signed/a.bin")
    status, headers, body = server.request(method, url, body=b"overwrite", auth=False)
    assert_json_error(status, headers, body, 403)
    assert (server.root / "signed/a.bin").read_bytes() == signed_file


def test_link_used_with_a_method_the_route_lacks_is_405(server: ServerProc, signed_file: bytes) -> None:
    url = sign(server, "signed/a.bin")
    status, headers, body = server.request("PATCH", url, body=b"x", auth=False)
    assert_json_error(status, headers, body, 403, 405)
    assert (server.root / "signed/a.bin").read_bytes() == signed_file


def test_put_link_allows_only_that_upload(server: ServerProc) -> None:
    url = sign(server, "signed/upload.bin", method="PUT")
    status, _, body = server.request("PUT", url, body=b"uploaded through a link", auth=False)
    assert status in (200, 201), body
    assert (server.root / "signed/upload.bin").read_bytes() == b"uploaded through a link"
    status, headers, body = server.request("GET", url, auth=False)
    assert_json_error(status, headers, body, 403)
    other = url.replace("/files/signed/upload.bin", "/files/signed/elsewhere.bin", 1)
    status, headers, body = server.request("PUT", other, body=b"x", auth=False)
    assert_json_error(status, headers, body, 403)
    assert not (server.root / "signed/elsewhere.bin").exists()


def test_expired_link_is_403(server: ServerProc, signed_file: bytes) -> None:
    secret = (server.root / SECRET_PATH).read_bytes()
    expires = int(time.time()) - 60
    sig = sign_link(secret, "GET", "/files/signed/a.bin", expires)
    url = "/files/signed/a.bin?" + urlencode({"expires": expires, "sig": sig})
    status, headers, body = server.request("GET", url, auth=False)
    assert_json_error(status, headers, body, 403)
    # The same key and a future expiry work: the 403 above is the expiry alone.
    expires = int(time.time()) + 60
    sig = sign_link(secret, "GET", "/files/signed/a.bin", expires)
    url = "/files/signed/a.bin?" + urlencode({"expires": expires, "sig": sig})
    assert server.request("GET", url, auth=False)[0] == 200


@pytest.mark.parametrize("body", [
    b"not json",
    b"",
    b"[]",
    b'"signed/a.bin"',
    b"{}",
    b'{"path": ""}',
    b'{"path": 5}',
    b'{"path": "../etc/passwd"}',
    b'{"path": "signed/../../x"}',
    b'{"path": "/metrics"}',
    b'{"path": "/sign"}',
    b'{"path": "signed/a.bin", "expires_in": 0}',
    b'{"path": "signed/a.bin", "expires_in": -5}',
    b'{"path": "signed/a.bin", "expires_in": "60"}',
    b'{"path": "signed/a.bin", "expires_in": 1.5}',
    b'{"path": "signed/a.bin", "expires_in": 999999999999}',
    b'{"path": "signed/a.bin", "method": "POST"}',
    b'{"path": "signed/a.bin", "method": 5}',
])
def test_bad_sign_body_is_400(server: ServerProc, body: bytes) -> None:
    status, headers, data = server.request("POST", "/sign", {"Content-Type": "application/json"}, body)
    assert_json_error(status, headers, data, 400)


def test_sign_refuses_internal_state(server: ServerProc) -> None:
    body = json.dumps({"path": ".xfer/secret.key"}).encode()
    status, headers, data = server.request("POST", "/sign", {"Content-Type": "application/json"}, body)
    assert_json_error(status, headers, data, 400, 403, 404)


# -- path safety ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def outside_secret(server: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file outside ROOT that no request may read."""
    outside = tmp_path_factory.mktemp("outside") / "secret.txt"
    outside.write_bytes(b"OUTSIDE-ROOT-SECRET")
    write_file(server.root, "safe/inside.txt", b"inside")
    return outside


@pytest.mark.parametrize("path", [
    "/files/../etc/passwd",
    "/files/safe/../../etc/passwd",
    "/files/..",
    "/files/%2e%2e/%2e%2e/etc/passwd",
    "/files/%2E%2E/safe/inside.txt",
    "/files/safe/%2e%2e/safe/inside.txt",
    "/files/./safe/inside.txt",
    "/files/safe%2f..%2f..%2fetc%2fpasswd",
    "/files/safe/inside.txt%00.png",
    "/files/a%00b",
    "/files/a%0ab",
    "/files/a%0d%0aX-Injected:%201",
    "/files/a%01b",
    "/files/a%7fb",
    "/files/a%5cb",
    "/files/..%5c..%5cetc%5cpasswd",
    "/files//etc/passwd",
    "/files/%2fetc/passwd",
    "/files/C:/x",
    "/files/c:%5cwindows%5cwin.ini",
    "/files/safe//inside.txt",
])
def test_unsafe_path_is_refused(server: ServerProc, outside_secret: Path, path: str) -> None:
    status, headers, body = server.request("GET", path)
    assert_json_error(status, headers, body, 400, 403)
    assert b"root:" not in body and b"OUTSIDE" not in body
    assert "x-injected" not in headers


def _escapes(root: Path, outside: Path) -> list[str]:
    """Request paths that would name `outside/NAME` if ROOT leaked."""
    up = os.path.relpath(outside, root)  # "../../outsideN"
    return [
        f"/files/{up}/NAME",
        "/files/" + up.replace("..", "%2e%2e") + "/NAME",
        "/files/" + up.replace("/", "%5c") + "%5cNAME",
        f"/files/safe/../{up}/NAME",
        f"/files/{outside}/NAME",  # "/files//tmp/...": absolute
    ]


def test_put_cannot_write_outside_root(server: ServerProc, outside_secret: Path) -> None:
    for path in _escapes(server.root, outside_secret.parent):
        for name in ("secret.txt", "planted.txt"):
            status, headers, body = server.request("PUT", path.replace("NAME", name), body=b"planted")
            assert_json_error(status, headers, body, 400, 403)
    assert outside_secret.read_bytes() == b"OUTSIDE-ROOT-SECRET"
    assert not (outside_secret.parent / "planted.txt").exists()


def test_delete_cannot_remove_outside_root(server: ServerProc, outside_secret: Path) -> None:
    for path in _escapes(server.root, outside_secret.parent):
        status, headers, body = server.request("DELETE", path.replace("NAME", "secret.txt"))
        assert_json_error(status, headers, body, 400, 403)
    assert outside_secret.read_bytes() == b"OUTSIDE-ROOT-SECRET"


def test_writes_through_an_escaping_symlink_stay_inside(server: ServerProc, outside_secret: Path) -> None:
    os.symlink(outside_secret, server.root / "safe" / "w-escape.txt")
    os.symlink(outside_secret.parent, server.root / "safe" / "w-escape-dir")
    status, headers, body = server.request("PUT", "/files/safe/w-escape.txt", body=b"overwritten")
    assert_json_error(status, headers, body, 403)
    status, headers, body = server.request("PUT", "/files/safe/w-escape-dir/planted.txt", body=b"planted")
    assert_json_error(status, headers, body, 403)
    # DELETE may remove the link itself (204) or refuse; never the target.
    status, _, _ = server.request("DELETE", "/files/safe/w-escape.txt")
    assert status in (204, 403)
    status, _, _ = server.request("DELETE", "/files/safe/w-escape-dir/secret.txt")
    assert status in (403,)
    assert outside_secret.read_bytes() == b"OUTSIDE-ROOT-SECRET"
    assert not (outside_secret.parent / "planted.txt").exists()


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/files/.xfer/secret.key", "/files/%2exfer/secret.key", "/files/.xfer"])
def test_internal_state_cannot_be_written_or_deleted(server: ServerProc, method: str, path: str) -> None:
    key = (server.root / SECRET_PATH).read_bytes()
    status, headers, body = server.request(method, path, body=b"attacker key" if method == "PUT" else None)
    assert_json_error(status, headers, body, 400, 403, 404)
    assert (server.root / SECRET_PATH).read_bytes() == key


def test_dot_dot_sent_as_is_by_curl_is_refused(server: ServerProc, outside_secret: Path) -> None:
    done = subprocess.run(
        [need_tool("curl"), "-sS", "--path-as-is", "-w", "\n%{http_code} %{content_type}",
         "-H", f"Authorization: Bearer {server.token}", server.url + "/files/safe/../../../etc/passwd"],
        capture_output=True, text=True, check=True, timeout=30,
    )
    body, _, trailer = done.stdout.rpartition("\n")
    status, content_type = trailer.split(" ", 1)
    assert status in ("400", "403")
    assert content_type.startswith("application/json")
    assert set(json.loads(body)) == {"error"}


def test_symlink_leaving_root_is_403(server: ServerProc, outside_secret: Path) -> None:
    os.symlink(outside_secret, server.root / "safe" / "escape.txt")
    os.symlink(outside_secret.parent, server.root / "safe" / "escape-dir")
    for path in ("/files/safe/escape.txt", "/files/safe/escape-dir/secret.txt", "/files/safe/escape-dir/"):
        status, headers, body = server.request("GET", path)
        assert_json_error(status, headers, body, 403)
        assert b"OUTSIDE" not in body
    _, _, listing = server.request("GET", "/files/safe/")
    names = {e["name"] for e in json.loads(listing)["entries"]}
    assert "escape.txt" not in names and "escape-dir" not in names


def test_symlink_to_a_fifo_outside_root_is_refused_without_opening_it(server: ServerProc, tmp_path: Path) -> None:
    """SPEC: paths are checked before any I/O. Opening a FIFO's read end
    would release a writer blocked in open(); refused unopened, it stays."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.symlink(fifo, server.root / "safe" / "to-fifo")
    released = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)
        released.set()
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        status, headers, body = server.request("GET", "/files/safe/to-fifo", timeout=5)
        assert_json_error(status, headers, body, 403)
        assert not released.wait(0.5)
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # let the writer go
        thread.join(timeout=5)


def test_symlink_inside_root_is_served(server: ServerProc, outside_secret: Path) -> None:
    write_file(server.root, "safe/real/target.txt", b"linked content")
    os.symlink("real/target.txt", server.root / "safe" / "alias.txt")
    status, _, body = server.request("GET", "/files/safe/alias.txt")
    assert (status, body) == (200, b"linked content")


@pytest.mark.parametrize("path", [
    "/files/.xfer/secret.key",
    "/files/.xfer/",
    "/files/.xfer",
    "/files/%2exfer/secret.key",
    "/files/safe/.xfer-staging-123",
])
def test_internal_state_is_unreachable(server: ServerProc, path: str) -> None:
    write_file(server.root, "safe/.xfer-staging-123", b"half an upload")
    status, headers, body = server.request("GET", path)
    assert_json_error(status, headers, body, 404)
    assert (server.root / SECRET_PATH).read_bytes() not in body


def test_symlink_to_internal_state_is_unreachable(server: ServerProc) -> None:
    os.symlink(server.root / ".xfer", server.root / "state-alias")
    status, headers, body = server.request("GET", "/files/state-alias/secret.key")
    assert_json_error(status, headers, body, 403, 404)
    assert (server.root / SECRET_PATH).read_bytes() not in body


def test_symlink_cycle_is_refused_not_500(server: ServerProc) -> None:
    os.symlink("cycle-b", server.root / "safe" / "cycle-a")
    os.symlink("cycle-a", server.root / "safe" / "cycle-b")
    os.symlink("self-loop", server.root / "safe" / "self-loop")
    for path in ("/files/safe/cycle-a", "/files/safe/self-loop", "/files/safe/self-loop/"):
        status, headers, body = server.request("GET", path)
        assert_json_error(status, headers, body, 403, 404)
    status, _, listing = server.request("GET", "/files/safe/")
    assert status == 200
    assert not {"cycle-a", "cycle-b", "self-loop"} & {e["name"] for e in json.loads(listing)["entries"]}
    for method, path in (("PUT", "/files/safe/cycle-a"), ("PUT", "/files/safe/self-loop"), ("DELETE", "/files/safe/cycle-a/x")):
        status, headers, body = server.request(method, path, body=b"data" if method == "PUT" else None)
        assert_json_error(status, headers, body, 403, 404, 409)


def test_special_files_are_not_served(server: ServerProc) -> None:
    os.mkfifo(server.root / "safe" / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(server.root / "safe" / "unix.sock"))
        for path in ("/files/safe/fifo", "/files/safe/unix.sock"):
            status, headers, body = server.request("GET", path, timeout=5)
            assert_json_error(status, headers, body, 403, 404)


def test_listing_skips_names_that_are_not_utf8(server: ServerProc) -> None:
    folder = server.root / "latin1"
    folder.mkdir()
    (folder / "ok.txt").write_bytes(b"x")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin-1 name")
    status, headers, body = server.request("GET", "/files/latin1/")
    assert status == 200, body
    assert [e["name"] for e in json.loads(body)["entries"]] == ["ok.txt"]


def test_missing_file_is_404_json(server: ServerProc) -> None:
    status, headers, body = server.request("GET", "/files/does/not/exist.txt")
    assert assert_json_error(status, headers, body, 404)["code"] == "not_found"


# -- routes and methods ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/nope", "/file/x", "/healthz/x", "/filesx"])
def test_unknown_route_is_404_json(server: ServerProc, path: str) -> None:
    status, headers, body = server.request("GET", path)
    assert assert_json_error(status, headers, body, 404)["code"] == "not_found"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("POST", "/healthz", {"GET", "HEAD"}),
    ("DELETE", "/metrics", {"GET", "HEAD"}),
    ("GET", "/sign", {"POST"}),
    ("PATCH", "/files/x.txt", {"GET", "HEAD"}),
])
def test_wrong_method_is_405_with_allow(server: ServerProc, method: str, path: str, allowed: set[str]) -> None:
    status, headers, body = server.request(method, path, body=b"" if method != "GET" else None)
    assert_json_error(status, headers, body, 405)
    allow = {m.strip() for m in headers["allow"].split(",")}
    assert method not in allow
    assert allowed <= allow
