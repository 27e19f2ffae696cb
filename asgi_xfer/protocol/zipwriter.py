"""Sans-I/O zip writer: entry metadata and data bytes in, archive bytes out.

Owns: the zip byte format (PKWARE APPNOTE.TXT 6.3) -- local headers, data
descriptors, the central directory, zip64 records -- and `plan_stored_zip`,
the exact layout of a STORED archive, so the HTTP layer can send
`Content-Length` up front and serve a byte Range without streaming what comes
before it. Must not: open files, read clocks, or touch stdlib `zipfile`
internals. Both the writer and the layout build their bytes with the same
record functions below, so they agree by construction.

Where an entry's CRC-32 and sizes go (the local-header decision):

- A STORED entry whose `crc32` is known up front (from a cache, or because it
  is empty or a directory) carries CRC and sizes in its local header and has
  no data descriptor. Streaming readers that never see the central directory
  (Java's `ZipInputStream`, and so many Android and JVM tools) cannot find the
  end of a STORED entry that defers its sizes to a descriptor: the format has
  no end marker for stored data.
- Any other entry sets flag bit 3 (APPNOTE 4.4.4) and writes CRC and sizes in
  a data descriptor after the data (APPNOTE 4.3.9), with zeros in the local
  header, because they are known only once the data has gone out. Deflated
  data ends itself, so streaming readers handle this for DEFLATED entries;
  for STORED entries it needs a reader of the central directory (`zipfile`,
  unzip, 7-Zip, libarchive, every desktop tool).

Zip64 is decided per entry from what is known at its header: sizes from
`entry.size` (for deflate, its worst-case compressed size), the offset from
the bytes written before it; the end records go zip64 only when the entry
count, central-directory size or offset needs it (APPNOTE 4.4.1.4).
"""

from __future__ import annotations

import math
import stat
import struct
import time
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .archiveerrors import ArchiveError, check_member, check_member_name

__all__ = ["ArchiveError", "ZipEntry", "ZipLayout", "ZipPiece", "ZipWriter", "plan_stored_zip"]

# APPNOTE 4.4.8/4.4.9/4.4.16: a 32-bit size or offset of 0xFFFFFFFF means
# "look in the zip64 extra field", so that value itself already needs zip64.
ZIP64_LIMIT = 0xFFFFFFFF
# APPNOTE 4.4.21/4.4.22: 16-bit entry counts; 0xFFFF means "see zip64".
ZIP_COUNT_LIMIT = 0xFFFF

_STORED, _DEFLATED = 0, 8
_FLAG_DESCRIPTOR = 1 << 3  # APPNOTE 4.4.4 bit 3: CRC and sizes follow the data
_FLAG_UTF8 = 1 << 11  # APPNOTE 4.4.4 bit 11 and appendix D: name is UTF-8
_VERSION = 20  # 2.0: deflate and directories (APPNOTE 4.4.3.2)
_VERSION_ZIP64 = 45  # 4.5: zip64 extensions
_MADE_BY_UNIX = 3 << 8  # host 3 = Unix: external attributes hold st_mode
_MSDOS_DIR_ATTR = 0x10
_DOS_MIN = (1980, 1, 1, 0, 0, 0)  # DOS dates start in 1980 (APPNOTE 4.4.6)
_DOS_MAX = (2107, 12, 31, 23, 59, 58)
_UT_MAX = 2**31 - 1  # the "UT" extra holds a 32-bit time_t, read as signed by Info-ZIP

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # APPNOTE 4.3.7, 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 4.3.12, 46 bytes
_DESCRIPTOR32 = struct.Struct("<IIII")  # 4.3.9 with the optional signature
_DESCRIPTOR64 = struct.Struct("<IIQQ")
_ZIP64_EXTRA_SIZES = struct.Struct("<HHQQ")  # 4.5.3, local header form
_UT_EXTRA = struct.Struct("<HHBI")  # Info-ZIP extended timestamp, mtime only
_END = struct.Struct("<IHHHHIIH")  # 4.3.16, 22 bytes
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")  # 4.3.14, 56 bytes
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # 4.3.15, 20 bytes
_SIG_LOCAL, _SIG_CENTRAL, _SIG_DESCRIPTOR = 0x04034B50, 0x02014B50, 0x08074B50
_SIG_END, _SIG_ZIP64_END, _SIG_ZIP64_LOCATOR = 0x06054B50, 0x06064B50, 0x07064B50


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """One archive member. `name` is relative and '/'-separated; `crc32` is
    the CRC of the whole content when already known (see the module docstring:
    it decides where a STORED entry's CRC and sizes go); `mode` holds the
    permission bits; a directory has size 0 and gets `chmod a+X` applied."""

    name: str
    size: int
    mtime: float
    crc32: int | None = None
    mode: int = 0o644
    is_dir: bool = False

    def __post_init__(self) -> None:
        check_member(self.name, self.size, is_dir=self.is_dir)
        if self.crc32 is not None and not 0 <= self.crc32 <= 0xFFFFFFFF:
            raise ArchiveError(f"{self.name!r}: invalid crc32 {self.crc32}")
        if self.size == 0 and self.crc32 not in (None, 0):
            raise ArchiveError(f"{self.name!r}: an empty entry has crc32 0")
        if not math.isfinite(self.mtime):
            raise ArchiveError(f"{self.name!r}: invalid mtime {self.mtime}")


