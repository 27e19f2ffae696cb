"""`upload()`: a local file to the server, resumable and verified.

Owns the entry point: hash the file once (whole and per chunk), open the
connection pool, and hand the upload to the flow asked for: a resumable
`/uploads` session (`uploadjob.UploadJob`, which falls back to one streamed
`PUT` where the server has no `/uploads`), tus (`tus.upload_tus`) or the
IETF resumable uploads (`ietf.upload_ietf`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from pathlib import Path

from .connection import Timeouts
from .pool import ConnectionPool
from .retry import RetryPolicy
from .ietf import upload_ietf
from .tus import upload_tus
from .uploadjob import DEFAULT_CHUNK_SIZE_BYTES, ProgressCallback, UploadJob, UploadResult
from .uploadplan import resolve_upload_target

__all__ = ["DEFAULT_CHUNK_SIZE_BYTES", "UploadResult", "hash_file", "upload"]

HASH_READ_BYTES = 8 * 1024 * 1024


async def upload(path: str | os.PathLike[str], url: str, *, parallel: int = 4,
                 chunk_size: int = DEFAULT_CHUNK_SIZE_BYTES, tus: bool = False, ietf: bool = False, token: str | None = None,
                 progress: ProgressCallback | None = None, timeouts: Timeouts | None = None,
                 retry: RetryPolicy | None = None, ssl_context: ssl.SSLContext | None = None) -> UploadResult:
    """Upload the local file `path` to `url` (`http://host:port/files/dir/name`,
    or `…/files/dir/` to keep the local name). Resumes what an earlier,
    interrupted run of the same file to the same place left on the server."""
    if parallel < 1 or chunk_size < 1:
        raise ValueError("parallel and chunk_size must be positive")
    source = Path(path)
    target = resolve_upload_target(url, source.name)
    size = source.stat().st_size
    sha256, chunk_digests = await asyncio.to_thread(hash_file, source, chunk_size)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with ConnectionPool(max_connections=parallel + 1, timeouts=timeouts, ssl_context=ssl_context,
                              headers=headers) as pool:
        job = UploadJob(pool, source, target, size, sha256, progress=progress, policy=retry or RetryPolicy())
        job.chunk_digests = {chunk_size: chunk_digests}
        if tus:
            return await upload_tus(job, chunk_size)
        if ietf:
            return await upload_ietf(job, chunk_size)
        return await job.run(parallel, chunk_size)


def hash_file(path: Path, chunk_size: int) -> tuple[str, list[bytes]]:
    """The file's sha256 (hex) and each `chunk_size` chunk's sha-256, in one
    read: the chunk PUTs then need no second pass over the file."""
    whole, chunks = hashlib.sha256(), []
    with open(path, "rb") as f:
        while True:
            chunk_hash, left = hashlib.sha256(), chunk_size
            while left and (piece := f.read(min(HASH_READ_BYTES, left))):
                whole.update(piece)
                chunk_hash.update(piece)
                left -= len(piece)
            if left == chunk_size and chunks:
                break
            chunks.append(chunk_hash.digest())
            if left:
                break
    return whole.hexdigest(), chunks
