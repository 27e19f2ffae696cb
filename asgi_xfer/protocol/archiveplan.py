"""Which response a GET or HEAD of `/archive/` gets: a pure decision.

Owns: the archive kinds (`?format=`, `?compress=`), the ETag derived from the
entries, preconditions and Range against it in RFC 9110 order, the exact
`Content-Length` of a stored zip and of a tar, and, for a stored zip, which
CRC-32s a response needs before or while it sends its bytes. Returns an
`ArchivePlan` that the handler executes. Must not: do I/O; the caller passes
the entries it collected (name, size, mtime, mode) and the CRCs it knows.

Where a stored zip's CRC-32 and sizes go -- the rule, and why:

The byte layout of a stored zip (so its `Content-Length`, every offset and
what a resumed `Range` gets) must depend on the entries alone, never on
whether a CRC happened to be cached, or a download resumed with `curl -C -`
after the cache filled would splice two different archives. So the choice is
made from the sizes, the same way every time:

- Archives whose files total at most `CRC_UPFRONT_MAX_BYTES` put each file's
  CRC-32 and sizes in its local header, with no data descriptor. The server
  reads (or finds in the CRC cache) every CRC before the first byte, which
  costs at most that many bytes of reading. Streaming readers that never see
  the central directory -- Java's `java.util.zip.ZipInputStream`, and so many
  JVM and Android tools -- can read these archives; the end-to-end suite
  checks it with a real `ZipInputStream`.
- Bigger archives set flag bit 3 on every non-empty file: the CRC goes in a
  data descriptor after the data, computed while the bytes go out, so the
  first byte leaves at once whatever the size. Every reader of the central
  directory (`zipfile`, unzip, 7-Zip, libarchive, desktop tools) reads
  them; `ZipInputStream` refuses them ("only DEFLATED entries can have EXT
  descriptor", also checked by the suite) because stored data has no end
  marker. `?compress=deflate` is the answer for such readers.

Empty files and directories always carry their (zero) CRC in the header.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .conditional import Outcome, Validators, evaluate_if_range, evaluate_preconditions, format_http_date
from .disposition import format_content_disposition
from .errors import BadRequest, PreconditionFailed, RangeNotSatisfiable
from .ranges import format_content_range, plan_ranges
from .tarwriter import TarEntry, plan_tar_size
from .zipwriter import ZipEntry, ZipLayout, plan_stored_zip

# See the module docstring. 64 MiB is read for CRCs in well under a second
# from page cache or SSD (~0.6 s from a cold 100 MB/s disk) before the first
# byte, and covers the archives people hand to JVM tools (builds, documents).
CRC_UPFRONT_MAX_BYTES = 64 << 20

# Bumped whenever the bytes produced for the same entries change (a layout
# rule, a header field): old ETags must then stop matching.
LAYOUT_VERSION = "1"

KIND_ZIP, KIND_ZIP_DEFLATE, KIND_TAR, KIND_TAR_GZ = "zip", "zip-deflate", "tar", "tar.gz"
BODY_NONE, BODY_STORED_ZIP, BODY_STREAMED = "none", "stored-zip", "streamed"

_MEDIA_TYPES = {
    KIND_ZIP: "application/zip",
    KIND_ZIP_DEFLATE: "application/zip",
    KIND_TAR: "application/x-tar",
    KIND_TAR_GZ: "application/gzip",
}
_EXTENSIONS = {KIND_ZIP: ".zip", KIND_ZIP_DEFLATE: ".zip", KIND_TAR: ".tar", KIND_TAR_GZ: ".tar.gz"}
# Byte-for-byte reproducible from the entries: a strong ETag (RFC 9110
# §8.8.1). Deflate output depends on the zlib build: weak.
_DETERMINISTIC = frozenset({KIND_ZIP, KIND_TAR})


@dataclass(frozen=True, slots=True)
class ArchiveMember:
    """One entry: `name` relative and '/'-separated (no trailing slash)."""

    name: str
    size: int
    mtime_ns: int
    mode: int
    is_dir: bool = False

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9


@dataclass(frozen=True)
class ArchiveRequest:
    method: str
    headers: Mapping[str, str]
    kind: str  # from `parse_archive_kind`
    name: str  # download name without extension


@dataclass(frozen=True)
class ArchivePlan:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str
    kind: str
    span: tuple[int, int] = (0, 0)  # stored zip: archive bytes [start, stop) to send
    layout: ZipLayout | None = None  # stored zip, with placeholder CRCs (see `zip_entries`)
    crc_upfront: bool = False


@dataclass(frozen=True)
class CrcNeeds:
    """For a stored zip span: `ahead` are entries whose CRC appears in the
    span but whose data it does not carry whole, so the CRC must come from
    the cache or a separate read (in upfront mode: before the first byte,
    since headers carry it); `streamed` are entries whose whole data the span
    carries, so their CRC is computed on the way."""

    ahead: frozenset[int]
    streamed: frozenset[int]


def parse_archive_kind(format_value: str | None, compress: str | None) -> str:
    """`?format=zip|tar|tar.gz` (zip by default) and `?compress=deflate`."""
    fmt = (format_value or "zip").lower()
    if fmt not in (KIND_ZIP, KIND_TAR, KIND_TAR_GZ):
        raise BadRequest(f"unsupported archive format {format_value!r}; use zip, tar or tar.gz")
    if compress is None:
        return fmt
    if compress.lower() != "deflate":
        raise BadRequest(f"unsupported compress value {compress!r}; use deflate")
    if fmt != KIND_ZIP:
        raise BadRequest("compress=deflate applies to zip; use format=tar.gz for a compressed tar")
    return KIND_ZIP_DEFLATE


def is_crc_upfront(members: Sequence[ArchiveMember]) -> bool:
    """The placement rule of the module docstring, from the sizes alone."""
    return sum(m.size for m in members) <= CRC_UPFRONT_MAX_BYTES


def zip_entries(members: Sequence[ArchiveMember], crcs: Mapping[int, int] | None = None,
                *, upfront: bool = False) -> list[ZipEntry]:
    """The zip entries for `members`. With `upfront`, every non-empty file
    carries a CRC in its header: `crcs[i]`, or 0 as a placeholder where none
    is given (the layout, hence size and offsets, is the same either way; a
    span that sends a header has its CRC, see `plan_crc_needs`). Without
    `upfront`, CRCs are never given: descriptors, whatever is cached."""
    known = crcs or {}
    entries = []
    for i, m in enumerate(members):
        crc = None
        if upfront and m.size:
            crc = known.get(i, 0)
        entries.append(ZipEntry(m.name, m.size, m.mtime, crc, m.mode & 0o777, m.is_dir))
    return entries


def tar_entries(members: Sequence[ArchiveMember]) -> list[TarEntry]:
    return [TarEntry(m.name, m.size, m.mtime, m.mode & 0o777, m.is_dir) for m in members]


def format_archive_etag(kind: str, members: Sequence[ArchiveMember]) -> str:
    """An ETag from everything the archive's bytes depend on: the kind, the
    layout rules and each entry's name, type, size, mtime (ns) and mode."""
    digest = hashlib.sha256(f"{LAYOUT_VERSION}\0{kind}\0".encode())
    for m in members:
        digest.update(f"{m.name}\0{int(m.is_dir)}\0{m.size}\0{m.mtime_ns}\0{m.mode & 0o777:o}\n".encode("utf-8", "surrogatepass"))
    tag = f'"{kind}-{digest.hexdigest()[:32]}"'
    return tag if kind in _DETERMINISTIC else f"W/{tag}"