@dataclass(frozen=True, slots=True)
class _Member:
    """One entry's encoding decisions, all fixed when its local header is written."""

    entry: ZipEntry
    name: bytes
    offset: int  # of the local header
    method: int
    zip64_sizes: bool  # the local header carries a zip64 extra; 8-byte descriptor sizes
    descriptor: bool  # flag bit 3: CRC and sizes come after the data
    known_crc: int  # 0 when `descriptor`
    dos_time: int
    dos_date: int

    @property
    def flags(self) -> int:
        utf8 = 0 if self.name.isascii() else _FLAG_UTF8
        return utf8 | (_FLAG_DESCRIPTOR if self.descriptor else 0)

    @property
    def version(self) -> int:
        zip64 = self.zip64_sizes or self.offset >= ZIP64_LIMIT
        return _VERSION_ZIP64 if zip64 else _VERSION

    @property
    def header_size(self) -> int:
        return _LOCAL.size + len(self.name) + _UT_EXTRA.size + self.zip64_sizes * _ZIP64_EXTRA_SIZES.size

    @property
    def descriptor_size(self) -> int:
        if not self.descriptor:
            return 0
        return (_DESCRIPTOR64 if self.zip64_sizes else _DESCRIPTOR32).size

    @property
    def central_size(self) -> int:
        fields = 2 * self.zip64_sizes + (self.offset >= ZIP64_LIMIT)
        return _CENTRAL.size + len(self.name) + _UT_EXTRA.size + (4 + 8 * fields if fields else 0)


def _deflate_bound(size: int) -> int:
    # zlib's deflateBound() for raw deflate is about size * (1 + 1/3000) + 13;
    # 1/1024 plus a constant is a safe margin for several compress() calls.
    return size + (size >> 10) + 64


def _plan_member(entry: ZipEntry, offset: int, *, compress: bool) -> _Member:
    name = check_member_name(entry.name, is_dir=entry.is_dir).encode("utf-8")
    if len(name) > 0xFFFF:
        raise ArchiveError(f"{entry.name[:80]!r}...: name longer than 65535 bytes")
    deflate = compress and entry.size > 0  # empty entries and directories are stored
    known = 0 if entry.size == 0 else None if deflate else entry.crc32
    largest = _deflate_bound(entry.size) if deflate else entry.size
    dos_time, dos_date = _dos_datetime(entry.mtime)
    return _Member(
        entry=entry,
        name=name,
        offset=offset,
        method=_DEFLATED if deflate else _STORED,
        zip64_sizes=largest >= ZIP64_LIMIT,
        descriptor=known is None,
        known_crc=known or 0,
        dos_time=dos_time,
        dos_date=dos_date,
    )


