"""Process-wide counters and their Prometheus text rendering.

Owns: the counters (bytes in/out, responses by status, active transfers, open
upload sessions) and `format_prometheus()`. Must not: do I/O. Each worker
process keeps its own counters, as Prometheus client libraries do; a scrape
reaches one worker, so counters are labelled with the process id.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable


class Metrics:
    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.active_transfers = 0
        self.pathsend_responses = 0
        self.responses: Counter[int] = Counter()
        # Filled in by whichever store owns upload sessions.
        self.open_sessions: Callable[[], int] = lambda: 0

    def count_response(self, status: int) -> None:
        self.responses[status] += 1

    def format_prometheus(self) -> str:
        pid = f'{{pid="{os.getpid()}"}}'
        lines = [
            "# HELP xfer_bytes_in_total Request body bytes received.",
            "# TYPE xfer_bytes_in_total counter",
            f"xfer_bytes_in_total{pid} {self.bytes_in}",
            "# HELP xfer_bytes_out_total Response body bytes sent.",
            "# TYPE xfer_bytes_out_total counter",
            f"xfer_bytes_out_total{pid} {self.bytes_out}",
            "# HELP xfer_active_transfers Downloads and uploads in progress.",
            "# TYPE xfer_active_transfers gauge",
            f"xfer_active_transfers{pid} {self.active_transfers}",
            "# HELP xfer_pathsend_responses_total Bodies handed to the server as a path (zero-copy).",
            "# TYPE xfer_pathsend_responses_total counter",
            f"xfer_pathsend_responses_total{pid} {self.pathsend_responses}",
            "# HELP xfer_upload_sessions_open Resumable upload sessions not yet completed.",
            "# TYPE xfer_upload_sessions_open gauge",
            f"xfer_upload_sessions_open{pid} {self.open_sessions()}",
            "# HELP xfer_responses_total Responses sent, by status code.",
            "# TYPE xfer_responses_total counter",
        ]
        for status in sorted(self.responses):
            lines.append(f'xfer_responses_total{{pid="{os.getpid()}",status="{status}"}} {self.responses[status]}')
        return "\n".join(lines) + "\n"


METRICS = Metrics()
