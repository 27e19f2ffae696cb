"""`asgi-xfer`: the command line: `serve` (server.serve), `get` and `put` (client.commands).

Owns: the top-level parser, size arguments (`10M`, `1G`), and dispatch.
Importing it loads neither the server nor the client: each command loads
its own side.
"""

from __future__ import annotations

import argparse
import sys


def _parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asgi-xfer", description="Large-file transfer server and client.")
    sub = parser.add_subparsers(dest="command", required=True)
    from .client.commands import add_get_parser, add_put_parser
    from .server.serve import add_serve_parser

    add_serve_parser(sub, _parse_size)
    add_get_parser(sub, _parse_size)
    add_put_parser(sub, _parse_size)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from .server.serve import run_serve

        return run_serve(args)
    if args.command in ("get", "put"):
        from .client.commands import run_get, run_put

        return run_get(args) if args.command == "get" else run_put(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
