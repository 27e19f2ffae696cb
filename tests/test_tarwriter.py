"""TarWriter and plan_tar_size, checked against stdlib tarfile, GNU tar and bsdtar."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from asgi_xfer.protocol.tarwriter import ArchiveError, TarEntry, TarWriter, plan_tar_size

MTIME = 1_700_000_000
SEGMENTS = ["a", "dir", "ünïcødé", "日本語", "sp ace", "x" * 60, "y" * 99, "z" * 140]


def write_tar(entries: list[TarEntry], datas: list[bytes], pieces: int = 1) -> bytes:
    writer, out = TarWriter(), []
    for entry, data in zip(entries, datas, strict=True):
        out.append(writer.start_entry(entry))
        step = max(1, -(-len(data) // pieces))
        out += [writer.entry_data(data[i : i + step]) for i in range(0, len(data), step)]
        out.append(writer.end_entry())
    out.append(writer.finish())
    return b"".join(out)


def random_set(rng: random.Random, count: int) -> tuple[list[TarEntry], list[bytes]]:
    entries, datas = [], []
    for i in range(count):
        name = "/".join(rng.choice(SEGMENTS) for _ in range(rng.randrange(1, 4))) + f".{i}"
        if rng.random() < 0.15:
            entries.append(TarEntry(name, 0, MTIME, mode=0o750, is_dir=True))
            datas.append(b"")
            continue
        data = rng.randbytes(rng.choice([0, 1, 511, 512, 513, rng.randrange(2, 5000)]))
        entries.append(TarEntry(name, len(data), MTIME + i + 0.5, mode=rng.choice([0o644, 0o600, 0o755])))
        datas.append(data)
    return entries, datas


def check_readback(blob: bytes, entries: list[TarEntry], datas: list[bytes]) -> None:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == [e.name.rstrip("/") for e in entries]
        for member, entry, data in zip(members, entries, datas, strict=True):
            assert member.isdir() == entry.is_dir
            assert member.mtime == int(entry.mtime)
            if entry.is_dir:
                assert member.mode == entry.mode | (entry.mode & 0o444) >> 2
            else:
                assert member.mode == entry.mode
                reader = tf.extractfile(member)
                assert reader is not None
                assert reader.read() == data


@pytest.mark.parametrize("seed", range(20))
def test_roundtrip_and_planned_size(seed: int) -> None:
    entries, datas = random_set(random.Random(seed), 30)
    blob = write_tar(entries, datas)
    assert len(blob) == plan_tar_size(entries)
    check_readback(blob, entries, datas)


def test_pieces_do_not_change_the_archive() -> None:
    entries, datas = random_set(random.Random(50), 10)
    whole = write_tar(entries, datas)
    for pieces in (2, 3, 7, 10_000):
        assert write_tar(entries, datas, pieces) == whole


def test_data_is_not_copied() -> None:
    writer, data = TarWriter(), b"x" * 1000
    writer.start_entry(TarEntry("f", 1000, MTIME))
    assert writer.entry_data(data) is data


def ustar_oracle(name: str, size: int, mode: int, is_dir: bool) -> bytes | None:
    """tarfile's own ustar header for the member, or None if ustar cannot hold it."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, MTIME, mode
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.uname = info.gname = ""
    try:
        header = info.tobuf(tarfile.USTAR_FORMAT, encoding="ascii", errors="strict")
    except ValueError:
        return None
    # tarfile may split a directory at its own trailing '/', leaving the name
    # field empty; we take that as "does not fit" and write pax instead.
    return None if header[0] == 0 else header


@pytest.mark.parametrize("seed", range(5))
def test_ustar_header_equals_tarfiles(seed: int) -> None:
    """Where tarfile can write a plain ustar header, ours is the same 512 bytes;
    where it cannot (too long, unsplittable, not ASCII), ours adds a pax header."""
    rng = random.Random(seed)
    for _ in range(300):
        segments = [rng.choice(["a", "bb", "é", "c" * rng.randrange(1, 120)]) for _ in range(rng.randrange(1, 6))]
        name, is_dir = "/".join(segments), rng.random() < 0.2
        size = 0 if is_dir else rng.randrange(0, 10_000)
        header = TarWriter().start_entry(TarEntry(name, size, MTIME, mode=0o755, is_dir=is_dir))
        expected = ustar_oracle(name, size, 0o755, is_dir)
        if expected is None:
            assert len(header) > 512 and header[156:157] == b"x"
        else:
            assert header == expected


