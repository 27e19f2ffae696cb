"""Who may do what: bearer tokens, public read, signed links.

Owns: the access decision for one request, given its route's access level.
Must not: do I/O; the signing secret and the clock are passed in.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping

from .errors import Forbidden, Unauthorized
from .signing import verify_link


class Access(enum.Enum):
    PUBLIC = "public"  # /healthz: load balancers probe without credentials
    READ = "read"  # GET/HEAD of files and archives: --public-read may open it
    WRITE = "write"  # everything else: a token or a link signed for it


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def token_matches(presented: str | None, tokens: tuple[str, ...]) -> bool:
    """Constant time in the token's content: every configured token is
    compared in full, so timing reveals neither a prefix nor which one matched."""
    if presented is None:
        return False
    candidate = presented.encode()
    found = False
    for token in tokens:
        found |= hmac.compare_digest(candidate, token.encode())
    return found


def authorize(
    access: Access,
    method: str,
    path: str,
    headers: Mapping[str, str],
    query: Mapping[str, list[str]],
    *,
    tokens: tuple[str, ...],
    no_auth: bool,
    public_read: bool,
    secret: bytes,
    now: float,
) -> None:
    """Return if the request may proceed; raise 401 or 403 otherwise."""
    if access is Access.PUBLIC or no_auth:
        return
    if token_matches(bearer_token(headers.get("authorization")), tokens):
        return
    if "sig" in query:
        # A presented link is judged on its own: tampered or expired is 403
        # (SPEC), even where public read would have let a bare GET through.
        expires = query.get("expires", [""])[-1]
        if verify_link(secret, method, path, expires, query["sig"][-1], now):
            return
        raise Forbidden("the signed link is invalid or has expired")
    if access is Access.READ and public_read:
        return
    raise Unauthorized()
