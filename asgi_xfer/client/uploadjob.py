"""`UploadJob`: one local file to one place on the server, over a pool.

Owns the I/O of the session flow (SPEC "Resumable chunked uploads"):
`POST /uploads` (the server answers with the open session for the same
path/size/sha256, so a rerun after a kill resumes without local state, or
`complete: true` when it already holds the bytes), PUT the missing chunks in
parallel with `Content-Digest`, each retried with backoff, then `complete`
with the sha256. A server without `/uploads` (404/405) gets one streamed
`PUT /files/{path}` instead. The tus flow (`tus`) uses the same job for its
requests, retries and progress. Decisions live in `uploadplan`; retries in
`retry`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import HTTPStatusError, IntegrityError, RemoteProtocolError
from .pool import ConnectionPool
from .retry import RetryPolicy, run_with_retries
from .uploadplan import Session, UploadTarget, chunk_span, parse_session, plan_missing_chunks

# 8 MiB: big enough that per-request overhead is noise at GB/s, small enough
# that a lost chunk costs little and `parallel` chunks fit in memory.
DEFAULT_CHUNK_SIZE_BYTES = 8 * 1024 * 1024
# Streaming PUT fallback: the body goes out in pieces of this size.
PUT_PIECE_BYTES = 1024 * 1024
# `complete` answering 409 (chunks missing) sends us back this many times at most.
MAX_COMPLETE_ROUNDS = 3

ProgressCallback = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class UploadResult:
    path: str  # where the server stored it, relative to its root
    size: int
    sha256: str
    etag: str | None
    method: str  # "uploads", "put", "tus" or "ietf"
    instant: bool = False  # the server already had these bytes: nothing was sent
    resumed_bytes: int = 0  # bytes the server already had from an earlier run


def read_chunk(path: Path, offset: int, length: int, digest: bytes | None = None) -> tuple[bytes, bytes]:
    """The bytes at [offset, offset+length) and their sha-256, computed unless
    given (in a thread: reading and hashing both release the GIL)."""
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), length, offset)
    if len(data) != length:
        raise IntegrityError(f"{path} shrank while uploading")
    return data, digest or hashlib.sha256(data).digest()


class UploadJob:
    """One file to one place; shared by the session, PUT and tus flows."""

    def __init__(self, pool: ConnectionPool, source: Path, target: UploadTarget, size: int, sha256: str, *,
                 progress: ProgressCallback | None, policy: RetryPolicy) -> None:
        self.pool, self.source, self.target = pool, source, target
        self.size, self.sha256 = size, sha256
        self.progress, self.policy = progress, policy
        self.rng = random.Random()
        self.sent = 0
        self.chunk_digests: dict[int, list[bytes]] = {}  # chunk size -> digests from the first pass

    def report(self, added: int) -> None:
        self.sent += added
        if self.progress is not None:
            self.progress(self.sent, self.size)

    async def retrying(self, attempt: Callable[[], object]) -> object:
        return await run_with_retries(attempt, self.policy, self.rng)  # type: ignore[arg-type]

    async def request_json(self, method: str, path: str, payload: dict[str, object] | None = None,
                           ok: tuple[int, ...] = (200, 201)) -> tuple[int, dict[str, object]]:
        """One small JSON exchange with retries; statuses outside `ok` raise."""
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"content-type": "application/json"} if body is not None else {}

        async def attempt() -> tuple[int, dict[str, object]]:
            response, data = await self.pool.request(method, self.target.base_url + path, headers=headers, body=body)
            if response.status not in ok:
                raise HTTPStatusError.from_body(response.status, data, response.headers)
            try:
                parsed = json.loads(data) if data else {}
            except ValueError:
                raise RemoteProtocolError(f"{method} {path}: the answer is not JSON") from None
            return response.status, parsed if isinstance(parsed, dict) else {}

        return await self.retrying(attempt)  # type: ignore[return-value]

    async def run(self, parallel: int, chunk_size: int) -> UploadResult:
        try:
            _, payload = await self.request_json("POST", "/uploads", {
                "path": self.target.remote_path, "size": self.size, "chunk_size": chunk_size, "sha256": self.sha256})
        except HTTPStatusError as exc:
            if exc.status in (404, 405):  # no /uploads here: a plain PUT
                return await self.put_whole()
            raise
        session = parse_session(payload)
        if session.complete:
            self.report(self.size)
            return self._result(payload, instant=True)
        resumed = min(self.size, len(session.received) * session.chunk_size)
        self.report(resumed)
        for _ in range(MAX_COMPLETE_ROUNDS):
            await self._send_chunks(session, plan_missing_chunks(session), parallel)
            status, payload = await self.request_json("POST", f"/uploads/{session.id}/complete",
                                                      {"sha256": self.sha256}, ok=(200, 201, 409))
            if status != 409:
                return self._result(payload, resumed_bytes=resumed)
            _, payload = await self.request_json("GET", f"/uploads/{session.id}")
            session = parse_session({**payload, "id": session.id})
        raise IntegrityError(f"the server still misses chunks after {MAX_COMPLETE_ROUNDS} rounds")

    async def _send_chunks(self, session: Session, indexes: list[int], parallel: int) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in indexes:
            queue.put_nowait(index)

        async def worker() -> None:
            while not queue.empty():
                await self._send_chunk(session, queue.get_nowait())

        workers = [asyncio.create_task(worker()) for _ in range(min(parallel, len(indexes)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise

    async def _send_chunk(self, session: Session, index: int) -> None:
        offset, length = chunk_span(index, session.chunk_size, self.size)
        known = self.chunk_digests.get(session.chunk_size, [])
        data, digest = await asyncio.to_thread(read_chunk, self.source, offset, length,
                                               known[index] if index < len(known) else None)
        headers = {"content-type": "application/octet-stream",
                   "content-digest": f"sha-256=:{base64.b64encode(digest).decode()}:"}
        url = f"{self.target.base_url}/uploads/{session.id}/chunks/{index}"

        async def attempt() -> None:
            response, body = await self.pool.request("PUT", url, headers=headers, body=data)
            if response.status == 422:
                if hashlib.sha256(data).digest() != digest:
                    raise IntegrityError(f"{self.source} changed while uploading (chunk {index})")
                # The digest fits the bytes we sent: they were damaged on
                # the way, which another attempt may not repeat.
                raise RemoteProtocolError(f"chunk {index} arrived damaged (422)")
            if response.status not in (200, 201, 204):
                raise HTTPStatusError.from_body(response.status, body, response.headers)

        await self.retrying(attempt)
        self.report(length)

    async def put_whole(self) -> UploadResult:
        """`PUT /files/{path}`, streamed, with Content-Digest; the server
        stores it atomically or not at all (SPEC "Simple uploads")."""
        digest = base64.b64encode(bytes.fromhex(self.sha256)).decode()
        headers = {"content-type": "application/octet-stream", "content-length": str(self.size),
                   "content-digest": f"sha-256=:{digest}:"}

        async def attempt() -> UploadResult:
            self.sent = 0
            response, body = await self.pool.request("PUT", self.target.files_url(), headers=headers,
                                                     body=self._stream_file())
            if response.status not in (200, 201):
                raise HTTPStatusError.from_body(response.status, body, response.headers)
            return self._result(json.loads(body or b"{}"), method="put")

        return await self.retrying(attempt)  # type: ignore[return-value]

    async def _stream_file(self) -> AsyncIterator[bytes]:
        with open(self.source, "rb") as f:
            offset = 0
            while offset < self.size:
                piece = os.pread(f.fileno(), min(PUT_PIECE_BYTES, self.size - offset), offset)
                if not piece:
                    raise IntegrityError(f"{self.source} shrank while uploading")
                offset += len(piece)
                self.report(len(piece))
                yield piece

    def _result(self, payload: dict[str, object], *, method: str = "uploads", instant: bool = False,
                resumed_bytes: int = 0) -> UploadResult:
        sha256 = str(payload.get("sha256") or self.sha256)
        if sha256 != self.sha256:
            raise IntegrityError(f"the server stored sha256 {sha256}, expected {self.sha256}")
        etag = payload.get("etag")
        return UploadResult(path=str(payload.get("path") or self.target.remote_path), size=self.size,
                            sha256=sha256, etag=None if etag is None else str(etag), method=method,
                            instant=instant, resumed_bytes=resumed_bytes)
