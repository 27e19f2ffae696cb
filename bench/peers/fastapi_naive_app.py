"""Peer: the naive FastAPI pattern, ``$BENCH_ROOT`` served at ``/files/{path}``.

A ``StreamingResponse`` over an async generator that reads the file with
aiofiles in 8 KiB chunks: the pattern most tutorials show. Deliberately no
Content-Length (so the body goes out chunked) and no sendfile, exactly as the
pattern is usually written; it must not be "fixed" here.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiofiles
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse

ROOT = os.path.realpath(os.environ["BENCH_ROOT"])
CHUNK_SIZE_BYTES = 8 * 1024

app = FastAPI()


async def read_chunks(full: str) -> AsyncIterator[bytes]:
    async with aiofiles.open(full, "rb") as f:
        while chunk := await f.read(CHUNK_SIZE_BYTES):
            yield chunk


@app.get("/files/{path:path}")
async def get_file(path: str) -> StreamingResponse:
    full = os.path.realpath(os.path.join(ROOT, path))
    if not full.startswith(ROOT + os.sep) or not os.path.isfile(full):
        raise HTTPException(status_code=404)
    return StreamingResponse(read_chunks(full), media_type="application/octet-stream")
