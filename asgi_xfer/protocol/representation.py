"""Which response a GET or HEAD of a stored file gets: a pure decision.

Owns: choosing the representation (identity, `?compress=gzip`, transparent
`Content-Encoding: gzip`), evaluating preconditions and ranges against it in
RFC 9110 order, and the resulting status and header fields. Returns a
`DownloadPlan` that the handler executes. Must not: do I/O; the caller passes
the file's size, mtime and ETag.
"""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Mapping
from typing import NamedTuple

from .byteranges import MultipartPlan, plan_byteranges
from .conditional import Outcome, Validators, evaluate_if_range, evaluate_preconditions, format_http_date
from .disposition import format_content_disposition
from .errors import BadRequest, PreconditionFailed, RangeNotSatisfiable
from .gzipcodec import accepts_gzip, is_compressible
from .ranges import ByteRange, format_content_range, plan_ranges

BODY_NONE, BODY_FULL, BODY_RANGE, BODY_MULTIPART, BODY_GZIP = "none", "full", "range", "multipart", "gzip"


# The values below are NamedTuples, not frozen dataclasses: as immutable,
# and three times cheaper to build; four are built for every GET.


class FileFacts(NamedTuple):
    name: str
    size: int
    mtime: float
    etag: str


class DownloadRequest(NamedTuple):
    method: str
    headers: Mapping[str, str]
    inline: bool = False
    compress: str | None = None  # the `?compress=` query value
    gzip_enabled: bool = False  # the server's --gzip setting
    boundary: str = "xfer-boundary"  # for multipart/byteranges


class DownloadPlan(NamedTuple):
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str
    ranges: tuple[ByteRange, ...] = ()
    multipart: MultipartPlan | None = None


@functools.lru_cache(maxsize=4096)
def guess_content_type(name: str) -> str:
    ctype, _ = mimetypes.guess_type(name, strict=False)
    if ctype is None:
        return "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/json", "application/javascript"):
        return f"{ctype}; charset=utf-8"
    return ctype


def plan_download(req: DownloadRequest, facts: FileFacts) -> DownloadPlan:
    if req.compress is not None:
        return _plan_gzip_resource(req, facts)
    ctype = guess_content_type(facts.name)
    negotiable = req.gzip_enabled and is_compressible(ctype)
    # Transparent gzip only for a plain GET: a Range request keeps identity so
    # that 206 stays possible (a gzip stream has no stable byte offsets), and
    # HEAD describes the identity representation.
    if negotiable and req.method == "GET" and "range" not in req.headers and accepts_gzip(req.headers.get("accept-encoding")):
        return _plan_transparent_gzip(req, facts, ctype)
    return _plan_identity(req, facts, ctype, vary=negotiable)


def _validator_fields(etag: str, mtime: float, vary: bool) -> list[tuple[str, str]]:
    fields = [("etag", etag), ("last-modified", format_http_date(mtime))]
    if vary:
        fields.append(("vary", "Accept-Encoding"))
    return fields


def _check_preconditions(req: DownloadRequest, validators: Validators, fields: list[tuple[str, str]]) -> DownloadPlan | None:
    """§13.2.2 steps 1-4: a 304 plan, a 412 raised, or None to go on."""
    outcome = evaluate_preconditions(req.method, req.headers, validators)
    if outcome is Outcome.NOT_MODIFIED:
        return DownloadPlan(304, tuple(fields), BODY_NONE)
    if outcome is Outcome.PRECONDITION_FAILED:
        raise PreconditionFailed("a precondition in the request does not hold")
    return None


def _plan_identity(req: DownloadRequest, facts: FileFacts, ctype: str, vary: bool) -> DownloadPlan:
    fields = _validator_fields(facts.etag, facts.mtime, vary)
    validators = Validators(facts.etag, int(facts.mtime))
    early = _check_preconditions(req, validators, fields)
    if early is not None:
        return early
    fields += [
        ("accept-ranges", "bytes"),
        ("content-disposition", format_content_disposition(facts.name, inline=req.inline)),
    ]
    body_kind = BODY_NONE if req.method == "HEAD" else BODY_FULL
    range_header = req.headers.get("range")
    # §14.2: Range is defined for GET only; §13.2.2 step 5: If-Range decides.
    if req.method != "GET" or range_header is None or not evaluate_if_range(req.headers.get("if-range"), validators):
        return _whole(fields, ctype, facts.size, body_kind)
    plan = plan_ranges(range_header, facts.size)
    if plan.kind == "unsatisfiable":
        raise RangeNotSatisfiable(facts.size)
    if plan.kind == "full":
        return _whole(fields, ctype, facts.size, body_kind)
    if len(plan.ranges) == 1:
        only = plan.ranges[0]
        fields += [
            ("content-type", ctype),
            ("content-range", format_content_range(only, facts.size)),
            ("content-length", str(only.length)),
        ]
        return DownloadPlan(206, tuple(fields), BODY_RANGE, plan.ranges)
    multipart = plan_byteranges(plan.ranges, facts.size, ctype, req.boundary)
    fields += [("content-type", multipart.content_type), ("content-length", str(multipart.content_length))]
    return DownloadPlan(206, tuple(fields), BODY_MULTIPART, plan.ranges, multipart)


def _whole(fields: list[tuple[str, str]], ctype: str, size: int, body_kind: str) -> DownloadPlan:
    fields += [("content-type", ctype), ("content-length", str(size))]
    return DownloadPlan(200, tuple(fields), body_kind)


def _gzip_etag(etag: str) -> str:
    # A distinct, weak tag (§8.8.1): the gzip bytes depend on the zlib build,
    # so byte-for-byte equality across servers is not promised.
    return f'W/{etag[:-1]}-gzip"'


def _plan_transparent_gzip(req: DownloadRequest, facts: FileFacts, ctype: str) -> DownloadPlan:
    return _plan_gzipped(req, facts, vary=True, fields=[
        ("content-type", ctype),
        ("content-encoding", "gzip"),
        ("content-disposition", format_content_disposition(facts.name, inline=req.inline)),
    ])


def _plan_gzip_resource(req: DownloadRequest, facts: FileFacts) -> DownloadPlan:
    """`?compress=gzip`: a different resource, NAME.gz, not an encoding."""
    if req.compress != "gzip":
        raise BadRequest(f"unsupported compress value {req.compress!r}; use gzip")
    return _plan_gzipped(req, facts, vary=False, fields=[
        ("content-type", "application/gzip"),
        ("accept-ranges", "none"),
        ("content-disposition", format_content_disposition(facts.name + ".gz", inline=req.inline)),
    ])


def _plan_gzipped(req: DownloadRequest, facts: FileFacts, *, vary: bool, fields: list[tuple[str, str]]) -> DownloadPlan:
    """A gzip body under its own ETag: preconditions, then 200 (no ranges:
    a gzip stream has no stable byte offsets)."""
    etag = _gzip_etag(facts.etag)
    validator_fields = _validator_fields(etag, facts.mtime, vary)
    early = _check_preconditions(req, Validators(etag, int(facts.mtime)), validator_fields)
    if early is not None:
        return early
    return DownloadPlan(200, tuple(validator_fields + fields), BODY_NONE if req.method == "HEAD" else BODY_GZIP)
