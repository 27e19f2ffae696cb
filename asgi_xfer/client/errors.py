"""The client's one exception tree, grouped by what the caller can do.

Owns: the classes and `map_exceptions`, the single place where foreign
exceptions (OSError, ssl errors, h11 errors, asyncio timeouts) become ours, as
in httpcore. Must not: decide about retries (that is `retry`) or print.

    ClientError
    ├── TimeoutError        wait and retry: ConnectTimeout, ReadTimeout,
    │                       WriteTimeout, PoolTimeout
    ├── NetworkError        retry on a new connection: ConnectError,
    │                       ReadError, WriteError
    ├── ProtocolError       RemoteProtocolError (the peer broke HTTP/1.1, e.g.
    │                       closed mid-body: retryable), LocalProtocolError
    │                       (our bug or bad input: not retryable)
    ├── HTTPStatusError     the server answered with an error status
    ├── IntegrityError      length or digest of the result is wrong
    ├── RepresentationChanged  the file changed on the server mid-transfer
    └── InvalidURL          cannot be requested at all
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping


class ClientError(Exception):
    """Base of every error the client raises."""


class TimeoutError(ClientError):  # noqa: A001 - httpcore's name, scoped here
    pass


class ConnectTimeout(TimeoutError):
    pass


class ReadTimeout(TimeoutError):
    pass


class WriteTimeout(TimeoutError):
    pass


class PoolTimeout(TimeoutError):
    pass


class NetworkError(ClientError):
    pass


class ConnectError(NetworkError):
    pass


class ReadError(NetworkError):
    pass


class WriteError(NetworkError):
    pass


class ProtocolError(ClientError):
    pass


class RemoteProtocolError(ProtocolError):
    pass


class LocalProtocolError(ProtocolError):
    pass


class InvalidURL(ClientError):
    pass


class IntegrityError(ClientError):
    """The bytes received (or sent) do not match the expected length or digest."""


class RepresentationChanged(ClientError):
    """The server's file is no longer the version the transfer started with."""


class HTTPStatusError(ClientError):
    """An error status; `code` and `message` come from the SPEC's JSON envelope
    when the server sent one."""

    def __init__(self, status: int, message: str = "", *, code: str = "",
                 headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else ""))

    @classmethod
    def from_body(cls, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> HTTPStatusError:
        """Read `{"error": {"code", "message"}}` if the body is one, else a short excerpt."""
        code, message = "", body[:200].decode("utf-8", "replace").strip()
        try:
            error = json.loads(body)["error"]
            code, message = str(error.get("code", "")), str(error.get("message", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        return cls(status, message, code=code, headers=headers)


ExceptionMapping = Mapping[type[BaseException], type[ClientError]]


@contextlib.contextmanager
def map_exceptions(mapping: ExceptionMapping) -> Iterator[None]:
    """Re-raise a foreign exception as ours, the first matching class winning
    (so list subclasses before their bases); ours and unknown ones pass."""
    try:
        yield
    except ClientError:
        raise
    except Exception as exc:
        for from_exc, to_exc in mapping.items():
            if isinstance(exc, from_exc):
                raise to_exc(str(exc) or type(exc).__name__) from exc
        raise
