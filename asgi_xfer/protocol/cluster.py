"""Cluster decisions: which node answers, which headers cross a hop, what a peer's answer means.

Owns: the hop rule (a forwarded request is never forwarded again), where a
`/cluster/` request is looked up (`plan_lookup`), the header sets a node
passes to a peer and back (`plan_forward_headers`, `plan_relay_headers`),
which peer wins (`plan_source`), what a peer's status means for our client
(`classify_peer_status`), node names (`fallback_node_name`) and the entry
plan of a cluster archive (`plan_cluster_entries`, `format_errors_txt`).
Must not: do I/O or know about the client library; the server maps the
client's exceptions to `FAILURE_*` values before asking here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from .errors import BadGateway, GatewayTimeout, NotFound, XferError

# Sent on every node-to-node request, carrying the asking node's name. A
# request that carries it is answered from the node's own files only: node A
# asking B never makes B ask anyone (no loops, no request storms).
HOP_HEADER = "x-xfer-hop"
# Whose copy a response is: the node that holds the file.
NODE_HEADER = "x-xfer-node"

# What a GET/HEAD passes to the owner unchanged: the range and conditional
# fields of RFC 9110 §13-14 and RFC 9530's Want-Repr-Digest, so the owner
# (whose validators they are) evaluates them. Accept-Encoding is left out:
# the relay serves identity bytes, whose Range and ETag mean the same on
# every node. Authorization never: the client's credentials were checked
# here and are not the peer's business (the cluster token replaces them).
FORWARD_GET_HEADERS = (
    "range", "if-range", "if-match", "if-none-match", "if-modified-since",
    "if-unmodified-since", "want-repr-digest",
)
# What a PUT passes: framing and media type, the digests and the
# preconditions the owner checks (SPEC "Simple uploads").
FORWARD_PUT_HEADERS = (
    "content-length", "content-type", "content-digest", "content-md5",
    "if-match", "if-none-match", "if-unmodified-since",
)
# Query parameters of a download that shape the owner's answer.
FORWARD_QUERY = ("inline", "compress")
# Representation and control fields of the owner's answer, returned as
# they are (RFC 9110 §8 and §14.4; Location of a 201; Retry-After of a 429
# or 503). Connection-level fields (Connection, Keep-Alive,
# Transfer-Encoding: RFC 9110 §7.6.1) are hop-by-hop and never relayed.
RELAY_HEADERS = (
    "content-type", "content-length", "content-range", "accept-ranges", "etag",
    "last-modified", "content-disposition", "repr-digest", "content-encoding",
    "vary", "cache-control", "location", "retry-after", "allow",
)

LOOKUP_LOCAL = "local"  # this node's files only (a hop, or our own name)
LOOKUP_NODE = "node"  # the named peer only
LOOKUP_ANY = "any"  # here if present, else the first peer that has it

FAILURE_TIMEOUT = "timeout"  # no answer within the timeout: 504
FAILURE_UNREACHABLE = "unreachable"  # connection refused or reset: 502
FAILURE_BROKEN = "broken"  # closed or broke HTTP before a whole head: 502
FAILURE_REFUSED = "refused"  # 401/403: the peer refused the cluster token: 502
FAILURE_ERROR = "error"  # a 5xx of its own: 502

SOURCE_PEER = "peer"
SOURCE_MISSING = "missing"  # every node answered: nobody has it (404)
SOURCE_BAD_GATEWAY = "bad_gateway"  # nobody that answered has it; one failed (502)
SOURCE_TIMEOUT = "gateway_timeout"  # ... and one did not answer in time (504)
SOURCE_PENDING = "pending"  # an earlier peer (in --peer order) is still out

# Statuses of a probe (HEAD /files/{path}) that mean "I have it": the file,
# or a directory (308 to its slash form, or its listing).
PRESENT_STATUSES = frozenset({200, 308})


@dataclass(frozen=True)
class Lookup:
    mode: str  # LOOKUP_*
    node: str = ""  # the peer's name for LOOKUP_NODE


def is_forwarded(headers: Mapping[str, str]) -> bool:
    return bool(headers.get(HOP_HEADER, "").strip())


def plan_lookup(node: str | None, own_name: str, forwarded: bool) -> Lookup:
    """Where `/cluster/files/{path}[?node=NAME]` is answered from."""
    if forwarded or (node is not None and node == own_name):
        return Lookup(LOOKUP_LOCAL)
    if node:
        return Lookup(LOOKUP_NODE, node)
    return Lookup(LOOKUP_ANY)


def plan_forward_headers(method: str, headers: Mapping[str, str], *, token: str, hop: str) -> dict[str, str]:
    """The fields of the request a node sends to a peer for our client's request."""
    names = FORWARD_PUT_HEADERS if method == "PUT" else FORWARD_GET_HEADERS
    out = {name: headers[name] for name in names if name in headers}
    out[HOP_HEADER] = hop or "-"
    if token:
        out["authorization"] = f"Bearer {token}"
    return out


