"""Range planning against RFC 9110 §14 text and examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_xfer.protocol.ranges import (
    MAX_RANGES,
    ByteRange,
    RangePlan,
    format_content_range,
    format_unsatisfied_range,
    parse_range_header,
    plan_ranges,
)

# RFC 9110 §14.1.2 examples are about "a representation of length 10000".
SIZE = 10000


def partial(*spans: tuple[int, int]) -> RangePlan:
    return RangePlan("partial", tuple(ByteRange(a, b) for a, b in spans))


FULL = RangePlan("full")
UNSATISFIABLE = RangePlan("unsatisfiable")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # §14.1.2 examples, in the RFC's order.
        ("bytes=0-499", partial((0, 499))),  # the first 500 bytes
        ("bytes=500-999", partial((500, 999))),  # the second 500 bytes
        ("bytes=-500", partial((9500, 9999))),  # the final 500 bytes
        ("bytes=9500-", partial((9500, 9999))),  # the final 500 bytes
        ("bytes=0-0,-1", partial((0, 0), (9999, 9999))),  # first and last byte
        # "legal but not canonical specifications of the second 500 bytes"
        ("bytes=500-600,601-999", partial((500, 999))),
        ("bytes=500-700,601-999", partial((500, 999))),
        # §14.1.1: a last-pos at or past the end means "to the end"; a suffix
        # longer than the representation means all of it.
        ("bytes=0-20000", partial((0, 9999))),
        ("bytes=-20000", partial((0, 9999))),
        ("bytes=0-", partial((0, 9999))),
        # §14.1.1 satisfiability: first-pos < length, suffix-length > 0.
        ("bytes=10000-", UNSATISFIABLE),
        ("bytes=10000-10001,20000-", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=10000-,0-9", partial((0, 9))),  # unsatisfiable specs dropped
        # §14.1: the range unit is case-insensitive; other units ignored.
        ("BYTES=0-9", partial((0, 9))),
        ("Bytes=0-9", partial((0, 9))),
        ("items=0-9", FULL),
        ("none", FULL),
        # §14.2: a syntactically invalid range-set means ignore the header.
        ("bytes=9-0", FULL),  # last-pos < first-pos
        ("bytes=abc", FULL),
        ("bytes=", FULL),
        ("bytes=,", FULL),  # 1#range-spec needs one non-empty element
        ("bytes=-", FULL),
        ("bytes=--5", FULL),
        ("bytes=1-2-3", FULL),
        ("bytes=+1-2", FULL),
        ("bytes=0x1-2", FULL),
        ("bytes=1 -2", FULL),
        ("bytes=0-9,abc", FULL),  # one bad spec poisons the whole set
        ("bytes = 0-9", FULL),  # no whitespace around "=" in the ABNF
        ("=0-9", FULL),
        ("by tes=0-9", FULL),
        # §5.6.1 list rules: OWS around commas, empty elements ignored.
        ("bytes=0-9 , 20-29", partial((0, 9), (20, 29))),
        ("bytes=0-9,\t20-29", partial((0, 9), (20, 29))),
        ("bytes=0-9, ,20-29,", partial((0, 9), (20, 29))),
        ("bytes=,0-9", partial((0, 9))),
        # §14.6: overlapping and adjacent ranges may be coalesced, whatever
        # their order in the header; §15.3.7.2: the parts come in the order
        # their range-specs were requested, a merged one where the first
        # spec it absorbed stood.
        ("bytes=0-4,5-9", partial((0, 9))),
        ("bytes=0-5,3-9", partial((0, 9))),
        ("bytes=500-599,0-99", partial((500, 599), (0, 99))),
        ("bytes=900-999,0-9,500-509,5-19", partial((900, 999), (0, 19), (500, 509))),
        ("bytes=900-999,10-19,500-509,0-9", partial((900, 999), (0, 19), (500, 509))),
        ("bytes=-100,0-9", partial((9900, 9999), (0, 9))),
        ("bytes=0-,0-,0-,0-", partial((0, 9999))),
        ("bytes=20-29,0-99", partial((0, 99))),
        # Leading zeros are digits like any other.
        ("bytes=000-009", partial((0, 9))),
    ],
)
def test_plan_ranges_rfc_table(header: str, expected: RangePlan) -> None:
    assert plan_ranges(header, SIZE) == expected


def test_no_header_is_full() -> None:
    assert plan_ranges(None, SIZE) == FULL


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-", UNSATISFIABLE),
        ("bytes=0-0", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        # §14.1.1: "When a selected representation has zero length, the only
        # satisfiable form of range-spec is a suffix-range with a non-zero
        # suffix-length." It is not a 416, and no Content-Range can
        # describe zero bytes, so the whole (empty) 200 is sent.
        ("bytes=-5", FULL),
        ("bytes=0-,-5", FULL),
        ("items=0-", FULL),
    ],
)
def test_zero_length_representation(header: str, expected: RangePlan) -> None:
    assert plan_ranges(header, 0) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-" + "9" * 5000, partial((0, SIZE - 1))),
        ("bytes=" + "9" * 5000 + "-", UNSATISFIABLE),
        ("bytes=-" + "9" * 5000, partial((0, SIZE - 1))),
        ("bytes=" + "0" * 5000 + "5-9", partial((5, 9))),
    ],
)
def test_huge_digit_strings_do_not_reach_int(header: str, expected: RangePlan) -> None:
    # 5000 digits exceeds CPython's int_max_str_digits (4300): int() would raise.
    assert plan_ranges(header, SIZE) == expected


def spaced_ranges(count: int) -> str:
    return "bytes=" + ",".join(f"{i * 100}-{i * 100}" for i in range(count))


def test_at_most_max_ranges_are_served() -> None:
    plan = plan_ranges(spaced_ranges(MAX_RANGES), 1_000_000)
    assert plan.kind == "partial"
    assert len(plan.ranges) == MAX_RANGES


def test_too_many_ranges_ignore_the_header() -> None:
    assert plan_ranges(spaced_ranges(MAX_RANGES + 1), 1_000_000) == FULL


def test_many_overlapping_ranges_are_not_amplified() -> None:
    # CVE-2011-3192 ("Apache Killer"): many overlapping ranges of one file.
    header = "bytes=" + ",".join(f"0-{n}" for n in range(MAX_RANGES))
    assert plan_ranges(header, SIZE) == partial((0, MAX_RANGES - 1))


def test_multipart_not_smaller_than_the_file_is_sent_whole() -> None:
    # Two ranges covering nearly all of a small file: the framing would make
    # the 206 bigger than the 200.
    assert plan_ranges("bytes=0-499,501-999", 1000) == FULL
    # A single range is never framed, so it stays a 206.
    assert plan_ranges("bytes=1-998", 1000) == partial((1, 998))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-499", [(0, 499)]),
        ("bytes=-500", [(None, 500)]),
        ("bytes=9500-", [(9500, None)]),
        ("bytes=0-0,-1", [(0, 0), (None, 1)]),
        ("bytes=500-700,601-999", [(500, 700), (601, 999)]),
        ("bytes=-0", [(None, 0)]),
        ("bytes=10000-", [(10000, None)]),
        ("bytes=5-5", [(5, 5)]),
        ("  bytes=1-2  ", [(1, 2)]),  # field values are trimmed (§5.5)
        ("bytes=9-0", None),
        ("bytes=", None),
        ("chunks=0-1", None),
        ("bytes=0-1;x", None),
    ],
)
def test_parse_range_header(value: str, expected: list[tuple[int | None, int | None]] | None) -> None:
    assert parse_range_header(value) == expected


def test_content_range_strings() -> None:
    # RFC 9110 §14.4 examples.
    assert format_content_range(ByteRange(42, 1233), 1234) == "bytes 42-1233/1234"
    assert format_unsatisfied_range(1234) == "bytes */1234"
    # §15.3.7.1 example.
    assert format_content_range(ByteRange(21010, 47021), 47022) == "bytes 21010-47021/47022"


def test_byte_range_length_is_inclusive() -> None:
    assert ByteRange(0, 499).length == 500
    assert ByteRange(7, 7).length == 1


def satisfied_bytes(specs: list[tuple[int | None, int]], size: int) -> set[int]:
    """Oracle: the byte positions §14.1.2 selects, counted one by one."""
    selected: set[int] = set()
    for first, last in specs:
        if first is None:
            selected.update(range(max(size - last, 0), size) if last else ())
        else:
            selected.update(range(first, min(last, size - 1) + 1))
    return selected


spec_strategy = st.one_of(
    st.tuples(st.none(), st.integers(0, 300)),
    st.tuples(st.integers(0, 300), st.integers(0, 300)).map(lambda t: (min(t), max(t))),
)


@given(st.lists(spec_strategy, min_size=1, max_size=8), st.integers(0, 250))
def test_partial_plan_covers_exactly_the_requested_bytes(
    specs: list[tuple[int | None, int]], size: int
) -> None:
    header = "bytes=" + ",".join(f"{'' if a is None else a}-{b}" for a, b in specs)
    plan = plan_ranges(header, size)
    wanted = satisfied_bytes(specs, size)
    if plan.kind == "partial":
        got = [p for r in plan.ranges for p in range(r.start, r.end + 1)]
        assert len(got) == len(set(got))  # no byte twice
        assert set(got) == wanted
        ordered = sorted(plan.ranges, key=lambda r: r.start)
        for before, after in zip(ordered, ordered[1:]):
            assert after.start > before.end + 1  # coalesced: a real gap
        # §15.3.7.2: parts in the order of the first range-spec each covers.
        first_spec = []
        for r in plan.ranges:
            first_spec.append(next(i for i, (a, b) in enumerate(specs)
                                   if satisfied_bytes([(a, b)], size) & set(range(r.start, r.end + 1))))
        assert first_spec == sorted(first_spec)
    elif plan.kind == "unsatisfiable":
        assert not wanted
    else:
        assert plan.ranges == ()
        assert wanted or size == 0
