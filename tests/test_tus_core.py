"""The tus 1.0.0 rules of `asgi_xfer.protocol.tus` as tables; expected values come
from the protocol text (https://tus.io/protocols/resumable-upload), quoted
beside each table, never from our own output."""

from __future__ import annotations

import base64
import hashlib

import pytest

from asgi_xfer.protocol import tus
from asgi_xfer.protocol.errors import BadRequest, Conflict, Forbidden, PayloadTooLarge, PreconditionFailed, UnsupportedMediaType, XferError


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- Upload-Metadata --------------------------------------------------------
# "one or more comma-separated key-value pairs. The key and value MUST be
# separated by a space. The key MUST NOT contain spaces and commas and MUST
# NOT be empty. [...] the value MUST be Base64 encoded. All keys MUST be
# unique. The value MAY be empty. In these cases, the space, which would
# normally separate the key and the value, MAY be left out."

@pytest.mark.parametrize(("header", "expected"), [
    # The example of the protocol text.
    ("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
     {"filename": "world_domination_plan.pdf", "is_confidential": ""}),
    (None, {}),
    ("", {}),  # tuspy sends an empty header when there is no metadata
    ("   ", {}),
    ("key", {"key": ""}),
    ("key ", {"key": ""}),  # the space kept, the value empty
    (f"a {b64('1')}, b {b64('2')}", {"a": "1", "b": "2"}),  # optional whitespace after the comma
    (f"filename {b64('résumé 2024.pdf')}", {"filename": "résumé 2024.pdf"}),
    (f"path {b64('dir/sub/x.bin')},filetype {b64('application/pdf')}",
     {"path": "dir/sub/x.bin", "filetype": "application/pdf"}),
])
def test_metadata_parses(header: str | None, expected: dict[str, str]) -> None:
    assert tus.parse_metadata(header) == expected


@pytest.mark.parametrize("header", [
    f"a {b64('1')},a {b64('2')}",  # keys MUST be unique
    f" {b64('x')}",  # key MUST NOT be empty
    "a not*base64",  # the value MUST be Base64
    f"a {b64('1')} extra",  # a key MUST NOT contain spaces
    ",",  # an empty pair has an empty key
    "kéy YQ==",  # keys are ASCII tokens
])
def test_metadata_rejects(header: str) -> None:
    with pytest.raises(BadRequest):
        tus.parse_metadata(header)


def test_metadata_too_long_is_refused() -> None:
    with pytest.raises(BadRequest):
        tus.parse_metadata("k " + "A" * (tus.MAX_METADATA_BYTES + 4))


@pytest.mark.parametrize("meta", [
    {"filename": "a.txt"}, {"flag": ""}, {"filename": "x y,z.bin", "empty": "", "path": "d/é.txt"},
])
def test_metadata_round_trips(meta: dict[str, str]) -> None:
    assert tus.parse_metadata(tus.format_metadata(meta)) == meta


# -- Upload-Checksum --------------------------------------------------------
# "The value MUST consist of the name of the used checksum algorithm and the
# Base64 encoded checksum separated by a space." "400 Bad Request if the
# checksum algorithm is not supported by the server".

@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_checksum_parses(algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"hello").digest()
    header = f"{algorithm} {base64.b64encode(digest).decode()}"
    assert tus.parse_checksum(header) == (algorithm, digest)


@pytest.mark.parametrize("header", [
    "crc32 AAAAAA==",  # not offered in Tus-Checksum-Algorithm
    "sha512 " + base64.b64encode(hashlib.sha512(b"").digest()).decode(),
    "sha1 not*base64",
    "",
])
def test_checksum_rejects(header: str) -> None:
    with pytest.raises(BadRequest) as info:
        tus.parse_checksum(header)
    assert info.value.status == 400


def test_no_checksum_is_none() -> None:
    assert tus.parse_checksum(None) is None


# -- Upload-Concat ----------------------------------------------------------
# "Upload-Concat: partial" / "final;/files/a /files/b": the final's value is
# `final;` and "a space-separated list of the partial upload URLs", which
# "MAY be absolute or relative".

