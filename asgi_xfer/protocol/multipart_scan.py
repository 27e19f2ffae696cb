"""The hot loop of the multipart parser: finding `CRLF--boundary` in bulk data.

Owns: locating a delimiter in a buffer, and deciding how much of a buffer's
end could still be the start of one. Must not: keep state, build events or
look at part headers (`multipart` does that).

Why it is fast (see STYLE.md, python-multipart notes): one `bytes.find` for
the whole delimiter per buffer, so CPython's two-way search skips through the
data in C; when there is no match, only the last `len(delimiter) - 1` bytes
can hold a partial delimiter, and because a boundary never contains CR
(RFC 2046 §5.1.1 bchars), the last CR in that window is the only place one
can start: one `rfind(b"\\r")`, no Python loop over the data.
"""

from __future__ import annotations


def find_delimiter(buf: bytes, start: int, delimiter: bytes) -> tuple[int, int]:
    """Look for `delimiter` in `buf[start:]`.

    Returns `(end, after)`. Found: `end` is where it begins and `after` is
    the index just past it. Not found: `after` is -1 and `end` is where a
    partial delimiter at the very end of `buf` begins (`len(buf)` if there
    is none); `buf[start:end]` is then certainly not part of a delimiter.
    """
    found = buf.find(delimiter, start)
    if found >= 0:
        return found, found + len(delimiter)
    size = len(buf)
    window = size - len(delimiter) + 1
    cr = buf.rfind(b"\r", window if window > start else start)
    if cr >= 0 and delimiter.startswith(buf[cr:]):
        return cr, -1
    return size, -1


def complete_delimiter(tail: bytes, data: bytes, delimiter: bytes) -> int:
    """Finish a partial delimiter `tail` (a proper prefix of it) with `data`.

    `tail` starts with the delimiter's only CR, so a delimiter that begins
    inside `tail` begins exactly at its start. Returns how many bytes of
    `data` complete it, 0 if `data` is too short to tell yet (still a
    prefix: keep waiting), or -1 if `tail` turned out to be ordinary data.
    """
    rest = delimiter[len(tail) :]
    if data.startswith(rest):
        return len(rest)
    if len(data) < len(rest) and rest.startswith(data):
        return 0
    return -1
