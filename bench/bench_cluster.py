"""One file through a cluster node vs nginx proxy_pass in front of the same origin.

Starts an origin (`asgi-xfer serve`, the file's owner), a middle node
(`asgi-xfer serve --peer ORIGIN`) and nginx with `proxy_pass` to the same
origin, then fetches the file with curl to /dev/null, in interleaved rounds
over a warm page cache:

- direct: `GET /files/big.bin` from the origin (the ceiling);
- cluster: `GET /cluster/files/big.bin` from the middle node (probe, then relay);
- nginx: `GET /files/big.bin` through nginx;
- cluster zip: `GET /cluster/archive/dump` from the middle node, where
  the middle node and two peers each hold `dump/big.bin` (hard links of
  the one file, so the page cache holds it once), against the same three
  files fetched one after another from their nodes in one curl run
  (issue target >= 0.8x).

Prints MB/s (median), CPU s/GB of the middle process (our node or nginx;
the origin's not counted), the cluster/nginx ratio (issue target >= 0.8x),
and the middle node's peak RSS growth while a slow reader (curl
--limit-rate) takes the whole file (target < 32 MiB). Writes
bench/results/cluster.md. Run: `.venv/bin/python bench/bench_cluster.py
[--size-mib 1024] [--rounds 3] [--slow-rate 200M]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_tree import PeakRssSampler, list_tree_pids, read_cpu_s  # noqa: E402
from servers import PEERS_DIR, VENV_BIN, Launch, RunningServer, ServerSpec, build_ours_argv, run_server  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work" / "cluster"
RESULTS = Path(__file__).resolve().parent / "results" / "cluster.md"
NAME = "big.bin"
MIB = 1 << 20
CURL_TIMEOUT_S = 600
# Cases with no middle process whose CPU the table could show.
NO_MIDDLE = ("direct from the origin", "3 files one after another")


def write_file(root: Path, size: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    path = root / NAME
    if not (path.exists() and path.stat().st_size == size):
        block = os.urandom(MIB)
        with open(path, "wb") as f:
            for i in range(size // MIB):
                f.write(i.to_bytes(8, "big") + block[8:])
    with open(path, "rb", buffering=0) as f:  # warm the page cache
        while f.read(8 * MIB):
            pass
    for node in ("origin", "origin2", "middle"):  # every node's copy for the zip
        copy = WORK / node / "dump" / NAME
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not (copy.exists() and copy.samefile(path)):
            copy.unlink(missing_ok=True)
            os.link(path, copy)


def middle_spec(*peers: str) -> ServerSpec:
    def build(launch: Launch) -> list[str]:
        return [*build_ours_argv(launch), *(a for p in peers for a in ("--peer", p)), "--node-name", "middle"]
    return ServerSpec("middle", VENV_BIN / "asgi-xfer", build, lambda _: "/healthz")


def nginx_spec(upstream: str) -> ServerSpec:
    def build(launch: Launch) -> list[str]:
        template = string.Template((PEERS_DIR / "nginx_proxy.conf.template").read_text())
        conf = launch.workdir / "nginx.conf"
        conf.write_text(template.substitute(
            port=launch.port, workdir=launch.workdir, upstream=upstream,
            user_line="user root;" if os.geteuid() == 0 else "",
        ))
        return ["/usr/sbin/nginx", "-p", str(launch.workdir), "-e", str(launch.workdir / "error.log"), "-c", str(conf)]
    return ServerSpec("nginx", Path("/usr/sbin/nginx"), build, lambda _: "/healthz")


def run_curl(urls: str | list[str], *args: str) -> tuple[int, float]:
    """Bytes and wall seconds for `urls`, one after another in one curl run."""
    cmd = ["curl", "-sS", "--fail", "-w", "%{size_download}\n", *args]
    for url in [urls] if isinstance(urls, str) else urls:
        cmd += ["-o", "/dev/null", url]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=CURL_TIMEOUT_S).stdout
    return sum(int(n) for n in out.split()), time.perf_counter() - start


def measure(server: RunningServer | None, urls: str | list[str]) -> tuple[float, float]:
    """(MB/s, CPU s per GB of `server`'s process tree) of one fetch."""
    pids = list_tree_pids(server.pid) if server else []
    cpu0 = read_cpu_s(pids)
    nbytes, seconds = run_curl(urls)
    return nbytes / seconds / 1e6, (read_cpu_s(pids) - cpu0) / (nbytes / 1e9)


@contextlib.contextmanager
def cluster() -> Iterator[tuple[RunningServer, RunningServer, RunningServer, RunningServer]]:
    ours = ServerSpec("origin", VENV_BIN / "asgi-xfer", build_ours_argv, lambda _: "/healthz")
    with run_server(ours, WORK / "origin", NAME) as origin, run_server(ours, WORK / "origin2", NAME) as origin2:
        upstream = origin.base_url.removeprefix("http://")
        with run_server(middle_spec(origin.base_url, origin2.base_url), WORK / "middle", NAME) as middle, \
                run_server(nginx_spec(upstream), WORK / "origin", NAME) as nginx:
            yield origin, origin2, middle, nginx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-rate", default="200M", help="curl --limit-rate of the slow reader")
    args = parser.parse_args()
    write_file(WORK / "origin", args.size_mib * MIB)
    results: dict[str, list[tuple[float, float]]] = {}
    with cluster() as (origin, origin2, middle, nginx):
        cases: dict[str, tuple[RunningServer | None, str | list[str]]] = {
            "direct from the origin": (None, f"{origin.base_url}/files/{NAME}"),
            "cluster node relay": (middle, f"{middle.base_url}/cluster/files/{NAME}"),
            "nginx proxy_pass": (nginx, f"{nginx.base_url}/files/{NAME}"),
            "cluster zip of 3 nodes": (middle, f"{middle.base_url}/cluster/archive/dump"),
            "3 files one after another": (None, [f"{s.base_url}/files/dump/{NAME}" for s in (middle, origin, origin2)]),
        }
        # First, on a fresh middle node: its growth from start-up state.
        with PeakRssSampler(list_tree_pids(middle.pid)) as rss:
            run_curl(f"{middle.base_url}/cluster/files/{NAME}", "--limit-rate", args.slow_rate)
        for _ in range(args.rounds):
            for label, (server, url) in cases.items():
                results.setdefault(label, []).append(measure(server, url))
    report(results, args, rss.peak_bytes - rss.start_bytes)


def report(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace, rss_growth: int) -> None:
    speed = {label: statistics.median(r[0] for r in runs) for label, runs in results.items()}
    cpu = {label: statistics.median(r[1] for r in runs) for label, runs in results.items()}
    lines = [
        f"{args.size_mib} MiB through one node to curl, warm cache, median of {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs",
        "",
        "| case | MB/s | CPU s/GB (middle) |",
        "|---|---:|---:|",
        *(f"| {label} | {speed[label]:.0f} | {'-' if label in NO_MIDDLE else f'{cpu[label]:.2f}'} |"
          for label in results),
        "",
        f"cluster / nginx: {speed['cluster node relay'] / speed['nginx proxy_pass']:.2f}x (target >= 0.8x); "
        f"cluster / direct: {speed['cluster node relay'] / speed['direct from the origin']:.2f}x",
        f"cluster zip / 3 files one after another: "
        f"{speed['cluster zip of 3 nodes'] / speed['3 files one after another']:.2f}x (target >= 0.8x)",
        f"middle node peak RSS growth, whole file to a reader at {args.slow_rate}B/s: "
        f"{rss_growth / MIB:.1f} MiB (target < 32 MiB)",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
