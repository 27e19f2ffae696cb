"""This node's line to its cluster peers: one keep-alive pool, the token, the names.

Owns: the peers from `--peer` with the names they tell us (from their
`X-Xfer-Node` answers or `/healthz`), opening one exchange with a peer
under the cluster timeouts, and turning the client library's exceptions
into `PeerFailure` (a `FAILURE_*` kind) at this boundary. Must not: decide
which peer answers or which headers pass (`protocol.cluster`), nor talk to
our own client (`handlers.cluster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from ..client.connection import Body, Response, Timeouts
from ..client.errors import ClientError, ConnectError, InvalidURL, TimeoutError as ClientTimeout
from ..client.pool import ConnectionPool
from ..protocol.cluster import (
    FAILURE_BROKEN,
    FAILURE_TIMEOUT,
    FAILURE_UNREACHABLE,
    NODE_HEADER,
    PeerAnswer,
    classify_peer_status,
    fallback_node_name,
    format_peer_target,
    plan_forward_headers,
)
from ..protocol.errors import NotFound
from ..protocol.paths import RelPath, format_url_path
from .config import Settings

# A peer on the same network accepts within milliseconds; 3 s allows for
# one lost SYN (Linux retries after 1 s) and still fails fast.
CONNECT_TIMEOUT_S = 3.0
# The whole of a probe (HEAD /files/{path}) or health check: a peer slower
# than this to say whether it has a file is treated as not answering.
PROBE_TIMEOUT_S = 3.0
# Connections to all peers together: `aria2c -x 16` through this node from
# a few clients at once, with room to spare.
MAX_PEER_CONNECTIONS = 64
# A node asked for its manifest with `?crc=1` reads its files for their
# CRC-32s before it answers: ~1 GB/s with zlib, several with ISA-L, so a
# few hundred GiB of cache misses fit in this.
SLOW_READ_TIMEOUT_S = 600.0
# A relayed JSON answer (a PUT's result, an error) is a few hundred bytes.
MAX_SMALL_ANSWER_BYTES = 64 * 1024


class PeerFailure(Exception):
    """A peer gave no usable answer; `kind` is a `protocol.cluster.FAILURE_*`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass
class Peer:
    url: str
    name: str
    named: bool = False  # the name came from the peer itself


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, (ClientTimeout, TimeoutError)):
        return FAILURE_TIMEOUT
    if isinstance(exc, (ConnectError, InvalidURL)):
        return FAILURE_UNREACHABLE
    return FAILURE_BROKEN


@contextlib.contextmanager
def _as_peer_failure() -> Any:
    try:
        yield
    except (ClientError, TimeoutError) as exc:
        raise PeerFailure(_failure_kind(exc), str(exc) or type(exc).__name__) from None