def _dos_datetime(mtime: float) -> tuple[int, int]:
    """(time, date) in MS-DOS form, in UTC, clamped to what DOS can hold.

    UTC, not the server's local time: the archive's bytes (so its size, its
    byte offsets and the Range a resumed download asks for) must be the same
    in every process and on every node whatever its TZ. The "UT" extra
    carries the true mtime for unzip, 7-Zip and libarchive anyway.
    """
    try:
        stamp = tuple(time.gmtime(mtime)[:6])
    except (OverflowError, OSError, ValueError):
        stamp = _DOS_MIN if mtime < 0 else _DOS_MAX
    year, month, day, hour, minute, second = min(max(stamp, _DOS_MIN), _DOS_MAX)
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day


def _ut_extra(mtime: float) -> bytes:
    # The Info-ZIP "UT" field gives unzip, 7-Zip and libarchive the UTC mtime
    # to the second, which the 2-second DOS field cannot.
    return _UT_EXTRA.pack(0x5455, 5, 1, min(max(int(mtime), 0), _UT_MAX))


def _external_attr(entry: ZipEntry) -> int:
    mode = entry.mode & 0o7777
    if entry.is_dir:
        # chmod a+X: a directory readable by someone is searchable by them.
        return (stat.S_IFDIR | mode | (mode & 0o444) >> 2) << 16 | _MSDOS_DIR_ATTR
    return (stat.S_IFREG | mode) << 16


def _local_header(m: _Member) -> bytes:
    size = 0 if m.descriptor else m.entry.size
    extra = _ut_extra(m.entry.mtime)
    size32 = size
    if m.zip64_sizes:
        extra = _ZIP64_EXTRA_SIZES.pack(1, 16, size, size) + extra
        size32 = ZIP64_LIMIT
    fixed = _LOCAL.pack(
        _SIG_LOCAL, m.version, m.flags, m.method, m.dos_time, m.dos_date,
        m.known_crc, size32, size32, len(m.name), len(extra),
    )  # fmt: skip
    return fixed + m.name + extra


def _data_descriptor(m: _Member, crc: int, compressed_size: int) -> bytes:
    if not m.descriptor:
        return b""
    record = _DESCRIPTOR64 if m.zip64_sizes else _DESCRIPTOR32
    return record.pack(_SIG_DESCRIPTOR, crc, compressed_size, m.entry.size)


def _central_record(m: _Member, crc: int, compressed_size: int) -> bytes:
    size, offset, fields = m.entry.size, m.offset, []
    if m.zip64_sizes:  # APPNOTE 4.5.3: only the fields set to 0xFFFFFFFF, in order
        fields += [size, compressed_size]
        size = compressed_size = ZIP64_LIMIT
    if offset >= ZIP64_LIMIT:
        fields.append(offset)
        offset = ZIP64_LIMIT
    extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
    extra += _ut_extra(m.entry.mtime)
    fixed = _CENTRAL.pack(
        _SIG_CENTRAL, _MADE_BY_UNIX | m.version, m.version, m.flags, m.method,
        m.dos_time, m.dos_date, crc, compressed_size, size, len(m.name), len(extra),
        0, 0, 0, _external_attr(m.entry), offset,
    )  # fmt: skip
    return fixed + m.name + extra


def _end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    """The zip64 end record and locator when needed, then the end record."""
    out = b""
    if count >= ZIP_COUNT_LIMIT or cd_offset >= ZIP64_LIMIT or cd_size >= ZIP64_LIMIT:
        out = _ZIP64_END.pack(
            _SIG_ZIP64_END, _ZIP64_END.size - 12, _MADE_BY_UNIX | _VERSION_ZIP64,
            _VERSION_ZIP64, 0, 0, count, count, cd_size, cd_offset,
        ) + _ZIP64_LOCATOR.pack(_SIG_ZIP64_LOCATOR, 0, cd_offset + cd_size, 1)  # fmt: skip
    count16 = min(count, ZIP_COUNT_LIMIT)
    return out + _END.pack(_SIG_END, 0, 0, count16, count16, min(cd_size, ZIP64_LIMIT), min(cd_offset, ZIP64_LIMIT), 0)


