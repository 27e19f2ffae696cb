"""The client's pure decisions as tables: RFC 9110 validators and
Content-Range, segment plans, when a partial may be resumed, retry delays,
upload targets and chunks, tus fields, progress text and exit codes."""

from __future__ import annotations

import base64
import hashlib
import random
from pathlib import Path

import pytest

from asgi_xfer.client import commands, errors
from asgi_xfer.client.models import parse_url
from asgi_xfer.client.progress import ProgressBar, format_bytes, format_duration, format_progress_line
from asgi_xfer.client.resume import (
    ContentRange,
    DownloadState,
    Segment,
    check_partial_response,
    check_resumable,
    format_state,
    parse_content_range,
    parse_state,
    plan_segments,
    select_digests,
    select_validator,
)
from asgi_xfer.client.retry import RetryPolicy, is_retryable, parse_retry_after, plan_delay_s
from asgi_xfer.client.uploadplan import (
    Session,
    chunk_span,
    count_chunks,
    format_upload_checksum,
    format_upload_metadata,
    parse_session,
    plan_missing_chunks,
    resolve_upload_target,
)

DATE = "Tue, 15 Nov 1994 08:12:31 GMT"
EARLIER = "Tue, 15 Nov 1994 08:12:30 GMT"


# RFC 9110 §13.1.5 / §8.8.2.2 -------------------------------------------------

@pytest.mark.parametrize("headers, etag, modified", [
    ({"etag": '"xyzzy"'}, '"xyzzy"', None),
    ({"etag": '"xyzzy"', "last-modified": EARLIER, "date": DATE}, '"xyzzy"', None),
    # A weak ETag must not go into If-Range, and its presence rules out the date.
    ({"etag": 'W/"xyzzy"', "last-modified": EARLIER, "date": DATE}, None, None),
    ({"last-modified": EARLIER, "date": DATE}, None, EARLIER),  # Date ≥ LM + 1 s: strong
    ({"last-modified": DATE, "date": DATE}, None, None),  # same second: weak
    ({"last-modified": EARLIER}, None, None),  # no Date: cannot tell
    ({"last-modified": "yesterday", "date": DATE}, None, None),
    ({}, None, None),
])
def test_select_validator(headers: dict[str, str], etag: str | None, modified: str | None) -> None:
    validator = select_validator(headers)
    assert (validator.etag, validator.last_modified) == (etag, modified)


# RFC 9110 §14.4 ----------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("bytes 42-1233/1234", ContentRange(42, 1233, 1234)),
    ("bytes 42-1233/*", ContentRange(42, 1233, None)),
    ("bytes */1234", ContentRange(None, None, 1234)),
    ("bytes 0-0/1", ContentRange(0, 0, 1)),
])
def test_parse_content_range(value: str, expected: ContentRange) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize("value", ["", "bytes", "items 0-1/2", "bytes 5-4/10", "bytes 0-10/10",
                                   "bytes -1-2/10", "bytes 0-1", "bytes a-b/c", "bytes ０-1/2"])
def test_parse_content_range_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_content_range(value)


# Segment plans -------------------------------------------------------------------

MIB = 1024 * 1024


@pytest.mark.parametrize("size, count, expected", [
    (None, 8, [(0, None)]),
    (0, 8, [(0, 0)]),
    (10, 8, [(0, 10)]),  # below the minimum segment: one
    (8 * MIB, 8, [(i * MIB, (i + 1) * MIB) for i in range(8)]),
    (3 * MIB, 8, [(0, MIB), (MIB, 2 * MIB), (2 * MIB, 3 * MIB)]),
    (10 * MIB + 1, 3, [(0, 3495253), (3495253, 6990507), (6990507, 10 * MIB + 1)]),
])
def test_plan_segments(size: int | None, count: int, expected: list[tuple[int, int | None]]) -> None:
    assert [(s.start, s.end) for s in plan_segments(size, count)] == expected


