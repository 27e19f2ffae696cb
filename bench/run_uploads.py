"""Upload benchmark: asgi_xfer against nginx WebDAV, FastAPI and itself.

Usage (from the repository root):

    .venv/bin/python bench/run_uploads.py                          # full run
    .venv/bin/python bench/run_uploads.py --size-mib 64 --reps 1   # quick
    .venv/bin/python bench/run_uploads.py --only put --only tus
    .venv/bin/python bench/run_uploads.py --skip complete_big --skip ours_chunked_digest

Scenarios (``--only``): ``put`` (curl -T: ours vs nginx DAV + fsync, nginx
DAV, a discard-only ceiling), ``multipart`` (curl -F: ours vs FastAPI
UploadFile), ``chunked`` (an /uploads session, 8 MiB chunks over 4
connections, sent by curl, and by http.client with and without
Content-Digest, vs our PUT), ``complete``
(time of POST /complete after in-order chunks, for a 4× and a ¼× --size-mib
session), ``tus`` (8 MiB PATCHes vs our PUT), ``ietf`` (IETF resumable
uploads: the whole file in the creation request, and 8 MiB appends, vs our
PUT). ``--skip CASE`` drops one case.

Each measurement starts its server fresh on an empty root, which is deleted
(and the disk synced) afterwards; every case runs once per repetition, in an
order that rotates per repetition; the tables show medians. It prints the
report and writes bench/results/uploads.md (+ uploads.json, every sample).

This module owns the case table, the run order and the CLI; it must not
measure anything itself (upload_scenarios.py) nor know a server's command
line (servers.py).
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fixtures
import upload_report
import upload_scenarios as us
from run_downloads import log, raise_on_signal, read_loadavg
from scenarios import MeasurementFailed
from servers import BENCH_DIR, UPLOAD_SERVERS, RunningServer, ServerFailed, find_missing_executable, run_server

WORK_DIR = BENCH_DIR / ".work"
SOURCE_DIR = WORK_DIR / "files"  # shared with the download bench's fixtures
UPLOAD_ROOTS = WORK_DIR / "uploads"
SHA256_CACHE_DIR = WORK_DIR / "sha256"
CHUNK_FILES_DIR = WORK_DIR / "chunks"
RESULTS_DIR = BENCH_DIR / "results"
READY_FILE = "ready.txt"
DEFAULT_SIZE_MIB = 1024
DEFAULT_REPS = 3
CHUNK_MIB = 8
CONNECTIONS = 4
WARMUP_SIZE_MIB = 1
# The 4 GiB `complete` case holds the source, the staging file and the
# committed file at once; below this much free space it is scaled down.
MIN_FREE_FOR_FULL_COMPLETE_BYTES = 20 * 10**9
# Source + staging + committed, with room to spare.
COMPLETE_SPACE_FACTOR = 4

Measure = Callable[[RunningServer, us.Source, Path], dict[str, float]]
SCENARIOS = ("put", "multipart", "chunked", "complete", "tus", "ietf")


@dataclass(frozen=True)
class Case:
    name: str
    scenario: str
    server: str
    measure: Measure
    source: str = "main"  # which Source: "main", "complete_big", "complete_small"


@dataclass
class Plan:
    cases: list[str]
    reps: int
    size_mib: int
    complete_sizes_mib: dict[str, int]
    notes: list[str] = field(default_factory=list)


@dataclass
class Results:
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # server -> why it cannot start

    def add(self, case: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            self.samples.setdefault(case, {}).setdefault(metric, []).append(value)


def build_cases(chunk_digests: Callable[[us.Source], list[str]],
                chunk_files: Callable[[us.Source], list[Path]]) -> dict[str, Case]:
    chunk = CHUNK_MIB * fixtures.MIB
    cases = [
        Case("ours_put", "put", "ours", us.measure_put),
        Case("nginx_dav_fsync", "put", "nginx_dav",
             lambda s, src, root: us.measure_put(s, src, root, fsync_after=True)),
        Case("nginx_dav", "put", "nginx_dav", us.measure_put),
        Case("discard", "put", "discard", lambda s, src, root: us.measure_put(s, src, root, store=False)),
        Case("ours_multipart", "multipart", "ours", us.measure_multipart),
        Case("fastapi_multipart", "multipart", "fastapi", us.measure_multipart),
        Case("ours_chunked_curl", "chunked", "ours", lambda s, src, root: us.measure_chunked(
            s, src, root, chunk_bytes=chunk, connections=CONNECTIONS, chunk_files=chunk_files(src))),
        Case("ours_chunked", "chunked", "ours", lambda s, src, root: us.measure_chunked(
            s, src, root, chunk_bytes=chunk, connections=CONNECTIONS)),
        Case("ours_chunked_digest", "chunked", "ours", lambda s, src, root: us.measure_chunked(
            s, src, root, chunk_bytes=chunk, connections=CONNECTIONS, digests=chunk_digests(src))),
        Case(upload_report.COMPLETE_BIG, "complete", "ours",
             lambda s, src, root: us.measure_complete(s, src, root, chunk_bytes=chunk), "complete_big"),
        Case(upload_report.COMPLETE_SMALL, "complete", "ours",
             lambda s, src, root: us.measure_complete(s, src, root, chunk_bytes=chunk), "complete_small"),
        Case("ours_tus", "tus", "ours", lambda s, src, root: us.measure_tus(
            s, src, root, patch_files=chunk_files(src))),
        Case("ours_tus_whole", "tus", "ours", lambda s, src, root: us.measure_tus(
            s, src, root, patch_files=[src.path])),
        Case("ours_ietf_whole", "ietf", "ours", us.measure_ietf_whole),
        Case("ours_ietf", "ietf", "ours", lambda s, src, root: us.measure_ietf(
            s, src, root, patch_files=chunk_files(src))),
    ]
    return {case.name: case for case in cases}


# The chunked, tus and ietf rows are judged against our PUT, so it runs for them too.
NEEDS_OURS_PUT = {"chunked", "tus", "ietf"}


def parse_args(argv: list[str], case_names: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_MIB,
                        help="file size for every row but complete (default %(default)s)")
    parser.add_argument("--complete-size-mib", type=int, default=None,
                        help="the big complete session (default 4 × --size-mib)")
    parser.add_argument("--complete-small-mib", type=int, default=None,
                        help="the small complete session (default --size-mib / 4)")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS)
    parser.add_argument("--only", choices=SCENARIOS, action="append",
                        help="run only this scenario (repeatable)")
    parser.add_argument("--skip", choices=case_names, action="append", default=[], metavar="CASE",
                        help="leave out one case (repeatable): " + ", ".join(case_names))
    args = parser.parse_args(argv)
    if args.reps < 1 or args.size_mib < 1:
        parser.error("--reps and --size-mib must be at least 1")
    return args


def plan_run(args: argparse.Namespace, cases: dict[str, Case]) -> Plan:
    scenarios = set(args.only or SCENARIOS)
    chosen = [c.name for c in cases.values() if c.scenario in scenarios]
    if scenarios & NEEDS_OURS_PUT and "ours_put" not in chosen:
        chosen.insert(0, "ours_put")
    chosen = [c for c in chosen if c not in args.skip]
    sizes = {
        upload_report.COMPLETE_BIG: args.complete_size_mib or 4 * args.size_mib,
        upload_report.COMPLETE_SMALL: args.complete_small_mib or max(1, args.size_mib // 4),
    }
    plan = Plan(chosen, args.reps, args.size_mib, {k: v for k, v in sizes.items() if k in chosen})
    scale_complete_to_disk(plan)
    return plan


def scale_complete_to_disk(plan: Plan) -> None:
    """Halve the big complete session until it fits, saying so in the notes."""
    big = upload_report.COMPLETE_BIG
    if big not in plan.complete_sizes_mib:
        return
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(WORK_DIR).free
    wanted = plan.complete_sizes_mib[big]
    size = wanted
    if free < MIN_FREE_FOR_FULL_COMPLETE_BYTES:
        while size > 1 and size * fixtures.MIB * COMPLETE_SPACE_FACTOR > free:
            size //= 2
    if size != wanted:
        plan.complete_sizes_mib[big] = size
        plan.notes.append(f"complete: only {free / 1e9:.1f} GB free, so the big session is "
                          f"{size} MiB instead of {wanted} MiB.")


def read_source(size_mib: int) -> us.Source:
    """The fixture of ``size_mib``, written if missing, with its cached sha256."""
    name = fixtures.write_big_file(SOURCE_DIR, size_mib)
    path = SOURCE_DIR / name
    SHA256_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cache = SHA256_CACHE_DIR / f"{name}.sha256"
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        sha256 = cache.read_text().strip()
    else:
        sha256 = us.read_sha256(path)
        cache.write_text(sha256 + "\n")
    return us.Source(path, path.stat().st_size, sha256)


def prepare_sources(plan: Plan, cases: dict[str, Case]) -> dict[str, us.Source]:
    needed = {cases[name].source for name in plan.cases}
    sizes = {"main": plan.size_mib, "warmup": WARMUP_SIZE_MIB,
             **{cases[name].source: mib for name, mib in plan.complete_sizes_mib.items()}}
    sources = {key: read_source(sizes[key]) for key in needed | {"warmup"}}
    fixtures.read_to_warm_cache(SOURCE_DIR, sorted({s.name for s in sources.values()}))
    return sources


def open_root(case: str) -> Path:
    """A fresh, empty server root for one measurement (plus the ready file)."""
    root = UPLOAD_ROOTS / case
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / READY_FILE).write_text("ok\n")
    return root


def drop_root(root: Path) -> None:
    """Delete what was uploaded, then sync, so the next case starts with no
    writeback of this one's data still in flight."""
    shutil.rmtree(root, ignore_errors=True)
    os.sync()


