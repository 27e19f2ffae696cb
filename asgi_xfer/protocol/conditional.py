"""Conditional requests (RFC 9110 §13), entity-tags (§8.8.3), HTTP-dates (§5.6.7).

Owns the precondition order of §13.2.2, entity-tag comparison, If-Range, and
parsing and formatting HTTP-dates. It decides with values only: it must not
stat files or compute ETags (the handler passes the current ``Validators``),
and it must not build responses.
"""

from __future__ import annotations

import calendar
import datetime
import enum
import functools
import re
import time
from collections.abc import Mapping
from email.utils import formatdate
from typing import NamedTuple

# §5.6.7: rfc850-date has a two-digit year; a recipient MUST read one that
# "appears to be more than 50 years in the future" as the most recent past
# year with the same last two digits.
RFC850_FUTURE_WINDOW_YEARS = 50

_SAFE_METHODS_FOR_304 = frozenset({"GET", "HEAD"})  # §13.2.2 steps 3 and 4

_WEEKDAYS = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_LONG_WEEKDAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "|".join(_MONTHS)
_TIME = r"(\d\d):(\d\d):(\d\d)"
# HTTP-date is case-sensitive (§5.6.7), so no re.IGNORECASE.
_IMF_FIXDATE = re.compile(rf"(?:{_WEEKDAYS}), (\d\d) ({_MONTH}) (\d{{4}}) {_TIME} GMT")
_RFC850_DATE = re.compile(rf"(?:{_LONG_WEEKDAYS}), (\d\d)-({_MONTH})-(\d\d) {_TIME} GMT")
_ASCTIME_DATE = re.compile(rf"(?:{_WEEKDAYS}) ({_MONTH}) ([ \d]\d) {_TIME} (\d{{4}})")

# §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, with
# etagc = %x21 / %x23-7E / obs-text. A comma is an etagc, so list elements
# are found by matching whole tags, not by splitting on commas.
_ETAG_ELEMENT = re.compile(r'[ \t]*((?:W/)?"[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|$)')
_LIST_SEPARATORS = " \t,"  # OWS and empty list elements (§5.6.1)


class Validators(NamedTuple):
    """The current representation's validators.

    A NamedTuple rather than a frozen dataclass: equally immutable, and a
    third of the cost to build, which matters once per request."""

    etag: str | None  # full quoted form, e.g. '"abc"' or 'W/"abc"'
    last_modified: int | None  # epoch seconds


