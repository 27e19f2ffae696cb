"""Signed links: every field tampered, time injected."""

from __future__ import annotations

import base64
import string

import pytest

from asgi_xfer.protocol.signing import (
    CLOCK_SKEW_ALLOWANCE_S,
    MAX_LINK_LIFETIME_S,
    sign_link,
    verify_link,
)

SECRET = b"\x17" * 32
NOW = 1_700_000_000.0
EXPIRES = int(NOW) + 3600
PATH = "docs/report 2024.pdf"
SIG = sign_link(SECRET, "GET", PATH, EXPIRES)


def flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def test_signature_is_unpadded_base64url_of_sha256() -> None:
    assert len(SIG) == 43  # 32 bytes, no "=" padding (RFC 4648 §5)
    assert set(SIG) <= set(string.ascii_letters + string.digits + "-_")
    assert len(base64.urlsafe_b64decode(SIG + "=")) == 32


def test_valid_link_verifies() -> None:
    assert verify_link(SECRET, "GET", PATH, str(EXPIRES), SIG, NOW)


def test_method_is_upper_cased() -> None:
    assert sign_link(SECRET, "get", PATH, EXPIRES) == SIG
    assert verify_link(SECRET, "get", PATH, str(EXPIRES), SIG, NOW)


def test_head_is_allowed_by_a_get_link_but_not_the_reverse() -> None:
    assert verify_link(SECRET, "HEAD", PATH, str(EXPIRES), SIG, NOW)
    head_sig = sign_link(SECRET, "HEAD", PATH, EXPIRES)
    assert verify_link(SECRET, "HEAD", PATH, str(EXPIRES), head_sig, NOW)
    assert not verify_link(SECRET, "GET", PATH, str(EXPIRES), head_sig, NOW)


@pytest.mark.parametrize(
    ("now", "valid"),
    [
        (NOW, True),
        (EXPIRES - 0.001, True),
        (EXPIRES, False),  # expired at the instant itself
        (EXPIRES + 1, False),
        (EXPIRES + 10**9, False),
    ],
)
def test_expiry(now: float, valid: bool) -> None:
    assert verify_link(SECRET, "GET", PATH, str(EXPIRES), SIG, now) is valid


@pytest.mark.parametrize(
    ("secret", "method", "path", "expires", "sig"),
    [
        (b"\x18" * 32, "GET", PATH, str(EXPIRES), SIG),
        (SECRET, "PUT", PATH, str(EXPIRES), SIG),
        (SECRET, "DELETE", PATH, str(EXPIRES), SIG),
        (SECRET, "POST", PATH, str(EXPIRES), SIG),
        (SECRET, "GET", PATH + "x", str(EXPIRES), SIG),
        (SECRET, "GET", "docs/other.pdf", str(EXPIRES), SIG),
        (SECRET, "GET", "/" + PATH, str(EXPIRES), SIG),
        (SECRET, "GET", PATH.upper(), str(EXPIRES), SIG),
        (SECRET, "GET", PATH, str(EXPIRES + 1), SIG),
        (SECRET, "GET", PATH, str(EXPIRES - 1), SIG),
        (SECRET, "GET", PATH, str(EXPIRES), flip(SIG, 0)),
        (SECRET, "GET", PATH, str(EXPIRES), flip(SIG, 42)),
        (SECRET, "GET", PATH, str(EXPIRES), SIG[:-1]),
        (SECRET, "GET", PATH, str(EXPIRES), SIG + "="),
        (SECRET, "GET", PATH, str(EXPIRES), SIG + "A"),
        (SECRET, "GET", PATH, str(EXPIRES), ""),
        (SECRET, "GET", PATH, str(EXPIRES), "é" * 43),
        (SECRET, "GET", PATH, str(EXPIRES), SIG.replace("-", "+").replace("_", "/") + "Z"),
        # Malformed expires values.
        (SECRET, "GET", PATH, "", SIG),
        (SECRET, "GET", PATH, "abc", SIG),
        (SECRET, "GET", PATH, f" {EXPIRES}", SIG),
        (SECRET, "GET", PATH, f"{EXPIRES}.0", SIG),
        (SECRET, "GET", PATH, f"+{EXPIRES}", SIG),
        (SECRET, "GET", PATH, "-1", SIG),
        (SECRET, "GET", PATH, "1.7e9", SIG),
        (SECRET, "GET", PATH, "１７００００３６００", SIG),  # non-ASCII digits
        (SECRET, "GET", PATH, "9" * 5000, SIG),
        (SECRET, "GET", PATH + "\n", str(EXPIRES), SIG),
    ],
)
def test_tampering_fails(secret: bytes, method: str, path: str, expires: str, sig: str) -> None:
    assert not verify_link(secret, method, path, expires, sig, NOW)


def test_every_field_changes_the_signature() -> None:
    variants = [("GET", PATH, EXPIRES), ("PUT", PATH, EXPIRES), ("GET", "a", EXPIRES), ("GET", PATH, 1)]
    assert len({sign_link(SECRET, *v) for v in variants}) == len(variants)
    assert sign_link(b"other", "GET", PATH, EXPIRES) != SIG


def test_links_beyond_the_lifetime_policy_are_refused() -> None:
    longest = int(NOW) + MAX_LINK_LIFETIME_S
    assert verify_link(SECRET, "GET", PATH, str(longest), sign_link(SECRET, "GET", PATH, longest), NOW)
    too_far = longest + CLOCK_SKEW_ALLOWANCE_S + 1
    assert not verify_link(SECRET, "GET", PATH, str(too_far), sign_link(SECRET, "GET", PATH, too_far), NOW)


def test_max_lifetime_is_seven_days() -> None:
    assert MAX_LINK_LIFETIME_S == 604800  # S3 presigned URL limit in seconds


@pytest.mark.parametrize(("method", "path"), [("GET", "a\nb"), ("GET\n", "a")])
def test_newlines_cannot_be_signed(method: str, path: str) -> None:
    with pytest.raises(ValueError):
        sign_link(SECRET, method, path, EXPIRES)


def test_unicode_and_surrogate_paths_sign() -> None:
    path = "données/\udcff.bin"  # an undecodable name, as os.fsdecode gives it
    sig = sign_link(SECRET, "GET", path, EXPIRES)
    assert verify_link(SECRET, "GET", path, str(EXPIRES), sig, NOW)
    assert not verify_link(SECRET, "GET", "données/\udcfe.bin", str(EXPIRES), sig, NOW)
