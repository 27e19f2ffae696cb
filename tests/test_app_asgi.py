"""The ASGI boundary without a server: lifespan, routing, the error envelope."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_xfer import Settings, XferApp



def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None, root_path: str = "") -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": root_path + path, "raw_path": (root_path + path).encode(), "query_string": b"",
        "root_path": root_path, "headers": [(b"authorization", b"Bearer t"), *(headers or [])],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }


async def _call(app: XferApp, scope: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    comm = ApplicationCommunicator(app, scope)
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await comm.receive_output(5)
    body = b""
    while True:
        message = await comm.receive_output(5)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await comm.wait(5)
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, body


@pytest.fixture
def app(tmp_path: Path) -> XferApp:
    (tmp_path / "a.txt").write_bytes(b"abc")
    return XferApp(root=tmp_path, tokens=["t"])


def test_lifespan(app: XferApp) -> None:
    asyncio.run(_lifespan(app))


async def _lifespan(app: XferApp) -> None:
    comm = ApplicationCommunicator(app, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await comm.send_input({"type": "lifespan.startup"})
    assert await comm.receive_output(5) == {"type": "lifespan.startup.complete"}
    await comm.send_input({"type": "lifespan.shutdown"})
    assert await comm.receive_output(5) == {"type": "lifespan.shutdown.complete"}


def test_405_lists_allowed_methods(app: XferApp) -> None:
    status, headers, body = asyncio.run(_call(app, _scope("PATCH", "/healthz")))
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert json.loads(body)["error"]["code"] == "method_not_allowed"


def test_collection_without_slash_redirects(app: XferApp) -> None:
    status, headers, _ = asyncio.run(_call(app, _scope("GET", "/files", root_path="/m")))
    assert status == 308 and headers["location"] == "/m/files/"


def test_500_never_echoes_internals(app: XferApp, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(rel: object) -> None:
        raise RuntimeError("secret detail /srv/private/path")

    monkeypatch.setattr(app.ctx.tree, "open_read", boom)
    status, headers, body = asyncio.run(_call(app, _scope("GET", "/files/a.txt")))
    assert status == 500 and headers["content-type"] == "application/json"
    assert b"secret" not in body and json.loads(body)["error"]["code"] == "internal_error"


def test_no_token_generates_one(tmp_path: Path) -> None:
    app = XferApp(settings=Settings(root=tmp_path / "r"))
    assert app.generated_token and app.settings.tokens == (app.generated_token,)
    assert (tmp_path / "r" / ".xfer" / "secret.key").stat().st_size == 32
