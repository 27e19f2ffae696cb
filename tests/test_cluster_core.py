"""protocol.cluster as tables: lookups, hop rule, header sets, which peer wins."""

from __future__ import annotations

import pytest

from asgi_xfer.protocol.cluster import (
    FAILURE_BROKEN,
    FAILURE_ERROR,
    FAILURE_REFUSED,
    FAILURE_TIMEOUT,
    FAILURE_UNREACHABLE,
    HOP_HEADER,
    LOOKUP_ANY,
    LOOKUP_LOCAL,
    LOOKUP_NODE,
    NODE_HEADER,
    SOURCE_BAD_GATEWAY,
    SOURCE_MISSING,
    SOURCE_PEER,
    SOURCE_PENDING,
    SOURCE_TIMEOUT,
    Lookup,
    PeerAnswer,
    classify_peer_status,
    fallback_node_name,
    is_forwarded,
    peer_error,
    plan_forward_headers,
    plan_forward_query,
    plan_lookup,
    plan_relay_headers,
    plan_source,
)


@pytest.mark.parametrize(("node", "forwarded", "expected"), [
    (None, False, Lookup(LOOKUP_ANY)),
    ("", False, Lookup(LOOKUP_ANY)),
    ("me", False, Lookup(LOOKUP_LOCAL)),
    ("b", False, Lookup(LOOKUP_NODE, "b")),
    # A forwarded request is answered here, whatever it names: never a second hop.
    (None, True, Lookup(LOOKUP_LOCAL)),
    ("b", True, Lookup(LOOKUP_LOCAL)),
])
def test_plan_lookup(node: str | None, forwarded: bool, expected: Lookup) -> None:
    assert plan_lookup(node, "me", forwarded) == expected


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, False), ({HOP_HEADER: ""}, False), ({HOP_HEADER: " "}, False), ({HOP_HEADER: "a"}, True),
])
def test_is_forwarded(headers: dict[str, str], expected: bool) -> None:
    assert is_forwarded(headers) is expected


CLIENT_GET = {
    "authorization": "Bearer the-clients-own", "cookie": "c=1", "range": "bytes=0-9",
    "if-range": '"e"', "if-match": '"e"', "if-none-match": '"x"', "if-modified-since": "Sun, 06 Nov 1994 08:49:37 GMT",
    "if-unmodified-since": "Sun, 06 Nov 1994 08:49:37 GMT", "want-repr-digest": "sha-256=1",
    "accept-encoding": "gzip", "connection": "keep-alive", "host": "a:1", "content-length": "0",
}


def test_forward_get_passes_range_and_conditions_never_credentials() -> None:
    out = plan_forward_headers("GET", CLIENT_GET, token="cluster", hop="a")
    assert out == {
        "range": "bytes=0-9", "if-range": '"e"', "if-match": '"e"', "if-none-match": '"x"',
        "if-modified-since": "Sun, 06 Nov 1994 08:49:37 GMT", "if-unmodified-since": "Sun, 06 Nov 1994 08:49:37 GMT",
        "want-repr-digest": "sha-256=1", HOP_HEADER: "a", "authorization": "Bearer cluster",
    }


def test_forward_put_passes_framing_digests_and_preconditions() -> None:
    client = {"authorization": "Bearer mine", "content-length": "5", "content-type": "text/plain",
              "content-digest": "sha-256=:x:", "content-md5": "y", "if-match": '"e"', "if-none-match": "*",
              "range": "bytes=0-1", "expect": "100-continue", "transfer-encoding": "chunked"}
    out = plan_forward_headers("PUT", client, token="", hop="")
    assert out == {"content-length": "5", "content-type": "text/plain", "content-digest": "sha-256=:x:",
                   "content-md5": "y", "if-match": '"e"', "if-none-match": "*", HOP_HEADER: "-"}


def test_relay_headers_keep_representation_drop_hop_by_hop() -> None:
    peer = [("content-type", "text/plain"), ("content-length", "10"), ("content-range", "bytes 0-9/20"),
            ("etag", '"e"'), ("last-modified", "x"), ("content-disposition", "attachment"), ("repr-digest", "d"),
            ("accept-ranges", "bytes"), ("connection", "close"), ("keep-alive", "t=5"), ("transfer-encoding", "chunked"),
            ("date", "x"), ("server", "uvicorn"), (NODE_HEADER, "spoof"), ("www-authenticate", "Bearer")]
    assert plan_relay_headers(peer, "b") == [
        ("content-type", "text/plain"), ("content-length", "10"), ("content-range", "bytes 0-9/20"), ("etag", '"e"'),
        ("last-modified", "x"), ("content-disposition", "attachment"), ("repr-digest", "d"),
        ("accept-ranges", "bytes"), (NODE_HEADER, "b"),
    ]


