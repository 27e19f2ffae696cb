"""The files tree on local disk: the `FilesTree` of `storage.tree`.

Owns: the mapping from a `RelPath` to a file under ROOT, the refusal of
symlinks that resolve outside ROOT, validators (ETag, Last-Modified) derived
from a stat, where uploads are staged (beside their target; sessions under
`ROOT/.xfer/uploads/`), removal, and free space. Must not: speak HTTP; it
raises `XferError`s, translated from `OSError` here where they enter.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Callable
from pathlib import Path

from ..protocol.errors import Conflict, Forbidden, NotFound, translate_os_error
from ..protocol.paths import RESERVED_PREFIX, RelPath
from .beneath import BeneathOpener
from .staging import free_bytes, fsync_directory
from .tree import Entry

# O_PATH where the platform has it and /proc can reopen such an fd (Linux).
_O_PATH = getattr(os, "O_PATH", 0) if os.path.isdir("/proc/self/fd") else 0
# O_NONBLOCK: opening a FIFO must not hang; O_NOCTTY: a link to a terminal
# must not become ours.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

STATE_DIR = ".xfer"
# Session staging files, one per upload session, under the state directory.
SESSION_STAGING_DIR = "uploads"


def format_etag(st: os.stat_result) -> str:
    """A strong ETag: inode, size and mtime in ns change with every write or
    atomic replace, which is all §8.8.1 asks of a strong validator here."""
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


class DiskTree:
    # Capability: `open_read` gives an OS file descriptor and `resolve` a real
    # path, so responses go by sendfile (pathsend, zero-copy send).
    zero_copy = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.realpath(root))
        self._root_text = str(self.root)
        self._root_prefix = self._root_text.rstrip("/") + "/"
        self._beneath = BeneathOpener(self._root_text, _READ_FLAGS)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def session_staging_dir(self) -> Path:
        return self.state_dir / SESSION_STAGING_DIR

    def ensure_layout(self) -> None:
        self.session_staging_dir.mkdir(parents=True, exist_ok=True)

    def session_staging_path(self, sid: str) -> str:
        """The one staging file of upload session `sid`: chunks and PATCHes
        are written into it in place; `complete` renames it to the target."""
        return str(self.session_staging_dir / f"{sid}.part")

    def etag(self, st: os.stat_result) -> str:
        return format_etag(st)

    def free_bytes(self) -> int:
        """Free space where session staging files grow."""
        return free_bytes(str(self.session_staging_dir))

    def resolve(self, rel: RelPath) -> str:
        """The absolute path for `rel`, refusing symlinks that leave ROOT."""
        return self._check_inside(os.path.realpath(os.path.join(self._root_text, *rel.segments)))

    def _check_inside(self, real: str) -> str:
        if real != self._root_text and not real.startswith(self._root_prefix):
            raise Forbidden("path resolves outside the served root")
        # A symlink inside ROOT pointing at the state directory is refused too.
        inside = real[len(self._root_prefix):] if real != self._root_text else ""
        if inside.split("/", 1)[0].startswith(RESERVED_PREFIX):
            raise NotFound("not found")
        return real

    def _real_path_of(self, fd: int, joined: str) -> str:
        """Where an open fd really is: one readlink of /proc/self/fd/N
        instead of realpath's lstat per component (a third of a small
        file's request time). Falls back to realpath without /proc."""
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return os.path.realpath(joined)

    def open_read(self, rel: RelPath) -> tuple[int, os.stat_result]:
        """An fd and its stat; a directory is returned too (fd opened on it)."""
        try:
            fd = self._beneath.open(rel.segments)
        except OSError as exc:
            raise translate_os_error(exc, rel.text or "/") from None
        if fd is None:
            fd = self._open_resolving_links(rel)
        try:
            st = os.fstat(fd)
            if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode)):
                raise NotFound(f"{rel.text} is not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _open_resolving_links(self, rel: RelPath) -> int:
        """The slow path, for paths with symlinks: find where the path really
        leads before opening what is there."""
        joined = os.path.join(self._root_text, *rel.segments)
        try:
            # O_PATH (Linux) names the target without opening the object
            # itself: a symlink to a FIFO or device outside ROOT is refused
            # before any open() of it (SPEC: paths are checked before any
            # I/O; opening a FIFO's read end releases a blocked writer).
            fd = os.open(joined, _O_PATH | os.O_CLOEXEC if _O_PATH else _READ_FLAGS)
        except OSError as exc:
            raise translate_os_error(exc, rel.text or "/") from None
        try:
            self._check_inside(self._real_path_of(fd, joined))
            if not _O_PATH:
                return fd
            if not stat_mod.S_ISREG(os.fstat(fd).st_mode) and not stat_mod.S_ISDIR(os.fstat(fd).st_mode):
                raise NotFound(f"{rel.text} is not a regular file")
            # open(2) of an O_PATH fd goes through /proc/self/fd.
            return os.open(f"/proc/self/fd/{fd}", _READ_FLAGS)
        except OSError as exc:
            if not _O_PATH:
                os.close(fd)
            raise translate_os_error(exc, rel.text or "/") from None
        except BaseException:
            if not _O_PATH:
                os.close(fd)
            raise
        finally:
            if _O_PATH:
                os.close(fd)

    def directory_for_write(self, rel: RelPath) -> tuple[str, list[str]]:
        """The real path of directory `rel`, created inside ROOT if missing,
        and the directories created for it (deepest first) so that a failed
        upload can remove them again."""
        path = os.path.join(self._root_text, *rel.segments)
        created: list[str] = []
        probe = path
        while not os.path.lexists(probe) and probe != self._root_text:
            created.append(probe)
            probe = os.path.dirname(probe)
        try:
            os.makedirs(path, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise Conflict(f"a file stands where {rel.text} needs a directory") from None
        except OSError as exc:
            raise translate_os_error(exc, rel.text) from None
        return self._check_inside(os.path.realpath(path)), created

    def target_for_write(self, rel: RelPath) -> tuple[str, list[str]]:
        """Where an upload to file `rel` lands (parents made as above); a
        directory at `rel`, or a link leaving ROOT, is refused."""
        parent, created = self.directory_for_write(RelPath(rel.segments[:-1], True))
        target = os.path.join(parent, rel.name)
        if os.path.islink(target):
            self._check_inside(os.path.realpath(target))
        if os.path.isdir(target):
            raise Conflict(f"{rel.text} is a directory")
        return target, created

    def stat_file(self, path: str) -> os.stat_result | None:
        """The stat of a regular file at `path`, None if there is none."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise translate_os_error(exc, os.path.basename(path)) from None
        return st if stat_mod.S_ISREG(st.st_mode) else None

    def lexical_path(self, rel: RelPath) -> tuple[str, os.stat_result]:
        """`rel` without following its last component (DELETE removes a link,
        not what it points to); its parent must resolve inside ROOT."""
        parent = self._check_inside(os.path.realpath(os.path.join(self._root_text, *rel.segments[:-1])))
        path = os.path.join(parent, rel.name)
        try:
            return path, os.lstat(path)
        except OSError as exc:
            raise translate_os_error(exc, rel.text) from None

    def list_dir(self, rel: RelPath) -> list[Entry]:
        """Entries of a directory, without internal names and escaping links.

        Blocking (scandir and a stat per entry): call it in a worker thread.
        """
        path = self.resolve(rel)
        entries: list[Entry] = []
        try:
            with os.scandir(path) as it:
                for item in it:
                    entry = self._entry(item, rel)
                    if entry is not None:
                        entries.append(entry)
        except OSError as exc:
            raise translate_os_error(exc, rel.text or "/") from None
        entries.sort(key=lambda e: e.name)
        return entries

    def _entry(self, item: os.DirEntry[str], parent: RelPath) -> Entry | None:
        if item.name.startswith(RESERVED_PREFIX):
            return None
        try:
            if item.is_symlink():
                self.resolve(parent.child(item.name))
            st = item.stat()
        except (OSError, Forbidden, NotFound):
            return None  # dangling or escaping link: not ours to show
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        if not is_dir and not stat_mod.S_ISREG(st.st_mode):
            return None
        return Entry(item.name, is_dir, 0 if is_dir else st.st_size, st.st_mtime, format_etag(st))

    def delete(self, rel: RelPath, check: Callable[[os.stat_result | None], None]) -> None:
        """Remove the file (or empty directory) at `rel` itself, not what a
        link there points to; `check` sees its stat first (None for a
        directory: it has no validators) and may refuse."""
        path, st = self.lexical_path(rel)
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        check(None if is_dir else st)
        try:
            if is_dir:
                os.rmdir(path)
            else:
                os.unlink(path)
            fsync_directory(os.path.dirname(path))
        except OSError as exc:
            if is_dir and exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise Conflict(f"directory {rel.text} is not empty") from None
            raise translate_os_error(exc, rel.text) from None