def run_case(case: Case, sources: dict[str, us.Source], results: Results, label: str) -> None:
    source = sources[case.source]
    root = open_root(case.name)
    try:
        with run_server(UPLOAD_SERVERS[case.server], root, READY_FILE) as server:
            # A 1 MiB upload of the same kind first, so lazy imports and
            # first-request costs are paid; it lands under its own name.
            case.measure(server, sources["warmup"], root)
            fixtures.read_to_warm_cache(SOURCE_DIR, [source.name])
            values = case.measure(server, source, root)
    except ServerFailed as exc:
        results.broken[case.server] = str(exc)
        log(f"  {label} {case.name}: server failed: {exc}")
        return
    except (MeasurementFailed, subprocess.TimeoutExpired, OSError, ValueError) as exc:
        results.notes.append(f"{label} {case.name}: {exc}")
        log(f"  {label} {case.name}: FAILED: {exc}")
        return
    finally:
        drop_root(root)
    results.add(case.name, values)
    log(f"  {label} {case.name}: " + ", ".join(f"{k}={v:,.3f}" for k, v in values.items()))


def run_all(plan: Plan, cases: dict[str, Case], sources: dict[str, us.Source], results: Results) -> None:
    for rep in range(plan.reps):
        # Rotate who goes first, so no case always gets the freshest machine.
        shift = rep % len(plan.cases)
        for name in plan.cases[shift:] + plan.cases[:shift]:
            case = cases[name]
            if case.server not in results.broken:
                run_case(case, sources, results, f"rep {rep + 1}/{plan.reps}")


