"""The tus 1.0.0 resumable upload protocol: every rule as a pure function.

Owns: version negotiation, the headers of OPTIONS and of every response,
parsing Upload-Length / Upload-Defer-Length / Upload-Offset / Upload-Metadata
/ Upload-Checksum / Upload-Concat, the PATCH preconditions (415, 409, 403,
413), the name a finished upload is committed under, and CORS for browser
clients. Must not: do I/O; `handlers/tus` executes what these decide and the
shared session store keeps the state.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    PayloadTooLarge,
    PreconditionFailed,
    UnsupportedMediaType,
    XferError,
)

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
CHECKSUM_ALGORITHMS = ("sha1", "md5", "sha256")
# What this server implements; advertised in Tus-Extension.
EXTENSIONS = (
    "creation", "creation-with-upload", "creation-defer-length", "termination",
    "checksum", "expiration", "concatenation", "concatenation-unfinished",
)
# Upload-Metadata rides in a header: 64 KiB is above any client's use and
# below what servers accept for a header block.
MAX_METADATA_BYTES = 64 * 1024
# A final upload names its partials in one header; tus-js-client's
# parallelUploads makes a handful.
MAX_CONCAT_PARTS = 1000
MAX_DIGITS = 20

_KEY = re.compile(r"^[!#-+\-.0-9A-Z^-z|~]+$")  # ASCII, no spaces or commas
_DIGITS = re.compile(r"^[0-9]+$")

CORS_ALLOW_HEADERS = (
    "Authorization, Content-Type, Content-Length, Origin, X-Requested-With, X-HTTP-Method-Override, "
    "Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Defer-Length, "
    "Upload-Concat, Upload-Checksum"
)
CORS_EXPOSE_HEADERS = (
    "Location, Upload-Offset, Upload-Length, Upload-Metadata, Upload-Defer-Length, Upload-Expires, "
    "Upload-Concat, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, "
    "WWW-Authenticate"
)
CORS_ALLOW_METHODS = "POST, HEAD, PATCH, DELETE, OPTIONS"
# Browsers cache a preflight for at most this long (Chromium caps at 2 h).
CORS_MAX_AGE_S = 86400


class TusChecksumMismatch(XferError):
    """tus checksum extension: 460, and the chunk is discarded."""

    status, code = 460, "checksum_mismatch"


class Gone(XferError):
    status, code = 410, "gone"


def response_headers(origin: str | None) -> list[tuple[str, str]]:
    """On every tus response, errors included, so browsers can read them."""
    headers = [("tus-resumable", TUS_VERSION)]
    if origin:
        headers += [
            ("access-control-allow-origin", origin),
            ("access-control-expose-headers", CORS_EXPOSE_HEADERS),
            ("vary", "Origin"),
        ]
    return headers


def options_headers(max_size: int, origin: str | None) -> list[tuple[str, str]]:
    headers = [
        ("tus-version", TUS_VERSION),
        ("tus-extension", ",".join(EXTENSIONS)),
        ("tus-max-size", str(max_size)),
        ("tus-checksum-algorithm", ",".join(CHECKSUM_ALGORITHMS)),
    ]
    if origin:
        headers += [
            ("access-control-allow-methods", CORS_ALLOW_METHODS),
            ("access-control-allow-headers", CORS_ALLOW_HEADERS),
            ("access-control-max-age", str(CORS_MAX_AGE_S)),
        ]
    return headers


def check_version(method: str, headers: Mapping[str, str]) -> None:
    """Core protocol: every request but OPTIONS carries Tus-Resumable; one
    we do not speak is 412 with Tus-Version, and the request is not processed."""
    if method == "OPTIONS":
        return
    if headers.get("tus-resumable", "").strip() != TUS_VERSION:
        exc = PreconditionFailed(f"unsupported or missing Tus-Resumable; this server speaks {TUS_VERSION}")
        exc.headers["tus-version"] = TUS_VERSION
        raise exc


def parse_non_negative(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not _DIGITS.match(value) or len(value) > MAX_DIGITS:
        raise BadRequest(f"{name} must be a non-negative integer")
    return int(value)


@dataclass(frozen=True)
class Length:
    value: int | None  # None: deferred
    deferred: bool


def parse_creation_length(headers: Mapping[str, str], max_size: int) -> Length:
    length = parse_non_negative(headers.get("upload-length"), "Upload-Length")
    defer = headers.get("upload-defer-length")
    if defer is not None and defer.strip() != "1":
        raise BadRequest("Upload-Defer-Length must be 1")
    if length is None and defer is None:
        raise BadRequest("Upload-Length or Upload-Defer-Length: 1 is required")
    if length is not None and defer is not None:
        raise BadRequest("Upload-Length and Upload-Defer-Length are exclusive")
    if length is not None and length > max_size:
        raise PayloadTooLarge(f"Upload-Length exceeds Tus-Max-Size {max_size}")
    return Length(length, length is None)


def parse_metadata(value: str | None) -> dict[str, str]:
    """Upload-Metadata: `key base64value` pairs separated by commas; a key
    alone has an empty value; an empty header is no metadata (tuspy sends
    one). Returns values decoded as UTF-8 (errors replaced)."""
    if value is None or not value.strip():
        return {}
    if len(value) > MAX_METADATA_BYTES:
        raise BadRequest("Upload-Metadata too long")
    result: dict[str, str] = {}
    for pair in value.split(","):
        pieces = pair.strip().split(" ")
        if not pieces[0] or len(pieces) > 2 or not _KEY.match(pieces[0]):
            raise BadRequest(f"malformed Upload-Metadata pair {pair.strip()!r}")
        key = pieces[0]
        if key in result:
            raise BadRequest(f"Upload-Metadata key {key!r} repeated")
        try:
            raw = base64.b64decode(pieces[1], validate=True) if len(pieces) == 2 else b""
        except (binascii.Error, ValueError):
            raise BadRequest(f"Upload-Metadata value of {key!r} is not base64") from None
        result[key] = raw.decode("utf-8", "replace")
    return result


def format_metadata(metadata: Mapping[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items())


def parse_checksum(value: str | None) -> tuple[str, bytes] | None:
    """Upload-Checksum: `<algorithm> <base64 digest>`; unknown algorithm → 400."""
    if value is None:
        return None
    name, _, b64 = value.strip().partition(" ")
    if name not in CHECKSUM_ALGORITHMS:
        raise BadRequest(f"unsupported checksum algorithm {name!r}; use one of {', '.join(CHECKSUM_ALGORITHMS)}")
    try:
        return name, base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Upload-Checksum digest is not base64") from None


@dataclass(frozen=True)
class Concat:
    kind: str | None  # None, "partial" or "final"
    parts: tuple[str, ...] = ()  # upload ids of a final's partials, in order
    header: str = ""


def parse_concat(value: str | None) -> Concat:
    """`partial`, or `final;URL URL ...` (absolute or relative URLs whose last
    path segment is the upload id)."""
    if value is None:
        return Concat(None)
    text = value.strip()
    if text == "partial":
        return Concat("partial", (), text)
    kind, sep, urls = text.partition(";")
    if kind.strip() != "final" or not sep:
        raise BadRequest("Upload-Concat must be 'partial' or 'final;<urls>'")
    ids = []
    for url in urls.split():
        upload_id = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if not upload_id:
            raise BadRequest(f"bad partial upload URL {url!r}")
        ids.append(upload_id)
    if not ids or len(ids) > MAX_CONCAT_PARTS:
        raise BadRequest(f"a final upload needs 1 to {MAX_CONCAT_PARTS} partial uploads")
    return Concat("final", tuple(ids), text)


def check_patch(headers: Mapping[str, str], current_offset: int, is_final: bool) -> int:
    """The PATCH rules, in the order tus gives them; returns Upload-Offset."""
    if is_final:
        raise Forbidden("a final (concatenated) upload cannot be patched")
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != OFFSET_CONTENT_TYPE:
        raise UnsupportedMediaType(f"PATCH needs Content-Type: {OFFSET_CONTENT_TYPE}")
    offset = parse_non_negative(headers.get("upload-offset"), "Upload-Offset")
    if offset is None:
        raise BadRequest("Upload-Offset is required")
    if offset != current_offset:
        exc = Conflict(f"Upload-Offset {offset} does not match the upload's offset {current_offset}")
        exc.headers["upload-offset"] = str(current_offset)
        raise exc
    return offset


def numbered_name(name: str, n: int) -> str:
    """`report.pdf`, then `report (1).pdf`, `report (2).pdf`: never overwrite."""
    if n == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({n})"
    return f"{stem} ({n}).{ext}"
