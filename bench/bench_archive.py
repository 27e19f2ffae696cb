"""Zip of a 2 GiB directory of 100 files: ours vs zipstream-ng vs a plain download.

Measures, in interleaved rounds over a warm page cache, with curl as the
client writing to /dev/null:

- ours: `GET /archive/dir` from `asgi-xfer serve` (a stored zip, exact
  Content-Length, CRCs computed while streaming);
- zipstream-ng: the same directory from `ZipStream.from_path(dir,
  sized=True)` in Starlette's `StreamingResponse` under the same uvicorn
  settings (peers/zipstream_app.py), and zipstream-ng in-process writing
  to /dev/null, its ceiling with no HTTP at all;
- plain: the same 100 files from ours' `GET /files/...`, one curl run with
  keep-alive (sendfile through the pathsend extension); and the same with
  `Range: bytes=0-`, which reads into Python and writes to the socket as
  the archive does, to separate the archive's own cost from sendfile's.

Prints MB/s (median of the rounds), server CPU seconds per GB and the
ratios the issue sets as targets (ours >= 1.0x zipstream-ng, >= 0.8x plain),
and writes bench/results/archive.md. Run: `.venv/bin/python bench/bench_archive.py`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from process_tree import list_tree_pids, read_cpu_s  # noqa: E402
from servers import SERVERS, VENV_BIN, RunningServer, ServerSpec, build_uvicorn_argv, run_server  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work" / "archive"
RESULTS = Path(__file__).resolve().parent / "results" / "archive.md"
DIR_NAME = "dir2g"
FILE_COUNT = 100
TOTAL_BYTES = 2 << 30
MIB = 1 << 20
SEED = 20261121
CURL_TIMEOUT_S = 300


def write_tree(root: Path) -> list[str]:
    """100 files of ~20.5 MiB, random-ish (a seeded MiB stamped per copy, as
    bench/fixtures.py does), made once."""
    directory = root / DIR_NAME
    directory.mkdir(parents=True, exist_ok=True)
    block = random.Random(SEED).randbytes(MIB)
    names = []
    for i in range(FILE_COUNT):
        size = TOTAL_BYTES // FILE_COUNT + (TOTAL_BYTES % FILE_COUNT if i == FILE_COUNT - 1 else 0)
        name = f"{DIR_NAME}/file-{i:03d}.bin"
        names.append(name)
        path = root / name
        if path.exists() and path.stat().st_size == size:
            continue
        with open(path, "wb") as f:
            written = 0
            while written < size:
                piece = (i * 4096 + written // MIB).to_bytes(8, "big") + block[8:]
                written += f.write(piece[: size - written])
    for name in names:  # warm the page cache
        with open(root / name, "rb", buffering=0) as f:
            while f.read(8 * MIB):
                pass
    return names


def run_curl(urls: list[str], *args: str) -> tuple[int, float]:
    """Bytes received and wall seconds for fetching `urls` in one curl run."""
    cmd = ["curl", "-sS", "--fail", "-w", "%{size_download}\n", *args]
    for url in urls:
        cmd += ["-o", "/dev/null", url]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=CURL_TIMEOUT_S).stdout
    return sum(int(n) for n in out.split()), time.perf_counter() - start


def zipstream_in_process(root: Path) -> tuple[int, float]:
    from zipstream import ZipStream

    start = time.perf_counter()
    total = 0
    with open(os.devnull, "wb") as sink:
        for chunk in ZipStream.from_path(str(root / DIR_NAME), sized=True):
            total += sink.write(chunk)
    return total, time.perf_counter() - start


def measure(server: RunningServer | None, fetch: Callable[[], tuple[int, float]]) -> tuple[float, float]:
    """(MB/s, server CPU s per GB) of one run."""
    pids = list_tree_pids(server.pid) if server else [os.getpid()]
    cpu0 = read_cpu_s(pids)
    nbytes, seconds = fetch()
    cpu = read_cpu_s(pids) - cpu0
    return nbytes / seconds / 1e6, cpu / (nbytes / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = write_tree(WORK)
    zipstream_spec = ServerSpec("zipstream-ng", VENV_BIN / "uvicorn", build_uvicorn_argv("zipstream_app:app"), lambda _: "/ready")
    results: dict[str, list[tuple[float, float]]] = {}
    with run_server(SERVERS["ours"], WORK, names[0]) as ours, run_server(zipstream_spec, WORK, names[0]) as peer:
        cases: dict[str, tuple[RunningServer | None, Callable[[], tuple[int, float]]]] = {
            "ours /archive (stored zip)": (ours, lambda: run_curl([f"{ours.base_url}/archive/{DIR_NAME}"])),
            "zipstream-ng in Starlette": (peer, lambda: run_curl([f"{peer.base_url}/archive/{DIR_NAME}"])),
            "zipstream-ng in-process to /dev/null": (None, lambda: zipstream_in_process(WORK)),
            "ours /files (plain, 100 files)": (ours, lambda: run_curl([f"{ours.base_url}/files/{n}" for n in names])),
            # `Range: bytes=0-`: a 206 whose span goes by zerocopysend, the
            # same I/O method the archive uses for file data.
            "ours /files, Range 0- (zero-copy span)": (
                ours, lambda: run_curl([f"{ours.base_url}/files/{n}" for n in names], "-r", "0-")),
        }
        for _ in range(args.rounds):
            for label, (server, fetch) in cases.items():
                results.setdefault(label, []).append(measure(server, fetch))
    report(results, args.rounds)


def report(results: dict[str, list[tuple[float, float]]], rounds: int) -> None:
    from asgi_xfer.protocol.crc32 import FAST

    speed = {label: statistics.median(r[0] for r in runs) for label, runs in results.items()}
    cpu = {label: statistics.median(r[1] for r in runs) for label, runs in results.items()}
    ours = speed["ours /archive (stored zip)"]
    lines = [
        f"zip of {FILE_COUNT} files, {TOTAL_BYTES / 2**30:.0f} GiB, warm cache, median of {rounds} rounds, "
        f"crc32: {'isal' if FAST else 'zlib'}, {os.cpu_count()} CPUs",
        "",
        "| case | MB/s | CPU s/GB (server) |",
        "| --- | ---: | ---: |",
        *(f"| {label} | {speed[label]:.0f} | {cpu[label]:.2f} |" for label in speed),
        "",
        f"ours / zipstream-ng (Starlette): {ours / speed['zipstream-ng in Starlette']:.2f}x (target >= 1.0)",
        f"ours / zipstream-ng (in-process): {ours / speed['zipstream-ng in-process to /dev/null']:.2f}x",
        f"ours / plain download: {ours / speed['ours /files (plain, 100 files)']:.2f}x (target >= 0.8)",
        f"ours / ranged download (zerocopysend): {ours / speed['ours /files, Range 0- (zero-copy span)']:.2f}x",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
