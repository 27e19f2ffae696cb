"""The three download measurements, each against one running server.

Owns the client side: curl for whole-file downloads, wrk for small files,
and the server-side numbers taken around them (CPU seconds from /proc before
and after, peak RSS sampled during). Each function returns a dict of metric
name -> value for one repetition and raises ``MeasurementFailed`` rather
than return a number from a short or failed transfer.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from process_tree import PeakRssSampler, list_tree_pids, read_cpu_s
from servers import RunningServer

MB = 1_000_000  # throughput is reported in decimal MB/s and CPU per decimal GB
GB = 1_000_000_000
MIB = 1024 * 1024
CONCURRENT_DOWNLOADS = 64
WRK_THREADS = 2  # one per core of the benchmark machine
WRK_CONNECTIONS = 64
# Bounds on a single curl: generous for the slowest peer at 1 GiB.
CURL_MAX_TIME_S = 300
CURL_WRITE_OUT = "%{http_code} %{size_download} %{speed_download}"


class MeasurementFailed(Exception):
    """A transfer failed or came up short; the message says how."""


@dataclass(frozen=True)
class Scenario:
    name: str
    tool: str  # the client executable it needs


SINGLE = Scenario("single", "curl")
CONCURRENT = Scenario("concurrent", "curl")
SMALL = Scenario("small", "wrk")
SCENARIOS = {s.name: s for s in (SINGLE, CONCURRENT, SMALL)}


def build_curl_argv(url: str) -> list[str]:
    return ["curl", "-s", "-o", "/dev/null", "--max-time", str(CURL_MAX_TIME_S),
            "-w", CURL_WRITE_OUT, url]


def parse_curl_result(output: str, expected_bytes: int) -> tuple[int, float]:
    """(bytes, bytes/s) from CURL_WRITE_OUT; fails on a non-200 or short body."""
    fields = output.split()
    if len(fields) != 3:
        raise MeasurementFailed(f"curl did not finish (output {output!r})")
    status, size, speed = fields
    if status != "200" or int(size) != expected_bytes:
        raise MeasurementFailed(f"curl got HTTP {status}, {size} of {expected_bytes} bytes")
    return int(size), float(speed)


def measure_single(server: RunningServer, name: str, size_bytes: int) -> dict[str, float]:
    """One curl of the big file: MB/s and server CPU seconds per GB."""
    pids = list_tree_pids(server.pid)
    cpu_before = read_cpu_s(pids)
    result = subprocess.run(build_curl_argv(f"{server.base_url}/files/{name}"),
                            capture_output=True, text=True, timeout=CURL_MAX_TIME_S + 10)
    cpu_after = read_cpu_s(list_tree_pids(server.pid))
    size, speed = parse_curl_result(result.stdout, size_bytes)
    return {
        "single_mb_s": speed / MB,
        "single_cpu_s_per_gb": (cpu_after - cpu_before) / (size / GB),
    }


def measure_concurrent(server: RunningServer, name: str, size_bytes: int) -> dict[str, float]:
    """64 curls at once: aggregate MB/s over wall time and peak server RSS."""
    argv = build_curl_argv(f"{server.base_url}/files/{name}")
    with PeakRssSampler(list_tree_pids(server.pid)) as sampler:
        started = time.monotonic()
        outputs = run_all_at_once([argv] * CONCURRENT_DOWNLOADS)
        wall_s = time.monotonic() - started
    total = sum(parse_curl_result(out, size_bytes)[0] for out in outputs)
    return {
        "concurrent_mb_s": total / wall_s / MB,
        "concurrent_start_rss_mib": sampler.start_bytes / MIB,
        "concurrent_peak_rss_mib": sampler.peak_bytes / MIB,
    }


def run_all_at_once(argvs: list[list[str]]) -> list[str]:
    """Start every command, wait for all; never leaves one running."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for argv in argvs:
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True))
        deadline = time.monotonic() + CURL_MAX_TIME_S + 10
        return [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
                for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def measure_small(server: RunningServer, script: Path, duration_s: int) -> dict[str, float]:
    """wrk over the rotating 4 KiB paths: requests/s; fails on any error."""
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{duration_s}s",
            "-s", str(script), f"{server.base_url}/"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30)
    return {"small_req_s": parse_wrk_output(result.stdout + result.stderr)}


def parse_wrk_output(output: str) -> float:
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: (.*)"):
        if match := re.search(pattern, output):
            raise MeasurementFailed(f"wrk: {match.group(0).strip()}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise MeasurementFailed(f"wrk output not understood: {output[-200:]!r}")
    return float(match.group(1))
