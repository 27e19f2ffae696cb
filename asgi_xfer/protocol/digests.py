"""Integrity fields: RFC 9530 `Content-Digest`/`Repr-Digest` and `Content-MD5`.

Owns: parsing the fields into expected digests per algorithm, formatting
them, and the hashers for a set of algorithms. Must not: read bodies; the
caller feeds bytes to `Hashers` wherever the bytes pass.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping

from .errors import BadRequest, ChecksumMismatch

# RFC 9530 §5 registry names we verify, mapped to hashlib. Others (e.g. the
# deprecated "sha" or "unixsum") are ignored as §2 allows.
ALGORITHMS = {"sha-256": "sha256", "sha-512": "sha512", "md5": "md5"}
# Everything `Hashers` can compute: the above plus tus's checksum names.
HASHLIB_NAMES = {**ALGORITHMS, "sha1": "sha1", "sha256": "sha256"}
# A field that large is no digest list; refuse before any regex work.
MAX_DIGEST_FIELD_BYTES = 4096

_MEMBER = re.compile(r"\s*([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:;[^,]*)?\s*$")


def parse_content_digest(value: str) -> dict[str, bytes]:
    """`sha-256=:BASE64:, md5=:...:` (an RFC 8941 dictionary of byte
    sequences) → {algorithm: digest} for the algorithms we know."""
    if len(value) > MAX_DIGEST_FIELD_BYTES:
        raise BadRequest("Content-Digest field too long")
    found: dict[str, bytes] = {}
    for member in value.split(","):
        if not member.strip():
            continue
        match = _MEMBER.match(member)
        if match is None:
            raise BadRequest("malformed Content-Digest field (RFC 9530 §2)")
        name, b64 = match.group(1), match.group(2)
        try:
            digest = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"Content-Digest {name}: invalid base64") from None
        if name in ALGORITHMS:
            expected_len = hashlib.new(ALGORITHMS[name]).digest_size
            if len(digest) != expected_len:
                raise BadRequest(f"Content-Digest {name}: expected {expected_len} bytes")
            found[name] = digest
    return found


def parse_content_md5(value: str) -> bytes:
    """RFC 1864: the base64 of the body's MD5."""
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Content-MD5: invalid base64") from None
    if len(digest) != 16:
        raise BadRequest("Content-MD5: expected 16 bytes")
    return digest


def expected_digests(headers: Mapping[str, str]) -> dict[str, bytes]:
    """Every digest the request promises for its body."""
    expected: dict[str, bytes] = {}
    if "content-digest" in headers:
        expected.update(parse_content_digest(headers["content-digest"]))
    if "content-md5" in headers:
        md5 = parse_content_md5(headers["content-md5"])
        if expected.get("md5", md5) != md5:
            raise BadRequest("Content-MD5 and Content-Digest md5 disagree")
        expected["md5"] = md5
    return expected


def wants_sha256(value: str | None) -> bool:
    """`Want-Repr-Digest` (RFC 9530 §4) asks for sha-256 with a preference
    above 0 (0 means "not acceptable")."""
    if not value or len(value) > MAX_DIGEST_FIELD_BYTES:
        return False
    for member in value.split(","):
        name, _, weight = member.strip().partition("=")
        if name.strip().lower() == "sha-256":
            return weight.strip() not in ("0",)
    return False


def format_digest_field(algorithm: str, digest: bytes) -> str:
    return f"{algorithm}=:{base64.b64encode(digest).decode()}:"


class Hashers:
    """The digests named (RFC 9530 or tus names), computed over the same bytes.
    Only what is asked: on machines without SHA extensions SHA-256 runs at a
    few hundred MB/s and is the cost of an upload."""

    def __init__(self, algorithms: Iterable[str] = ()) -> None:
        self._hashes = {name: hashlib.new(HASHLIB_NAMES[name]) for name in set(algorithms)}

    @property
    def active(self) -> bool:
        return bool(self._hashes)

    def update(self, data: bytes) -> None:
        for h in self._hashes.values():
            h.update(data)

    def digests(self) -> dict[str, bytes]:
        return {name: h.digest() for name, h in self._hashes.items()}


def verify_digests(expected: Mapping[str, bytes], actual: Mapping[str, bytes]) -> None:
    for name, digest in expected.items():
        if actual.get(name) != digest:
            raise ChecksumMismatch(f"body does not match its {name} digest")
