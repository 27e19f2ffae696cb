"""IETF "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload-12,
interop version 8): every rule as a pure function.

Owns: the draft's fields as Structured Field values (`Upload-Complete` a
Boolean, `Upload-Offset` / `Upload-Length` Integers, `Upload-Limit` a
Dictionary, `Upload-Draft-Interop-Version`), the interop versions we accept
and what differs between them, the problem types of §Problem Types (RFC 9457),
and the decision for each request as a value: what an upload creation
(§4.2) or an upload append (§4.4) declares, and which error it meets (offset
mismatch, completed upload, inconsistent length, limits). Must not: do I/O;
`handlers/resumable` executes these decisions on the shared session store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import BadRequest, Conflict, PayloadTooLarge, UnsupportedMediaType

# Appendix "Draft Version Identification": "The current interop version is 8."
INTEROP_VERSION = 8
# Earlier interop versions that differ from 8 only in names we can map:
# 3 (-01), 4 (-02), 5 (-03) append with any media type (application/partial-upload
# became required in -04); 6 (-04, -05) calls the lifetime limit `expires`
# (renamed `max-age` in -06, interop 7). Interop 1-2 used `Upload-Incomplete`
# and an `Upload-Token`: a different protocol, not accepted.
INTEROP_VERSIONS = frozenset({3, 4, 5, 6, 7, 8})
PARTIAL_UPLOAD_TYPE = "application/partial-upload"
PROBLEM_TYPE_BASE = "https://iana.org/assignments/http-problem-types#"
# §4.2: "104 (Upload Resumption Supported)".
UPLOAD_RESUMPTION_SUPPORTED = 104

# RFC 9651 §3.3.1: an Integer has at most 15 decimal digits.
_SF_INTEGER = re.compile(r"-?[0-9]{1,15}")
_SF_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
# A parameter value we accept after an Item: a token, Integer, Boolean or String.
_SF_PARAM_VALUE = re.compile(r'[A-Za-z*][!#$%&\'*+\-.^_`|~:/0-9A-Za-z]*|-?[0-9]{1,15}(\.[0-9]{1,3})?|\?[01]|"[^"\\]*"')


class ResumableProblem:
    """Mixed into the errors below: an RFC 9457 problem type of the draft."""

    problem_type: str
    problem_title: str


class MismatchingOffset(ResumableProblem, Conflict):
    """§4.4.2: 409, with the correct offset in `Upload-Offset`."""

    code = "mismatching_upload_offset"
    problem_type = PROBLEM_TYPE_BASE + "mismatching-upload-offset"
    problem_title = "offset from request does not match offset of resource"

    def __init__(self, expected: int, provided: int) -> None:
        super().__init__(f"Upload-Offset {provided} does not match the upload's offset {expected}",
                         headers={"upload-offset": str(expected)})
        # §8.1: "SHOULD populate both members".
        self.details = {"expected-offset": expected, "provided-offset": provided}


class CompletedUpload(ResumableProblem, BadRequest):
    """§8.2, recommended status 400: the upload is complete, nothing may be appended."""

    code = "completed_upload"
    problem_type = PROBLEM_TYPE_BASE + "completed-upload"
    problem_title = "upload is already completed"


class InconsistentLength(ResumableProblem, BadRequest):
    """§8.3, recommended status 400: the lengths a request or upload declares disagree."""

    code = "inconsistent_upload_length"
    problem_type = PROBLEM_TYPE_BASE + "inconsistent-upload-length"
    problem_title = "inconsistent length values for upload"


@dataclass(frozen=True)
class Limits:
    """§4.1.4 `Upload-Limit`; None: no such limit."""

    max_size: int | None = None
    min_size: int | None = None
    max_append_size: int | None = None
    min_append_size: int | None = None
    max_age_s: int | None = None


def _bare_item(value: str) -> str | None:
    """The bare item of an Item field, its parameters checked and dropped
    (RFC 9651 §4.2.3); None when the field does not parse."""
    text = value.strip(" \t")
    item, *params = text.split(";")
    for param in params:
        key, eq, pval = param.strip(" ").partition("=")
        if not _SF_KEY.fullmatch(key) or (eq and not _SF_PARAM_VALUE.fullmatch(pval)):
            return None
    return item.rstrip(" ") if params else item


def parse_sf_integer(value: str | None) -> int | None:
    """A non-negative Integer Item, else None: §4.1.1/§4.1.3 "Other values
    MUST cause the entire header field to be ignored"."""
    if value is None:
        return None
    item = _bare_item(value)
    if item is None or not _SF_INTEGER.fullmatch(item) or item.startswith("-"):
        return None
    return int(item)


