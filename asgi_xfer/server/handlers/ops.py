"""Operational resources: `/healthz`, `/metrics` and `POST /sign`."""

from __future__ import annotations

import importlib.metadata
from urllib.parse import quote, urlencode

from ...protocol.auth import bearer_token, token_matches
from ...protocol.errors import BadRequest
from ...protocol.paths import parse_rel_path
from ...protocol.signing import MAX_LINK_LIFETIME_S, sign_link
from ..context import Context
from ..exchange import Exchange
from ..metrics import METRICS

# An hour, like a typical pre-signed URL: long enough to start a large
# download, short enough that a leaked link soon stops working.
SIGN_DEFAULT_EXPIRES_S = 3600
SIGNABLE_METHODS = ("GET", "HEAD", "PUT", "DELETE")
SIGNABLE_PREFIXES = ("/files/", "/archive/", "/cluster/files/", "/cluster/archive/")

try:
    VERSION = importlib.metadata.version("asgi_xfer")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "unknown"


async def healthz(ctx: Context, ex: Exchange, tail: str) -> None:
    """`{"status": "ok"}` for anyone (load balancers probe without
    credentials); with a valid token also the node's name, version and free
    disk, which `/cluster/nodes` on a peer reports (not for strangers)."""
    payload: dict[str, object] = {"status": "ok"}
    s = ctx.settings
    if s.no_auth or token_matches(bearer_token(ex.headers.get("authorization")), s.tokens):
        payload.update(node=s.node_name, version=VERSION, free_bytes=ctx.tree.free_bytes())
    await ex.json(200, payload)


async def metrics(ctx: Context, ex: Exchange, tail: str) -> None:
    data = METRICS.format_prometheus().encode()
    await ex.respond(200, [
        ("content-type", "text/plain; version=0.0.4; charset=utf-8"),
        ("content-length", str(len(data))),
        ("cache-control", "no-store"),
    ], b"" if ex.method == "HEAD" else data)


def _route_path(raw: object) -> str:
    """`a/b.txt` means `/files/a/b.txt`; `/archive/dir` is taken as given."""
    if not isinstance(raw, str) or not raw:
        raise BadRequest("'path' must be a non-empty string")
    path = raw if raw.startswith("/") else "/files/" + raw
    prefix = next((p for p in SIGNABLE_PREFIXES if path.startswith(p)), None)
    if prefix is None:
        raise BadRequest(f"only paths under {', '.join(SIGNABLE_PREFIXES)} can be signed")
    parse_rel_path(path[len(prefix):])
    return path


def _expires_in(raw: object) -> int:
    if raw is None:
        return SIGN_DEFAULT_EXPIRES_S
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= MAX_LINK_LIFETIME_S:
        raise BadRequest(f"'expires_in' must be an integer from 1 to {MAX_LINK_LIFETIME_S}")
    return raw


async def sign(ctx: Context, ex: Exchange, tail: str) -> None:
    body = await ex.read_json()
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    path = _route_path(body.get("path"))
    method = body.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in SIGNABLE_METHODS:
        raise BadRequest(f"'method' must be one of {', '.join(SIGNABLE_METHODS)}")
    method = method.upper()
    expires = int(ctx.clock()) + _expires_in(body.get("expires_in"))
    sig = sign_link(ctx.secret, method, path, expires)
    root = ex.scope.get("root_path") or ""
    url = f"{root}{quote(path)}?{urlencode({'expires': expires, 'sig': sig})}"
    await ex.json(200, {"url": url, "method": method, "expires": expires})