def describe_run(plan: Plan) -> list[str]:
    return [
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, loopback 127.0.0.1, "
        f"files on {describe_filesystem(WORK_DIR)}.",
        f"Medians of {plan.reps} rep(s) of a {plan.size_mib} MiB file (seeded pseudo-random, "
        "page-cached before each measurement); every measurement starts its server fresh on an "
        "empty root under bench/.work/uploads/, deletes it afterwards and syncs; the cases' order "
        "rotates per rep. MB = 10^6 bytes; MB/s = file size / wall time of the whole client side "
        "(curl process or Python client, including session create/complete or tus creation).",
        "Server CPU = utime+stime of the server process tree from /proc, before vs after, per "
        "10^9 bytes; peak RSS = summed VmRSS of that tree, sampled every 50 ms.",
        "PUT: `curl -T FILE -H 'Expect:'`. nginx DAV (`dav_methods PUT`, client_max_body_size 0, "
        "client_body_temp_path inside the root, 1 worker) stores the body via a temp file and a "
        "rename and never fsyncs; the DAV+fsync row adds an fsync(2) of the stored file by the "
        "harness inside the timed span (its CPU is not counted as server CPU). Ours fsyncs before "
        "its 201. The discard ceiling is a threaded Python socket server reading each body into "
        "one reused 1 MiB buffer.",
        "multipart: `curl -F f=@FILE` to POST /files/up/. FastAPI peer: `UploadFile` (Starlette "
        "spools the part to a temp file) then shutil.copyfileobj to the target, no fsync, uvicorn "
        "uvloop+httptools, 1 worker, no access log (the same flags `asgi-xfer serve` uses).",
        f"/uploads session: POST /uploads with the file's sha256, {CHUNK_MIB} MiB chunks PUT over "
        f"{CONNECTIONS} keep-alive connections, then POST /complete; timed end to end. The curl row "
        f"(judged, the same client as the PUT row) runs {CONNECTIONS} curl processes, process w "
        f"sending chunks w, w+{CONNECTIONS}, ... from chunk files cut beforehand; the other rows "
        f"use {CONNECTIONS} http.client threads in this Python process taking the next index in "
        "turn (their CPU competes with the server's on 2 cores). The digest row sends a "
        "precomputed `Content-Digest: sha-256=:...:` per chunk.",
        f"tus: POST /tus/ (Upload-Length, Upload-Metadata path), then one curl sending sequential "
        f"{CHUNK_MIB} MiB PATCHes (the chunk files) on one keep-alive connection (`--next` between "
        "them), until the last 204; timed end to end. The whole-file row sends one PATCH of the "
        "whole file (tus-js-client's and Uppy's default).",
        f"complete: a session uploaded in order ({CHUNK_MIB} MiB chunks, one connection), then "
        "POST /uploads/{id}/complete timed alone.",
        f"hashlib sha256 on this machine: {us.measure_sha256_mb_s():,.0f} MB/s in one thread "
        f"(CPU {'has' if has_sha_extensions() else 'lacks'} SHA extensions); ours computes the "
        "sha256 of every upload it stores, so this bounds its single-stream rows.",
    ]


