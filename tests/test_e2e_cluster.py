"""Cluster mode end to end: three `asgi-xfer serve` processes on 127.0.0.1.

Files fetched through a peer are compared with the same request sent to the
owner directly: the owner's answer is the oracle (status, body and every
representation field). curl, aria2c and failure cases (a node killed with
kill -9, a peer that hangs, one that answers 500, a wrong cluster token)
run against the real processes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterproc import TEST_CLUSTER_TIMEOUT_S, FailingPeer, HangingPeer, start_node, start_nodes
from conftest import need_tool, write_file
from serverproc import ServerProc, free_port
from test_e2e_archive import run_tool
from test_e2e_download import assert_json_error, read_header_file

NAMES = ("a", "b", "c")
BIG_BYTES = 24 << 20
# The fields a relay must return as the owner sent them (SPEC "Cluster").
REPRESENTATION = ("content-length", "content-range", "content-type", "etag", "last-modified",
                  "content-disposition", "repr-digest", "accept-ranges")
PAST = "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProc]]:
    started = start_nodes(tmp_path_factory.mktemp("cluster"), NAMES)
    try:
        yield started
    finally:
        for node in started.values():
            node.stop()


@pytest.fixture(scope="module")
def big(nodes: dict[str, ServerProc]) -> bytes:
    """A file that only b has, uploaded with PUT so b knows its SHA-256."""
    data = os.urandom(BIG_BYTES)
    status, _, _ = nodes["b"].request("PUT", "/files/logs/big.bin", body=data)
    assert status == 201
    return data


def normalized(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    """The representation fields and the body, with a multipart boundary
    (random per response) replaced by a fixed one."""
    fields = {name: headers[name] for name in REPRESENTATION if name in headers}
    match = re.search(r"boundary=(\S+)", headers.get("content-type", ""))
    if match:
        boundary = match.group(1).encode()
        body = body.replace(boundary, b"BOUNDARY")
        fields["content-type"] = fields["content-type"].replace(match.group(1), "BOUNDARY")
    return fields, body


def test_local_remote_and_nested_files(nodes: dict[str, ServerProc]) -> None:
    write_file(nodes["a"].root, "here.txt", b"on a")
    write_file(nodes["c"].root, "deep/er/still/x.txt", b"on c, nested")
    for path, body, owner in (("here.txt", b"on a", "a"), ("deep/er/still/x.txt", b"on c, nested", "c")):
        status, headers, got = nodes["a"].request("GET", "/cluster/files/" + path)
        assert (status, got, headers["x-xfer-node"]) == (200, body, owner)
        _, direct, _ = nodes[owner].request("GET", "/files/" + path)
        assert normalized(headers, got) == normalized(direct, body)


def test_a_remote_directory_redirects_to_its_listing_on_that_node(nodes: dict[str, ServerProc]) -> None:
    write_file(nodes["c"].root, "only-c/dir/f.txt", b"x")
    status, headers, _ = nodes["a"].request("GET", "/cluster/files/only-c/dir")
    assert (status, headers["location"]) == (308, "/cluster/files/only-c/dir/?node=c")
    status, headers, body = nodes["a"].request("GET", headers["location"])
    assert (status, headers["x-xfer-node"]) == (200, "c")
    assert [e["name"] for e in json.loads(body)["entries"]] == ["f.txt"]


def test_nobody_has_it_is_404(nodes: dict[str, ServerProc]) -> None:
    status, headers, body = nodes["a"].request("GET", "/cluster/files/nowhere/at/all.txt")
    assert_json_error(status, headers, body, 404)


def test_node_parameter_picks_the_copy(nodes: dict[str, ServerProc]) -> None:
    for name in NAMES:
        write_file(nodes[name].root, "same/name.txt", f"copy of {name}".encode())
    for name in NAMES:
        status, headers, body = nodes["b"].request("GET", f"/cluster/files/same/name.txt?node={name}")
        assert (status, body, headers["x-xfer-node"]) == (200, f"copy of {name}".encode(), name)
    # Present here: our own copy wins without asking anyone.
    status, headers, body = nodes["b"].request("GET", "/cluster/files/same/name.txt")
    assert (body, headers["x-xfer-node"]) == (b"copy of b", "b")
    status, headers, body = nodes["a"].request("GET", "/cluster/files/same/name.txt?node=zz")
    assert_json_error(status, headers, body, 404)


def test_a_forwarded_request_is_never_forwarded_again(nodes: dict[str, ServerProc], big: bytes) -> None:
    # b has it, but a request that already made a hop is answered from a's own files.
    status, headers, body = nodes["a"].request("GET", "/cluster/files/logs/big.bin", headers={"x-xfer-hop": "c"})
    assert_json_error(status, headers, body, 404)
    assert headers["x-xfer-node"] == "a"
    status, headers, body = nodes["a"].request("GET", "/cluster/files/logs/big.bin?node=b", headers={"x-xfer-hop": "c"})
    assert_json_error(status, headers, body, 404)


def test_first_peer_in_order_wins(nodes: dict[str, ServerProc]) -> None:
    # a's peers are b then c: both have it, b's copy is served.
    write_file(nodes["b"].root, "both/f.txt", b"b's")
    write_file(nodes["c"].root, "both/f.txt", b"c's")
    _, headers, body = nodes["a"].request("GET", "/cluster/files/both/f.txt")
    assert (body, headers["x-xfer-node"]) == (b"b's", "b")


def _conditional_cases(etag: str, last_modified: str) -> list[dict[str, str]]:
    return [
        {},
        {"range": "bytes=0-99"},
        {"range": "bytes=1000-"},
        {"range": "bytes=-500"},
        {"range": "bytes=0-9,100-199,5000-5009"},
        {"range": f"bytes={BIG_BYTES}-"},  # 416 with bytes */N
        {"range": "bytes=abc"},  # invalid: ignored, 200
        {"range": "items=0-9"},
        {"range": "bytes=0-99", "if-range": etag},
        {"range": "bytes=0-99", "if-range": '"other"'},
        {"range": "bytes=0-99", "if-range": last_modified},
        {"if-none-match": etag},
        {"if-none-match": '"other"'},
        {"if-match": '"other"'},
        {"if-match": etag},
        {"if-modified-since": last_modified},
        {"if-modified-since": PAST},
        {"if-unmodified-since": PAST},
        {"want-repr-digest": "sha-256=1"},
        {"want-repr-digest": "sha-256=1", "range": "bytes=5-6"},
    ]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_ranges_and_conditions_through_a_peer_match_the_owner(nodes: dict[str, ServerProc], big: bytes,
                                                              method: str) -> None:
    _, head, _ = nodes["b"].request("HEAD", "/files/logs/big.bin")
    seen = set()
    for case in _conditional_cases(head["etag"], head["last-modified"]):
        status, headers, body = nodes["a"].request(method, "/cluster/files/logs/big.bin", headers=case)
        o_status, o_headers, o_body = nodes["b"].request(method, "/files/logs/big.bin", headers=case)
        assert status == o_status, case
        assert normalized(headers, body) == normalized(o_headers, o_body), case
        assert headers["x-xfer-node"] == "b"
        seen.add(status)
    # HEAD may ignore Range (RFC 9110 §14.2), and the owner does.
    assert seen == ({200, 206, 304, 412, 416} if method == "GET" else {200, 304, 412})
    _, headers, _ = nodes["a"].request(method, "/cluster/files/logs/big.bin", headers={"want-repr-digest": "sha-256=1"})
    # RFC 9530 §2: sha-256 as a byte sequence (RFC 8941 :base64:).
    assert headers["repr-digest"] == "sha-256=:" + base64.b64encode(hashlib.sha256(big).digest()).decode() + ":"


def test_cluster_routes_need_the_access_files_need(nodes: dict[str, ServerProc], big: bytes) -> None:
    status, headers, body = nodes["a"].request("GET", "/cluster/files/logs/big.bin", auth=False)
    assert_json_error(status, headers, body, 401)
    status, headers, body = nodes["a"].request("GET", "/cluster/files/logs/big.bin", auth=False,
                                               headers={"authorization": "Bearer wrong"})
    assert_json_error(status, headers, body, 401)


def test_a_signed_link_opens_a_cluster_path_and_only_it(nodes: dict[str, ServerProc], big: bytes) -> None:
    status, _, body = nodes["a"].request("POST", "/sign", body=json.dumps(
        {"path": "/cluster/files/logs/big.bin", "expires_in": 600}).encode(), headers={"content-type": "application/json"})
    assert status == 200, body
    url = json.loads(body)["url"]
    status, headers, got = nodes["a"].request("GET", url, auth=False)
    assert (status, headers["x-xfer-node"]) == (200, "b") and got == big
    other = url.replace("/cluster/files/logs/big.bin", "/cluster/files/logs/other.bin")
    status, headers, body = nodes["a"].request("GET", other, auth=False)
    assert_json_error(status, headers, body, 403)


def test_curl_resume_through_a_peer(nodes: dict[str, ServerProc], big: bytes, tmp_path: Path) -> None:
    out = tmp_path / "big.bin"
    out.write_bytes(big[: 5 << 20])  # what a broken first attempt left
    dump = tmp_path / "headers"
    done = subprocess.run(
        [need_tool("curl"), "-sS", "-C", "-", "-D", str(dump), "-o", str(out),
         "-H", f"Authorization: Bearer {nodes['a'].token}", nodes["a"].url + "/cluster/files/logs/big.bin"],
        capture_output=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    status, headers = read_header_file(dump)
    assert (status, headers["content-range"]) == (206, f"bytes {5 << 20}-{BIG_BYTES - 1}/{BIG_BYTES}")
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(big).digest()


def test_aria2c_split_through_a_peer(nodes: dict[str, ServerProc], big: bytes, tmp_path: Path) -> None:
    done = subprocess.run(
        [need_tool("aria2c"), "-q", "-x", "8", "-s", "8", "-k", "1M", "--file-allocation=none",
         "--allow-overwrite=true", "--auto-file-renaming=false", "--max-tries=1",
         f"--header=Authorization: Bearer {nodes['a'].token}",
         "-d", str(tmp_path), "-o", "aria.bin", nodes["a"].url + "/cluster/files/logs/big.bin"],
        capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert hashlib.sha256((tmp_path / "aria.bin").read_bytes()).digest() == hashlib.sha256(big).digest()


def test_own_client_split_through_a_peer(nodes: dict[str, ServerProc], big: bytes, tmp_path: Path) -> None:
    out = tmp_path / "own.bin"
    done = subprocess.run(
        [sys.executable, "-m", "asgi_xfer", "get", "-j", "8", "--token", str(nodes["a"].token), "-o", str(out),
         "--sha256", hashlib.sha256(big).hexdigest(), nodes["a"].url + "/cluster/files/logs/big.bin"],
        capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == big


def test_put_through_a_peer_lands_on_the_named_node(nodes: dict[str, ServerProc]) -> None:
    data = os.urandom(3 << 20)
    status, headers, body = nodes["a"].request("PUT", "/cluster/files/up/one.bin?node=c", body=data)
    assert status == 201, body
    result = json.loads(body)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert headers["etag"] == result["etag"] and headers["x-xfer-node"] == "c"
    assert (nodes["c"].root / "up/one.bin").read_bytes() == data
    assert not (nodes["a"].root / "up/one.bin").exists()
    # The owner's checks apply: create-only, and a wrong digest (nothing stored).
    status, headers, body = nodes["a"].request("PUT", "/cluster/files/up/one.bin?node=c", body=b"x",
                                               headers={"if-none-match": "*"})
    assert_json_error(status, headers, body, 412)
    wrong = "sha-256=:" + "A" * 43 + "=:"
    status, headers, body = nodes["a"].request("PUT", "/cluster/files/up/two.bin?node=c", body=b"abc",
                                               headers={"content-digest": wrong})
    assert_json_error(status, headers, body, 422)
    assert not (nodes["c"].root / "up/two.bin").exists()
    status, headers, body = nodes["a"].request("PUT", "/cluster/files/up/one.bin?node=c", body=b"new",
                                               headers={"if-match": result["etag"]})
    assert status == 200 and (nodes["c"].root / "up/one.bin").read_bytes() == b"new"


def test_put_needs_write_access(nodes: dict[str, ServerProc]) -> None:
    status, headers, body = nodes["a"].request("PUT", "/cluster/files/up/x.bin?node=c", body=b"x", auth=False)
    assert_json_error(status, headers, body, 401)


def test_cluster_nodes_reports_every_peer(nodes: dict[str, ServerProc]) -> None:
    status, _, body = nodes["a"].request("GET", "/cluster/nodes")
    assert status == 200
    listed = json.loads(body)["nodes"]
    assert [n["name"] for n in listed] == ["a", "b", "c"]
    for entry in listed:
        assert entry["reachable"] is True
        assert isinstance(entry["latency_ms"], float) and entry["latency_ms"] >= 0
        assert isinstance(entry["free_bytes"], int) and entry["free_bytes"] > 0
        assert entry["version"]
    assert [n["url"] for n in listed[1:]] == [nodes["b"].url, nodes["c"].url]
    # /healthz keeps its public answer; the details need a token.
    assert json.loads(nodes["b"].request("GET", "/healthz", auth=False)[2]) == {"status": "ok"}


# -- failures ---------------------------------------------------------------------------


@pytest.fixture()
def lone(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A node whose only peers are fakes; started by the test."""
    made: list[ServerProc] = []
    fakes: list[HangingPeer | FailingPeer] = []

    def start(*peers: str, args: tuple[str, ...] = ()) -> ServerProc:
        node = start_node(tmp_path / f"n{len(made)}", f"n{len(made)}", free_port(), peers, *args)
        made.append(node)
        return node

    yield {"start": start, "fakes": fakes}
    for node in made:
        node.stop()
    for fake in fakes:
        fake.close()