def parse_sf_boolean(value: str | None) -> bool | None:
    """A Boolean Item (`?1` / `?0`), else None (the field is ignored)."""
    if value is None:
        return None
    item = _bare_item(value)
    return {"?1": True, "?0": False}.get(item or "")


def format_sf_boolean(flag: bool) -> str:
    return "?1" if flag else "?0"


def parse_interop_version(headers: Mapping[str, str]) -> int | None:
    """`Upload-Draft-Interop-Version`, when it names a version we speak."""
    version = parse_sf_integer(headers.get("upload-draft-interop-version"))
    return version if version in INTEROP_VERSIONS else None


def format_limits(limits: Limits, interop: int | None = INTEROP_VERSION) -> str:
    """The `Upload-Limit` Dictionary; interop 6 and before say `expires`."""
    age_key = "expires" if interop is not None and interop <= 6 else "max-age"
    members = [("max-size", limits.max_size), ("min-size", limits.min_size),
               ("max-append-size", limits.max_append_size), ("min-append-size", limits.min_append_size),
               (age_key, limits.max_age_s)]
    return ", ".join(f"{key}={value}" for key, value in members if value is not None)


def parse_limits(value: str | None) -> Limits | None:
    """A client reading `Upload-Limit`: unknown keys are ignored; a known key
    with a value that is no Integer makes the whole field ignored (None)."""
    if value is None:
        return None
    found: dict[str, int] = {}
    for member in value.split(","):
        key, eq, raw = member.strip(" \t").partition("=")
        if not _SF_KEY.fullmatch(key):
            return None
        if key not in ("max-size", "min-size", "max-append-size", "min-append-size", "max-age", "expires"):
            continue
        number = parse_sf_integer(raw) if eq else None
        if number is None:
            return None
        found["max-age" if key == "expires" else key] = number
    return Limits(found.get("max-size"), found.get("min-size"), found.get("max-append-size"),
                  found.get("min-append-size"), found.get("max-age"))


def too_large(message: str, limits: Limits, interop: int | None) -> PayloadTooLarge:
    """§4.1.4: "A server responding with a 413 [...] as a result of its
    upload limits MUST include the Upload-Limit header"."""
    return PayloadTooLarge(message, headers={"upload-limit": format_limits(limits, interop)})


