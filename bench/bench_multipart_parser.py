"""Throughput of asgi_xfer's multipart parser against python-multipart and streaming-form-data.

Each parser gets the same body, already split into pieces (16 KiB, 64 KiB,
1 MiB; uvicorn reads the socket 64 KiB at a time),
and hands every data byte to a consumer that only counts them; the count is
checked so that a parser cannot win by dropping data. Best of several runs.

Run: .venv/bin/python bench/bench_multipart_parser.py [--mib 64] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import python_multipart
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asgi_xfer.protocol.multipart import MultipartParser, PartData  # noqa: E402

BOUNDARY = b"----WebKitFormBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = "multipart/form-data; boundary=" + BOUNDARY.decode()
PIECE_SIZES = {"16 KiB": 16 * 1024, "64 KiB": 64 * 1024, "1 MiB": 1024 * 1024}


def build_body(payload: bytes) -> bytes:
    head = (
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    return head + payload + b"\r\n--" + BOUNDARY + b"--\r\n"


def run_ours(pieces: list[bytes]) -> int:
    parser = MultipartParser(BOUNDARY)
    total = 0
    for piece in pieces:
        for event in parser.feed(piece):
            if type(event) is PartData:
                total += len(event.data)
    parser.close()
    return total


def run_python_multipart(pieces: list[bytes]) -> int:
    total = 0

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal total
        total += end - start

    parser = python_multipart.MultipartParser(BOUNDARY, {"on_part_data": on_part_data})
    for piece in pieces:
        parser.write(piece)
    parser.finalize()
    return total


class _CountingTarget(BaseTarget):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def on_data_received(self, chunk: bytes) -> None:
        self.total += len(chunk)


def run_streaming_form_data(pieces: list[bytes]) -> int:
    target = _CountingTarget()
    parser = StreamingFormDataParser(headers={"Content-Type": CONTENT_TYPE})
    parser.register("file", target)
    for piece in pieces:
        parser.data_received(piece)
    return target.total


PARSERS: dict[str, Callable[[list[bytes]], int]] = {
    "asgi_xfer": run_ours,
    "python-multipart": run_python_multipart,
    "streaming-form-data": run_streaming_form_data,
}


def best_rates(pieces: list[bytes], expected: int, runs: int, budget_s: float) -> dict[str, float]:
    """MB/s of each parser, best of `runs`. The parsers take turns within each
    run, so a noisy neighbour slows them all alike; a parser stops repeating
    once it has spent `budget_s` (streaming-form-data on CRLF-dense data)."""
    size = sum(len(piece) for piece in pieces)
    best = dict.fromkeys(PARSERS, float("inf"))
    spent = dict.fromkeys(PARSERS, 0.0)
    for _ in range(runs):
        for name, run in PARSERS.items():
            if spent[name] > budget_s:
                continue
            started = time.perf_counter()
            got = run(pieces)
            elapsed = time.perf_counter() - started
            if got != expected:
                raise SystemExit(f"{name} delivered {got} data bytes, expected {expected}")
            best[name] = min(best[name], elapsed)
            spent[name] += elapsed
    return {name: size / seconds / 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="payload size in MiB")
    parser.add_argument("--runs", type=int, default=15, help="runs per case; the best counts")
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per parser and case")
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    payloads = {
        "random": os.urandom(size),
        "CRLF-dense": b"\r\n" * (size // 2),
    }
    print(f"{'body':<11} {'pieces':<7} " + " ".join(f"{name:>20}" for name in PARSERS)
          + f" {'ours/p-m':>9} {'ours/s-f-d':>10}")
    for label, payload in payloads.items():
        body = build_body(payload)
        for piece_label, piece_size in PIECE_SIZES.items():
            pieces = [body[i : i + piece_size] for i in range(0, len(body), piece_size)]
            rates = best_rates(pieces, len(payload), args.runs, args.budget)
            ours = rates["asgi_xfer"]
            print(
                f"{label:<11} {piece_label:<7} "
                + " ".join(f"{rate:>15,.0f} MB/s" for rate in rates.values())
                + f" {ours / rates['python-multipart']:>8.2f}x"
                + f" {ours / rates['streaming-form-data']:>9.2f}x"
            )


if __name__ == "__main__":
    main()
