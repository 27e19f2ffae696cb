"""Download decisions: segments, the control file, and when bytes may be kept.

Owns the rules that keep a resumed download from splicing two versions of a
file: which validator pins the representation (RFC 9110 §13.1.5: a strong
ETag, else a Last-Modified that is itself strong), whether a stored partial
may be resumed, and whether a 206 belongs to the pinned representation.
Also the segment plan and the control file's JSON. Pure: values in, values
(or ValueError) out; `download` does the I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime

from ..protocol.digests import parse_content_digest
from ..protocol.errors import XferError

CONTROL_VERSION = 1
# Segments smaller than this are not worth a connection of their own.
MIN_SEGMENT_BYTES = 1024 * 1024
# A control file larger than this is not ours (8 KiB per segment is plenty).
MAX_CONTROL_BYTES = 1024 * 1024


@dataclass
class Segment:
    """Bytes [start, end) of the file; [start, start + done) are on disk.
    `end` is None only for a single stream of unknown length."""

    start: int
    end: int | None
    done: int = 0

    @property
    def position(self) -> int:
        return self.start + self.done

    @property
    def complete(self) -> bool:
        return self.end is not None and self.position >= self.end

    def format_range(self) -> str:
        """The Range field asking for what is still missing (RFC 9110 §14.1.2)."""
        last = "" if self.end is None else str(self.end - 1)
        return f"bytes={self.position}-{last}"


@dataclass
class DownloadState:
    """What the control file beside the partial records."""

    url: str
    size: int | None
    etag: str | None
    last_modified: str | None
    ranges: bool  # the server answered a Range request with 206
    digests: dict[str, str] = field(default_factory=dict)  # Repr-Digest: algorithm -> base64
    segments: list[Segment] = field(default_factory=list)

    @property
    def if_range(self) -> str | None:
        """The If-Range value pinning this representation, if it has one."""
        return self.etag or self.last_modified

    @property
    def done_bytes(self) -> int:
        return sum(s.done for s in self.segments)

    @property
    def complete(self) -> bool:
        if self.size is None:
            return False
        return all(s.complete for s in self.segments)


@dataclass(frozen=True)
class Validator:
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class ContentRange:
    first: int | None  # None for "bytes */SIZE" (an unsatisfied range)
    last: int | None
    size: int | None  # None for "bytes 0-9/*"


def select_validator(headers: Mapping[str, str]) -> Validator:
    """RFC 9110 §13.1.5: If-Range must not carry a weak ETag, and a date only
    when there is no ETag and the date is strong: per §8.8.2.2, the response's
    Date is at least one second after Last-Modified."""
    etag = headers.get("etag", "").strip()
    if etag.startswith('"') and etag.endswith('"') and len(etag) >= 2:
        return Validator(etag, None)
    if etag:
        return Validator(None, None)  # weak (W/"...") or malformed: no pin at all
    modified = headers.get("last-modified", "").strip()
    try:
        strong = parsedate_to_datetime(headers["date"]).timestamp() - parsedate_to_datetime(modified).timestamp() >= 1
    except (KeyError, TypeError, ValueError, IndexError):
        strong = False
    return Validator(None, modified if strong else None)


def select_digests(headers: Mapping[str, str]) -> dict[str, str]:
    """RFC 9530 `Repr-Digest` → {algorithm: base64}; a malformed field is
    ignored (§2 lets a recipient ignore digests it cannot use)."""
    try:
        found = parse_content_digest(headers.get("repr-digest", ""))
    except XferError:
        return {}
    return {name: base64.b64encode(digest).decode() for name, digest in found.items()}


def parse_content_range(value: str) -> ContentRange:
    """`bytes FIRST-LAST/SIZE`, `bytes */SIZE` or `bytes FIRST-LAST/*` (RFC 9110 §14.4)."""
    unit, _, rest = value.strip().partition(" ")
    span, _, size_text = rest.strip().partition("/")
    if unit.lower() != "bytes" or not size_text:
        raise ValueError(f"unsupported Content-Range {value!r}")
    size = None if size_text == "*" else _parse_digits(size_text)
    if span == "*":
        return ContentRange(None, None, size)
    first_text, dash, last_text = span.partition("-")
    first, last = _parse_digits(first_text), _parse_digits(last_text)
    if not dash or last < first or (size is not None and last >= size):
        raise ValueError(f"invalid Content-Range {value!r}")
    return ContentRange(first, last, size)


def _parse_digits(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"not a byte position: {text!r}")
    return int(text)


def plan_segments(size: int | None, count: int, min_segment_bytes: int = MIN_SEGMENT_BYTES) -> list[Segment]:
    """`count` near-equal segments covering [0, size), fewer for small files;
    one open-ended segment when the size is unknown."""
    if size is None:
        return [Segment(0, None)]
    count = max(1, min(count, size // max(1, min_segment_bytes)))
    bounds = [size * i // count for i in range(count + 1)]
    return [Segment(bounds[i], bounds[i + 1]) for i in range(count)]


def check_resumable(state: DownloadState, url: str, part_size: int | None) -> str | None:
    """Why the stored partial must be thrown away, or None if it may be
    resumed. `part_size` is the partial file's size (None: it is missing)."""
    if state.url != url:
        return "the control file is for another URL"
    if part_size is None:
        return "the partial file is missing"
    if not state.ranges:
        return "the server does not answer range requests"
    if state.if_range is None:
        return "the server gave no strong validator to resume against"
    if not _segments_valid(state):
        return "the control file's segments are inconsistent"
    if part_size < max((s.position for s in state.segments if s.done), default=0):
        return "the partial file is shorter than the control file says"
    return None