def _content_length(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 20:
        raise BadRequest("invalid Content-Length")
    return int(raw)


def _require_complete(headers: Mapping[str, str]) -> bool:
    complete = parse_sf_boolean(headers.get("upload-complete"))
    if complete is None:
        raise BadRequest("Upload-Complete (?0 or ?1) is required")
    return complete


@dataclass(frozen=True)
class Request:
    """What a creation or append request declares, once checked."""

    offset: int  # where its content goes
    complete: bool  # Upload-Complete: ?1
    length: int | None  # the upload's length, known now or before
    content_length: int | None


def _resolve_length(known: int | None, offset: int, complete: bool, content_length: int | None,
                    upload_length: int | None, limits: Limits, interop: int | None) -> int | None:
    """§4.1.3: the two length indicators (Upload-Complete: ?1 with
    Content-Length, and Upload-Length) and every earlier one "MUST match"."""
    indicated = [v for v in (known, upload_length, offset + content_length if complete and content_length is not None else None)
                 if v is not None]
    if len(set(indicated)) > 1:
        raise InconsistentLength(f"the upload's length is given as {', '.join(map(str, sorted(set(indicated))))}")
    length = indicated[0] if indicated else None
    if length is not None and content_length is not None and offset + content_length > length:
        # "MUST prevent the offset from exceeding the upload length".
        raise InconsistentLength(f"{content_length} bytes at offset {offset} go past the length {length}")
    if length is not None and complete and content_length is None and length < offset:
        raise InconsistentLength(f"the length {length} is below the offset {offset}")
    if length is not None and limits.max_size is not None and length > limits.max_size:
        raise too_large(f"the upload's length {length} exceeds max-size {limits.max_size}", limits, interop)
    return length


def _check_append_size(content_length: int | None, complete: bool, limits: Limits, interop: int | None) -> None:
    if content_length is None:
        return
    if limits.max_append_size is not None and content_length > limits.max_append_size:
        raise too_large(f"{content_length} bytes exceed max-append-size {limits.max_append_size}", limits, interop)
    # "Requests completing the upload [...] are exempt from this limit."
    if limits.min_append_size is not None and content_length < limits.min_append_size and not complete:
        raise BadRequest(f"{content_length} bytes are below min-append-size {limits.min_append_size}")


def plan_creation(headers: Mapping[str, str], limits: Limits) -> Request:
    """§4.2.2: a creation request's content starts the upload at offset 0."""
    interop = parse_interop_version(headers)
    complete = _require_complete(headers)
    content_length = _content_length(headers)
    length = _resolve_length(None, 0, complete, content_length, parse_sf_integer(headers.get("upload-length")),
                             limits, interop)
    if limits.min_size is not None and (length is None or length < limits.min_size):
        raise BadRequest(f"uploads here must declare a length of at least min-size {limits.min_size}")
    _check_append_size(content_length, complete, limits, interop)
    return Request(0, complete, length, content_length)


@dataclass(frozen=True)
class UploadState:
    """What the server knows of an upload resource (§4.1)."""

    offset: int
    length: int | None
    complete: bool


def check_media_type(headers: Mapping[str, str], interop: int | None) -> None:
    """§4.4.1: PATCH with `application/partial-upload`; interop 3-5 (drafts
    -01 to -03) did not name a media type yet."""
    if interop is not None and interop <= 5:
        return
    ctype = headers.get("content-type", "").split(";", 1)[0].strip(" \t").lower()
    if ctype != PARTIAL_UPLOAD_TYPE:
        raise UnsupportedMediaType(f"appending needs Content-Type: {PARTIAL_UPLOAD_TYPE}")


def plan_append(headers: Mapping[str, str], state: UploadState, limits: Limits) -> Request:
    """§4.4.2, in the draft's order: the offset must match (409), a complete
    upload takes nothing more, and the lengths must agree."""
    interop = parse_interop_version(headers)
    check_media_type(headers, interop)
    complete = _require_complete(headers)
    provided = parse_sf_integer(headers.get("upload-offset"))
    if provided is None:
        raise BadRequest("Upload-Offset (a non-negative integer) is required")
    if provided != state.offset:
        raise MismatchingOffset(state.offset, provided)
    content_length = _content_length(headers)
    if state.complete:
        # "a non-zero length document [...] MUST treat this as an inconsistent
        # length failure"; an empty one meets the completed-upload problem.
        if content_length == 0:
            raise CompletedUpload("the upload is complete; nothing more can be appended")
        raise InconsistentLength("the upload is complete at its length; no more content fits")
    length = _resolve_length(state.length, state.offset, complete, content_length,
                             parse_sf_integer(headers.get("upload-length")), limits, interop)
    _check_append_size(content_length, complete, limits, interop)
    return Request(state.offset, complete, length, content_length)


def resolve_completion(length: int | None, offset: int) -> int:
    """A request with Upload-Complete: ?1 whose content was all processed:
    the upload's length is its offset now, and must be any length declared."""
    if length is not None and length != offset:
        raise InconsistentLength(f"the upload ends at {offset} bytes, not at its declared length {length}")
    return offset