def plan_archive(req: ArchiveRequest, members: Sequence[ArchiveMember], now: float) -> ArchivePlan:
    etag = format_archive_etag(req.kind, members)
    # RFC 9110 §8.8.2.1: never a Last-Modified later than the response's Date.
    newest = min(max((m.mtime for m in members), default=now), now)
    fields = [("etag", etag), ("last-modified", format_http_date(newest))]
    outcome = evaluate_preconditions(req.method, req.headers, Validators(etag, int(newest)))
    if outcome is Outcome.NOT_MODIFIED:
        return ArchivePlan(304, tuple(fields), BODY_NONE, req.kind)
    if outcome is Outcome.PRECONDITION_FAILED:
        raise PreconditionFailed("a precondition in the request does not hold")
    fields += [
        ("content-type", _MEDIA_TYPES[req.kind]),
        ("content-disposition", format_content_disposition(req.name + _EXTENSIONS[req.kind])),
    ]
    if req.kind == KIND_ZIP:
        return _plan_stored_zip(req, members, fields, etag)
    fields.append(("accept-ranges", "none"))
    if req.kind == KIND_TAR:
        fields.append(("content-length", str(plan_tar_size(tar_entries(members)))))
    return ArchivePlan(200, tuple(fields), BODY_NONE if req.method == "HEAD" else BODY_STREAMED, req.kind)


def _plan_stored_zip(req: ArchiveRequest, members: Sequence[ArchiveMember],
                     fields: list[tuple[str, str]], etag: str) -> ArchivePlan:
    upfront = is_crc_upfront(members)
    layout = plan_stored_zip(zip_entries(members, upfront=upfront))
    size = layout.size
    fields.append(("accept-ranges", "bytes"))
    body = BODY_NONE if req.method == "HEAD" else BODY_STORED_ZIP
    whole = ArchivePlan(200, (*fields, ("content-length", str(size))), body, req.kind, (0, size), layout, upfront)
    range_header = req.headers.get("range")
    # §14.2: Range is for GET. §13.1.5: If-Range by entity-tag only -- a date
    # is not a strong validator for a whole directory.
    if req.method != "GET" or range_header is None:
        return whole
    if not evaluate_if_range(req.headers.get("if-range"), Validators(etag, None)):
        return whole
    ranges = plan_ranges(range_header, size)
    if ranges.kind == "unsatisfiable":
        raise RangeNotSatisfiable(size)
    # Several ranges of an archive are not something a client resumes with;
    # §14.2 lets a server ignore Range, so they get the whole archive.
    if ranges.kind == "full" or len(ranges.ranges) > 1:
        return whole
    only = ranges.ranges[0]
    fields += [("content-range", format_content_range(only, size)), ("content-length", str(only.length))]
    return ArchivePlan(206, tuple(fields), body, req.kind, (only.start, only.end + 1), layout, upfront)


def plan_crc_needs(layout: ZipLayout, start: int, stop: int, *, upfront: bool) -> CrcNeeds:
    """Which CRCs bytes [start, stop) of a stored zip contain, and which of
    them the span computes itself by carrying the entry's whole data."""
    entries = layout.entries
    needed: set[int] = set()
    streamed: set[int] = set()
    for piece in layout.pieces(start, stop):
        i = piece.index
        if piece.kind == "central_directory":
            needed.update(j for j, e in enumerate(entries) if e.size)
        elif piece.kind == "descriptor" or (piece.kind == "header" and upfront and entries[i].size):
            needed.add(i)
        elif piece.kind == "data" and piece.start == 0 and piece.stop == entries[i].size:
            streamed.add(i)
    # Upfront: the header, before the data, already carries the CRC.
    ahead = needed if upfront else needed - streamed
    return CrcNeeds(frozenset(ahead), frozenset(streamed))
