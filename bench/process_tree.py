"""CPU time and resident memory of a server's process tree, read from /proc.

Owns the /proc parsing: which pids belong to a server (the launched pid and
its descendants: uvicorn may fork, nginx runs a master and a worker), their
utime+stime, and their VmRSS. It must not start or stop processes.
"""

from __future__ import annotations

import os
import threading

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# 50 ms: fine enough to catch the peak of a multi-second transfer while the
# sampler itself costs well under 1% of one core.
RSS_SAMPLE_INTERVAL_S = 0.05


def read_stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the ``(comm)`` field, or None if pid is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses; it ends at the last ')'.
    return text[text.rindex(")") + 2 :].split()


def list_tree_pids(root_pid: int) -> list[int]:
    """``root_pid`` and all its living descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = read_stat_fields(int(entry))
        if fields is not None:
            # fields[1] is ppid (field 4 of stat; 0 = state, 1 = ppid).
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def read_cpu_s(pids: list[int]) -> float:
    """Sum of utime+stime (stat fields 14 and 15) over ``pids``, in seconds."""
    ticks = 0
    for pid in pids:
        fields = read_stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS_PER_S


def read_rss_bytes(pids: list[int]) -> int:
    """Sum of VmRSS over ``pids`` (shared pages count once per process)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


class PeakRssSampler:
    """Samples the summed VmRSS of a fixed pid set in a thread; keeps the peak.

    The pid set is taken once, before the measured run, so the sampler does
    not rescan all of /proc every 50 ms while the server is under load.
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start_bytes = read_rss_bytes(pids)
        self.peak_bytes = self.start_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak_bytes = max(self.peak_bytes, read_rss_bytes(self.pids))

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_INTERVAL_S):
            self.peak_bytes = max(self.peak_bytes, read_rss_bytes(self.pids))