class ZipWriter:
    """Streams one zip archive: for each entry `start_entry`, `entry_data` for
    each piece of its content, `end_entry`; then `finish`. Each call returns
    the bytes to send next. A STORED entry's data comes back as the very same
    object, uncopied. Every entry must be fed exactly `entry.size` bytes (and,
    if given, match `entry.crc32`), or `ArchiveError` is raised: that is how a
    file changing while it is archived is caught before the archive completes.
    """

    def __init__(self, *, compress: bool = False, level: int = 6) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"deflate level must be 0-9, not {level}")
        self._compress, self._level = compress, level
        self._offset = 0
        self._names: set[bytes] = set()
        self._done: list[tuple[_Member, int, int]] = []  # (member, crc, compressed size)
        self._member: _Member | None = None
        self._compressor: _Compressor | None = None
        self._crc = self._fed = self._written = 0
        self._finished = False

    @property
    def offset(self) -> int:
        """Bytes returned so far."""
        return self._offset

    @property
    def crc32s(self) -> list[int]:
        """The CRC-32 of each finished entry, in order: what a cache keeps so a
        later Range request can build `ZipLayout.central_directory`."""
        return [crc for _, crc, _ in self._done]

    def start_entry(self, entry: ZipEntry) -> bytes:
        if self._member is not None or self._finished:
            raise ArchiveError("start_entry() while an entry is open or after finish()")
        member = _plan_member(entry, self._offset, compress=self._compress)
        if member.name in self._names:
            raise ArchiveError(f"duplicate archive member {entry.name!r}")
        self._names.add(member.name)
        self._member = member
        self._crc = self._fed = self._written = 0
        if member.method == _DEFLATED:
            self._compressor = zlib.compressobj(self._level, zlib.DEFLATED, -zlib.MAX_WBITS)
        header = _local_header(member)
        self._offset += len(header)
        return header

    def entry_data(self, data: bytes) -> bytes:
        member = self._member
        if member is None:
            raise ArchiveError("entry_data() outside an entry")
        fed = self._fed + len(data)
        if fed > member.entry.size:
            raise ArchiveError(f"{member.entry.name!r} grew past its {member.entry.size} bytes")
        self._fed = fed
        self._crc = zlib.crc32(data, self._crc)
        if self._compressor is None:
            self._offset += len(data)
            return data
        out = self._compressor.compress(data)
        self._written += len(out)
        self._offset += len(out)
        return out

    def end_entry(self) -> bytes:
        member = self._member
        if member is None:
            raise ArchiveError("end_entry() outside an entry")
        entry = member.entry
        if self._fed != entry.size:
            raise ArchiveError(f"{entry.name!r}: {self._fed} bytes fed, {entry.size} announced")
        if entry.crc32 is not None and entry.crc32 != self._crc:
            raise ArchiveError(f"{entry.name!r}: content does not match its crc32")
        out = b""
        if self._compressor is not None:
            out = self._compressor.flush()
            self._written += len(out)
            self._compressor = None
        compressed_size = self._written if member.method == _DEFLATED else self._fed
        if not member.zip64_sizes and compressed_size >= ZIP64_LIMIT:  # pragma: no cover
            raise ArchiveError(f"{entry.name!r}: deflate outgrew its zip64 estimate")
        out += _data_descriptor(member, self._crc, compressed_size)
        self._done.append((member, self._crc, compressed_size))
        self._member = None
        self._offset += len(out)
        return out

    def finish(self) -> bytes:
        if self._member is not None or self._finished:
            raise ArchiveError("finish() while an entry is open or twice")
        self._finished = True
        directory = b"".join(_central_record(m, crc, size) for m, crc, size in self._done)
        out = directory + _end_records(len(self._done), self._offset, len(directory))
        self._offset += len(out)
        return out