def test_a_hanging_peer_gives_504_within_the_timeout(lone: dict) -> None:
    hang = HangingPeer()
    lone["fakes"].append(hang)
    node = lone["start"](hang.url)
    started = time.monotonic()
    status, headers, body = node.request("GET", "/cluster/files/x.bin", timeout=30)
    assert_json_error(status, headers, body, 504)
    status, headers, body = node.request("GET", f"/cluster/files/x.bin?node=127.0.0.1-{hang.port}", timeout=30)
    assert_json_error(status, headers, body, 504)
    # Not a timed assertion of speed: the bound is the configured timeouts, with slack.
    assert time.monotonic() - started < 4 * TEST_CLUSTER_TIMEOUT_S + 10


def test_a_peer_answering_500_gives_502(lone: dict) -> None:
    fail = FailingPeer()
    lone["fakes"].append(fail)
    node = lone["start"](fail.url)
    status, headers, body = node.request("GET", "/cluster/files/x.bin")
    error = assert_json_error(status, headers, body, 502)
    assert "500" in error["message"]
    status, headers, body = node.request("GET", f"/cluster/files/x.bin?node=127.0.0.1-{fail.port}")
    assert_json_error(status, headers, body, 502)
    status, headers, body = node.request("PUT", f"/cluster/files/x.bin?node=127.0.0.1-{fail.port}", body=b"abc")
    assert_json_error(status, headers, body, 502)


