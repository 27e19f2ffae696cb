"""The upload results tables: medians per case, ratios to a baseline, targets.

Owns which case is compared with which, the targets, and the markdown. Pure:
takes the collected samples and notes, returns text. Cell formatting and
medians come from report.py (the download tables), so both read alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from report import GE, Samples, Target, format_ratio, format_value, median_of


@dataclass(frozen=True)
class Line:
    """One row of the throughput table: ``case``, and the ratio ``ratio_of``
    (numerator case, denominator case) that the row reports and judges."""

    scenario: str
    case: str
    label: str
    ratio_of: tuple[str, str] | None = None
    target: Target | None = None  # on the MB/s ratio


# Target.peer is unused here: a Line names both cases of its ratio itself.
# Every ratio puts ours on top, so >1 always means ours is faster.
LINES = (
    Line("1. PUT (curl -T)", "ours_put", "ours: PUT /files (fsync + rename before 201)",
         ("ours_put", "nginx_dav_fsync"), Target(None, GE, 1.0, "≥1.0× nginx DAV+fsync")),
    Line("1. PUT (curl -T)", "nginx_dav_fsync", "nginx DAV PUT, then fsync of the file"),
    Line("1. PUT (curl -T)", "nginx_dav", "nginx DAV PUT, no fsync", ("ours_put", "nginx_dav")),
    Line("1. PUT (curl -T)", "discard", "ceiling: server reads and discards", ("ours_put", "discard")),
    Line("2. multipart (curl -F)", "ours_multipart", "ours: POST /files/up/",
         ("ours_multipart", "fastapi_multipart"), Target(None, GE, 2.0, "≥2× FastAPI")),
    Line("2. multipart (curl -F)", "fastapi_multipart", "FastAPI UploadFile + copyfileobj"),
    Line("3. /uploads session", "ours_chunked_curl", "ours: 8 MiB chunks, 4 conn (curl), no digest",
         ("ours_chunked_curl", "ours_put"), Target(None, GE, 0.8, "≥0.8× ours PUT")),
    Line("3. /uploads session", "ours_chunked", "ours: same, 4 conn (http.client threads)",
         ("ours_chunked", "ours_put")),
    Line("3. /uploads session", "ours_chunked_digest", "ours: http.client, Content-Digest sha-256 per chunk",
         ("ours_chunked_digest", "ours_put")),
    Line("5. tus", "ours_tus", "ours: 8 MiB PATCHes, 1 conn, sequential",
         ("ours_tus", "ours_put"), Target(None, GE, 0.8, "≥0.8× ours PUT")),
    Line("5. tus", "ours_tus_whole", "ours: the whole file in one PATCH", ("ours_tus_whole", "ours_put")),
    Line("6. IETF resumable", "ours_ietf_whole", "ours: the whole file in the creation request",
         ("ours_ietf_whole", "ours_put"), Target(None, GE, 0.95, "≥0.95× ours PUT")),
    Line("6. IETF resumable", "ours_ietf", "ours: 8 MiB appends (PATCH), 1 conn, sequential",
         ("ours_ietf", "ours_put"), Target(None, GE, 0.9, "≥0.9× ours PUT")),
)

COMPLETE_BIG, COMPLETE_SMALL = "complete_big", "complete_small"
COMPLETE_LIMIT_S = 1.0
# "Size-independent": the big session (16× the bytes at the defaults) may
# take at most twice the small one's time, plus 50 ms for scheduling noise
# at these millisecond scales. A commit that re-read the file would be ~16×.
SIZE_INDEPENDENT_FACTOR = 2.0
SIZE_INDEPENDENT_SLACK_S = 0.05


def judge(ok: bool | None) -> str:
    return "?" if ok is None else ("yes" if ok else "no")


def format_throughput_table(samples: Samples, cases: list[str]) -> str:
    header = ["Scenario", "Case", "MB/s", "server CPU s/GB", "peak RSS MiB", "ratio of",
              "MB/s ratio", "CPU ratio", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line in LINES:
        if line.case not in cases:
            continue
        cells = [line.scenario, line.label,
                 *(format_value(median_of(samples, line.case, m))
                   for m in ("mb_s", "cpu_s_per_gb", "peak_rss_mib"))]
        cells += format_ratio_cells(samples, line)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_ratio_cells(samples: Samples, line: Line) -> list[str]:
    """ratio of, MB/s ratio, CPU ratio, target, met."""
    if line.ratio_of is None:
        return ["—"] * 5
    top, bottom = line.ratio_of
    mb_s = [median_of(samples, c, "mb_s") for c in line.ratio_of]
    cpu = [median_of(samples, c, "cpu_s_per_gb") for c in line.ratio_of]
    met = "—"
    if line.target is not None:
        ratio = mb_s[0] / mb_s[1] if mb_s[0] is not None and mb_s[1] else None
        met = judge(None if ratio is None else line.target.op(ratio, line.target.bound))
    return [f"{top} ÷ {bottom}", format_ratio(*mb_s), format_ratio(*cpu),
            line.target.text if line.target else "—", met]


def format_complete_table(samples: Samples, sizes_mib: dict[str, int]) -> str:
    header = ["Session", "upload MB/s (1 conn, in order)", "server CPU s/GB (upload)",
              "complete s", "complete server CPU s", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    small_s = median_of(samples, COMPLETE_SMALL, "complete_s")
    for case in (COMPLETE_BIG, COMPLETE_SMALL):
        if case not in sizes_mib:
            continue
        seconds = median_of(samples, case, "complete_s")
        target = f"<{COMPLETE_LIMIT_S:.0f} s"
        ok: bool | None = None if seconds is None else seconds < COMPLETE_LIMIT_S
        if case == COMPLETE_BIG:
            target += f", ≤{SIZE_INDEPENDENT_FACTOR:.0f}× the {sizes_mib.get(COMPLETE_SMALL, '?')} MiB time + 50 ms"
            if ok is not None:
                ok = None if small_s is None else ok and seconds <= (
                    SIZE_INDEPENDENT_FACTOR * small_s + SIZE_INDEPENDENT_SLACK_S)
        lines.append("| " + " | ".join([
            f"{sizes_mib[case]} MiB, 8 MiB chunks",
            format_value(median_of(samples, case, "mb_s")),
            format_value(median_of(samples, case, "cpu_s_per_gb")),
            format_value(seconds),
            format_value(median_of(samples, case, "complete_cpu_s")),
            target, judge(ok),
        ]) + " |")
    return "\n".join(lines)


def format_report(throughput: str, complete: str | None, notes: list[str]) -> str:
    parts = ["# Upload benchmark", "", throughput, ""]
    if complete:
        parts += ["`POST /uploads/{id}/complete` after in-order chunks:", "", complete, ""]
    return "\n".join([*parts, *(f"- {note}" for note in notes), ""])
