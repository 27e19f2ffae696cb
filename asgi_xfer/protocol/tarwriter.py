"""Sans-I/O tar writer: entry metadata and data bytes in, archive bytes out.

Owns: the POSIX.1-2001 pax/ustar byte format (POSIX `pax`, "ustar Interchange
Format" and "pax Interchange Format") and `plan_tar_size`, the exact size of
an archive before it is written. Must not: open files, read clocks or know
about gzip (tar.gz is this output fed through the gzip encoder).

Each entry is one ustar header, preceded by a pax extended header ('x') only
when ustar cannot hold it: a name that is not ASCII or fits neither the
100-byte name field nor a prefix/name split, or a size of 8 GiB or more (the
size field holds 11 octal digits).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .archiveerrors import ArchiveError, check_member, check_member_name

__all__ = ["ArchiveError", "TarEntry", "TarWriter", "plan_tar_size"]

BLOCK_SIZE_BYTES = 512  # every tar header and data run is padded to this
_NAME_LEN, _PREFIX_LEN = 100, 155  # ustar field widths
_OCTAL11_MAX = 8**11 - 1  # largest value of an 11-digit octal field: 8 GiB - 1
_PAX_HEADER_NAME = b"././@PaxHeader"  # what CPython's tarfile writes there
_END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE_BYTES)  # two zero blocks (POSIX ustar)


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One archive member. `name` is relative and '/'-separated; `mode`
    holds the permission bits; a directory has size 0 and gets `chmod a+X`."""

    name: str
    size: int
    mtime: float
    mode: int = 0o644
    is_dir: bool = False

    def __post_init__(self) -> None:
        check_member(self.name, self.size, is_dir=self.is_dir)


def _padding(size: int) -> int:
    return -size % BLOCK_SIZE_BYTES


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _split_ustar_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(name, prefix) fields for `name`, or None when ustar cannot hold it."""
    if not name.isascii():
        return None
    if len(name) <= _NAME_LEN:
        return name, b""
    # Split at the first '/' that leaves at most 100 bytes of name, as
    # CPython's tarfile does; a directory's own trailing '/' is no separator.
    cut = name.find(b"/", len(name) - _NAME_LEN - 1, len(name) - 1)
    if not 0 < cut <= _PREFIX_LEN:
        return None
    return name[cut + 1 :], name[:cut]


def _pax_record(key: str, value: str) -> bytes:
    # "%d %s=%s\n", where the length counts its own digits.
    body = f" {key}={value}\n".encode()
    length = len(body)
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _ustar_block(name: bytes, prefix: bytes, size: int, entry: TarEntry, typeflag: bytes) -> bytes:
    mode = entry.mode & 0o7777
    if entry.is_dir:
        mode |= (mode & 0o444) >> 2  # chmod a+X, as in zipwriter
    mtime = min(max(int(entry.mtime), 0), _OCTAL11_MAX)
    block = b"".join(
        (
            name.ljust(_NAME_LEN, b"\0"),
            _octal(mode, 8),
            _octal(0, 8),  # uid
            _octal(0, 8),  # gid
            _octal(size, 12),
            _octal(mtime, 12),
            b" " * 8,  # checksum, computed over spaces
            typeflag,
            bytes(100),  # linkname
            b"ustar\x0000",  # magic and version
            bytes(64),  # uname, gname
            bytes(16),  # devmajor, devminor: empty unless a device, as tarfile writes
            prefix.ljust(_PREFIX_LEN, b"\0"),
            bytes(12),
        )
    )
    checksum = b"%06o\0 " % sum(block)
    return block[:148] + checksum + block[156:]


def _pax_fields(entry: TarEntry, name: bytes) -> list[tuple[str, str]]:
    fields = []
    if _split_ustar_name(name) is None:
        fields.append(("path", name.decode()))
    if entry.size > _OCTAL11_MAX:
        fields.append(("size", str(entry.size)))
    return fields


def _entry_header(entry: TarEntry) -> bytes:
    name = check_member_name(entry.name, is_dir=entry.is_dir).encode()
    typeflag = b"5" if entry.is_dir else b"0"
    fields = _pax_fields(entry, name)
    if not fields:
        ustar_name, prefix = _split_ustar_name(name) or (name, b"")
        return _ustar_block(ustar_name, prefix, entry.size, entry, typeflag)
    records = b"".join(_pax_record(key, value) for key, value in fields)
    pax = _ustar_block(_PAX_HEADER_NAME, b"", len(records), entry, b"x")
    pax += records + bytes(_padding(len(records)))
    # The ustar fields then hold what a reader without pax support can use.
    split = _split_ustar_name(name)
    ustar_name, prefix = split or (name.decode().encode("ascii", "replace")[:_NAME_LEN], b"")
    size = entry.size if entry.size <= _OCTAL11_MAX else 0
    return pax + _ustar_block(ustar_name, prefix, size, entry, typeflag)


def _entry_header_size(entry: TarEntry) -> int:
    name = check_member_name(entry.name, is_dir=entry.is_dir).encode()
    fields = _pax_fields(entry, name)
    if not fields:
        return BLOCK_SIZE_BYTES
    records = sum(len(_pax_record(key, value)) for key, value in fields)
    return 2 * BLOCK_SIZE_BYTES + records + _padding(records)


class TarWriter:
    """Streams one tar archive: for each entry `start_entry`, `entry_data` for
    each piece of its content, `end_entry`; then `finish`. Each call returns
    the bytes to send next; data comes back as the very same object. Every
    entry must be fed exactly `entry.size` bytes, or `ArchiveError` is raised:
    that is how a file changing while it is archived is caught."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._entry: TarEntry | None = None
        self._fed = 0
        self._finished = False

    def start_entry(self, entry: TarEntry) -> bytes:
        if self._entry is not None or self._finished:
            raise ArchiveError("start_entry() while an entry is open or after finish()")
        name = check_member_name(entry.name, is_dir=entry.is_dir)
        if name in self._names:
            raise ArchiveError(f"duplicate archive member {entry.name!r}")
        self._names.add(name)
        self._entry, self._fed = entry, 0
        return _entry_header(entry)

    def entry_data(self, data: bytes) -> bytes:
        entry = self._entry
        if entry is None:
            raise ArchiveError("entry_data() outside an entry")
        self._fed += len(data)
        if self._fed > entry.size:
            raise ArchiveError(f"{entry.name!r} grew past its {entry.size} bytes")
        return data

    def end_entry(self) -> bytes:
        entry = self._entry
        if entry is None:
            raise ArchiveError("end_entry() outside an entry")
        if self._fed != entry.size:
            raise ArchiveError(f"{entry.name!r}: {self._fed} bytes fed, {entry.size} announced")
        self._entry = None
        return bytes(_padding(entry.size))

    def finish(self) -> bytes:
        if self._entry is not None or self._finished:
            raise ArchiveError("finish() while an entry is open or twice")
        self._finished = True
        return _END_OF_ARCHIVE


def plan_tar_size(entries: Iterable[TarEntry]) -> int:
    """The exact number of bytes `TarWriter` emits for `entries`."""
    total = len(_END_OF_ARCHIVE)
    for entry in entries:
        total += _entry_header_size(entry) + entry.size + _padding(entry.size)
    return total
