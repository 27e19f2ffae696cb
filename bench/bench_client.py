"""Client benchmark: `asgi-xfer get/put` against curl and aria2c, same server, same run.

Usage (from the repository root):

    .venv/bin/python bench/bench_client.py --size-mib 1024
    .venv/bin/python bench/bench_client.py --size-mib 256 --reps 1     # quick

One big file is served by our server (`asgi-xfer serve --no-auth`, one
worker) on 127.0.0.1. Each repetition runs every contender once, in a
rotating order, writing to a fresh file under the same directory; the table
shows the best wall-clock time per contender (the least disturbed sample on
a shared machine), MB/s (10^6 bytes/s) and the ratio to its peer:

    get -j1  vs  curl -o                     target ≥ 0.8×
    get -j8  vs  aria2c -x 8 -s 8            target ≥ 1.0×
    put -j4  vs  curl -T (one PUT /files)    reported

Every download is checked byte for byte (size and sha256 once per contender)
so a fast wrong answer cannot win. Times include process start-up, as a
user sees them. Uploads stamp the file's first bytes per run so the server's
instant upload (same sha256 already held) never kicks in.

Owns only the run order and the table; the server comes from servers.py,
the file from fixtures.py.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fixtures
import servers

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work" / "client"
ASGI_XFER = str(servers.VENV_BIN / "asgi-xfer")
RUN_TIMEOUT_S = 600
HASH_READ_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Contender:
    name: str
    kind: str  # "get" or "put"
    build: Callable[[str, Path], list[str]]  # (url, local path) -> argv
    peer: str | None = None  # the contender this one is compared against
    target: float | None = None  # the ratio it should reach


def contenders() -> list[Contender]:
    aria2_flags = ["-x", "8", "-s", "8", "-k", "1M", "--file-allocation=none", "--allow-overwrite=true",
                   "--auto-file-renaming=false", "-q", "--console-log-level=error"]
    return [
        Contender("curl -o", "get", lambda url, out: ["curl", "-sSf", "-o", str(out), url]),
        Contender("asgi-xfer get -j1", "get", lambda url, out: [ASGI_XFER, "get", url, "-o", str(out), "-j", "1"],
                  peer="curl -o", target=0.8),
        Contender("aria2c -x8 -s8", "get",
                  lambda url, out: ["aria2c", *aria2_flags, "-d", str(out.parent), "-o", out.name, url]),
        Contender("asgi-xfer get -j8", "get", lambda url, out: [ASGI_XFER, "get", url, "-o", str(out), "-j", "8"],
                  peer="aria2c -x8 -s8", target=1.0),
        Contender("curl -T", "put", lambda url, src: ["curl", "-sSf", "-o", "/dev/null", "-T", str(src), url]),
        Contender("asgi-xfer put -j4", "put", lambda url, src: [ASGI_XFER, "put", str(src), url, "-j", "4"],
                  peer="curl -T"),
    ]


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_READ_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()


def time_command(argv: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    return elapsed


def stamp(path: Path, run: int) -> None:
    """Make the upload source unique per run (8 bytes at offset 0)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, (run + 1).to_bytes(8, "big"), 0)
    finally:
        os.close(fd)


def run_one(c: Contender, base_url: str, big: str, root: Path, scratch: Path, upload_src: Path,
            run: int, expected: str, verified: set[str]) -> float:
    if c.kind == "get":
        out = scratch / f"get-{run}.bin"
        elapsed = time_command(c.build(f"{base_url}/files/{big}", out))
        if c.name not in verified:
            if out.stat().st_size != (root / big).stat().st_size or sha256_of(out) != expected:
                raise SystemExit(f"{c.name}: the download differs from the served file")
            verified.add(c.name)
        out.unlink()
        return elapsed
    stamp(upload_src, run * 16 + len(verified))
    remote = f"bench-up/{c.name.replace(' ', '_')}-{run}.bin"
    elapsed = time_command(c.build(f"{base_url}/files/{remote}", upload_src))
    stored = root / remote
    if stored.stat().st_size != upload_src.stat().st_size:
        raise SystemExit(f"{c.name}: the upload has the wrong size")
    stored.unlink()
    return elapsed


def format_table(best: dict[str, float], size_bytes: int, cs: list[Contender]) -> str:
    lines = ["| contender | best s | MB/s | ratio to peer | target |", "|---|---:|---:|---:|---|"]
    for c in cs:
        mbps = size_bytes / best[c.name] / 1e6
        ratio, target = "", ""
        if c.peer:
            value = best[c.peer] / best[c.name]
            ratio = f"{value:.2f}× {c.peer}"
            if c.target is not None:
                target = f"≥ {c.target:.1f}× {'met' if value >= c.target else 'MISSED'}"
        lines.append(f"| {c.name} | {best[c.name]:.2f} | {mbps:.0f} | {ratio} | {target} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=["get", "put"], help="run only downloads or only uploads")
    args = parser.parse_args()
    for tool in ("curl", "aria2c"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (run .ci/install-tools.sh)")
    cs = [c for c in contenders() if args.only in (None, c.kind)]
    root = WORK_DIR / "root"
    root.mkdir(parents=True, exist_ok=True)
    big = fixtures.write_big_file(root, args.size_mib)
    size_bytes = (root / big).stat().st_size
    expected = sha256_of(root / big)  # also warms the page cache
    with tempfile.TemporaryDirectory(dir=WORK_DIR, prefix="scratch-") as tmp:
        scratch = Path(tmp)
        upload_src = scratch / "upload-src.bin"
        shutil.copyfile(root / big, upload_src)
        samples: dict[str, list[float]] = {c.name: [] for c in cs}
        verified: set[str] = set()
        with servers.run_server(servers.SERVERS["ours"], root, big) as server:
            for run in range(args.reps):
                order = cs[run % len(cs):] + cs[:run % len(cs)]
                for c in order:
                    elapsed = run_one(c, server.base_url, big, root, scratch, upload_src, run, expected, verified)
                    samples[c.name].append(elapsed)
                    print(f"  rep {run + 1} {c.name}: {elapsed:.2f} s", file=sys.stderr)
    best = {name: min(times) for name, times in samples.items()}
    startup = min(time_command([ASGI_XFER, "get", "--help"]) for _ in range(3))
    print(f"\n{args.size_mib} MiB file, best of {args.reps}, server: asgi-xfer serve (1 worker), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    print(format_table(best, size_bytes, cs))
    print(f"\nasgi-xfer start-up (interpreter + imports, `get --help`): {startup:.2f} s, included above.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
