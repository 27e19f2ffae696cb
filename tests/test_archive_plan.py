"""The archive plan: kinds, ETag, preconditions, Range and CRC needs, without I/O.

Oracles: stdlib `zipfile` and `tarfile` reading back bytes assembled the way
the handler assembles them (layout pieces), `ZipWriter`/`TarWriter` output
for the exact sizes, and RFC 9110 §13-§14 for the status decisions.
"""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
import zlib
from email.utils import formatdate

import pytest

from asgi_xfer.protocol.archiveplan import (
    BODY_NONE, BODY_STORED_ZIP, BODY_STREAMED, CRC_UPFRONT_MAX_BYTES, KIND_TAR, KIND_TAR_GZ, KIND_ZIP,
    KIND_ZIP_DEFLATE, ArchiveMember, ArchiveRequest, format_archive_etag, is_crc_upfront, parse_archive_kind,
    plan_archive, plan_crc_needs, tar_entries, zip_entries,
)
from asgi_xfer.protocol.errors import BadRequest, PreconditionFailed, RangeNotSatisfiable
from asgi_xfer.protocol.tarwriter import TarWriter
from asgi_xfer.protocol.zipwriter import ZipLayout, plan_stored_zip

MTIME_NS = 1_700_000_000_123_456_789
NOW = 1_800_000_000.0


def make_tree(sizes: list[int], seed: int = 1) -> tuple[list[ArchiveMember], list[bytes]]:
    """A directory, an empty directory and files of `sizes`, with contents."""
    rng = random.Random(seed)
    members = [ArchiveMember("d", 0, MTIME_NS, 0o755, True), ArchiveMember("d/empty", 0, MTIME_NS, 0o700, True)]
    data = [b"", b""]
    for n, size in enumerate(sizes):
        members.append(ArchiveMember(f"d/f{n}-ü.bin", size, MTIME_NS + n, 0o644))
        data.append(rng.randbytes(size))
    return members, data


def assemble(layout: ZipLayout, data: list[bytes], start: int, stop: int) -> bytes:
    """Archive bytes [start, stop) built piece by piece, as the handler does."""
    crcs = [zlib.crc32(d) for d in data]
    out = []
    for piece in layout.pieces(start, stop):
        i, lo, hi = piece.index, piece.start, piece.stop
        if piece.kind == "header":
            out.append(layout.local_header(i)[lo:hi])
        elif piece.kind == "data":
            out.append(data[i][lo:hi])
        elif piece.kind == "descriptor":
            out.append(layout.data_descriptor(i, crcs[i])[lo:hi])
        else:
            out.append(layout.central_directory(crcs)[lo:hi])
    return b"".join(out)


def request(headers: dict[str, str] | None = None, method: str = "GET", kind: str = KIND_ZIP) -> ArchiveRequest:
    return ArchiveRequest(method, headers or {}, kind, "d")


# -- kinds -------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "compress", "kind"), [
    (None, None, KIND_ZIP), ("", None, KIND_ZIP), ("zip", None, KIND_ZIP), ("ZIP", None, KIND_ZIP), ("tar", None, KIND_TAR),
    ("tar.gz", None, KIND_TAR_GZ), (None, "deflate", KIND_ZIP_DEFLATE), ("zip", "DEFLATE", KIND_ZIP_DEFLATE),
])
def test_archive_kinds(fmt: str | None, compress: str | None, kind: str) -> None:
    assert parse_archive_kind(fmt, compress) == kind


@pytest.mark.parametrize(("fmt", "compress"), [("rar", None), (None, "gzip"), ("tar", "deflate"), ("tar.gz", "deflate")])
def test_bad_kinds_are_400(fmt: str | None, compress: str | None) -> None:
    with pytest.raises(BadRequest):
        parse_archive_kind(fmt, compress)


# -- ETag ------------------------------------------------------------------------


