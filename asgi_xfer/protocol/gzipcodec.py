"""On-the-fly gzip: the encoder and the decision to use it.

Owns the gzip member framing (RFC 1952, via zlib), the Accept-Encoding
negotiation (RFC 9110 §12.5.3) and which media types are worth compressing.
It must not touch responses: the handler decides Vary, ETag and Range.
"""

from __future__ import annotations

import re
import zlib

# nginx's gzip_comp_level default is 1: compressing on the fly must keep up
# with the link, and level 1 runs several times faster than 6 for a few
# percent more output on text.
GZIP_LEVEL_DEFAULT = 1

# zlib wbits 16 + 15: a gzip header and trailer around a 32 KiB-window
# deflate stream (zlib.compressobj docs), i.e. one RFC 1952 member.
_GZIP_WBITS = 16 + zlib.MAX_WBITS

# RFC 9110 §8.4.1.3: a recipient SHOULD treat x-gzip as gzip.
_GZIP_NAMES = frozenset({"gzip", "x-gzip"})
# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.\d{0,3})?|1(?:\.0{0,3})?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Media types that compress well. Anything else (images, audio, video,
# archives, fonts already in woff2, octet-stream) is usually compressed or
# random already, and gzip would only spend CPU.
_COMPRESSIBLE_TYPES = frozenset({
    "application/javascript", "application/ecmascript", "application/json",
    "application/xml", "application/xhtml+xml", "application/x-ndjson",
    "application/yaml", "application/x-yaml", "application/toml",
    "application/sql", "application/graphql", "application/x-sh",
    "application/x-tar", "application/postscript", "application/rtf",
    "application/wasm", "application/vnd.ms-fontobject",
    "font/ttf", "font/otf", "image/bmp", "image/x-icon",
    "image/vnd.microsoft.icon",
})
# RFC 6839 structured syntax suffixes: "+json" and "+xml" are text
# (this covers image/svg+xml, application/ld+json, application/atom+xml).
_COMPRESSIBLE_SUFFIXES = ("+json", "+xml")


class GzipEncoder:
    """Compresses a stream into one gzip member, piece by piece."""

    def __init__(self, level: int = GZIP_LEVEL_DEFAULT) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        self._finished = False

    def encode(self, data: bytes) -> bytes:
        """Compressed bytes for ``data`` (may be empty while zlib buffers)."""
        if self._finished:
            raise ValueError("encode() after finish()")
        return self._compressor.compress(data)

    def finish(self) -> bytes:
        """The rest of the deflate stream and the CRC32/ISIZE trailer."""
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        return self._compressor.flush(zlib.Z_FINISH)


def _parse_coding(element: str) -> tuple[str, float] | None:
    """``coding *( OWS ";" OWS "q=" qvalue )`` -> (lowercase coding, q)."""
    coding, *params = (part.strip(" \t") for part in element.split(";"))
    if not _TOKEN.fullmatch(coding):
        return None
    q = 1.0
    for param in params:
        name, equals, value = param.partition("=")
        if name.strip(" \t").lower() != "q" or not equals:
            return None
        value = value.strip(" \t")
        if not _QVALUE.fullmatch(value):
            return None
        q = float(value)
    return coding.lower(), q


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether gzip is acceptable to the client (RFC 9110 §12.5.3).

    No header at all would mean "any coding" per §12.5.3, but clients that
    send none (curl without --compressed, scripts) rarely decode gzip, so
    like nginx we compress only when asked. An explicit gzip (or x-gzip)
    entry wins over "*"; q=0 means "not acceptable".
    """
    if accept_encoding is None:
        return False
    explicit: float | None = None
    wildcard: float | None = None
    for element in accept_encoding.split(","):
        if not element.strip(" \t"):
            continue  # §5.6.1: empty list elements are ignored
        parsed = _parse_coding(element)
        if parsed is None:
            continue
        coding, q = parsed
        if coding in _GZIP_NAMES:
            explicit = q if explicit is None else max(explicit, q)
        elif coding == "*":
            wildcard = q
    chosen = explicit if explicit is not None else wildcard
    return chosen is not None and chosen > 0


def is_compressible(content_type: str) -> bool:
    """Whether a response of this media type is worth gzipping."""
    media_type = content_type.partition(";")[0].strip(" \t").lower()
    if media_type.startswith("text/"):
        return True
    return media_type in _COMPRESSIBLE_TYPES or media_type.endswith(_COMPRESSIBLE_SUFFIXES)
