"""The files-tree seam: what handlers may ask of the place files live.

Owns: the `FilesTree` contract and the `Entry` of a listing. `disktree`
implements it on a local directory; an object store can implement it next.
Must not: hold an implementation.

The contract is shaped by what the local tree does fast, without forcing a
copy on it: reads hand out an OS file descriptor when the tree's
`zero_copy` capability says so, so that downloads, ranges and stored zips
go by sendfile. A tree without it (an object store) would stream instead;
handlers ask for the capability, they do not assume it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from ..protocol.paths import RelPath


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: float
    etag: str


class FilesTree(Protocol):
    # open_read gives OS fds and resolve real paths (sendfile, pathsend).
    zero_copy: ClassVar[bool]
    root: Path

    @property
    def state_dir(self) -> Path:
        """Where the embedded state backend may keep its files."""

    def ensure_layout(self) -> None: ...

    # -- reading -----------------------------------------------------------

    def open_read(self, rel: RelPath) -> tuple[int, os.stat_result]:
        """An open file or directory at `rel` and its stat; refuses paths
        that leave the tree or name internal state."""

    def resolve(self, rel: RelPath) -> str:
        """The real path of `rel`, checked to stay inside the tree."""

    def list_dir(self, rel: RelPath) -> list[Entry]:
        """Entries without internal names or escaping links (blocking)."""

    def stat_file(self, path: str) -> os.stat_result | None: ...

    def etag(self, st: os.stat_result) -> str:
        """The strong ETag of a file with this stat (SPEC: strong, changes
        with every write)."""

    # -- writing: stage beside the target, then commit atomically ------------

    def target_for_write(self, rel: RelPath) -> tuple[str, list[str]]:
        """Where an upload to `rel` lands, and the directories made for it
        (removed again if the upload fails)."""

    def directory_for_write(self, rel: RelPath) -> tuple[str, list[str]]: ...

    def session_staging_path(self, sid: str) -> str:
        """The staging file of an upload session."""

    def free_bytes(self) -> int:
        """Free space for session staging."""

    def delete(self, rel: RelPath, check: Callable[[os.stat_result | None], None]) -> None: ...