def test_etag_is_deterministic_and_follows_every_entry_field() -> None:
    members, _ = make_tree([10, 20])
    etag = format_archive_etag(KIND_ZIP, members)
    assert etag == format_archive_etag(KIND_ZIP, list(members))
    assert etag.startswith('"') and etag.endswith('"')  # strong (RFC 9110 §8.8.3)
    f = members[2]
    variants = [
        ArchiveMember(f.name + "x", f.size, f.mtime_ns, f.mode),
        ArchiveMember(f.name, f.size + 1, f.mtime_ns, f.mode),
        ArchiveMember(f.name, f.size, f.mtime_ns + 1, f.mode),
        ArchiveMember(f.name, f.size, f.mtime_ns, 0o600),
    ]
    tags = {format_archive_etag(KIND_ZIP, [*members[:2], v, *members[3:]]) for v in variants}
    assert len(tags) == 4 and etag not in tags
    assert format_archive_etag(KIND_ZIP, members[:-1]) != etag  # an entry removed


def test_etag_strength_by_kind() -> None:
    members, _ = make_tree([10])
    tags = {kind: format_archive_etag(kind, members) for kind in (KIND_ZIP, KIND_TAR, KIND_TAR_GZ, KIND_ZIP_DEFLATE)}
    assert len(set(tags.values())) == 4
    assert not tags[KIND_ZIP].startswith("W/") and not tags[KIND_TAR].startswith("W/")
    # Deflate output depends on the zlib build: weak (§8.8.1).
    assert tags[KIND_TAR_GZ].startswith("W/") and tags[KIND_ZIP_DEFLATE].startswith("W/")


# -- the stored zip's layout and the CRC placement rule ---------------------------


@pytest.mark.parametrize("sizes", [[], [0], [1, 5000, 70_000], [300_000, 1]])
def test_full_span_is_a_zip_zipfile_reads(sizes: list[int]) -> None:
    members, data = make_tree(sizes)
    plan = plan_archive(request(), members, NOW)
    assert plan.status == 200 and plan.body == BODY_STORED_ZIP and plan.layout is not None
    assert plan.crc_upfront  # small: CRCs in the local headers
    crcs = {i: zlib.crc32(d) for i, d in enumerate(data) if d}
    layout = plan_stored_zip(zip_entries(members, crcs, upfront=True))
    blob = assemble(layout, data, 0, layout.size)
    assert dict(plan.headers)["content-length"] == str(len(blob)) == str(plan.layout.size)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == [m.name + "/" * m.is_dir for m in members]
        assert [zf.read(n) for n in zf.namelist()] == data
        assert all(not (i.flag_bits & 0x08) for i in zf.infolist())  # no data descriptors


def test_the_layout_does_not_depend_on_which_crcs_are_known() -> None:
    members, data = make_tree([100, 200, 300])
    placeholder = plan_stored_zip(zip_entries(members, upfront=True))
    partial = plan_stored_zip(zip_entries(members, {2: zlib.crc32(data[2])}, upfront=True))
    real = plan_stored_zip(zip_entries(members, {i: zlib.crc32(d) for i, d in enumerate(data)}, upfront=True))
    for layout in (partial, real):
        assert layout.size == placeholder.size
        assert [layout.header_offset(i) for i in range(len(members))] == [placeholder.header_offset(i) for i in range(len(members))]


def test_big_archives_use_data_descriptors_whatever_is_cached() -> None:
    # Sizes decide, not contents: members can be planned without data.
    small = [ArchiveMember("a", CRC_UPFRONT_MAX_BYTES, MTIME_NS, 0o644)]
    big = [*small, ArchiveMember("b", 1, MTIME_NS, 0o644)]
    assert is_crc_upfront(small) and not is_crc_upfront(big)
    entries = zip_entries(big, {0: 123, 1: 456})  # cached CRCs are ignored
    assert [e.crc32 for e in entries] == [None, None]
    plan = plan_archive(request(), big, NOW)
    assert not plan.crc_upfront and plan.layout is not None
    assert plan.layout.data_descriptor(0, 7) != b""


