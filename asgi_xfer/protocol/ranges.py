"""Byte ranges (RFC 9110 §14): parse a Range header, decide what to send.

Owns the Range grammar, satisfiability, coalescing, the anti-amplification
rule and the Content-Range strings. It returns a ``RangePlan`` value that the
download handler executes; it must not open files, send anything, or know
about If-Range (that is ``conditional.evaluate_if_range``, applied before).
"""

from __future__ import annotations

from dataclasses import dataclass

# More range-specs than this and the Range header is ignored (full 200), the
# way Apache treats MaxRanges. Apache's default is 200 (set after the
# CVE-2011-3192 "Apache Killer" overlapping-ranges attack); nginx's max_ranges
# is unlimited by default. Real clients (download managers, PDF and video
# readers) ask for one range or a handful; 64 bounds the per-part seeks and
# framing of one response while staying far above legitimate use.
MAX_RANGES = 64

# Positions longer than this many significant digits are saturated instead of
# converted: 19 digits covers 2**63 - 1 (the largest off_t), and it keeps a
# hostile "bytes=0-999...9" from costing a quadratic int() or tripping
# Python's int_max_str_digits ValueError.
MAX_POSITION_DIGITS = 19
_SATURATED_POSITION = 10**MAX_POSITION_DIGITS  # beyond any real file size

# Framing bytes each multipart/byteranges part adds (boundary line,
# Content-Type, Content-Range, CRLFs): about 100 with a 32-char boundary and a
# typical media type. Used only to judge whether a multi-range response would
# be larger than the file itself (RFC 9110 §14.6 speaks of "the overhead of
# sending multiple parts").
MULTIPART_PART_OVERHEAD_BYTES = 100

