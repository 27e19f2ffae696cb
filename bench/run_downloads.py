"""Download benchmark: asgi_xfer against Starlette, naive FastAPI and nginx.

Usage (from the repository root):

    .venv/bin/python bench/run_downloads.py                      # full run
    .venv/bin/python bench/run_downloads.py --size-mib 64 --reps 1   # quick
    .venv/bin/python bench/run_downloads.py --only small --servers ours,nginx

Scenarios (``--only``): ``single`` (one curl of the big file: MB/s and
server CPU s/GB), ``concurrent`` (64 curls at once of a smaller file:
aggregate MB/s and peak server RSS), ``small`` (wrk -t2 -c64 over 1000 4 KiB
files, paths rotated by a Lua script: req/s). Each measurement starts the
server fresh, the servers take turns within each repetition (the order
rotates per repetition), and the table shows medians. It prints the table
and writes bench/results/downloads.md (+ downloads.json with every sample).

This module owns the run order and the CLI; it must not measure anything
itself (scenarios.py) nor know a server's command line (servers.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fixtures
import report
import scenarios
from process_tree import CLOCK_TICKS_PER_S, RSS_SAMPLE_INTERVAL_S
from servers import BENCH_DIR, SERVERS, RunningServer, ServerFailed, find_missing_executable, run_server

WORK_DIR = BENCH_DIR / ".work"
ROOT = WORK_DIR / "files"
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_SIZE_MIB = 1024
# 64 x 64 MiB = 4 GiB per repetition: the naive peer manages ~70-120 MB/s
# aggregate here, so this keeps its rep under ~60 s (256 MiB took ~4 min).
DEFAULT_CONCURRENT_SIZE_MIB = 64
DEFAULT_REPS = 3
DEFAULT_WRK_DURATION_S = 10
WARMUP_TIMEOUT_S = 10


@dataclass
class Plan:
    servers: list[str]
    scenarios: list[str]
    reps: int
    size_mib: int
    concurrent_size_mib: int
    wrk_duration_s: int


@dataclass
class Fixtures:
    big_file: str
    concurrent_file: str
    small_files: list[str]
    wrk_script: Path


@dataclass
class Results:
    samples: report.Samples = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # server -> why it cannot start

    def add(self, server: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            self.samples.setdefault(server, {}).setdefault(metric, []).append(value)


def parse_args(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_MIB,
                        help="single-stream file size (default %(default)s)")
    parser.add_argument("--concurrent-size-mib", type=int, default=None,
                        help=f"per-download size for 64 concurrent "
                             f"(default min({DEFAULT_CONCURRENT_SIZE_MIB}, --size-mib))")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS)
    parser.add_argument("--only", choices=list(scenarios.SCENARIOS), action="append",
                        help="run only this scenario (repeatable)")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--wrk-duration-s", type=int, default=DEFAULT_WRK_DURATION_S)
    args = parser.parse_args(argv)
    servers = [s for s in args.servers.split(",") if s]
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.reps < 1 or args.size_mib < 1:
        parser.error("--reps and --size-mib must be at least 1")
    return Plan(
        servers=servers,
        scenarios=args.only or list(scenarios.SCENARIOS),
        reps=args.reps,
        size_mib=args.size_mib,
        concurrent_size_mib=args.concurrent_size_mib or min(DEFAULT_CONCURRENT_SIZE_MIB, args.size_mib),
        wrk_duration_s=args.wrk_duration_s,
    )


def prepare_fixtures(plan: Plan) -> Fixtures:
    ROOT.mkdir(parents=True, exist_ok=True)
    big = fixtures.write_big_file(ROOT, plan.size_mib)
    concurrent = fixtures.write_big_file(ROOT, plan.concurrent_size_mib)
    small = fixtures.write_small_files(ROOT)
    fixtures.read_to_warm_cache(ROOT, sorted({big, concurrent, *small}))
    return Fixtures(big, concurrent, small, fixtures.write_wrk_script(ROOT, small))


def build_measure(name: str, plan: Plan, fx: Fixtures) -> Callable[[RunningServer], dict[str, float]]:
    mib = fixtures.MIB
    table: dict[str, Callable[[RunningServer], dict[str, float]]] = {
        "single": lambda s: scenarios.measure_single(s, fx.big_file, plan.size_mib * mib),
        "concurrent": lambda s: scenarios.measure_concurrent(
            s, fx.concurrent_file, plan.concurrent_size_mib * mib),
        "small": lambda s: scenarios.measure_small(s, fx.wrk_script, plan.wrk_duration_s),
    }
    return table[name]


def read_warmup(server: RunningServer, path: str) -> None:
    """One request before measuring, so lazy imports and first-accept costs are paid."""
    with urllib.request.urlopen(f"{server.base_url}/files/{path}", timeout=WARMUP_TIMEOUT_S) as r:
        r.read()


def run_one(server_name: str, measure: Callable[[RunningServer], dict[str, float]],
            fx: Fixtures, results: Results, label: str) -> None:
    ready_file = fx.small_files[0]
    try:
        with run_server(SERVERS[server_name], ROOT, ready_file) as server:
            read_warmup(server, ready_file)
            values = measure(server)
    except ServerFailed as exc:
        results.broken[server_name] = str(exc)
        log(f"  {label} {server_name}: server failed: {exc}")
        return
    except (scenarios.MeasurementFailed, subprocess.TimeoutExpired, OSError) as exc:
        results.notes.append(f"{label} {server_name}: {exc}")
        log(f"  {label} {server_name}: FAILED: {exc}")
        return
    results.add(server_name, values)
    log(f"  {label} {server_name}: " + ", ".join(f"{k}={v:,.3f}" for k, v in values.items()))


def run_scenario(name: str, plan: Plan, fx: Fixtures, results: Results) -> None:
    tool = scenarios.SCENARIOS[name].tool
    if shutil.which(tool) is None:
        results.notes.append(f"scenario {name} skipped: {tool} is not installed")
        log(f"{name}: skipped, {tool} not installed")
        return
    measure = build_measure(name, plan, fx)
    for rep in range(plan.reps):
        # Rotate who goes first, so no server always gets the freshest machine.
        order = plan.servers[rep % len(plan.servers):] + plan.servers[:rep % len(plan.servers)]
        for server_name in order:
            if server_name not in results.broken:
                run_one(server_name, measure, fx, results, f"{name} rep {rep + 1}/{plan.reps}")


def describe_run(plan: Plan) -> list[str]:
    return [
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, loopback 127.0.0.1.",
        f"Medians of {plan.reps} rep(s); each measurement starts the server fresh; servers "
        "interleaved round-robin per rep; page cache warmed before the run.",
        f"Single stream: curl of a {plan.size_mib} MiB file; MB = 10^6 bytes; CPU = utime+stime "
        "of the server process tree from /proc, before vs after, per 10^9 bytes (resolution: "
        f"one clock tick = {format_cpu_resolution(plan.size_mib)} s/GB at this size).",
        f"64 concurrent: 64 curl processes at once, each the {plan.concurrent_size_mib} MiB file; "
        "aggregate = total bytes / wall time; RSS = peak of summed VmRSS over the server tree, "
        f"sampled every {RSS_SAMPLE_INTERVAL_S * 1000:.0f} ms.",
        f"4 KiB: wrk -t{scenarios.WRK_THREADS} -c{scenarios.WRK_CONNECTIONS} "
        f"-d{plan.wrk_duration_s}s, Lua script rotating over {fixtures.SMALL_FILE_COUNT} "
        "distinct 4 KiB files; any non-2xx or socket error fails the rep.",
        "Peers: starlette = FileResponse; naive = FastAPI StreamingResponse over aiofiles 8 KiB "
        "reads (chunked, no Content-Length); both uvicorn uvloop+httptools, 1 worker, no access "
        "log. nginx: sendfile on, tcp_nopush on, 1 worker, access_log off, "
        "keepalive_requests raised so wrk connections are not recycled every 1000 requests.",
    ]


def format_cpu_resolution(size_mib: int) -> str:
    tick_s = 1 / CLOCK_TICKS_PER_S
    return f"{tick_s / (size_mib * fixtures.MIB / scenarios.GB):.3f}"


def write_results(text: str, results: Results, plan: Plan) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "downloads.md"
    path.write_text(text)
    raw = {"plan": plan.__dict__, "samples": results.samples, "notes": results.notes,
           "broken": results.broken}
    (RESULTS_DIR / "downloads.json").write_text(json.dumps(raw, indent=2) + "\n")
    return path


def read_loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raise_on_signal(signum: int, frame: object) -> None:
    # SystemExit unwinds every `finally`; 128 + signum is the shell convention.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    # Even when launched with these signals ignored or blocked (a background
    # job, some launchers), Ctrl-C / kill must unwind through the `finally`
    # blocks that stop servers and curls.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, raise_on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    plan = parse_args(sys.argv[1:] if argv is None else argv)
    results = Results()
    for name in plan.servers:
        if why := find_missing_executable(SERVERS[name]):
            results.broken[name] = why
    load_at_start = read_loadavg()
    log(f"preparing files under {ROOT} ...")
    fx = prepare_fixtures(plan)
    for name in plan.scenarios:
        run_scenario(name, plan, fx, results)
    notes = describe_run(plan) + [f"Load average (1/5/15 min) at start {load_at_start}, at end {read_loadavg()} "
                                  "(the machine may be shared; other load lowers every column)."]
    notes += results.notes
    notes += [f"{name} not measured: {why}" for name, why in results.broken.items()]
    text = report.format_report(report.format_table(results.samples, plan.servers, plan.scenarios), notes)
    print(text)
    log(f"written to {write_results(text, results, plan)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
