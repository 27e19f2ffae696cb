"""The rules of `asgi_xfer.protocol.resumable` as tables. Expected values come
from draft-ietf-httpbis-resumable-upload-12 (its field definitions, §4.2 and
§4.4 server behaviour, its examples and problem types) and RFC 9651 for the
Structured Field syntax, quoted beside each table, never from our output."""

from __future__ import annotations

import pytest

from asgi_xfer.protocol import resumable as r
from asgi_xfer.protocol.errors import BadRequest, Conflict, PayloadTooLarge, UnsupportedMediaType

NO_LIMITS = r.Limits()
V8 = {"upload-draft-interop-version": "8"}


# -- Structured fields: "Other values MUST cause the entire header field to be ignored"

@pytest.mark.parametrize(("value", "expected"), [
    ("25000000", 25000000),  # §4.3 example A
    ("0", 0),
    ("  42 ", 42),  # RFC 9651 §4.2: leading and trailing SP are discarded
    ("42;a=1", 42),  # an Item may carry parameters
    ("999999999999999", 999999999999999),  # 15 digits: the largest Integer
    ("1000000000000000", None),  # 16 digits is no Integer
    ("-1", None),  # "Its value is a non-negative Integer"
    ("1.5", None),  # a Decimal
    ("?1", None),
    ("abc", None),
    ("", None),
    ("4 2", None),
    ("42;=1", None),  # a parameter without a key does not parse
    (None, None),
])
def test_integer_items(value: str | None, expected: int | None) -> None:
    assert r.parse_sf_integer(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("?1", True), ("?0", False), (" ?1", True), ("?1;x", True),
    ("?2", None), ("1", None), ("true", None), ("?", None), ("", None), (None, None),
])
def test_boolean_items(value: str | None, expected: bool | None) -> None:
    assert r.parse_sf_boolean(value) == expected


def test_limits_format_in_each_interop_version() -> None:
    # §4.1.4 keys; -06 (interop 7) renamed `expires` to `max-age`.
    limits = r.Limits(max_size=1234567890, max_age_s=3600)
    assert r.format_limits(limits) == "max-size=1234567890, max-age=3600"
    assert r.format_limits(limits, 6) == "max-size=1234567890, expires=3600"
    assert r.format_limits(r.Limits(max_size=1, min_size=2, max_append_size=3, min_append_size=4)) == \
        "max-size=1, min-size=2, max-append-size=3, min-append-size=4"


@pytest.mark.parametrize(("value", "expected"), [
    ("max-size=1234567890", r.Limits(max_size=1234567890)),  # §4.2 example A
    ("max-age=3600", r.Limits(max_age_s=3600)),  # §4.3 example A
    ("max-size=10, future-key=\"x\"", r.Limits(max_size=10)),  # "a member with an unknown key MUST be ignored"
    ("max-size=\"10\"", None),  # known key, unexpected type: the whole field is ignored
    ("max-size", None),  # a bare key is the Boolean true: unexpected type
    (None, None),
])
def test_limits_parse(value: str | None, expected: r.Limits | None) -> None:
    assert r.parse_limits(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("8", 8), ("6", 6), ("3", 3), ("2", None), ("9", None), ("x", None), (None, None),
])
def test_interop_versions(value: str | None, expected: int | None) -> None:
    headers = {} if value is None else {"upload-draft-interop-version": value}
    assert r.parse_interop_version(headers) == expected


# -- Upload creation (§4.2.2) and the length rules (§4.1.3) -------------------