def test_an_unreachable_peer_gives_502(lone: dict) -> None:
    node = lone["start"](f"http://127.0.0.1:{free_port()}")
    status, headers, body = node.request("GET", "/cluster/files/x.bin")
    assert "unreachable" in assert_json_error(status, headers, body, 502)["message"]


def test_a_wrong_cluster_token_gives_502(lone: dict, nodes: dict[str, ServerProc], big: bytes) -> None:
    """Our client's own token is valid on b too: a 502 also shows that it is
    not what the node forwards."""
    node = lone["start"](nodes["b"].url, args=("--cluster-token", "not-the-clusters"))
    status, headers, body = node.request("GET", "/cluster/files/logs/big.bin")
    assert "refused" in assert_json_error(status, headers, body, 502)["message"]
    # The same node with the right token gets it: the token was the only fault.
    right = lone["start"](nodes["b"].url)
    status, _, body = right.request("GET", "/cluster/files/logs/big.bin?node=b")
    assert status == 200 and body == big


def _kill_owner_mid_transfer(lone: dict, tmp_path: Path, rel: str, route: str) -> tuple[ServerProc, Path]:
    """curl (slow reader) through a node while the file's owner is killed
    with kill -9 after 2 MiB; returns the node and what curl wrote."""
    origin = lone["start"]()
    write_file(origin.root, rel, os.urandom(64 << 20))
    node = lone["start"](origin.url)
    out = tmp_path / "out.bin"
    curl = subprocess.Popen(
        [need_tool("curl"), "-sS", "--limit-rate", "4M", "-o", str(out),
         "-H", f"Authorization: Bearer {node.token}", node.url + route],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while (not out.exists() or out.stat().st_size < (2 << 20)) and time.monotonic() < deadline:
        time.sleep(0.05)
    origin.stop(signal.SIGKILL)
    _, stderr = curl.communicate(timeout=60)
    # 18: "transfer closed with outstanding read data remaining".
    assert curl.returncode == 18, stderr
    return node, out


def test_an_owner_killed_mid_transfer_truncates_the_client(lone: dict, tmp_path: Path) -> None:
    node, out = _kill_owner_mid_transfer(lone, tmp_path, "huge.bin", "/cluster/files/huge.bin")
    assert out.stat().st_size < 64 << 20
    # The node in the middle lives on, and says the owner is gone.
    status, headers, body = node.request("GET", "/cluster/files/huge.bin")
    assert "unreachable" in assert_json_error(status, headers, body, 502)["message"]


# -- cluster archives -------------------------------------------------------------------


def _zip_of(node: ServerProc, path: str, tmp_path: Path, *args: str, out: Path | None = None) -> tuple[int, dict[str, str], Path]:
    out = out or tmp_path / "cluster.zip"
    dump = tmp_path / "zip.headers"
    done = subprocess.run(
        [need_tool("curl"), "-sS", "-D", str(dump), "-o", str(out), *args,
         "-H", f"Authorization: Bearer {node.token}", node.url + "/cluster/archive/" + path],
        capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    status, headers = read_header_file(dump)
    return status, headers, out


def _expected_files(nodes: dict[str, ServerProc], rel: str) -> dict[str, bytes]:
    """What every node holds under `rel`, read from their disks: the oracle."""
    out = {}
    for name, node in nodes.items():
        top = node.root / rel
        for path in sorted(top.rglob("*")) if top.is_dir() else []:
            if path.is_file():
                out[f"{name}/{path.relative_to(node.root).as_posix()}"] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def spread(nodes: dict[str, ServerProc]) -> str:
    """var/log/app on every node with different files, one big (over the
    64 MiB limit of CRCs in local headers, so the descriptor layout is used)."""
    write_file(nodes["a"].root, "var/log/app/a.log", b"a\n" * 1000)
    write_file(nodes["a"].root, "var/log/app/nested/deeper/a2.log", b"")
    write_file(nodes["b"].root, "var/log/app/b.log", os.urandom(70 << 20))
    write_file(nodes["c"].root, "var/log/app/c.log", b"c" * 12345)
    return "var/log/app"


def test_cluster_zip_holds_every_nodes_copy(nodes: dict[str, ServerProc], spread: str, tmp_path: Path) -> None:
    status, headers, out = _zip_of(nodes["a"], spread, tmp_path)
    assert status == 200
    assert int(headers["content-length"]) == out.stat().st_size
    assert headers["etag"].startswith('"') and headers["accept-ranges"] == "bytes"
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        files = {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}
    assert files == _expected_files(nodes, spread)
    assert "No errors detected" in run_tool("unzip", "-t", str(out))
    assert "Everything is Ok" in run_tool("7z", "t", str(out))
    # Asked of b, whose own copy comes first: the same files.
    (tmp_path / "b").mkdir()
    _, _, out_b = _zip_of(nodes["b"], spread, tmp_path / "b")
    with zipfile.ZipFile(out_b) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        assert {name: archive.read(name) for name in names} == files
    assert names[0].startswith("b/")


def test_cluster_zip_of_a_small_tree_has_crcs_up_front(nodes: dict[str, ServerProc], tmp_path: Path) -> None:
    write_file(nodes["b"].root, "small/one.txt", b"one")
    write_file(nodes["c"].root, "small/two/two.txt", b"two" * 100)
    status, headers, out = _zip_of(nodes["a"], "small", tmp_path)
    assert status == 200
    with zipfile.ZipFile(out) as archive:
        files = {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}
        errors = archive.read("_errors.txt").decode()
        # No data descriptors: CRCs were asked of the nodes before the first byte.
        assert all(not i.flag_bits & 0x08 for i in archive.infolist())
    assert files.pop("_errors.txt").decode() == errors
    assert files == {"b/small/one.txt": b"one", "c/small/two/two.txt": b"two" * 100}
    assert errors == "node a does not have it (404)\n"


def test_cluster_zip_resumes_with_curl(nodes: dict[str, ServerProc], spread: str, tmp_path: Path) -> None:
    _, _, whole = _zip_of(nodes["a"], spread, tmp_path)
    expected = whole.read_bytes()
    for cut in (10, len(expected) // 3, len(expected) - 100):
        part = tmp_path / f"part{cut}.zip"
        part.write_bytes(expected[:cut])
        status, headers, _ = _zip_of(nodes["a"], spread, tmp_path, "-C", "-", out=part)
        assert status == 206, headers
        assert headers["content-range"] == f"bytes {cut}-{len(expected) - 1}/{len(expected)}"
        assert part.read_bytes() == expected, cut


def test_cluster_zip_conditionals(nodes: dict[str, ServerProc], spread: str) -> None:
    status, headers, _ = nodes["a"].request("HEAD", "/cluster/archive/" + spread)
    assert status == 200
    etag = headers["etag"]
    status, _, _ = nodes["a"].request("GET", "/cluster/archive/" + spread, headers={"if-none-match": etag})
    assert status == 304
    status, _, body = nodes["a"].request("GET", "/cluster/archive/" + spread, headers={"range": "bytes=0-99", "if-range": '"old"'})
    assert status == 200 and len(body) == int(headers["content-length"])
    status, _, _ = nodes["a"].request("GET", "/cluster/archive/" + spread, headers={"range": "bytes=99999999999-"})
    assert status == 416


def test_cluster_zip_nobody_has_it(nodes: dict[str, ServerProc]) -> None:
    status, headers, body = nodes["a"].request("GET", "/cluster/archive/not/anywhere")
    assert_json_error(status, headers, body, 404)


def test_cluster_zip_lists_failing_nodes_in_errors_txt(lone: dict, nodes: dict[str, ServerProc], spread: str,
                                                        tmp_path: Path) -> None:
    hang, fail = HangingPeer(), FailingPeer()
    lone["fakes"] += [hang, fail]
    dead = f"http://127.0.0.1:{free_port()}"
    node = lone["start"](nodes["c"].url, hang.url, fail.url, dead)
    wrong = lone["start"](nodes["b"].url, args=("--cluster-token", "not-the-clusters"))
    status, _, out = _zip_of(node, spread, tmp_path)
    assert status == 200
    with zipfile.ZipFile(out) as archive:
        lines = archive.read("_errors.txt").decode().splitlines()
        names = {i.filename for i in archive.infolist() if not i.is_dir()}
    assert names == {"c/var/log/app/c.log", "_errors.txt"}
    assert lines[0] == "node n0 does not have it (404)"
    assert lines[1].startswith(f"node 127.0.0.1-{hang.port} did not answer in time")
    assert lines[2] == f"node 127.0.0.1-{fail.port} answered 500"
    assert lines[3].startswith(f"node 127.0.0.1-{dead.rsplit(':', 1)[1]} is unreachable")
    status, _, out = _zip_of(wrong, spread, tmp_path)
    with zipfile.ZipFile(out) as archive:
        # b names itself even in its refusal (X-Xfer-Node on every answer to a peer).
        assert archive.read("_errors.txt").decode().splitlines()[1] == "node b refused the cluster token (401)"


def test_an_owner_killed_mid_archive_truncates_the_client(lone: dict, tmp_path: Path) -> None:
    _, out = _kill_owner_mid_transfer(lone, tmp_path, "dump/huge.bin", "/cluster/archive/dump")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(out)
