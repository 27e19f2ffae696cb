"""ZipWriter and plan_stored_zip, checked against readers we did not write:
stdlib zipfile, unzip, 7-Zip, libarchive (bsdtar) and Java's ZipInputStream."""

from __future__ import annotations

import io
import random
import shutil
import stat
import struct
import subprocess
import time
import zipfile
import zlib
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path

import pytest

from asgi_xfer.protocol.zipwriter import ArchiveError, ZipEntry, ZipLayout, ZipWriter, plan_stored_zip

MTIME = 1_700_000_000.0
NAMES = ["a.txt", "dir/b.bin", "ünïcødé/日本語.txt", "sp ace/x", "emoji/🦆.dat", "deep/er/still/f"]


def crc_of(data: bytes) -> int:
    return zlib.crc32(data)


def write_zip(
    entries: list[ZipEntry],
    datas: list[bytes],
    writer: ZipWriter | None = None,
    split: Callable[[bytes], list[bytes]] = lambda d: [d],
) -> tuple[bytes, ZipWriter, list[tuple[int, int]]]:
    """The archive, its writer, and each entry's (header offset, data offset)."""
    writer = writer or ZipWriter()
    out, offsets = [], []
    for entry, data in zip(entries, datas, strict=True):
        start = writer.offset
        out.append(writer.start_entry(entry))
        offsets.append((start, writer.offset))
        out += [writer.entry_data(piece) for piece in split(data)]
        out.append(writer.end_entry())
    out.append(writer.finish())
    blob = b"".join(out)
    assert writer.offset == len(blob)
    return blob, writer, offsets


def random_set(rng: random.Random, count: int) -> tuple[list[ZipEntry], list[bytes]]:
    entries, datas = [], []
    for i in range(count):
        name = f"{rng.choice(NAMES)}.{i}"
        if rng.random() < 0.15:
            entries.append(ZipEntry(name, 0, MTIME, is_dir=True, mode=0o750))
            datas.append(b"")
            continue
        data = rng.randbytes(rng.choice([0, 1, rng.randrange(2, 3000)]))
        crc = crc_of(data) if rng.random() < 0.5 else None
        mtime = rng.choice([0.0, 315_532_800.0, MTIME + rng.random(), 5e9])
        entries.append(ZipEntry(name, len(data), mtime, crc32=crc, mode=rng.choice([0o644, 0o600, 0o755])))
        datas.append(data)
    return entries, datas


def check_readback(blob: bytes, entries: list[ZipEntry], datas: list[bytes]) -> None:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        infos = zf.infolist()
        assert [i.filename for i in infos] == [e.name + "/" * e.is_dir for e in entries]
        for info, entry, data in zip(infos, entries, datas, strict=True):
            assert zf.read(info) == data
            assert info.is_dir() == entry.is_dir
            assert bool(info.flag_bits & 0x800) == (not info.filename.isascii())
            kind = stat.S_IFDIR if entry.is_dir else stat.S_IFREG
            assert stat.S_IFMT(info.external_attr >> 16) == kind
            if not entry.is_dir:
                assert info.external_attr >> 16 & 0o7777 == entry.mode


def test_roundtrip_stored_and_deflated() -> None:
    entries, datas = random_set(random.Random(1), 60)
    for compress in (False, True):
        blob, writer, _ = write_zip(entries, datas, ZipWriter(compress=compress))
        check_readback(blob, entries, datas)
        assert writer.crc32s == [crc_of(d) for d in datas]
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            for info, data in zip(zf.infolist(), datas, strict=True):
                deflated = compress and len(data) > 0
                assert info.compress_type == (zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED)


def test_deflate_compresses() -> None:
    data = b"asgi_xfer " * 100_000
    entry = ZipEntry("big.txt", len(data), MTIME)
    blob, _, _ = write_zip([entry], [data], ZipWriter(compress=True, level=9))
    assert len(blob) < len(data) // 50
    check_readback(blob, [entry], [data])


def test_descriptor_only_when_crc_unknown() -> None:
    data = b"payload"
    entries = [
        ZipEntry("known", 7, MTIME, crc32=crc_of(data)),
        ZipEntry("unknown", 7, MTIME),
        ZipEntry("empty", 0, MTIME),
        ZipEntry("d", 0, MTIME, is_dir=True),
    ]
    blob, _, offsets = write_zip(entries, [data, data, b"", b""])
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert [bool(i.flag_bits & 0x08) for i in zf.infolist()] == [False, True, False, False]
    # APPNOTE 4.3.7: CRC-32 at byte 14 and the sizes at 18 and 22 of the local
    # header; zero there when flag bit 3 defers them to the descriptor.
    fields = [struct.unpack_from("<III", blob, start + 14) for start, _ in offsets]
    assert fields == [(crc_of(data), 7, 7), (0, 0, 0), (0, 0, 0), (0, 0, 0)]


