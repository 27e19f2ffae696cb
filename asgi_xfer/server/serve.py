"""`asgi-xfer serve`: the server's command line, run on uvicorn.

Owns: the `serve` arguments, binding the listening socket (so `--port 0`
works and the real port is printed), the start-up banner with the token and
a ready curl line, and handing settings to uvicorn's workers through
`XFER_*` (`config.settings_to_env`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import Settings, settings_to_env

# Connections waiting to be accepted: uvicorn's default, enough for bursts
# of parallel segment downloads.
LISTEN_BACKLOG = 2048


def add_serve_parser(sub: Any, parse_size: Callable[[str], int]) -> None:
    serve = sub.add_parser("serve", help="serve a directory over HTTP")
    serve.add_argument("root", help="directory to serve (created if missing)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--token", action="append", default=[], help="accepted bearer token (repeatable)")
    serve.add_argument("--public-read", action="store_true", help="GET/HEAD of files and archives need no token")
    serve.add_argument("--no-auth", action="store_true", help="no access control at all")
    serve.add_argument("--gzip", action="store_true", help="gzip compressible types for clients that accept it")
    serve.add_argument("--rate-limit", type=parse_size, default=0, metavar="BYTES_PER_S", help="cap each response's speed (e.g. 10M)")
    serve.add_argument("--max-upload", type=parse_size, default=None, metavar="BYTES")
    serve.add_argument("--session-ttl", type=int, default=None, metavar="SECONDS", help="idle upload sessions expire after this (default 86400)")
    serve.add_argument("--peer", action="append", default=[], help="cluster peer base URL (repeatable)")
    serve.add_argument("--node-name", default="", help="this node's name in a cluster (default: HOSTNAME-PORT)")
    serve.add_argument("--cluster-token", default=os.environ.get("XFER_CLUSTER_TOKEN", ""),
                       help="bearer token nodes send to and accept from each other (default: the first --token)")
    serve.add_argument("--cluster-timeout", type=float, default=None, metavar="SECONDS",
                       help="give up on a peer silent for this long (default 10)")
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument("--log-level", default="warning")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def _banner(settings: Settings, url: str, generated: bool) -> str:
    lines = [f"asgi-xfer: serving {settings.root} at {url}"]
    if settings.no_auth:
        lines.append("asgi-xfer: WARNING: --no-auth: anyone who can reach this port may read and write")
        lines.append(f"try: curl {url}files/")
    else:
        token = settings.tokens[0]
        label = "generated access token" if generated else "access token"
        lines.append(f"asgi-xfer: {label}: {token}")
        lines.append(f"try: curl -H 'Authorization: Bearer {token}' {url}files/")
    return "\n".join(lines)


def _http_protocol() -> Any:
    """uvicorn's httptools protocol with the pathsend extension (sendfile),
    or uvicorn's default where httptools is missing."""
    try:
        from .uvicornpathsend import PathsendHttpToolsProtocol
    except ImportError:
        return "auto"
    return PathsendHttpToolsProtocol


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        root=root, tokens=tuple(args.token), public_read=args.public_read, no_auth=args.no_auth,
        gzip=args.gzip, rate_limit_bytes_per_s=args.rate_limit, node_name=args.node_name, peers=tuple(args.peer),
    )
    if args.max_upload is not None:
        settings = replace(settings, max_upload_bytes=args.max_upload)
    if args.session_ttl is not None:
        settings = replace(settings, session_ttl_s=args.session_ttl)
    if args.cluster_timeout is not None:
        settings = replace(settings, cluster_timeout_s=args.cluster_timeout)
    generated = not settings.tokens and not settings.no_auth
    if generated:
        settings = replace(settings, tokens=(secrets.token_urlsafe(24),))
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    settings = replace(settings, cluster_token=args.cluster_token,
                       node_name=args.node_name or f"{socket.gethostname()}-{port}")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(_banner(settings, f"http://{host}:{port}/", generated), flush=True)
    os.environ.update(settings_to_env(settings))
    config = uvicorn.Config(
        "asgi_xfer:create_app", factory=True, workers=args.workers,
        log_level=args.log_level, access_log=args.access_log, lifespan="on",
        http=_http_protocol(),
    )
    if args.workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
    return 0
