"""`GET|HEAD /cluster/archive/{path}`: one STORED zip of every node's copy; and `GET /cluster/manifest/{path}`.

A node's manifest lists its entries under a path with size, mtime, mode,
ETag and the CRC-32 it has cached (all of them computed with `?crc=1`).
The cluster archive asks every node for its manifest, plans the members
(`protocol.clusterarchive`), and lets `archiveplan.plan_archive` decide
status, exact Content-Length, strong ETag and Range, as for a node's own
archive. CRCs the planned span needs before its data are asked for with a
second `?crc=1` manifest; the rest are computed from the bytes on the way.
File bytes come live from their node (`GET /files/{path}` with `If-Match`
and `Range`), or from disk for this node's own. A node that fails or whose
file changed once the response has started drops our client's connection:
the archive never looks complete when it is not.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence

from ...client.errors import ClientError
from ...protocol.archiveplan import (
    BODY_NONE,
    KIND_ZIP,
    ArchivePlan,
    ArchiveRequest,
    plan_archive,
    plan_crc_needs,
    zip_entries,
)
from ...protocol.cluster import FAILURE_BROKEN, PeerAnswer, classify_peer_status, format_failure
from ...protocol.clusterarchive import (
    ClusterEntry,
    ManifestEntry,
    format_entry_range,
    known_crcs,
    merge_crcs,
    parse_manifest,
    plan_cluster_entries,
)
from ...protocol.crc32 import crc32
from ...protocol.errors import BadGateway, NotFound, XferError
from ...protocol.paths import RelPath, parse_rel_path
from ...protocol.zipwriter import ZipLayout, plan_stored_zip
from ...storage.archivesource import SourceFile, collect_sources
from ..context import Context
from ..exchange import Exchange
from ..metrics import METRICS
from ..peers import Peer, PeerFailure
from .archivebody import CrcBook, ArchiveOutput, send_file_bytes

MANIFEST_ROUTE = "/cluster/manifest/"
# The download name of a cluster archive of ROOT.
CLUSTER_ARCHIVE_NAME = "cluster"
# A manifest of the entry cap (200,000) at ~200 bytes of JSON each.
MAX_MANIFEST_BYTES = 64 << 20


async def _local_listing(ctx: Context, base: RelPath, compute: bool) -> tuple[list[SourceFile], list[ManifestEntry]]:
    loop = asyncio.get_running_loop()
    sources = await loop.run_in_executor(None, collect_sources, ctx.tree, base, [])
    book = CrcBook(ctx.crcs, sources)
    try:
        missing = await book.load(frozenset(i for i, s in enumerate(sources) if s.member.size))
        if compute:
            await book.compute(missing)
    finally:
        await book.finish()
    etags = await loop.run_in_executor(None, _etags, ctx, sources)
    parent = base.segments[:-1]
    entries = [
        ManifestEntry("/".join((*parent, s.member.name)), s.member.size, s.member.mtime_ns, s.member.mode,
                      s.member.is_dir, etag, book.known.get(i))
        for i, (s, etag) in enumerate(zip(sources, etags))
    ]
    return sources, entries


def _etags(ctx: Context, sources: Sequence[SourceFile]) -> list[str]:
    out = []
    for src in sources:
        try:
            out.append("" if src.member.is_dir else ctx.tree.etag(os.stat(src.path)))
        except OSError:
            out.append("")  # vanished: its fetch will fail, and say so
    return out


async def get_manifest(ctx: Context, ex: Exchange, tail: str) -> None:
    """This node's own entries under `path` (never a peer's)."""
    _, entries = await _local_listing(ctx, parse_rel_path(tail), ex.query_flag("crc"))
    await ex.json(200, {"node": ctx.settings.node_name, "entries": [
        {"path": e.path, "size": e.size, "mtime_ns": e.mtime_ns, "mode": e.mode, "dir": e.is_dir,
         "etag": e.etag, "crc32": e.crc32} for e in entries
    ]})


async def _peer_manifest(ctx: Context, peer: Peer, base: RelPath, compute: bool) -> list[ManifestEntry] | str:
    """The peer's entries, or the line `_errors.txt` gets for it."""
    link = ctx.peers
    try:
        async with link.open(peer, "GET", MANIFEST_ROUTE, base, link.hop_headers(), query={"crc": "1"} if compute else None,
                             slow=compute) as response:
            failure = classify_peer_status(response.status)
            if failure or response.status != 200:
                return format_failure(PeerAnswer(peer.name, response.status, failure or ""))
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_MANIFEST_BYTES:
                    raise PeerFailure(FAILURE_BROKEN, "manifest too large")
        return parse_manifest(json.loads(body))
    except PeerFailure as exc:
        return format_failure(PeerAnswer(peer.name, failure=exc.kind, detail=exc.detail))
    except (ClientError, ValueError) as exc:
        return format_failure(PeerAnswer(peer.name, failure=FAILURE_BROKEN, detail=str(exc)))


