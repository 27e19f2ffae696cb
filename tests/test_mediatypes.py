"""JSON request bodies must say they are JSON (RFC 9110 §8.3, RFC 6839 §3.1)."""

from __future__ import annotations

import pytest

from asgi_xfer.protocol.mediatypes import is_json, parse_essence


@pytest.mark.parametrize(("value", "expected"), [
    ("application/json", True),
    ("Application/JSON; charset=utf-8", True),
    ("application/merge-patch+json", True),
    ("text/plain", False),
    ("text/plain;charset=UTF-8", False),
    ("application/x-www-form-urlencoded", False),  # curl -d
    ("multipart/form-data; boundary=x", False),
    ("text/json+xml", False),
    ("application", False),
    ("", False),
    (None, False),
])
def test_is_json(value: str | None, expected: bool) -> None:
    assert is_json(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ("text/HTML; charset=x", "text/html"),
    (" image/png ", "image/png"),
    ("/png", None),
    ("image/", None),
    ("image /png", None),
])
def test_parse_essence(value: str, expected: str | None) -> None:
    assert parse_essence(value) == expected
