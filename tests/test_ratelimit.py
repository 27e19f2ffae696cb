"""Token bucket pacing with an injected clock (no sleeps)."""

from __future__ import annotations

import random

import pytest

from asgi_xfer.protocol.ratelimit import TokenBucket

RATE = 1_000_000.0  # bytes per second
BURST = 256 * 1024
CHUNK = 64 * 1024


def test_burst_is_free_then_the_excess_waits() -> None:
    bucket = TokenBucket(RATE, BURST, now=0.0)
    for _ in range(BURST // CHUNK):
        assert bucket.delay_for(CHUNK, now=0.0) == 0.0
    assert bucket.delay_for(CHUNK, now=0.0) == pytest.approx(CHUNK / RATE)


def send_all(bucket: TokenBucket, chunks: list[int], gaps: list[float]) -> float:
    """Pace ``chunks`` like the handler does; returns the fake clock at the end."""
    now = 0.0
    for size, gap in zip(chunks, gaps):
        now += gap  # time spent reading the file, the network, ...
        now += bucket.delay_for(size, now)
    return now


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_rate_matches_within_one_percent(seed: int) -> None:
    rng = random.Random(seed)
    chunks = [rng.randint(1, 4 * CHUNK) for _ in range(5000)]
    gaps = [rng.uniform(0, 0.001) for _ in chunks]
    bucket = TokenBucket(RATE, BURST, now=0.0)
    elapsed = send_all(bucket, chunks, gaps)
    # The first BURST bytes are free; the rest flow at RATE.
    measured = (sum(chunks) - BURST) / elapsed
    assert measured == pytest.approx(RATE, rel=0.01)


def test_idle_time_refills_no_more_than_the_burst() -> None:
    bucket = TokenBucket(RATE, BURST, now=0.0)
    assert bucket.delay_for(BURST, now=0.0) == 0.0
    # After a long pause the bucket is full again, but only to BURST.
    assert bucket.delay_for(BURST, now=3600.0) == 0.0
    assert bucket.delay_for(CHUNK, now=3600.0) == pytest.approx(CHUNK / RATE)


def test_chunk_larger_than_the_burst_is_paced_not_refused() -> None:
    bucket = TokenBucket(RATE, 0, now=10.0)
    assert bucket.delay_for(2_000_000, now=10.0) == pytest.approx(2.0)
    # The caller waited 2 s; the next megabyte waits 1 s more.
    assert bucket.delay_for(1_000_000, now=12.0) == pytest.approx(1.0)


def test_early_caller_waits_for_the_remaining_debt_too() -> None:
    bucket = TokenBucket(RATE, 0, now=0.0)
    assert bucket.delay_for(1000, now=0.0) == pytest.approx(0.001)
    # Half of the first wait has passed: 500 bytes of debt plus 1000 new.
    assert bucket.delay_for(1000, now=0.0005) == pytest.approx(0.0015)


def test_unused_time_beyond_the_burst_is_not_banked() -> None:
    bucket = TokenBucket(RATE, 1000, now=0.0)
    assert bucket.delay_for(2000, now=0.0) == pytest.approx(0.001)
    # At 0.0015 the debt is paid and 500 tokens (of at most 1000) are back.
    assert bucket.delay_for(1000, now=0.0015) == pytest.approx(0.0005)


def test_clock_going_backwards_adds_no_tokens() -> None:
    bucket = TokenBucket(RATE, 0, now=5.0)
    bucket.delay_for(1000, now=5.0)
    assert bucket.delay_for(1000, now=4.0) == pytest.approx(0.002)


def test_zero_bytes_cost_nothing() -> None:
    assert TokenBucket(RATE, 0, now=0.0).delay_for(0, now=0.0) == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, -1)])
def test_invalid_configuration(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)


def test_negative_bytes_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(RATE, BURST, now=0.0).delay_for(-1, now=0.0)
