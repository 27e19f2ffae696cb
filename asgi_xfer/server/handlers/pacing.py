"""Pacing one response under --rate-limit: a token bucket and asyncio.sleep.

Owns: how long to wait before each message of a rate-limited body, and how
large those messages should be. Shared by downloads and archives.
"""

from __future__ import annotations

import asyncio
import time

from ...protocol.ratelimit import TokenBucket

# Frames of at most 1/RATE_FRAMES_PER_S of a second's allowance keep a
# rate-limited stream smooth instead of bursting a megabyte then sleeping.
RATE_FRAMES_PER_S = 10
RATE_FRAME_MIN_BYTES = 4096


class Pacer:
    """Sleeps so that one response stays under --rate-limit bytes per second."""

    def __init__(self, rate_bytes_per_s: int) -> None:
        self.bucket = TokenBucket(rate_bytes_per_s, max(RATE_FRAME_MIN_BYTES, rate_bytes_per_s // RATE_FRAMES_PER_S), time.monotonic())
        self.max_frame = max(RATE_FRAME_MIN_BYTES, rate_bytes_per_s // RATE_FRAMES_PER_S)

    async def pace(self, nbytes: int) -> None:
        delay = self.bucket.delay_for(nbytes, time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)