@pytest.mark.parametrize(("headers", "expected"), [
    # §4.2 example A: Content-Length 123456789, Upload-Length 123456789, ?1.
    ({"content-length": "123456789", "upload-length": "123456789", "upload-complete": "?1"},
     r.Request(0, True, 123456789, 123456789)),
    # §4.2 example B: 23456789 of 123456789 bytes, ?0.
    ({"content-length": "23456789", "upload-length": "123456789", "upload-complete": "?0"},
     r.Request(0, False, 123456789, 23456789)),
    # "(1) Upload-Complete set to true and a valid Content-Length: [...] the
    # length is then the sum of the current offset and the Content-Length".
    ({"content-length": "5", "upload-complete": "?1"}, r.Request(0, True, 5, 5)),
    # ?0 and no Upload-Length: the length is not known yet.
    ({"content-length": "5", "upload-complete": "?0"}, r.Request(0, False, None, 5)),
    # "The request content can be empty": careful upload creation.
    ({"content-length": "0", "upload-complete": "?0"}, r.Request(0, False, None, 0)),
    # An invalid Upload-Length is ignored, not an error.
    ({"content-length": "5", "upload-complete": "?0", "upload-length": "-3"}, r.Request(0, False, None, 5)),
    # Chunked: no Content-Length; Upload-Length alone.
    ({"upload-complete": "?1", "upload-length": "9"}, r.Request(0, True, 9, None)),
])
def test_creation_plans(headers: dict[str, str], expected: r.Request) -> None:
    assert r.plan_creation(headers, NO_LIMITS) == expected


