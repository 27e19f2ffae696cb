"""Content-Disposition (RFC 6266) with RFC 8187 ext-values, both directions.

Owns the header string for downloads (an ASCII ``filename`` fallback plus the
exact UTF-8 ``filename*``) and the parser that the download client and the
multipart parser share. It must not sanitize names for the file system (that
is the path rules' job) nor read or write anything.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, unquote_to_bytes

# RFC 8187 §3.2.1 attr-char: the bytes a value-chars may carry unescaped.
# quote() never escapes ALPHA, DIGIT and "_.-~", so these are the rest.
_ATTR_CHAR_PUNCTUATION = "!#$&+-.^_`|~"
_VALUE_CHARS = re.compile(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!#$&+\-.^_`|~])*")
# RFC 8187 §3.2.1: recipients support at least these two charsets.
_EXT_CHARSETS = {"utf-8": "utf-8", "iso-8859-1": "iso-8859-1"}
_EXT_VALUE = re.compile(r"([A-Za-z0-9!#$%&+\-^_`{}~]+)'([A-Za-z0-9\-]*)'(.*)", re.DOTALL)
# RFC 9110 §5.6.2 token characters.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OWS = " \t"


def _ascii_fallback(filename: str) -> str:
    """The quoted-string body for ``filename=`` (RFC 6266 §4.3).

    Non-ASCII and control characters cannot appear in a quoted-string that
    every user agent reads the same way, so they become "_"; backslash and
    DQUOTE are escaped as quoted-pair (RFC 9110 §5.6.4).
    """
    chars = []
    for ch in filename:
        if not ch.isascii() or ord(ch) < 0x20 or ord(ch) == 0x7F:
            chars.append("_")
        elif ch in '\\"':
            chars.append("\\" + ch)
        else:
            chars.append(ch)
    return "".join(chars)


@functools.lru_cache(maxsize=4096)  # pure and hot: one per download response
def format_content_disposition(filename: str, inline: bool = False) -> str:
    """``attachment; filename="..."; filename*=UTF-8''...`` (RFC 6266 §4.3).

    Both parameters are always sent: §4.3 says a recipient that understands
    ``filename*`` prefers it, and older ones fall back to ``filename``.
    """
    disposition = "inline" if inline else "attachment"
    # RFC 8187 §3.2.1: everything but attr-char is %XX of the UTF-8 bytes.
    # A lone surrogate (an undecodable file-system name) becomes "?".
    encoded = quote(filename, safe=_ATTR_CHAR_PUNCTUATION, encoding="utf-8", errors="replace")
    return f"{disposition}; filename=\"{_ascii_fallback(filename)}\"; filename*=UTF-8''{encoded}"


def _decode_ext_value(value: str) -> str | None:
    """An RFC 8187 §3.2 ext-value ``charset'lang'pct-encoded``, or None."""
    m = _EXT_VALUE.fullmatch(value)
    if m is None or not _VALUE_CHARS.fullmatch(m[3]):
        return None
    codec = _EXT_CHARSETS.get(m[1].lower())
    if codec is None:
        return None
    try:
        return unquote_to_bytes(m[3]).decode(codec)
    except UnicodeDecodeError:
        return None


def _read_quoted_string(value: str, pos: int) -> tuple[str, int]:
    """A quoted-string starting at ``value[pos] == '"'`` (RFC 9110 §5.6.4).

    Returns the unescaped text and the position after the closing quote (or
    the end of the value, if the quote is never closed).
    """
    out = []
    pos += 1
    while pos < len(value):
        ch = value[pos]
        if ch == '"':
            return "".join(out), pos + 1
        if ch == "\\" and pos + 1 < len(value):
            pos += 1
            ch = value[pos]
        out.append(ch)
        pos += 1
    return "".join(out), pos


def _read_parameter(value: str, pos: int) -> tuple[str | None, str, int]:
    """One ``name = value`` after a ";" (names lowercased); name None if bad."""
    equals = value.find("=", pos)
    semicolon = value.find(";", pos)
    if equals < 0 or (0 <= semicolon < equals):
        return None, "", len(value) if semicolon < 0 else semicolon
    name = value[pos:equals].strip(_OWS).lower()
    pos = equals + 1
    while pos < len(value) and value[pos] in _OWS:
        pos += 1
    if pos < len(value) and value[pos] == '"':
        text, pos = _read_quoted_string(value, pos)
    else:
        end = value.find(";", pos)
        end = len(value) if end < 0 else end
        text, pos = value[pos:end].strip(_OWS), end
    end = value.find(";", pos)
    pos = len(value) if end < 0 else end
    return (name if _TOKEN.fullmatch(name) else None), text, pos


def parse_content_disposition(value: str) -> tuple[str, dict[str, str]]:
    """The lowercased disposition type and its parameters (RFC 6266 §4.1).

    Parameter names are lowercased. A ``name*`` ext-value (RFC 8187) that
    decodes is stored under ``name`` and wins over a plain ``name``
    (RFC 6266 §4.3); one that does not decode is ignored. A repeated
    parameter keeps its first value (§4.1 forbids repeats).
    """
    head, _, _ = value.partition(";")
    disposition = head.strip(_OWS).lower()
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}
    pos = len(head)
    while pos < len(value):
        name, text, pos = _read_parameter(value, pos + 1)
        if name is None:
            continue
        if name.endswith("*"):
            decoded = _decode_ext_value(text)
            if decoded is not None:
                extended.setdefault(name[:-1], decoded)
        else:
            plain.setdefault(name, text)
    return disposition, {**plain, **extended}