def _segments_valid(state: DownloadState) -> bool:
    segments = state.segments
    if not segments or segments[0].start != 0:
        return False
    if state.size is None:
        return len(segments) == 1 and segments[0].end is None and segments[0].done >= 0
    for i, s in enumerate(segments):
        following = segments[i + 1].start if i + 1 < len(segments) else state.size
        if s.end != following or s.end <= s.start or not 0 <= s.done <= s.end - s.start:
            return False
    return True


def check_partial_response(state: DownloadState, segment: Segment, headers: Mapping[str, str]) -> str | None:
    """Why a 206 for `segment` is not the pinned representation's bytes (or
    not the bytes asked for), or None when it may be written."""
    try:
        content_range = parse_content_range(headers.get("content-range", ""))
    except ValueError as exc:
        return str(exc)
    if content_range.first != segment.position:
        return f"asked for byte {segment.position}, got {content_range.first}"
    if state.size is not None and content_range.size != state.size:
        return f"size changed from {state.size} to {content_range.size}"
    if segment.end is not None and content_range.last != segment.end - 1:
        return f"asked for bytes up to {segment.end - 1}, got {content_range.last}"
    # A server that ignores If-Range but honours Range would answer 206 with
    # the new version's validator: compare it, never trust the status alone.
    etag = headers.get("etag")
    if state.etag is not None and etag is not None and etag != state.etag:
        return f"ETag changed from {state.etag} to {etag}"
    digests = select_digests(headers)
    if any(state.digests.get(name, value) != value for name, value in digests.items()):
        return "Repr-Digest changed"
    modified = headers.get("last-modified")
    if state.etag is None and state.last_modified is not None and modified is not None and modified != state.last_modified:
        return "Last-Modified changed"
    return None


def format_state(state: DownloadState) -> bytes:
    payload = {"version": CONTROL_VERSION, **asdict(state)}
    payload["segments"] = [[s.start, s.end, s.done] for s in state.segments]
    return json.dumps(payload, separators=(",", ":")).encode()


def parse_state(data: bytes) -> DownloadState:
    """The control file back; ValueError for anything not written by `format_state`."""
    if len(data) > MAX_CONTROL_BYTES:
        raise ValueError("control file too large")
    try:
        raw = json.loads(data)
        if raw.get("version") != CONTROL_VERSION:
            raise ValueError("unknown control file version")
        segments = [Segment(int(start), None if end is None else int(end), int(done)) for start, end, done in raw["segments"]]
        return DownloadState(
            url=str(raw["url"]), size=None if raw["size"] is None else int(raw["size"]),
            etag=_optional_str(raw["etag"]), last_modified=_optional_str(raw["last_modified"]),
            ranges=bool(raw["ranges"]), digests={str(k): str(v) for k, v in dict(raw["digests"]).items()},
            segments=segments,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed control file: {exc}") from None


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
