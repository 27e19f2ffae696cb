"""Settings: one frozen value read from arguments or `XFER_*` environment variables.

Owns: every tunable, its default and the reason for it, and parsing them from
the environment for `create_app()` and the worker processes of `serve`. Must
not: open files or sockets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

N = TypeVar("N", int, float)

# Largest body a simple PUT/POST may carry. 1 TiB: large enough for the files
# people move, small enough that a bogus Content-Length is refused up front.
MAX_UPLOAD_BYTES_DEFAULT = 1 << 40
# Idle upload sessions expire after a day (SPEC; tusd's default too).
SESSION_TTL_S_DEFAULT = 24 * 3600
# A cluster peer that sends nothing for this long (no response head, or no
# body bytes mid-transfer) is given up: 504 before the answer, a dropped
# connection after. 10 s: long past a healthy peer's first byte on a LAN,
# short enough that a client is not left hanging on a dead machine.
CLUSTER_TIMEOUT_S_DEFAULT = 10.0


@dataclass(frozen=True)
class Settings:
    root: Path
    tokens: tuple[str, ...] = ()
    public_read: bool = False
    no_auth: bool = False
    gzip: bool = False
    rate_limit_bytes_per_s: int = 0
    max_upload_bytes: int = MAX_UPLOAD_BYTES_DEFAULT
    session_ttl_s: int = SESSION_TTL_S_DEFAULT
    node_name: str = ""
    peers: tuple[str, ...] = field(default_factory=tuple)
    # The bearer token this node sends to its peers (and accepts from them);
    # empty: the node's own first token.
    cluster_token: str = ""
    cluster_timeout_s: float = CLUSTER_TIMEOUT_S_DEFAULT

    @property
    def peer_token(self) -> str:
        return self.cluster_token or (self.tokens[0] if self.tokens else "")


def _env_bool(env: dict[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_list(env: dict[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _env_number(env: dict[str, str], name: str, default: N, parse: Callable[[str], N], what: str) -> N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None


def _env_int(env: dict[str, str], name: str, default: int) -> int:
    return _env_number(env, name, default, int, "an integer")


def _env_float(env: dict[str, str], name: str, default: float) -> float:
    return _env_number(env, name, default, float, "a number")


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    """Read `XFER_*` variables (the same names `asgi-xfer serve` exports)."""
    env = dict(os.environ if env is None else env)
    return Settings(
        root=Path(env.get("XFER_ROOT", "data")),
        tokens=_env_list(env, "XFER_TOKENS"),
        public_read=_env_bool(env, "XFER_PUBLIC_READ"),
        no_auth=_env_bool(env, "XFER_NO_AUTH"),
        gzip=_env_bool(env, "XFER_GZIP"),
        rate_limit_bytes_per_s=_env_int(env, "XFER_RATE_LIMIT", 0),
        max_upload_bytes=_env_int(env, "XFER_MAX_UPLOAD_BYTES", MAX_UPLOAD_BYTES_DEFAULT),
        session_ttl_s=_env_int(env, "XFER_SESSION_TTL_S", SESSION_TTL_S_DEFAULT),
        node_name=env.get("XFER_NODE_NAME", ""),
        peers=_env_list(env, "XFER_PEERS"),
        cluster_token=env.get("XFER_CLUSTER_TOKEN", ""),
        cluster_timeout_s=_env_float(env, "XFER_CLUSTER_TIMEOUT_S", CLUSTER_TIMEOUT_S_DEFAULT),
    )


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The inverse of `settings_from_env`, for handing settings to workers."""
    return {
        "XFER_ROOT": str(settings.root),
        "XFER_TOKENS": ",".join(settings.tokens),
        "XFER_PUBLIC_READ": "1" if settings.public_read else "",
        "XFER_NO_AUTH": "1" if settings.no_auth else "",
        "XFER_GZIP": "1" if settings.gzip else "",
        "XFER_RATE_LIMIT": str(settings.rate_limit_bytes_per_s),
        "XFER_MAX_UPLOAD_BYTES": str(settings.max_upload_bytes),
        "XFER_SESSION_TTL_S": str(settings.session_ttl_s),
        "XFER_NODE_NAME": settings.node_name,
        "XFER_PEERS": ",".join(settings.peers),
        "XFER_CLUSTER_TOKEN": settings.cluster_token,
        "XFER_CLUSTER_TIMEOUT_S": str(settings.cluster_timeout_s),
    }
