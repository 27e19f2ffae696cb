"""Preconditions (RFC 9110 §13), entity-tag comparison (§8.8.3.2), HTTP-dates."""

from __future__ import annotations

import datetime

import pytest

from asgi_xfer.protocol.conditional import (
    Outcome,
    Validators,
    evaluate_if_range,
    evaluate_preconditions,
    format_http_date,
    parse_etag_list,
    parse_http_date,
    strong_match,
    weak_match,
)

# The RFC 9110 §5.6.7 example instant, "Sun, 06 Nov 1994 08:49:37 GMT",
# computed by the stdlib rather than written out.
T = int(datetime.datetime(1994, 11, 6, 8, 49, 37, tzinfo=datetime.timezone.utc).timestamp())
AT_T = "Sun, 06 Nov 1994 08:49:37 GMT"
BEFORE_T = "Sun, 06 Nov 1994 08:49:36 GMT"
AFTER_T = "Sun, 06 Nov 1994 08:49:38 GMT"

CURRENT = Validators(etag='"xyzzy"', last_modified=T)
WEAK_CURRENT = Validators(etag='W/"xyzzy"', last_modified=T)
NO_DATE = Validators(etag='"xyzzy"', last_modified=None)

PROCEED = Outcome.PROCEED
NOT_MODIFIED = Outcome.NOT_MODIFIED
FAILED = Outcome.PRECONDITION_FAILED


@pytest.mark.parametrize(
    ("a", "b", "strong", "weak"),
    [
        # RFC 9110 §8.8.3.2, the comparison table row by row.
        ('W/"1"', 'W/"1"', False, True),
        ('W/"1"', 'W/"2"', False, False),
        ('W/"1"', '"1"', False, True),
        ('"1"', '"1"', True, True),
    ],
)
def test_entity_tag_comparison_table(a: str, b: str, strong: bool, weak: bool) -> None:
    assert strong_match(a, b) is strong and strong_match(b, a) is strong
    assert weak_match(a, b) is weak and weak_match(b, a) is weak


