"""When to retry and how long to wait: exponential backoff with jitter.

Owns: which failures are worth another attempt, the delay before attempt N
(honouring `Retry-After`), and a bounded retry loop around one coroutine.
Pure except `run_with_retries`, which only sleeps; the randomness is
injected so the delays can be table-tested.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from .errors import ClientError, HTTPStatusError, NetworkError, RemoteProtocolError, TimeoutError

T = TypeVar("T")

# 408 Request Timeout, 425 Too Early, 429 Too Many Requests and every 5xx are
# transient by definition (RFC 9110 §15.5.9, §15.6; RFC 6585 §4); 501 and 505
# are not (the server will never support the method or version).
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 507})


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` consecutive failures are allowed before giving up.
    Delays grow 2x per attempt from `base_delay_s` up to `max_delay_s`, then
    "equal jitter" keeps half and randomises the rest, so clients that failed
    together do not come back together (AWS Architecture Blog, 2015)."""

    max_attempts: int = 8
    base_delay_s: float = 0.2
    max_delay_s: float = 15.0
    # A server's Retry-After is honoured up to this: beyond, give up waiting.
    max_retry_after_s: float = 120.0


def is_retryable(exc: BaseException) -> bool:
    """Network trouble, timeouts, a peer that hung up mid-message, transient statuses."""
    if isinstance(exc, HTTPStatusError):
        return exc.status in RETRYABLE_STATUSES
    return isinstance(exc, (NetworkError, TimeoutError, RemoteProtocolError))


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now_s)
    except (TypeError, ValueError, IndexError):
        return None


def plan_delay_s(policy: RetryPolicy, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based)."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, policy.max_retry_after_s))
    return delay


def retry_after_of(exc: BaseException, now_s: float) -> float | None:
    if isinstance(exc, HTTPStatusError):
        return parse_retry_after(exc.headers.get("retry-after"), now_s)
    return None


async def run_with_retries(attempt: Callable[[], Awaitable[T]], policy: RetryPolicy, rng: random.Random,
                           *, made_progress: Callable[[], bool] = lambda: False,
                           clock: Callable[[], float] | None = None) -> T:
    """Call `attempt` until it succeeds, a failure is not retryable, or
    `policy.max_attempts` failures happen in a row. A failed attempt that
    `made_progress()` resets the count: a connection that drops every few
    MiB still finishes, one that never delivers a byte does not loop."""
    clock = clock or time.time
    failures = 0
    while True:
        try:
            return await attempt()
        except ClientError as exc:
            if not is_retryable(exc):
                raise
            failures = 1 if made_progress() else failures + 1
            if failures >= policy.max_attempts:
                raise
            await asyncio.sleep(plan_delay_s(policy, failures, rng, retry_after_of(exc, clock())))