def test_segment_range_field() -> None:
    assert Segment(100, 200, 10).format_range() == "bytes=110-199"
    assert Segment(0, None, 5).format_range() == "bytes=5-"


# Whether a stored partial may be resumed ----------------------------------------

URL = "http://h/files/a"


def state(**changes: object) -> DownloadState:
    base = DownloadState(url=URL, size=300, etag='"e1"', last_modified=None, ranges=True,
                         segments=[Segment(0, 100, 100), Segment(100, 200, 50), Segment(200, 300, 0)])
    for key, value in changes.items():
        setattr(base, key, value)
    return base


@pytest.mark.parametrize("stored, url, part_size, resumable", [
    (state(), URL, 300, True),
    (state(), URL, 150, True),  # holds everything the control file claims
    (state(), URL, 149, False),  # shorter than claimed
    (state(), URL, None, False),
    (state(), "http://h/files/b", 300, False),
    (state(ranges=False), URL, 300, False),
    (state(etag=None), URL, 300, False),  # nothing to pin the version with
    (state(etag=None, last_modified=EARLIER), URL, 300, True),
    (state(segments=[Segment(0, 100, 100), Segment(150, 300, 0)]), URL, 300, False),  # a hole
    (state(segments=[Segment(0, 100, 101), Segment(100, 300, 0)]), URL, 300, False),  # overfull
    (state(segments=[Segment(0, 200, 0)]), URL, 300, False),  # short of the size
    (state(segments=[]), URL, 300, False),
    (state(size=None, segments=[Segment(0, None, 7)]), URL, 7, True),
])
def test_check_resumable(stored: DownloadState, url: str, part_size: int | None, resumable: bool) -> None:
    assert (check_resumable(stored, url, part_size) is None) is resumable


@pytest.mark.parametrize("headers, ok", [
    ({"content-range": "bytes 150-199/300", "etag": '"e1"'}, True),
    ({"content-range": "bytes 150-199/300"}, True),  # no ETag sent: the If-Range match stands
    ({"content-range": "bytes 150-199/300", "etag": '"e2"'}, False),  # ignored If-Range
    ({"content-range": "bytes 150-199/301", "etag": '"e1"'}, False),  # size changed
    ({"content-range": "bytes 0-199/300", "etag": '"e1"'}, False),  # not what was asked
    ({"content-range": "bytes 150-160/300", "etag": '"e1"'}, False),  # short range
    ({"etag": '"e1"'}, False),
])
def test_check_partial_response(headers: dict[str, str], ok: bool) -> None:
    stored = state()
    assert (check_partial_response(stored, stored.segments[1], headers) is None) is ok


def test_partial_response_with_a_different_repr_digest_is_another_version() -> None:
    digest = base64.b64encode(hashlib.sha256(b"a").digest()).decode()
    other = base64.b64encode(hashlib.sha256(b"b").digest()).decode()
    stored = state(digests={"sha-256": digest})
    headers = {"content-range": "bytes 150-199/300", "repr-digest": f"sha-256=:{other}:"}
    assert check_partial_response(stored, stored.segments[1], headers) is not None
    headers["repr-digest"] = f"sha-256=:{digest}:"
    assert check_partial_response(stored, stored.segments[1], headers) is None


def test_select_digests_ignores_malformed_fields() -> None:
    digest = base64.b64encode(hashlib.sha256(b"a").digest()).decode()
    assert select_digests({"repr-digest": f"sha-256=:{digest}:, unixsum=:AA==:"}) == {"sha-256": digest}
    assert select_digests({"repr-digest": "sha-256=:not base64!:"}) == {}
    assert select_digests({}) == {}


def test_control_file_round_trip() -> None:
    stored = state(digests={"sha-256": "abc="})
    assert parse_state(format_state(stored)) == stored


@pytest.mark.parametrize("data", [b"", b"[]", b"{}", b'{"version": 2}', b"\xff",
                                  b'{"version":1,"url":"u","size":1,"etag":null,"last_modified":null,'
                                  b'"ranges":true,"digests":{},"segments":[[0,1]]}'])
