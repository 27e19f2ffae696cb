"""Peer: zipstream-ng streaming a stored zip of ``$BENCH_ROOT/{path}`` at ``/archive/{path}``.

The way zipstream-ng's README serves a directory: ``ZipStream.from_path(...,
sized=True)`` (so ``Content-Length`` is known up front, like ours) handed to
Starlette's ``StreamingResponse``, which iterates the synchronous generator
in its thread pool. It owns nothing but the route and tunes nothing.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from zipstream import ZipStream

ROOT = os.path.realpath(os.environ["BENCH_ROOT"])


async def get_archive(request: Request) -> Response:
    full = os.path.realpath(os.path.join(ROOT, request.path_params["path"]))
    if not full.startswith(ROOT + os.sep) or not os.path.isdir(full):
        return PlainTextResponse("not found", status_code=404)
    zs = ZipStream.from_path(full, sized=True)
    return StreamingResponse(zs, media_type="application/zip", headers={"content-length": str(len(zs))})


async def ready(request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/ready", ready), Route("/archive/{path:path}", get_archive)])