_BYTES_UNIT = "bytes"
_DIGITS = frozenset("0123456789")
# RFC 9110 §5.6.2: tchar, for checking the range-unit is a token.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"  # RFC 9110 §5.6.3


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` of a representation, both inclusive."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class RangePlan:
    """What to send: "full" (200), "partial" (206) or "unsatisfiable" (416)."""

    kind: str
    ranges: tuple[ByteRange, ...] = ()


FULL = RangePlan("full")
UNSATISFIABLE = RangePlan("unsatisfiable")


def _parse_position(text: str) -> int | None:
    """1*DIGIT (RFC 9110 §14.1.1) as an int, saturated when absurdly long."""
    if not text or not set(text) <= _DIGITS:
        return None
    significant = text.lstrip("0")
    if len(significant) > MAX_POSITION_DIGITS:
        return _SATURATED_POSITION
    return int(significant or "0")


def _parse_range_spec(text: str) -> tuple[int | None, int | None] | None:
    """int-range / suffix-range (RFC 9110 §14.1.1); None if neither."""
    first_text, dash, last_text = text.partition("-")
    if not dash:
        return None
    if not first_text:  # suffix-range = "-" suffix-length
        suffix = _parse_position(last_text)
        return None if suffix is None else (None, suffix)
    first = _parse_position(first_text)
    if first is None:
        return None
    if not last_text:  # int-range without last-pos: open ended
        return (first, None)
    last = _parse_position(last_text)
    # §14.1.1: "if the last-pos value is present, it MUST be greater than or
    # equal to first-pos" or the range-spec is invalid.
    if last is None or last < first:
        return None
    return (first, last)


def parse_range_header(value: str) -> list[tuple[int | None, int | None]] | None:
    """The range-specs of a ``Range: bytes=...`` value, in request order.

    ``(None, n)`` is a suffix of n bytes, ``(n, None)`` is open ended. None
    means "ignore the header": RFC 9110 §14.2 says a recipient MUST ignore a
    Range whose range-set holds an invalid range-spec, and a server ignores
    range units it does not support.
    """
    unit, equals, range_set = value.strip(_OWS).partition("=")
    if not equals or not unit or not set(unit) <= _TCHAR:
        return None
    if unit.lower() != _BYTES_UNIT:  # §14.1: range units are case-insensitive
        return None
    specs: list[tuple[int | None, int | None]] = []
    for element in range_set.split(","):
        element = element.strip(_OWS)
        if not element:
            # §5.6.1: a recipient MUST accept and ignore empty list elements.
            continue
        spec = _parse_range_spec(element)
        if spec is None:
            return None
        specs.append(spec)
    # range-set = 1#range-spec: at least one non-empty element.
    return specs or None


def _resolve_spec(spec: tuple[int | None, int | None], size: int) -> ByteRange | None:
    """The satisfiable part of one range-spec against ``size`` bytes (§14.1.2)."""
    first, last = spec
    if first is None:
        assert last is not None
        if last == 0 or size == 0:
            return None
        # "If the selected representation is shorter than the specified
        # suffix-length, the entire representation is used."
        return ByteRange(max(size - last, 0), size - 1)
    if first >= size:
        return None
    # A missing last-pos, or one past the end, means "to the end".
    end = size - 1 if last is None or last >= size else last
    return ByteRange(first, end)


def _coalesce(ranges: list[ByteRange]) -> tuple[ByteRange, ...]:
    """Merge overlapping and adjacent ranges (allowed by RFC 9110 §14.6), in
    request order.

    RFC 9110 §15.3.7.2: a server "SHOULD send the parts in the same order that
    the corresponding range-spec appeared in the received Range header field,
    excluding those ranges that were deemed unsatisfiable or that were
    coalesced into other ranges". A merged range stands where the first of
    the specs it absorbed was requested.
    """
    merged: list[ByteRange] = []
    first_asked: list[int] = []
    for position, r in sorted(enumerate(ranges), key=lambda item: (item[1].start, item[1].end)):
        if merged and r.start <= merged[-1].end + 1:
            last = merged[-1]
            merged[-1] = ByteRange(last.start, max(last.end, r.end))
            first_asked[-1] = min(first_asked[-1], position)
        else:
            merged.append(r)
            first_asked.append(position)
    return tuple(r for _, r in sorted(zip(first_asked, merged), key=lambda item: item[0]))


def plan_ranges(header: str | None, size: int) -> RangePlan:
    """Decide between 200, 206 and 416 for a Range header and a size.

    Anti-amplification (RFC 9110 §14.2 lets a server ignore abusive sets):
    more than MAX_RANGES specs, or a multi-range answer whose data plus part
    framing would be at least the whole file, gets the full 200 instead. The
    second rule is Apache's "sum of ranges >= file size" check with the
    framing counted: the client then gets every byte it asked for, in fewer
    bytes and one contiguous read.
    """
    if header is None:
        return FULL
    specs = parse_range_header(header)
    if specs is None or len(specs) > MAX_RANGES:
        return FULL
    resolved = [_resolve_spec(spec, size) for spec in specs]
    satisfiable = [r for r in resolved if r is not None]
    if not satisfiable:
        # §14.1.1: "When a selected representation has zero length, the only
        # satisfiable form of range-spec is a suffix-range with a non-zero
        # suffix-length." No Content-Range can describe zero bytes (§14.4
        # incl-range needs first-pos <= last-pos), so that case gets the
        # whole (empty) representation as a 200 rather than a wrong 416.
        if size == 0 and any(first is None and last for first, last in specs):
            return FULL
        return UNSATISFIABLE
    ranges = _coalesce(satisfiable)
    if len(ranges) > 1:
        framed = sum(r.length for r in ranges) + len(ranges) * MULTIPART_PART_OVERHEAD_BYTES
        if framed >= size:
            return FULL
    return RangePlan("partial", ranges)


def format_content_range(r: ByteRange, size: int) -> str:
    """Content-Range of a 206 part: ``bytes first-last/complete`` (§14.4)."""
    return f"{_BYTES_UNIT} {r.start}-{r.end}/{size}"


def format_unsatisfied_range(size: int) -> str:
    """Content-Range of a 416: ``bytes */complete`` (§14.4, §15.5.17)."""
    return f"{_BYTES_UNIT} */{size}"
