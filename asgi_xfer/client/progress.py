"""A one-line progress display on stderr: bytes, percentage, speed, ETA.

Owns: formatting (pure `format_progress_line`, `format_bytes`,
`format_duration`) and a renderer throttled to RENDER_INTERVAL_S that
writes only when stderr is a terminal. Must not: know about HTTP; download
and upload call it as `progress(done_bytes, total_bytes_or_None)`.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

# Redraw at most 10 times a second: smooth to the eye, negligible CPU.
RENDER_INTERVAL_S = 0.1
# Speed is averaged over this window, so it follows changes within seconds
# but does not flicker with every read.
SPEED_WINDOW_S = 5.0
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(count: float) -> str:
    for unit in _UNITS[:-1]:
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} {_UNITS[-1]}"


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0 or seconds > 99 * 3600:
        return "--:--"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_progress_line(label: str, done: int, total: int | None, speed_bps: float | None) -> str:
    """`name  45.0% 450.0 MiB / 1.0 GiB  112.3 MiB/s  ETA 00:05`."""
    parts = [label]
    if total:
        parts.append(f"{100 * done / total:5.1f}%")
        parts.append(f"{format_bytes(done)} / {format_bytes(total)}")
    else:
        parts.append(format_bytes(done))
    if speed_bps is not None:
        parts.append(f"{format_bytes(speed_bps)}/s")
        eta = (total - done) / speed_bps if total and speed_bps > 0 else None
        parts.append(f"ETA {format_duration(eta)}")
    return "  ".join(parts)


class ProgressBar:
    """Callable as a progress callback; silent unless `stream` is a TTY."""

    def __init__(self, label: str, stream: TextIO | None = None, *,
                 clock: Callable[[], float] = time.monotonic, force: bool = False) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._last_render = float("-inf")
        self._width = 0

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if now - self._last_render < RENDER_INTERVAL_S and done != total:
            return
        self._last_render = now
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW_S:
            self._samples.popleft()
        line = format_progress_line(self.label, done, total, self.speed_bps())
        self._width = max(self._width, len(line))
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()

    def speed_bps(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None

    def close(self) -> None:
        """End the line so later messages start on a fresh one."""
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
