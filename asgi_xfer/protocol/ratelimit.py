"""A token bucket that paces one response's bytes.

Owns the pacing arithmetic only. It must not sleep or read the clock: the
caller passes ``now`` (a monotonic time in seconds) and sleeps for the delay
it gets back, which keeps tests free of real time.
"""

from __future__ import annotations


class TokenBucket:
    """Allows ``burst_bytes`` at once, then ``rate_bytes_per_s`` on average.

    Tokens may go negative: a chunk larger than what is available is
    accounted at once (a send is never split here) and the debt is the wait.
    """

    def __init__(self, rate_bytes_per_s: float, burst_bytes: int, now: float) -> None:
        if rate_bytes_per_s <= 0:
            raise ValueError("rate_bytes_per_s must be positive")
        if burst_bytes < 0:
            raise ValueError("burst_bytes must not be negative")
        self._rate = float(rate_bytes_per_s)
        self._burst = float(burst_bytes)
        self._tokens = float(burst_bytes)  # a fresh response may start at once
        self._last = now

    def _refill(self, now: float) -> None:
        # A clock that goes backwards (it should be monotonic) adds nothing.
        elapsed = max(0.0, now - self._last)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._last = max(self._last, now)

    def delay_for(self, nbytes: int, now: float) -> float:
        """Account ``nbytes`` and return the seconds to wait before sending them."""
        if nbytes < 0:
            raise ValueError("nbytes must not be negative")
        self._refill(now)
        self._tokens -= nbytes
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self._rate