class Outcome(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"  # 304
    PRECONDITION_FAILED = "precondition_failed"  # 412


# -- HTTP-date ---------------------------------------------------------------


def _epoch(year: int, month_name: str, day: int, hms: tuple[str, str, str]) -> int | None:
    hour, minute, second = (int(x) for x in hms)
    # second may be 60 (a leap second, RFC 5322 §3.3); timegm carries it over.
    if hour > 23 or minute > 59 or second > 60:
        return None
    try:
        datetime.date(year, _MONTHS.index(month_name) + 1, day)
    except ValueError:
        return None
    return calendar.timegm((year, _MONTHS.index(month_name) + 1, day, hour, minute, second))


def _rfc850_year(two_digits: int, now: float) -> int:
    this_year = time.gmtime(now).tm_year
    year = this_year - this_year % 100 + two_digits
    if year > this_year + RFC850_FUTURE_WINDOW_YEARS:
        year -= 100
    return year


def parse_http_date(value: str, now: float | None = None) -> int | None:
    """Epoch seconds of an HTTP-date (§5.6.7), or None if it is not one.

    Accepts IMF-fixdate and, as §5.6.7 requires of recipients, the obsolete
    rfc850-date and asctime-date. ``now`` (default: the clock) only places
    rfc850's two-digit year.
    """
    value = value.strip(" \t")
    if m := _IMF_FIXDATE.fullmatch(value):
        return _epoch(int(m[3]), m[2], int(m[1]), (m[4], m[5], m[6]))
    if m := _RFC850_DATE.fullmatch(value):
        year = _rfc850_year(int(m[3]), time.time() if now is None else now)
        return _epoch(year, m[2], int(m[1]), (m[4], m[5], m[6]))
    if m := _ASCTIME_DATE.fullmatch(value):
        return _epoch(int(m[6]), m[1], int(m[2]), (m[3], m[4], m[5]))
    return None


def format_http_date(ts: float) -> str:
    """IMF-fixdate, the form §5.6.7 says a sender MUST generate."""
    return _format_whole_seconds(int(ts))


@functools.lru_cache(maxsize=4096)
def _format_whole_seconds(ts: int) -> str:
    # Cached: every response of a file carries its Last-Modified, and
    # formatdate costs more than the rest of a small file's headers.
    return formatdate(ts, usegmt=True)


# -- entity-tags ---------------------------------------------------------------


def parse_etag_list(value: str) -> list[str] | None:
    """The entity-tags of an If-Match / If-None-Match value; None for "*".

    Elements that are not entity-tags are skipped up to the next comma, so
    garbage can never be taken for a tag (nor make a match succeed).
    """
    value = value.strip(" \t")
    if value == "*":
        return None
    tags: list[str] = []
    pos = 0
    while pos < len(value):
        if value[pos] in _LIST_SEPARATORS:
            pos += 1
            continue
        if m := _ETAG_ELEMENT.match(value, pos):
            tags.append(m[1])
            pos = m.end()
            continue
        comma = value.find(",", pos)
        pos = len(value) if comma < 0 else comma + 1
    return tags


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def strong_match(a: str, b: str) -> bool:
    """§8.8.3.2: neither tag weak and the opaque-tags identical."""
    return not a.startswith("W/") and not b.startswith("W/") and a == b


def weak_match(a: str, b: str) -> bool:
    """§8.8.3.2: the opaque-tags identical, whether or not either is weak."""
    return _opaque(a) == _opaque(b)


# -- preconditions (§13.1, evaluated in §13.2.2 order) -------------------------


def _if_match(value: str, current: Validators | None) -> bool:
    """§13.1.1: "*" needs a current representation; else a strong match."""
    tags = parse_etag_list(value)
    if tags is None:
        return current is not None
    if current is None or current.etag is None:
        return False
    return any(strong_match(tag, current.etag) for tag in tags)


def _if_none_match(value: str, current: Validators | None) -> bool:
    """§13.1.2: "*" is false if a representation exists; else no weak match."""
    tags = parse_etag_list(value)
    if tags is None:
        return current is None
    if current is None or current.etag is None:
        return True
    return not any(weak_match(tag, current.etag) for tag in tags)


def _modified_since(value: str, current: Validators | None) -> bool | None:
    """Whether the representation changed after the date in ``value``.

    None means the date precondition must be ignored (§13.1.3, §13.1.4): an
    invalid HTTP-date (a list of dates is invalid too) or a resource with no
    modification date.
    """
    if current is None or current.last_modified is None:
        return None
    date = parse_http_date(value)
    return None if date is None else current.last_modified > date


def evaluate_preconditions(
    method: str, headers: Mapping[str, str], current: Validators | None
) -> Outcome:
    """The §13.2.2 steps 1-4; If-Range (step 5) is ``evaluate_if_range``.

    ``headers`` has lowercase names; ``current`` is None when the target has
    no current representation (a PUT creating a file). Per §13.2.1 the
    caller skips this when the response would not be 2xx/412 anyway (a 404
    for a GET of a missing file, a 401).
    """
    if (if_match := headers.get("if-match")) is not None:  # step 1
        if not _if_match(if_match, current):
            return Outcome.PRECONDITION_FAILED
    elif (since := headers.get("if-unmodified-since")) is not None:  # step 2
        # §13.1.4: false when the representation changed after the date.
        if _modified_since(since, current) is True:
            return Outcome.PRECONDITION_FAILED
    if (if_none_match := headers.get("if-none-match")) is not None:  # step 3
        if not _if_none_match(if_none_match, current):
            if method in _SAFE_METHODS_FOR_304:
                return Outcome.NOT_MODIFIED
            return Outcome.PRECONDITION_FAILED
    elif method in _SAFE_METHODS_FOR_304 and (
        (since := headers.get("if-modified-since")) is not None  # step 4
    ):
        # §13.1.3: false (304) unless modified after the date.
        if _modified_since(since, current) is False:
            return Outcome.NOT_MODIFIED
    return Outcome.PROCEED


def requires_absent(headers: Mapping[str, str]) -> bool:
    """`If-None-Match: *` on a write: it may only create (§13.1.2, "to
    prevent an unsafe request method from inadvertently modifying an
    existing representation"), so the storage must commit create-only, not
    merely check before the body arrives."""
    return "if-none-match" in headers and parse_etag_list(headers["if-none-match"]) is None


def evaluate_if_range(value: str | None, current: Validators) -> bool:
    """§13.1.5: True to honour the Range header, False to send the full 200.

    No If-Range means honour Range. An entity-tag must match strongly (a
    weak tag on either side never does); an HTTP-date must exactly equal
    Last-Modified; anything else is false.
    """
    if value is None:
        return True
    value = value.strip(" \t")
    if value.startswith(('"', "W/")):
        tags = parse_etag_list(value)
        if not tags or len(tags) != 1 or current.etag is None:
            return False
        return strong_match(tags[0], current.etag)
    date = parse_http_date(value)
    return date is not None and date == current.last_modified
