"""Signed expiring links: an HMAC over (method, path, expiry).

Owns the canonical message, the signature encoding and the verification
rules. It must not read the clock (``now`` is passed in), parse URLs or
choose the secret: the handler builds ``?expires=...&sig=...`` and passes
the path in the same canonical form when signing and when verifying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

# Longest lifetime a link may be given: 7 days, the limit AWS puts on S3
# presigned URLs (SigV4 X-Amz-Expires <= 604800), so a leaked link cannot
# stay useful for long.
MAX_LINK_LIFETIME_S = 7 * 24 * 3600

# Nodes of a cluster sign and verify with their own clocks: a link that
# claims to live longer than MAX_LINK_LIFETIME_S plus this slack from now was
# not minted under the current policy and is refused.
CLOCK_SKEW_ALLOWANCE_S = 300

# A Unix time in seconds fits in 12 digits until the year 33658; longer
# strings are refused before int() sees them.
MAX_EXPIRES_DIGITS = 12

# Prefix that ties signatures to this use of the secret (domain separation):
# the same secret signing something else can never produce a valid link.
_MESSAGE_CONTEXT = "asgi_xfer signed link v1"

# HEAD is GET without the body (RFC 9110 §9.3.2: the server SHOULD send the
# same header fields), so a GET link also answers HEAD, which clients use to
# learn the size before a ranged download. The reverse is not granted.
_ALSO_ALLOWED_BY = {"HEAD": "GET"}


def _message(method: str, path: str, expires: int) -> bytes:
    # Fields joined by "\n": the method is a token and the path is refused
    # if it holds "\n", so no two (method, path, expires) give one message.
    if "\n" in path or "\n" in method:
        raise ValueError("a signed path or method cannot contain a newline")
    text = "\n".join((_MESSAGE_CONTEXT, method.upper(), path, str(expires)))
    return text.encode("utf-8", "surrogatepass")


def sign_link(secret: bytes, method: str, path: str, expires: int) -> str:
    """The signature (unpadded base64url of HMAC-SHA256) for this link."""
    digest = hmac.new(secret, _message(method, path, expires), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _parse_expires(expires: str) -> int | None:
    if not expires.isascii() or not expires.isdigit() or len(expires) > MAX_EXPIRES_DIGITS:
        return None
    return int(expires)


def _signature_matches(secret: bytes, method: str, path: str, expires: int, sig: bytes) -> bool:
    expected = sign_link(secret, method, path, expires).encode("ascii")
    return hmac.compare_digest(expected, sig)


def verify_link(secret: bytes, method: str, path: str, expires: str, sig: str, now: float) -> bool:
    """True if ``sig`` was made by ``sign_link`` for this request and is live.

    False for an expired link (``now >= expires``), one whose lifetime
    exceeds the policy, a malformed ``expires`` or ``sig``, or another
    method or path.
    """
    deadline = _parse_expires(expires)
    if deadline is None or now >= deadline:
        return False
    if deadline - now > MAX_LINK_LIFETIME_S + CLOCK_SKEW_ALLOWANCE_S:
        return False
    if "\n" in path or "\n" in method or not sig.isascii():
        return False
    sig_bytes = sig.encode("ascii")
    method = method.upper()
    candidates = (method, _ALSO_ALLOWED_BY[method]) if method in _ALSO_ALLOWED_BY else (method,)
    # Evaluate every candidate (no short-circuit) so timing does not reveal
    # which one matched.
    results = [_signature_matches(secret, m, path, deadline, sig_bytes) for m in candidates]
    return any(results)