def plan_relay_headers(headers: Iterable[tuple[str, str]], node: str, root_path: str = "") -> list[tuple[str, str]]:
    """The owner's answer's fields that our client gets, plus whose copy it is."""
    out = [(name, format_relay_location(value, node, root_path) if name == "location" else value)
           for name, value in headers if name in RELAY_HEADERS]
    out.append((NODE_HEADER, node))
    return out


def format_relay_location(location: str, node: str, root_path: str = "") -> str:
    """A peer's redirect to its own `/files/` path (a directory's slash
    form, RFC 9110 §15.4.9 308) as the same path under our `/cluster/files/`
    with `?node=`, so the client stays on that node's copy. Absolute URLs
    and other paths pass as they are."""
    marker = "/files/"
    at = location.find(marker)
    if at < 0 or "://" in location:
        return location
    path, _, query = location[at + len(marker):].partition("?")
    return f"{root_path}/cluster{marker}{path}?node={quote(node, safe='')}" + (f"&{query}" if query else "")


def classify_peer_status(status: int) -> str | None:
    """A FAILURE_* for answers our client must not get as they are, else None
    (relayed unchanged: 2xx, 3xx, 304, 4xx of the request's own making, 507).
    A 401/403 is about our cluster token, not the client's: passing it on
    would tell the client its own credentials are wrong."""
    if status in (401, 403):
        return FAILURE_REFUSED
    if status >= 500 and status != 507:
        return FAILURE_ERROR
    return None


@dataclass(frozen=True)
class PeerAnswer:
    """What one peer said to a probe: a status, or the failure instead of one."""

    name: str
    status: int | None = None
    failure: str = ""  # FAILURE_* when status is None, or a refused/error status
    detail: str = ""

    @property
    def present(self) -> bool:
        return self.status in PRESENT_STATUSES


@dataclass(frozen=True)
class SourceChoice:
    kind: str  # SOURCE_*
    index: int = -1  # the winning peer's position for SOURCE_PEER
    message: str = ""


def plan_source(answers: Sequence[PeerAnswer | None]) -> SourceChoice:
    """The first peer, in --peer order, that has the file. `None` marks a
    peer still out: a later peer's yes waits for it (the order is the
    operator's preference, not a race). With no yes, 404 only when every
    peer truly answered; a failure means the file may be on the peer that
    failed, so the answer is that failure (504 if one timed out, else 502)."""
    for index, answer in enumerate(answers):
        if answer is None:
            return SourceChoice(SOURCE_PENDING)
        if answer.present:
            return SourceChoice(SOURCE_PEER, index)
    failed = [a for a in answers if a is not None and a.failure]
    if not failed:
        return SourceChoice(SOURCE_MISSING, message="no node has this file")
    message = "no reachable node has this file; " + "; ".join(format_failure(a) for a in failed)
    if any(a.failure == FAILURE_TIMEOUT for a in failed):
        return SourceChoice(SOURCE_TIMEOUT, message=message)
    return SourceChoice(SOURCE_BAD_GATEWAY, message=message)


def format_failure(answer: PeerAnswer) -> str:
    what = {
        FAILURE_TIMEOUT: "did not answer in time",
        FAILURE_UNREACHABLE: "is unreachable",
        FAILURE_BROKEN: "closed the connection before answering",
        FAILURE_REFUSED: f"refused the cluster token ({answer.status})",
        FAILURE_ERROR: f"answered {answer.status}",
    }.get(answer.failure, "answered " + str(answer.status))
    if answer.status == 404 and not answer.failure:
        what = "does not have it (404)"
    return f"node {answer.name} {what}" + (f": {answer.detail}" if answer.detail else "")


def plan_forward_query(query: Mapping[str, list[str]]) -> dict[str, str]:
    return {name: query[name][-1] for name in FORWARD_QUERY if query.get(name)}


def peer_error(answer: PeerAnswer) -> XferError:
    """The error our client gets for a peer that gave no usable answer."""
    if answer.failure == FAILURE_TIMEOUT:
        return GatewayTimeout(format_failure(answer))
    return BadGateway(format_failure(answer))


def source_error(choice: SourceChoice) -> XferError:
    if choice.kind == SOURCE_TIMEOUT:
        return GatewayTimeout(choice.message)
    if choice.kind == SOURCE_BAD_GATEWAY:
        return BadGateway(choice.message)
    return NotFound(choice.message)


def fallback_node_name(url: str) -> str:
    """A peer's name until it tells us its own: `host-port` of its URL
    (no ':' so the name can head a zip path on every OS)."""
    parts = urlsplit(url)
    host = (parts.hostname or "peer").replace(":", "-")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}-{port}"


def format_peer_target(base_url: str, route: str, quoted_path: str) -> str:
    """`http://peer[/prefix]` + `/files/` + the percent-encoded path."""
    return base_url.rstrip("/") + route + quoted_path