@pytest.mark.parametrize(
    ("method", "headers", "current", "expected"),
    [
        ("GET", {}, CURRENT, PROCEED),
        # Step 1, If-Match (§13.1.1): strong comparison; "*" needs a
        # current representation.
        ("GET", {"if-match": '"xyzzy"'}, CURRENT, PROCEED),
        ("PUT", {"if-match": '"xyzzy", "r2d2xxxx", "c3piozzzz"'}, CURRENT, PROCEED),
        ("PUT", {"if-match": '"r2d2xxxx"'}, CURRENT, FAILED),
        ("GET", {"if-match": 'W/"xyzzy"'}, CURRENT, FAILED),
        ("GET", {"if-match": 'W/"xyzzy"'}, WEAK_CURRENT, FAILED),
        ("GET", {"if-match": '"xyzzy"'}, WEAK_CURRENT, FAILED),
        ("PUT", {"if-match": "*"}, CURRENT, PROCEED),
        ("PUT", {"if-match": "*"}, None, FAILED),
        ("PUT", {"if-match": '"xyzzy"'}, None, FAILED),
        ("DELETE", {"if-match": "garbage"}, CURRENT, FAILED),
        # Step 2, If-Unmodified-Since (§13.1.4), only without If-Match.
        ("PUT", {"if-unmodified-since": AT_T}, CURRENT, PROCEED),
        ("PUT", {"if-unmodified-since": AFTER_T}, CURRENT, PROCEED),
        ("PUT", {"if-unmodified-since": BEFORE_T}, CURRENT, FAILED),
        ("GET", {"if-unmodified-since": BEFORE_T}, CURRENT, FAILED),
        ("PUT", {"if-unmodified-since": "yesterday"}, CURRENT, PROCEED),
        ("PUT", {"if-unmodified-since": f"{AT_T}, {BEFORE_T}"}, CURRENT, PROCEED),
        ("PUT", {"if-unmodified-since": BEFORE_T}, NO_DATE, PROCEED),
        ("PUT", {"if-unmodified-since": BEFORE_T}, None, PROCEED),
        ("PUT", {"if-match": '"xyzzy"', "if-unmodified-since": BEFORE_T}, CURRENT, PROCEED),
        # Step 3, If-None-Match (§13.1.2): weak comparison; 304 for GET and
        # HEAD, 412 otherwise.
        ("GET", {"if-none-match": '"xyzzy"'}, CURRENT, NOT_MODIFIED),
        ("HEAD", {"if-none-match": '"xyzzy"'}, CURRENT, NOT_MODIFIED),
        ("GET", {"if-none-match": 'W/"xyzzy"'}, CURRENT, NOT_MODIFIED),
        ("GET", {"if-none-match": '"xyzzy"'}, WEAK_CURRENT, NOT_MODIFIED),
        ("GET", {"if-none-match": 'W/"xyzzy", W/"r2d2xxxx", W/"c3piozzzz"'}, CURRENT, NOT_MODIFIED),
        ("GET", {"if-none-match": '"r2d2xxxx"'}, CURRENT, PROCEED),
        ("PUT", {"if-none-match": '"xyzzy"'}, CURRENT, FAILED),
        ("DELETE", {"if-none-match": '"xyzzy"'}, CURRENT, FAILED),
        ("POST", {"if-none-match": '"xyzzy"'}, CURRENT, FAILED),
        ("GET", {"if-none-match": "*"}, CURRENT, NOT_MODIFIED),
        ("PUT", {"if-none-match": "*"}, CURRENT, FAILED),
        ("PUT", {"if-none-match": "*"}, None, PROCEED),
        ("PUT", {"if-none-match": '"xyzzy"'}, None, PROCEED),
        # Step 1 comes first: a failed If-Match is 412 even for GET.
        ("GET", {"if-match": '"r2d2xxxx"', "if-none-match": '"xyzzy"'}, CURRENT, FAILED),
        ("GET", {"if-unmodified-since": BEFORE_T, "if-none-match": '"xyzzy"'}, CURRENT, FAILED),
        ("GET", {"if-unmodified-since": AT_T, "if-none-match": '"xyzzy"'}, CURRENT, NOT_MODIFIED),
        # Step 4, If-Modified-Since (§13.1.3): GET/HEAD only, and only
        # without If-None-Match.
        ("GET", {"if-modified-since": AT_T}, CURRENT, NOT_MODIFIED),
        ("HEAD", {"if-modified-since": AFTER_T}, CURRENT, NOT_MODIFIED),
        ("GET", {"if-modified-since": BEFORE_T}, CURRENT, PROCEED),
        ("GET", {"if-modified-since": "Sunday, 06-Nov-94 08:49:37 GMT"}, CURRENT, NOT_MODIFIED),
        ("GET", {"if-modified-since": "Sun Nov  6 08:49:37 1994"}, CURRENT, NOT_MODIFIED),
        ("GET", {"if-modified-since": "not a date"}, CURRENT, PROCEED),
        ("GET", {"if-modified-since": f"{AT_T}, {AT_T}"}, CURRENT, PROCEED),
        ("GET", {"if-modified-since": AT_T}, NO_DATE, PROCEED),
        ("PUT", {"if-modified-since": AT_T}, CURRENT, PROCEED),
        ("POST", {"if-modified-since": AT_T}, CURRENT, PROCEED),
        ("GET", {"if-none-match": '"r2d2xxxx"', "if-modified-since": AT_T}, CURRENT, PROCEED),
        ("GET", {"if-none-match": '"xyzzy"', "if-modified-since": BEFORE_T}, CURRENT, NOT_MODIFIED),
    ],
)
def test_section_13_2_2_order(
    method: str, headers: dict[str, str], current: Validators | None, expected: Outcome
) -> None:
    assert evaluate_preconditions(method, headers, current) is expected


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (None, CURRENT, True),
        ('"xyzzy"', CURRENT, True),
        (' "xyzzy" ', CURRENT, True),
        ('"r2d2xxxx"', CURRENT, False),
        # §13.1.5: an entity-tag must match strongly.
        ('W/"xyzzy"', CURRENT, False),
        ('W/"xyzzy"', WEAK_CURRENT, False),
        ('"xyzzy"', WEAK_CURRENT, False),
        ('"xyzzy"', Validators(etag=None, last_modified=T), False),
        # If-Range holds one validator, not a list.
        ('"xyzzy", "r2d2xxxx"', CURRENT, False),
        # An HTTP-date must exactly match Last-Modified.
        (AT_T, CURRENT, True),
        ("Sunday, 06-Nov-94 08:49:37 GMT", CURRENT, True),
        (BEFORE_T, CURRENT, False),
        (AFTER_T, CURRENT, False),
        (AT_T, NO_DATE, False),
        ("garbage", CURRENT, False),
        ("", CURRENT, False),
    ],
)
def test_if_range(value: str | None, current: Validators, expected: bool) -> None:
    assert evaluate_if_range(value, current) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("*", None),
        (" * ", None),
        # RFC 9110 §13.1.1 and §13.1.2 examples.
        ('"xyzzy"', ['"xyzzy"']),
        ('"xyzzy", "r2d2xxxx", "c3piozzzz"', ['"xyzzy"', '"r2d2xxxx"', '"c3piozzzz"']),
        ('W/"xyzzy"', ['W/"xyzzy"']),
        ('W/"xyzzy", W/"r2d2xxxx", W/"c3piozzzz"', ['W/"xyzzy"', 'W/"r2d2xxxx"', 'W/"c3piozzzz"']),
        # §8.8.3: etagc includes ",", so a comma inside quotes is part of it.
        ('"a,b", "c"', ['"a,b"', '"c"']),
        ('""', ['""']),
        ("", []),
        (', ,"x",,', ['"x"']),
        ('abc, "x"', ['"x"']),
        ('"x"y, "z"', ['"z"']),
        ('w/"x"', []),  # the weak indicator is case-sensitive (%s"W/")
        ('"unterminated', []),
        ('"a", *', ['"a"']),
        ('"a" "b"', []),
        ('"sp ace"', []),  # SP is not an etagc
    ],
)
def test_parse_etag_list(value: str, expected: list[str] | None) -> None:
    assert parse_etag_list(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        # RFC 9110 §5.6.7: the same instant in the three formats.
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ],
)
def test_parse_http_date_three_formats(value: str) -> None:
    assert parse_http_date(value, now=T) == T


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Sun, 06 Nov 1994 08:49:37 gmt",  # HTTP-date is case-sensitive
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",  # day = 2DIGIT in IMF-fixdate
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTx",
        "1994-11-06T08:49:37Z",
        "784111777",
        "Sun,  06 Nov 1994 08:49:37 GMT",
    ],
)
def test_parse_http_date_rejects(value: str) -> None:
    assert parse_http_date(value) is None


