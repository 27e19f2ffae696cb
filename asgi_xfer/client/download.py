"""`download()`: a resumable, segmented, verified GET into a local file.

Owns the I/O of a download: the probe request, one task per segment writing
with os.pwrite into `FILE.part`, the control file `FILE.part.json` saved
atomically every CONTROL_SAVE_INTERVAL_S (data is always written before the
control file claims it, so a SIGKILL loses at most that much work), the
final length/digest check and the rename into place. Every decision about
whether bytes may be kept lives in `resume`; retries in `retry`.

Never splices two versions: every ranged request carries If-Range with the
pinned validator, every 206 is checked against it (`check_partial_response`),
and any sign of a new version throws the partial away and starts over.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import random
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from .connection import Response, Timeouts
from .errors import HTTPStatusError, IntegrityError, RemoteProtocolError, RepresentationChanged
from .models import URL, Headers, parse_url
from .pool import ConnectionPool
from .resume import (
    ContentRange,
    DownloadState,
    Segment,
    check_partial_response,
    check_resumable,
    format_state,
    parse_content_range,
    parse_state,
    plan_segments,
    select_digests,
    select_validator,
)
from .retry import RetryPolicy, run_with_retries

log = logging.getLogger("asgi_xfer.client")

# How often progress is written to the control file: at most this much work
# is redone after a kill. Each save is one small write + rename.
CONTROL_SAVE_INTERVAL_S = 0.5
# A file that changes this many times during one download is not worth chasing.
MAX_RESTARTS = 3
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HASH_READ_BYTES = 8 * 1024 * 1024
# An error response body is read up to this much for its message.
MAX_ERROR_BODY_BYTES = 64 * 1024
HASHLIB_NAMES = {"sha-256": "sha256", "sha-512": "sha512"}

ProgressCallback = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    verified: tuple[str, ...]  # digest algorithms checked, e.g. ("sha-256",)
    resumed_bytes: int  # bytes kept from an earlier run
    restarts: int  # times the file changed on the server and we began again


def part_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def control_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".part.json")


async def download(url: str, path: str | os.PathLike[str], *, segments: int = 1, sha256: str | None = None,
                   token: str | None = None, progress: ProgressCallback | None = None,
                   timeouts: Timeouts | None = None, retry: RetryPolicy | None = None,
                   ssl_context: ssl.SSLContext | None = None) -> DownloadResult:
    """Download `url` to `path`, resuming a partial left by an earlier run.

    `segments` > 1 fetches that many ranges in parallel when the server
    supports ranges and gives a strong validator. `sha256` (hex) and any
    `Repr-Digest` the server sends are verified before the file appears at
    `path`; on mismatch nothing is left behind and IntegrityError is raised.
    `progress(done_bytes, total_bytes_or_None)` is called as bytes arrive.
    """
    if segments < 1:
        raise ValueError("segments must be at least 1")
    if sha256 is not None and (len(sha256) != 64 or not all(c in "0123456789abcdefABCDEF" for c in sha256)):
        raise ValueError("sha256 must be 64 hex digits")
    async with ConnectionPool(max_connections=segments + 1, timeouts=timeouts, ssl_context=ssl_context) as pool:
        job = _DownloadJob(pool, parse_url(url), Path(path), segments=segments, sha256=sha256,
                           token=token, progress=progress, policy=retry or RetryPolicy())
        return await job.run()


class _DownloadJob:
    def __init__(self, pool: ConnectionPool, url: URL, target: Path, *, segments: int, sha256: str | None,
                 token: str | None, progress: ProgressCallback | None, policy: RetryPolicy) -> None:
        self.pool, self.url, self.source, self.target = pool, url, url, target
        self.part, self.control = part_path_for(target), control_path_for(target)
        self.segments, self.sha256, self.token = segments, sha256, token
        self.progress, self.policy = progress, policy
        self.rng = random.Random()
        self.state: DownloadState | None = None
        self.fd = -1
        self.resumed_bytes = self.restarts = 0
        self._slots = asyncio.Semaphore(segments)

    async def run(self) -> DownloadResult:
        try:
            for restart in range(MAX_RESTARTS + 1):
                try:
                    return await run_with_retries(self._attempt, self.policy, self.rng, made_progress=self._progressed())
                except RepresentationChanged as exc:
                    log.warning("the file changed on the server (%s): starting over", exc)
                    self._discard()
                    if restart == MAX_RESTARTS:
                        raise
                    self.restarts += 1
            raise AssertionError("unreachable")
        finally:
            self._save()
            self._close()

    def _progressed(self) -> Callable[[], bool]:
        last = [-1]

        def check() -> bool:
            done = self.state.done_bytes if self.state else 0
            moved, last[0] = done > last[0] >= 0, done
            return moved
        return check

    async def _attempt(self) -> DownloadResult:
        if self.state is None:
            self.state = self._load()
        if self.state is None:
            await self._start_fresh()
        else:
            if self.state.complete:
                await self._revalidate()
            await self._fetch_all(None)
        return await self._finish()

    # -- the control file and the partial -----------------------------------

    def _load(self) -> DownloadState | None:
        """The stored state if it may be resumed; else both files are removed."""
        try:
            state = parse_state(self.control.read_bytes())
        except FileNotFoundError:
            self._discard()
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring control file %s: %s", self.control, exc)
            self._discard()
            return None
        try:
            part_size: int | None = self.part.stat().st_size
        except FileNotFoundError:
            part_size = None
        reason = check_resumable(state, str(self.url), part_size)
        if reason is not None:
            log.warning("not resuming %s: %s", self.part, reason)
            self._discard()
            return None
        self.fd = os.open(self.part, os.O_RDWR)
        self.resumed_bytes = state.done_bytes
        log.info("resuming %s at %d bytes", self.target, state.done_bytes)
        self._report(0, state)
        return state

    def _save(self) -> None:
        """Atomic replace: a reader (or a rerun after SIGKILL) sees the old or
        the new control file, never half of one."""
        if self.state is None or self.fd < 0:
            return
        tmp = self.control.with_name(self.control.name + ".tmp")
        tmp.write_bytes(format_state(self.state))
        os.replace(tmp, self.control)

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _discard(self) -> None:
        self._close()
        self.state = None
        for path in (self.part, self.control):
            path.unlink(missing_ok=True)

    async def _autosave(self) -> None:
        while True:
            await asyncio.sleep(CONTROL_SAVE_INTERVAL_S)
            self._save()

    # -- requests -------------------------------------------------------------

    def _headers(self, url: URL, extra: dict[str, str]) -> dict[str, str]:
        # RFC 9530 §4: ask for the representation's digest; servers that know
        # it (asgi-xfer does for files uploaded through it) answer Repr-Digest.
        headers = {"want-repr-digest": "sha-256=10", **extra}
        # The token goes only to the origin it was given for, not to where a
        # redirect points.
        if self.token and url.origin == self.url.origin:
            headers["authorization"] = f"Bearer {self.token}"
        return headers

    @contextlib.asynccontextmanager
    async def _probe(self) -> AsyncIterator[Response]:
        """The first GET, `Range: bytes=0-`: a 206 proves range support and
        gives the size; a 200 means a plain single stream. Follows redirects."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            async with self.pool.stream("GET", url, headers=self._headers(url, {"range": "bytes=0-"})) as response:
                if response.status in REDIRECT_STATUSES and "location" in response.headers:
                    url = url.join(response.headers["location"])
                    continue
                self.source = url
                yield response
                return
        raise HTTPStatusError(310, f"more than {MAX_REDIRECTS} redirects", code="too_many_redirects")

    async def _revalidate(self) -> None:
        """A partial that was complete when the last run died: is it still
        the current version? One byte with If-Range answers (206: yes)."""
        assert self.state is not None
        if not self.state.size:
            return
        probe = Segment(0, 1)
        extra = {"range": probe.format_range(), "if-range": self.state.if_range or ""}
        async with self.pool.stream("GET", self.source, headers=self._headers(self.source, extra)) as response:
            await self._check_response(probe, response, in_place=True)

    async def _start_fresh(self) -> None:
        self._discard()
        async with self._probe() as response:
            self.state = await self._plan(response)
            self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            self._save()
            self._report(0, self.state)
            await self._fetch_all(response)

    async def _plan(self, response: Response) -> DownloadState:
        headers = response.headers
        if response.status == 206:
            content_range = _content_range(headers)
            if content_range.first != 0:
                raise RemoteProtocolError(f"asked for bytes=0-, got {headers['content-range']!r}")
            size, ranges = content_range.size, True
        elif response.status == 200:
            size, ranges = _content_length(headers), False
        elif response.status == 416 and headers.get("content-range", "").replace(" ", "") == "bytes*/0":
            size, ranges = 0, True  # an empty file has no byte 0 to send
        else:
            raise await _status_error(response)
        validator = select_validator(headers)
        pinned = validator.etag is not None or validator.last_modified is not None
        count = self.segments if ranges and pinned and size is not None else 1
        return DownloadState(url=str(self.url), size=size, etag=validator.etag,
                             last_modified=validator.last_modified, ranges=ranges,
                             digests=select_digests(headers), segments=plan_segments(size, count))

    async def _fetch_all(self, first: Response | None) -> None:
        assert self.state is not None
        pending = [s for s in self.state.segments if not s.complete]
        tasks = [asyncio.create_task(self._run_segment(s, first if i == 0 else None)) for i, s in enumerate(pending)]
        saver = asyncio.create_task(self._autosave())
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            saver.cancel()
            await asyncio.gather(saver, return_exceptions=True)
            self._save()

    async def _run_segment(self, segment: Segment, first: Response | None) -> None:
        async def attempt() -> None:
            nonlocal first
            if first is not None:
                response, first = first, None
                await self._stream_segment(segment, response)
                return
            in_place = self._can_resume_in_place()
            if not in_place:
                segment.done = 0  # no pin: only a whole new body is safe
            extra = {"range": segment.format_range(), "if-range": self.state.if_range} if in_place else {}
            async with self._slots, self.pool.stream("GET", self.source, headers=self._headers(self.source, extra)) as response:
                await self._check_response(segment, response, in_place)
                await self._stream_segment(segment, response)

        last = [segment.done]

        def progressed() -> bool:
            moved, last[0] = segment.done > last[0], segment.done
            return moved
        await run_with_retries(attempt, self.policy, self.rng, made_progress=progressed)

    def _can_resume_in_place(self) -> bool:
        assert self.state is not None
        return self.state.ranges and self.state.if_range is not None

    async def _check_response(self, segment: Segment, response: Response, in_place: bool) -> None:
        """Raise unless `response` carries exactly the pinned bytes asked for."""
        state = self.state
        assert state is not None
        if response.status == 206 and in_place:
            reason = check_partial_response(state, segment, response.headers)
            if reason is not None:
                raise RepresentationChanged(reason)
            if segment.end is None:
                state.size = _content_range(response.headers).size
                segment.end = state.size
        elif response.status == 200 and not in_place:
            if _content_length(response.headers) != state.size and state.size is not None:
                raise RepresentationChanged("the size changed")
            validator = select_validator(response.headers)
            if (validator.etag, validator.last_modified) != (state.etag, state.last_modified):
                raise RepresentationChanged("the validator changed")
        elif response.status in (200, 416) and in_place:
            # If-Range did not match (RFC 9110 §13.1.5): a new version.
            raise RepresentationChanged(f"the server answered {response.status} to If-Range")
        else:
            raise await _status_error(response)

    async def _stream_segment(self, segment: Segment, response: Response) -> None:
        async for chunk in response.aiter_bytes():
            if segment.end is not None and len(chunk) > segment.end - segment.position:
                # Only the open-ended probe runs past its segment: keep what
                # is ours and drop the connection.
                chunk = memoryview(chunk)[: segment.end - segment.position]
                self._write(segment, chunk)
                return
            self._write(segment, chunk)
        if segment.end is None:
            segment.end = segment.position  # a body of unknown length ended cleanly
            assert self.state is not None
            self.state.size = segment.end
        elif not segment.complete:
            raise RemoteProtocolError(f"response ended at byte {segment.position}, expected {segment.end}")

    def _write(self, segment: Segment, data: bytes | bytearray | memoryview) -> None:
        view, offset = memoryview(data), segment.position
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written
        segment.done += len(data)
        self._report(len(data), self.state)

    def _report(self, _added: int, state: DownloadState | None) -> None:
        if self.progress is not None and state is not None:
            self.progress(state.done_bytes, state.size)

    # -- the end ----------------------------------------------------------------

    async def _finish(self) -> DownloadResult:
        state = self.state
        assert state is not None and state.size is not None
        actual_size = os.fstat(self.fd).st_size
        if actual_size != state.size:
            self._discard()
            raise IntegrityError(f"{self.part}: {actual_size} bytes, expected {state.size}")
        expected = {name: base64.b64decode(value) for name, value in state.digests.items() if name in HASHLIB_NAMES}
        if self.sha256 is not None:
            expected["sha-256"] = bytes.fromhex(self.sha256)
            if state.digests.get("sha-256") not in (None, base64.b64encode(expected["sha-256"]).decode()):
                self._discard()
                raise IntegrityError("--sha256 disagrees with the server's Repr-Digest")
        if expected:
            actual = await asyncio.to_thread(_hash_file, self.fd, tuple(expected))
            for name, digest in expected.items():
                if actual[name] != digest:
                    self._discard()
                    raise IntegrityError(f"{name} mismatch: got {actual[name].hex()}, expected {digest.hex()}")
        self._close()
        os.replace(self.part, self.target)
        self.control.unlink(missing_ok=True)
        self.state = None
        return DownloadResult(self.target, actual_size, tuple(expected), self.resumed_bytes, self.restarts)


def _hash_file(fd: int, algorithms: tuple[str, ...]) -> dict[str, bytes]:
    """Hash the whole partial; hashlib releases the GIL, so this runs in a thread."""
    hashers = {name: hashlib.new(HASHLIB_NAMES[name]) for name in algorithms}
    offset = 0
    while chunk := os.pread(fd, HASH_READ_BYTES, offset):
        for hasher in hashers.values():
            hasher.update(chunk)
        offset += len(chunk)
    return {name: hasher.digest() for name, hasher in hashers.items()}


def _content_range(headers: Headers) -> ContentRange:
    try:
        return parse_content_range(headers.get("content-range", ""))
    except ValueError as exc:
        raise RemoteProtocolError(str(exc)) from None


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


async def _status_error(response: Response) -> HTTPStatusError:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk[: MAX_ERROR_BODY_BYTES - len(body)]
        if len(body) >= MAX_ERROR_BODY_BYTES:
            break
    return HTTPStatusError.from_body(response.status, bytes(body), response.headers)