def has_sha_extensions() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " sha_ni" in flags


def describe_filesystem(path: Path) -> str:
    result = subprocess.run(["df", "--output=fstype,avail", "-B", "G", str(path)],
                            capture_output=True, text=True)
    fields = result.stdout.split()
    return f"{fields[2]} ({fields[3]} free)" if len(fields) >= 4 else "unknown filesystem"


def write_results(text: str, results: Results, plan: Plan) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "uploads.md"
    path.write_text(text)
    raw = {"plan": plan.__dict__, "samples": results.samples, "notes": results.notes,
           "broken": results.broken}
    (RESULTS_DIR / "uploads.json").write_text(json.dumps(raw, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    # As in run_downloads: signals must unwind through the `finally` blocks
    # that stop servers, even when the launcher left them ignored or blocked.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, raise_on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    digests_by_path: dict[Path, list[str]] = {}

    def chunk_digests(source: us.Source) -> list[str]:
        if source.path not in digests_by_path:
            digests_by_path[source.path] = us.plan_chunk_digests(source, CHUNK_MIB * fixtures.MIB)
        return digests_by_path[source.path]

    def chunk_files(source: us.Source) -> list[Path]:
        return us.write_chunk_files(source, CHUNK_MIB * fixtures.MIB, CHUNK_FILES_DIR / source.name)

    cases = build_cases(chunk_digests, chunk_files)
    args = parse_args(sys.argv[1:] if argv is None else argv, list(cases))
    plan = plan_run(args, cases)
    results = Results()
    for name in {cases[c].server for c in plan.cases}:
        if why := find_missing_executable(UPLOAD_SERVERS[name]):
            results.broken[name] = why
    load_at_start = read_loadavg()
    log(f"preparing files under {SOURCE_DIR} ...")
    sources = prepare_sources(plan, cases)
    if "ours_chunked_digest" in plan.cases:
        chunk_digests(sources["main"])  # before any timing
    if "ours_chunked_curl" in plan.cases or "ours_tus" in plan.cases:
        chunk_files(sources["main"])  # before any timing
    run_all(plan, cases, sources, results)
    notes = describe_run(plan) + plan.notes + [
        f"Load average (1/5/15 min) at start {load_at_start}, at end {read_loadavg()} "
        "(the machine is shared with other test runs; other load lowers every column)."]
    notes += results.notes
    notes += [f"{name} not measured: {why}" for name, why in results.broken.items()]
    complete = upload_report.format_complete_table(results.samples, plan.complete_sizes_mib) \
        if plan.complete_sizes_mib else None
    text = upload_report.format_report(
        upload_report.format_throughput_table(results.samples, plan.cases), complete, notes)
    print(text)
    log(f"written to {write_results(text, results, plan)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