def test_parse_state_rejects(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_state(data)


# Retries -----------------------------------------------------------------------------

@pytest.mark.parametrize("exc, retryable", [
    (errors.ConnectError("refused"), True),
    (errors.ReadTimeout("slow"), True),
    (errors.RemoteProtocolError("cut short"), True),
    (errors.LocalProtocolError("bug"), False),
    (errors.HTTPStatusError(503), True),
    (errors.HTTPStatusError(429), True),
    (errors.HTTPStatusError(501), False),
    (errors.HTTPStatusError(404), False),
    (errors.IntegrityError("bad"), False),
    (errors.RepresentationChanged("new"), False),
])
def test_is_retryable(exc: Exception, retryable: bool) -> None:
    assert is_retryable(exc) is retryable


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(base_delay_s=1, max_delay_s=8)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (10, 8)]:
        delays = [plan_delay_s(policy, attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered, not lockstep


def test_retry_after_is_honoured_up_to_a_limit() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_retry_after_s=30)
    assert plan_delay_s(policy, 1, random.Random(0), retry_after_s=5) == 5
    assert plan_delay_s(policy, 1, random.Random(0), retry_after_s=3600) == 30


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), (" 3 ", 3.0), (None, None), ("", None), ("soon", None), ("-1", None),
    ("Tue, 15 Nov 1994 08:12:41 GMT", 10.0), ("Tue, 15 Nov 1994 08:12:21 GMT", 0.0),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = 784887151.0  # DATE
    assert parse_retry_after(value, now) == expected


# Uploads -----------------------------------------------------------------------------

@pytest.mark.parametrize("url, name, base, remote", [
    ("http://h:1/files/dir/name.bin", "x", "http://h:1", "dir/name.bin"),
    ("http://h:1/files/dir/", "x.bin", "http://h:1", "dir/x.bin"),
    ("http://h:1/files/", "x.bin", "http://h:1", "x.bin"),
    ("https://h/app/files/a%20b.txt", "x", "https://h/app", "a b.txt"),
])
def test_resolve_upload_target(url: str, name: str, base: str, remote: str) -> None:
    target = resolve_upload_target(url, name)
    assert (target.base_url, target.remote_path) == (base, remote)


@pytest.mark.parametrize("url", ["http://h/uploads/x", "ftp://h/files/x", "h/files/x"])
def test_resolve_upload_target_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        resolve_upload_target(url, "x")


@pytest.mark.parametrize("size, chunk, count, last", [
    (0, 10, 1, (0, 0)), (10, 10, 1, (0, 10)), (11, 10, 2, (10, 1)), (25, 10, 3, (20, 5)),
])
def test_chunks(size: int, chunk: int, count: int, last: tuple[int, int]) -> None:
    assert count_chunks(size, chunk) == count
    assert chunk_span(count - 1, chunk, size) == last


def test_parse_session_and_missing_chunks() -> None:
    session = parse_session({"id": "s1", "chunk_size": 10, "chunks": 5, "received": [0, 3]})
    assert session == Session("s1", 10, 5, frozenset({0, 3}), False)
    assert plan_missing_chunks(session) == [1, 2, 4]
    assert parse_session({"id": "s", "complete": True, "path": "a"}).complete
    with pytest.raises(ValueError):
        parse_session({"id": "s", "chunks": "many"})


def test_tus_fields() -> None:
    # tus 1.0.0 "Upload-Metadata": key, space, Base64 value; pairs comma-separated.
    assert format_upload_metadata({"filename": "world_domination_plan.pdf", "is_confidential": ""}) == \
        "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential "
    assert format_upload_checksum(b"hello") == "sha256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="


# Progress, URLs and exit codes -------------------------------------------------------