@pytest.mark.parametrize(("header", "kind", "parts"), [
    (None, None, ()),
    ("partial", "partial", ()),
    ("final;/files/a /files/b", "final", ("a", "b")),  # the protocol text's example
    ("final;/tus/abc /tus/def /tus/ghi", "final", ("abc", "def", "ghi")),
    ("final;http://127.0.0.1:8000/tus/abc http://127.0.0.1:8000/tus/def", "final", ("abc", "def")),
    ("final;https://example.org/mount/tus/abc/ /tus/def?x=1", "final", ("abc", "def")),
    ("final; /tus/a  /tus/b ", "final", ("a", "b")),  # extra whitespace
])
def test_concat_parses(header: str | None, kind: str | None, parts: tuple[str, ...]) -> None:
    concat = tus.parse_concat(header)
    assert (concat.kind, concat.parts) == (kind, parts)


@pytest.mark.parametrize("header", ["final", "final;", "final;   ", "whole", "partial;x", "final:/tus/a"])
def test_concat_rejects(header: str) -> None:
    with pytest.raises(BadRequest):
        tus.parse_concat(header)


def test_concat_part_limit() -> None:
    many = " ".join(f"/tus/{i}" for i in range(tus.MAX_CONCAT_PARTS + 1))
    with pytest.raises(BadRequest):
        tus.parse_concat("final;" + many)


# -- Tus-Resumable ----------------------------------------------------------
# "If the version specified by the Client is not supported by the Server, it
# MUST respond with the 412 Precondition Failed status and MUST include the
# Tus-Version header into the response." The header is on "every request and
# response except for OPTIONS requests".

@pytest.mark.parametrize(("method", "headers", "ok"), [
    ("OPTIONS", {}, True),
    ("POST", {"tus-resumable": "1.0.0"}, True),
    ("PATCH", {"tus-resumable": " 1.0.0 "}, True),
    ("HEAD", {}, False),
    ("POST", {"tus-resumable": "0.2.2"}, False),
    ("PATCH", {"tus-resumable": "2.0.0"}, False),
    ("DELETE", {"tus-resumable": ""}, False),
])
def test_version_check(method: str, headers: dict[str, str], ok: bool) -> None:
    if ok:
        tus.check_version(method, headers)
        return
    with pytest.raises(PreconditionFailed) as info:
        tus.check_version(method, headers)
    assert info.value.status == 412
    assert info.value.headers["tus-version"] == "1.0.0"


def test_every_response_carries_tus_resumable() -> None:
    assert ("tus-resumable", "1.0.0") in tus.response_headers(None)
    assert not any(k.startswith("access-control") for k, _ in tus.response_headers(None))


def test_cors_exposes_the_tus_headers() -> None:
    headers = dict(tus.response_headers("https://app.example"))
    assert headers["access-control-allow-origin"] == "https://app.example"
    exposed = {h.strip().lower() for h in headers["access-control-expose-headers"].split(",")}
    assert {"location", "upload-offset", "upload-length", "upload-metadata", "upload-expires",
            "tus-resumable", "tus-version", "tus-extension", "tus-max-size"} <= exposed