def test_descriptor_layout_reads_back() -> None:
    members, data = make_tree([10, 0, 70_000])
    layout = plan_stored_zip(zip_entries(members))  # not upfront: descriptors
    blob = assemble(layout, data, 0, layout.size)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        assert [zf.read(n) for n in zf.namelist()] == data
        assert [bool(i.flag_bits & 0x08) for i in zf.infolist()] == [bool(d) for d in data]


@pytest.mark.parametrize("upfront", [True, False])
def test_every_split_point_resumes_to_the_same_bytes(upfront: bool) -> None:
    """What `curl -C -` does: bytes [0, k) from one response, [k, end) from another."""
    members, data = make_tree([3, 1000, 0, 5])
    crcs = {i: zlib.crc32(d) for i, d in enumerate(data)}
    layout = plan_stored_zip(zip_entries(members, crcs, upfront=upfront))
    whole = assemble(layout, data, 0, layout.size)
    for k in range(layout.size + 1):
        assert assemble(layout, data, 0, k) + assemble(layout, data, k, layout.size) == whole


# -- status decisions (RFC 9110 §13.2.2, §14) -------------------------------------


def test_head_has_the_get_headers_and_no_body() -> None:
    members, _ = make_tree([10])
    get, head = plan_archive(request(), members, NOW), plan_archive(request(method="HEAD"), members, NOW)
    assert head.body == BODY_NONE and head.headers == get.headers


