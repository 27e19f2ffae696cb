"""A SHA-256 whose running state can be saved as bytes and resumed anywhere.

Owns: hashing an upload's bytes in order across requests, worker processes
and restarts: the state after each in-order chunk is stored with the
session, so `complete` only hashes what was not hashed on the way in and
takes the same time for 4 GiB as for 4 MiB. hashlib cannot export its state;
OpenSSL's SHA256_CTX (a plain 112-byte struct, the same library hashlib
uses) can. Must not: do I/O.

Without libcrypto, `AVAILABLE` is False and callers hash the whole file at
the end instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# sizeof(SHA256_CTX) in OpenSSL 1.1 and 3.x: h[8], Nl, Nh, data[16], num, md_len.
CTX_BYTES = 112
DIGEST_BYTES = 32


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        for fn in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
            fn.restype = ctypes.c_int
        lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return lib


_lib = _load()
AVAILABLE = _lib is not None


class ResumableSha256:
    """`update()` like hashlib; `state()` to save, `ResumableSha256(state)`
    to resume; `digest()` does not disturb the running state."""

    def __init__(self, state: bytes | None = None) -> None:
        if _lib is None:
            raise RuntimeError("libcrypto SHA256 is not available")
        if state is None:
            self._ctx = ctypes.create_string_buffer(CTX_BYTES)
            _lib.SHA256_Init(self._ctx)
        else:
            if len(state) != CTX_BYTES:
                raise ValueError("not a saved SHA-256 state")
            self._ctx = ctypes.create_string_buffer(state, CTX_BYTES)

    def update(self, data: bytes) -> None:
        # ctypes releases the GIL for the call, as hashlib does for big inputs.
        _lib.SHA256_Update(self._ctx, data, len(data))  # type: ignore[union-attr]

    def update_from(self, buffer: bytearray, nbytes: int) -> None:
        """Hash the first `nbytes` of a reusable buffer, without a copy."""
        _lib.SHA256_Update(self._ctx, (ctypes.c_char * len(buffer)).from_buffer(buffer), nbytes)  # type: ignore[union-attr]

    def state(self) -> bytes:
        return self._ctx.raw

    def digest(self) -> bytes:
        copy = ctypes.create_string_buffer(self._ctx.raw, CTX_BYTES)
        out = ctypes.create_string_buffer(DIGEST_BYTES)
        _lib.SHA256_Final(out, copy)  # type: ignore[union-attr]
        return out.raw