@dataclass(frozen=True, slots=True)
class ZipPiece:
    """Bytes [start, stop) of one part of a planned archive. `kind` names the
    part: an entry's "header", "data" (offsets into the file's content) or
    "descriptor", or the "central_directory" (with `index` -1), which runs
    from `ZipLayout.central_directory_offset` to the end of the archive."""

    kind: Literal["header", "data", "descriptor", "central_directory"]
    index: int
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class ZipLayout:
    """Where every byte of a STORED archive lies; built by `plan_stored_zip`.
    Equal to what `ZipWriter(compress=False)` emits for the same entries."""

    _members: tuple[_Member, ...] = field(repr=False)
    _header_offsets: tuple[int, ...] = field(repr=False)
    central_directory_offset: int
    size: int

    @property
    def entries(self) -> tuple[ZipEntry, ...]:
        return tuple(m.entry for m in self._members)

    def header_offset(self, index: int) -> int:
        return self._members[index].offset

    def data_offset(self, index: int) -> int:
        return self._members[index].offset + self._members[index].header_size

    def local_header(self, index: int) -> bytes:
        return _local_header(self._members[index])

    def data_descriptor(self, index: int, crc32: int) -> bytes:
        """The bytes after entry `index`'s data: b"" when its CRC was known."""
        member = self._members[index]
        return _data_descriptor(member, crc32, member.entry.size)

    def central_directory(self, crc32s: Sequence[int | None] = ()) -> bytes:
        """Everything from `central_directory_offset` to the end. `crc32s[i]`
        is entry i's CRC, as `ZipWriter.crc32s` reported it; it may be None or
        missing for entries planned with a known `crc32`."""
        records = []
        for i, m in enumerate(self._members):
            given = crc32s[i] if i < len(crc32s) else None
            if m.descriptor and given is None:
                raise ArchiveError(f"the CRC-32 of {m.entry.name!r} is needed")
            if not m.descriptor and given not in (None, m.known_crc):
                raise ArchiveError(f"{m.entry.name!r}: crc32 differs from the planned one")
            records.append(_central_record(m, m.known_crc if given is None else given, m.entry.size))
        directory = b"".join(records)
        return directory + _end_records(len(records), self.central_directory_offset, len(directory))

    def pieces(self, start: int, stop: int) -> list[ZipPiece]:
        """The parts that make up archive bytes [start, stop), in order."""
        if not 0 <= start <= stop <= self.size:
            raise ValueError(f"range [{start}, {stop}) outside a {self.size}-byte archive")
        out: list[ZipPiece] = []
        index = max(0, bisect_right(self._header_offsets, start) - 1)
        while start < stop and index < len(self._members):
            for kind, lo, hi in self._parts(index):
                if lo < stop and start < hi:
                    out.append(ZipPiece(kind, index, start - lo, min(stop, hi) - lo))
                    start = min(stop, hi)
            index += 1
        if start < stop:
            cd = self.central_directory_offset
            out.append(ZipPiece("central_directory", -1, start - cd, stop - cd))
        return out

    def _parts(self, index: int) -> tuple[tuple[Literal["header", "data", "descriptor"], int, int], ...]:
        m = self._members[index]
        data = m.offset + m.header_size
        end = data + m.entry.size
        return ("header", m.offset, data), ("data", data, end), ("descriptor", end, end + m.descriptor_size)


def plan_stored_zip(entries: Iterable[ZipEntry]) -> ZipLayout:
    """The exact layout of the STORED archive `ZipWriter()` writes for `entries`."""
    members: list[_Member] = []
    names: set[bytes] = set()
    offset = 0
    for entry in entries:
        member = _plan_member(entry, offset, compress=False)
        if member.name in names:
            raise ArchiveError(f"duplicate archive member {entry.name!r}")
        names.add(member.name)
        members.append(member)
        offset += member.header_size + entry.size + member.descriptor_size
    cd_size = sum(m.central_size for m in members)
    size = offset + cd_size + len(_end_records(len(members), offset, cd_size))
    return ZipLayout(tuple(members), tuple(m.offset for m in members), offset, size)
