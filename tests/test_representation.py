"""The download decision as a table: RFC 9110 §13.2.2 order, §14 ranges,
and the gzip representation rules, without a server."""

from __future__ import annotations

import pytest

from asgi_xfer.protocol.errors import PreconditionFailed, RangeNotSatisfiable
from asgi_xfer.protocol.representation import (
    BODY_FULL, BODY_GZIP, BODY_MULTIPART, BODY_NONE, BODY_RANGE,
    DownloadRequest, FileFacts, guess_content_type, plan_download,
)

FACTS = FileFacts("report.txt", 10_000, 784111777.0, '"v1"')
DATE = "Sun, 06 Nov 1994 08:49:37 GMT"  # == 784111777 (RFC 9110 §5.6.7 example)
EARLIER = "Sat, 05 Nov 1994 08:49:37 GMT"


def plan(method: str = "GET", gzip_enabled: bool = False, compress: str | None = None, **headers: str):
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return plan_download(DownloadRequest(method, hdrs, compress=compress, gzip_enabled=gzip_enabled, boundary="B"), FACTS)


@pytest.mark.parametrize(("headers", "status", "body"), [
    ({}, 200, BODY_FULL),
    ({"if_none_match": '"v1"'}, 304, BODY_NONE),
    ({"if_none_match": 'W/"v1"'}, 304, BODY_NONE),  # weak comparison (§13.1.2)
    ({"if_none_match": '"v0"'}, 200, BODY_FULL),
    ({"if_modified_since": DATE}, 304, BODY_NONE),
    ({"if_modified_since": EARLIER}, 200, BODY_FULL),
    # §13.2.2 step 3 before 4: If-None-Match present, If-Modified-Since ignored.
    ({"if_none_match": '"v0"', "if_modified_since": DATE}, 200, BODY_FULL),
    ({"if_match": '"v1"', "range": "bytes=0-9"}, 206, BODY_RANGE),
    ({"if_unmodified_since": DATE}, 200, BODY_FULL),
    ({"range": "bytes=0-9,20-29"}, 206, BODY_MULTIPART),
    ({"range": "items=0-9"}, 200, BODY_FULL),  # another unit: ignored
    ({"range": "bytes=0-9", "if_range": '"v1"'}, 206, BODY_RANGE),
    ({"range": "bytes=0-9", "if_range": '"v0"'}, 200, BODY_FULL),
    ({"range": "bytes=0-9", "if_range": DATE}, 206, BODY_RANGE),
    ({"range": "bytes=0-9", "if_range": EARLIER}, 200, BODY_FULL),
])
def test_get_table(headers: dict[str, str], status: int, body: str) -> None:
    result = plan(**headers)
    assert (result.status, result.body) == (status, body)


@pytest.mark.parametrize("headers", [
    {"if_match": '"v0"'},
    {"if_match": 'W/"v1"'},  # If-Match uses the strong comparison
    {"if_unmodified_since": EARLIER},
    # §13.2.2 step 1 before 3: a failed If-Match is 412 even if not modified.
    {"if_match": '"v0"', "if_none_match": '"v1"'},
])
def test_precondition_failed(headers: dict[str, str]) -> None:
    with pytest.raises(PreconditionFailed):
        plan(**headers)


def test_unsatisfiable_range_names_the_size() -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        plan(range="bytes=20000-")
    assert info.value.headers["content-range"] == "bytes */10000"


def test_head_ignores_range_and_sends_no_body() -> None:
    result = plan("HEAD", range="bytes=0-9")
    assert (result.status, result.body) == (200, BODY_NONE)
    assert ("content-length", "10000") in result.headers


def test_single_range_fields() -> None:
    fields = dict(plan(range="bytes=-100").headers)
    assert fields["content-range"] == "bytes 9900-9999/10000"
    assert fields["content-length"] == "100"


def test_transparent_gzip_only_for_plain_get() -> None:
    gz = plan(gzip_enabled=True, accept_encoding="gzip, br")
    fields = dict(gz.headers)
    assert gz.body == BODY_GZIP and fields["content-encoding"] == "gzip"
    assert fields["etag"] != '"v1"' and fields["vary"] == "Accept-Encoding"
    assert "content-length" not in fields
    ranged = plan(gzip_enabled=True, accept_encoding="gzip", range="bytes=0-9")
    assert ranged.status == 206 and "content-encoding" not in dict(ranged.headers)
    head = plan("HEAD", gzip_enabled=True, accept_encoding="gzip")
    assert "content-encoding" not in dict(head.headers) and dict(head.headers)["vary"] == "Accept-Encoding"
    refused = plan(gzip_enabled=True, accept_encoding="gzip;q=0")
    assert refused.body == BODY_FULL


def test_compress_query_is_a_gzip_resource() -> None:
    result = plan(compress="gzip", range="bytes=0-9")
    fields = dict(result.headers)
    assert (result.status, result.body) == (200, BODY_GZIP)
    assert fields["content-type"] == "application/gzip"
    assert 'filename="report.txt.gz"' in fields["content-disposition"]


@pytest.mark.parametrize(("name", "ctype"), [
    ("a.txt", "text/plain; charset=utf-8"),
    ("a.json", "application/json; charset=utf-8"),
    ("a.png", "image/png"),
    ("noext", "application/octet-stream"),
    ("a.unknownext", "application/octet-stream"),
])
def test_content_type(name: str, ctype: str) -> None:
    assert guess_content_type(name) == ctype
