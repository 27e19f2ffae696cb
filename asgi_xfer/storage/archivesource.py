"""What goes into an archive, read from the files tree under ROOT.

Owns: walking the requested directories (or `?path=` list) into a sorted list
of `SourceFile`s under the files-tree rules -- `.xfer*` never included at any
depth, links that resolve outside ROOT (or into `.xfer`) never followed nor
included, link cycles cut, only regular files and directories -- and, at
send time, opening each file again and checking it still has the size and
mtime it was planned with (`ArchiveError` otherwise: the response has begun,
so the connection is dropped instead of an archive that lies). Must not:
speak HTTP or decide the archive layout (`archive` does). Blocking: call the
walk and `read_crc32s` from a worker thread.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Sequence
from dataclasses import dataclass

from ..protocol.archiveerrors import ArchiveError
from ..protocol.archiveplan import ArchiveMember
from ..protocol.crc32 import crc32
from ..protocol.errors import PayloadTooLarge, translate_os_error
from ..protocol.paths import RESERVED_PREFIX, RelPath, is_utf8_name
from .tree import FilesTree

# Entries in one archive. The plan and the central directory hold every
# entry in memory (~300 bytes each with its zip records): 200,000 entries is
# ~60 MiB at worst, and far past what people download as one archive.
MAX_ARCHIVE_ENTRIES = 200_000
# `?path=` values in one request.
MAX_ARCHIVE_PATHS = 1_000
# Reads for computing a CRC away from a response (cache misses).
CRC_READ_BYTES = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One entry and where it is: `path` is the absolute real path, `key`
    that path relative to ROOT (the CRC cache's key)."""

    member: ArchiveMember
    path: str
    key: str

    @property
    def cache_key(self) -> tuple[str, int, int]:
        return self.key, self.member.size, self.member.mtime_ns


class _Walk:
    def __init__(self, store: FilesTree) -> None:
        self.store = store
        self.root_prefix = str(store.root).rstrip("/") + "/"
        self.out: list[SourceFile] = []
        self.names: set[str] = set()

    def add(self, name: str, real: str, st: os.stat_result, ancestors: frozenset[str]) -> None:
        """`real` (already checked to be inside ROOT) as `name`, with its tree."""
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        if not is_dir and not stat_mod.S_ISREG(st.st_mode):
            return  # FIFOs, sockets, devices: not archive material
        if is_dir and real in ancestors:
            return  # a link back up the tree would repeat it forever
        if name and name not in self.names:
            if len(self.out) >= MAX_ARCHIVE_ENTRIES:
                raise PayloadTooLarge(f"more than {MAX_ARCHIVE_ENTRIES} entries in one archive")
            self.names.add(name)
            member = ArchiveMember(name, 0 if is_dir else st.st_size, st.st_mtime_ns, st.st_mode & 0o777, is_dir)
            self.out.append(SourceFile(member, real, real[len(self.root_prefix):]))
        if is_dir:
            self.children(name, real, ancestors | {real})

    def children(self, name: str, real_dir: str, ancestors: frozenset[str]) -> None:
        try:
            with os.scandir(real_dir) as it:
                items = sorted(it, key=lambda item: item.name)
        except OSError as exc:
            raise translate_os_error(exc, name or "/") from None
        for item in items:
            if item.name.startswith(RESERVED_PREFIX) or not is_utf8_name(item.name):
                continue  # internal state; names no archive member can carry
            child = self.checked(item)
            if child is not None:
                self.add(f"{name}/{item.name}" if name else item.name, *child, ancestors)

    def checked(self, item: os.DirEntry[str]) -> tuple[str, os.stat_result] | None:
        """(real path, stat) of a directory item, None for what is left out:
        links leaving ROOT or into `.xfer`, dangling links, vanished files."""
        real = item.path
        try:
            if item.is_symlink():
                real = os.path.realpath(item.path)
                inside = real[len(self.root_prefix):] if real.startswith(self.root_prefix) else None
                if inside is None or inside.split("/", 1)[0].startswith(RESERVED_PREFIX):
                    return None
            return real, os.stat(real)
        except OSError:
            return None


def collect_sources(store: FilesTree, base: RelPath, paths: Sequence[RelPath]) -> list[SourceFile]:
    """The entries of `/archive/{base}` (named from base's own name; ROOT's
    contents unprefixed), or of each `?path=` below base (named by that path),
    in a deterministic order: paths sorted, each tree depth-first with its
    children sorted, a directory before its contents, duplicates dropped."""
    walk = _Walk(store)
    if not paths:
        real = store.resolve(base)
        walk.add(base.name, real, _stat(real, base), frozenset())
        return walk.out
    if len(paths) > MAX_ARCHIVE_PATHS:
        raise PayloadTooLarge(f"more than {MAX_ARCHIVE_PATHS} path parameters")
    for rel in sorted(paths, key=lambda p: p.segments):
        if not rel.segments:
            walk.children("", store.resolve(base), frozenset())
            continue
        full = RelPath(base.segments + rel.segments, False)
        real = store.resolve(full)
        walk.add(rel.text, real, _stat(real, full), frozenset())
    return walk.out


def _stat(real: str, rel: RelPath) -> os.stat_result:
    try:
        return os.stat(real)
    except OSError as exc:
        raise translate_os_error(exc, rel.text or "/") from None


def open_source(src: SourceFile) -> int:
    """An fd on the file, checked unchanged since it was planned."""
    try:
        fd = os.open(src.path, _OPEN_FLAGS)
    except OSError:
        raise ArchiveError(f"{src.member.name!r} vanished while the archive was being sent") from None
    try:
        check_unchanged(fd, src)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_unchanged(fd: int, src: SourceFile) -> None:
    """`ArchiveError` unless the open file still has its planned size and mtime."""
    st = os.fstat(fd)
    m = src.member
    if not stat_mod.S_ISREG(st.st_mode) or st.st_size != m.size or st.st_mtime_ns != m.mtime_ns:
        raise ArchiveError(f"{m.name!r} changed while the archive was being sent")


def read_crc32(src: SourceFile) -> int:
    """The CRC-32 of a whole file, checked unchanged before and after."""
    fd = open_source(src)
    try:
        crc, offset = 0, 0
        while offset < src.member.size:
            data = os.pread(fd, min(CRC_READ_BYTES, src.member.size - offset), offset)
            if not data:
                raise ArchiveError(f"{src.member.name!r} shrank while the archive was being sent")
            crc = crc32(data, crc)
            offset += len(data)
        check_unchanged(fd, src)
        return crc
    finally:
        os.close(fd)


def read_crc32s(sources: Sequence[SourceFile]) -> list[int]:
    return [read_crc32(src) for src in sources]