class PeerLink:
    def __init__(self, settings: Settings) -> None:
        self.own_name = settings.node_name
        self.token = settings.peer_token
        timeout = settings.cluster_timeout_s
        # `read` is both the first-byte and the idle timeout: it applies to
        # every socket read, the response head's included.
        self.timeouts = Timeouts(connect=min(CONNECT_TIMEOUT_S, timeout), read=timeout, write=timeout, pool=timeout)
        self.probe_timeout_s = min(PROBE_TIMEOUT_S, timeout)
        self.peers = [Peer(url, fallback_node_name(url)) for url in settings.peers]
        self._pool: ConnectionPool | None = None
        self._slow_pool: ConnectionPool | None = None

    @property
    def pool(self) -> ConnectionPool:
        # Created on first use, inside the event loop of the worker.
        if self._pool is None:
            self._pool = ConnectionPool(max_connections=MAX_PEER_CONNECTIONS, timeouts=self.timeouts)
        return self._pool

    @property
    def slow_pool(self) -> ConnectionPool:
        """For answers a peer computes before the first byte (`?crc=1`)."""
        if self._slow_pool is None:
            timeouts = replace(self.timeouts, read=max(SLOW_READ_TIMEOUT_S, self.timeouts.read or 0))
            self._slow_pool = ConnectionPool(max_connections=MAX_PEER_CONNECTIONS, timeouts=timeouts)
        return self._slow_pool

    async def aclose(self) -> None:
        for pool in (self._pool, self._slow_pool):
            if pool is not None:
                await pool.aclose()

    def forward_headers(self, method: str, headers: Mapping[str, str]) -> dict[str, str]:
        return plan_forward_headers(method, headers, token=self.token, hop=self.own_name)

    def hop_headers(self) -> dict[str, str]:
        return self.forward_headers("HEAD", {})

    def learn(self, peer: Peer, headers: Mapping[str, str]) -> None:
        name = headers.get(NODE_HEADER, "").strip()
        if name:
            peer.name, peer.named = name, True

    @contextlib.asynccontextmanager
    async def open(self, peer: Peer, method: str, route: str, rel: RelPath, headers: Mapping[str, str], *,
                   query: Mapping[str, str] | None = None, body: Body = None,
                   timeout_s: float | None = None, slow: bool = False) -> AsyncIterator[Response]:
        """One exchange with `peer`; the response head is ready inside the
        block. `PeerFailure` if no head comes (within `timeout_s` as a whole
        when given); body errors inside the block are the caller's."""
        url = format_peer_target(peer.url, route, format_url_path("", rel, directory=rel.trailing_slash))
        if query:
            url += "?" + urlencode(query)
        exchange = (self.slow_pool if slow else self.pool).stream(method, url, headers=headers, body=body)
        with _as_peer_failure():
            async with asyncio.timeout(timeout_s):
                response = await exchange.__aenter__()
        try:
            self.learn(peer, response.headers)
            yield response
        finally:
            await exchange.__aexit__(None, None, None)

    async def probe(self, peer: Peer, rel: RelPath) -> PeerAnswer:
        """Does `peer` have `rel`? A HEAD of its own file, with no conditions."""
        try:
            async with self.open(peer, "HEAD", "/files/", rel, self.hop_headers(),
                                 timeout_s=self.probe_timeout_s) as response:
                status = response.status
        except PeerFailure as failure:
            return PeerAnswer(peer.name, failure=failure.kind, detail=failure.detail)
        return PeerAnswer(peer.name, status, classify_peer_status(status) or "")

    async def read_health(self, peer: Peer) -> dict[str, Any]:
        """`/healthz` of `peer` with its round-trip time (SPEC `/cluster/nodes`)."""
        started = time.monotonic()
        url = format_peer_target(peer.url, "/healthz", "")
        try:
            with _as_peer_failure():
                async with asyncio.timeout(self.probe_timeout_s):
                    response, body = await self.pool.request("GET", url, headers=self.hop_headers())
            info = json.loads(body) if response.status == 200 else None
            if not isinstance(info, dict):
                raise PeerFailure(FAILURE_BROKEN, f"/healthz answered {response.status}")
        except (PeerFailure, ValueError) as exc:
            return {"name": peer.name, "url": peer.url, "reachable": False, "error": str(exc) or "invalid /healthz"}
        latency_ms = round((time.monotonic() - started) * 1000, 2)
        if isinstance(info.get("node"), str) and info["node"]:
            peer.name, peer.named = info["node"], True
        return {
            "name": peer.name, "url": peer.url, "reachable": True, "latency_ms": latency_ms,
            "version": info.get("version"), "free_bytes": info.get("free_bytes"),
        }

    async def find(self, name: str) -> Peer:
        """The peer called `name`; asks the peers that have not told us their
        names yet when none is known by it."""
        for peer in self.peers:
            if peer.name == name:
                return peer
        await asyncio.gather(*(self.read_health(p) for p in self.peers if not p.named))
        for peer in self.peers:
            if peer.name == name:
                return peer
        raise NotFound(f"no node named {name!r} in this cluster")
