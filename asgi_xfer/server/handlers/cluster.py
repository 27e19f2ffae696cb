"""`/cluster/files/{path}` (GET, HEAD, PUT) and `/cluster/nodes`: any node serves every node's files.

Parses the request, lets `protocol.cluster` decide where it is answered and
which fields cross, and either hands it to the local handler or relays the
owner's answer frame by frame (one frame in memory, read from the peer only
once our client has taken the last one). Once the relayed response has
started, a peer that fails drops our client's connection: a short body
never looks whole.
"""

from __future__ import annotations

import asyncio
import os

from ...client.connection import Response
from ...client.errors import ClientError
from ...protocol.cluster import (
    FAILURE_BROKEN,
    LOOKUP_ANY,
    LOOKUP_LOCAL,
    LOOKUP_NODE,
    NODE_HEADER,
    SOURCE_PEER,
    PeerAnswer,
    classify_peer_status,
    format_failure,
    is_forwarded,
    peer_error,
    plan_forward_query,
    plan_lookup,
    plan_relay_headers,
    plan_source,
    source_error,
)
from ...protocol.errors import BadGateway, NotFound
from ...protocol.paths import RelPath, parse_rel_path
from ..context import Context
from ..exchange import Exchange
from ..metrics import METRICS
from ..peers import MAX_SMALL_ANSWER_BYTES, Peer, PeerFailure, PeerLink
from . import download, upload
from .ops import VERSION


def _mark_local(ctx: Context, ex: Exchange) -> None:
    if not any(name == NODE_HEADER for name, _ in ex.extra_headers):
        ex.extra_headers.append((NODE_HEADER, ctx.settings.node_name))


def _have_locally(ctx: Context, rel: RelPath) -> bool:
    try:
        fd, _ = ctx.tree.open_read(rel)
    except NotFound:
        return False
    os.close(fd)
    return True


async def _owner(ctx: Context, ex: Exchange, rel: RelPath) -> Peer | None:
    """The peer whose copy answers, or None for this node's own."""
    lookup = plan_lookup(ex.query_value("node"), ctx.settings.node_name, is_forwarded(ex.headers))
    link = ctx.peers
    if lookup.mode == LOOKUP_LOCAL:
        return None
    if lookup.mode == LOOKUP_NODE:
        return await link.find(lookup.node)
    assert lookup.mode == LOOKUP_ANY
    if not link.peers or _have_locally(ctx, rel):
        return None
    return await _first_holder(link, rel)


async def _first_holder(link: PeerLink, rel: RelPath) -> Peer:
    """All peers asked at once; the first in --peer order that has it wins."""
    probes = [asyncio.ensure_future(link.probe(peer, rel)) for peer in link.peers]
    answers: list[PeerAnswer | None] = [None] * len(probes)
    try:
        for index, probe in enumerate(probes):
            answers[index] = await probe
            choice = plan_source(answers)
            if choice.kind == SOURCE_PEER:
                return link.peers[choice.index]
        raise source_error(plan_source(answers))
    finally:
        for probe in probes:
            probe.cancel()


async def get_file(ctx: Context, ex: Exchange, tail: str) -> None:
    rel = parse_rel_path(tail)
    peer = await _owner(ctx, ex, rel)
    if peer is None:
        _mark_local(ctx, ex)
        await download.get_file(ctx, ex, tail)
        return
    link = ctx.peers
    headers = link.forward_headers(ex.method, ex.headers)
    try:
        async with link.open(peer, ex.method, "/files/", rel, headers, query=plan_forward_query(ex.query)) as response:
            _refuse_failed(peer, response.status)
            await _relay_body(ex, peer, response)
    except PeerFailure as failure:
        raise peer_error(PeerAnswer(peer.name, failure=failure.kind, detail=failure.detail)) from None


def _refuse_failed(peer: Peer, status: int) -> None:
    failure = classify_peer_status(status)
    if failure:
        raise peer_error(PeerAnswer(peer.name, status, failure))


async def _relay_body(ex: Exchange, peer: Peer, response: Response) -> None:
    root = ex.scope.get("root_path") or ""
    await ex.start(response.status, plan_relay_headers(response.headers.items(), peer.name, root))
    ex.watch_disconnect()
    METRICS.active_transfers += 1
    try:
        async for chunk in response.aiter_bytes():
            # A view of the peer connection's read buffer: copied before the
            # next read reuses it (the server may still hold this frame).
            await ex.body(bytes(chunk), more=True)
            await ex.wait_writable()
    except ClientError as exc:
        # Started: the app drops our client's connection (no short body).
        raise BadGateway(format_failure(PeerAnswer(peer.name, failure=FAILURE_BROKEN, detail=str(exc)))) from None
    finally:
        METRICS.active_transfers -= 1
    await ex.body(b"", more=False)


async def put_file(ctx: Context, ex: Exchange, tail: str) -> None:
    """Streams the body to the named node's `PUT /files/{path}` and relays
    its answer; without `?node=` (or naming this node) a local upload."""
    rel = parse_rel_path(tail)
    lookup = plan_lookup(ex.query_value("node"), ctx.settings.node_name, is_forwarded(ex.headers))
    if lookup.mode != LOOKUP_NODE:
        _mark_local(ctx, ex)
        await upload.put_file(ctx, ex, tail)
        return
    link = ctx.peers
    peer = await link.find(lookup.node)
    headers = link.forward_headers("PUT", ex.headers)
    try:
        async with link.open(peer, "PUT", "/files/", rel, headers, body=ex.iter_body()) as response:
            _refuse_failed(peer, response.status)
            body = await _read_small(response)
    except PeerFailure as failure:
        raise peer_error(PeerAnswer(peer.name, failure=failure.kind, detail=failure.detail)) from None
    await ex.respond(response.status, plan_relay_headers(response.headers.items(), peer.name), body)


async def _read_small(response: Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_SMALL_ANSWER_BYTES:
                raise PeerFailure(FAILURE_BROKEN, f"answer larger than {MAX_SMALL_ANSWER_BYTES} bytes")
            chunks.append(bytes(chunk))
    except ClientError as exc:
        raise PeerFailure(FAILURE_BROKEN, str(exc)) from None
    return b"".join(chunks)


async def get_nodes(ctx: Context, ex: Exchange, tail: str) -> None:
    """This node and each peer: reachable, latency, version, free disk."""
    link = ctx.peers
    peers = await asyncio.gather(*(link.read_health(peer) for peer in link.peers))
    own = {
        "name": ctx.settings.node_name, "url": None, "self": True, "reachable": True, "latency_ms": 0.0,
        "version": VERSION, "free_bytes": ctx.tree.free_bytes(),
    }
    await ex.json(200, {"node": ctx.settings.node_name, "nodes": [own, *peers]})
