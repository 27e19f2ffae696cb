"""Peer: Starlette ``FileResponse`` serving ``$BENCH_ROOT`` at ``/files/{path}``.

The idiomatic Starlette way to send a file. It owns nothing but the route;
it must not tune anything the stock ``FileResponse`` does not do itself.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

ROOT = os.path.realpath(os.environ["BENCH_ROOT"])


def resolve_file(path: str) -> str | None:
    """The file under ROOT named by ``path``, or None (outside ROOT or not a file)."""
    full = os.path.realpath(os.path.join(ROOT, path))
    if not full.startswith(ROOT + os.sep) or not os.path.isfile(full):
        return None
    return full


async def get_file(request: Request) -> Response:
    full = resolve_file(request.path_params["path"])
    if full is None:
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(full)


app = Starlette(routes=[Route("/files/{path:path}", get_file)])
