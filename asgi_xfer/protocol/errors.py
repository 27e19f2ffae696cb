"""The one error tree: every failure a client can see, with SPEC's status and code.

Owns: the mapping from a failure to an HTTP status, a snake_case code and the
extra headers that status needs (Allow, WWW-Authenticate, Retry-After,
Content-Range). Must not: know about ASGI or render anything; `exchange`
turns an `XferError` into the JSON envelope. Foreign exceptions (OSError, h11
errors) are translated where they enter, never raised through a handler.
"""

from __future__ import annotations

import errno

from .ranges import format_unsatisfied_range


class XferError(Exception):
    """Base of every error a client may see; carries its status and code."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.code.replace("_", " "))
        self.message = message or self.code.replace("_", " ")
        self.headers: dict[str, str] = dict(headers or {})
        # Extra members of the error object, e.g. the missing chunk list of a 409.
        self.details: dict[str, object] = {}


class BadRequest(XferError):
    status, code = 400, "bad_request"


class Unauthorized(XferError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str = "missing or invalid bearer token") -> None:
        super().__init__(message, headers={"www-authenticate": 'Bearer realm="asgi-xfer"'})


class Forbidden(XferError):
    status, code = 403, "forbidden"


class NotFound(XferError):
    status, code = 404, "not_found"


class MethodNotAllowed(XferError):
    status, code = 405, "method_not_allowed"

    def __init__(self, allowed: list[str] | tuple[str, ...]) -> None:
        allow = ", ".join(allowed)
        super().__init__(f"method not allowed; allowed: {allow}", headers={"allow": allow})


class Conflict(XferError):
    status, code = 409, "conflict"


class PreconditionFailed(XferError):
    status, code = 412, "precondition_failed"


class PayloadTooLarge(XferError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(XferError):
    status, code = 415, "unsupported_media_type"


class RangeNotSatisfiable(XferError):
    status, code = 416, "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        # RFC 9110 §15.5.17: a 416 carries "bytes */complete-length".
        super().__init__(
            f"no requested range overlaps the {size}-byte representation",
            headers={"content-range": format_unsatisfied_range(size)},
        )


class ChecksumMismatch(XferError):
    status, code = 422, "checksum_mismatch"


class RateLimited(XferError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"retry-after": str(max(1, retry_after_s))})


class InsufficientStorage(XferError):
    status, code = 507, "insufficient_storage"


class InternalError(XferError):
    status, code = 500, "internal_error"


class BadGateway(XferError):
    """A cluster peer failed before its answer began (SPEC "Cluster")."""

    status, code = 502, "bad_gateway"


class GatewayTimeout(XferError):
    """A cluster peer did not answer within the timeout (SPEC "Cluster")."""

    status, code = 504, "gateway_timeout"


def translate_os_error(exc: OSError, what: str) -> XferError:
    """Map an OSError met while touching `what` to the error a client should see.

    The message names only `what` (a path relative to ROOT), never the server's
    absolute paths or the OS text.
    """
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(f"{what} not found")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Forbidden(f"{what}: permission denied")
    if exc.errno == errno.ELOOP:
        return Forbidden(f"{what}: too many levels of symbolic links")  # as nginx answers
    if exc.errno == errno.ENXIO:
        return NotFound(f"{what} is not a regular file")  # a socket or unopened FIFO
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("not enough disk space")
    if exc.errno == errno.EISDIR:
        return Conflict(f"{what} is a directory")
    if exc.errno == errno.EEXIST:
        return Conflict(f"{what} already exists")
    if exc.errno == errno.ENAMETOOLONG:
        return BadRequest(f"{what}: name too long")
    return InternalError("storage error")
