"""The results table: medians per server, ratios of ours to each peer, targets.

Owns the metric rows, the targets they are judged against and the markdown.
Pure: takes the collected samples and notes, returns text.
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass

OURS = "ours"


@dataclass(frozen=True)
class Target:
    """ours (or ours/peer when ``peer`` is set) ``op`` ``bound``."""

    peer: str | None
    op: Callable[[float, float], bool]
    bound: float
    text: str


@dataclass(frozen=True)
class Row:
    metric: str
    label: str
    scenario: str
    targets: tuple[Target, ...]


GE, LE = operator.ge, operator.le
ROWS = (
    Row("single_mb_s", "Single stream, MB/s", "single",
        (Target("nginx", GE, 1.2, "≥1.2× nginx"), Target("starlette", GE, 4.0, "≥4× starlette"))),
    Row("single_cpu_s_per_gb", "Single stream, server CPU s/GB", "single",
        (Target(None, LE, 0.35, "≤0.35 s/GB"),)),
    Row("concurrent_mb_s", "64 concurrent, aggregate MB/s", "concurrent",
        (Target("nginx", GE, 1.0, "≥1.0× nginx"),)),
    Row("concurrent_start_rss_mib", "64 concurrent, server RSS before load MiB", "concurrent", ()),
    Row("concurrent_peak_rss_mib", "64 concurrent, server peak RSS MiB", "concurrent",
        (Target(None, LE, 64.0, "≤64 MiB"),)),
    Row("small_req_s", "4 KiB files, 64 conn, req/s", "small",
        (Target("starlette", GE, 8.0, "≥8× starlette"),)),
)

Samples = dict[str, dict[str, list[float]]]  # server -> metric -> one value per rep


def median_of(samples: Samples, server: str, metric: str) -> float | None:
    values = samples.get(server, {}).get(metric)
    return statistics.median(values) if values else None


def format_value(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def format_ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None or peer == 0:
        return "—"
    return f"{ours / peer:.2f}×"


def judge_target(target: Target, samples: Samples, metric: str) -> str:
    """'yes', 'no' or '?' (a number it needs is missing)."""
    ours = median_of(samples, OURS, metric)
    value = ours
    if target.peer is not None:
        peer = median_of(samples, target.peer, metric)
        value = None if ours is None or not peer else ours / peer
    if value is None:
        return "?"
    return "yes" if target.op(value, target.bound) else "no"


def format_table(samples: Samples, servers: list[str], scenarios: list[str]) -> str:
    peers = [s for s in servers if s != OURS]
    ratio_peers = [p for p in ("nginx", "starlette", "naive") if p in peers] if OURS in servers else []
    header = ["Scenario", *servers, *(f"ours/{p}" for p in ratio_peers), "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in ROWS:
        if row.scenario not in scenarios:
            continue
        medians = {s: median_of(samples, s, row.metric) for s in servers}
        cells = [row.label, *(format_value(medians[s]) for s in servers)]
        cells += [format_ratio(medians[OURS], medians[p]) for p in ratio_peers]
        cells.append(", ".join(t.text for t in row.targets) or "—")
        cells.append(", ".join(judge_target(t, samples, row.metric) for t in row.targets) or "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_report(table: str, notes: list[str]) -> str:
    return "\n".join([
        "# Download benchmark", "", table, "",
        *(f"- {note}" for note in notes), "",
    ])
