"""The error the archive writers raise, and the member-name rule they share.

Owns: `ArchiveError` and `check_member_name`, used by `zipwriter` and
`tarwriter`. Must not: do I/O or know about HTTP. An `ArchiveError` raised
mid-stream means the response has already started, so the caller drops the
connection rather than finish an archive that would look complete.
"""

from __future__ import annotations


class ArchiveError(ValueError):
    """An archive cannot be written as asked: a bad entry, a file that changed
    while it was being archived, or the writer's methods called out of order."""


def check_member_name(name: str, *, is_dir: bool) -> str:
    """Return `name` as stored in an archive, or raise `ArchiveError`.

    Names are relative, '/'-separated and UTF-8 encodable; a directory's
    stored name ends with '/' (added if missing), a file's never does. Empty,
    '.' and '..' segments are refused so that no extractor resolves a member
    outside its target directory (the "zip slip" family), whatever the caller
    checked before.
    """
    if is_dir and not name.endswith("/"):
        name += "/"
    body = name[:-1] if is_dir else name
    if not body or "\x00" in name or name.startswith("/"):
        raise ArchiveError(f"invalid archive member name {name!r}")
    parts = body.split("/")
    if "" in parts or "." in parts or ".." in parts:
        raise ArchiveError(f"archive member name {name!r} has an empty, '.' or '..' segment")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(f"archive member name {name!r} is not valid Unicode") from None
    return name


def check_member(name: str, size: int, *, is_dir: bool) -> None:
    """What every archive entry must be, zip or tar: a valid name, and a
    size that is not negative (0 for a directory)."""
    check_member_name(name, is_dir=is_dir)
    if size < 0 or (is_dir and size):
        raise ArchiveError(f"{name!r}: invalid size {size}")
