"""The embedded state backend: one SQLite file and one key file under `ROOT/.xfer/`.

Owns: building the SQLite implementations of `storage.state` on one
database, and the signing key file. Must not: be used where several
machines share ROOT over a network file system (SQLite's locking is not
safe there); that takes a shared database backend.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .contentindex import SqliteContentIndex
from .crccache import SqliteCrcCache
from .database import Database
from .sessions import SqliteSessionStore

SECRET_FILE = "secret.key"
SECRET_BYTES = 32


class SqliteState:
    def __init__(self, state_dir: Path, session_ttl_s: float) -> None:
        self.db = Database(state_dir)
        self.sessions = SqliteSessionStore(self.db, session_ttl_s)
        self.index = SqliteContentIndex(self.db)
        self.crcs = SqliteCrcCache(self.db)
        self._key = read_or_create_secret(state_dir)

    def signing_key(self) -> bytes:
        return self._key

    def close(self) -> None:
        self.db.close()


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
