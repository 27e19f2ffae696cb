"""XferApp mounted under /xfer inside other ASGI apps, served by uvicorn."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write_file
from mountapps import PREFIX
from serverproc import TOKEN, ServerProc, free_port, start_command

TESTS = Path(__file__).parent


@pytest.fixture(scope="module", params=["starlette_host", "dispatcher_full_path", "dispatcher_stripped_path"])
def mounted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("mounted")
    write_file(root, "docs/readme.txt", b"0123456789" * 100)
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--factory", f"mountapps:{request.param}",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    env = {"XFER_ROOT": str(root), "XFER_TOKENS": TOKEN, "PYTHONPATH": str(TESTS)}
    srv = start_command(cmd, root, port, env, health_path=f"{PREFIX}/healthz")
    try:
        yield srv
    finally:
        srv.stop()


def test_files_under_prefix(mounted: ServerProc) -> None:
    status, _, body = mounted.request("GET", f"{PREFIX}/files/docs/readme.txt", {"Range": "bytes=10-19"})
    assert (status, body) == (206, b"0123456789")
    status, _, body = mounted.request("GET", f"{PREFIX}/healthz", auth=False)
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_redirect_keeps_prefix(mounted: ServerProc) -> None:
    status, headers, _ = mounted.request("GET", f"{PREFIX}/files/docs")
    assert status == 308 and headers["location"] == f"{PREFIX}/files/docs/"
    status, _, body = mounted.request("GET", headers["location"])
    assert status == 200 and [e["name"] for e in json.loads(body)["entries"]] == ["readme.txt"]


def test_signed_link_carries_prefix_and_works(mounted: ServerProc) -> None:
    status, _, body = mounted.request("POST", f"{PREFIX}/sign", {"Content-Type": "application/json"},
                                      json.dumps({"path": "docs/readme.txt", "expires_in": 60}).encode())
    assert status == 200
    url = json.loads(body)["url"]
    assert url.startswith(f"{PREFIX}/files/docs/readme.txt?")
    status, _, body = mounted.request("GET", url, auth=False)
    assert status == 200 and body == b"0123456789" * 100


def test_errors_and_auth_under_prefix(mounted: ServerProc) -> None:
    status, headers, body = mounted.request("GET", f"{PREFIX}/files/docs/readme.txt", auth=False)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    status, headers, body = mounted.request("GET", f"{PREFIX}/nope")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
