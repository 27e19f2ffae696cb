"""`--tus`: the upload as a tus 1.0.0 client (core + creation + checksum).

Owns: creating the upload (`POST /tus/` with `Upload-Length` and
`Upload-Metadata` path/filename), remembering its URL by fingerprint in a
small JSON file under the user's cache directory (as tus clients keep a URL
store), resuming with `HEAD` → `Upload-Offset`, and `PATCH`ing the rest
chunk by chunk with `Upload-Checksum`. One stream: tus offsets are serial
(parallel tus needs the concatenation extension; not used here).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from .errors import HTTPStatusError, RemoteProtocolError
from .models import parse_url
from .uploadjob import UploadJob, UploadResult, read_chunk
from .uploadplan import fingerprint_tus_upload, format_upload_checksum, format_upload_metadata

TUS_VERSION = "1.0.0"
TUS_HEADERS = {"tus-resumable": TUS_VERSION}
# A resumed upload may fall back (409 offset mismatch, lost PATCH) this many
# times in a row before we give up.
MAX_OFFSET_RESYNCS = 8
T = TypeVar("T")


def tus_store_path() -> Path:
    """`$XDG_CACHE_HOME/asgi-xfer/tus-uploads.json` (default ~/.cache)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "asgi-xfer" / "tus-uploads.json"


def read_url_store(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_url_store(path: Path, store: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(store))
    os.replace(tmp, path)


class RememberedUpload:
    """The upload URL kept for one (file, endpoint, target) fingerprint."""

    def __init__(self, job: UploadJob, endpoint: str) -> None:
        self.path = tus_store_path()
        self.key = fingerprint_tus_upload(str(job.source.resolve()), job.size, job.sha256, endpoint,
                                          job.target.remote_path)

    def url(self) -> str | None:
        return read_url_store(self.path).get(self.key)

    def remember(self, url: str) -> None:
        write_url_store(self.path, {**read_url_store(self.path), self.key: url})

    async def resume_or_create(self, probe: Callable[[str], Awaitable[T | None]],
                               create: Callable[[], Awaitable[str]]) -> tuple[str, T | None]:
        """The remembered upload and what `probe` learns of it, or, when
        there is none or it is gone (None), a new one remembered at once."""
        location = self.url()
        state = await probe(location) if location else None
        if location is None or state is None:
            location = await create()
            self.remember(location)
        return location, state

    def forget(self) -> None:
        store = read_url_store(self.path)
        store.pop(self.key, None)
        write_url_store(self.path, store)


async def upload_tus(job: UploadJob, chunk_size: int) -> UploadResult:
    endpoint = f"{job.target.base_url}/tus/"
    remembered = RememberedUpload(job, endpoint)
    location, known = await remembered.resume_or_create(lambda url: _head_offset(job, url), lambda: _create(job, endpoint))
    offset = known or 0
    resumed = offset
    job.report(offset)
    resyncs = 0
    while offset < job.size:
        try:
            offset = await _patch(job, location, offset, min(chunk_size, job.size - offset))
            resyncs = 0
        except (HTTPStatusError, RemoteProtocolError) as exc:
            if isinstance(exc, HTTPStatusError) and exc.status != 409 or resyncs >= MAX_OFFSET_RESYNCS:
                raise
            resyncs += 1  # 409: our offset is stale; ask the server for its own
            fresh = await _head_offset(job, location)
            if fresh is None:
                raise
            job.sent = 0
            job.report(fresh)
            offset = fresh
    remembered.forget()
    return UploadResult(path=job.target.remote_path, size=job.size, sha256=job.sha256, etag=None,
                        method="tus", resumed_bytes=resumed)


async def _create(job: UploadJob, endpoint: str) -> str:
    metadata = format_upload_metadata({"filename": job.source.name, "path": job.target.remote_path})
    headers = {**TUS_HEADERS, "upload-length": str(job.size), "upload-metadata": metadata}
    return await create_upload_resource(job, endpoint, headers)


async def create_upload_resource(job: UploadJob, url: str, headers: dict[str, str]) -> str:
    """An empty POST that answers 201 with the new upload's `Location`
    (tus creation; IETF careful upload creation), with retries."""

    async def attempt() -> str:
        response, body = await job.pool.request("POST", url, headers=headers, body=b"")
        if response.status != 201 or "location" not in response.headers:
            raise HTTPStatusError.from_body(response.status, body, response.headers)
        return str(parse_url(url).join(response.headers["location"]))

    return await job.retrying(attempt)  # type: ignore[return-value]


async def _head_offset(job: UploadJob, location: str) -> int | None:
    """The server's Upload-Offset, or None when the upload is gone (404/410)."""

    async def attempt() -> int | None:
        response, body = await job.pool.request("HEAD", location, headers=TUS_HEADERS)
        if response.status in (403, 404, 410):
            return None
        offset = response.headers.get("upload-offset", "")
        if response.status not in (200, 204) or not offset.isdigit():
            raise HTTPStatusError.from_body(response.status, body, response.headers)
        return int(offset)

    return await job.retrying(attempt)  # type: ignore[return-value]


async def _patch(job: UploadJob, location: str, offset: int, length: int) -> int:
    data, _ = await asyncio.to_thread(read_chunk, job.source, offset, length)
    headers = {**TUS_HEADERS, "content-type": "application/offset+octet-stream",
               "upload-offset": str(offset), "upload-checksum": format_upload_checksum(data)}

    async def attempt() -> int:
        response, body = await job.pool.request("PATCH", location, headers=headers, body=data)
        new_offset = response.headers.get("upload-offset", "")
        if response.status != 204 or not new_offset.isdigit():
            raise HTTPStatusError.from_body(response.status, body, response.headers)
        return int(new_offset)

    new_offset = await job.retrying(attempt)
    job.report(int(new_offset) - offset)  # type: ignore[call-overload]
    return int(new_offset)  # type: ignore[call-overload]