class _Nodes:
    """The manifests of one cluster archive, this node's first."""

    def __init__(self, ctx: Context, base: RelPath) -> None:
        self.ctx, self.base = ctx, base
        self.sources: dict[str, SourceFile] = {}
        self.listings: list[tuple[str, list[ManifestEntry]]] = []
        self.errors: list[str] = []
        self.missing = 0  # nodes that do not have `base`

    async def gather(self) -> None:
        own = self.ctx.settings.node_name
        peers = self.ctx.peers.peers
        results = await asyncio.gather(self._own(False), *(_peer_manifest(self.ctx, p, self.base, False) for p in peers))
        for name, result in zip([own, *(p.name for p in peers)], results):
            if isinstance(result, str):
                self.errors.append(result)
                self.missing += "(404)" in result
                result = []
            self.listings.append((name, result))

    async def _own(self, compute: bool) -> list[ManifestEntry] | str:
        try:
            sources, entries = await _local_listing(self.ctx, self.base, compute)
        except XferError as exc:
            answer = PeerAnswer(self.ctx.settings.node_name, exc.status)
            return format_failure(answer) if exc.status == 404 else f"node {answer.name}: {exc.message}"
        self.sources = {e.path: s for e, s in zip(entries, sources)}
        return entries

    async def crcs_for(self, entries: Sequence[ClusterEntry], indices: set[int]) -> dict[int, int]:
        """A second manifest with `?crc=1` from each node owning one of `indices`."""
        nodes = sorted({entries[i].node_index for i in indices})
        peers = self.ctx.peers.peers
        jobs = [self._own(True) if n == 0 else _peer_manifest(self.ctx, peers[n - 1], self.base, True) for n in nodes]
        found: dict[int, int] = {}
        for n, result in zip(nodes, await asyncio.gather(*jobs)):
            if isinstance(result, str):
                raise BadGateway(f"could not get CRC-32s: {result}")
            found.update(merge_crcs(entries, n, result))
        return found


async def get_archive(ctx: Context, ex: Exchange, tail: str) -> None:
    base = parse_rel_path(tail)
    nodes = _Nodes(ctx, base)
    await nodes.gather()
    entries, errors_text = plan_cluster_entries(nodes.listings, nodes.errors, ctx.clock())
    if nodes.missing == len(nodes.listings):
        raise NotFound(f"no node has {base.text or '/'}")
    members = [e.member for e in entries]
    req = ArchiveRequest(ex.method, ex.headers, KIND_ZIP, base.name or CLUSTER_ARCHIVE_NAME)
    plan = plan_archive(req, members, now=ctx.clock())
    if plan.body == BODY_NONE:
        await ex.respond(plan.status, plan.headers)
        return
    assert plan.layout is not None
    start, stop = plan.span
    needs = plan_crc_needs(plan.layout, start, stop, upfront=plan.crc_upfront)
    known = known_crcs(entries, crc32(errors_text, 0))
    lacking = set(needs.ahead) - set(known)
    if lacking:
        known.update(await nodes.crcs_for(entries, lacking))
        if set(needs.ahead) - set(known):
            raise BadGateway("a node could not tell the CRC-32 of its files")
    layout = plan.layout
    if plan.crc_upfront:
        layout = plan_stored_zip(zip_entries(members, known, upfront=True))
    METRICS.active_transfers += 1
    ex.watch_disconnect()
    try:
        await _send(ctx, ex, plan, layout, entries, nodes, known, errors_text)
    finally:
        METRICS.active_transfers -= 1


async def _send(ctx: Context, ex: Exchange, plan: ArchivePlan, layout: ZipLayout, entries: Sequence[ClusterEntry],
                nodes: _Nodes, known: dict[int, int], errors_text: bytes) -> None:
    await ex.start(plan.status, plan.headers)
    out = ArchiveOutput(ex)
    for piece in layout.pieces(*plan.span):
        i, lo, hi = piece.index, piece.start, piece.stop
        if piece.kind == "header":
            await out.add(layout.local_header(i)[lo:hi])
        elif piece.kind == "data" and hi > lo:
            entry = entries[i]
            if entry.source is None:
                await out.add(errors_text[lo:hi])
                continue
            whole = lo == 0 and hi == entry.member.size
            if entry.node_index == 0:
                crc = await send_file_bytes(out, nodes.sources[entry.source.path], lo, hi, whole)
            else:
                crc = await _send_remote(ctx, out, ctx.peers.peers[entry.node_index - 1], entry, lo, hi, whole)
            if crc is not None:
                if known.setdefault(i, crc) != crc:
                    raise BadGateway(f"{entry.member.name!r} changed while the archive was being sent")
        elif piece.kind == "descriptor":
            await out.add(layout.data_descriptor(i, known[i])[lo:hi])
        elif piece.kind == "central_directory":
            await out.add(layout.central_directory([known.get(j) for j in range(len(entries))])[lo:hi])
    await out.close()


async def _send_remote(ctx: Context, out: ArchiveOutput, peer: Peer, entry: ClusterEntry, lo: int, hi: int,
                       whole: bool) -> int | None:
    """File bytes [lo, hi) of a peer's entry, exactly those or an error."""
    assert entry.source is not None
    link = ctx.peers
    headers = link.hop_headers()
    if entry.source.etag:
        headers["if-match"] = entry.source.etag  # RFC 9110 §13.1.1: the very version planned
    span = format_entry_range(lo, hi, entry.source.size)
    if span is not None:
        headers["range"] = span
    crc, got = 0, 0
    try:
        async with link.open(peer, "GET", "/files/", parse_rel_path(entry.source.path), headers) as response:
            if response.status != (200 if span is None else 206) or response.headers.get("content-length") != str(hi - lo):
                raise BadGateway(f"{entry.member.name!r}: node {peer.name} answered {response.status}")
            async for chunk in response.aiter_bytes():
                data = bytes(chunk)
                got += len(data)
                if whole:
                    crc = crc32(data, crc)
                await out.add(data)
    except (PeerFailure, ClientError) as exc:
        raise BadGateway(f"node {peer.name} failed while sending {entry.member.name!r}: {exc}") from None
    if got != hi - lo:
        raise BadGateway(f"{entry.member.name!r}: node {peer.name} sent {got} of {hi - lo} bytes")
    return crc if whole else None
