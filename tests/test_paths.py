from __future__ import annotations

import pytest

from asgi_xfer.protocol.errors import BadRequest, NotFound
from asgi_xfer.protocol.paths import MAX_SEGMENT_BYTES, RelPath, format_url_path, parse_rel_path


@pytest.mark.parametrize(("raw", "segments", "trailing"), [
    ("", (), True),
    ("a.txt", ("a.txt",), False),
    ("dir/", ("dir",), True),
    ("a/b/c.bin", ("a", "b", "c.bin"), False),
    ("测试 文件.txt", ("测试 文件.txt",), False),
    ("..foo", ("..foo",), False),  # only whole '..' segments climb
    ("%2e%2e", ("%2e%2e",), False),  # already decoded once: a literal name
])
def test_accepted(raw: str, segments: tuple[str, ...], trailing: bool) -> None:
    assert parse_rel_path(raw) == RelPath(segments, trailing)


@pytest.mark.parametrize("raw", [
    "..", "../etc/passwd", "a/../../b", "a/./b", ".", "a//b",
    "/etc/passwd", "C:/Windows", "c:x", "a\\b", "..\\x",
    "a\x00b", "a\nb", "tab\there", "del\x7f",
    "x" * (MAX_SEGMENT_BYTES + 1),
])
def test_refused_400(raw: str) -> None:
    with pytest.raises(BadRequest):
        parse_rel_path(raw)


@pytest.mark.parametrize("raw", [".xfer", ".xfer/secret.key", "dir/.xfer-staging-123", ".xfer/"])
def test_internal_names_unreachable(raw: str) -> None:
    with pytest.raises(NotFound):
        parse_rel_path(raw)


def test_url_path_is_percent_encoded() -> None:
    rel = parse_rel_path("a b/测?.txt")
    assert format_url_path("/files/", rel) == "/files/a%20b/%E6%B5%8B%3F.txt"
    assert format_url_path("/files/", parse_rel_path("d"), directory=True) == "/files/d/"


@pytest.mark.parametrize(("raw", "name"), [
    ("report.pdf", "report.pdf"),
    ("C:\\Users\\me\\report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("  spaced.txt ", "spaced.txt"),
    ("tab\tname.txt", "tabname.txt"),
    ("测试 文件.txt", "测试 文件.txt"),
])
def test_sanitize_filename(raw: str, name: str) -> None:
    from asgi_xfer.protocol.paths import sanitize_filename

    assert sanitize_filename(raw) == name


@pytest.mark.parametrize("raw", ["", "dir/", "..", ".", "a/..", ".xfer-tmp-1", "\x00\x01"])
def test_sanitize_filename_refuses(raw: str) -> None:
    from asgi_xfer.protocol.paths import sanitize_filename

    with pytest.raises(BadRequest):
        sanitize_filename(raw)
