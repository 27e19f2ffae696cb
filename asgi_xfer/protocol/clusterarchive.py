"""The entry plan of a cluster archive: every node's copy of a path as `{node}/{path}`.

Owns: reading a node's manifest (the JSON of `GET /cluster/manifest/{path}`,
checked as untrusted input), the members of the cluster zip in node order
with `_errors.txt` last, and that file's text. The zip layout itself, the
ETag, Range and preconditions are `archiveplan`'s and `zipwriter`'s, applied
to these members unchanged. Must not: do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .archiveerrors import ArchiveError, check_member_name
from .archiveplan import ArchiveMember
from .errors import XferError
from .paths import parse_rel_path

ERRORS_NAME = "_errors.txt"
# A manifest lists at most this many entries: the same cap a node's own
# archive has (storage.archivesource.MAX_ARCHIVE_ENTRIES).
MAX_MANIFEST_ENTRIES = 200_000


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file or directory of a node, `path` relative to its ROOT."""

    path: str
    size: int
    mtime_ns: int
    mode: int
    is_dir: bool
    etag: str
    crc32: int | None


@dataclass(frozen=True, slots=True)
class ClusterEntry:
    node_index: int  # 0 is this node, then the peers in --peer order
    node: str
    source: ManifestEntry | None  # None: the `_errors.txt` entry
    member: ArchiveMember


def _int(raw: object, what: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < low or (high is not None and raw > high):
        raise ValueError(f"manifest: invalid {what} {raw!r}")
    return raw


def parse_manifest(payload: Any) -> list[ManifestEntry]:
    """A peer's manifest, or ValueError: a malformed one is that node's failure."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entries"), list):
        raise ValueError("manifest: expected an object with 'entries'")
    raw_entries = payload["entries"]
    if len(raw_entries) > MAX_MANIFEST_ENTRIES:
        raise ValueError(f"manifest: more than {MAX_MANIFEST_ENTRIES} entries")
    out = []
    for raw in raw_entries:
        if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not raw["path"]:
            raise ValueError("manifest: an entry without a path")
        crc = raw.get("crc32")
        is_dir = raw.get("dir") is True
        out.append(ManifestEntry(
            raw["path"], 0 if is_dir else _int(raw.get("size"), "size"), _int(raw.get("mtime_ns"), "mtime_ns"),
            _int(raw.get("mode", 0o644), "mode", 0, 0o7777), is_dir, str(raw.get("etag", "")),
            None if crc is None else _int(crc, "crc32", 0, 0xFFFFFFFF),
        ))
    return out


def format_node_dir(name: str) -> str:
    """A node's name as one archive path segment ('/' would nest it)."""
    cleaned = name.replace("/", "_").replace("\\", "_").strip() or "node"
    return "_" + cleaned if cleaned in (".", "..") else cleaned


def format_errors_txt(lines: Sequence[str]) -> bytes:
    return "".join(line.replace("\n", " ") + "\n" for line in lines).encode()


def plan_cluster_entries(listings: Sequence[tuple[str, Sequence[ManifestEntry]]], errors: Sequence[str],
                         now: float) -> tuple[list[ClusterEntry], bytes]:
    """The members in order: each node's entries under `{node}/`, then
    `_errors.txt` when there is anything to report. A node whose directory
    name repeats an earlier one's, or whose entries cannot be zip members,
    is left out and reported. Returns the entries and the errors text."""
    lines = list(errors)
    entries: list[ClusterEntry] = []
    seen: set[str] = set()
    for index, (node, listed) in enumerate(listings):
        folder = format_node_dir(node)
        if folder in seen or folder == ERRORS_NAME:
            lines.append(f"node {node}: left out, its name repeats another node's")
            continue
        try:
            mine = [ClusterEntry(index, node, e, _member(folder, e)) for e in listed]
        except (ArchiveError, ValueError, XferError) as exc:
            lines.append(f"node {node}: left out, {exc}")
            continue
        seen.add(folder)
        if mine:
            entries += [ClusterEntry(index, node, None, ArchiveMember(folder, 0, _newest_ns(mine, now), 0o755, True)),
                        *mine]
    text = format_errors_txt(lines)
    if lines:
        entries.append(ClusterEntry(-1, "", None, ArchiveMember(ERRORS_NAME, len(text), _newest_ns(entries, now), 0o644)))
    return entries, text


def _member(folder: str, entry: ManifestEntry) -> ArchiveMember:
    parse_rel_path(entry.path)  # fetched as /files/{path} later: a peer's word is checked
    name = f"{folder}/{entry.path}"
    check_member_name(name, is_dir=entry.is_dir)
    return ArchiveMember(name, entry.size, entry.mtime_ns, entry.mode & 0o777, entry.is_dir)


def _newest_ns(entries: Sequence[ClusterEntry], now: float) -> int:
    """A derived entry's mtime: the newest of what it stands for, so the
    archive (and its ETag) depends on the nodes' files only, not the clock."""
    newest = max((e.member.mtime_ns for e in entries), default=0)
    return newest or int(now) * 1_000_000_000


def known_crcs(entries: Sequence[ClusterEntry], errors_crc: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for i, e in enumerate(entries):
        if e.source is not None and e.source.crc32 is not None:
            out[i] = e.source.crc32
        elif e.source is None and e.member.name == ERRORS_NAME:
            out[i] = errors_crc
        elif e.member.size == 0:
            out[i] = 0
    return out


def merge_crcs(entries: Sequence[ClusterEntry], node_index: int, listed: Sequence[ManifestEntry]) -> dict[int, int]:
    """CRCs from a node's second manifest (asked with `?crc=1`), for the
    entries that still have the size and mtime they were planned with."""
    by_path: Mapping[str, ManifestEntry] = {e.path: e for e in listed}
    out: dict[int, int] = {}
    for i, e in enumerate(entries):
        if e.node_index != node_index or e.source is None:
            continue
        fresh = by_path.get(e.source.path)
        if fresh is not None and fresh.crc32 is not None and (fresh.size, fresh.mtime_ns) == (e.source.size, e.source.mtime_ns):
            out[i] = fresh.crc32
    return out


def format_entry_range(start: int, stop: int, size: int) -> str | None:
    """The Range field for file bytes [start, stop), None for the whole file."""
    if start == 0 and stop == size:
        return None
    if not 0 <= start < stop <= size:
        raise ValueError(f"span [{start}, {stop}) outside {size} bytes")
    return f"bytes={start}-{stop - 1}"