def test_options_headers() -> None:
    headers = dict(tus.options_headers(1000, None))
    assert headers["tus-version"] == "1.0.0"
    assert headers["tus-max-size"] == "1000"
    assert set(headers["tus-extension"].split(",")) >= {
        "creation", "creation-with-upload", "creation-defer-length", "termination", "checksum",
        "expiration", "concatenation"}
    assert set(headers["tus-checksum-algorithm"].split(",")) == {"sha1", "md5", "sha256"}
    preflight = dict(tus.options_headers(1000, "https://app.example"))
    methods = {m.strip() for m in preflight["access-control-allow-methods"].split(",")}
    assert {"POST", "HEAD", "PATCH", "DELETE", "OPTIONS"} <= methods
    allowed = {h.strip().lower() for h in preflight["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "tus-resumable", "upload-length", "upload-offset",
            "upload-metadata", "upload-defer-length", "upload-concat", "upload-checksum",
            "x-http-method-override"} <= allowed


# -- PATCH ------------------------------------------------------------------
# "The Server MUST respond with the 403 Forbidden status to PATCH requests
# against a final upload URL" (concatenation); "All PATCH requests MUST use
# Content-Type: application/offset+octet-stream, otherwise the server SHOULD
# return a 415"; "If the offsets do not match, the Server MUST respond with
# the 409 Conflict status". Checked in that order.

OCTETS = {"content-type": "application/offset+octet-stream"}


@pytest.mark.parametrize(("headers", "current", "final", "expected"), [
    ({**OCTETS, "upload-offset": "5"}, 5, False, 5),
    ({"content-type": "Application/Offset+Octet-Stream; x=1", "upload-offset": "0"}, 0, False, 0),
    ({**OCTETS, "upload-offset": "5"}, 5, True, Forbidden),
    ({"content-type": "text/plain", "upload-offset": "9"}, 5, True, Forbidden),  # 403 before 415
    ({"content-type": "application/octet-stream", "upload-offset": "5"}, 5, False, UnsupportedMediaType),
    ({"upload-offset": "9"}, 5, False, UnsupportedMediaType),  # 415 before 409
    ({**OCTETS, "upload-offset": "4"}, 5, False, Conflict),
    ({**OCTETS, "upload-offset": "6"}, 5, False, Conflict),
    ({**OCTETS}, 5, False, BadRequest),  # Upload-Offset is required
    ({**OCTETS, "upload-offset": "-1"}, 0, False, BadRequest),  # "MUST be a non-negative integer"
    ({**OCTETS, "upload-offset": "1e3"}, 0, False, BadRequest),
])
def test_patch_rules(headers: dict[str, str], current: int, final: bool, expected: int | type[XferError]) -> None:
    if isinstance(expected, int):
        assert tus.check_patch(headers, current, final) == expected
        return
    with pytest.raises(expected) as info:
        tus.check_patch(headers, current, final)
    status = {Forbidden: 403, UnsupportedMediaType: 415, Conflict: 409, BadRequest: 400}[expected]
    assert info.value.status == status


def test_conflict_tells_the_offset() -> None:
    with pytest.raises(Conflict) as info:
        tus.check_patch({**OCTETS, "upload-offset": "0"}, 42, False)
    assert info.value.headers["upload-offset"] == "42"


def test_checksum_mismatch_status() -> None:
    # checksum extension: "460 Checksum Mismatch if the checksums mismatch"
    assert tus.TusChecksumMismatch("x").status == 460
    assert tus.Gone("x").status == 410


# -- creation ---------------------------------------------------------------
# "The Client MUST send the Upload-Length header or Upload-Defer-Length: 1";
# Upload-Defer-Length's "value MUST be 1"; "If the length of the upload
# exceeds the maximum, which MAY be specified using the Tus-Max-Size header,
# the Server MUST respond with the 413 Request Entity Too Large status."

MAX = 1000


@pytest.mark.parametrize(("headers", "expected"), [
    ({"upload-length": "0"}, tus.Length(0, False)),
    ({"upload-length": "10"}, tus.Length(10, False)),
    ({"upload-length": str(MAX)}, tus.Length(MAX, False)),
    ({"upload-defer-length": "1"}, tus.Length(None, True)),
    ({"upload-length": str(MAX + 1)}, PayloadTooLarge),
    ({}, BadRequest),
    ({"upload-defer-length": "0"}, BadRequest),
    ({"upload-defer-length": "2"}, BadRequest),
    ({"upload-length": "10", "upload-defer-length": "1"}, BadRequest),
    ({"upload-length": "-10"}, BadRequest),
    ({"upload-length": "ten"}, BadRequest),
    ({"upload-length": "1" * 40}, BadRequest),
])
def test_creation_length(headers: dict[str, str], expected: tus.Length | type[XferError]) -> None:
    if isinstance(expected, tus.Length):
        assert tus.parse_creation_length(headers, MAX) == expected
        return
    with pytest.raises(expected):
        tus.parse_creation_length(headers, MAX)


# -- the committed name -------------------------------------------------------
# SPEC: "never silently overwriting: a numbered suffix is added".

@pytest.mark.parametrize(("name", "n", "expected"), [
    ("report.pdf", 0, "report.pdf"),
    ("report.pdf", 1, "report (1).pdf"),
    ("report.pdf", 12, "report (12).pdf"),
    ("README", 1, "README (1)"),
    (".bashrc", 1, ".bashrc (1)"),  # a dot file has no extension
    ("photo.JPG", 2, "photo (2).JPG"),
    ("a b.c.txt", 3, "a b.c (3).txt"),
])
def test_numbered_names(name: str, n: int, expected: str) -> None:
    assert tus.numbered_name(name, n) == expected
