"""Upload decisions: where a URL points, which chunks are left, tus fields.

Owns: splitting `http://host/[prefix/]files/dir/name` into the server's base
URL and the remote path; chunk arithmetic; reading an `/uploads` session
(SPEC "Resumable chunked uploads") into what is still missing; the tus 1.0.0
`Upload-Metadata` field and the fingerprint a tus upload is remembered by.
Pure: no I/O; `upload` does it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

FILES_PREFIX = "/files/"


@dataclass(frozen=True)
class UploadTarget:
    base_url: str  # scheme://host:port[/mount], no trailing slash
    remote_path: str  # decoded, relative to the served root, e.g. "dir/name.bin"

    def files_url(self) -> str:
        return f"{self.base_url}{FILES_PREFIX}{quote(self.remote_path)}"


@dataclass(frozen=True)
class Session:
    """An `/uploads` session as the server describes it."""

    id: str
    chunk_size: int
    chunks: int
    received: frozenset[int]
    complete: bool


def resolve_upload_target(url: str, local_name: str) -> UploadTarget:
    """`…/files/dir/name.bin` uploads to `dir/name.bin`; `…/files/dir/` (a
    trailing slash) to `dir/<local_name>`. Whatever precedes `/files/` is the
    server's base URL, so a server mounted under a prefix works too."""
    parts = urlsplit(url)
    index = parts.path.find(FILES_PREFIX)
    if parts.scheme not in ("http", "https") or index < 0:
        raise ValueError(f"{url!r}: expected http[s]://HOST[:PORT]/files/PATH")
    remote = unquote(parts.path[index + len(FILES_PREFIX):])
    if remote == "" or remote.endswith("/"):
        remote += local_name
    base = urlunsplit((parts.scheme, parts.netloc, parts.path[:index], "", ""))
    return UploadTarget(base, remote)


def count_chunks(size: int, chunk_size: int) -> int:
    """An empty file is still one (empty) chunk, so it has something to send."""
    return max(1, -(-size // chunk_size))


def chunk_span(index: int, chunk_size: int, size: int) -> tuple[int, int]:
    """(offset, length) of chunk `index`."""
    offset = index * chunk_size
    return offset, max(0, min(chunk_size, size - offset))


def parse_session(payload: Mapping[str, object]) -> Session:
    """The session JSON of `POST /uploads` / `GET /uploads/{id}`; ValueError if malformed."""
    try:
        received = payload.get("received") or []
        return Session(
            id=str(payload.get("id", "")), chunk_size=int(payload.get("chunk_size") or 0),  # type: ignore[call-overload]
            chunks=int(payload.get("chunks") or 0),  # type: ignore[call-overload]
            received=frozenset(int(i) for i in received),  # type: ignore[attr-defined]
            complete=bool(payload.get("complete", False)),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed upload session: {exc}") from None


def plan_missing_chunks(session: Session) -> list[int]:
    """Chunk indexes the server does not have yet, in file order."""
    return [i for i in range(session.chunks) if i not in session.received]


def format_upload_metadata(metadata: Mapping[str, str]) -> str:
    """tus 1.0.0 `Upload-Metadata`: `key base64(value)` pairs, comma-separated."""
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in metadata.items())


def format_upload_checksum(data: bytes) -> str:
    """tus checksum extension: `Upload-Checksum: sha256 <base64 digest>`."""
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


def fingerprint_tus_upload(local_path: str, size: int, sha256_hex: str, endpoint: str, remote_path: str) -> str:
    """What a tus upload is remembered by (tus clients keep a URL per fingerprint):
    the same bytes to the same place; a changed file is a new upload."""
    return hashlib.sha256(f"{local_path}\0{size}\0{sha256_hex}\0{endpoint}\0{remote_path}".encode()).hexdigest()
