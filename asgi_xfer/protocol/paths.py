"""Request paths to safe relative paths: every check that needs no I/O.

Owns: refusing `..`, `.`, empty segments, NUL and control characters,
backslashes, absolute and drive-letter paths, over-long names, and anything
named `.xfer*` (the internal state directory and staging files beside their
targets). Must not: touch the filesystem; whether a symlink leaves ROOT is
`store`'s question, asked after these checks pass.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import quote

from .errors import BadRequest, NotFound

# Linux NAME_MAX and PATH_MAX: longer names fail in the kernel anyway; refusing
# them here gives a clear 400 instead of an OSError.
MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096

# Internal state (`ROOT/.xfer/`) and staging files (`.xfer-*` beside targets).
RESERVED_PREFIX = ".xfer"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class RelPath:
    """A checked path below ROOT; `segments == ()` is ROOT itself."""

    segments: tuple[str, ...]
    trailing_slash: bool

    @property
    def text(self) -> str:
        return "/".join(self.segments)

    @property
    def name(self) -> str:
        return self.segments[-1] if self.segments else ""

    def child(self, name: str) -> RelPath:
        return RelPath((*self.segments, name), False)


@functools.lru_cache(maxsize=8192)  # pure, and the first step of every request
def parse_rel_path(raw: str) -> RelPath:
    """Check a decoded path relative to a route prefix (`a/b.txt`, `dir/`)."""
    if _CONTROL.search(raw):
        raise BadRequest("path contains NUL or control characters")
    if "\\" in raw:
        raise BadRequest("path contains a backslash")
    if raw.startswith("/"):
        raise BadRequest("absolute paths are not allowed")
    if _DRIVE.match(raw):
        raise BadRequest("drive-letter paths are not allowed")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadRequest(f"path longer than {MAX_PATH_BYTES} bytes")
    if not raw:
        return RelPath((), True)  # the route's own path: ROOT, a directory
    trailing = raw.endswith("/")
    body = raw[:-1] if trailing else raw
    if not body:
        return RelPath((), trailing)
    segments = tuple(body.split("/"))
    for segment in segments:
        check_segment(segment)
    return RelPath(segments, trailing)


def check_segment(segment: str) -> None:
    """One path component (also used for uploaded file names)."""
    if segment in ("", ".", ".."):
        raise BadRequest("path has an empty, '.' or '..' segment")
    if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
        raise BadRequest(f"path segment longer than {MAX_SEGMENT_BYTES} bytes")
    if segment.startswith(RESERVED_PREFIX):
        # Unreachable rather than forbidden: do not confirm it exists.
        raise NotFound("not found")


def is_utf8_name(name: str) -> bool:
    """A file name from the disk that UTF-8 can carry. Servers decode request
    paths as UTF-8, so another name (read with surrogate escapes) is
    unreachable by URL and cannot go into JSON or an archive."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def sanitize_filename(raw: str) -> str:
    """The name an uploaded file part is stored under: its last component
    (old browsers send `C:\\dir\\a.txt`), without control characters or
    surrounding spaces, and a valid single segment (else BadRequest)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL.sub("", name).strip()
    if not name:
        raise BadRequest(f"unusable file name {raw!r}")
    try:
        check_segment(name)
    except NotFound:
        raise BadRequest(f"file names starting with {RESERVED_PREFIX} are reserved") from None
    return name


def format_url_path(prefix: str, rel: RelPath, *, directory: bool = False) -> str:
    """`prefix` + the percent-encoded path, for Location headers and links."""
    tail = quote(rel.text, safe="/")
    if directory and tail:
        tail += "/"
    return prefix + tail
