"""`--ietf`: the upload as an IETF Resumable Uploads client
(draft-ietf-httpbis-resumable-upload-12, interop version 8).

Owns: a "careful upload creation" (§ Upload Strategies: an empty `POST
/resumable/` with `Upload-Complete: ?0`, `Upload-Length` and `Repr-Digest`,
so the upload's URL is known before any byte is sent: our h11 client reads
no interim response mid-body), remembering that URL by fingerprint in the
same store as the tus client, resuming with `HEAD` → `Upload-Offset` /
`Upload-Complete`, and appending the rest with `PATCH` and
`application/partial-upload`, each append with `Content-Digest`, the last
with `Upload-Complete: ?1`. A 409 carries the server's offset: we continue
from there.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from urllib.parse import quote

from ..protocol.resumable import INTEROP_VERSION, PARTIAL_UPLOAD_TYPE, parse_sf_boolean, parse_sf_integer
from .errors import HTTPStatusError, IntegrityError, RemoteProtocolError
from .tus import RememberedUpload, create_upload_resource
from .uploadjob import UploadJob, UploadResult, read_chunk

DRAFT_HEADERS = {"upload-draft-interop-version": str(INTEROP_VERSION)}
# Appends answered 409 (our offset was stale) in a row before we give up.
MAX_OFFSET_RESYNCS = 8


@dataclass(frozen=True)
class _State:
    offset: int
    complete: bool


async def upload_ietf(job: UploadJob, chunk_size: int) -> UploadResult:
    endpoint = f"{job.target.base_url}/resumable/"
    remembered = RememberedUpload(job, endpoint)
    location, known = await remembered.resume_or_create(lambda url: _retrieve(job, url), lambda: _create(job, endpoint))
    state = known or _State(0, False)
    resumed = state.offset
    job.report(state.offset)
    payload = {} if state.complete else await _append_rest(job, location, state.offset, chunk_size)
    remembered.forget()
    sha256 = str(payload.get("sha256") or job.sha256)
    if sha256 != job.sha256:
        raise IntegrityError(f"the server stored sha256 {sha256}, expected {job.sha256}")
    return UploadResult(path=str(payload.get("path") or job.target.remote_path), size=job.size, sha256=sha256,
                        etag=str(payload["etag"]) if payload.get("etag") else None, method="ietf",
                        resumed_bytes=resumed)


async def _append_rest(job: UploadJob, location: str, offset: int, chunk_size: int) -> dict[str, object]:
    resyncs = 0
    while True:
        length = min(chunk_size, job.size - offset)
        outcome = await _append(job, location, offset, length, offset + length == job.size)
        if isinstance(outcome, dict):
            return outcome
        new_offset, stale = outcome
        resyncs = resyncs + 1 if stale else 0
        if resyncs > MAX_OFFSET_RESYNCS:
            raise RemoteProtocolError(f"the server kept moving the offset of {location}")
        job.report(new_offset - offset)
        offset = new_offset


async def _create(job: UploadJob, endpoint: str) -> str:
    digest = base64.b64encode(bytes.fromhex(job.sha256)).decode()
    headers = {**DRAFT_HEADERS, "upload-complete": "?0", "upload-length": str(job.size),
               "repr-digest": f"sha-256=:{digest}:"}

    return await create_upload_resource(job, f"{endpoint}?path={quote(job.target.remote_path, safe='/')}", headers)


async def _retrieve(job: UploadJob, location: str) -> _State | None:
    """§4.3: the upload's offset and completeness; None when it is gone."""

    async def attempt() -> _State | None:
        response, body = await job.pool.request("HEAD", location, headers=DRAFT_HEADERS)
        if response.status in (403, 404, 410):
            return None
        offset = parse_sf_integer(response.headers.get("upload-offset"))
        complete = parse_sf_boolean(response.headers.get("upload-complete"))
        if response.status not in (200, 204) or offset is None or complete is None:
            raise HTTPStatusError.from_body(response.status, body, response.headers)
        return _State(offset, complete)

    return await job.retrying(attempt)  # type: ignore[return-value]


async def _append(job: UploadJob, location: str, offset: int, length: int,
                  last: bool) -> dict[str, object] | tuple[int, bool]:
    """One PATCH: the stored file's JSON when it completed the upload, else
    (the new offset, whether ours was stale)."""
    data, digest = await asyncio.to_thread(read_chunk, job.source, offset, length)
    headers = {**DRAFT_HEADERS, "content-type": PARTIAL_UPLOAD_TYPE, "upload-offset": str(offset),
               "upload-complete": "?1" if last else "?0",
               "content-digest": f"sha-256=:{base64.b64encode(digest).decode()}:"}

    async def attempt() -> dict[str, object] | tuple[int, bool]:
        response, body = await job.pool.request("PATCH", location, headers=headers, body=data)
        server_offset = parse_sf_integer(response.headers.get("upload-offset"))
        if response.status == 409 and server_offset is not None:
            return server_offset, True  # an earlier attempt got further than we knew
        if response.status in (200, 201) and response.headers.get("upload-complete") == "?1":
            parsed = json.loads(body or b"{}")
            return parsed if isinstance(parsed, dict) else {}
        if response.status == 204 and server_offset is not None:
            return server_offset, False
        raise HTTPStatusError.from_body(response.status, body, response.headers)

    outcome = await job.retrying(attempt)
    if isinstance(outcome, dict):
        job.report(length)
    return outcome  # type: ignore[return-value]
