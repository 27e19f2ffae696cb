"""Byte-range locks on staging files, across coroutines, processes and crashes.

Owns: taking and releasing an exclusive lock on [offset, offset+length) of an
open file. Linux open-file-description locks (F_OFD_SETLK) belong to the fd,
not the process: two requests in one worker conflict like two workers do,
closing one fd never drops another's lock (the trap of POSIX lockf), and a
killed process loses its locks with its fds. Must not: know about sessions.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct

# struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid (+pad).
_FLOCK = struct.Struct("hhqqi4x")
_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)
# Poll interval while another request holds the range: a chunk takes
# milliseconds to seconds to arrive, so 20 ms adds little latency.
LOCK_POLL_S = 0.02


def try_lock_region(fd: int, offset: int, length: int) -> bool:
    if _OFD_SETLK is None:
        return True  # no OFD locks (not Linux): parallel duplicates are not excluded
    try:
        fcntl.fcntl(fd, _OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, length, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


async def lock_region(fd: int, offset: int, length: int, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for the range; False if still held by another."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not try_lock_region(fd, offset, length):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(LOCK_POLL_S)
    return True
