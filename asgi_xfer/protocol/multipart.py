"""Incremental `multipart/form-data` parser (RFC 7578 over RFC 2046 §5.1), sans I/O.

Owns: the boundary parameter of a request's Content-Type, framing a body
into `PartStart` / `PartData` / `PartEnd` events, part-header syntax (the
Content-Disposition `name`, `filename` and RFC 8187 `filename*`), and the
limits that bound the parser's memory. Must not: do I/O, know about ASGI,
decide where a part goes, or sanitize a filename (the handler and the path
checks do that).

Bytes go in with `feed(data) -> events`; `close()` raises if the closing
delimiter never came. `MultipartError` is the only exception that leaves;
`MultipartLimitError` marks a limit (413 where apt, else 400).

Decisions where the RFCs leave room or clients differ:
- Preamble and epilogue are ignored (RFC 2046 §5.1.1). The first delimiter
  may open the body with no CRLF before it: the parser starts as if the
  body were preceded by CRLF.
- Part header lines must end in CRLF; a bare LF or CR is a `MultipartError`.
  RFC 2046 defines the delimiter as CRLF "--" boundary, so a body written
  with bare LF could not be framed anyway (its data would swallow the next
  delimiter): accepting LF in headers would only move the failure. No
  mainstream client (browsers, curl, requests, undici) sends bare LF.
- After a delimiter: "--" closes the body; otherwise only transport padding
  (spaces and tabs, RFC 2046 §5.1.1) may precede the CRLF.
- Header names are case-insensitive and reported lower-cased; obs-fold
  continuation lines are joined with a space, as h11 does (RFC 9112 §5.2).
  Values are UTF-8 as browsers send them; a value that is not valid UTF-8
  is read as ISO-8859-1 so that a legacy client's name survives.
- In quoted parameters, backslash escapes only `\\"` and `\\\\` (what curl
  `--form-escape` sends), so an old browser's `C:\\dir\\a.txt` keeps its
  backslashes; then `%22`, `%0D`, `%0A` are decoded in `name` and
  `filename` as the HTML standard has browsers (and curl, undici) encode
  them (RFC 7578 §4.2). `filename*` (RFC 8187, UTF-8 or ISO-8859-1) is
  preferred over `filename` (RFC 6266 §4.3). A repeated parameter or
  header is an error (RFC 6266 §4.1).
- Content-Transfer-Encoding other than 7bit/8bit/binary is rejected rather
  than stored still encoded (RFC 7578 §4.7 deprecates it).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .multipart_scan import complete_delimiter, find_delimiter

# RFC 2046 §5.1.1: boundary := 0*69<bchars> bcharsnospace.
MAX_BOUNDARY_BYTES = 70
# One part's header block (padding after the delimiter, header lines). Real
# clients send ~100-300 bytes; 16 KiB is h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
# for a whole request head, so a part head may not be bigger.
MAX_HEADER_BYTES = 16 * 1024
# Header lines per part. RFC 7578 defines three (Content-Disposition,
# Content-Type, Content-Transfer-Encoding); clients send one or two.
MAX_HEADERS = 16
# Parts per body: Werkzeug's `max_form_parts` and Starlette's max_files /
# max_fields default to 1000; each part costs a PartStart and header parsing.
MAX_PARTS = 1000

_BOUNDARY_RE = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_BYTES_RE = re.compile(_TOKEN.encode())
_TYPE_RE = re.compile(rf"[ \t]*({_TOKEN}(?:/{_TOKEN})?)[ \t]*")
_PARAM_RE = re.compile(
    rf'[ \t]*;[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:({_TOKEN})|"((?:[^"\\]|\\.)*)")[ \t]*', re.S
)
_TRAILER_RE = re.compile(r"[ \t;]*")
_QUOTED_PAIR_RE = re.compile(r'\\([\\"])')
_FORM_ESCAPE_RE = re.compile(r"%(22|0[Dd]|0[Aa])")
# RFC 9110 §5.5: a field value holds no CTL but HTAB.
_CTL_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 8187 §3.2.1: ext-value = charset "'" [ language ] "'" value-chars.
_EXT_VALUE_RE = re.compile(
    r"([A-Za-z0-9!#$%&+\-^_`{}~]+)'([A-Za-z0-9\-]*)'"
    r"((?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!#$&+\-.^_`|~])*)"
)
_EXT_CHARSETS = {"utf-8": "utf-8", "iso-8859-1": "latin-1"}
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})


class MultipartError(ValueError):
    """The body is not valid multipart/form-data (the handler answers 400)."""


class MultipartLimitError(MultipartError):
    """The body exceeds one of the parser's limits (413 where apt)."""


