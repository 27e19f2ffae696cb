"""The CRC-32 (ISO-HDLC, as zip and gzip use it) of bulk data, as fast as installed.

Owns: choosing the implementation. ISA-L's (`isal`, a PyPI wheel) folds with
carry-less multiplication at ~7 GB/s here; CPython's zlib 1.2.13 manages
~0.7-1.2 GB/s, slower than a loopback download, so with it a stored zip's
CRCs and not the network set the pace. Same values, same `crc32(data,
value)` signature; zlib is the fallback when isal is absent. Must not: do I/O.
"""

from __future__ import annotations

from collections.abc import Callable

crc32: Callable[[bytes, int], int]

try:
    from isal.isal_zlib import crc32 as _isal_crc32
except ImportError:  # pragma: no cover - depends on the environment
    from zlib import crc32 as _zlib_crc32

    crc32 = _zlib_crc32
    # zlib: slow enough that a frame's CRC is worth a thread, where zlib
    # releases the GIL and the work overlaps with sending.
    FAST = False
else:
    crc32 = _isal_crc32
    # A 1 MiB frame in ~0.15 ms: cheaper inline than a thread hop.
    FAST = True
