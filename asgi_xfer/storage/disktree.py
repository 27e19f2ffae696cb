"""The files tree on local disk: resolving checked paths, stat, open, listing.

Owns: the mapping from a `RelPath` to a file under ROOT, the refusal of
symlinks that resolve outside ROOT, validators (ETag, Last-Modified) derived
from a stat, and the signing secret kept in `ROOT/.xfer/`. Must not: speak
HTTP; it raises `XferError`s, translated from `OSError` here where they enter.
"""

from __future__ import annotations

import os
import secrets
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path

from .beneath import BeneathOpener
from ..protocol.errors import Conflict, Forbidden, NotFound, translate_os_error
from ..protocol.paths import RESERVED_PREFIX, RelPath

# O_PATH where the platform has it and /proc can reopen such an fd (Linux).
_O_PATH = getattr(os, "O_PATH", 0) if os.path.isdir("/proc/self/fd") else 0
# O_NONBLOCK: opening a FIFO must not hang; O_NOCTTY: a link to a terminal
# must not become ours.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

STATE_DIR = ".xfer"
SECRET_FILE = "secret.key"
SECRET_BYTES = 32


def format_etag(st: os.stat_result) -> str:
    """A strong ETag: inode, size and mtime in ns change with every write or
    atomic replace, which is all §8.8.1 asks of a strong validator here."""
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: float
    etag: str


class FileStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.realpath(root))
        self._root_text = str(self.root)
        self._root_prefix = self._root_text.rstrip("/") + "/"
        self._beneath = BeneathOpener(self._root_text, _READ_FLAGS)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def ensure_layout(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)

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


def read_or_create_secret(state_dir: Path) -> bytes:
    """The HMAC key for signed links, shared by all workers and restarts.

    Created once with O_EXCL semantics (write a temp file, hard-link it into
    place) so that workers starting together agree on one key.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    final = state_dir / SECRET_FILE
    if not final.exists():
        tmp = state_dir / f"{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(SECRET_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, final)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return final.read_bytes()
