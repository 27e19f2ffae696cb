"""Values the client passes around: a parsed URL and response headers.

Owns: splitting a URL into origin and request target, and a read-only,
case-insensitive view of header fields. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from .errors import InvalidURL

DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left as they are in a request target: RFC 3986 reserved and
# unreserved ones, plus "%" so an already-encoded URL is not encoded twice.
_TARGET_SAFE = "/?&=%:@!$'()*+,;~-._"


@dataclass(frozen=True)
class URL:
    scheme: str
    host: str
    port: int
    target: str  # path and query, percent-encoded, as sent on the request line

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.target}"

    def join(self, reference: str) -> URL:
        """Resolve a Location-style reference against this URL (RFC 3986 §5)."""
        return parse_url(urljoin(str(self), reference))


def parse_url(text: str) -> URL:
    """`http[s]://host[:port]/path?query` → URL; anything else is InvalidURL."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"{text!r}: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise InvalidURL(f"{text!r}: only http:// and https:// URLs are supported")
    if not parts.hostname:
        raise InvalidURL(f"{text!r}: no host")
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE)
    return URL(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], target)


class Headers(Mapping[str, str]):
    """Response fields by lowercased name; repeated fields are joined with
    ", " as RFC 9110 §5.3 allows for list-based fields."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]] = ()) -> None:
        fields: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            fields[key] = f"{fields[key]}, {text}" if key in fields else text
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def format_request_headers(url: URL, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    """Host first (RFC 9112 §3.2), then the caller's fields."""
    out = [(b"host", url.host_header.encode("ascii"))]
    for name, value in (headers or {}).items():
        out.append((name.lower().encode("ascii"), value.encode("latin-1")))
    return out