@pytest.mark.parametrize(("headers", "error"), [
    # "If indicators (1) and (2) are both present in the same request, their
    # indicated lengths MUST match".
    ({"content-length": "5", "upload-length": "6", "upload-complete": "?1"}, r.InconsistentLength),
    # The content would pass the declared length.
    ({"content-length": "7", "upload-length": "6", "upload-complete": "?0"}, r.InconsistentLength),
    ({"content-length": "5"}, BadRequest),  # no Upload-Complete: not a resumable creation
    ({"content-length": "5", "upload-complete": "1"}, BadRequest),  # not a Boolean: ignored, so missing
    ({"content-length": "x", "upload-complete": "?1"}, BadRequest),
])
def test_creation_errors(headers: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        r.plan_creation(headers, NO_LIMITS)


def test_creation_over_max_size_is_413_with_upload_limit() -> None:
    # §4.1.4: a 413 "as a result of its upload limits MUST include the Upload-Limit header".
    limits = r.Limits(max_size=100)
    with pytest.raises(PayloadTooLarge) as info:
        r.plan_creation({"content-length": "101", "upload-complete": "?1"}, limits)
    assert info.value.headers["upload-limit"] == "max-size=100"
    with pytest.raises(PayloadTooLarge):
        r.plan_creation({"content-length": "1", "upload-complete": "?0", "upload-length": "101"}, limits)
    assert r.plan_creation({"content-length": "100", "upload-complete": "?1"}, limits).length == 100


def test_append_size_limits() -> None:
    limits = r.Limits(max_append_size=10, min_append_size=4)
    with pytest.raises(PayloadTooLarge):
        r.plan_creation({"content-length": "11", "upload-complete": "?0"}, limits)
    with pytest.raises(BadRequest):
        r.plan_creation({"content-length": "3", "upload-complete": "?0"}, limits)
    # "Requests completing the upload [...] are exempt from this limit."
    assert r.plan_creation({"content-length": "3", "upload-complete": "?1"}, limits).complete


# -- Upload append (§4.4.2) ----------------------------------------------------

def append(state: r.UploadState, **headers: str) -> r.Request:
    base = {"content-type": r.PARTIAL_UPLOAD_TYPE, **V8}
    return r.plan_append({**base, **{k.replace("_", "-"): v for k, v in headers.items()}}, state, NO_LIMITS)


def test_append_examples() -> None:
    # §4.4 example A: 3456789 bytes at 20000000, ?0.
    state = r.UploadState(20000000, None, False)
    assert append(state, upload_complete="?0", upload_offset="20000000", content_length="3456789") == \
        r.Request(20000000, False, None, 3456789)
    # §4.4 example B: the remaining 4567890 bytes at 1230000000 complete a
    # 1234567890-byte upload.
    state = r.UploadState(1230000000, 1234567890, False)
    assert append(state, upload_complete="?1", upload_offset="1230000000", content_length="4567890") == \
        r.Request(1230000000, True, 1234567890, 4567890)
    # An empty ?1 append completes an upload whose bytes are all in.
    assert append(r.UploadState(9, None, False), upload_complete="?1", upload_offset="9", content_length="0").length == 9


def test_offset_mismatch_is_409_with_the_offset() -> None:
    # §8.1 example: the resource's offset was 12500000, the client sent 25000000.
    with pytest.raises(r.MismatchingOffset) as info:
        append(r.UploadState(12500000, None, False), upload_complete="?0", upload_offset="25000000", content_length="1")
    exc = info.value
    assert isinstance(exc, Conflict) and exc.status == 409
    assert exc.headers["upload-offset"] == "12500000"  # "MUST include the correct offset"
    assert exc.details == {"expected-offset": 12500000, "provided-offset": 25000000}
    assert exc.problem_type == "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"


@pytest.mark.parametrize(("content_length", "error"), [
    # "a non-zero length document, the server MUST treat this as an inconsistent length failure"
    ("5", r.InconsistentLength),
    # a zero-length one: the completed-upload problem (registered status 400).
    ("0", r.CompletedUpload),
])
def test_append_to_a_completed_upload(content_length: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        append(r.UploadState(10, 10, True), upload_complete="?1", upload_offset="10", content_length=content_length)
    assert info.value.status == 400  # type: ignore[attr-defined]


@pytest.mark.parametrize(("state", "headers"), [
    # "If multiple requests include indicators, their indicated values MUST match."
    (r.UploadState(5, 10, False), {"upload_complete": "?0", "upload_offset": "5", "upload_length": "11", "content_length": "1"}),
    # ?1 with Content-Length ending short of the known length.
    (r.UploadState(5, 10, False), {"upload_complete": "?1", "upload_offset": "5", "content_length": "4"}),
    # Content past the known length.
    (r.UploadState(5, 10, False), {"upload_complete": "?0", "upload_offset": "5", "content_length": "6"}),
])
def test_inconsistent_lengths(state: r.UploadState, headers: dict[str, str]) -> None:
    with pytest.raises(r.InconsistentLength):
        append(state, **headers)


@pytest.mark.parametrize(("headers", "error"), [
    ({"content-type": "application/octet-stream", "upload-complete": "?0", "upload-offset": "0", **V8}, UnsupportedMediaType),
    ({"content-type": r.PARTIAL_UPLOAD_TYPE, "upload-offset": "0", **V8}, BadRequest),  # "MUST include the Upload-Complete"
    ({"content-type": r.PARTIAL_UPLOAD_TYPE, "upload-complete": "?0", **V8}, BadRequest),  # no Upload-Offset
    ({"content-type": r.PARTIAL_UPLOAD_TYPE, "upload-complete": "?0", "upload-offset": "x", **V8}, BadRequest),
])
def test_append_request_errors(headers: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        r.plan_append(headers, r.UploadState(0, None, False), NO_LIMITS)


def test_interop_5_and_before_take_any_media_type() -> None:
    # application/partial-upload became required in -04 (interop 6).
    headers = {"content-type": "application/offset+octet-stream", "upload-complete": "?0", "upload-offset": "0"}
    assert r.plan_append({**headers, "upload-draft-interop-version": "5"}, r.UploadState(0, None, False), NO_LIMITS).offset == 0
    with pytest.raises(UnsupportedMediaType):
        r.plan_append({**headers, "upload-draft-interop-version": "6"}, r.UploadState(0, None, False), NO_LIMITS)


@pytest.mark.parametrize(("length", "offset", "ok"), [(None, 7, True), (7, 7, True), (8, 7, False)])
def test_completion_length(length: int | None, offset: int, ok: bool) -> None:
    if ok:
        assert r.resolve_completion(length, offset) == offset
    else:
        with pytest.raises(r.InconsistentLength):
            r.resolve_completion(length, offset)