@pytest.mark.parametrize(("location", "root", "expected"), [
    ("/files/logs/", "", "/cluster/files/logs/?node=b"),
    ("/xfer/files/logs/?inline=1", "/mine", "/mine/cluster/files/logs/?node=b&inline=1"),
    ("/uploads/abc", "", "/uploads/abc"),
    ("https://elsewhere/files/x", "", "https://elsewhere/files/x"),
])
def test_relayed_redirects_stay_on_the_owner(location: str, root: str, expected: str) -> None:
    assert plan_relay_headers([("location", location)], "b", root) == [("location", expected), (NODE_HEADER, "b")]


@pytest.mark.parametrize(("status", "expected"), [
    (200, None), (206, None), (304, None), (308, None), (404, None), (412, None), (413, None), (416, None),
    (422, None), (507, None), (401, FAILURE_REFUSED), (403, FAILURE_REFUSED), (500, FAILURE_ERROR),
    (502, FAILURE_ERROR), (503, FAILURE_ERROR),
])
def test_classify_peer_status(status: int, expected: str | None) -> None:
    assert classify_peer_status(status) == expected


HAS = PeerAnswer("x", 200)
DIR = PeerAnswer("x", 308)
NO = PeerAnswer("x", 404)
TIMEOUT = PeerAnswer("x", failure=FAILURE_TIMEOUT)
DOWN = PeerAnswer("x", failure=FAILURE_UNREACHABLE)
BROKEN = PeerAnswer("x", failure=FAILURE_BROKEN)
REFUSED = PeerAnswer("x", 401, FAILURE_REFUSED)
ERR = PeerAnswer("x", 500, FAILURE_ERROR)


@pytest.mark.parametrize(("answers", "kind", "index"), [
    ([HAS], SOURCE_PEER, 0),
    ([DIR], SOURCE_PEER, 0),
    ([NO, HAS], SOURCE_PEER, 1),
    ([HAS, HAS], SOURCE_PEER, 0),
    ([DOWN, HAS], SOURCE_PEER, 1),  # a failure does not hide a later copy
    ([TIMEOUT, NO, HAS], SOURCE_PEER, 2),
    # --peer order, not the fastest: a later yes waits for an earlier peer still out.
    ([None, HAS], SOURCE_PENDING, -1),
    ([NO, None, HAS], SOURCE_PENDING, -1),
    ([HAS, None], SOURCE_PEER, 0),
    ([NO, NO], SOURCE_MISSING, -1),
    ([], SOURCE_MISSING, -1),
    ([NO, DOWN], SOURCE_BAD_GATEWAY, -1),
    ([BROKEN], SOURCE_BAD_GATEWAY, -1),
    ([REFUSED, NO], SOURCE_BAD_GATEWAY, -1),
    ([ERR], SOURCE_BAD_GATEWAY, -1),
    ([DOWN, TIMEOUT], SOURCE_TIMEOUT, -1),
    ([TIMEOUT], SOURCE_TIMEOUT, -1),
])
def test_plan_source(answers: list[PeerAnswer | None], kind: str, index: int) -> None:
    choice = plan_source(answers)
    assert (choice.kind, choice.index) == (kind, index)


@pytest.mark.parametrize(("answer", "status"), [
    (TIMEOUT, 504), (DOWN, 502), (BROKEN, 502), (REFUSED, 502), (ERR, 502),
])
def test_peer_error_status(answer: PeerAnswer, status: int) -> None:
    assert peer_error(answer).status == status


@pytest.mark.parametrize(("url", "name"), [
    ("http://127.0.0.1:8001", "127.0.0.1-8001"),
    ("http://node7/", "node7-80"),
    ("https://node7/xfer/", "node7-443"),
    ("http://[::1]:9000", "--1-9000"),
])
def test_fallback_node_name(url: str, name: str) -> None:
    assert fallback_node_name(url) == name
    assert ":" not in name


def test_forward_query_keeps_only_what_shapes_the_answer() -> None:
    query = {"node": ["b"], "inline": ["1"], "sig": ["s"], "expires": ["9"], "compress": ["gzip"]}
    assert plan_forward_query(query) == {"inline": "1", "compress": "gzip"}