def split_at(cut: int) -> Callable[[bytes], list[bytes]]:
    return lambda data: [data[:cut], data[cut:]]


@pytest.mark.parametrize("compress", [False, True])
def test_every_split_gives_a_valid_archive(compress: bool) -> None:
    data = random.Random(2).randbytes(40)
    entry = ZipEntry("f", len(data), MTIME)
    whole, _, _ = write_zip([entry], [data], ZipWriter(compress=compress))
    for cut in range(len(data) + 1):
        blob, _, _ = write_zip([entry], [data], ZipWriter(compress=compress), split_at(cut))
        check_readback(blob, [entry], [data])
        if not compress:
            assert blob == whole
    bytewise, _, _ = write_zip([entry], [data], ZipWriter(compress=compress), lambda d: [bytes([b]) for b in d])
    check_readback(bytewise, [entry], [data])


def test_stored_data_is_not_copied() -> None:
    writer = ZipWriter()
    data = b"x" * 1000
    writer.start_entry(ZipEntry("f", 1000, MTIME))
    assert writer.entry_data(data) is data


@pytest.mark.parametrize(
    ("mtime", "expected"),
    [
        (0.0, (1980, 1, 1, 0, 0, 0)),  # before 1980: clamped to the DOS epoch
        (-1e12, (1980, 1, 1, 0, 0, 0)),
        (1e13, (2107, 12, 31, 23, 59, 58)),  # after 2107: clamped to the end
        (MTIME + 1.5, (*time.gmtime(MTIME + 1.5)[:5], time.gmtime(MTIME)[5] // 2 * 2)),  # UTC
    ],
)
def test_dos_timestamps(mtime: float, expected: tuple[int, ...]) -> None:
    blob, _, _ = write_zip([ZipEntry("f", 0, mtime)], [b""])
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.infolist()[0].date_time == expected


def test_directory_entries_and_modes() -> None:
    entries = [ZipEntry("d", 0, MTIME, is_dir=True), ZipEntry("e/", 0, MTIME, is_dir=True, mode=0o700)]
    blob, _, _ = write_zip(entries, [b"", b""])
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        modes = [(i.filename, i.external_attr >> 16, i.external_attr & 0x10) for i in zf.infolist()]
    assert modes == [("d/", stat.S_IFDIR | 0o755, 0x10), ("e/", stat.S_IFDIR | 0o700, 0x10)]


@pytest.mark.parametrize("name", ["", "/abs", "../up", "a/../b", "a//b", "./a", "nul\x00", "file/", "bad\udcff"])
def test_bad_names_refused(name: str) -> None:
    with pytest.raises(ArchiveError):
        ZipEntry(name, 0, MTIME)


def test_duplicate_names_refused() -> None:
    entries = [ZipEntry("d", 0, MTIME, is_dir=True), ZipEntry("d/", 0, MTIME, is_dir=True)]
    with pytest.raises(ArchiveError, match="duplicate"):
        plan_stored_zip(entries)
    writer = ZipWriter()
    writer.start_entry(entries[0])
    writer.end_entry()
    with pytest.raises(ArchiveError, match="duplicate"):
        writer.start_entry(entries[1])


@pytest.mark.parametrize("compress", [False, True])
def test_wrong_byte_count_raises(compress: bool) -> None:
    short = ZipWriter(compress=compress)
    short.start_entry(ZipEntry("f", 10, MTIME))
    short.entry_data(b"123456789")
    with pytest.raises(ArchiveError, match="9 bytes fed, 10 announced"):
        short.end_entry()
    long = ZipWriter(compress=compress)
    long.start_entry(ZipEntry("f", 10, MTIME))
    long.entry_data(b"12345")
    with pytest.raises(ArchiveError, match="grew past"):
        long.entry_data(b"123456")


def test_crc_mismatch_raises() -> None:
    writer = ZipWriter()
    writer.start_entry(ZipEntry("f", 3, MTIME, crc32=crc_of(b"abc")))
    writer.entry_data(b"abd")
    with pytest.raises(ArchiveError, match="crc32"):
        writer.end_entry()


def test_calls_out_of_order_raise() -> None:
    writer = ZipWriter()
    with pytest.raises(ArchiveError):
        writer.entry_data(b"")
    with pytest.raises(ArchiveError):
        writer.end_entry()
    writer.start_entry(ZipEntry("f", 0, MTIME))
    with pytest.raises(ArchiveError):
        writer.start_entry(ZipEntry("g", 0, MTIME))
    with pytest.raises(ArchiveError):
        writer.finish()
    writer.end_entry()
    writer.finish()
    with pytest.raises(ArchiveError):
        writer.finish()


@pytest.mark.parametrize("seed", range(30))
def test_plan_matches_writer(seed: int) -> None:
    rng = random.Random(seed)
    entries, datas = random_set(rng, rng.randrange(0, 40))
    blob, writer, offsets = write_zip(entries, datas)
    layout = plan_stored_zip(entries)
    assert layout.size == len(blob)
    assert [(layout.header_offset(i), layout.data_offset(i)) for i in range(len(entries))] == offsets
    for i, (start, data_start) in enumerate(offsets):
        assert layout.local_header(i) == blob[start:data_start]
        end = data_start + entries[i].size
        assert layout.data_descriptor(i, writer.crc32s[i]) == blob[end : end + len(layout.data_descriptor(i, 0))]
    assert layout.central_directory(writer.crc32s) == blob[layout.central_directory_offset :]


def assemble(layout: ZipLayout, datas: list[bytes], crcs: list[int | None], start: int, stop: int) -> bytes:
    """Archive bytes [start, stop) built from the layout alone, as a Range response would."""
    out = []
    for piece in layout.pieces(start, stop):
        if piece.kind == "header":
            part = layout.local_header(piece.index)
        elif piece.kind == "data":
            part = datas[piece.index]
        elif piece.kind == "descriptor":
            crc = crcs[piece.index]
            assert crc is not None
            part = layout.data_descriptor(piece.index, crc)
        else:
            part = layout.central_directory(crcs)
        out.append(part[piece.start : piece.stop])
    return b"".join(out)


@pytest.mark.parametrize("seed", range(10))
def test_ranges_rebuilt_from_layout(seed: int) -> None:
    rng = random.Random(100 + seed)
    entries, datas = random_set(rng, rng.randrange(1, 25))
    blob, writer, _ = write_zip(entries, datas)
    layout = plan_stored_zip(entries)
    # A cache may keep only the CRCs that were not known up front.
    crcs = [None if e.crc32 is not None else c for e, c in zip(entries, writer.crc32s, strict=True)]
    bounds = [0, len(blob), layout.central_directory_offset] + [layout.data_offset(i) for i in range(len(entries))]
    for _ in range(200):
        start = rng.choice([rng.randrange(len(blob) + 1), rng.choice(bounds)])
        stop = rng.choice([start, min(len(blob), start + rng.randrange(1, 300)), rng.randrange(start, len(blob) + 1)])
        assert assemble(layout, datas, crcs, start, stop) == blob[start:stop]
    assert assemble(layout, datas, crcs, 0, len(blob)) == blob
    with pytest.raises(ValueError):
        layout.pieces(0, len(blob) + 1)


def test_central_directory_needs_unknown_crcs() -> None:
    layout = plan_stored_zip([ZipEntry("a", 1, MTIME, crc32=crc_of(b"a")), ZipEntry("b", 1, MTIME)])
    with pytest.raises(ArchiveError, match="'b' is needed"):
        layout.central_directory()
    with pytest.raises(ArchiveError, match="differs"):
        layout.central_directory([crc_of(b"x"), crc_of(b"b")])
    assert layout.central_directory([None, crc_of(b"b")]) == layout.central_directory([crc_of(b"a"), crc_of(b"b")])


def test_empty_archive() -> None:
    blob, _, _ = write_zip([], [])
    assert plan_stored_zip([]).size == len(blob) == 22
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.namelist() == []


# ---- zip64 -------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_entries_zip() -> tuple[bytes, list[ZipEntry]]:
    """70,000 entries: more than the 16-bit count holds, so zip64 end records."""
    entries = [ZipEntry(f"d{i // 1000}/f{i}", 1, MTIME, crc32=crc_of(b"x") if i % 2 else None) for i in range(70_000)]
    blob, _, _ = write_zip(entries, [b"x"] * len(entries))
    return blob, entries


def test_zip64_by_entry_count(many_entries_zip: tuple[bytes, list[ZipEntry]]) -> None:
    blob, entries = many_entries_zip
    assert plan_stored_zip(entries).size == len(blob)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert len(zf.infolist()) == 70_000
        assert zf.read("d69/f69999") == b"x"
    assert struct.unpack_from("<IHHHH", blob, len(blob) - 22) == (0x06054B50, 0, 0, 0xFFFF, 0xFFFF)


class SparseFile:
    """A read-only seekable file: recorded (offset, bytes) parts with `fill`
    supplying every byte between them; nothing of the gaps is stored."""

    def __init__(self, parts: list[tuple[int, bytes]], size: int, fill: Callable[[int, int], bytes]) -> None:
        self.parts = [p for p in parts if p[1]]
        self.starts = [start for start, _ in self.parts]
        self.size, self.fill, self.pos = size, fill, 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = [offset, self.pos + offset, self.size + offset][whence]
        return self.pos

    def read(self, n: int = -1) -> bytes:
        stop = self.size if n < 0 else min(self.size, self.pos + n)
        out = []
        while self.pos < stop:
            i = bisect_right(self.starts, self.pos) - 1
            start, data = self.parts[i] if i >= 0 else (0, b"")
            if start <= self.pos < start + len(data):
                chunk = data[self.pos - start : stop - start]
            else:
                gap_end = self.starts[i + 1] if i + 1 < len(self.starts) else self.size
                chunk = self.fill(self.pos, min(stop, gap_end) - self.pos)
            out.append(chunk)
            self.pos += len(chunk)
        return b"".join(out)


BLOCK = random.Random(3).randbytes(1 << 20)
BIG_SIZE = (1 << 32) + (3 << 20)  # past 0xFFFFFFFF: zip64 sizes, and zip64 offsets after it


def test_zip64_big_entry_streamed() -> None:
    """4 GiB + 3 MiB streamed through the writer without being kept: zip64
    sizes, a 24-byte descriptor, a zip64 offset for the entry after it and a
    zip64 central directory offset, all read back by zipfile."""
    entries = [ZipEntry("big.bin", BIG_SIZE, MTIME), ZipEntry("after.txt", 5, MTIME)]
    writer, parts = ZipWriter(), []
    parts.append((writer.offset, writer.start_entry(entries[0])))
    data_start = writer.offset
    for _ in range(BIG_SIZE // len(BLOCK)):
        assert writer.entry_data(BLOCK) is BLOCK
    parts.append((writer.offset, writer.end_entry()))
    parts.append((writer.offset, writer.start_entry(entries[1]) + writer.entry_data(b"hello") + writer.end_entry()))
    parts.append((writer.offset, writer.finish()))

    def fill(pos: int, n: int) -> bytes:
        at = (pos - data_start) % len(BLOCK)
        return (BLOCK[at:] + BLOCK)[:n] if n <= len(BLOCK) else BLOCK[at:]

    sparse = SparseFile(parts, writer.offset, fill)
    with zipfile.ZipFile(sparse) as zf:
        big, after = zf.infolist()
        assert (big.file_size, big.compress_size) == (BIG_SIZE, BIG_SIZE)
        assert writer.crc32s[0] == big.CRC
        assert after.header_offset > 0xFFFFFFFF
        assert zf.read("after.txt") == b"hello"
        with zf.open("big.bin") as member:
            assert member.read(len(BLOCK) + 10) == BLOCK + BLOCK[:10]
    layout = plan_stored_zip(entries)
    assert layout.size == writer.offset
    assert layout.central_directory(writer.crc32s) == parts[-1][1]
    assert layout.data_descriptor(0, writer.crc32s[0]) == parts[1][1]


def write_sparse_zip(path: Path, layout: ZipLayout, crcs: list[int | None]) -> None:
    """The archive on disk with every data region a hole: zeros, no space used."""
    with path.open("wb") as out:
        for i in range(len(layout.entries)):
            out.seek(layout.header_offset(i))
            out.write(layout.local_header(i))
            out.seek(layout.data_offset(i) + layout.entries[i].size)
            out.write(layout.data_descriptor(i, crcs[i] or 0))
        out.seek(layout.central_directory_offset)
        out.write(layout.central_directory(crcs))


@pytest.fixture(scope="module")
def zeros_crc() -> int:
    crc, zeros = 0, bytes(len(BLOCK))
    for _ in range(BIG_SIZE // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    return crc


def test_zip64_known_crc_local_header(tmp_path: Path, zeros_crc: int) -> None:
    """A STORED zip64 entry with its CRC known: sizes in the local zip64 extra,
    no descriptor; read through by tools, one of them streaming."""
    entries = [ZipEntry("zeros.bin", BIG_SIZE, MTIME, crc32=zeros_crc), ZipEntry("z/", 0, MTIME, is_dir=True)]
    layout = plan_stored_zip(entries)
    path = tmp_path / "big.zip"
    write_sparse_zip(path, layout, [None, None])
    assert path.stat().st_size == layout.size
    with zipfile.ZipFile(path) as zf:
        assert [(i.filename, i.file_size) for i in zf.infolist()] == [("zeros.bin", BIG_SIZE), ("z/", 0)]
        with zf.open("zeros.bin") as member:
            assert member.read(10) == bytes(10)
    if shutil.which("bsdtar"):
        # Through a pipe, libarchive cannot seek to the central directory and
        # reads the local headers (and skips the data) as a streaming reader.
        listing = run(["sh", "-c", 'cat "$1" | bsdtar -tvf -', "sh", str(path)])
        rows = [line.split() for line in listing.splitlines()]
        assert [(int(row[4]), row[-1]) for row in rows] == [(BIG_SIZE, "zeros.bin"), (0, "z/")]


# ---- external readers -------------------------------------------------------


def run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def mixed_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ZipEntry]]:
    entries, datas = random_set(random.Random(7), 40)
    blob, _, _ = write_zip(entries, datas, ZipWriter(compress=True))
    path = tmp_path_factory.mktemp("zip") / "mixed.zip"
    path.write_bytes(blob)
    return path, entries


@pytest.mark.parametrize(
    "argv",
    [["unzip", "-t"], ["7z", "t"], ["bsdtar", "-tf"]],
    ids=["unzip", "7z", "bsdtar"],
)
def test_external_tools_accept(argv: list[str], mixed_zip: tuple[Path, list[ZipEntry]], tmp_path: Path) -> None:
    if not shutil.which(argv[0]):
        pytest.skip(f"{argv[0]} not installed")
    path, entries = mixed_zip
    out = run([*argv, str(path)])
    if argv[0] == "bsdtar":
        assert out.splitlines() == [e.name + "/" * e.is_dir for e in entries]
    stored = tmp_path / "stored.zip"
    stored.write_bytes(write_zip(*random_set(random.Random(8), 40))[0])
    run([*argv, str(stored)])


def test_external_tools_zip64_count(many_entries_zip: tuple[bytes, list[ZipEntry]], tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    path.write_bytes(many_entries_zip[0])
    for argv in (["unzip", "-tq"], ["7z", "t"]):
        if shutil.which(argv[0]):
            run([*argv, str(path)])


JAVA_READER = """
import java.io.*;
import java.util.zip.*;
public class ZipIn {
    public static void main(String[] args) throws Exception {
        for (String path : args) {
            try (ZipInputStream in = new ZipInputStream(new FileInputStream(path))) {
                byte[] buf = new byte[65536];
                for (ZipEntry e; (e = in.getNextEntry()) != null; ) {
                    CRC32 crc = new CRC32();
                    for (int n; (n = in.read(buf)) > 0; ) crc.update(buf, 0, n);
                    System.out.println(e.getName() + " " + Long.toHexString(crc.getValue()));
                }
            } catch (ZipException exc) {
                System.out.println("error " + exc.getMessage());
            }
        }
    }
}
"""


@pytest.mark.skipif(not shutil.which("java"), reason="java not installed")
def test_java_zipinputstream(tmp_path: Path) -> None:
    """The reason for the STORED local-header choice: a streaming reader reads
    STORED entries whose CRC was known up front and DEFLATED entries, and
    refuses a STORED entry that defers its CRC and sizes to a descriptor."""
    rng = random.Random(9)
    datas = [rng.randbytes(n) for n in (0, 1, 5000, 70_000)]
    known = [ZipEntry(f"k{i}", len(d), MTIME, crc32=crc_of(d)) for i, d in enumerate(datas)]
    deflated = [ZipEntry(f"z{i}", len(d), MTIME) for i, d in enumerate(datas)]
    (tmp_path / "known.zip").write_bytes(write_zip(known, datas)[0])
    (tmp_path / "deflated.zip").write_bytes(write_zip(deflated, datas, ZipWriter(compress=True))[0])
    (tmp_path / "deferred.zip").write_bytes(write_zip([ZipEntry("d", 3, MTIME)], [b"abc"])[0])
    (tmp_path / "ZipIn.java").write_text(JAVA_READER)
    names = ["known.zip", "deflated.zip", "deferred.zip"]
    out = run(["java", str(tmp_path / "ZipIn.java"), *(str(tmp_path / n) for n in names)]).splitlines()
    expected = [f"{e.name} {crc_of(d):x}" for e, d in zip(known + deflated, datas + datas, strict=True)]
    assert out[:-1] == expected
    assert out[-1] == "error only DEFLATED entries can have EXT descriptor"
