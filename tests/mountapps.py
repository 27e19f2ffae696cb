"""Host applications that mount XferApp under a prefix, for test_mount.py.

Each factory reads XFER_ROOT/XFER_TOKENS like create_app(). Two dispatcher
styles: Starlette's (full `path`, prefix in `root_path`) and the older one
(prefix stripped from `path` and moved to `root_path`).
"""

from __future__ import annotations

from typing import Any

from asgi_xfer import create_app

PREFIX = "/xfer"


def starlette_host() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("host app")

    return Starlette(routes=[Route("/", home), Mount(PREFIX, app=create_app())])


def _dispatcher(strip: bool) -> Any:
    inner = create_app()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await inner(scope, receive, send)
            return
        path = scope["path"]
        if path == PREFIX or path.startswith(PREFIX + "/"):
            child = dict(scope, root_path=scope.get("root_path", "") + PREFIX)
            if strip:
                child["path"] = path[len(PREFIX):] or "/"
            await inner(child, receive, send)
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"host 404"})

    return app


def dispatcher_full_path() -> Any:
    return _dispatcher(strip=False)


def dispatcher_stripped_path() -> Any:
    return _dispatcher(strip=True)