def test_headers_of_a_stored_zip() -> None:
    members, _ = make_tree([10])
    fields = dict(plan_archive(request(), members, NOW).headers)
    assert fields["content-type"] == "application/zip"
    assert fields["accept-ranges"] == "bytes"
    assert fields["content-disposition"] == "attachment; filename=\"d.zip\"; filename*=UTF-8''d.zip"
    assert fields["last-modified"] == formatdate((MTIME_NS + 1) // 10**9, usegmt=True)


def test_last_modified_is_never_in_the_future() -> None:
    members = [ArchiveMember("f", 1, int(NOW * 1e9) + 10**12, 0o644)]
    fields = dict(plan_archive(request(), members, NOW).headers)
    assert fields["last-modified"] == formatdate(NOW, usegmt=True)  # §8.8.2.1


@pytest.mark.parametrize(("kind", "ctype", "ext"), [
    (KIND_TAR, "application/x-tar", ".tar"), (KIND_TAR_GZ, "application/gzip", ".tar.gz"),
    (KIND_ZIP_DEFLATE, "application/zip", ".zip"),
])
def test_streamed_kinds_ignore_range(kind: str, ctype: str, ext: str) -> None:
    members, _ = make_tree([10])
    plan = plan_archive(request({"range": "bytes=0-3"}, kind=kind), members, NOW)
    fields = dict(plan.headers)
    assert plan.status == 200 and plan.body == BODY_STREAMED
    assert fields["accept-ranges"] == "none" and fields["content-type"] == ctype
    assert f'filename="d{ext}"' in fields["content-disposition"]
    assert ("content-length" in fields) == (kind == KIND_TAR)


def test_tar_content_length_is_exact() -> None:
    members, data = make_tree([1, 511, 512, 513, 0])
    plan = plan_archive(request(kind=KIND_TAR), members, NOW)
    writer, out = TarWriter(), []
    for entry, d in zip(tar_entries(members), data):
        out += [writer.start_entry(entry), writer.entry_data(d), writer.end_entry()]
    blob = b"".join(out) + writer.finish()
    assert dict(plan.headers)["content-length"] == str(len(blob))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        assert [tf.extractfile(m).read() if m.isfile() else b"" for m in tf.getmembers()] == data  # type: ignore[union-attr]


def test_one_range_is_206() -> None:
    members, _ = make_tree([1000])
    plan = plan_archive(request({"range": "bytes=100-199"}), members, NOW)
    assert plan.layout is not None
    fields = dict(plan.headers)
    assert plan.status == 206 and plan.span == (100, 200)
    assert fields["content-range"] == f"bytes 100-199/{plan.layout.size}"
    assert fields["content-length"] == "100"


def test_open_and_suffix_ranges() -> None:
    members, _ = make_tree([1000])
    size = plan_archive(request(), members, NOW).span[1]
    assert plan_archive(request({"range": "bytes=500-"}), members, NOW).span == (500, size)
    assert plan_archive(request({"range": "bytes=-10"}), members, NOW).span == (size - 10, size)


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-1", "bytes=x-y"])
def test_ranges_ignored_give_the_whole_archive(header: str) -> None:
    members, _ = make_tree([1000])
    plan = plan_archive(request({"range": header}), members, NOW)
    assert plan.status == 200 and plan.span == (0, int(dict(plan.headers)["content-length"]))


def test_unsatisfiable_range_is_416() -> None:
    members, _ = make_tree([10])
    size = plan_archive(request(), members, NOW).span[1]
    with pytest.raises(RangeNotSatisfiable) as err:
        plan_archive(request({"range": f"bytes={size}-"}), members, NOW)
    assert err.value.headers["content-range"] == f"bytes */{size}"


def test_if_range() -> None:
    members, _ = make_tree([1000])
    etag = format_archive_etag(KIND_ZIP, members)
    date = formatdate((MTIME_NS + 1) // 10**9, usegmt=True)
    assert plan_archive(request({"range": "bytes=5-", "if-range": etag}), members, NOW).status == 206
    for stale in ('"zip-other"', f"W/{etag}", date):  # a date is not strong enough for a tree
        assert plan_archive(request({"range": "bytes=5-", "if-range": stale}), members, NOW).status == 200


def test_preconditions() -> None:
    members, _ = make_tree([10])
    etag = format_archive_etag(KIND_ZIP, members)
    assert plan_archive(request({"if-none-match": etag}), members, NOW).status == 304
    later = formatdate(NOW, usegmt=True)
    assert plan_archive(request({"if-modified-since": later}), members, NOW).status == 304
    with pytest.raises(PreconditionFailed):
        plan_archive(request({"if-match": '"zip-other"'}), members, NOW)
    assert plan_archive(request({"if-match": etag}), members, NOW).status == 200


# -- which CRCs a span needs -----------------------------------------------------------


def test_crc_needs_of_a_full_descriptor_archive() -> None:
    members, _ = make_tree([10, 0, 20])
    layout = plan_stored_zip(zip_entries(members))
    needs = plan_crc_needs(layout, 0, layout.size, upfront=False)
    assert needs.ahead == frozenset()  # everything is streamed, so computed on the way
    assert needs.streamed >= {2, 4}


def test_crc_needs_of_a_resumed_descriptor_archive() -> None:
    members, _ = make_tree([10, 0, 20])
    layout = plan_stored_zip(zip_entries(members))
    mid = layout.data_offset(4) + 5  # inside the last file
    needs = plan_crc_needs(layout, mid, layout.size, upfront=False)
    assert needs.ahead == {2, 4} and 4 not in needs.streamed  # only what the span lacks
    early = plan_crc_needs(layout, 0, layout.data_offset(4) + 5, upfront=False)
    assert early.ahead == frozenset()  # no central directory, no descriptor of 4


def test_crc_needs_of_an_upfront_archive() -> None:
    members, _ = make_tree([10, 0, 20])
    layout = plan_stored_zip(zip_entries(members, upfront=True))
    assert plan_crc_needs(layout, 0, layout.size, upfront=True).ahead == {2, 4}
    assert plan_crc_needs(layout, 0, layout.data_offset(2), upfront=True).ahead == {2}
    assert plan_crc_needs(layout, layout.data_offset(2), layout.header_offset(4), upfront=True).ahead == frozenset()