def test_large_size_uses_pax(tmp_path: Path) -> None:
    """8 GiB + 1 does not fit 11 octal digits: a pax "size" record carries it.
    Streamed through the writer, written as a sparse file, read back."""
    size, chunk = 8 * 2**30 + 1, bytes(1 << 20)
    entries = [TarEntry("huge.bin", size, MTIME), TarEntry("after.txt", 5, MTIME)]
    writer, path = TarWriter(), tmp_path / "huge.tar"
    with path.open("wb") as out:
        out.write(writer.start_entry(entries[0]))
        fed = 0
        while fed < size:
            piece = chunk[: size - fed]
            assert writer.entry_data(piece) is piece
            fed += len(piece)
        out.seek(fed, io.SEEK_CUR)  # a hole: nothing of the data is stored
        out.write(writer.end_entry())
        for part in (writer.start_entry(entries[1]), writer.entry_data(b"hello"), writer.end_entry(), writer.finish()):
            out.write(part)
    assert path.stat().st_size == plan_tar_size(entries)
    with tarfile.open(path) as tf:
        assert [(m.name, m.size) for m in tf.getmembers()] == [("huge.bin", size), ("after.txt", 5)]
        reader = tf.extractfile("after.txt")
        assert reader is not None and reader.read() == b"hello"
    for tool in ("tar", "bsdtar"):
        if shutil.which(tool):
            rows = [line.split() for line in run([tool, "-tvf", str(path)]).splitlines()]
            sizes = [int(row[2] if tool == "tar" else row[4]) for row in rows]
            assert [(s, row[-1]) for s, row in zip(sizes, rows, strict=True)] == [(size, "huge.bin"), (5, "after.txt")]


@pytest.mark.parametrize("name", ["", "/abs", "../up", "a/../b", "a//b", "./a", "nul\x00", "file/", "bad\udcff"])
def test_bad_names_refused(name: str) -> None:
    with pytest.raises(ArchiveError):
        TarEntry(name, 0, MTIME)


def test_wrong_byte_count_raises() -> None:
    short = TarWriter()
    short.start_entry(TarEntry("f", 10, MTIME))
    short.entry_data(b"123456789")
    with pytest.raises(ArchiveError, match="9 bytes fed, 10 announced"):
        short.end_entry()
    long = TarWriter()
    long.start_entry(TarEntry("f", 10, MTIME))
    with pytest.raises(ArchiveError, match="grew past"):
        long.entry_data(b"12345678901")


def test_calls_out_of_order_and_duplicates_raise() -> None:
    writer = TarWriter()
    with pytest.raises(ArchiveError):
        writer.entry_data(b"")
    with pytest.raises(ArchiveError):
        writer.end_entry()
    writer.start_entry(TarEntry("d", 0, MTIME, is_dir=True))
    with pytest.raises(ArchiveError):
        writer.finish()
    writer.end_entry()
    with pytest.raises(ArchiveError, match="duplicate"):
        writer.start_entry(TarEntry("d/", 0, MTIME, is_dir=True))
    assert writer.finish() == bytes(1024)
    with pytest.raises(ArchiveError):
        writer.start_entry(TarEntry("e", 0, MTIME))


def test_empty_archive() -> None:
    blob = write_tar([], [])
    assert len(blob) == plan_tar_size([]) == 1024
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        assert tf.getmembers() == []


def run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("tool", ["tar", "bsdtar"])
def test_external_tools_extract(tool: str, tmp_path: Path) -> None:
    if not shutil.which(tool):
        pytest.skip(f"{tool} not installed")
    entries, datas = random_set(random.Random(60), 40)
    archive = tmp_path / "mixed.tar"
    archive.write_bytes(write_tar(entries, datas))
    target = tmp_path / "out"
    target.mkdir()
    run([tool, "-xf", str(archive)], cwd=target)
    for entry, data in zip(entries, datas, strict=True):
        path = target / entry.name
        if entry.is_dir:
            assert path.is_dir()
        else:
            assert path.read_bytes() == data
            assert int(path.stat().st_mtime) == int(entry.mtime)