@pytest.mark.parametrize("count, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                         (1536 * 1024, "1.5 MiB"), (5 * 1024 ** 4, "5.0 TiB")])
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


@pytest.mark.parametrize("seconds, text", [(None, "--:--"), (0, "00:00"), (59.6, "01:00"),
                                           (3725, "1:02:05"), (-1, "--:--")])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_progress_line_and_bar() -> None:
    assert format_progress_line("f", 512 * MIB, 1024 * MIB, 128 * MIB) == \
        "f   50.0%  512.0 MiB / 1.0 GiB  128.0 MiB/s  ETA 00:04"
    assert format_progress_line("f", 10, None, None) == "f  10 B"

    class Out:
        text = ""

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    now = [0.0]
    quiet = ProgressBar("f", Out())  # type: ignore[arg-type]
    quiet(1, 2)
    assert quiet.stream.text == ""  # type: ignore[attr-defined]
    bar = ProgressBar("f", Out(), clock=lambda: now[0], force=True)  # type: ignore[arg-type]
    for step in range(1, 11):
        now[0] = step
        bar(step * MIB, 10 * MIB)
    bar.close()
    assert "100.0%" in bar.stream.text and "1.0 MiB/s" in bar.stream.text  # type: ignore[attr-defined]
    assert bar.stream.text.endswith("\n")  # type: ignore[attr-defined]


@pytest.mark.parametrize("url, output, expected", [
    ("http://h/files/a/b.bin", None, "b.bin"),
    ("http://h/files/a%20b.bin?x=1", None, "a b.bin"),
    ("http://h/files/a/b.bin", "out", "out"),
])
def test_resolve_output_path(url: str, output: str | None, expected: str) -> None:
    assert str(commands.resolve_output_path(url, output)) == expected


@pytest.mark.parametrize("url", ["http://h/", "http://h/files/.."])
def test_resolve_output_path_needs_a_name(url: str) -> None:
    with pytest.raises(errors.InvalidURL):
        commands.resolve_output_path(url, None)


@pytest.mark.parametrize("exc, code", [
    (errors.ConnectError("x"), 3), (errors.ReadTimeout("x"), 3), (errors.RemoteProtocolError("x"), 3),
    (errors.HTTPStatusError(404), 4), (errors.IntegrityError("x"), 5), (FileNotFoundError("x"), 6),
    (errors.RepresentationChanged("x"), 7), (errors.InvalidURL("x"), 2), (RuntimeError("x"), 1),
])
def test_exit_codes(exc: BaseException, code: int) -> None:
    assert commands.exit_code_for(exc) == code


@pytest.mark.parametrize("text, target, host_header", [
    ("http://h/files/a b", "/files/a%20b", "h"),
    ("http://h:80/files/a%20b?x=1", "/files/a%20b?x=1", "h"),
    ("https://h:8443/", "/", "h:8443"),
    ("http://[::1]:9/x", "/x", "[::1]:9"),
    ("http://h", "/", "h"),
])
def test_parse_url(text: str, target: str, host_header: str) -> None:
    url = parse_url(text)
    assert (url.target, url.host_header) == (target, host_header)


@pytest.mark.parametrize("text", ["ftp://h/x", "http:///x", "http://h:99999/", "/files/x"])
def test_parse_url_rejects(text: str) -> None:
    with pytest.raises(errors.InvalidURL):
        parse_url(text)


@pytest.mark.parametrize("data, chunk", [(b"", 4), (b"abc", 4), (b"abcd", 4), (b"abcdefghi", 4), (bytes(range(256)) * 9, 100)])
def test_one_pass_hash_gives_file_and_chunk_digests(tmp_path: Path, data: bytes, chunk: int) -> None:
    from asgi_xfer.client.upload import hash_file

    path = tmp_path / "f"
    path.write_bytes(data)
    whole, chunks = hash_file(path, chunk)
    assert whole == hashlib.sha256(data).hexdigest()
    assert chunks == [hashlib.sha256(data[i:i + chunk]).digest() for i in range(0, max(1, len(data)), chunk)]
    assert len(chunks) == count_chunks(len(data), chunk)
