"""protocol.clusterarchive as tables: manifests as untrusted input, the member plan, CRC merging."""

from __future__ import annotations

import zlib

import pytest

from asgi_xfer.protocol.clusterarchive import (
    ERRORS_NAME,
    ManifestEntry,
    format_entry_range,
    format_errors_txt,
    format_node_dir,
    known_crcs,
    merge_crcs,
    parse_manifest,
    plan_cluster_entries,
)

GOOD = {"path": "logs/a.txt", "size": 3, "mtime_ns": 10, "mode": 0o644, "dir": False, "etag": '"e"', "crc32": 7}


def test_parse_manifest_reads_entries() -> None:
    (entry,) = parse_manifest({"node": "b", "entries": [GOOD]})
    assert entry == ManifestEntry("logs/a.txt", 3, 10, 0o644, False, '"e"', 7)
    (folder,) = parse_manifest({"entries": [{"path": "logs", "mtime_ns": 1, "dir": True, "size": 99}]})
    assert (folder.is_dir, folder.size, folder.crc32) == (True, 0, None)


@pytest.mark.parametrize("payload", [
    None, [], {}, {"entries": {}}, {"entries": [1]},
    {"entries": [{**GOOD, "path": ""}]},
    {"entries": [{**GOOD, "path": 5}]},
    {"entries": [{**GOOD, "size": -1}]},
    {"entries": [{**GOOD, "size": "3"}]},
    {"entries": [{**GOOD, "size": True}]},
    {"entries": [{**GOOD, "mtime_ns": None}]},
    {"entries": [{**GOOD, "crc32": 1 << 32}]},
    {"entries": [{**GOOD, "crc32": -1}]},
    {"entries": [{**GOOD, "mode": 1 << 20}]},
])
def test_parse_manifest_refuses_malformed(payload: object) -> None:
    with pytest.raises(ValueError):
        parse_manifest(payload)


def _entry(path: str, size: int = 1, crc: int | None = None, is_dir: bool = False, mtime_ns: int = 5) -> ManifestEntry:
    return ManifestEntry(path, size, mtime_ns, 0o644, is_dir, '"e"', crc)


def test_plan_puts_each_nodes_copy_under_its_name_and_errors_last() -> None:
    listings = [("a", [_entry("logs", 0, is_dir=True), _entry("logs/x", 4, mtime_ns=9)]), ("b", []), ("c", [_entry("logs/x", 2)])]
    entries, text = plan_cluster_entries(listings, ["node b does not have it (404)"], now=1000.0)
    assert [(e.node_index, e.member.name, e.member.is_dir) for e in entries] == [
        (0, "a", True), (0, "a/logs", True), (0, "a/logs/x", False),
        (2, "c", True), (2, "c/logs/x", False),
        (-1, ERRORS_NAME, False),
    ]
    assert text == b"node b does not have it (404)\n"
    assert entries[-1].member.size == len(text)
    # Derived entries take the newest mtime they stand for, not the clock.
    assert entries[0].member.mtime_ns == 9 and entries[-1].member.mtime_ns == 9


def test_plan_without_errors_has_no_errors_file() -> None:
    entries, text = plan_cluster_entries([("a", [_entry("f")])], [], now=1.0)
    assert [e.member.name for e in entries] == ["a", "a/f"] and text == b""


@pytest.mark.parametrize("bad_path", ["../escape", "a/../../b", "/abs", "a//b", ".xfer/state"])
def test_plan_leaves_out_a_node_with_a_path_that_escapes(bad_path: str) -> None:
    entries, text = plan_cluster_entries([("a", [_entry("ok")]), ("evil", [_entry(bad_path)])], [], now=1.0)
    assert [e.member.name for e in entries] == ["a", "a/ok", ERRORS_NAME]
    assert text.startswith(b"node evil: left out")


def test_plan_reports_a_repeated_node_name() -> None:
    entries, text = plan_cluster_entries([("a", [_entry("f")]), ("a", [_entry("g")])], [], now=1.0)
    assert [e.member.name for e in entries] == ["a", "a/f", ERRORS_NAME]
    assert b"repeats" in text


@pytest.mark.parametrize(("name", "folder"), [("b", "b"), ("x/y", "x_y"), ("..", "_.."), ("", "node"), ("a\\b", "a_b")])
def test_format_node_dir(name: str, folder: str) -> None:
    assert format_node_dir(name) == folder


def test_format_errors_txt_keeps_one_line_each() -> None:
    assert format_errors_txt(["one", "two\nlines"]) == b"one\ntwo lines\n"


def test_known_and_merged_crcs() -> None:
    listings = [("a", [_entry("f", 3, crc=11), _entry("g", 3)]), ("b", [_entry("h", 0), _entry("k", 2, mtime_ns=5)])]
    entries, text = plan_cluster_entries(listings, ["x"], now=1.0)
    names = [e.member.name for e in entries]
    known = known_crcs(entries, zlib.crc32(text))
    assert {names[i]: crc for i, crc in known.items()} == {
        "a": 0, "a/f": 11, "b": 0, "b/h": 0, ERRORS_NAME: zlib.crc32(text),
    }
    # A second manifest of b: k unchanged gets its CRC; a changed file does not.
    fresh = [_entry("k", 2, crc=99, mtime_ns=5), _entry("h", 0, crc=0)]
    assert {names[i]: c for i, c in merge_crcs(entries, 1, fresh).items()} == {"b/k": 99, "b/h": 0}
    changed = [_entry("k", 2, crc=99, mtime_ns=6)]
    assert merge_crcs(entries, 1, changed) == {}


@pytest.mark.parametrize(("start", "stop", "size", "expected"), [
    (0, 10, 10, None), (0, 5, 10, "bytes=0-4"), (5, 10, 10, "bytes=5-9"), (3, 4, 10, "bytes=3-3"),
])
def test_format_entry_range(start: int, stop: int, size: int, expected: str | None) -> None:
    assert format_entry_range(start, stop, size) == expected


@pytest.mark.parametrize(("start", "stop"), [(5, 5), (-1, 3), (0, 11)])
def test_format_entry_range_refuses_empty_or_outside(start: int, stop: int) -> None:
    with pytest.raises(ValueError):
        format_entry_range(start, stop, 10)