@dataclass(frozen=True, slots=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


def parse_boundary(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data` Content-Type header value."""
    media_type, params = _parse_header_params(content_type)
    if media_type.lower() != "multipart/form-data":
        raise MultipartError("Content-Type is not multipart/form-data")
    if "boundary" not in params:
        raise MultipartError("Content-Type has no boundary parameter")
    try:
        boundary = params["boundary"].encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError("boundary has invalid characters") from None
    _check_boundary(boundary)
    return boundary


def _check_boundary(boundary: bytes) -> None:
    if not boundary:
        raise MultipartError("boundary is empty")
    if len(boundary) > MAX_BOUNDARY_BYTES:
        raise MultipartError(f"boundary is longer than {MAX_BOUNDARY_BYTES} bytes")
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise MultipartError("boundary has invalid characters")


class _State(enum.Enum):
    PREAMBLE = "preamble"  # before the first delimiter; bytes are dropped
    HEADERS = "headers"  # after a delimiter: "--", or padding CRLF and headers
    BODY = "body"  # a part's data, up to the next delimiter
    EPILOGUE = "epilogue"  # after the close delimiter; bytes are dropped
    CLOSED = "closed"
    FAILED = "failed"


# Module globals: reading an Enum member through its class costs ~0.3 µs in
# CPython 3.11, too much for a check made on every feed.
_PREAMBLE, _HEADERS, _BODY, _EPILOGUE, _CLOSED, _FAILED = _State


class MultipartParser:
    """Turns a multipart/form-data body, fed in pieces, into part events.

    Data at the end of a piece that may be the start of a delimiter (its
    last CR and what follows) is reported with the next piece, once that
    settles it; the piece is held by reference, not copied.
    """

    def __init__(
        self,
        boundary: bytes,
        *,
        max_parts: int = MAX_PARTS,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        _check_boundary(boundary)
        self._delimiter = b"\r\n--" + boundary
        self._max_parts = max_parts
        self._max_header_bytes = max_header_bytes
        self._max_headers = max_headers
        self._state = _PREAMBLE
        # The last piece, when it ended in what may be the start of a
        # delimiter: held[held_start:held_end] is data not yet emitted and
        # held[held_end:] a proper prefix of the delimiter. Holding the piece
        # (not a copy) lets it go out whole once the next piece settles it.
        # The body starts as if after a CRLF, so "--boundary" may open it.
        self._held = b"\r\n"
        self._held_start = 0
        self._held_end = 0
        self._head = b""  # the current header block, while incomplete
        self._parts = 0

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next piece of the body; return the events it completes."""
        state = self._state
        if state is _FAILED or state is _CLOSED:
            raise MultipartError(f"feed() on a {state.value} parser")
        events: list[Event] = []
        try:
            pos = self._resume_delimiter(data, events) if self._held else 0
            end = len(data)
            while pos < end:
                state = self._state
                if state is _BODY or state is _PREAMBLE:
                    pos = self._read_body(data, pos, events)
                elif state is _HEADERS:
                    pos = self._read_headers(data, pos, events)
                else:  # the epilogue is ignored (RFC 2046 §5.1.1)
                    break
        except MultipartError:
            self._state = _FAILED
            raise
        return events

    def close(self) -> None:
        """Mark the end of the body; raise if it stopped before the close delimiter."""
        if self._state is _EPILOGUE:
            self._state = _CLOSED
            return
        if self._state is _CLOSED:
            return
        self._state = _FAILED
        raise MultipartError("body ended before the closing boundary")

    def _resume_delimiter(self, data: bytes, events: list[Event]) -> int:
        """Settle the partial delimiter the last piece ended with; return where to go on."""
        held, start, end = self._held, self._held_start, self._held_end
        self._held = b""
        emit = self._state is _BODY
        taken = complete_delimiter(held[end:], data, self._delimiter)
        if taken < 0:  # it was data after all: the held piece goes out whole
            if emit:
                events.append(PartData(held[start:]))
            return 0
        if emit and end > start:
            events.append(PartData(held[start:end]))
        if taken > 0:
            self._end_part(events)
            return taken
        # Still a prefix: keep just the (short) partial delimiter.
        self._held, self._held_start, self._held_end = held[end:] + data, 0, 0
        return len(data)

    def _read_body(self, data: bytes, pos: int, events: list[Event]) -> int:
        end, after = find_delimiter(data, pos, self._delimiter)
        if after >= 0:
            if end > pos and self._state is _BODY:
                events.append(PartData(data[pos:end]))
            self._end_part(events)
            return after
        if end < len(data):
            self._held, self._held_start, self._held_end = data, pos, end
        elif end > pos and self._state is _BODY:
            # data[0:len(data)] is `data` itself: a whole piece is not copied.
            events.append(PartData(data[pos:]))
        return len(data)

    def _end_part(self, events: list[Event]) -> None:
        if self._state is _BODY:
            events.append(PartEnd())
        self._state = _HEADERS

    def _read_headers(self, data: bytes, pos: int, events: list[Event]) -> int:
        """Gather the bytes after a delimiter up to the blank line ending the headers."""
        head = self._head
        limit = self._max_header_bytes
        # Copy no more than could still belong to the block: bounded by the limit.
        taken = data[pos : pos + limit + 4 - len(head)]
        block = head + taken if head else taken
        if len(block) < 2:
            self._head = block
            return pos + len(taken)
        if block.startswith(b"--"):  # close delimiter: the rest is epilogue
            self._head = b""
            self._state = _EPILOGUE
            return len(data)
        found = block.find(b"\r\n\r\n", max(0, len(head) - 3))
        if found < 0:
            # Fail as soon as the bytes show the body is malformed.
            line_end = block.find(b"\r")
            if (block if line_end < 0 else block[:line_end]).strip(b" \t"):
                raise MultipartError("unexpected bytes after a boundary delimiter")
            if block.count(b"\n") != block.count(b"\r\n"):
                raise MultipartError("part headers must end lines with CRLF, not a bare LF")
            if len(block) - 3 > limit:
                raise MultipartLimitError(f"part headers exceed {limit} bytes")
            self._head = block
            return pos + len(taken)
        if found > limit:
            raise MultipartLimitError(f"part headers exceed {limit} bytes")
        self._head = b""
        events.append(self._start_part(block[:found]))
        self._state = _BODY
        return pos + found + 4 - len(head)

    def _start_part(self, block: bytes) -> PartStart:
        self._parts += 1
        if self._parts > self._max_parts:
            raise MultipartLimitError(f"more than {self._max_parts} parts")
        padding, *lines = block.split(b"\r\n")
        if padding.strip(b" \t"):
            raise MultipartError("unexpected bytes after a boundary delimiter")
        headers = _parse_header_lines(lines, self._max_headers)
        return _part_start(headers)


def _parse_header_lines(lines: list[bytes], max_headers: int) -> tuple[tuple[str, str], ...]:
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # obs-fold: continues the previous line
            if not fields:
                raise MultipartError("part headers start with a continuation line")
            name, value = fields[-1]
            fields[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN_BYTES_RE.fullmatch(name):
            raise MultipartError("malformed part header line")
        fields.append((name, value.strip(b" \t")))
        if len(fields) > max_headers:
            raise MultipartLimitError(f"more than {max_headers} headers in a part")
    return tuple((name.decode("ascii").lower(), _decode_value(value)) for name, value in fields)


def _decode_value(value: bytes) -> str:
    if _CTL_RE.search(value):
        raise MultipartError("control character in a part header")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _part_start(headers: tuple[tuple[str, str], ...]) -> PartStart:
    found: dict[str, str] = {}
    for name, value in headers:
        if name in found and name in ("content-disposition", "content-type"):
            raise MultipartError(f"repeated {name} header in a part")
        found[name] = value
    if "content-disposition" not in found:
        raise MultipartError("part has no Content-Disposition header")
    encoding = found.get("content-transfer-encoding")
    if encoding is not None and encoding.lower() not in _IDENTITY_ENCODINGS:
        raise MultipartError(f"unsupported Content-Transfer-Encoding {encoding!r}")
    disposition, params = _parse_header_params(found["content-disposition"])
    if disposition.lower() != "form-data":
        raise MultipartError("part Content-Disposition is not form-data")
    if "name" not in params:
        raise MultipartError("part Content-Disposition has no name")
    filename: str | None = None
    if "filename*" in params:
        filename = _decode_ext_value(params["filename*"])
    elif "filename" in params:
        filename = _FORM_ESCAPE_RE.sub(_unescape_form, params["filename"])
    return PartStart(
        name=_FORM_ESCAPE_RE.sub(_unescape_form, params["name"]),
        filename=filename,
        content_type=found.get("content-type"),
        headers=headers,
    )


def _unescape_form(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16))


def _decode_ext_value(value: str) -> str:
    """Decode an RFC 8187 ext-value such as `UTF-8''na%C3%AFve.txt`."""
    match = _EXT_VALUE_RE.fullmatch(value)
    charset = _EXT_CHARSETS.get(match.group(1).lower()) if match else None
    if match is None or charset is None:
        raise MultipartError("malformed filename* parameter")
    try:
        return unquote_to_bytes(match.group(3)).decode(charset)
    except UnicodeDecodeError:
        raise MultipartError("filename* is not valid in its charset") from None


def _parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `type; a=b; c="d"` into the type and its lower-cased parameters."""
    match = _TYPE_RE.match(value)
    if match is None:
        raise MultipartError(f"malformed header value {value!r}")
    kind = match.group(1)
    params: dict[str, str] = {}
    pos = match.end()
    while pos < len(value):
        match = _PARAM_RE.match(value, pos)
        if match is None:
            if _TRAILER_RE.fullmatch(value, pos):  # a stray trailing ";"
                break
            raise MultipartError(f"malformed parameters in {value!r}")
        key, token, quoted = match.group(1, 2, 3)
        key = key.lower()
        if key in params:
            raise MultipartError(f"repeated {key!r} parameter")
        params[key] = token if token is not None else _QUOTED_PAIR_RE.sub(r"\1", quoted)
        pos = match.end()
    return kind, params