def year_start(year: int) -> float:
    return datetime.datetime(year, 1, 1, tzinfo=datetime.timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("two_digits", "now_year", "expected_year"),
    [
        # §5.6.7: more than 50 years in the future means the previous century.
        ("94", 2024, 1994),
        ("74", 2024, 2074),
        ("75", 2024, 1975),
        ("12", 2024, 2012),
        ("99", 2060, 2099),
    ],
)
def test_rfc850_two_digit_year(two_digits: str, now_year: int, expected_year: int) -> None:
    value = f"Friday, 01-Jan-{two_digits} 00:00:00 GMT"
    assert parse_http_date(value, now=year_start(now_year)) == year_start(expected_year)


def test_format_http_date() -> None:
    assert format_http_date(T) == AT_T  # the §5.6.7 example
    assert format_http_date(T + 0.999) == AT_T
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_format_then_parse_round_trips() -> None:
    for ts in (0, T, 951782400, 2**31 + 12345, 4102444799):  # incl. 2000-02-29
        assert parse_http_date(format_http_date(ts)) == ts


@pytest.mark.parametrize(("headers", "expected"), [
    ({"if-none-match": "*"}, True),
    ({"if-none-match": " * "}, True),
    ({"if-none-match": '"a"'}, False),
    ({"if-none-match": 'W/"a", "b"'}, False),
    ({"if-match": "*"}, False),
    ({}, False),
])
def test_requires_absent(headers: dict[str, str], expected: bool) -> None:
    from asgi_xfer.protocol.conditional import requires_absent

    assert requires_absent(headers) is expected
