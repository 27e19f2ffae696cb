from __future__ import annotations

from conftest import write_file
from serverproc import ServerProc


def test_health_and_download(server: ServerProc) -> None:
    write_file(server.root, "smoke/hello.txt", b"hello\n")
    status, headers, body = server.request("GET", "/files/smoke/hello.txt")
    assert (status, body) == (200, b"hello\n")
    assert headers["content-length"] == "6"
    status, headers, body = server.request("GET", "/files/smoke/hello.txt", auth=False)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
